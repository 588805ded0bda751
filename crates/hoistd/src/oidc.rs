//! Bearer JWTs from OpenID providers: keys from each issuer's discovery
//! document and JWKS, and the checks that make a token count: signature with
//! an allowed public-key algorithm, `iss`, `aud`, `exp`/`nbf` with a small
//! leeway.
//!
//! The key cache is never locked across a network call. A token whose key is
//! cached is answered from the cache at once, even while a fetch is under
//! way. A fetch runs as a task of its own, one per issuer at a time, bounded
//! by the issuer's `keys_timeout`; tokens with unknown key ids wait for that
//! one fetch rather than each starting their own, and between fetches (at
//! most one per `keys_refetch_after`) an unknown key id is answered as
//! unknown without asking the provider.
//!
//! A set older than the issuer's `keys_ttl` is fetched again in the
//! background while it keeps answering, so a key the provider removed is
//! trusted at most that long once it answers again. A set older than
//! `keys_max_age` answers nothing: while the provider cannot be reached, its
//! tokens are refused rather than checked against keys it may have retired.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use crate::policy::{OidcIssuer, Policy};

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider (`iss`), as the policy names it.
    pub issuer: String,
    /// The provider's stable id of the person (`sub`).
    pub subject: String,
    /// The user name the token claims (the issuer's `username_claim`). It
    /// only names a new person; who a known `(issuer, subject)` is, is
    /// decided by the broker's bindings.
    pub user: String,
    pub display_name: String,
    pub groups: BTreeSet<String>,
    /// The token stops being accepted at this moment (`exp` plus leeway).
    pub expires_at: DateTime<Utc>,
    /// When the person last signed in at the provider (`auth_time`), if the
    /// token says; a refreshed token keeps the sign-in's time.
    pub signed_in_at: Option<DateTime<Utc>>,
    /// When the provider said all this: the token's `iat` (which OpenID
    /// Connect requires of an ID token). Orders what different tokens say
    /// of one person; a token without it is older than any that has it.
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify with the issuer's keys")]
    Signature,
}

/// One issuer's fetch of its keys, which every caller waiting on it shares.
type Fetch = Shared<BoxFuture<'static, Result<Arc<JwkSet>, TokenError>>>;

#[derive(Default)]
struct IssuerKeys {
    set: Option<Arc<JwkSet>>,
    /// When `set` arrived.
    loaded: Option<Instant>,
    /// When the last fetch ended, whether or not it brought keys.
    attempted: Option<Instant>,
    /// Why the last fetch brought no keys, if it did not: a key looked
    /// for until the next may be fetched is then unknown for that reason
    /// (the issuer away, worth trying again), not absent from its set.
    failed: Option<String>,
    fetching: Option<Fetch>,
}

/// What the cache can say about a key without waiting.
enum Lookup {
    Found(Box<Jwk>),
    Unknown,
    /// Not fetched: the last fetch failed lately, for this reason.
    Unfetched(String),
    Wait(Fetch),
}

