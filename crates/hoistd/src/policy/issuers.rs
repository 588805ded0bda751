//! The policy's `[[oidc]]`: OpenID providers whose ID tokens are accepted.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::tiers::optional_duration;
use super::{PolicyError, Source, duration};

/// An OpenID provider whose ID tokens are accepted as bearer tokens.
#[derive(Debug, Clone)]
pub struct OidcIssuer {
    pub issuer: String,
    /// The public client hoist signs in as.
    pub client_id: String,
    /// Accepted `aud` values (the client id unless given).
    pub audiences: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub flows: Vec<String>,
    pub scopes: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest one fetch of the discovery document and keys may take.
    pub keys_timeout: Duration,
    /// Least time between two fetches of the keys for unknown key ids:
    /// until then an unknown key id is answered as unknown at once.
    pub keys_refetch_after: Duration,
    /// How long a fetched key set answers before it is fetched again in
    /// the background (a key the provider removed is trusted this long).
    pub keys_ttl: Duration,
    /// How long a fetched key set is trusted at all: past it, tokens wait
    /// for a fresh set and are refused while the provider cannot give one.
    pub keys_max_age: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    issuer: String,
    client_id: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_username_claim")]
    username_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_flows")]
    flows: Vec<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    leeway: Duration,
    #[serde(default = "default_keys_timeout", deserialize_with = "duration")]
    keys_timeout: Duration,
    #[serde(default = "default_keys_refetch_after", deserialize_with = "duration")]
    keys_refetch_after: Duration,
    #[serde(default, deserialize_with = "optional_duration")]
    keys_ttl: Option<Duration>,
    #[serde(default = "default_keys_max_age", deserialize_with = "duration")]
    keys_max_age: Duration,
}

pub(super) fn default_keys_max_age() -> Duration {
    Duration::from_secs(24 * 3_600)
}

/// Checks how long an issuer's fetched keys are used (`[[oidc]]` and
/// `[[workloads]]` alike), and returns its `keys_ttl`: after it, keys are
/// fetched again while still answering; unless given, an hour, or
/// `keys_refetch_after` if that is longer (keys are fetched at most once
/// per `keys_refetch_after`). Past `keys_max_age`, keys are not trusted
/// until a fetch succeeds.
pub(super) fn key_ages(
    keys_refetch_after: Duration,
    keys_ttl: Option<Duration>,
    keys_max_age: Duration,
) -> Result<Duration, String> {
    let keys_ttl = keys_ttl.unwrap_or_else(|| Duration::from_secs(3_600).max(keys_refetch_after));
    if keys_ttl < keys_refetch_after {
        // Keys are fetched at most once per `keys_refetch_after`.
        return Err(format!(
            "keys_ttl ({}) is shorter than keys_refetch_after ({}), the least time between two \
             fetches of the keys",
            humantime::format_duration(keys_ttl),
            humantime::format_duration(keys_refetch_after)
        ));
    }
    if keys_max_age < keys_ttl {
        return Err(format!(
            "keys_max_age ({}) is shorter than keys_ttl ({}): keys would stop being trusted \
             before they are fetched again",
            humantime::format_duration(keys_max_age),
            humantime::format_duration(keys_ttl)
        ));
    }
    Ok(keys_ttl)
}

fn default_keys_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_keys_refetch_after() -> Duration {
    Duration::from_secs(30)
}

/// The most clock skew tolerated on people's tokens: a sign-in token is
/// fresh, so more than this would only let expired tokens in.
pub const MAX_OIDC_LEEWAY: Duration = Duration::from_secs(300);

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}

