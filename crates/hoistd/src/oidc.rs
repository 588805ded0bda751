//! Bearer JWTs from OpenID providers: keys from each issuer's discovery
//! document and JWKS (cached, fetched again for an unknown `kid`), and the
//! checks that make a token count: signature with an allowed public-key
//! algorithm, `iss`, `aud`, `exp`/`nbf` with a small leeway.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::policy::{OidcIssuer, Policy};

/// A JWKS is fetched again at most this often when an unknown `kid` arrives,
/// so forged `kid`s cannot make the broker hammer the provider.
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// Keys are fetched again after this long even when every `kid` is known.
const KEYS_TTL: Duration = Duration::from_secs(3600);

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub display_name: String,
    pub groups: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("tokens from issuer `{0}` are not accepted")]
    UnknownIssuer(String),
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no signing key `{0}` at the issuer")]
    UnknownKey(String),
    #[error("the issuer's keys could not be fetched: {0}")]
    Keys(String),
    #[error("the token was refused: {0}")]
    Invalid(String),
    #[error("the token has no usable `{0}` claim")]
    Claim(String),
    #[error("the token names `{0}`, the broker's own name, which no user may have")]
    Reserved(String),
}

#[derive(Default)]
struct Keys {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

/// Verifies ID tokens against the issuers of the current policy.
pub struct Verifier {
    http: reqwest::Client,
    keys: Mutex<HashMap<String, Keys>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    pub fn new() -> Verifier {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Verifier {
            http,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub async fn verify(&self, policy: &Policy, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let unverified: Unverified =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        let iss = unverified.iss.ok_or(TokenError::Malformed)?;
        let issuer = policy
            .oidc
            .iter()
            .find(|i| i.issuer == iss.trim_end_matches('/'))
            .ok_or_else(|| TokenError::UnknownIssuer(iss.clone()))?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let jwk = self.key(issuer, &kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|err| TokenError::Keys(err.to_string()))?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = issuer.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&iss]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?
            .claims;
        identity(issuer, &claims)
    }

    /// The issuer's key `kid`, from cache or freshly fetched.
    async fn key(
        &self,
        issuer: &OidcIssuer,
        kid: &str,
    ) -> Result<jsonwebtoken::jwk::Jwk, TokenError> {
        let mut cache = self.keys.lock().await;
        let entry = cache.entry(issuer.issuer.clone()).or_default();
        let find = |set: &Option<JwkSet>| {
            set.as_ref().and_then(|set| {
                if kid.is_empty() && set.keys.len() == 1 {
                    set.keys.first().cloned()
                } else {
                    set.find(kid).cloned()
                }
            })
        };
        let stale = entry.fetched.is_none_or(|at| at.elapsed() > KEYS_TTL);
        if !stale && let Some(jwk) = find(&entry.set) {
            return Ok(jwk);
        }
        let may_fetch = stale || entry.fetched.is_none_or(|at| at.elapsed() > REFETCH_AFTER);
        if may_fetch {
            entry.set = Some(self.fetch(issuer).await?);
            entry.fetched = Some(Instant::now());
        }
        find(&entry.set).ok_or_else(|| TokenError::UnknownKey(kid.to_string()))
    }

    async fn fetch(&self, issuer: &OidcIssuer) -> Result<JwkSet, TokenError> {
        let keys = |err: reqwest::Error| TokenError::Keys(err.without_url().to_string());
        let discovery: Discovery = self
            .http
            .get(format!(
                "{}/.well-known/openid-configuration",
                issuer.issuer
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(keys)?
            .json()
            .await
            .map_err(keys)?;
        if discovery.issuer.trim_end_matches('/') != issuer.issuer {
            return Err(TokenError::Keys(format!(
                "the discovery document names issuer `{}`, not `{}`",
                discovery.issuer, issuer.issuer
            )));
        }
        self.http
            .get(&discovery.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(keys)?
            .json()
            .await
            .map_err(keys)
    }
}

fn identity(issuer: &OidcIssuer, claims: &serde_json::Value) -> Result<Identity, TokenError> {
    let user = claims
        .get(&issuer.username_claim)
        .and_then(|v| v.as_str())
        .filter(|name| crate::policy::valid_name(name))
        .ok_or_else(|| TokenError::Claim(issuer.username_claim.clone()))?
        .to_string();
    if crate::policy::reserved_name(&user) {
        return Err(TokenError::Reserved(user));
    }
    let groups = match claims.get(&issuer.groups_claim) {
        None | Some(serde_json::Value::Null) => BTreeSet::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str())
            .map(str::to_string)
            .collect(),
        Some(serde_json::Value::String(one)) => BTreeSet::from([one.clone()]),
        Some(_) => return Err(TokenError::Claim(issuer.groups_claim.clone())),
    };
    let display_name = claims
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(&user)
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    Ok(Identity {
        user,
        display_name,
        groups,
    })
}
