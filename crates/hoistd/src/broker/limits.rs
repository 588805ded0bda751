//! Per-identity rate limits on what is cheap to ask for and costly to
//! answer (credentials, introspection, filing), and repeated events audited
//! once per window with a count instead of once each: uses of one
//! credential, and workload refusals with one code (junk tokens cannot grow the audit
//! log by one entry each).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hoist_api::AuditKind;
use serde_json::json;

use super::{Broker, Work, now};
use crate::audit::NewAuditEvent;
use crate::error::{Error, Result};
use crate::policy::{Rate, Settings};

/// Repeated introspections of one credential by one caller within this
/// long are audited once, then once more with their count.
pub const REPEAT_WINDOW: TimeDelta = TimeDelta::seconds(60);

/// What a limit is on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Act {
    FetchCredential,
    Introspect,
    File,
    /// A workload asking again about a task it filed (a poll, or a replay):
    /// not a filing, but a turn at the writers' lock all the same.
    Poll,
    /// A workload withdrawing a task: a bucket of its own, so that a job
    /// that polled its bucket dry can still withdraw as it gives up.
    Withdraw,
    /// A reviewer claiming a request or releasing it: each a write, an
    /// audit entry and an event to every approver, as a filing is.
    Claim,
    /// Ending something: revoking a grant, cancelling a request,
    /// acknowledging a break-glass, a workload revoking its task. Each takes
    /// the writers' lock before it knows whether it changes anything, so a
    /// flood of them (of ids that are not the caller's) is turned away
    /// before the lock; the bucket, at the introspection rate, is far above
    /// what a responder revoking everything under an incident sends.
    End,
}

impl Act {
    fn what(self) -> &'static str {
        match self {
            Act::FetchCredential => "credential fetches",
            Act::Introspect => "introspections",
            Act::File => "filings",
            Act::Poll => "exchanges of tasks filed already",
            Act::Withdraw => "withdrawals",
            Act::Claim => "claims and releases",
            Act::End => "revocations, cancellations and acknowledgements",
        }
    }
}

/// The limiters for one policy's rates.
pub(super) struct Limits {
    rates: [Rate; 7],
    limiters: [DefaultKeyedRateLimiter<String>; 7],
}

