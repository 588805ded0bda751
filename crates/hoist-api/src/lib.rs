//! Wire types shared by the `hoist` client and the `hoistd` broker.
//!
//! Only serde types and constants live here: no HTTP framework, no database.
//! Each type names the endpoint that carries it. The broker derives its
//! OpenAPI document from these same types (`utoipa::ToSchema`), so the
//! contract cannot drift from the code.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Prefix of every versioned endpoint.
pub const API_PREFIX: &str = "/v1";
/// Request header that makes `POST /v1/requests` safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Response header set when a retried `POST /v1/requests` returned the
/// request filed the first time instead of filing a second one.
pub const IDEMPOTENT_REPLAY_HEADER: &str = "idempotent-replayed";
/// Response header carrying the broker's clock with millisecond precision
/// (RFC 3339). The standard `Date` header is present too, to the second.
pub const SERVER_TIME_HEADER: &str = "x-hoist-server-time";
/// Longest justification the broker accepts, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 4096;
/// Longest ticket or incident reference the broker accepts, in characters.
pub const MAX_REFERENCE_CHARS: usize = 128;
/// Longest review, revocation or cancellation comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2048;

/// `GET /v1/health`: liveness and the broker's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub time: DateTime<Utc>,
}

/// `GET /v1/auth/config` (no authentication): how a client signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthConfig {
    /// OpenID providers whose ID tokens the broker accepts as bearer tokens.
    pub issuers: Vec<AuthIssuer>,
    /// Whether static tokens from the policy file are accepted (`hoist login --with-token`).
    pub static_tokens: bool,
}

/// One OpenID provider a client may sign in through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthIssuer {
    pub issuer: String,
    /// The public client id to sign in as; ID tokens must carry it (or
    /// another accepted audience) in `aud`.
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `device` (RFC 8628) and/or `browser` (authorization code + PKCE with a
    /// loopback redirect).
    pub flows: Vec<String>,
}

/// `GET /v1/me`: who the bearer token belongs to, under the current policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user: String,
    pub display_name: String,
    pub groups: Vec<String>,
    /// Roles whose approval rule names a group the caller is in.
    pub approver_for: Vec<String>,
    /// Whether the caller may read the whole audit log.
    pub auditor: bool,
}

/// Who must agree before a role is granted. `approvals == 0` means the
/// request is approved as soon as it is filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRule {
    pub approvals: u32,
    pub approver_groups: Vec<String>,
    /// Everyone in those groups, as the policy stands now.
    pub approvers: Vec<String>,
}

/// Whether a role wants a ticket reference, and its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TicketRule {
    pub required: bool,
    /// A regular expression the whole reference must match.
    pub pattern: Option<String>,
}

/// `GET /v1/roles`: a role the caller is eligible for, with its policy terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The target system or scope the role grants access to.
    pub scope: String,
    pub default_duration_secs: u64,
    pub max_duration_secs: u64,
    pub approval: ApprovalRule,
    /// Whether the caller may use break-glass on this role.
    pub break_glass: bool,
    pub ticket: TicketRule,
    pub min_justification: u32,
}

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
    pub justification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Defaults to the role's default duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
}

/// `POST /v1/requests/{id}/reviews`: approve or deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    pub decision: Decision,
    /// Required when denying: it is the reason the requester sees.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /v1/requests/{id}/cancel` and `POST /v1/grants/{id}/revoke`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonInput {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/requests/{id}/acknowledge`: close a break-glass review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeInput {
    #[serde(default)]
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

/// State of a grant. A grant exists only once access was activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Active,
    Expired,
    Revoked,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Expired, Self::Revoked]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// `GET /v1/grants` and `GET /v1/grants/{id}`: bounded access to a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: String,
    /// The request that created the grant.
    pub request_id: String,
    pub role: String,
    pub role_name: String,
    pub holder: String,
    pub starts_at: DateTime<Utc>,
    /// Never absent, never beyond the role's maximum, in broker time.
    pub expires_at: DateTime<Utc>,
    pub state: GrantState,
    pub ended_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub break_glass: bool,
    pub ticket: Option<String>,
    pub incident: Option<String>,
    pub justification: String,
}

/// `POST /v1/grants/{id}/extend`: ask for more time on an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    pub duration_secs: u64,
    /// Defaults to the justification of the request that created the grant.
    #[serde(default)]
    pub justification: Option<String>,
}

/// `GET /v1/grants/{id}/credential`: a short-lived signed token for the
/// grant's role, verifiable with `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub grant_id: String,
    pub role: String,
    pub token_type: String,
    pub token: String,
    pub issued_at: DateTime<Utc>,
    /// Never later than the grant's end.
    pub expires_at: DateTime<Utc>,
}

/// `POST /v1/introspect` (RFC 7662, form-encoded): is this credential live?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionInput {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// `POST /v1/introspect`: RFC 7662 answer. Only `active` is present when the
/// token is not live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

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
    Revoked,
    Expired,
    PolicyReloaded,
}

impl AuditKind {
    pub const ALL: [AuditKind; 16] = [
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
        Self::Revoked,
        Self::Expired,
        Self::PolicyReloaded,
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
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::PolicyReloaded => "policy_reloaded",
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

/// `GET /v1/events`: the `data` of one Server-Sent Event. The SSE `event`
/// field carries the same tag as `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// First event of every stream: who is listening, and the broker clock.
    Hello { user: String, time: DateTime<Utc> },
    /// A request the caller filed, or may review, changed.
    Request { request: AccessRequest },
    /// A grant the caller holds changed.
    Grant { grant: Grant },
    /// The stream fell behind and dropped events: fetch everything again.
    Resync { time: DateTime<Utc> },
}

impl LiveEvent {
    /// The SSE `event` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Request { .. } => "request",
            Self::Grant { .. } => "grant",
            Self::Resync { .. } => "resync",
        }
    }
}

