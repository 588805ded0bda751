//! Recording what fell due: lapsed requests, scheduled starts, expired grants.

use chrono::{DateTime, Utc};
use hoist_api::{AuditKind, GrantState, RequestState};
use serde_json::json;

use super::{Broker, SYSTEM_ACTOR, event};
use crate::error::Result;

/// The most the reaper records in one transaction. Every writing
/// transaction takes turns with the others (store rule 1), so a mass
/// expiry is recorded in turns of this many, with the API's calls served
/// between them, not in one transaction that holds them all up.
const REAP_BATCH: usize = 200;

impl Broker {
    /// Records what fell due: lapsed requests, scheduled starts, expired
    /// grants, at most [`REAP_BATCH`] of them. Returns when the next thing
    /// falls due, already past when some were left for the next turn. A job
    /// of the leader's, fenced by its lease once it took one.
    pub fn reap(&self) -> Result<Option<DateTime<Utc>>> {
        let mut work = self.begin_job()?;
        let requests = work.tx.due_requests(work.now)?;
        let left = REAP_BATCH.saturating_sub(requests.len());
        for mut request in requests.into_iter().take(REAP_BATCH) {
            match request.state {
                RequestState::Pending => {
                    let lapsed = request.lapses_at.unwrap_or(work.now);
                    request.state = RequestState::TimedOut;
                    request.reason = Some(format!("no decision before {}", lapsed.to_rfc3339()));
                    request.claim = None;
                    work.save_request(&mut request)?;
                    let mut timed_out =
                        event(AuditKind::TimedOut, SYSTEM_ACTOR, work.now, &request);
                    timed_out.reason = request.reason.clone();
                    timed_out.details = json!({ "lapses_at": lapsed });
                    work.audit(timed_out)?;
                }
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
            for mut grant in work.tx.due_grants(work.now)?.into_iter().take(left) {
                work.end_grant(&mut grant, GrantState::Expired, SYSTEM_ACTOR, None)?;
            }
        }
        let next = work.tx.next_due()?;
        self.finish(work)?;
        Ok(next)
    }
}
