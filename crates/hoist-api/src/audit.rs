//! The hash-chained audit log as the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The actor of the broker's own acts (expiry, time-outs, reloads). No user
/// may carry this name; the entries also say `"system": true` in their
/// `details`, which the chain's hash covers.
pub const SYSTEM_ACTOR: &str = "hoistd";

/// Kinds of audit event; each step of the lifecycle is its own. On the
/// wire, a kind is its name (`"requested"`); a reader meets kinds a newer
/// broker writes and keeps them as [`AuditKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// A notification was given up, never delivered: its channel failed
    /// for a day, or left the policy (`details`: channel, event, attempts;
    /// `reason`: the last failure). Whoever it was for never heard.
    NotificationGivenUp,
    /// A workload withdrew its task after its credential was handed over
    /// (`details`: task): the grant stays, for whoever holds the credential
    /// to use and end, and ends by itself at its expiry. Audited at the
    /// first such withdrawal of a task.
    TaskWithdrawn,
    /// A kind this build does not know, by its name: written by a newer
    /// broker (another instance in a rolling upgrade, or the broker a
    /// client older than it talks to). Kept as written, so its entry is
    /// shown and its hash still verifies. Made only by [`AuditKind::parse`],
    /// so never one of the names above.
    Other(UnknownKind),
}

/// The name of an audit kind this build does not know (see
/// [`AuditKind::Other`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownKind(String);

impl UnknownKind {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AuditKind {
    pub const ALL: [AuditKind; 27] = [
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
        Self::NotificationGivenUp,
        Self::TaskWithdrawn,
    ];

    /// The kind's name on the wire and in the chain's hash.
    pub fn as_str(&self) -> &str {
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
            Self::NotificationGivenUp => "notification_given_up",
            Self::TaskWithdrawn => "task_withdrawn",
            Self::Other(name) => name.as_str(),
        }
    }

    /// The kind named `name`; a name this build does not know is
    /// [`AuditKind::Other`].
    pub fn parse(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or_else(|| Self::Other(UnknownKind(name.to_string())))
    }

    /// Whether this build knows the kind (it is not [`AuditKind::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::parse(&name))
    }
}

/// The contract lists the kinds this version writes; readers take any
/// other name as a kind of a newer version, never as an error.
impl utoipa::PartialSchema for AuditKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "Kinds of audit event; each step of the lifecycle is its own. A newer \
                 broker may write kinds not listed here: readers keep them, by name.",
            ))
            .enum_values(Some(Self::ALL.iter().map(|kind| kind.as_str().to_string())))
            .into()
    }
}

impl ToSchema for AuditKind {}

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
            assert_eq!(AuditKind::parse(kind.as_str()), kind);
            assert!(kind.is_known());
        }
    }

    /// An entry of a kind from a newer broker reads, keeps its name, and
    /// writes back the same.
    #[test]
    fn a_kind_from_a_newer_broker_is_kept_by_name() {
        let json = r#""access_paused""#;
        let kind: AuditKind = serde_json::from_str(json).unwrap();
        assert!(matches!(&kind, AuditKind::Other(name) if name.as_str() == "access_paused"));
        assert!(!kind.is_known());
        assert_eq!(kind.as_str(), "access_paused");
        assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        round_trip(kind);
    }
}
