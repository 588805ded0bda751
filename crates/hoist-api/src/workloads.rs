//! `POST /v1/token`: a workload (a CI job, a deployment bot) exchanges its
//! workload identity token for a credential scoped to one task (OAuth 2.0
//! Token Exchange, RFC 8693), and the errors it may meet, in RFC 6749's form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AccessCredential;

/// RFC 8693's grant type, the only one `POST /v1/token` takes.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of a JWT: the subject token's, and the issued one's.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693's token type of an access token, also accepted as a subject token type.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// `POST /v1/token` (form-encoded, RFC 8693 section 2.1). The role is named
/// by `resource` (`urn:hoist:role:<id>` or the bare id) or by `scope`; other
/// parameters are ignored, as RFC 6749 section 3.2 says. Its `Debug` leaves
/// the subject token out.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenExchangeInput {
    #[serde(default)]
    #[schema(pattern = "^urn:ietf:params:oauth:grant-type:token-exchange$")]
    pub grant_type: String,
    /// The workload's identity token: an OIDC JWT from a trusted issuer.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 16384)]
    pub subject_token: String,
    #[serde(default)]
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:(jwt|access_token|id_token)$")]
    pub subject_token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Seconds the task needs; at most the rule's maximum for the role,
    /// which is also the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[1-9][0-9]{0,5}$")]
    pub requested_ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
}

impl std::fmt::Debug for TokenExchangeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeInput")
            .field("grant_type", &self.grant_type)
            .field("subject_token", &crate::REDACTED)
            .field("subject_token_type", &self.subject_token_type)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("requested_ttl", &self.requested_ttl)
            .field("requested_token_type", &self.requested_token_type)
            .finish()
    }
}

/// `POST /v1/token` 200: the task's credential (RFC 8693 section 2.2.1), and
/// the grant it belongs to. Its `Debug` leaves the access token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenExchangeResponse {
    /// A JWT signed by the broker, with `act.sub` naming the workload.
    pub access_token: String,
    pub issued_token_type: String,
    pub token_type: String,
    /// Seconds until `access_token` ends: never after the grant does.
    pub expires_in: u64,
    /// The role.
    pub scope: String,
    pub grant_id: String,
    pub request_id: String,
    pub expires_at: DateTime<Utc>,
    /// The access at the role's target, once it is live; absent for a role
    /// with no target. Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessCredential>,
}

impl std::fmt::Debug for TokenExchangeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeResponse")
            .field("access_token", &crate::REDACTED)
            .field("issued_token_type", &self.issued_token_type)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("grant_id", &self.grant_id)
            .field("request_id", &self.request_id)
            .field("expires_at", &self.expires_at)
            .field("access", &self.access)
            .finish()
    }
}

/// `POST /v1/token` 202: nothing to hand over yet: a person must approve the
/// request, or the grant's access at its target is not live yet. Present
/// the same workload token again after `interval` seconds (also in
/// `Retry-After`); the exchange counts once, whenever it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenPending {
    /// `approval` or `provisioning`.
    pub status: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    pub interval: u64,
}

/// An error of `POST /v1/token` or `POST /v1/token/revoke`, in RFC 6749's
/// form (section 5.2), with `code` naming exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthError {
    /// RFC 6749 / RFC 8693 error: `invalid_request`, `invalid_target`,
    /// `unsupported_grant_type`, `access_denied`, `invalid_token`,
    /// `slow_down`, `server_error`.
    pub error: String,
    pub error_description: String,
    pub code: WorkloadErrorCode,
}

/// What was wrong with a workload's exchange, one code per kind of bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadErrorCode {
    /// A parameter is missing or malformed, or the grant type is not token exchange.
    InvalidRequest,
    UnsupportedGrantType,
    /// The subject token is not a JWT, or lacks a claim the exchange needs.
    MalformedToken,
    /// No `[[workloads]]` rule trusts the token's issuer.
    UnknownIssuer,
    /// The issuer is one the broker knows, for people's sign-in only.
    WrongIssuer,
    /// No rule for the issuer accepts the token's audience.
    WrongAudience,
    /// No rule for the issuer and audience matches the token's `sub`.
    SubjectMismatch,
    /// The `sub` matches, but another claim the rule pins does not.
    ClaimMismatch,
    TokenExpired,
    /// `alg: none`, an HMAC algorithm, or one the rule does not accept.
    AlgorithmRefused,
    /// The signature does not verify with the issuer's keys.
    InvalidSignature,
    /// The token's `jti` (or run id) was exchanged already.
    Replayed,
    /// The rule does not allow the role asked for, or there is no such role.
    RoleNotAllowed,
    /// The requested TTL is above the rule's maximum for the role.
    TtlTooLong,
    /// A person denied the request, or it timed out, or was cancelled.
    Denied,
    /// The credential presented to a workload route is not a live
    /// workload credential.
    InvalidCredential,
    RateLimited,
    /// The issuer's keys could not be fetched.
    IssuerUnavailable,
    /// The broker's database is unavailable, or other changes kept coming
    /// first: try again after `Retry-After`. Nothing was done, or (the
    /// description says so) the database went as the exchange was
    /// committed, and the same token's next exchange goes on from there.
    Unavailable,
    Internal,
    /// A code this build does not know, from a newer broker: `error` and
    /// `error_description` still say what went wrong. Read, never sent.
    #[serde(other, skip_serializing)]
    Other,
}