fn default_flows() -> Vec<String> {
    ["device", "browser"].map(String::from).to_vec()
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .map(String::from)
        .to_vec()
}
/// Checks each provider: https (http only on loopback), public-key
/// algorithms, known sign-in flows.
pub(super) fn issuers(
    source: &Source<'_>,
    raw: Vec<Spanned<RawOidc>>,
) -> Result<Vec<OidcIssuer>, PolicyError> {
    let mut oidc = Vec::new();
    for issuer in raw {
        let offset = issuer.span().start;
        let issuer = issuer.into_inner();
        check_url(&issuer.issuer)
            .map_err(|reason| source.invalid(offset, format!("oidc {reason}")))?;
        let algorithms = algorithms(&issuer.algorithms)
            .map_err(|reason| source.invalid(offset, format!("oidc {reason}")))?;
        if let Some(flow) = issuer
            .flows
            .iter()
            .find(|f| !matches!(f.as_str(), "device" | "browser"))
        {
            return Err(source.invalid(
                offset,
                format!("oidc flow `{flow}` is not `device` or `browser`"),
            ));
        }
        if issuer.keys_timeout.is_zero() {
            return Err(source.invalid(offset, "oidc keys_timeout must be longer than zero".into()));
        }
        if issuer.leeway > MAX_OIDC_LEEWAY {
            return Err(source.invalid(
                offset,
                format!(
                    "oidc leeway {}s is above the most allowed, {}s: it allows for clock skew, \
                     not for expired tokens",
                    issuer.leeway.as_secs(),
                    MAX_OIDC_LEEWAY.as_secs()
                ),
            ));
        }
        if issuer.keys_refetch_after < Duration::from_secs(1) {
            return Err(source.invalid(
                offset,
                "oidc keys_refetch_after must be at least 1s, or a stream of unknown key ids \
                 would fetch the provider's keys without pause"
                    .into(),
            ));
        }
        let keys_ttl = key_ages(
            issuer.keys_refetch_after,
            issuer.keys_ttl,
            issuer.keys_max_age,
        )
        .map_err(|reason| source.invalid(offset, format!("oidc {reason}")))?;
        let name = issuer.issuer.trim_end_matches('/');
        if oidc.iter().any(|known: &OidcIssuer| known.issuer == name) {
            // Tokens are checked against the first; a second's settings
            // would be shown to clients and never applied.
            return Err(source.invalid(offset, format!("oidc issuer `{name}` is defined twice")));
        }
        oidc.push(OidcIssuer {
            audiences: if issuer.audiences.is_empty() {
                vec![issuer.client_id.clone()]
            } else {
                issuer.audiences
            },
            issuer: issuer.issuer.trim_end_matches('/').to_string(),
            client_id: issuer.client_id,
            username_claim: issuer.username_claim,
            groups_claim: issuer.groups_claim,
            algorithms,
            flows: issuer.flows,
            scopes: issuer.scopes,
            leeway: issuer.leeway,
            keys_timeout: issuer.keys_timeout,
            keys_refetch_after: issuer.keys_refetch_after,
            keys_ttl,
            keys_max_age: issuer.keys_max_age,
        });
    }
    Ok(oidc)
}

/// An issuer URL must be https, or http on a loopback address.
pub(super) fn check_url(issuer: &str) -> Result<(), String> {
    provider_url("issuer", issuer)
}

/// A URL of an OpenID provider's (`what` names it in the refusal) must be
/// https, or http on a loopback address.
pub(crate) fn provider_url(what: &str, raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|err| format!("{what} `{raw}`: {err}"))?;
    if !crate::outbound::allowed(&url) {
        return Err(format!(
            "{what} `{raw}` must use https (http only on loopback)"
        ));
    }
    Ok(())
}

/// Algorithm names as `jsonwebtoken` knows them; symmetric ones refused,
/// since a shared secret would let anyone who verifies tokens mint them.
pub(super) fn algorithms(names: &[String]) -> Result<Vec<jsonwebtoken::Algorithm>, String> {
    let mut algorithms = Vec::new();
    for name in names {
        let alg: jsonwebtoken::Algorithm = name
            .parse()
            .map_err(|_| format!("algorithm `{name}` is not known"))?;
        if matches!(
            alg,
            jsonwebtoken::Algorithm::HS256
                | jsonwebtoken::Algorithm::HS384
                | jsonwebtoken::Algorithm::HS512
        ) {
            return Err(format!(
                "algorithm `{name}` is symmetric; only public-key algorithms are accepted"
            ));
        }
        algorithms.push(alg);
    }
    Ok(algorithms)
}