/// Verifies ID tokens against the issuers of the current policy.
pub struct Verifier {
    http: crate::outbound::Clients,
    issuers: Arc<Mutex<HashMap<String, IssuerKeys>>>,
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
        Verifier {
            http: crate::outbound::Clients::new(),
            issuers: Arc::default(),
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
            .ok_or_else(|| TokenError::UnknownIssuer(claimed(&iss)))?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let jwk = self.key(issuer, &kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|err| TokenError::Keys(err.to_string()))?;

        let mut validation = Validation::new(header.alg);
        // Times are checked below, by hoistd's clock.
        validation.validate_exp = false;
        validation.set_issuer(&[&iss]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?
            .claims;
        check_nbf(&claims, issuer.leeway)?;
        let identity = identity(issuer, &claims)?;
        // The check above counts whole seconds and accepts a token while
        // now == exp; its end is exclusive, to the millisecond, here as in
        // every stream that ends at it.
        if crate::broker::now() >= identity.expires_at {
            return Err(TokenError::Invalid("the token has expired".into()));
        }
        Ok(identity)
    }

    /// The claims of a workload identity token from `issuer`: its header's
    /// algorithm one the issuer accepts (never `none` nor HMAC), signed by
    /// one of the issuer's keys (the same cache as people's tokens), `iss`
    /// the issuer's, within `exp`/`nbf` (`exp` exclusive, to the
    /// millisecond). The audience and the other claims are the caller's to
    /// check against its rules.
    pub async fn verify_claims(
        &self,
        issuer: &OidcIssuer,
        token: &str,
    ) -> Result<serde_json::Value, TokenError> {
        let header = token.split('.').next().ok_or(TokenError::Malformed)?;
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(TokenError::Malformed)?;
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        // Refused by name before anything else reads the token: `none`
        // carries no signature, and an HMAC key would be the issuer's public
        // key used as a shared secret.
        if alg.eq_ignore_ascii_case("none") || alg.to_ascii_uppercase().starts_with("HS") {
            return Err(TokenError::Algorithm(claimed(alg)));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let jwk = self.key(issuer, &kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|err| TokenError::Keys(err.to_string()))?;
        let mut validation = Validation::new(header.alg);
        // Times are checked below, by hoistd's clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[&issuer.issuer, &format!("{}/", issuer.issuer)]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::Signature,
                _ => TokenError::Invalid(err.to_string()),
            })?
            .claims;
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| TokenError::Claim("exp".into()))?;
        let leeway = i64::try_from(issuer.leeway.as_millis()).unwrap_or(i64::MAX);
        if crate::broker::now().timestamp_millis()
            >= exp.saturating_mul(1000).saturating_add(leeway)
        {
            return Err(TokenError::Expired);
        }
        check_nbf(&claims, issuer.leeway)?;
        check_iat(&claims, issuer.leeway)?;
        Ok(claims)
    }

    /// The issuer's key `kid`: from the cache if it is there, without
    /// waiting on anything; otherwise from the issuer's one fetch in flight,
    /// or a new one if none ran lately.
    async fn key(&self, issuer: &OidcIssuer, kid: &str) -> Result<Jwk, TokenError> {
        let lookup = {
            let mut issuers = self.issuers.lock().unwrap_or_else(|p| p.into_inner());
            let entry = issuers.entry(issuer.issuer.clone()).or_default();
            let age = entry.loaded.map(|at| at.elapsed());
            // Past `keys_max_age` the set is not trusted: a key in it is
            // looked for as if unknown, waiting for a fresh set, and refused
            // for the provider's failure while none can be had.
            let found = entry
                .set
                .as_deref()
                .filter(|_| age.is_some_and(|age| age <= issuer.keys_max_age))
                .and_then(|set| find(set, kid));
            let stale = age.is_none_or(|age| age > issuer.keys_ttl);
            let fetched_lately = entry
                .attempted
                .is_some_and(|at| at.elapsed() < issuer.keys_refetch_after);
            match (found, &entry.fetching) {
                (Some(jwk), fetching) => {
                    // Refresh in the background; this caller does not wait.
                    if stale && fetching.is_none() && !fetched_lately {
                        entry.fetching = Some(self.fetch(issuer));
                    }
                    Lookup::Found(Box::new(jwk))
                }
                (None, Some(fetch)) => Lookup::Wait(fetch.clone()),
                (None, None) if fetched_lately => match &entry.failed {
                    Some(why) => Lookup::Unfetched(why.clone()),
                    None => Lookup::Unknown,
                },
                (None, None) => {
                    let fetch = self.fetch(issuer);
                    entry.fetching = Some(fetch.clone());
                    Lookup::Wait(fetch)
                }
            }
        };
        let unknown = || TokenError::UnknownKey(claimed(kid));
        match lookup {
            Lookup::Found(jwk) => Ok(*jwk),
            Lookup::Unknown => Err(unknown()),
            Lookup::Unfetched(why) => Err(TokenError::Keys(why)),
            Lookup::Wait(fetch) => find(fetch.await?.as_ref(), kid).ok_or_else(unknown),
        }
    }

    /// Starts fetching the issuer's keys in a task of its own, bounded by its
    /// `keys_timeout`; the task records the outcome in the cache, so the
    /// fetch completes even if every caller waiting on it goes away.
    fn fetch(&self, issuer: &OidcIssuer) -> Fetch {
        let http = self.http.clone();
        let issuers = Arc::clone(&self.issuers);
        let issuer = issuer.clone();
        let task = tokio::spawn(async move {
            let fetched =
                match tokio::time::timeout(issuer.keys_timeout, fetch(&http, &issuer)).await {
                    Ok(fetched) => fetched.map(Arc::new),
                    Err(_) => Err(TokenError::Keys(format!(
                        "no answer within {}",
                        humantime::format_duration(issuer.keys_timeout)
                    ))),
                };
            let mut all = issuers.lock().unwrap_or_else(|p| p.into_inner());
            let entry = all.entry(issuer.issuer.clone()).or_default();
            entry.fetching = None;
            entry.attempted = Some(Instant::now());
            match &fetched {
                Ok(set) => {
                    entry.set = Some(Arc::clone(set));
                    entry.loaded = entry.attempted;
                    entry.failed = None;
                }
                Err(err) => {
                    tracing::warn!(issuer = %issuer.issuer, error = %err, "keys not fetched");
                    entry.failed = Some(match err {
                        TokenError::Keys(why) => why.clone(),
                        other => other.to_string(),
                    });
                }
            }
            fetched
        });
        async move {
            task.await
                .unwrap_or_else(|err| Err(TokenError::Keys(err.to_string())))
        }
        .boxed()
        .shared()
    }
}

