//! The outbox worker: runs each effect the lifecycle wrote (provision,
//! deprovision) against its target, outside any transaction, and has the
//! ledger record the outcome. A failed effect is tried again with capped,
//! jittered backoff; a deprovision until the target confirms it, a
//! provision until its grant ends (its deprovision takes over). Effects
//! are in the store, so a restart picks up whatever was left.
//!
//! One grant's effects never run at once: a deprovision waits for the
//! provision still in flight, so it cannot remove access before the
//! provision creates it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::{Due, Ledger, TargetError};
use crate::store::EffectAction;

/// Longest the worker sleeps between looks at the outbox, in case a
/// wake-up is missed.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Effects run at once, across targets.
const MAX_RUNNING: usize = 16;
/// Effects run at once at one target: a target that stops answering holds
/// no more than these, so the others' removals still run; once its last
/// call failed, one (see [`Failing`]).
const MAX_RUNNING_PER_TARGET: usize = 4;
/// Effects run at once at targets that are failing, in all: the other
/// slots stay for targets that answer.
const MAX_PROBING: usize = MAX_RUNNING / 2;
/// Due effects read at a time.
const READ: usize = 256;
/// How long a worker told to stop while it still leads waits for the calls
/// under way: a webhook's default timeout.
pub(crate) const HALT_WAIT: Duration = Duration::from_secs(5);
/// How long an effect not run because this instance no longer leads holds
/// its grant busy, while the worker is halted.
pub(crate) const LEAD_LOST_PAUSE: Duration = Duration::from_millis(200);
/// First retry after this; doubled per failure.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Never longer between attempts than this.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// The least an effect (or a notification) waits to run again when its
/// outcome could not be recorded.
pub(crate) const UNRECORDED_PAUSE: Duration = Duration::from_secs(5);

/// When to try again after `attempts` failures: doubling from half a second
/// to a minute, less up to a quarter at random so that effects failing
/// together do not retry together.
pub fn backoff(attempts: u32) -> Duration {
    let doubled = FIRST_RETRY
        .checked_mul(1_u32 << attempts.saturating_sub(1).min(16))
        .unwrap_or(MAX_RETRY)
        .min(MAX_RETRY);
    let jitter = rand::random::<f64>() * 0.25;
    doubled.mul_f64(1.0 - jitter)
}

/// The destinations (targets, channels) whose last call found them
/// unreachable (no answer in time, a 5xx or 429): each runs one call at a
/// time until a call is answered, as a probe, so that a few that stopped
/// answering cannot hold every slot between them until their calls time
/// out. One that answers no to one call (a 4xx) is not failing. A worker
/// learns it from its own calls; a new leader learns it again from its
/// first.
#[derive(Debug, Default)]
pub(crate) struct Failing(HashSet<String>);

impl Failing {
    /// Notes whether a call to `destination` was answered (`None`: it made
    /// none).
    pub(crate) fn note(&mut self, destination: &str, answered: Option<bool>) {
        match answered {
            Some(true) => {
                self.0.remove(destination);
            }
            Some(false) => {
                self.0.insert(destination.to_string());
            }
            None => {}
        }
    }
}

/// A worker's slots for one pass: how many calls each destination has in
/// flight, against what it may have: `per_destination`, one while it is
/// failing, and no more than `max_probing` to failing destinations in all,
/// so the rest stay for destinations that answer.
pub(crate) struct Slots<'a> {
    failing: &'a Failing,
    per_destination: usize,
    max_probing: usize,
    in_flight: HashMap<String, usize>,
    probing: usize,
}

impl<'a> Slots<'a> {
    pub(crate) fn new<'b>(
        failing: &'a Failing,
        in_flight: impl Iterator<Item = &'b String>,
        per_destination: usize,
        max_probing: usize,
    ) -> Self {
        let mut slots = Slots {
            failing,
            per_destination,
            max_probing,
            in_flight: HashMap::new(),
            probing: 0,
        };
        for destination in in_flight {
            slots.take(destination);
        }
        slots
    }

    fn busy(&self, destination: &str) -> usize {
        self.in_flight.get(destination).copied().unwrap_or(0)
    }

    /// Whether a call to `destination` may start.
    pub(crate) fn fit(&self, destination: &str) -> bool {
        if self.failing.0.contains(destination) {
            self.busy(destination) == 0 && self.probing < self.max_probing
        } else {
            self.busy(destination) < self.per_destination
        }
    }

    /// Counts a call to `destination` as in flight.
    pub(crate) fn take(&mut self, destination: &str) {
        *self.in_flight.entry(destination.to_string()).or_default() += 1;
        if self.failing.0.contains(destination) {
            self.probing += 1;
        }
    }

    /// The destinations that may start no call, which a read leaves out,
    /// so that one destination's work, however much falls due, cannot fill
    /// the read and hide the others' (one that stopped answering may have
    /// thousands due).
    pub(crate) fn full(&self) -> Vec<String> {
        let known: HashSet<&String> = self.in_flight.keys().chain(&self.failing.0).collect();
        known
            .into_iter()
            .filter(|destination| !self.fit(destination))
            .cloned()
            .collect()
    }
}

