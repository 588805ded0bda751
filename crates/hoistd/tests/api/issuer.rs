//! A small OpenID issuer on loopback for the broker's tests: a real HTTP
//! server with a discovery document and a JWKS, and real Ed25519 keys that
//! sign ID tokens with whatever claims a test chooses. It can be made to
//! hold its answers until the test lets them go, as a slow provider does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

pub struct Issuer {
    pub url: String,
    inner: Arc<Inner>,
    keys: Vec<(String, SigningKey)>,
}

struct Inner {
    /// The key ids the JWKS publishes.
    published: std::sync::Mutex<Vec<Value>>,
    held: AtomicBool,
    /// The JWKS is answered with 503 while this is set.
    failing: AtomicBool,
    /// Permits for held answers to go.
    release: Semaphore,
    /// Signalled whenever a held request arrives.
    arrived: Notify,
    jwks_fetches: AtomicUsize,
}

impl Issuer {
    /// An issuer with two signing keys, `k1` published and `k2` not.
    pub async fn start() -> Issuer {
        let keys: Vec<(String, SigningKey)> = ["k1", "k2"]
            .iter()
            .map(|kid| {
                (
                    kid.to_string(),
                    SigningKey::generate(&mut rand::rngs::OsRng),
                )
            })
            .collect();
        let inner = Arc::new(Inner {
            published: std::sync::Mutex::new(vec![jwk(&keys[0].0, &keys[0].1)]),
            held: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            release: Semaphore::new(0),
            arrived: Notify::new(),
            jwks_fetches: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({ "issuer": url, "jwks_uri": format!("{url}/jwks") });
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move |State(inner): State<Arc<Inner>>| async move {
                    inner.hold().await;
                    Json(discovery.clone())
                }),
            )
            .route(
                "/jwks",
                get(|State(inner): State<Arc<Inner>>| async move {
                    inner.hold().await;
                    inner.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    if inner.failing.load(Ordering::SeqCst) {
                        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    let keys = inner.published.lock().unwrap().clone();
                    Ok(Json(json!({ "keys": keys })))
                }),
            )
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer { url, inner, keys }
    }

    /// An `[[oidc]]` table trusting this issuer, with these extra lines.
    pub fn policy(&self, extra: &str) -> String {
        format!(
            "\n[[oidc]]\nissuer = \"{}\"\nclient_id = \"hoist\"\n{extra}\n",
            self.url
        )
    }

    /// An ID token signed with key `kid`, with standard claims for `sub`
    /// living `ttl_secs`, and `extra` claims on top.
    pub fn token(&self, kid: &str, sub: &str, ttl_secs: i64, extra: Value) -> String {
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .unwrap_or(&self.keys[0]);
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.url, "aud": "hoist", "sub": sub,
            "iat": now, "exp": now + ttl_secs,
            "preferred_username": sub,
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        let der = key.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap()
    }

    /// From now on, answers wait until [`Issuer::release`].
    pub fn hold(&self) {
        self.inner.held.store(true, Ordering::SeqCst);
    }

    /// Waits until a request is waiting on the hold.
    pub async fn arrived(&self) {
        self.inner.arrived.notified().await;
    }

    /// Lets every held answer go, and stops holding.
    pub fn release(&self) {
        self.inner.held.store(false, Ordering::SeqCst);
        self.inner.release.add_permits(1_000);
    }

    /// From now on the JWKS is answered with 503 (`true`), or again
    /// with the keys (`false`).
    pub fn fail(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// From now on the JWKS publishes these keys (of `k1` and `k2`) only.
    pub fn publish(&self, kids: &[&str]) {
        *self.inner.published.lock().unwrap() = self
            .keys
            .iter()
            .filter(|(kid, _)| kids.contains(&kid.as_str()))
            .map(|(kid, key)| jwk(kid, key))
            .collect();
    }

    pub fn jwks_fetches(&self) -> usize {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }
}

impl Inner {
    async fn hold(&self) {
        if self.held.load(Ordering::SeqCst) {
            self.arrived.notify_one();
            let _ = self.release.acquire().await.map(|p| p.forget());
        }
    }
}

fn jwk(kid: &str, key: &SigningKey) -> Value {
    json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
    })
}
