//! The seam between hoist and a broker: one trait, [`Backend`], that the
//! TUI's worker and every command call, whatever broker is behind it.
//! hoistd's HTTP API is the first implementation ([`hoistd`]); a backend
//! for another broker implements the same trait over that broker's API and
//! says, in its [`Capabilities`], what it cannot do, so the TUI hides those
//! screens and keys instead of offering something that fails.
//!
//! Everything crosses the seam as hoist's wire types (`hoist_api`), which a
//! backend for another broker maps its own objects to. Nothing here knows
//! about terminals, and nothing above it knows about HTTP.

pub mod entra;
pub mod hoistd;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use futures::Stream;
use hoist_api::{
    AccessRequest, AuditEvent, CreateRequest, Credential, Decision, ErrorCode, Grant, IncidentView,
    LiveEvent, Me, RequestHistory, Role,
};

pub use crate::app::Capabilities;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("broker URL `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("broker unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("session expired or not signed in: {0}")]
    Unauthenticated(String),
    #[error("{message}")]
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    /// Asked of a backend whose [`Capabilities`] say it cannot.
    #[error("this broker does not offer {0}")]
    Unsupported(&'static str),
    /// What was asked for cannot be sent as it is (an id that is `..`).
    #[error("{0}")]
    BadInput(String),
}

impl BackendError {
    /// The broker's error code, if the broker refused the call.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            BackendError::Refused { code, .. } => Some(*code),
            BackendError::Unauthenticated(_) => Some(ErrorCode::Unauthenticated),
            _ => None,
        }
    }

    /// Whether retrying the same call later may succeed: the broker was
    /// away, failed, or asked for a slower pace (429).
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Unreachable { .. })
            || matches!(self, BackendError::Refused { status, .. } if *status >= 500 || *status == 429)
    }
}

/// The broker's clock as seen from here: countdowns run in the broker's
/// time, whatever this machine's clock says. A backend updates it from
/// every answer that carries the broker's time.
#[derive(Debug, Default)]
pub struct ServerClock {
    offset_ms: AtomicI64,
}

impl ServerClock {
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn now(&self) -> DateTime<Utc> {
        let here = Utc::now();
        here.checked_add_signed(self.offset()).unwrap_or(here)
    }

    /// Records the broker's time as of an answer just received. A time
    /// further than [`MAX_CLOCK_OFFSET`] from this machine's is not a
    /// clock that is off but a broken (or hostile) answer, and is ignored:
    /// counting with it would show nonsense, or overflow.
    pub fn observe(&self, server: DateTime<Utc>) {
        let offset = server - Utc::now();
        if offset.abs() <= MAX_CLOCK_OFFSET {
            self.offset_ms
                .store(offset.num_milliseconds(), Ordering::Relaxed);
        }
    }
}

/// The most the broker's clock is believed to be off from this machine's.
pub const MAX_CLOCK_OFFSET: TimeDelta = TimeDelta::days(366);

/// Live changes from the broker. It ends when the connection drops; the
/// caller reconnects and fetches everything again.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<LiveEvent, BackendError>> + Send>>;

