//! Posts from Slack's Approve and Deny buttons, on the broker's side: each
//! signed post taken once (the store keeps its signature while it could
//! still pass the timestamp check, so a replay is refused by any instance
//! on the database), and refused posts audited without flooding the log.
//! The review itself is `Broker::review_from_slack`, beside the API's.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::AuditKind;

use super::Broker;
use crate::audit::NewAuditEvent;
use crate::error::Result;
use crate::slack::WINDOW_SECS;
use crate::store::StoreError;

/// The actor of a refused post that names no one it could be trusted for
/// (a signature that does not match, a replay, a payload that is not a
/// press of hoist's buttons): no user name holds a `:`.
pub const SLACK_UNKNOWN: &str = "slack:unknown";

/// How much longer than the timestamp check a signature is kept, so an
/// instance whose clock is behind the purging one's still finds it.
const CLOCK_MARGIN: TimeDelta = TimeDelta::seconds(60);

/// The actor of a genuine post's refusal: the Slack account that pressed.
pub fn slack_actor(team: &str, user: &str) -> String {
    format!("slack:{team}:{user}")
}

impl Broker {
    /// Takes a verified post, once: false if a post with this signature was
    /// taken before (a replay). `posted_at` is the post's own timestamp;
    /// its signature is kept until that can no longer pass the check, and
    /// older ones are purged on the way. Kept in lower case: the check
    /// reads the hex in either case, so a replay with the signature
    /// upper-cased is the same post.
    pub fn take_slack_post(&self, signature: &str, posted_at: DateTime<Utc>) -> Result<bool> {
        let signature = signature.trim().to_ascii_lowercase();
        let mut tx = self.store.transaction()?;
        tx.purge_slack_replays(super::now())?;
        let kept_until = posted_at + TimeDelta::seconds(WINDOW_SECS) + CLOCK_MARGIN;
        match tx.insert_slack_replay(&signature, kept_until) {
            Ok(()) => {
                tx.commit()?;
                Ok(true)
            }
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Audits a refused post; nothing else is written. `code` names why
    /// (`details.code`); refusals of one actor with one code within a
    /// minute are audited once, then as a count.
    pub async fn audit_slack_refusal(
        self: &Arc<Self>,
        actor: String,
        code: &str,
        message: String,
        mut details: serde_json::Value,
    ) {
        if let Some(map) = details.as_object_mut() {
            map.insert("code".into(), code.into());
        }
        let mut refused = NewAuditEvent {
            reason: Some(message),
            details,
            ..NewAuditEvent::new(AuditKind::SlackRefused, actor, super::now())
        };
        // A flood of forged posts is counted, not written one by one.
        if self.counted_repeat(&refused, refused.at) {
            return;
        }
        let broker = Arc::clone(self);
        let written = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut work = broker.begin()?;
            refused.at = work.now;
            broker.audit_use(&mut work, refused)?;
            broker.finish(work)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!("a refused Slack post could not be audited");
        }
    }
}