fn quota(rate: Rate) -> Quota {
    let burst = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    let every = (rate.per / rate.count.max(1)).max(Duration::from_nanos(1));
    Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

impl Limits {
    pub(super) fn new(settings: &Settings) -> Limits {
        // Polls, withdrawals and endings have buckets of their own, at the
        // introspection rate; claims one at the filing rate.
        let rates = [
            settings.credential_fetch_rate,
            settings.introspection_rate,
            settings.filing_rate,
            settings.introspection_rate,
            settings.introspection_rate,
            settings.filing_rate,
            settings.introspection_rate,
        ];
        Limits {
            rates,
            limiters: rates.map(|rate| RateLimiter::keyed(quota(rate))),
        }
    }

    pub(super) fn same_rates(&self, settings: &Settings) -> bool {
        self.rates
            == [
                settings.credential_fetch_rate,
                settings.introspection_rate,
                settings.filing_rate,
                settings.introspection_rate,
                settings.introspection_rate,
                settings.filing_rate,
                settings.introspection_rate,
            ]
    }

    fn index(act: Act) -> usize {
        match act {
            Act::FetchCredential => 0,
            Act::Introspect => 1,
            Act::File => 2,
            Act::Poll => 3,
            Act::Withdraw => 4,
            Act::Claim => 5,
            Act::End => 6,
        }
    }

    /// Counts one `act` by `user`, or refuses it with when to try again.
    pub(super) fn check(&self, act: Act, user: &str) -> Result<()> {
        let i = Self::index(act);
        let limiter = &self.limiters[i];
        match limiter.check_key(&user.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(Error::RateLimited {
                message: format!(
                    "too many {}: at most {}; try again shortly",
                    act.what(),
                    self.rates[i]
                ),
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }),
        }
    }

    /// Forgets callers whose limits are back to full.
    pub(super) fn forget_idle(&self) {
        for limiter in &self.limiters {
            limiter.retain_recent();
        }
    }
}

/// One caller's uses of one grant (or refusals with one code) within a
/// window.
pub(super) struct Window {
    /// The first use's event, written when it happened; the summary copies it.
    first: NewAuditEvent,
    until: DateTime<Utc>,
    repeats: u64,
    last: DateTime<Utc>,
}

/// What a window is kept by: the kind, the caller, and the grant or code.
pub(super) type WindowKey = (AuditKind, String, String);

/// Uses audited at the start of their window, counted for the rest of it.
#[derive(Default)]
pub(super) struct Uses {
    windows: Mutex<HashMap<WindowKey, Window>>,
}

impl Uses {
    /// Opens the windows a transaction audited the first use of, once it
    /// committed (each replaces the ended window it summarised): a use
    /// whose transaction failed opens none, and its repeat is audited as
    /// a first use.
    pub(super) fn open(&self, opened: Vec<(WindowKey, Window)>) {
        if opened.is_empty() {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for (key, window) in opened {
            // One opened meanwhile by a transaction that committed first
            // may hold counts already; this one holds none yet.
            windows.entry(key).or_insert(window);
        }
    }

    /// Puts back windows whose summary a transaction that did not commit
    /// was to write. Where a new one opened meanwhile, the ended one's count
    /// goes into it, to be summarised with it.
    pub(super) fn restore(&self, ended: Vec<Window>) {
        if ended.is_empty() {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for window in ended {
            match windows.entry(repeat_key(&window.first)) {
                std::collections::hash_map::Entry::Occupied(mut open) => {
                    open.get_mut().repeats += window.repeats;
                }
                std::collections::hash_map::Entry::Vacant(free) => {
                    free.insert(window);
                }
            }
        }
    }
}

/// Ended windows a transaction summarises: put back into [`Uses`] when
/// it is dropped, unless [`Ended::summarised`] says the summaries
/// committed. A transaction that fails anywhere (a summary that cannot be
/// written, a later step, the commit) loses no count.
pub(super) struct Ended<'a> {
    uses: &'a Uses,
    windows: Vec<Window>,
}

impl<'a> Ended<'a> {
    pub(super) fn new(uses: &'a Uses) -> Self {
        Ended {
            uses,
            windows: Vec::new(),
        }
    }

    fn push(&mut self, window: Window) {
        self.windows.push(window);
    }

    /// Their summaries committed: nothing to put back.
    pub(super) fn summarised(&mut self) {
        self.windows.clear();
    }
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.uses.restore(std::mem::take(&mut self.windows));
    }
}

/// What makes two events repeats of each other: their kind, their actor,
/// and the credential used (its grant and `jti`) or else the refusal's
/// `code`. Uses of two credentials of one grant are audited apart, so
/// every credential's first use is on record with its `jti`.
fn repeat_key(event: &NewAuditEvent) -> (AuditKind, String, String) {
    let detail = |name: &str| {
        event
            .details
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
    };
    let what = match &event.grant_id {
        Some(grant) => format!("{grant} {}", detail("jti")),
        None => detail("code").to_string(),
    };
    (event.kind.clone(), event.actor.clone(), what)
}

impl Broker {
    pub(super) fn limit(&self, act: Act, user: &str) -> Result<()> {
        self.limits.load().check(act, user)
    }

    /// Counts `event` if a window of its repeats is open at `now`, with no
    /// transaction; false if it must be audited (through `audit_use`).
    pub(super) fn counted_repeat(&self, event: &NewAuditEvent, now: DateTime<Utc>) -> bool {
        let mut windows = self.uses.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get_mut(&repeat_key(event)) {
            Some(window) if now < window.until => {
                window.repeats += 1;
                window.last = now;
                true
            }
            _ => false,
        }
    }

    /// Audits an introspection or a workload refusal, unless the same
    /// caller did the same within the window (used the same credential,
    /// or was refused for the same reason): then it is only
    /// counted, and the count is audited when the window ends.
    pub(super) fn audit_use(&self, work: &mut Work<'_>, event: NewAuditEvent) -> Result<()> {
        let key = repeat_key(&event);
        let mut windows = self.uses.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(window) = windows.get_mut(&key)
            && work.now < window.until
        {
            window.repeats += 1;
            window.last = work.now;
            return Ok(());
        }
        // The new window opens once this transaction commits
        // (`Uses::open`); the ended one comes back if it does not.
        let ended = windows.remove(&key);
        drop(windows);
        if let Some(ended) = ended {
            // Held first: put back if the summary, or anything after it,
            // fails.
            let summarised = summarise(work, &ended);
            work.ended_uses.push(ended);
            summarised?;
        }
        work.audit(event.clone())?;
        let window = Window {
            first: event,
            until: work.now + REPEAT_WINDOW,
            repeats: 0,
            last: work.now,
        };
        work.uses.push((key, window));
        Ok(())
    }

    /// Audits the counts of windows that ended (all of them when the broker
    /// stops), and lets limiters forget idle callers.
    pub fn record_repeated_uses(&self, stopping: bool) -> Result<()> {
        self.limits.load().forget_idle();
        let ended: Vec<Window> = {
            let at = now();
            let mut windows = self.uses.windows.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = windows
                .iter()
                .filter(|(_, w)| stopping || w.until <= at)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| windows.remove(k)).collect()
        };
        // Nothing ended, nothing to write: no transaction (each takes the
        // store's turn).
        if ended.is_empty() {
            return Ok(());
        }
        let written = self.begin().and_then(|mut work| {
            let mut wrote = false;
            for window in &ended {
                wrote |= summarise(&mut work, window)?;
            }
            if wrote {
                self.finish(work)?;
            }
            Ok(())
        });
        if written.is_err() {
            // Kept for the next try.
            self.uses.restore(ended);
        }
        written
    }
}