impl WorkloadErrorCode {
    pub const ALL: [WorkloadErrorCode; 20] = [
        Self::InvalidRequest,
        Self::UnsupportedGrantType,
        Self::MalformedToken,
        Self::UnknownIssuer,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::SubjectMismatch,
        Self::ClaimMismatch,
        Self::TokenExpired,
        Self::AlgorithmRefused,
        Self::InvalidSignature,
        Self::Replayed,
        Self::RoleNotAllowed,
        Self::TtlTooLong,
        Self::Denied,
        Self::InvalidCredential,
        Self::RateLimited,
        Self::IssuerUnavailable,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::MalformedToken => "malformed_token",
            Self::UnknownIssuer => "unknown_issuer",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::SubjectMismatch => "subject_mismatch",
            Self::ClaimMismatch => "claim_mismatch",
            Self::TokenExpired => "token_expired",
            Self::AlgorithmRefused => "algorithm_refused",
            Self::InvalidSignature => "invalid_signature",
            Self::Replayed => "replayed",
            Self::RoleNotAllowed => "role_not_allowed",
            Self::TtlTooLong => "ttl_too_long",
            Self::Denied => "denied",
            Self::InvalidCredential => "invalid_credential",
            Self::RateLimited => "rate_limited",
            Self::IssuerUnavailable => "issuer_unavailable",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Other => "other",
        }
    }

    /// The RFC 6749 / RFC 8693 `error` each code is reported under: RFC
    /// 8693 section 2.2.2 says an unacceptable subject token is
    /// `invalid_request`, and a target (role) the server will not issue for
    /// is `invalid_target`.
    pub fn oauth_error(self) -> &'static str {
        match self {
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::RoleNotAllowed => "invalid_target",
            Self::Denied => "access_denied",
            Self::InvalidCredential => "invalid_token",
            Self::RateLimited => "slow_down",
            Self::IssuerUnavailable | Self::Unavailable => "temporarily_unavailable",
            Self::Internal => "server_error",
            _ => "invalid_request",
        }
    }
}

impl std::fmt::Display for WorkloadErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/token/revoke` 200: the task's grant, ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadRevoked {
    pub grant_id: String,
    /// `revoked`, or the state it had already ended in.
    pub state: String,
}

/// `POST /v1/token/withdraw` 200: a task that gave up, withdrawn: its
/// pending request cancelled, or its grant ended if one was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskWithdrawn {
    pub request_id: String,
    /// The request's state now: `cancelled`, or the state it had already
    /// reached (`active` when its grant was ended instead).
    pub request_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The grant's state now, when there is one: `revoked`, or the state
    /// it had already ended in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{round_trip, t};

    #[test]
    fn debug_never_shows_a_token() {
        let input = TokenExchangeInput {
            subject_token: "eyJ.s3cret.sig".into(),
            resource: Some("deploy".into()),
            ..TokenExchangeInput::default()
        };
        let response = TokenExchangeResponse {
            access_token: "eyJ.s3cret.sig".into(),
            issued_token_type: JWT_TOKEN_TYPE.into(),
            token_type: "Bearer".into(),
            expires_in: 60,
            scope: "deploy".into(),
            grant_id: "grt_1".into(),
            request_id: "req_1".into(),
            expires_at: t("2026-01-01T01:00:00Z"),
            access: None,
        };
        for shown in [format!("{input:?}"), format!("{response:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("<redacted>") && shown.contains("deploy"),
                "{shown}"
            );
        }
    }

    /// A job's hoist older than its broker still gets the broker's words.
    #[test]
    fn a_code_from_a_newer_broker_reads_as_other() {
        let error: OAuthError = serde_json::from_str(
            r#"{"error":"invalid_request","error_description":"the run is paused","code":"run_paused"}"#,
        )
        .unwrap();
        assert_eq!(error.code, WorkloadErrorCode::Other);
        assert_eq!(error.error_description, "the run is paused");
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(TokenExchangeInput {
            grant_type: TOKEN_EXCHANGE_GRANT.into(),
            subject_token: "a.b.c".into(),
            subject_token_type: JWT_TOKEN_TYPE.into(),
            resource: Some("urn:hoist:role:deploy".into()),
            scope: None,
            requested_ttl: Some("300".into()),
            requested_token_type: None,
        });
        round_trip(TokenExchangeResponse {
            access_token: "a.b.c".into(),
            issued_token_type: JWT_TOKEN_TYPE.into(),
            token_type: "Bearer".into(),
            expires_in: 300,
            scope: "deploy".into(),
            grant_id: "gr_1".into(),
            request_id: "req_1".into(),
            expires_at: t("2026-01-01T00:05:00Z"),
            access: None,
        });
        round_trip(TokenPending {
            status: "approval".into(),
            request_id: "req_1".into(),
            grant_id: None,
            interval: 2,
        });
        round_trip(OAuthError {
            error: "invalid_request".into(),
            error_description: "expired".into(),
            code: WorkloadErrorCode::TokenExpired,
        });
        round_trip(WorkloadRevoked {
            grant_id: "gr_1".into(),
            state: "revoked".into(),
        });
        for code in WorkloadErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }
}
