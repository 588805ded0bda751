//! Workload token exchange (`scripts/bench --only workloads`): a broker in
//! this process over a SQLite file (`hoistd::testing::TestBroker`), and an
//! OpenID issuer on loopback that serves its discovery document and JWKS
//! and whose workload tokens (EdDSA, a fresh `jti` and `sub` each) are
//! minted here before the clock starts, so the figures are the broker's.
//!
//! ```text
//! workloads rate [--rps 200] [--seconds 10]
//!     Exchanges sent open loop at a fixed rate, each a new task of its own
//!     workload: the latency of each POST /v1/token, and the rate reached.
//! workloads tasks [--tasks 1000]
//!     That many short tasks at once, each exchange -> introspection with
//!     its own credential -> revoke; then the active workload grants left.
//! ```
//!
//! Prints one JSON object per line: `{"id", "run", "metrics", "meta"}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use hoist_api::{
    Grant, Introspection, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TokenExchangeResponse,
};
use hoistd::testing::{TestBroker, policy_text};
use serde_json::json;
use support::Args;

const AUDIENCE: &str = "https://hoist.bench/ci";

/// An issuer on loopback: its URL, and the key its tokens are signed with.
struct Issuer {
    url: String,
    key: jsonwebtoken::EncodingKey,
}

impl Issuer {
    async fn start() -> Issuer {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let der = signing.to_pkcs8_der().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({ "issuer": url, "jwks_uri": format!("{url}/jwks") });
        let jwks = json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1",
                                      "alg": "EdDSA", "use": "sig" }] });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer {
            url,
            key: jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        }
    }

    /// A token for workload `bot-<n>`, one task.
    fn token(&self, n: usize) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let claims = json!({
            "iss": self.url, "aud": AUDIENCE, "sub": format!("bot-{n}"),
            "jti": format!("task-{n}"), "iat": now, "exp": now + 600,
            "repository": "acme/app",
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

async fn setup() -> (Issuer, TestBroker) {
    let issuer = Issuer::start().await;
    let policy = format!(
        "{}\n[[workloads]]\nname = \"ci\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         [workloads.claims]\nsub = \"bot-*\"\nrepository = \"acme/app\"\n\
         [[workloads.roles]]\nrole = \"logs\"\nmax_ttl_minutes = 10\n",
        policy_text(
            "filing_rate = \"1000000/m\"\nintrospection_rate = \"1000000/m\"\n\
             credential_fetch_rate = \"1000000/m\""
        ),
        issuer.url
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    (issuer, broker)
}

/// The first exchange fetches the issuer's keys: done, and its task
/// revoked, before the clock starts.
async fn warm_up(http: &reqwest::Client, url: &str, issuer: &Issuer) {
    let issued = exchange(http, url, &issuer.token(usize::MAX)).await;
    let revoked = http
        .post(format!("{url}/v1/token/revoke"))
        .bearer_auth(&issued.access_token)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
}

async fn exchange(http: &reqwest::Client, url: &str, token: &str) -> TokenExchangeResponse {
    let answer = http
        .post(format!("{url}/v1/token"))
        .form(&[
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", token),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("scope", "logs"),
            ("requested_ttl", "300"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
    answer.json().await.unwrap()
}

fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        ms(samples[rank - 1])
    };
    json!({
        "samples": samples.len(),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": ms(*samples.last().unwrap()),
    })
}

/// Open loop at `rps` for `seconds`: each exchange is sent at its planned
/// moment whether or not earlier ones answered.
async fn rate(rps: usize, seconds: u64) {
    let (issuer, broker) = setup().await;
    let url = broker.url();
    let http = reqwest::Client::new();
    warm_up(&http, &url, &issuer).await;
    let total = rps * seconds as usize;
    let tokens: Vec<String> = (0..total).map(|n| issuer.token(n)).collect();
    let every = Duration::from_secs_f64(1.0 / rps as f64);
    let began = tokio::time::Instant::now();
    let mut sent = Vec::with_capacity(total);
    for (n, token) in tokens.into_iter().enumerate() {
        tokio::time::sleep_until(began + every * n as u32).await;
        let (http, url) = (http.clone(), url.clone());
        sent.push(tokio::spawn(async move {
            let start = Instant::now();
            exchange(&http, &url, &token).await;
            start.elapsed()
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for task in sent {
        samples.push(task.await.unwrap());
    }
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "id": "workloads.rate",
            "run": 0,
            "metrics": { "latency": summary(&mut samples), "achieved_rps": total as f64 / elapsed },
            "meta": { "what": format!(
                "{total} token exchanges (POST /v1/token, RFC 8693) sent open loop at {rps}/s, \
                 each a new task of its own workload (EdDSA JWT, distinct sub and jti) with \
                 automatic approval: verified, request filed, grant activated, credential \
                 signed, replay row written; broker in process over SQLite, issuer on loopback") },
        })
    );
}

/// `tasks` short tasks at once: exchange, use, revoke.
async fn tasks(count: usize) {
    let (issuer, broker) = setup().await;
    let url = broker.url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    warm_up(&http, &url, &issuer).await;
    let tokens: Vec<String> = (0..count).map(|n| issuer.token(n)).collect();
    let began = Instant::now();
    let handles: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                let issued = exchange(&http, &url, &token).await;
                let used: Introspection = http
                    .post(format!("{url}/v1/introspect"))
                    .bearer_auth(&issued.access_token)
                    .form(&[("token", issued.access_token.as_str())])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(used.active);
                let revoked = http
                    .post(format!("{url}/v1/token/revoke"))
                    .bearer_auth(&issued.access_token)
                    .send()
                    .await
                    .unwrap();
                assert!(revoked.status().is_success());
                start.elapsed()
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(count);
    for handle in handles {
        samples.push(handle.await.unwrap());
    }
    let wall = began.elapsed();
    let left: Vec<Grant> = broker
        .as_user("erin")
        .get("/v1/grants?workloads=true&limit=10000")
        .await
        .unwrap();
    println!(
        "{}",
        json!({
            "id": "workloads.tasks",
            "run": 0,
            "metrics": {
                "task": summary(&mut samples),
                "wall_s": wall.as_secs_f64(),
                "active_after": left.len(),
            },
            "meta": { "what": format!(
                "{count} short tasks started at once, each: exchange (POST /v1/token), use \
                 (POST /v1/introspect with its own credential), revoke (POST /v1/token/revoke); \
                 then the active workload grants an auditor sees (GET /v1/grants?workloads=true)") },
        })
    );
    assert!(
        left.is_empty(),
        "{} workload grants left active",
        left.len()
    );
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    let mode = args.0.first().cloned().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match mode.as_str() {
            "rate" => rate(args.number("--rps", 200), args.number("--seconds", 10)).await,
            "tasks" => tasks(args.number("--tasks", 1000)).await,
            _ => eprintln!("workloads: rate | tasks (see the source); nothing to do"),
        }
    });
}