/// Runs effects as they fall due until `stopped`.
pub async fn run<L: Ledger>(ledger: Arc<L>, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    let mut running: JoinSet<Attempted> = JoinSet::new();
    // The grant and target of each effect in flight, by the task running it.
    let mut busy: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
    // Grants whose last outcome could not be recorded, until when none of
    // their effects runs: they hold no slot meanwhile.
    let mut held: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut failing = Failing::default();
    loop {
        let now = super::now();
        let instant = tokio::time::Instant::now();
        held.retain(|_, until| *until > instant);
        let horizon = now + chrono::TimeDelta::from_std(MAX_SLEEP).unwrap_or_default();
        let mut slots = Slots::new(
            &failing,
            busy.values().map(|(_, target)| target),
            MAX_RUNNING_PER_TARGET,
            MAX_PROBING,
        );
        let full = slots.full();
        let looked = {
            let ledger = Arc::clone(&ledger);
            tokio::task::spawn_blocking(move || ledger.due_effects(horizon, READ, &full)).await
        };
        let mut next: Option<DateTime<Utc>> = None;
        let mut again = false;
        match looked {
            Ok(Ok(dues)) => {
                let in_flight: HashSet<&String> = busy.values().map(|(grant, _)| grant).collect();
                // A full read may have left out effects due at targets it
                // did not reach; once this pass fills the targets it did
                // reach, the next read leaves those out: read again at once.
                let filled = dues.len() >= READ;
                let mut starting = Vec::new();
                for due in dues {
                    if in_flight.contains(&due.effect.grant_id)
                        || held.contains_key(&due.effect.grant_id)
                        || starting
                            .iter()
                            .any(|d: &Due| d.effect.grant_id == due.effect.grant_id)
                    {
                        continue;
                    }
                    if !slots.fit(&due.effect.target) {
                        continue;
                    }
                    if due.effect.next_attempt_at > now {
                        next = Some(next.map_or(due.effect.next_attempt_at, |n| {
                            n.min(due.effect.next_attempt_at)
                        }));
                        continue;
                    }
                    if running.len() + starting.len() < MAX_RUNNING {
                        slots.take(&due.effect.target);
                        starting.push(due);
                    }
                }
                again = filled && !starting.is_empty();
                for due in starting {
                    let ids = (due.effect.grant_id.clone(), due.effect.target.clone());
                    let handle = running.spawn(attempt(Arc::clone(&ledger), due));
                    busy.insert(handle.id(), ids);
                }
            }
            Ok(Err(err)) => tracing::error!(error = %err, "outbox not read; retrying"),
            Err(err) => tracing::error!(error = %err, "outbox not read; retrying"),
        }
        if again {
            continue;
        }
        let sleep = next
            .map(|at| (at - super::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        let sleep = held
            .values()
            .map(|until| until.saturating_duration_since(tokio::time::Instant::now()))
            .fold(sleep, Duration::min);
        let stopping = tokio::select! {
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, answered, hold) = match &done {
                    Ok((id, attempted)) => (*id, attempted.answered, attempted.unrecorded),
                    // A bug outside the target's call (the task
                    // panicked), nothing recorded: the effect waits a
                    // pause, as one whose outcome was not recorded does,
                    // rather than run again at the next look.
                    Err(err) => {
                        tracing::error!(error = %err, "an outbox effect failed to run");
                        (err.id(), None, Some(UNRECORDED_PAUSE))
                    }
                };
                if let Some((grant, target)) = busy.remove(&id) {
                    failing.note(&target, answered);
                    if let Some(pause) = hold {
                        held.insert(grant, tokio::time::Instant::now() + pause);
                    }
                }
                false
            }
            _ = tokio::time::sleep(sleep) => false,
            _ = wake.notified() => false,
            _ = stopped.wait_for(|stopped| *stopped) => true,
        };
        if stopping {
            // At a clean stop this instance still leads: the calls under
            // way are answered (for a while), so that none lands after the
            // lease is given up. Past its term, they are abandoned. Whatever
            // is abandoned is not lost: it is still in the outbox, and
            // idempotent, for the next leader.
            if ledger.leads_now() {
                let _ = tokio::time::timeout(HALT_WAIT, async {
                    while running.join_next().await.is_some() {}
                })
                .await;
            }
            running.abort_all();
            return;
        }
    }
}

/// What came of one [`attempt`].
struct Attempted {
    /// Whether the target answered (`None`: it was not asked).
    answered: Option<bool>,
    /// The outcome was not recorded (the store takes reads but no writes:
    /// out of disk, read only): the effect stays due and runs again, as it
    /// is idempotent, but not before this pause, its grant held meanwhile
    /// rather than tried at once and for ever. It holds no slot: other
    /// effects run in the meantime.
    unrecorded: Option<Duration>,
}

