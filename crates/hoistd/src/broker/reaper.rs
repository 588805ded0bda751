//! Recording what fell due: lapsed requests, scheduled starts, expired
//! grants, and workload tasks nobody can collect any more.

use chrono::{DateTime, Utc};
use hoist_api::{AccessRequest, AuditKind, GrantState, RequestState};
use serde_json::json;

use super::{Broker, SYSTEM_ACTOR, Work, event};
use crate::error::Result;
use crate::store::Exchange;

/// The most the reaper records in one transaction. Every writing
/// transaction takes turns with the others (store rule 1), so a mass
/// expiry is recorded in turns of this many, with the API's calls served
/// between them, not in one transaction that holds them all up.
const REAP_BATCH: usize = 200;

impl Broker {
    /// Records what fell due: lapsed requests, scheduled starts, expired
    /// grants, workload tasks past their last poll, at most [`REAP_BATCH`]
    /// of them. Returns when the next thing falls due, already past when
    /// some were left for the next turn. A job of the leader's, fenced by
    /// its lease once it took one.
    pub fn reap(&self) -> Result<Option<DateTime<Utc>>> {
        let mut work = self.begin_job()?;
        let requests = work.tx.due_requests(work.now)?;
        let mut left = REAP_BATCH.saturating_sub(requests.len());
        for mut request in requests.into_iter().take(REAP_BATCH) {
            match request.state {
                RequestState::Pending => work.time_out(&mut request)?,
                // Cancelled instead if the requester is no longer eligible,
                // or its approvers no longer may approve it.
                RequestState::Approved => match work.approvals_lapsed(&request)? {
                    Some(reason) => work.cancel(&mut request, reason)?,
                    None => {
                        let holding = work.holding(&request)?;
                        work.activate(&mut request, SYSTEM_ACTOR, holding)?;
                    }
                },
                _ => {}
            }
        }
        if left > 0 {
            let grants = work.tx.due_grants(work.now)?;
            let ending = grants.len().min(left);
            left -= ending;
            for mut grant in grants.into_iter().take(ending) {
                work.end_grant(&mut grant, GrantState::Expired, SYSTEM_ACTOR, None)?;
            }
        }
        if left > 0 {
            for exchange in work.tx.uncollected(work.now, left)? {
                let why = format!(
                    "its workload never collected the credential: the task's token expired at {}",
                    exchange.expires_at.to_rfc3339()
                );
                work.uncollected(exchange, why)?;
            }
        }
        let next = work.tx.next_due()?;
        self.finish(work)?;
        Ok(next)
    }
}

impl Work<'_> {
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
