//! Access requests: filing, previewing, reviewing, cancelling, and what an
//! approver sees of them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Grant;

/// What a request asks for: a new grant, or more time on an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Access,
    Extension,
}

/// Where a request is in its life:
/// `pending -> approved -> active -> expired | revoked`, or
/// `pending -> denied | cancelled | timed_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Active,
    Expired,
    Revoked,
    Denied,
    Cancelled,
    TimedOut,
}

impl RequestState {
    pub const ALL: [RequestState; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Active,
        Self::Expired,
        Self::Revoked,
        Self::Denied,
        Self::Cancelled,
        Self::TimedOut,
    ];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// A finished request never changes state again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved | Self::Active)
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/requests` and `POST /v1/requests/validate`: ask for a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub role: String,
    /// Free text; tabs and line breaks are the only control characters allowed.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub justification: String,
    /// One word: no spaces or control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128, pattern = r"^[^\s\u0000-\u001F\u007F-\u009F]*$")]
    pub ticket: Option<String>,
    /// One word: no spaces or control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128, pattern = r"^[^\s\u0000-\u001F\u007F-\u009F]*$")]
    pub incident: Option<String>,
    /// Defaults to the role's default duration; at most the role's maximum.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::numbers::optional_whole"
    )]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub duration_secs: Option<u64>,
    /// Start later than approval; absent means as soon as approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Activate at once without approval, reviewed after the fact.
    #[serde(default)]
    pub break_glass: bool,
}

/// `POST /v1/requests/validate`: what filing the request would do, with
/// nothing written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestPreview {
    pub role: String,
    pub approvals_required: u32,
    pub approver_groups: Vec<String>,
    pub approvers: Vec<String>,
    /// The duration that would be granted.
    pub duration_secs: u64,
    /// True when no approval is needed (auto-approve or break-glass).
    pub activates_immediately: bool,
    pub break_glass: bool,
    /// When the request would lapse if nobody decided it.
    pub lapses_at: Option<DateTime<Utc>>,
}

/// An approve or deny decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

/// One approver's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Review {
    pub reviewer: String,
    pub decision: Decision,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// An approver looking at a pending request; never blocks anyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Claim {
    pub by: String,
    pub until: DateTime<Utc>,
}

/// An approver's after-the-fact review of a break-glass activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Acknowledgement {
    pub by: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// `GET /v1/requests/{id}` and every list of requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub id: String,
    pub kind: RequestKind,
    pub role: String,
    pub role_name: String,
    pub requester: String,
    pub justification: String,
    pub ticket: Option<String>,
    pub incident: Option<String>,
    pub duration_secs: u64,
    pub starts_at: Option<DateTime<Utc>>,
    pub break_glass: bool,
    pub state: RequestState,
    pub created_at: DateTime<Utc>,
    /// When it last changed: strictly later at each change, so of two
    /// copies of a request (an event relayed from another instance, a load
    /// answered before a change) the one with the later `updated_at` is the
    /// newer.
    pub updated_at: DateTime<Utc>,
    /// When a pending request times out if nobody decides it.
    pub lapses_at: Option<DateTime<Utc>>,
    pub approvals_required: u32,
    pub reviews: Vec<Review>,
    pub claim: Option<Claim>,
    /// The grant this request produced or, for an extension, extends.
    pub grant_id: Option<String>,
    /// Why it was denied, cancelled, timed out or revoked.
    pub reason: Option<String>,
    /// For break-glass requests: the after-the-fact review, once given.
    pub acknowledgement: Option<Acknowledgement>,
    /// The role's risk tier when the request was filed, 0 (most critical)
    /// to 3; absent where the broker has no tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 3)]
    pub tier: Option<u8>,
    /// In an approver's queue: who may decide it as the policy stands now,
    /// its requester aside. Empty everywhere else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// When its requester last signed in at their identity provider, as
    /// the token it was filed with said (`auth_time`): what a role's
    /// step-up, as it stands at each decision, is weighed against. Absent
    /// for a request filed with a static token or by a workload, or with
    /// a token that did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_at: Option<DateTime<Utc>>,
}

impl AccessRequest {
    /// Whether this copy of the request was overtaken by `other`, a later
    /// change of the same request: live events can arrive out of order
    /// (relayed by several broker instances), and a load's answer can be
    /// older than an event that came in meanwhile.
    pub fn is_older_than(&self, other: &AccessRequest) -> bool {
        self.updated_at < other.updated_at
    }
}

/// `POST /v1/requests/{id}/reviews`: approve or deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    pub decision: Decision,
    /// Required when denying: it is the reason the requester sees.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub comment: Option<String>,
}

/// `POST /v1/requests/{id}/cancel` and `POST /v1/grants/{id}/revoke`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonInput {
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

/// `POST /v1/requests/{id}/acknowledge`: close a break-glass review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeInput {
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub comment: Option<String>,
}

/// `GET /v1/requests/{id}/history`: the requester's recent requests for the
/// same role, for the approver deciding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestHistory {
    pub requester: String,
    pub role: String,
    pub recent: Vec<AccessRequest>,
}

/// `GET /v1/incidents/{reference}`: everything filed under one incident
/// reference that the caller may see (their own; for approvers, anyone's on
/// the roles they approve; for auditors, all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    pub incident: String,
    /// Oldest first.
    pub requests: Vec<AccessRequest>,
    /// Newest first.
    pub grants: Vec<Grant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{grant, request, round_trip};

    #[test]
    fn every_type_round_trips() {
        round_trip(CreateRequest {
            role: "r".into(),
            justification: "j".into(),
            ticket: None,
            incident: Some("INC-2".into()),
            duration_secs: Some(60),
            starts_at: None,
            break_glass: true,
        });
        round_trip(RequestPreview {
            role: "r".into(),
            approvals_required: 1,
            approver_groups: vec![],
            approvers: vec![],
            duration_secs: 60,
            activates_immediately: false,
            break_glass: false,
            lapses_at: None,
        });
        round_trip(request());
        round_trip(ReviewInput {
            decision: Decision::Deny,
            comment: Some("no".into()),
        });
        round_trip(ReasonInput::default());
        round_trip(AcknowledgeInput::default());
        round_trip(RequestHistory {
            requester: "alice".into(),
            role: "r".into(),
            recent: vec![request()],
        });
        round_trip(IncidentView {
            incident: "INC-1".into(),
            requests: vec![request()],
            grants: vec![grant()],
        });
    }

    #[test]
    fn states_use_their_wire_names() {
        for state in RequestState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(RequestState::parse(state.as_str()), Some(state));
        }
        assert!(RequestState::TimedOut.is_final());
        assert!(!RequestState::Active.is_final());
    }

    #[test]
    fn unknown_fields_in_a_request_are_refused() {
        let err = serde_json::from_str::<CreateRequest>(
            r#"{"role":"r","justification":"j","breakglass":true}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("breakglass"), "{err}");
    }
}
