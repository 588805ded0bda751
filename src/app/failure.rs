//! What went wrong, as the core sees it: a kind it can act on and the
//! words to show. The I/O side converts its own errors into this, so the
//! core never learns which backend or transport failed.

use crate::text::sanitize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The broker could not be reached; the same call may work later.
    Unreachable,
    /// Not signed in, or the session ended.
    SessionEnded,
    /// Signed in, but longer ago than the role's risk tier allows.
    StepUpRequired,
    /// Policy says no: not eligible, not allowed, not one's own to review.
    DeniedByPolicy,
    /// The thing is in a state that does not allow it (already decided).
    NotPossibleNow,
    NotFound,
    /// The broker failed on its side.
    BrokerError,
    /// Too many calls in a short time; the same call works again shortly.
    TooMany,
    /// A filing sent again after its form was edited, whose first sending
    /// was filed though its answer was lost: the same idempotency key, with
    /// another body.
    AlreadyFiled,
    /// The broker refused for another reason it named.
    Refused,
    /// Anything else; the message says it all.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The failure's own words (the broker's message, a network reason);
    /// untrusted, so sanitised when described.
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Says what went wrong in the words of the failure: denied by policy,
    /// expired session, broker unreachable.
    pub fn describe(&self) -> String {
        self.describe_for("hoist")
    }

    /// The same, its commands run as `hoist` (`hoist --profile work`:
    /// [`crate::app::State::hoist`]).
    pub fn describe_for(&self, hoist: &str) -> String {
        let message = sanitize::line(&self.message);
        let kind = match self.kind {
            FailureKind::Unreachable => {
                // Only revocations (and the event stream) are retried by
                // themselves, and never end here: anything else is not.
                return format!("Broker unreachable ({message}); not confirmed, try again");
            }
            FailureKind::SessionEnded => {
                return format!(
                    "Session expired or not signed in: run `{} login`",
                    sanitize::line(hoist)
                );
            }
            FailureKind::StepUpRequired => {
                return format!(
                    "Sign in again: {message} (run `{} login --fresh`)",
                    sanitize::line(hoist)
                );
            }
            FailureKind::Other => return message.into_owned(),
            FailureKind::AlreadyFiled => {
                return "This form was filed before it was edited (that answer was lost): \
                        see your requests"
                    .into();
            }
            FailureKind::DeniedByPolicy => "Denied by policy",
            FailureKind::NotPossibleNow => "Not possible now",
            FailureKind::NotFound => "Not found",
            FailureKind::BrokerError => "Broker error",
            FailureKind::TooMany => "Too many requests, try again shortly",
            FailureKind::Refused => "Refused",
        };
        format!("{kind}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_described_in_its_own_words() {
        let described = |kind| Failure::new(kind, "not eligible\x1b[2J").describe();
        assert_eq!(
            described(FailureKind::DeniedByPolicy),
            "Denied by policy: not eligible⟨U+001B⟩[2J"
        );
        assert_eq!(
            described(FailureKind::AlreadyFiled),
            "This form was filed before it was edited (that answer was lost): see your \
             requests"
        );
        assert_eq!(
            described(FailureKind::Unreachable),
            "Broker unreachable (not eligible⟨U+001B⟩[2J); not confirmed, try again"
        );
        assert_eq!(
            described(FailureKind::SessionEnded),
            "Session expired or not signed in: run `hoist login`"
        );
        assert_eq!(described(FailureKind::Other), "not eligible⟨U+001B⟩[2J");
        assert!(described(FailureKind::NotPossibleNow).starts_with("Not possible now: "));
        assert!(described(FailureKind::TooMany).starts_with("Too many requests"));
    }
}
