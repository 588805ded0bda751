//! Recording what fell due: lapsed requests, scheduled starts, expired
//! grants, and workload tasks nobody can collect any more.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{AccessRequest, AuditKind, Grant, GrantState, RequestState};
use serde_json::json;

use super::{Broker, SYSTEM_ACTOR, Work, event, now};
use crate::error::{Error, Result};
use crate::store::{Exchange, StoreError};

/// The most the reaper records in one transaction. Every writing
/// transaction takes turns with the others (store rule 1), so a mass
/// expiry is recorded in turns of this many, with the API's calls served
/// between them, not in one transaction that holds them all up.
const REAP_BATCH: usize = 200;

/// How soon the reaper looks again while something due could not be
/// recorded: what falls due meanwhile waits at most this long.
const STUCK_RETRY: TimeDelta = TimeDelta::seconds(1);

impl Broker {
    /// Records what fell due: lapsed requests, scheduled starts, expired
    /// grants, workload tasks past their last poll, at most [`REAP_BATCH`]
    /// of them (and, one at a time, what failed at the last look).
    /// Returns when the next thing falls due, already past when
    /// some were left for the next turn. A job of the leader's, fenced by
    /// its lease once it took one.
    ///
    /// A batch that cannot be recorded for a reason other than the
    /// database's (a row it cannot read, an item whose recording fails) is
    /// recorded one item at a time instead: one bad item must not keep
    /// every other expiry, and the removal of its access, from happening.
    pub fn reap(&self) -> Result<Option<DateTime<Utc>>> {
        match self.reap_batch() {
            Err(err) if !passing(&err) => {
                tracing::warn!(
                    error = %err,
                    "what fell due could not be recorded together; recording it one at a time"
                );
                self.reap_singly()
            }
            Ok(next) => {
                self.reaper_stuck
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                Ok(next)
            }
            err => err,
        }
    }

    fn reap_batch(&self) -> Result<Option<DateTime<Utc>>> {
        let mut work = self.begin_job()?;
        // Ended grants first: each one's access is removed at its target
        // once recorded. After an outage, a backlog of lapsed requests
        // must not hold them back for turns.
        let grants = work.tx.due_grants(work.now, REAP_BATCH)?;
        let mut left = REAP_BATCH.saturating_sub(grants.len());
        for grant in grants {
            work.reap_grant(grant)?;
        }
        if left > 0 {
            let requests = work.tx.due_requests(work.now, left)?;
            left -= requests.len().min(left);
            for request in requests {
                work.reap_request(request)?;
            }
        }
        if left > 0 {
            work.reap_uncollected(left)?;
        }
        let next = work.tx.next_due()?;
        self.finish(work)?;
        Ok(next)
    }

    /// [`Broker::reap`], each item in a transaction of its own. One that
    /// fails is logged (once while it keeps failing) and left for the next
    /// look, [`STUCK_RETRY`] on; the rest are recorded. What failed at the
    /// last look is tried again after the others, and does not count
    /// against their batch: however many bad items fall due first, the
    /// ones after them are reached.
    fn reap_singly(&self) -> Result<Option<DateTime<Utc>>> {
        let failed_before = self
            .reaper_stuck
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let limit = REAP_BATCH + failed_before.len();
        let (requests, grants, tasks) = {
            let (read, at) = (self.store().read()?, now());
            let (requests, grants) = read.due_ids(at, limit)?;
            (requests, grants, read.uncollected_keys(at, limit)?)
        };
        let mut stuck = Vec::new();
        // Ended grants first, as in a batch.
        let (again, fresh): (Vec<_>, Vec<_>) = grants
            .into_iter()
            .map(Item::Grant)
            .chain(requests.into_iter().map(Item::Request))
            .chain(tasks.into_iter().map(Item::Task))
            .partition(|item| failed_before.contains(item.key()));
        // What failed before is recorded again only once it reads: a look
        // at a row that still does not costs no writer's turn.
        let again: Vec<Item> = {
            let read = self.store().read()?;
            let mut reads = Vec::new();
            for item in again {
                let looked = match &item {
                    Item::Request(id) => read.request(id).map(drop),
                    Item::Grant(id) => read.grant(id).map(drop),
                    Item::Task(key) => read.exchange(key).map(drop),
                };
                match looked.map_err(Error::from) {
                    Ok(()) => reads.push(item),
                    Err(err) if passing(&err) => return Err(err),
                    Err(err) => stuck.push((item, err)),
                }
            }
            reads
        };
        let items = fresh.into_iter().take(REAP_BATCH).chain(again);
        for item in items {
            let reaped = self.begin_job().and_then(|mut work| {
                let now = work.now;
                match &item {
                    Item::Request(id) => {
                        if let Some(request) = work.tx.request(id)?.filter(|r| due(r, now)) {
                            work.reap_request(request)?;
                        }
                    }
                    Item::Grant(id) => {
                        if let Some(grant) = work
                            .tx
                            .grant(id)?
                            .filter(|g| g.state == GrantState::Active && g.expires_at <= now)
                        {
                            work.reap_grant(grant)?;
                        }
                    }
                    Item::Task(key) => {
                        if let Some(exchange) = work.tx.exchange(key)?.filter(|e| {
                            e.redeemed_at.is_none() && e.collect_by.is_some_and(|at| at <= now)
                        }) {
                            work.reap_exchange(exchange)?;
                        }
                    }
                }
                self.finish(work)
            });
            match reaped {
                Ok(()) => {}
                Err(err) if passing(&err) => return Err(err),
                Err(err) => stuck.push((item, err)),
            }
        }
        let mut logged = self.reaper_stuck.lock().unwrap_or_else(|p| p.into_inner());
        let now_stuck: std::collections::HashSet<String> = stuck
            .iter()
            .map(|(item, _)| item.key().to_string())
            .collect();
        for (item, err) in &stuck {
            if !logged.contains(item.key()) {
                tracing::error!(
                    item = %item,
                    error = %err,
                    "what fell due could not be recorded; the rest was, and it is tried again"
                );
            }
        }
        *logged = now_stuck;
        let next = self.store().read()?.next_due()?;
        Ok(match next {
            Some(next) if !stuck.is_empty() => Some(next.max(now() + STUCK_RETRY)),
            next => next,
        })
    }
}

