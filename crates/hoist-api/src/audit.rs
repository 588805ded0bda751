//! The hash-chained audit log as the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The actor of the broker's own acts (expiry, time-outs, reloads). No user
/// may carry this name; the entries also say `"system": true` in their
/// `details`, which the chain's hash covers.
pub const SYSTEM_ACTOR: &str = "hoistd";

/// Kinds of audit event; each step of the lifecycle is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Requested,
    Reviewed,
    Approved,
    Denied,
    Cancelled,
    TimedOut,
    Activated,
    BreakGlass,
    BreakGlassAcknowledged,
    Claimed,
    Extended,
    CredentialIssued,
    CredentialUsed,
    /// A credential audited as issued was withheld from its holder: its
    /// target could not make its part of the access, or the grant ended
    /// meanwhile (`details`: jti, target, error). Whatever the target made
    /// is removed with the grant's access.
    CredentialWithheld,
    Revoked,
    Expired,
    PolicyReloaded,
    /// A person signed in through an OpenID provider for the first time, and
    /// their provider identity (issuer, subject) was bound to a user name.
    IdentityBound,
    /// The target confirmed a grant's access exists (`details`: target, kind).
    Provisioned,
    /// A provisioning attempt failed (`details`: target, attempt, error, retry_at).
    ProvisionFailed,
    /// The target confirmed a grant's access is gone.
    Deprovisioned,
    /// A removal attempt failed; it is retried until the target confirms.
    DeprovisionFailed,
    /// The reconciler removed access at a target that no live grant stood
    /// behind (made by hand, or left by a crash).
    DriftRemoved,
    /// A workload's token exchange was refused (`details`: the `code` that
    /// names why, the issuer and subject it claimed); nothing was granted.
    WorkloadRefused,
    /// A post claiming to come from Slack's Approve or Deny button was
    /// refused before any review (`details`: the `code` that names why:
    /// `bad_signature`, `bad_timestamp`, `forged`, `stale`, `replayed`,
    /// `malformed`, `unmapped`; the Slack team and user when the post was
    /// genuine).
    SlackRefused,
}

impl AuditKind {
    pub const ALL: [AuditKind; 25] = [
        Self::Requested,
        Self::Reviewed,
        Self::Approved,
        Self::Denied,
        Self::Cancelled,
        Self::TimedOut,
        Self::Activated,
        Self::BreakGlass,
        Self::BreakGlassAcknowledged,
        Self::Claimed,
        Self::Extended,
        Self::CredentialIssued,
        Self::CredentialUsed,
        Self::CredentialWithheld,
        Self::Revoked,
        Self::Expired,
        Self::PolicyReloaded,
        Self::IdentityBound,
        Self::Provisioned,
        Self::ProvisionFailed,
        Self::Deprovisioned,
        Self::DeprovisionFailed,
        Self::DriftRemoved,
        Self::WorkloadRefused,
        Self::SlackRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Reviewed => "reviewed",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Activated => "activated",
            Self::BreakGlass => "break_glass",
            Self::BreakGlassAcknowledged => "break_glass_acknowledged",
            Self::Claimed => "claimed",
            Self::Extended => "extended",
            Self::CredentialIssued => "credential_issued",
            Self::CredentialUsed => "credential_used",
            Self::CredentialWithheld => "credential_withheld",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::PolicyReloaded => "policy_reloaded",
            Self::IdentityBound => "identity_bound",
            Self::Provisioned => "provisioned",
            Self::ProvisionFailed => "provision_failed",
            Self::Deprovisioned => "deprovisioned",
            Self::DeprovisionFailed => "deprovision_failed",
            Self::DriftRemoved => "drift_removed",
            Self::WorkloadRefused => "workload_refused",
            Self::SlackRefused => "slack_refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /v1/audit`: one entry of the append-only, hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    /// Who did it: a user, or `hoistd` for the broker's own acts.
    pub actor: String,
    /// The user the event is about (requester or grant holder).
    pub subject: Option<String>,
    pub role: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub incident: Option<String>,
    pub reason: Option<String>,
    /// Kind-specific facts (durations, end times, decisions).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hex SHA-256 of the previous entry (all zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this entry's fields.
    pub hash: String,
}

impl AuditEvent {
    /// Whether a workload did this or it is about one (its actor or
    /// subject is a `workload:` principal), rather than a person.
    pub fn concerns_workload(&self) -> bool {
        crate::is_workload(&self.actor) || self.subject.as_deref().is_some_and(crate::is_workload)
    }

    /// Whether the broker itself did this (its `details` say so; entries
    /// written before the marker existed name [`SYSTEM_ACTOR`] alone).
    pub fn is_system(&self) -> bool {
        self.details.get("system") == Some(&serde_json::Value::Bool(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{round_trip, t};

    #[test]
    fn every_type_round_trips() {
        round_trip(AuditEvent {
            seq: 1,
            at: t("2026-01-01T00:00:00Z"),
            kind: AuditKind::BreakGlass,
            actor: "carol".into(),
            subject: Some("carol".into()),
            role: Some("r".into()),
            request_id: Some("req_1".into()),
            grant_id: None,
            incident: Some("INC-9".into()),
            reason: None,
            details: serde_json::json!({"duration_secs": 60}),
            prev_hash: "0".repeat(64),
            hash: "1".repeat(64),
        });
    }

    #[test]
    fn kinds_use_their_wire_names() {
        for kind in AuditKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
    }
}
