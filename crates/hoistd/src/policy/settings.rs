//! The policy's `[settings]`: time limits, auditors, the credential issuer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{PolicyError, Source, duration};
use crate::notify::Link;

/// `settings.issuer` when the policy sets none. Targets label what they
/// make with the issuer, so two deployments left at it that share a
/// target take each other's access for their own.
pub const DEFAULT_ISSUER: &str = "hoistd";

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
    /// How often one identity may fetch credentials, introspect and file
    /// (and, at the filing rate, claim or release requests).
    pub credential_fetch_rate: Rate,
    pub introspection_rate: Rate,
    pub filing_rate: Rate,
    /// How often targets are compared with the grants hoist holds.
    pub reconcile_every: Duration,
    /// Where a request opens (`{id}`), for the link in notifications;
    /// without it they name the command that opens it, `hoist status ID`.
    pub request_url: Option<Link>,
    /// Where a ticket opens (`{ticket}`), for the link in notifications.
    pub ticket_url: Option<Link>,
    /// What every incident reference must be, whole (`INC-[0-9]+`): one
    /// stands in for a ticket when breaking glass, so a typo or a made-up
    /// reference is refused. None: any reference (one printable word).
    pub incident_pattern: Option<regex::Regex>,
}

/// At most `count` in each `per`, in a burst or spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    const fn per_minute(count: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} per {}",
            self.count,
            humantime::format_duration(self.per)
        )
    }
}

/// `"60/m"`, `"10/s"`, `"1000/h"`, or `"5/30s"`.
fn rate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
    let text = String::deserialize(deserializer)?;
    let invalid = || {
        serde::de::Error::custom(format!(
            "invalid rate \"{text}\": write a count and a period, such as \"60/m\" or \"5/30s\""
        ))
    };
    let (count, per) = text.split_once('/').ok_or_else(invalid)?;
    let count: u32 = count.trim().parse().map_err(|_| invalid())?;
    let per = match per.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => super::parse_duration(other).map_err(|_| invalid())?,
    };
    if count == 0 || per.is_zero() {
        return Err(serde::de::Error::custom(format!(
            "invalid rate \"{text}\": the count and the period must be above zero"
        )));
    }
    Ok(Rate { count, per })
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
    #[serde(deserialize_with = "rate")]
    credential_fetch_rate: Rate,
    #[serde(deserialize_with = "rate")]
    introspection_rate: Rate,
    #[serde(deserialize_with = "rate")]
    filing_rate: Rate,
    #[serde(deserialize_with = "duration")]
    reconcile_every: Duration,
    request_url: Option<String>,
    ticket_url: Option<String>,
    incident_pattern: Option<String>,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            pending_ttl: Duration::from_secs(3600),
            claim_ttl: Duration::from_secs(600),
            credential_ttl: Duration::from_secs(300),
            auditor_groups: Vec::new(),
            issuer: DEFAULT_ISSUER.to_string(),
            // A script fetching a credential per step stays well inside
            // these; a loop fetching as fast as it can does not.
            credential_fetch_rate: Rate::per_minute(60),
            introspection_rate: Rate::per_minute(1200),
            filing_rate: Rate::per_minute(20),
            reconcile_every: Duration::from_secs(300),
            request_url: None,
            ticket_url: None,
            incident_pattern: None,
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
        ("reconcile_every", raw.reconcile_every),
    ] {
        if value.is_zero() {
            return Err(source.invalid(offset, format!("settings.{what} must be longer than zero")));
        }
    }
    let link = |what: &str, template: Option<&String>, placeholder: &'static str| {
        template
            .map(|template| {
                Link::new(template, placeholder)
                    .map_err(|why| source.invalid(offset, format!("settings.{what} {why}")))
            })
            .transpose()
    };
    let request_url = link("request_url", raw.request_url.as_ref(), "{id}")?;
    let ticket_url = link("ticket_url", raw.ticket_url.as_ref(), "{ticket}")?;
    let incident_pattern = raw
        .incident_pattern
        .as_deref()
        .map(|pattern| {
            super::roles::whole_reference(pattern).map_err(|err| {
                source.invalid(offset, format!("invalid settings.incident_pattern: {err}"))
            })
        })
        .transpose()?;
    Ok(Settings {
        request_url,
        ticket_url,
        incident_pattern,
        pending_ttl: raw.pending_ttl,
        claim_ttl: raw.claim_ttl,
        credential_ttl: raw.credential_ttl,
        auditor_groups: raw.auditor_groups,
        issuer: raw.issuer,
        credential_fetch_rate: raw.credential_fetch_rate,
        introspection_rate: raw.introspection_rate,
        filing_rate: raw.filing_rate,
        reconcile_every: raw.reconcile_every,
    })
}
