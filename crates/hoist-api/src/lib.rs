//! Wire types shared by the `hoist` client and the `hoistd` broker.
//!
//! Only serde types and constants live here: no HTTP framework, no database.
//! Each type names the endpoint that carries it. The broker derives its
//! OpenAPI document from these same types (`utoipa::ToSchema`), so the
//! contract cannot drift from the code.

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
/// Longest duration of a grant or an extension, in seconds (366 days),
/// whatever a role allows; the contract states it as `duration_secs`'s maximum.
pub const MAX_DURATION_SECS: u64 = 31_622_400;
/// Prefix of every workload's principal (`workload:<rule>:<sub>`): a name
/// no person can have, since user names hold no `:`.
pub const WORKLOAD_PREFIX: &str = "workload:";
/// What a secret field's `Debug` shows instead of it.
pub(crate) const REDACTED: &str = "<redacted>";

/// Whether an actor, requester or holder is a workload rather than a person.
pub fn is_workload(principal: &str) -> bool {
    principal.starts_with(WORKLOAD_PREFIX)
}

mod audit;
mod credentials;
mod errors;
mod events;
mod grants;
mod meta;
pub mod numbers;
mod requests;
mod targets;
pub mod text;
mod workloads;

pub use audit::*;
pub use credentials::*;
pub use errors::*;
pub use events::*;
pub use grants::*;
pub use meta::*;
pub use requests::*;
pub use targets::*;
pub use workloads::*;

#[cfg(test)]
mod samples;