/// Machine-readable reason for an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not the JSON the endpoint takes.
    InvalidBody,
    /// A query or path parameter is malformed.
    InvalidParameter,
    /// No bearer token, or one the broker does not know.
    Unauthenticated,
    /// The caller may not do this under the current policy.
    Forbidden,
    NotFound,
    UnknownRole,
    NotEligible,
    InvalidDuration,
    DurationTooLong,
    /// A scheduled start in the past, too far ahead, or on break-glass.
    InvalidStart,
    /// A ticket or incident reference holds characters it may not.
    InvalidReference,
    TicketRequired,
    TicketInvalid,
    JustificationTooShort,
    JustificationTooLong,
    CommentRequired,
    BreakGlassNotAllowed,
    /// Too few approvers (other than the requester) exist to ever approve it.
    NoApprovers,
    /// The request or grant is not in a state that allows this.
    InvalidState,
    /// Requesters never review their own requests.
    SelfReview,
    AlreadyReviewed,
    /// The same `Idempotency-Key` was sent with a different body.
    IdempotencyKeyReused,
    PayloadTooLarge,
    Internal,
}

/// The body of every 4xx and 5xx response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// `GET /.well-known/jwks.json`: the keys credentials are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// Claims inside a credential token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub role: String,
    pub grant_id: String,
    pub scope: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
        let json = serde_json::to_string(&value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!(value, back, "{json}");
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn request() -> AccessRequest {
        AccessRequest {
            id: "req_1".into(),
            kind: RequestKind::Access,
            role: "prod-db-admin".into(),
            role_name: "Prod DB admin".into(),
            requester: "alice".into(),
            justification: "investigate INC-1".into(),
            ticket: Some("INC-1".into()),
            incident: None,
            duration_secs: 1800,
            starts_at: None,
            break_glass: false,
            state: RequestState::Pending,
            created_at: t("2026-01-01T00:00:00Z"),
            updated_at: t("2026-01-01T00:00:00Z"),
            lapses_at: Some(t("2026-01-01T01:00:00Z")),
            approvals_required: 2,
            reviews: vec![Review {
                reviewer: "bob".into(),
                decision: Decision::Approve,
                comment: None,
                at: t("2026-01-01T00:01:00Z"),
            }],
            claim: Some(Claim {
                by: "dave".into(),
                until: t("2026-01-01T00:05:00Z"),
            }),
            grant_id: None,
            reason: None,
            acknowledgement: None,
        }
    }

    fn grant() -> Grant {
        Grant {
            id: "gr_1".into(),
            request_id: "req_1".into(),
            role: "prod-db-admin".into(),
            role_name: "Prod DB admin".into(),
            holder: "alice".into(),
            starts_at: t("2026-01-01T00:00:00Z"),
            expires_at: t("2026-01-01T00:30:00Z"),
            state: GrantState::Active,
            ended_at: None,
            revoked_by: None,
            revoke_reason: None,
            break_glass: false,
            ticket: None,
            incident: Some("INC-1".into()),
            justification: "x".into(),
        }
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(Health {
            status: "ok".into(),
            version: "0.1.0".into(),
            time: t("2026-01-01T00:00:00Z"),
        });
        round_trip(AuthConfig {
            issuers: vec![AuthIssuer {
                issuer: "https://idp.example".into(),
                client_id: "hoist".into(),
                scopes: vec!["openid".into()],
                flows: vec!["device".into()],
            }],
            static_tokens: true,
        });
        round_trip(Me {
            user: "bob".into(),
            display_name: "Bob".into(),
            groups: vec!["db-approvers".into()],
            approver_for: vec!["prod-db-admin".into()],
            auditor: false,
        });
        round_trip(Role {
            id: "r".into(),
            name: "R".into(),
            description: "d".into(),
            scope: "s".into(),
            default_duration_secs: 60,
            max_duration_secs: 120,
            approval: ApprovalRule {
                approvals: 1,
                approver_groups: vec!["g".into()],
                approvers: vec!["bob".into()],
            },
            break_glass: true,
            ticket: TicketRule {
                required: true,
                pattern: Some("^INC-[0-9]+$".into()),
            },
            min_justification: 10,
        });
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
        round_trip(grant());
        round_trip(ExtendInput {
            duration_secs: 600,
            justification: None,
        });
        round_trip(Credential {
            grant_id: "gr_1".into(),
            role: "r".into(),
            token_type: "Bearer".into(),
            token: "a.b.c".into(),
            issued_at: t("2026-01-01T00:00:00Z"),
            expires_at: t("2026-01-01T00:05:00Z"),
        });
        round_trip(Introspection {
            active: false,
            sub: None,
            scope: None,
            grant_id: None,
            iss: None,
            aud: None,
            exp: None,
            iat: None,
            token_type: None,
        });
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
        round_trip(LiveEvent::Grant { grant: grant() });
        round_trip(ApiError {
            code: ErrorCode::IdempotencyKeyReused,
            message: "m".into(),
        });
    }

    #[test]
    fn states_and_kinds_use_their_wire_names() {
        for state in RequestState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(RequestState::parse(state.as_str()), Some(state));
        }
        for kind in AuditKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert!(RequestState::TimedOut.is_final());
        assert!(!RequestState::Active.is_final());
    }

    #[test]
    fn live_events_are_tagged() {
        let json = serde_json::to_value(LiveEvent::Resync {
            time: t("2026-01-01T00:00:00Z"),
        })
        .unwrap();
        assert_eq!(json["type"], "resync");
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