fn find(set: &JwkSet, kid: &str) -> Option<Jwk> {
    if kid.is_empty() && set.keys.len() == 1 {
        set.keys.first().cloned()
    } else {
        set.find(kid).cloned()
    }
}

/// The most of a discovery document or key set read (1 MiB; both are a
/// few KiB): a provider that sends more is refused, not held in memory.
const MAX_PROVIDER_ANSWER: usize = 1 << 20;

/// The issuer's discovery document, then the key set it points at, which
/// must be https too (http only on loopback): keys fetched in the clear
/// would let anyone on the way add one and sign tokens.
async fn fetch(http: &crate::outbound::Clients, issuer: &OidcIssuer) -> Result<JwkSet, TokenError> {
    let discovery: Discovery = read_json(
        http,
        &format!("{}/.well-known/openid-configuration", issuer.issuer),
    )
    .await?;
    if discovery.issuer.trim_end_matches('/') != issuer.issuer {
        return Err(TokenError::Keys(format!(
            "the discovery document names issuer `{}`, not `{}`",
            claimed(&discovery.issuer),
            issuer.issuer
        )));
    }
    crate::policy::provider_url("the discovery document's jwks_uri", &discovery.jwks_uri)
        .map_err(TokenError::Keys)?;
    read_json(http, &discovery.jwks_uri).await
}

/// GETs `url` and reads its JSON answer, refusing one past
/// [`MAX_PROVIDER_ANSWER`].
async fn read_json<T: serde::de::DeserializeOwned>(
    http: &crate::outbound::Clients,
    url: &str,
) -> Result<T, TokenError> {
    let keys = |err: reqwest::Error| TokenError::Keys(err.without_url().to_string());
    let mut answer = http
        .for_url(url)
        .ok_or_else(|| TokenError::Keys("no HTTP client could be made on this machine".into()))?
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(keys)?;
    let too_large = || {
        TokenError::Keys(format!(
            "the provider's answer is larger than {} KiB",
            MAX_PROVIDER_ANSWER >> 10
        ))
    };
    if answer
        .content_length()
        .is_some_and(|length| length > MAX_PROVIDER_ANSWER as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(keys)? {
        if body.len() + chunk.len() > MAX_PROVIDER_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|err| TokenError::Keys(format!("the provider's answer is not as expected: {err}")))
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
    let subject = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .filter(|sub| !sub.is_empty())
        .ok_or_else(|| TokenError::Claim("sub".into()))?
        .to_string();
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_i64())
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
        .ok_or_else(|| TokenError::Claim("exp".into()))?;
    let expires_at = exp + TimeDelta::from_std(issuer.leeway).unwrap_or(TimeDelta::zero());
    let as_of = claims
        .get("iat")
        .and_then(|v| v.as_i64())
        .and_then(|at| DateTime::from_timestamp(at, 0));
    let signed_in_at = claims
        .get("auth_time")
        .and_then(|v| v.as_i64())
        .and_then(|at| DateTime::from_timestamp(at, 0));
    // Issued, or signed in, later than now: a provider's clock gone wrong.
    // Taken, the sign-in would stay recent for every step-up check, and the
    // provider's word (groups, name) outrank any later token's.
    let latest =
        crate::broker::now() + TimeDelta::from_std(issuer.leeway).unwrap_or(TimeDelta::zero());
    for (claim, at) in [("iat", as_of), ("auth_time", signed_in_at)] {
        if at.is_some_and(|at| at > latest) {
            return Err(TokenError::Invalid(format!(
                "the token's `{claim}` is in the future (check the provider's clock)"
            )));
        }
    }
    Ok(Identity {
        issuer: issuer.issuer.clone(),
        subject,
        user,
        display_name,
        groups,
        expires_at,
        signed_in_at,
        as_of,
    })
}

