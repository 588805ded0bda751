//! The error body every failed call returns.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// The request is not valid HTTP: a malformed request line, URI or header.
    BadRequest,
    /// The path exists, but not with this method (the `Allow` header lists those it takes).
    MethodNotAllowed,
    /// The request's headers or body did not arrive in time.
    RequestTimeout,
    /// The request URI is longer than the broker accepts.
    UriTooLong,
    /// The request's headers are larger than the broker accepts.
    HeadersTooLarge,
    /// The caller did this too often; `Retry-After` says when to try again.
    RateLimited,
    /// The role's tier needs a sign-in more recent than the caller's: sign
    /// in again, then retry.
    StepUpRequired,
    /// The broker's database cannot be reached, or is busy past waiting
    /// for: nothing was done, unless the `message` says the change may
    /// have been made (the database went as it was committed): then look
    /// before trying again. `Retry-After` says when to try again.
    Unavailable,
    Internal,
    /// A code this build does not know, from a newer broker: the
    /// `message` still says what went wrong. Read, never sent.
    #[serde(other, skip_serializing)]
    Other,
}

/// The body of every 4xx and 5xx response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::round_trip;

    /// A client older than its broker still gets the broker's words.
    #[test]
    fn a_code_from_a_newer_broker_reads_as_other() {
        let error: ApiError =
            serde_json::from_str(r#"{"code":"grant_paused","message":"the grant is paused"}"#)
                .unwrap();
        assert_eq!(error.code, ErrorCode::Other);
        assert_eq!(error.message, "the grant is paused");
    }

    #[test]
    fn errors_round_trip() {
        round_trip(ApiError {
            code: ErrorCode::IdempotencyKeyReused,
            message: "m".into(),
        });
    }
}
