//! The policy's `[settings]`: time limits, auditors, the credential issuer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{PolicyError, Source, duration};

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a request may wait for a decision before it times out.
    pub pending_ttl: Duration,
    /// How long an approver's claim on a request lasts.
    pub claim_ttl: Duration,
    /// Longest lifetime of one issued credential (never past the grant).
    pub credential_ttl: Duration,
    pub auditor_groups: Vec<String>,
    /// `iss` of issued credentials.
    pub issuer: String,
}

pub(super) fn default_settings() -> Spanned<RawSettings> {
    Spanned::new(0..0, RawSettings::default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSettings {
    #[serde(deserialize_with = "duration")]
    pending_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    claim_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    credential_ttl: Duration,
    auditor_groups: Vec<String>,
    issuer: String,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            pending_ttl: Duration::from_secs(3600),
            claim_ttl: Duration::from_secs(600),
            credential_ttl: Duration::from_secs(300),
            auditor_groups: Vec::new(),
            issuer: "hoistd".to_string(),
        }
    }
}

/// Checks `[settings]` against the groups the policy defines.
pub(super) fn settings(
    source: &Source<'_>,
    raw: Spanned<RawSettings>,
    groups: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Settings, PolicyError> {
    let offset = raw.span().start;
    let raw = raw.into_inner();
    source.known_groups(
        groups,
        &raw.auditor_groups,
        "settings.auditor_groups",
        offset,
    )?;
    for (what, value) in [
        ("pending_ttl", raw.pending_ttl),
        ("claim_ttl", raw.claim_ttl),
        ("credential_ttl", raw.credential_ttl),
    ] {
        if value.is_zero() {
            return Err(source.invalid(offset, format!("settings.{what} must be longer than zero")));
        }
    }
    Ok(Settings {
        pending_ttl: raw.pending_ttl,
        claim_ttl: raw.claim_ttl,
        credential_ttl: raw.credential_ttl,
        auditor_groups: raw.auditor_groups,
        issuer: raw.issuer,
    })
}