/// Runs one effect and records its outcome.
async fn attempt<L: Ledger>(ledger: Arc<L>, due: Due) -> Attempted {
    // The call acts under the lease it is made with: one that lapsed just
    // now leaves it with none, and it is not made without.
    let journal = ledger.journal();
    if !ledger.leads_now() || journal.leader_epoch().is_none() {
        // Past this instance's term: the effect stays due, for whoever
        // leads now. The worker is being halted; until then the grant
        // stays busy rather than be tried again at once.
        tokio::time::sleep(LEAD_LOST_PAUSE).await;
        return Attempted {
            answered: None,
            unrecorded: None,
        };
    }
    let targets = ledger.targets();
    let started = std::time::Instant::now();
    let (outcome, asked) = match targets.get(&due.effect.target) {
        None => (
            Err(TargetError::refused(
                &due.effect.target,
                "no such target in the policy in force",
            )),
            false,
        ),
        Some(target) => match targets.moved(&due.effect.target, due.effect.system.as_deref()) {
            Some(why) => (Err(TargetError::refused(&due.effect.target, why)), false),
            None => {
                let call = async {
                    match due.effect.action {
                        EffectAction::Provision => target.provision(&due.grant, &journal).await,
                        EffectAction::Deprovision => target.deprovision(&due.grant, &journal).await,
                    }
                };
                // A panic in a kind's call is a bug; it fails this attempt like
                // any other failure, recorded and retried after its backoff,
                // rather than leave the effect due and run it again at once.
                match std::panic::AssertUnwindSafe(call).catch_unwind().await {
                    Ok(outcome) => (outcome, true),
                    Err(_) => (
                        Err(TargetError::refused(
                            &due.effect.target,
                            "hoistd failed while making the call (a bug: see hoistd's log)",
                        )),
                        true,
                    ),
                }
            }
        },
    };
    let answered = asked.then_some(!matches!(outcome, Err(TargetError::Unreachable(..))));
    if outcome.is_ok() {
        tracing::info!(
            target = %due.effect.target,
            grant = %due.grant.id,
            action = due.effect.action.as_str(),
            attempt = due.effect.attempts + 1,
            ms = started.elapsed().as_millis() as u64,
            "target effect done"
        );
    }
    if let Err(err) = &outcome {
        tracing::warn!(
            target = %due.effect.target,
            grant = %due.grant.id,
            action = due.effect.action.as_str(),
            error = %err,
            "target effect failed; retrying"
        );
    }
    let attempts = due.effect.attempts;
    let recorded = tokio::task::spawn_blocking(move || ledger.record_effect(&due, outcome)).await;
    let unrecorded = match recorded {
        Ok(Ok(())) => {
            return Attempted {
                answered,
                unrecorded: None,
            };
        }
        Ok(Err(err)) => err.to_string(),
        Err(err) => err.to_string(),
    };
    tracing::error!(error = %unrecorded, "target effect outcome not recorded");
    Attempted {
        answered,
        unrecorded: Some(backoff(attempts + 1).max(UNRECORDED_PAUSE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 1..40 {
            let wait = backoff(attempts);
            let ceiling = FIRST_RETRY
                .checked_mul(1_u32 << (attempts - 1).min(16))
                .unwrap_or(MAX_RETRY)
                .min(MAX_RETRY);
            assert!(wait <= ceiling, "{attempts}: {wait:?} > {ceiling:?}");
            assert!(wait >= ceiling.mul_f64(0.75), "{attempts}: {wait:?}");
        }
        assert!(backoff(1) <= FIRST_RETRY);
        assert!(backoff(100) <= MAX_RETRY);
    }

    #[test]
    fn a_failing_destination_probes_until_a_call_is_answered() {
        // Four calls a destination, two probes in all.
        let slots = |failing: &Failing, in_flight: &[&str]| {
            let in_flight: Vec<String> = in_flight.iter().map(|d| d.to_string()).collect();
            let slots = Slots::new(failing, in_flight.iter(), 4, 2);
            let mut full = slots.full();
            full.sort();
            (["t", "u", "v", "w"].map(|d| slots.fit(d)), full)
        };
        let mut failing = Failing::default();
        assert_eq!(slots(&failing, &["t"; 3]), ([true; 4], vec![]));
        assert_eq!(slots(&failing, &["t"; 4]).1, ["t"]);
        for unreachable in ["t", "u", "w"] {
            failing.note(unreachable, Some(false));
        }
        failing.note("v", None);
        assert_eq!(slots(&failing, &[]), ([true; 4], vec![]));
        assert_eq!(
            slots(&failing, &["t"]),
            ([false, true, true, true], vec!["t".to_string()])
        );
        // Two probes in flight: no other failing destination may start.
        assert_eq!(
            slots(&failing, &["t", "u"]),
            (
                [false, false, true, false],
                ["t", "u", "w"].map(String::from).to_vec()
            )
        );
        failing.note("t", None);
        assert!(!slots(&failing, &["t"]).0[0], "no call made");
        failing.note("t", Some(true));
        assert!(slots(&failing, &["t"; 3]).0[0]);
    }
}

/// Waits until `counter` counts something, for `within` at most (a
/// worker test's wait for the call it expects).
#[cfg(test)]
pub(crate) async fn until_counted(counter: &std::sync::atomic::AtomicUsize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while counter.load(std::sync::atomic::Ordering::SeqCst) == 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod worker_tests {
    //! The worker (and the reconciler) over a ledger of given due effects
    //! and targets: an outcome the store does not record is not run again
    //! at once, a target that stops answering does not hold up the others,
    //! and a pass waiting on one stops with its leader.
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::{Effect, StoreError};
    use crate::target::{GrantFacts, Journal, Managed, TargetKind, Targets, reconcile};

    /// A target that counts its calls, and the answers it gave after
    /// `takes`; one that `hangs` never answers, one that `fails` answers
    /// with an error.
    #[derive(Debug)]
    struct Counting {
        name: &'static str,
        calls: Arc<AtomicUsize>,
        hangs: bool,
        fails: bool,
        /// Panics, as a bug in a kind's call would.
        panics: bool,
        /// Refuses every removal of what it lists.
        refuses_removal: bool,
        takes: Duration,
        answered: Arc<AtomicUsize>,
        /// What it lists as made by hoist, and how much of it was removed.
        found: Arc<std::sync::Mutex<Vec<Managed>>>,
        removed: Arc<AtomicUsize>,
    }

    impl Counting {
        async fn call(&self) -> Result<(), TargetError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hangs {
                std::future::pending::<()>().await;
            }
            if self.panics {
                panic!("a bug in the target's call");
            }
            tokio::time::sleep(self.takes).await;
            self.answered.fetch_add(1, Ordering::SeqCst);
            if self.fails {
                return Err(TargetError::unreachable(self.name, "no answer within 10s"));
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl TargetKind for Counting {
        fn name(&self) -> &str {
            self.name
        }
        fn kind(&self) -> &'static str {
            "webhook"
        }
        /// Each its own system, unless its name says it shares one
        /// (`<system>/<name>`).
        fn system(&self) -> String {
            self.name.split('/').next().unwrap_or(self.name).to_string()
        }
        fn access(&self, _: toml::Table) -> Result<serde_json::Value, String> {
            Ok(serde_json::Value::Null)
        }
        async fn validate(&self, _: &serde_json::Value) -> Result<(), TargetError> {
            Ok(())
        }
        async fn provision(&self, _: &GrantFacts, _: &Journal) -> Result<(), TargetError> {
            self.call().await
        }
        async fn deprovision(&self, _: &GrantFacts, _: &Journal) -> Result<(), TargetError> {
            self.call().await
        }
        async fn inspect(&self, _: &GrantFacts, _: &Journal) -> Result<bool, TargetError> {
            Ok(true)
        }
        async fn managed(&self, _: &Journal) -> Result<Option<Vec<Managed>>, TargetError> {
            self.call().await?;
            Ok(Some(self.found.lock().unwrap().clone()))
        }
        async fn remove(&self, managed: &Managed, _: &Journal) -> Result<(), TargetError> {
            if self.refuses_removal {
                return Err(TargetError::refused(self.name, "not allowed"));
            }
            self.removed.fetch_add(1, Ordering::SeqCst);
            self.found.lock().unwrap().retain(|m| m != managed);
            Ok(())
        }
        async fn credential(
            &self,
            _: &GrantFacts,
            _: &Journal,
            _: Option<&crate::target::ssh::HolderKey>,
        ) -> Result<Option<hoist_api::AccessCredential>, TargetError> {
            Ok(None)
        }
    }

    /// A deprovision of `grant` at `target`, due since long ago.
    fn due(grant: &str, target: &str) -> Due {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Due {
            effect: Effect {
                id: format!("fx_{grant}"),
                grant_id: grant.into(),
                target: target.into(),
                action: EffectAction::Deprovision,
                attempts: 0,
                next_attempt_at: at,
                last_error: None,
                created_at: at,
                done_at: None,
                access: None,
                system: None,
            },
            grant: GrantFacts {
                id: grant.into(),
                role: "r".into(),
                holder: "alice".into(),
                starts_at: at,
                expires_at: at,
                access: serde_json::Value::Null,
                justification: "j".into(),
                ticket: None,
                incident: None,
            },
        }
    }

    /// The outbox of `targets`, whose due effects are `dues`, over a store
    /// that takes no writes unless `records`, and never the outcome of an
    /// effect of a grant whose id begins `gr_unrecorded`.
    struct FakeLedger {
        targets: Vec<Arc<Counting>>,
        dues: Vec<Due>,
        records: bool,
        /// Whether it says this instance still leads.
        leads: bool,
        /// The grants holding access before a reconciler lists a target;
        /// none hold access after.
        held_before: std::collections::HashSet<String>,
        /// Drift audits refused (this many first), and written.
        drift_refusals: AtomicUsize,
        drift_audited: AtomicUsize,
        /// Rounds of the reconciler over every system.
        rounds: AtomicUsize,
        /// Drift removals recorded (by target) and not yet audited, and
        /// whether it records them.
        recorded: std::sync::Mutex<Vec<(String, Managed)>>,
        records_drift: bool,
        /// How many more times a journal asked for panics (a bug outside
        /// the target's call).
        journal_panics: AtomicUsize,
        /// The outcomes it was asked to record.
        outcomes: std::sync::Mutex<Vec<String>>,
        store: Arc<dyn crate::store::Store>,
        _dir: tempfile::TempDir,
    }

    impl FakeLedger {
        fn new(targets: Vec<Counting>, dues: Vec<Due>, records: bool) -> Arc<FakeLedger> {
            Self::leading(targets, dues, records, true)
        }

        fn leading(
            targets: Vec<Counting>,
            dues: Vec<Due>,
            records: bool,
            leads: bool,
        ) -> Arc<FakeLedger> {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn crate::store::Store> =
                Arc::new(crate::store::SqliteStore::open(&dir.path().join("db")).unwrap());
            Arc::new(FakeLedger {
                targets: targets.into_iter().map(Arc::new).collect(),
                dues,
                records,
                leads,
                held_before: Default::default(),
                drift_refusals: AtomicUsize::new(0),
                drift_audited: AtomicUsize::new(0),
                rounds: AtomicUsize::new(0),
                outcomes: Default::default(),
                recorded: Default::default(),
                records_drift: true,
                journal_panics: AtomicUsize::new(0),
                store,
                _dir: dir,
            })
        }

        /// Runs the worker for `secs` seconds.
        async fn run_for(self: Arc<Self>, secs: u64) {
            let (stop, stopped) = watch::channel(false);
            let worker = tokio::spawn(run(self, Arc::new(Notify::new()), stopped));
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.send(true).unwrap();
            worker.await.unwrap();
        }
    }

    impl Ledger for FakeLedger {
        fn leads_now(&self) -> bool {
            self.leads
        }
        fn targets(&self) -> Targets {
            let mut targets = Targets::default();
            for target in &self.targets {
                targets.insert(Arc::clone(target) as Arc<dyn TargetKind>);
            }
            targets
        }
        fn journal(&self) -> Journal {
            let panics =
                self.journal_panics
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            assert!(panics.is_err(), "a bug");
            let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
            Journal::new(
                Arc::clone(&self.store),
                Arc::new(crate::target::ssh::Authorities::new(Arc::new(
                    crate::target::ssh::Authority::from_key(&key),
                ))),
                Arc::new(crate::credential::Signer::from_key(&key).unwrap()),
                "https://hoist.test".into(),
            )
            .under_lease(self.leads.then_some(1))
        }
        fn due_effects(
            &self,
            _: DateTime<Utc>,
            limit: usize,
            skip: &[String],
        ) -> crate::error::Result<Vec<Due>> {
            Ok(self
                .dues
                .iter()
                .filter(|due| !skip.contains(&due.effect.target))
                .take(limit)
                .cloned()
                .collect())
        }
        fn next_effect_due(&self) -> crate::error::Result<Option<DateTime<Utc>>> {
            Ok(None)
        }
        fn record_effect(
            &self,
            due: &Due,
            outcome: Result<(), TargetError>,
        ) -> crate::error::Result<()> {
            self.outcomes.lock().unwrap().push(match outcome {
                Ok(()) => "done".into(),
                Err(err) => err.to_string(),
            });
            if self.records && !due.effect.grant_id.starts_with("gr_unrecorded") {
                return Ok(());
            }
            // E.g. PostgreSQL read-only or out of disk: reads work, writes fail.
            Err(StoreError::Unavailable("25006: read-only transaction".into()).into())
        }
        fn holding(&self) -> crate::error::Result<std::collections::HashSet<String>> {
            Ok(self.held_before.clone())
        }
        fn reconcile_view(&self, _: &str) -> crate::error::Result<reconcile::View> {
            Ok(reconcile::View::default())
        }
        fn access_missing(&self, _: &str, _: &str) -> crate::error::Result<()> {
            Ok(())
        }
        fn drift_removed(&self, target: &str, found: &Managed) -> crate::error::Result<()> {
            let refused = self
                .drift_refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refused {
                return Err(StoreError::Contended("leadership lost".into()).into());
            }
            self.drift_audited.fetch_add(1, Ordering::SeqCst);
            self.recorded
                .lock()
                .unwrap()
                .retain(|(t, m)| !(t == target && m.name == found.name));
            Ok(())
        }
        fn drift_found(&self, target: &str, found: &Managed) -> crate::error::Result<()> {
            if !self.records_drift {
                return Err(StoreError::Unavailable("the database is down".into()).into());
            }
            let mut recorded = self.recorded.lock().unwrap();
            if !recorded
                .iter()
                .any(|(t, m)| t == target && m.name == found.name)
            {
                recorded.push((target.to_string(), found.clone()));
            }
            Ok(())
        }
        fn drift_removals(&self, target: &str) -> crate::error::Result<Vec<Managed>> {
            Ok(self
                .recorded
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, _)| t == target)
                .map(|(_, m)| m.clone())
                .collect())
        }
        fn drift_explained(&self, target: &str, name: &str) -> crate::error::Result<()> {
            self.recorded
                .lock()
                .unwrap()
                .retain(|(t, m)| !(t == target && m.name == name));
            Ok(())
        }
        fn reconciled(&self) {
            self.rounds.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting(name: &'static str, hangs: bool) -> (Counting, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let target = Counting {
            name,
            calls: Arc::clone(&calls),
            hangs,
            fails: false,
            panics: false,
            refuses_removal: false,
            takes: Duration::ZERO,
            answered: Arc::new(AtomicUsize::new(0)),
            found: Default::default(),
            removed: Arc::new(AtomicUsize::new(0)),
        };
        (target, calls)
    }

    /// Targets that stopped answering, more of them than there are slots,
    /// each with many removals due, and one live target: once each dead
    /// one's call has timed out, it probes with one call at a time, half
    /// the slots at most go to probes, and the live one's removal runs.
    /// (Without that share, twenty probes would hold all sixteen slots.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn targets_whose_calls_time_out_probe_one_at_a_time() {
        let mut targets: Vec<Counting> = Vec::new();
        let mut dues: Vec<Due> = Vec::new();
        for n in 0..20 {
            let name: &'static str = Box::leak(format!("dead{n}").into_boxed_str());
            let (mut dead, _) = counting(name, false);
            dead.fails = true;
            // A call that times out: long enough to hold its slot.
            dead.takes = Duration::from_millis(300);
            targets.push(dead);
            dues.extend((0..10).map(|n| due(&format!("gr_{name}_{n}"), name)));
        }
        dues.push(due("gr_live", "live"));
        let (live, live_calls) = counting("live", false);
        targets.push(live);
        let ledger = FakeLedger::new(targets, dues, true);
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(ledger, Arc::new(Notify::new()), stopped));
        // The first calls to each dead target learn that it is dead: a few
        // rounds of 300 ms.
        until_counted(&live_calls, Duration::from_secs(10)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert!(
            live_calls.load(Ordering::SeqCst) >= 1,
            "the live target's removal never ran"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unrecorded_outcome_waits_before_it_runs_again() {
        let (target, calls) = counting("t", false);
        FakeLedger::new(vec![target], vec![due("gr_1", "t")], false)
            .run_for(2)
            .await;
        let calls = calls.load(Ordering::SeqCst);
        // One attempt, then the pause.
        assert_eq!(calls, 1, "the target was called {calls} times in 2 s");
    }

    /// Effects whose outcomes cannot be recorded (more of them than there
    /// are slots, at several targets) each wait their pause before they run
    /// again, but hold no slot meanwhile: every one of them runs once, and
    /// an effect at another target runs too, in a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unrecorded_outcomes_hold_no_slot_while_they_wait() {
        let mut targets: Vec<Counting> = Vec::new();
        let mut calls = Vec::new();
        let mut dues: Vec<Due> = Vec::new();
        for t in 0..8 {
            let name: &'static str = Box::leak(format!("u{t}").into_boxed_str());
            let (target, called) = counting(name, false);
            targets.push(target);
            calls.push(called);
            dues.extend((0..5).map(|n| due(&format!("gr_unrecorded_{t}_{n}"), name)));
        }
        dues.push(due("gr_live", "live"));
        let (live, live_calls) = counting("live", false);
        targets.push(live);
        FakeLedger::new(targets, dues, true).run_for(1).await;
        let unrecorded: usize = calls.iter().map(|c| c.load(Ordering::SeqCst)).sum();
        assert_eq!(unrecorded, 40, "each unrecorded effect runs once, no more");
        // The fake keeps every effect due, recorded or not.
        assert!(live_calls.load(Ordering::SeqCst) >= 1, "the live one ran");
    }

    /// A target call that panics (a bug) is a failed attempt, recorded as
    /// one and tried again after a pause like any other, not at once and
    /// for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_panics_is_a_failure_recorded_and_retried_later() {
        let (mut target, calls) = counting("t", false);
        target.panics = true;
        let ledger = FakeLedger::new(vec![target], vec![due("gr_1", "t")], false);
        Arc::clone(&ledger).run_for(2).await;
        let calls = calls.load(Ordering::SeqCst);
        assert_eq!(calls, 1, "the target was called {calls} times in 2 s");
        let outcomes = ledger.outcomes.lock().unwrap().clone();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert!(outcomes[0].contains("t refused"), "{outcomes:?}");
        assert!(outcomes[0].contains("hoistd failed"), "{outcomes:?}");
    }

    /// An attempt that fails with a bug outside the target's call (the
    /// task panics, nothing recorded) holds its grant for a pause, rather
    /// than run again at the next look.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attempt_that_panics_waits_before_the_next() {
        let (target, calls) = counting("t", false);
        let ledger = FakeLedger::new(vec![target], vec![due("gr_1", "t")], true);
        ledger.journal_panics.store(1, Ordering::SeqCst);
        Arc::clone(&ledger).run_for(2).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// A target that stops answering holds a few of the worker's slots, not
    /// all: a removal at another target still runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_that_stops_answering_leaves_the_others_running() {
        dead_target_beside_a_live_one(MAX_RUNNING * 2).await;
    }

    /// `dead` removals due at a target that never answers, then one at a
    /// live target: the dead one holds its share of the slots, and the live
    /// one's removal runs.
    async fn dead_target_beside_a_live_one(dead: usize) {
        let (dead_target, dead_calls) = counting("dead", true);
        let (live, live_calls) = counting("live", false);
        let mut dues: Vec<Due> = (0..dead)
            .map(|n| due(&format!("gr_dead_{n}"), "dead"))
            .collect();
        dues.push(due("gr_live", "live"));
        FakeLedger::new(vec![dead_target, live], dues, true)
            .run_for(1)
            .await;
        assert_eq!(dead_calls.load(Ordering::SeqCst), MAX_RUNNING_PER_TARGET);
        assert!(
            live_calls.load(Ordering::SeqCst) >= 1,
            "the live target's removal never ran"
        );
    }

    /// A leader told to stop while it still leads lets the call under way
    /// be answered before it gives the lease up, rather than abandon it to
    /// land after another instance took over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_leader_waits_for_the_call_under_way() {
        let calls = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let target = Counting {
            name: "t",
            calls: Arc::clone(&calls),
            hangs: false,
            fails: false,
            panics: false,
            refuses_removal: false,
            takes: Duration::from_millis(500),
            answered: Arc::clone(&answered),
            found: Default::default(),
            removed: Arc::new(AtomicUsize::new(0)),
        };
        let ledger = FakeLedger::new(vec![target], vec![due("gr_1", "t")], true);
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(ledger, Arc::new(Notify::new()), stopped));
        until_counted(&calls, Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            answered.load(Ordering::SeqCst),
            1,
            "the call under way was abandoned"
        );
    }

    /// A leader past its term by its own clock (paused, say, and woken
    /// before its jobs are told) calls no target.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_past_its_term_calls_no_target() {
        let (target, calls) = counting("t", false);
        FakeLedger::leading(vec![target], vec![due("gr_1", "t")], true, false)
            .run_for(1)
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// A reconciler pass waiting on a target that stopped answering ends
    /// when its leader stops, rather than go on once the lease is given up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reconciler_pass_stops_with_its_leader() {
        let (dead, calls) = counting("dead", true);
        let ledger = FakeLedger::new(vec![dead], Vec::new(), true);
        let (stop, stopped) = watch::channel(false);
        let job = tokio::spawn(reconcile::run(
            ledger,
            || Duration::from_secs(300),
            Arc::new(Notify::new()),
            stopped,
        ));
        until_counted(&calls, Duration::from_secs(2)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the pass asked the target");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), job)
            .await
            .expect("the pass did not stop")
            .unwrap();
    }

    /// A target slow to answer (each call just inside its timeout) holds up
    /// no other target's pass: drift at another is removed meanwhile.
    #[tokio::test]
    async fn a_slow_target_holds_up_no_other_targets_pass() {
        let (mut slow, _) = counting("a_slow", false);
        slow.takes = Duration::from_secs(30);
        let (mut quick, _) = counting("b_quick", false);
        quick.found = Arc::new(std::sync::Mutex::new(vec![Managed {
            name: "hoist_gr_gone".into(),
            grant_id: Some("gr_gone".into()),
        }]));
        let removed = Arc::clone(&quick.removed);
        let ledger = FakeLedger::new(vec![slow, quick], Vec::new(), true);
        let pass = tokio::spawn(async move { reconcile::pass(&ledger).await });
        until_counted(&removed, Duration::from_secs(10)).await;
        assert_eq!(
            removed.load(Ordering::SeqCst),
            1,
            "the quick target's drift waited for the slow target"
        );
        assert!(
            !pass.is_finished(),
            "the slow target's pass is still under way"
        );
        pass.abort();
    }

    /// Each system keeps its own cycle: while a slow system's first pass
    /// is still under way, a quick one is passed again and again (every
    /// 50 ms here), and drift that appears there later is removed at its
    /// next pass, not after the slow system's. A round of every system is
    /// counted only once the slow one has ended its pass too.
    #[tokio::test]
    async fn each_system_is_reconciled_on_its_own_cycle() {
        let (mut slow, slow_calls) = counting("a_slow", false);
        slow.takes = Duration::from_secs(2);
        let (quick, quick_calls) = counting("b_quick", false);
        let found = Arc::clone(&quick.found);
        let removed = Arc::clone(&quick.removed);
        let ledger = FakeLedger::new(vec![slow, quick], Vec::new(), true);
        let (stop, stopped) = watch::channel(false);
        let job = tokio::spawn(reconcile::run(
            Arc::clone(&ledger),
            || Duration::from_millis(50),
            Arc::new(Notify::new()),
            stopped,
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            quick_calls.load(Ordering::SeqCst) >= 3,
            "the quick system was passed {} times",
            quick_calls.load(Ordering::SeqCst)
        );
        assert_eq!(slow_calls.load(Ordering::SeqCst), 1);
        assert_eq!(ledger.rounds.load(Ordering::SeqCst), 0, "no round yet");
        found.lock().unwrap().push(Managed {
            name: "hoist_gr_gone".into(),
            grant_id: Some("gr_gone".into()),
        });
        until_counted(&removed, Duration::from_secs(1)).await;
        assert_eq!(removed.load(Ordering::SeqCst), 1);
        assert_eq!(slow_calls.load(Ordering::SeqCst), 1, "still its first pass");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            ledger.rounds.load(Ordering::SeqCst) >= 1,
            "a round was counted"
        );
        stop.send(true).unwrap();
        job.await.unwrap();
    }

    /// A wake while a system's pass is under way passes it again once that
    /// pass ends, not `reconcile_every` later: what the wake was for may
    /// have come after the listing.
    #[tokio::test]
    async fn a_wake_during_a_pass_passes_the_system_again() {
        let (mut slow, calls) = counting("slow", false);
        slow.takes = Duration::from_millis(500);
        let ledger = FakeLedger::new(vec![slow], Vec::new(), true);
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let job = tokio::spawn(reconcile::run(
            Arc::clone(&ledger),
            || Duration::from_secs(300),
            Arc::clone(&wake),
            stopped,
        ));
        until_counted(&calls, Duration::from_secs(2)).await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "passed again after the wake"
        );
        stop.send(true).unwrap();
        job.await.unwrap();
    }

    /// Two targets on one system (one PostgreSQL server) each list the
    /// other's leftover access there: they take turns, so it is removed and
    /// audited once, not by both at the same time.
    #[tokio::test]
    async fn targets_on_one_system_take_turns_and_remove_drift_once() {
        let found = Arc::new(std::sync::Mutex::new(vec![Managed {
            name: "hoist_gr_gone".into(),
            grant_id: Some("gr_gone".into()),
        }]));
        let removed = Arc::new(AtomicUsize::new(0));
        let on_one_server = |name: &'static str| {
            let (mut target, _) = counting(name, false);
            target.found = Arc::clone(&found);
            target.removed = Arc::clone(&removed);
            target
        };
        let ledger = FakeLedger::new(
            vec![on_one_server("db1/a"), on_one_server("db1/b")],
            Vec::new(),
            true,
        );
        let done = reconcile::pass(&ledger).await;
        assert_eq!(done.drift_removed, 1, "{done:?}");
        assert_eq!(removed.load(Ordering::SeqCst), 1);
        assert_eq!(ledger.drift_audited.load(Ordering::SeqCst), 1);
    }

    /// A grant's removal that finishes while the reconciler lists its
    /// target: its role is listed, and the grant no longer holds access
    /// when the grants are read. That is no drift to remove and audit.
    #[tokio::test]
    async fn a_removal_finishing_during_a_listing_is_no_drift() {
        let (mut target, _) = counting("t", false);
        target.found = Arc::new(std::sync::Mutex::new(vec![Managed {
            name: "hoist_gr_1".into(),
            grant_id: Some("gr_1".into()),
        }]));
        let removed = Arc::clone(&target.removed);
        let mut ledger = FakeLedger::new(vec![target], Vec::new(), true);
        Arc::get_mut(&mut ledger).unwrap().held_before = ["gr_1".to_string()].into();
        let done = reconcile::pass(&ledger).await;
        assert_eq!(done.drift_removed, 0, "{done:?}");
        assert_eq!(removed.load(Ordering::SeqCst), 0);
        // A role no grant held at either read is drift.
        Arc::get_mut(&mut ledger).unwrap().held_before.clear();
        let done = reconcile::pass(&ledger).await;
        assert_eq!(done.drift_removed, 1, "{done:?}");
        assert_eq!(removed.load(Ordering::SeqCst), 1);
    }

    /// Drift removed whose audit entry could not be written stays
    /// recorded, and is audited at the next pass, once the listing shows
    /// it gone: no later pass would find it as drift. Recorded before the
    /// removal, the record outlives the process that made it.
    #[tokio::test]
    async fn drift_removed_but_not_audited_is_audited_at_the_next_pass() {
        let (mut target, _) = counting("t", false);
        let gone = Managed {
            name: "hoist_gr_gone".into(),
            grant_id: Some("gr_gone".into()),
        };
        target.found = Arc::new(std::sync::Mutex::new(vec![gone.clone()]));
        let removed = Arc::clone(&target.removed);
        let mut ledger = FakeLedger::new(vec![target], Vec::new(), true);
        Arc::get_mut(&mut ledger)
            .unwrap()
            .drift_refusals
            .store(1, Ordering::SeqCst);
        let done = reconcile::pass(&ledger).await;
        assert_eq!(done.drift_removed, 1);
        assert_eq!(ledger.drift_audited.load(Ordering::SeqCst), 0);
        assert_eq!(
            *ledger.recorded.lock().unwrap(),
            vec![("t".to_string(), gone.clone())],
            "recorded before the removal, and kept"
        );
        let done = reconcile::pass(&ledger).await;
        assert_eq!(done.drift_removed, 0, "{done:?}");
        assert_eq!(
            removed.load(Ordering::SeqCst),
            2,
            "removed once more (gone: done at once), then audited"
        );
        assert_eq!(ledger.drift_audited.load(Ordering::SeqCst), 1);
        assert!(ledger.recorded.lock().unwrap().is_empty());
        reconcile::pass(&ledger).await;
        assert_eq!(ledger.drift_audited.load(Ordering::SeqCst), 1, "once");
    }

    /// A recorded removal the listing leaves out (it may not have looked:
    /// OpenBao's accessor search failing) is audited only once removing it
    /// again succeeds, never on the listing's word alone.
    #[tokio::test]
    async fn a_recorded_removal_not_listed_is_audited_only_once_removed_again() {
        let (mut target, _) = counting("t", false);
        target.refuses_removal = true;
        let ledger = FakeLedger::new(vec![target], Vec::new(), true);
        let missing = Managed {
            name: "hoist_gr_gone".into(),
            grant_id: Some("gr_gone".into()),
        };
        ledger
            .recorded
            .lock()
            .unwrap()
            .push(("t".to_string(), missing.clone()));
        let done = reconcile::pass(&ledger).await;
        assert_eq!(done.failures, 1, "{done:?}");
        assert_eq!(ledger.drift_audited.load(Ordering::SeqCst), 0);
        assert_eq!(
            *ledger.recorded.lock().unwrap(),
            vec![("t".to_string(), missing)],
            "kept for the next pass"
        );
    }

    /// A removal that cannot be recorded first is not made: nothing would
    /// audit it if the entry after it could not be written either.
    #[tokio::test]
    async fn drift_that_cannot_be_recorded_is_not_removed() {
        let (mut target, _) = counting("t", false);
        target.found = Arc::new(std::sync::Mutex::new(vec![Managed {
            name: "hoist_gr_gone".into(),
            grant_id: Some("gr_gone".into()),
        }]));
        let removed = Arc::clone(&target.removed);
        let mut ledger = FakeLedger::new(vec![target], Vec::new(), true);
        Arc::get_mut(&mut ledger).unwrap().records_drift = false;
        let done = reconcile::pass(&ledger).await;
        assert_eq!((done.drift_removed, done.failures), (0, 1), "{done:?}");
        assert_eq!(removed.load(Ordering::SeqCst), 0);
    }

    /// However many effects are due at a target that stopped answering,
    /// they do not hide another target's from the worker's read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_effects_due_at_a_dead_target_than_one_read_holds_hide_none() {
        dead_target_beside_a_live_one(READ + 10).await;
    }
}