/// The most characters [`claimed`] keeps.
pub(crate) const MAX_CLAIMED_CHARS: usize = 255;

/// Text a token claims (verified or not: its header's `alg` and `kid`,
/// its `iss`, a workload's claims), made safe for errors and the audit log
/// to repeat: no control or invisible characters, and bounded.
pub(crate) fn claimed(text: &str) -> String {
    hoist_api::text::visible_chars(text.chars().filter(|c| !c.is_control()))
        .take(MAX_CLAIMED_CHARS)
        .collect()
}

/// Refuses a token whose `nbf` is still ahead of hoistd's clock by more
/// than `leeway`, or is not a number (a token without one is valid from
/// its issue).
fn check_nbf(claims: &serde_json::Value, leeway: std::time::Duration) -> Result<(), TokenError> {
    if later_than_now(claims, "nbf", leeway)? {
        return Err(TokenError::Invalid("the token is not valid yet".into()));
    }
    Ok(())
}

/// A token issued later than now (beyond the leeway) is refused: its
/// issuer's clock has gone wrong, and whatever it says of the time (`exp`
/// too) is not to be taken.
fn check_iat(claims: &serde_json::Value, leeway: std::time::Duration) -> Result<(), TokenError> {
    if later_than_now(claims, "iat", leeway)? {
        return Err(TokenError::Invalid(
            "the token's `iat` is in the future (check the issuer's clock)".into(),
        ));
    }
    Ok(())
}