/// Everything hoist asks of a broker. Listing what a backend cannot offer
/// answers empty and every other call it cannot make refuses with
/// [`BackendError::Unsupported`], so a backend implements only what its
/// [`Capabilities`] claim. `Debug` must never show a token.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The broker's URL, as normalised: names the prompt cache's entry.
    fn broker(&self) -> &str;

    /// What this backend can do beyond roles, requests and grants.
    fn capabilities(&self) -> Capabilities;

    fn clock(&self) -> Arc<ServerClock>;

    /// Uses a new token from now on (after the session was renewed), in
    /// every clone of this backend.
    fn set_token(&self, token: &str);

    async fn me(&self) -> Result<Me, BackendError>;

    async fn roles(&self) -> Result<Vec<Role>, BackendError>;

    /// My requests, newest first, at most `limit`.
    async fn requests(&self, limit: usize) -> Result<Vec<AccessRequest>, BackendError>;

    async fn request(&self, id: &str) -> Result<AccessRequest, BackendError>;

    /// My grants: active ones, or with `include_ended` every one.
    async fn grants(&self, include_ended: bool) -> Result<Vec<Grant>, BackendError>;

    /// Files a request. The idempotency key makes a retry after a network
    /// error return the same request instead of filing a second one.
    async fn file(
        &self,
        body: &CreateRequest,
        idempotency_key: &str,
    ) -> Result<AccessRequest, BackendError>;

    async fn events(&self) -> Result<EventStream, BackendError>;

    /// Requests waiting for my decision, soonest to lapse first.
    async fn review_queue(&self) -> Result<Vec<AccessRequest>, BackendError> {
        Ok(Vec::new())
    }

    /// Break-glass activations waiting for my acknowledgement.
    async fn break_glass_queue(&self) -> Result<Vec<AccessRequest>, BackendError> {
        Ok(Vec::new())
    }

    async fn review(
        &self,
        _id: &str,
        _decision: Decision,
        _comment: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        Err(BackendError::Unsupported("reviews"))
    }

    async fn cancel(
        &self,
        _id: &str,
        _reason: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        Err(BackendError::Unsupported("cancelling a request"))
    }

    async fn revoke(
        &self,
        _grant_id: &str,
        _reason: Option<String>,
    ) -> Result<Grant, BackendError> {
        Err(BackendError::Unsupported("revoking a grant"))
    }

    /// Asks for more time on a grant. The same `idempotency_key` on a
    /// retry (the first answer lost) answers the first extension rather
    /// than extend again.
    async fn extend(
        &self,
        _grant_id: &str,
        _duration_secs: u64,
        _justification: Option<String>,
        _idempotency_key: &str,
    ) -> Result<AccessRequest, BackendError> {
        Err(BackendError::Unsupported("extending a grant"))
    }

    /// Claims a request under review (or releases the claim).
    async fn claim(&self, _id: &str, _release: bool) -> Result<AccessRequest, BackendError> {
        Err(BackendError::Unsupported("claims"))
    }

    async fn acknowledge(
        &self,
        _id: &str,
        _comment: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        Err(BackendError::Unsupported("break-glass acknowledgements"))
    }

    async fn credential(&self, _grant_id: &str) -> Result<Credential, BackendError> {
        Err(BackendError::Unsupported("credentials"))
    }

    /// The credential, with what the grant's target issues for the public
    /// key `public_key` (an SSH user certificate).
    async fn certify(
        &self,
        _grant_id: &str,
        _public_key: &str,
    ) -> Result<Credential, BackendError> {
        Err(BackendError::Unsupported("SSH certificates"))
    }

    /// One grant: mine, or one on a role I approve (for its access state).
    async fn grant(&self, _id: &str) -> Result<Grant, BackendError> {
        Err(BackendError::Unsupported("reading another's grant"))
    }

    /// The requester's earlier requests for the role of request `id`.
    async fn history(&self, _id: &str) -> Result<RequestHistory, BackendError> {
        Err(BackendError::Unsupported("request history"))
    }

    /// Everything filed under one incident reference that I may see.
    async fn incident(&self, _reference: &str) -> Result<IncidentView, BackendError> {
        Err(BackendError::Unsupported("incidents"))
    }

    /// Every audit event about one incident that I may read, in order.
    async fn incident_audit(&self, _reference: &str) -> Result<Vec<AuditEvent>, BackendError> {
        Err(BackendError::Unsupported("incidents"))
    }

    /// Active grants workloads hold that I may see as an approver or auditor.
    async fn workload_grants(&self) -> Result<Vec<Grant>, BackendError> {
        Err(BackendError::Unsupported("workload grants"))
    }

    /// The audit log after sequence number `after`, at most `limit` events.
    async fn audit(&self, _after: i64, _limit: usize) -> Result<Vec<AuditEvent>, BackendError> {
        Err(BackendError::Unsupported("the audit log"))
    }

    /// The newest `limit` audit events the caller may read, oldest first.
    async fn latest_audit(&self, _limit: usize) -> Result<Vec<AuditEvent>, BackendError> {
        Err(BackendError::Unsupported("the audit log"))
    }
}

/// hoistd at `broker`, signed in with `token`: the demo, the tests and
/// anything else that names a hoistd broker by its URL.
pub fn connect(broker: &str, token: &str) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(hoistd::HoistdClient::new(broker, token)?))
}

/// What a backend may need from whoever runs it, beyond the token.
#[derive(Default, Clone)]
pub struct Hooks {
    /// Entra: sign in again for a role's authentication context.
    pub step_up: Option<entra::StepUp>,
    /// Entra: every exchange with Graph, for `hoist debug record`.
    pub recorder: Option<entra::graph::Recorder>,
}

/// The backend for a profile, by the kind of broker it names: the one place
/// that chooses a concrete backend for a profile.
pub fn connect_to(
    target: &crate::config::Target,
    token: &str,
    hooks: Hooks,
) -> Result<Arc<dyn Backend>, BackendError> {
    match &target.backend {
        crate::config::Backend::Hoistd => connect(&target.broker, token),
        crate::config::Backend::Entra(tenant) => {
            let mut client = entra::EntraClient::new(tenant, token)?;
            if let Some(step_up) = hooks.step_up {
                client = client.with_step_up(step_up);
            }
            // `hoist debug record` records whatever opens a backend.
            if let Some(recorder) = hooks.recorder.or_else(entra::record::installed) {
                client = client.with_recorder(recorder);
            }
            Ok(Arc::new(client))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brokers_clock_wins_over_ours() {
        let clock = ServerClock::default();
        let ahead = Utc::now() + TimeDelta::hours(1);
        clock.observe(ahead);
        let skew = clock.now() - ahead;
        assert!(skew.num_seconds().abs() <= 1, "{skew}");
    }

    /// A time at the end of chrono's range (a broken or hostile
    /// `x-hoist-server-time`) is not taken as the broker's clock: counting
    /// with it would overflow.
    #[test]
    fn a_time_no_clock_could_be_off_by_is_ignored() {
        let clock = ServerClock::default();
        clock.observe(Utc::now() + TimeDelta::hours(1));
        for absurd in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
            clock.observe(absurd);
            let skew = clock.now() - Utc::now();
            assert!(
                (skew - TimeDelta::hours(1)).num_seconds().abs() <= 1,
                "{skew}"
            );
        }
    }

    #[test]
    fn only_an_unreachable_or_failing_broker_is_worth_retrying() {
        let unreachable = BackendError::Unreachable {
            url: "u".into(),
            reason: "r".into(),
        };
        let refused = |status| BackendError::Refused {
            status,
            code: ErrorCode::Internal,
            message: String::new(),
        };
        assert!(unreachable.is_transient());
        assert!(refused(503).is_transient());
        assert!(!refused(409).is_transient());
        assert!(refused(429).is_transient(), "a slower pace is asked for");
        assert!(!BackendError::Unsupported("claims").is_transient());
    }
}