/// What the reaper records, by the key it reads it again by.
enum Item {
    Grant(String),
    Request(String),
    /// A workload task nobody can collect any more, by its task key.
    Task(String),
}

impl Item {
    fn key(&self) -> &str {
        match self {
            Item::Grant(key) | Item::Request(key) | Item::Task(key) => key,
        }
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Read from rows that may have been edited outside hoistd.
            Item::Grant(id) | Item::Request(id) => write!(f, "{}", id.escape_debug()),
            // Its issuer and token id, on one line.
            Item::Task(key) => write!(f, "workload task {}", key.escape_debug()),
        }
    }
}

/// Whether an error is the database's, passing: the same work done again
/// later may succeed as it is.
pub(super) fn passing(err: &Error) -> bool {
    matches!(
        err,
        Error::Store(
            StoreError::Unavailable(_) | StoreError::Uncertain(_) | StoreError::Contended(_)
        )
    )
}

/// Whether a request is due: pending past its lapse, or approved and at
/// its start (none: at once).
fn due(request: &AccessRequest, now: DateTime<Utc>) -> bool {
    match request.state {
        RequestState::Pending => request.lapses_at.is_some_and(|at| at <= now),
        RequestState::Approved => request.starts_at.is_none_or(|at| at <= now),
        _ => false,
    }
}

impl Work<'_> {
    /// Records what a due request comes to: timed out, cancelled, or its
    /// grant started.
    fn reap_request(&mut self, mut request: AccessRequest) -> Result<()> {
        match request.state {
            RequestState::Pending => self.time_out(&mut request),
            // Cancelled instead if the requester is no longer eligible, or
            // its approvers no longer may approve it.
            RequestState::Approved => match self.approvals_lapsed(&request)? {
                Some(reason) => self.cancel(&mut request, reason),
                None => {
                    let holding = self.holding(&request)?;
                    self.activate(&mut request, SYSTEM_ACTOR, holding)
                }
            },
            _ => Ok(()),
        }
    }

    fn reap_grant(&mut self, mut grant: Grant) -> Result<()> {
        self.end_grant(&mut grant, GrantState::Expired, SYSTEM_ACTOR, None)
    }

    /// Settles at most `limit` workload tasks nobody can collect any more.
    fn reap_uncollected(&mut self, limit: usize) -> Result<()> {
        for exchange in self.tx.uncollected(self.now, limit)? {
            self.reap_exchange(exchange)?;
        }
        Ok(())
    }

    fn reap_exchange(&mut self, exchange: Exchange) -> Result<()> {
        let why = format!(
            "its workload never collected the credential: the task's token expired at {}",
            exchange.expires_at.to_rfc3339()
        );
        self.uncollected(exchange, why)
    }

    /// Records a pending request whose time for a decision is over as
    /// timed out, as every read has shown it since.
    pub(super) fn time_out(&mut self, request: &mut AccessRequest) -> Result<()> {
        let lapsed = request.lapses_at.unwrap_or(self.now);
        request.state = RequestState::TimedOut;
        request.reason = Some(format!("no decision before {}", lapsed.to_rfc3339()));
        request.claim = None;
        self.save_request(request)?;
        let mut timed_out = event(AuditKind::TimedOut, SYSTEM_ACTOR, self.now, request);
        timed_out.reason = request.reason.clone();
        timed_out.details = json!({ "lapses_at": lapsed });
        self.audit(timed_out)?;
        Ok(())
    }

    /// Settles a workload task keyed by its token that can no longer be
    /// collected: no poll is let in past its token's end (with the
    /// leeway), and the last one has ended its wait for the target, so a
    /// grant still active whose credential was never handed over (approved
    /// in the token's last seconds, its target slow to make the access
    /// live) can be neither used nor withdrawn by its job. It is revoked,
    /// rather than left to its end.
    pub(super) fn uncollected(&mut self, mut exchange: Exchange, why: String) -> Result<()> {
        exchange.collect_by = None;
        self.tx.update_exchange(&exchange)?;
        let Some(grant_id) = self
            .tx
            .request(&exchange.request_id)?
            .and_then(|request| request.grant_id)
        else {
            return Ok(());
        };
        let Some(mut grant) = self.tx.grant(&grant_id)? else {
            return Ok(());
        };
        if grant.state != GrantState::Active || grant.expires_at <= self.now {
            return Ok(());
        }
        self.end_grant(&mut grant, GrantState::Revoked, SYSTEM_ACTOR, Some(why))
    }
}