/// Whether the time `claim` names (seconds since the epoch, of any kind)
/// is later than now by more than `leeway`; a token without it is not,
/// one whose value is not a number is refused.
fn later_than_now(
    claims: &serde_json::Value,
    claim: &str,
    leeway: std::time::Duration,
) -> Result<bool, TokenError> {
    let at = match claims.get(claim) {
        None | Some(serde_json::Value::Null) => return Ok(false),
        Some(at) => at.as_f64().ok_or_else(|| TokenError::Claim(claim.into()))?,
    };
    let now = crate::clock::now().timestamp_millis() as f64;
    Ok(at * 1000.0 - leeway.as_millis() as f64 > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// What a token claims before it is verified reaches errors (and so
    /// the audit log) without control or invisible characters, and cut.
    #[test]
    fn claimed_text_is_shown_clean_and_cut() {
        assert_eq!(claimed("HS256\u{1b}]0;owned\u{7}"), "HS256]0;owned");
        assert_eq!(claimed("kid\u{202e}1"), "kid1");
        assert_eq!(claimed("refs/heads/main\u{FE0F}"), "refs/heads/main");
        assert_eq!(claimed(&"k".repeat(10_000)).len(), MAX_CLAIMED_CHARS);
    }

    /// `nbf` is held to hoistd's clock, within the leeway, as a number of
    /// any kind; a token without one is valid at once, one whose `nbf` is
    /// not a number is not.
    #[test]
    fn a_token_is_not_valid_before_its_nbf_beyond_the_leeway() {
        let now = crate::clock::now().timestamp();
        let leeway = std::time::Duration::from_secs(30);
        let check = |claims: serde_json::Value, leeway| check_nbf(&claims, leeway);
        assert!(check(serde_json::json!({}), leeway).is_ok());
        assert!(check(serde_json::json!({ "nbf": null }), leeway).is_ok());
        assert!(check(serde_json::json!({ "nbf": now }), leeway).is_ok());
        assert!(check(serde_json::json!({ "nbf": now + 20 }), leeway).is_ok());
        assert!(check(serde_json::json!({ "nbf": now + 60 }), leeway).is_err());
        assert!(
            check(
                serde_json::json!({ "nbf": (now + 60) as f64 + 0.5 }),
                leeway
            )
            .is_err()
        );
        assert!(
            check(
                serde_json::json!({ "nbf": now + 20 }),
                std::time::Duration::ZERO
            )
            .is_err()
        );
        assert_eq!(
            check(serde_json::json!({ "nbf": "1900000000" }), leeway),
            Err(TokenError::Claim("nbf".into()))
        );
    }

    /// Nor is one issued later than now beyond the leeway.
    #[test]
    fn a_token_issued_in_the_future_beyond_the_leeway_is_refused() {
        let now = crate::clock::now().timestamp();
        let leeway = std::time::Duration::from_secs(30);
        let check = |claims: serde_json::Value| check_iat(&claims, leeway);
        assert!(check(serde_json::json!({})).is_ok());
        assert!(check(serde_json::json!({ "iat": now + 20 })).is_ok());
        assert!(check(serde_json::json!({ "iat": now + 60 })).is_err());
        assert_eq!(
            check(serde_json::json!({ "iat": "soon" })),
            Err(TokenError::Claim("iat".into()))
        );
    }

    /// A provider on loopback whose discovery document says `jwks_uri`,
    /// and whose `/jwks` answers `jwks`.
    async fn provider(jwks_uri: impl Fn(&str) -> String, jwks: Vec<u8>) -> OidcIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let discovery = serde_json::json!({"issuer": issuer, "jwks_uri": jwks_uri(&issuer)});
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route("/jwks", axum::routing::get(move || async move { jwks }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        OidcIssuer {
            issuer,
            client_id: "hoist".into(),
            audiences: vec!["hoist".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            flows: Vec::new(),
            scopes: Vec::new(),
            leeway: Duration::from_secs(30),
            keys_timeout: Duration::from_secs(5),
            keys_refetch_after: Duration::from_secs(1),
            keys_ttl: Duration::from_secs(3_600),
            keys_max_age: Duration::from_secs(24 * 3_600),
        }
    }

    /// A key looked for while the issuer's keys could not be fetched
    /// lately is unavailable (worth trying again), not unknown: before the
    /// next fetch may run, as while it ran.
    #[tokio::test]
    async fn a_key_is_unavailable_not_unknown_while_its_issuer_fails() {
        let mut issuer =
            provider(|issuer| format!("{issuer}/jwks"), b"not a key set".to_vec()).await;
        issuer.keys_refetch_after = Duration::from_secs(60);
        let verifier = Verifier::new();
        for attempt in ["the fetch", "the next look"] {
            let err = verifier.key(&issuer, "k1").await.unwrap_err();
            assert!(matches!(err, TokenError::Keys(_)), "{attempt}: {err:?}");
        }
    }

    #[tokio::test]
    async fn keys_come_over_https_only_and_within_a_bound() {
        let http = crate::outbound::Clients::new();
        let keys = br#"{"keys": []}"#.to_vec();
        let fine = provider(|issuer| format!("{issuer}/jwks"), keys.clone()).await;
        assert!(fetch(&http, &fine).await.unwrap().keys.is_empty());

        let clear = provider(|_| "http://keys.idp.example/jwks".into(), keys).await;
        let err = fetch(&http, &clear).await.unwrap_err().to_string();
        assert!(
            err.contains("jwks_uri `http://keys.idp.example/jwks` must use https"),
            "{err}"
        );

        let mut huge = br#"{"keys": [], "pad": ""#.to_vec();
        huge.resize(MAX_PROVIDER_ANSWER + 1, b'x');
        huge.extend_from_slice(br#""}"#);
        let flood = provider(|issuer| format!("{issuer}/jwks"), huge).await;
        let err = fetch(&http, &flood).await.unwrap_err().to_string();
        assert!(err.contains("larger than 1024 KiB"), "{err}");
    }
}
