//! What a broker operation can fail with: a refusal the caller is told
//! about, or a fault of the store or the signing key that is only logged.

use hoist_api::ErrorCode;

use crate::credential::SignerError;
use crate::store::StoreError;

/// When to call again after a 503 `unavailable`: a restarted database or a
/// failover is back within seconds, and the connection pool waits 5 s for
/// a connection before it gives up.
pub const UNAVAILABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// When to call again after a target did not answer: its calls wait up to
/// 10 s, so sooner would mostly wait for the same silence.
pub const TARGET_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// A refusal for doing something too often, with when to try again.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// A target did not answer (or answered "not now"): nothing reached
    /// the caller, and the same call may work in a moment.
    #[error("{message}")]
    TargetUnavailable {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signer(#[from] SignerError),
}

impl Error {
    pub fn refuse(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Refused {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Error::refuse(ErrorCode::NotFound, format!("no {what} `{id}`"))
    }
}

impl From<crate::target::ssh::AuthorityError> for Error {
    fn from(err: crate::target::ssh::AuthorityError) -> Self {
        use crate::target::ssh::AuthorityError;
        match err {
            AuthorityError::Store(err) => Error::Store(err),
            AuthorityError::BadKey(why) => {
                Error::Signer(SignerError::BadKey(format!("SSH CA: {why}")))
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