/// Writes a window's count, if anything was counted.
fn summarise(work: &mut Work<'_>, window: &Window) -> Result<bool> {
    if window.repeats == 0 {
        return Ok(false);
    }
    let first_at = window.first.at;
    let mut summary = window.first.clone();
    summary.at = work.now;
    summary.reason = Some(format!(
        "{} more times within {}s of the first",
        window.repeats,
        REPEAT_WINDOW.num_seconds()
    ));
    // The first event's details stay (a refusal's `code`), with the count.
    let counted = json!({
        "repeats": window.repeats,
        "first_at": first_at,
        "last_at": window.last,
    });
    match (summary.details.as_object_mut(), counted) {
        (Some(details), serde_json::Value::Object(counted)) => details.extend(counted),
        (_, counted) => summary.details = counted,
    }
    work.audit(summary)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(actor: &str, repeats: u64) -> (WindowKey, Window) {
        let at = chrono::Utc::now();
        let mut first = NewAuditEvent::new(AuditKind::CredentialIssued, actor, at);
        first.grant_id = Some("gr_1".into());
        let window = Window {
            first,
            until: at + REPEAT_WINDOW,
            repeats,
            last: at,
        };
        (repeat_key(&window.first), window)
    }

    fn repeats(uses: &Uses, key: &WindowKey) -> Option<u64> {
        uses.windows.lock().unwrap().get(key).map(|w| w.repeats)
    }

    /// Two transactions that each audited a first use: the window the
    /// first to commit opened, and counted into since, stays.
    #[test]
    fn a_window_opened_meanwhile_is_not_overwritten() {
        let uses = Uses::default();
        let (key, counted) = window("alice", 3);
        uses.open(vec![(key.clone(), counted)]);
        uses.open(vec![window("alice", 0)]);
        assert_eq!(repeats(&uses, &key), Some(3));
    }

    /// Ended windows a transaction was to summarise come back when it
    /// ends without committing, whatever ended it; not once it committed.
    #[test]
    fn ended_windows_come_back_unless_their_summary_committed() {
        let uses = Uses::default();
        let (key, ended) = window("bob", 5);
        {
            let mut held = Ended::new(&uses);
            held.push(ended);
        }
        assert_eq!(repeats(&uses, &key), Some(5), "put back");
        let ended = uses.windows.lock().unwrap().remove(&key).unwrap();
        {
            let mut held = Ended::new(&uses);
            held.push(ended);
            held.summarised();
        }
        assert_eq!(repeats(&uses, &key), None, "summarised, not put back");
        // Put back where a new window opened meanwhile: its count joins it.
        let (key, newer) = window("bob", 1);
        uses.open(vec![(key.clone(), newer)]);
        uses.restore(vec![window("bob", 5).1]);
        assert_eq!(repeats(&uses, &key), Some(6));
    }
}
