//! Forgetting what is kept only for a while: idempotency keys, the
//! exchanges of workload tokens that can no longer be presented, and the
//! delivery logs of webhooks and notifications.

use chrono::{DateTime, TimeDelta, Utc};

use super::Broker;
use crate::error::Result;
use crate::policy::MAX_WORKLOAD_LEEWAY;

/// How long an idempotency key is honoured: a retry with the same key and
/// body within a day answers with the request it filed; after that, the
/// key is forgotten and the same key files anew.
pub const IDEMPOTENCY_KEPT: TimeDelta = TimeDelta::days(1);

/// How long past its token's expiry a workload exchange is kept. Longer
/// than any rule's leeway may be ([`MAX_WORKLOAD_LEEWAY`]), so a token the
/// broker still accepts always finds its exchange, and its replay is
/// refused.
pub const EXCHANGES_KEPT: TimeDelta = TimeDelta::days(1);

const _: () = assert!(EXCHANGES_KEPT.num_seconds() > MAX_WORKLOAD_LEEWAY.as_secs() as i64);

/// How long the delivery logs (`webhook_deliveries`,
/// `notification_deliveries`) keep an attempt: long enough to look into a
/// target's or a channel's trouble, without growing for ever. What was
/// provisioned and revoked stays in the audit log; notices are not audited
/// (their rows in `notifications` stay).
pub const DELIVERIES_KEPT: TimeDelta = TimeDelta::days(30);

/// The most one purge forgets of each kind: every writing transaction takes
/// its turn (store rule 1), so a large backlog goes in turns of this many,
/// with the API's calls served between them.
pub const PURGE_BATCH: usize = 1_000;

/// What one [`Broker::purge`] forgot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub idempotency_keys: u64,
    pub exchanges: u64,
    pub webhook_deliveries: u64,
    pub notification_deliveries: u64,
}

impl Purged {
    /// Whether a full batch of any went, so more may be left.
    pub fn more_left(&self) -> bool {
        [
            self.idempotency_keys,
            self.exchanges,
            self.webhook_deliveries,
            self.notification_deliveries,
        ]
        .contains(&(PURGE_BATCH as u64))
    }

    /// Adds what another purge forgot.
    pub fn add(&mut self, other: Purged) {
        self.idempotency_keys += other.idempotency_keys;
        self.exchanges += other.exchanges;
        self.webhook_deliveries += other.webhook_deliveries;
        self.notification_deliveries += other.notification_deliveries;
    }
}

impl Broker {
    /// Forgets, as of `now`, idempotency keys used more than
    /// [`IDEMPOTENCY_KEPT`] ago, exchanges of tokens expired more than
    /// [`EXCHANGES_KEPT`] ago, and deliveries made more than
    /// [`DELIVERIES_KEPT`] ago, at most [`PURGE_BATCH`] of each, in one
    /// transaction. Nothing is audited: none of these is an access event,
    /// and the requests and grants they point to stay. A job of the
    /// leader's, fenced by its lease once it took one.
    pub fn purge(&self, now: DateTime<Utc>) -> Result<Purged> {
        let mut tx = self.job_transaction()?;
        let purged = Purged {
            idempotency_keys: tx.purge_idempotency_keys(now - IDEMPOTENCY_KEPT, PURGE_BATCH)?,
            exchanges: tx.purge_exchanges(now - EXCHANGES_KEPT, PURGE_BATCH)?,
            webhook_deliveries: tx.purge_deliveries(now - DELIVERIES_KEPT, PURGE_BATCH)?,
            notification_deliveries: tx
                .purge_notification_deliveries(now - DELIVERIES_KEPT, PURGE_BATCH)?,
        };
        tx.commit()?;
        Ok(purged)
    }
}
