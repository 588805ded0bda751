//! Recording what fell due: lapsed requests, scheduled starts, expired grants.

use chrono::{DateTime, Utc};
use hoist_api::{AuditKind, GrantState, RequestState};
use serde_json::json;

use super::{Broker, SYSTEM_ACTOR, event};
use crate::error::Result;

impl Broker {
    /// Records everything that fell due: lapsed requests, scheduled starts,
    /// expired grants. Returns when the next thing falls due. A job of the
    /// leader's, fenced by its lease once it took one.
    pub fn reap(&self) -> Result<Option<DateTime<Utc>>> {
        let mut work = self.begin_job()?;
        for mut request in work.tx.due_requests(work.now)? {
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
                // Cancelled instead if the requester is no longer eligible.
                RequestState::Approved => work.activate(&mut request, SYSTEM_ACTOR)?,
                _ => {}
            }
        }
        for mut grant in work.tx.due_grants(work.now)? {
            work.end_grant(&mut grant, GrantState::Expired, SYSTEM_ACTOR, None)?;
        }
        let next = work.tx.next_due()?;
        self.finish(work)?;
        Ok(next)
    }
}
