//! Which of several instances on one database runs the jobs only one may
//! run at a time: the reaper, the outbox worker, the notification worker
//! and the reconciler.
//!
//! A lease in the store ([`Store::lead`]): the leader renews it every
//! second for five; once it lapses (the leader was killed, paused or cut
//! off), the next instance to ask takes it, with a higher epoch (one
//! higher, or the milliseconds since 1970 if that is more, so a database
//! restored from a backup still starts higher than any term before). A
//! lease row rather than a session advisory lock, so that it holds through
//! a transaction-mode pooler. An instance that cannot renew stops leading
//! before its term is out by its own clock, so two never lead at once by
//! more than clock drift. A leader paused or cut off past its term may not
//! know it yet, so every write its jobs make is fenced with the lease it
//! took ([`Tx::fence`](crate::store::Tx::fence)): once another instance
//! holds the lease, the write is refused. Reads settle expiry by
//! themselves, so a gap between leaders never shows an expired grant as
//! active. Each ask also reads the server's clock, and every instance
//! times grants by it ([`crate::clock`]), so instances whose hosts' clocks
//! part still agree on when a grant ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock;
use crate::store::{Lease, Store};

/// How long a lease lasts unless renewed: the longest a dead leader's jobs
/// go undone.
pub const TERM: Duration = Duration::from_secs(5);
/// How often the leader renews, and the others ask.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How much sooner than the database a leader gives up by its own clock.
const MARGIN: Duration = Duration::from_secs(1);
/// An offset from the database's clock worth a warning, and one small
/// enough to say it is over (apart, so that an offset near the first does
/// not say both every second).
const CLOCK_WARN: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
const CLOCK_AGREES: chrono::TimeDelta = chrono::TimeDelta::milliseconds(500);

/// Says when this process's clock parts from the database server's
/// ([`Store::clock_offset`], read with the last ask), and when it agrees
/// again. The instance times grants by the server's clock all the same
/// ([`clock::follow`], in `lead_forever`), but the host's time is wrong for
/// everything else on it, and until the first ask after a jump (a virtual
/// machine resumed from a pause) for this instance too.
fn watch_clock(store: &dyn Store, warned: &mut bool) {
    let Some(offset) = store.clock_offset() else {
        return;
    };
    let seconds = offset.as_seconds_f64();
    if !*warned && offset.abs() >= CLOCK_WARN {
        *warned = true;
        if offset > chrono::TimeDelta::zero() {
            tracing::warn!(
                behind_seconds = seconds,
                "this instance's clock is behind the database server's: hoistd times grants by the server's, but the host's time needs setting"
            );
        } else {
            tracing::warn!(
                ahead_seconds = -seconds,
                "this instance's clock is ahead of the database server's: hoistd times grants by the server's, but the host's time needs setting"
            );
        }
    } else if *warned && offset.abs() < CLOCK_AGREES {
        *warned = false;
        tracing::info!("this instance's clock agrees with the database server's again");
    }
}

/// Times grants by the database server's clock, `offset` ahead of this
/// process's, read to within `doubt` ([`clock::follow`]), and says so when
/// that moves it.
pub fn follow(offset: chrono::TimeDelta, doubt: chrono::TimeDelta) {
    if clock::follow(offset, doubt) {
        tracing::info!(
            correction_seconds = offset.as_seconds_f64(),
            "timing grants by the database server's clock"
        );
    }
}

/// Asks for the lease every second until `stopped`, and says on `leading`
/// whether this instance leads, on `term` until when by its own clock, and
/// on `lease` which lease it last took (the jobs' fence, kept after it is
/// lost); gives it up on a clean stop.
pub async fn lead_forever(
    store: Arc<dyn Store>,
    holder: String,
    leading: watch::Sender<bool>,
    term: watch::Sender<Option<Instant>>,
    lease: watch::Sender<Option<Lease>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut valid_until: Option<Instant> = None;
    let mut epoch = None;
    let mut clock_warned = false;
    loop {
        let asked = Instant::now();
        let asking = Arc::clone(&store);
        let who = holder.clone();
        // Leading now, without a break: the same epoch goes on. Otherwise
        // a lease taken is a new term, with a higher epoch, even if this
        // instance held the last one (see `Store::lead`).
        let renewing = epoch.is_some();
        let renewal = tokio::time::timeout(TERM - MARGIN, ask(asking, who, asked + TERM, renewing));
        tokio::pin!(renewal);
        // Leading ends at `valid_until` by this instance's clock, whether
        // the renewal has answered or not.
        let answer = loop {
            tokio::select! {
                answer = &mut renewal => break answer,
                _ = tokio::time::sleep_until(valid_until.unwrap_or_else(Instant::now)),
                    if valid_until.is_some() =>
                {
                    valid_until = None;
                    term.send_replace(None);
                    if epoch.take().is_some() {
                        tracing::warn!(holder = %holder, "stopped leading: the lease was not renewed in time");
                    }
                    leading.send_if_modified(|was| std::mem::replace(was, false));
                }
            }
        };
        match answer {
            Ok(Ok(Ok(Some(_)))) if renewing && epoch.is_none() => {
                // Leading lapsed by this instance's clock while the renewal
                // was on its way, and the jobs were halted: what they had
                // under way may still land at a target. Taken now, the
                // renewal would resume the same epoch, and a target could
                // not tell those late calls from the next term's; the next
                // ask is for a new term instead. (On PostgreSQL; SQLite's
                // one process keeps one epoch as long as it runs, see
                // `SqliteStore::lead`, and its jobs are still halted and
                // started again.)
                tracing::info!(holder = %holder, "a renewal answered after leading lapsed: asking for a new term");
                valid_until = None;
            }
            Ok(Ok(Ok(Some(now)))) if renewing && epoch.is_some_and(|held| held != now) => {
                // A renewal answered with another term's epoch: another
                // instance led in between (this one frozen where its clock
                // did not count, or a database failed over to a standby
                // whose lease row lagged). What the jobs have under way
                // belongs to the old term: they are halted, and the next
                // ask is for a term of their own.
                tracing::warn!(
                    holder = %holder, epoch = now,
                    "the lease came back under another term: halting the jobs to start them again"
                );
                epoch = None;
                valid_until = None;
            }
            Ok(Ok(Ok(Some(now)))) => {
                valid_until = Some(asked + TERM - MARGIN);
                lease.send_replace(Some(Lease {
                    holder: holder.clone(),
                    epoch: now,
                }));
                if epoch != Some(now) {
                    // On a store one process uses, this one always leads:
                    // worth a line only where instances take turns.
                    if store.shared() {
                        tracing::info!(holder = %holder, epoch = now, "leading: reaper, outboxes and reconciler run here");
                    } else {
                        tracing::debug!(holder = %holder, epoch = now, "leading");
                    }
                    epoch = Some(now);
                }
            }
            Ok(Ok(Ok(None))) => {
                if epoch.take().is_some() {
                    tracing::warn!(holder = %holder, "another instance leads now");
                }
                valid_until = None;
            }
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "cannot renew the leadership lease"),
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot renew the leadership lease"),
            Err(_) => tracing::warn!("the leadership lease was not renewed in time"),
        }
        watch_clock(store.as_ref(), &mut clock_warned);
        if let Some(offset) = store.clock_offset() {
            follow(offset, store.clock_doubt());
        }
        let leads = valid_until.is_some_and(|until| Instant::now() < until);
        if !leads && epoch.take().is_some() {
            tracing::warn!(holder = %holder, "stopped leading: the lease could not be renewed");
        }
        term.send_replace(valid_until.filter(|_| leads));
        leading.send_if_modified(|was| std::mem::replace(was, leads) != leads);
        // Asks again a second after it last asked (at once if the answer
        // took longer), or when the term runs out if sooner. Counted from
        // the ask, not the answer: the term is counted from the ask, so two
        // slow answers in a row (1.6 s each, say, on a loaded database)
        // must not add up to more than the term's margin.
        let next = (asked + RENEW_EVERY).max(Instant::now());
        let wake = valid_until.map_or(next, |until| next.min(until));
        let stopping = tokio::select! {
            _ = tokio::time::sleep_until(wake) => false,
            _ = stopped.wait_for(|stopped| *stopped) => true,
        };
        if stopping {
            term.send_replace(None);
            leading.send_replace(false);
            if leads {
                let _ = tokio::task::spawn_blocking(move || store.resign(&holder)).await;
            }
            return;
        }
    }
}

/// Asks for the lease on a thread of its own, not the blocking pool the
/// API's calls wait in: a leader whose calls are queued there must still
/// renew in time. The lease asked for ends at `until` (the term counted
/// from the ask, not from when the statement runs), so an ask that runs
/// late, after this instance gave up waiting for it, holds the lease no
/// longer than the instance would have led on it; one that could not even
/// be sent before then is not sent.
async fn ask(
    store: Arc<dyn Store>,
    holder: String,
    until: Instant,
    renewing: bool,
) -> Result<crate::store::Result<Option<i64>>, tokio::sync::oneshot::error::RecvError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let until = until.into_std();
    let spawned = std::thread::Builder::new()
        .name("hoistd-lease".into())
        .spawn(move || {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let _ = answer.send(if left > MARGIN {
                store.lead(&holder, left, renewing)
            } else {
                Err(crate::store::StoreError::Unavailable(
                    "the lease was not asked for: its term ran out before it could be".into(),
                ))
            });
        });
    if let Err(err) = spawned {
        return Ok(Err(crate::store::StoreError::Other(format!(
            "cannot start a thread to ask for the lease: {err}"
        ))));
    }
    answered.await
}

/// Runs `job` while this instance leads: started when it becomes leader,
/// told to stop (its argument) when it no longer is or the server stops.
pub async fn while_leading<F, Fut>(
    mut leading: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
    job: F,
) where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        // `leading` closed: the server stopped, and its leader with it.
        tokio::select! {
            led = leading.wait_for(|leads| *leads) => if led.is_err() { return },
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        let (halt, halted) = watch::channel(false);
        let mut running = Job(tokio::spawn(job(halted)));
        // Any change is the lease lost, even if it was taken again before
        // this task looked: that is a new term, whose epoch the job's
        // calls under way before it must not carry on into.
        let stopping = tokio::select! {
            _ = leading.changed() => false,
            _ = stopped.wait_for(|stopped| *stopped) => true,
            _ = &mut running.0 => false,
        };
        let _ = halt.send(true);
        if !running.0.is_finished() {
            let _ = (&mut running.0).await;
        }
        if stopping {
            return;
        }
    }
}

/// A job's task, aborted if it is dropped before it ends: when the server
/// stops waiting for [`while_leading`], the job stops too rather than go on
/// acting once the lease is given up.
struct Job(tokio::task::JoinHandle<()>);

impl Drop for Job {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::{Connections, Snapshot, StoreError, Tx};

    /// A store whose renewals answer as `answer` says, given which ask
    /// (0, 1, ...) and its `renewing`; it keeps what each ask said of
    /// `renewing`.
    struct Renewals<F> {
        answer: F,
        asks: std::sync::Mutex<Vec<bool>>,
        /// How far its clock is ahead of this process's, if it has one.
        ahead: Option<chrono::TimeDelta>,
    }

    fn renewals<F>(answer: F) -> Arc<Renewals<F>>
    where
        F: Fn(usize) -> crate::store::Result<Option<i64>> + Send + Sync + 'static,
    {
        Arc::new(Renewals {
            answer,
            asks: std::sync::Mutex::new(Vec::new()),
            ahead: None,
        })
    }

    impl<F> Store for Renewals<F>
    where
        F: Fn(usize) -> crate::store::Result<Option<i64>> + Send + Sync + 'static,
    {
        fn transaction(&self) -> crate::store::Result<Box<dyn Tx + '_>> {
            Err(StoreError::Other("no transactions here".into()))
        }
        fn snapshot(&self) -> crate::store::Result<Box<dyn Snapshot + '_>> {
            Err(StoreError::Other("no snapshots here".into()))
        }
        fn barrier(&self) -> crate::store::Result<()> {
            Ok(())
        }
        fn ready(&self) -> crate::store::Result<()> {
            Ok(())
        }
        fn connections(&self) -> Connections {
            Connections::default()
        }
        fn lead(&self, _: &str, _: Duration, renewing: bool) -> crate::store::Result<Option<i64>> {
            let ask = {
                let mut asks = self.asks.lock().unwrap();
                asks.push(renewing);
                asks.len() - 1
            };
            (self.answer)(ask)
        }
        fn clock_offset(&self) -> Option<chrono::TimeDelta> {
            self.ahead
        }
    }

    /// An offset from the database's clock is warned of from a second
    /// either way, and said to be over only once under half a second: an
    /// offset near the second says neither every time.
    #[test]
    fn a_clock_apart_from_the_databases_is_warned_of_once() {
        let mut warned = false;
        for (ahead_ms, warns) in [
            (200, false),
            (1_200, true),
            (900, true),
            (1_100, true),
            (600, true),
            (400, false),
            (-1_500, true),
            (-100, false),
        ] {
            let store = Renewals {
                answer: |_| Ok(Some(1)),
                asks: std::sync::Mutex::new(Vec::new()),
                ahead: Some(chrono::TimeDelta::milliseconds(ahead_ms)),
            };
            watch_clock(&store, &mut warned);
            assert_eq!(warned, warns, "at {ahead_ms} ms");
        }
    }

    /// `lead_forever` for holder "a" on `store`, started now: what it says
    /// of leading and of its term, and how to stop it.
    struct Leader {
        leading: watch::Receiver<bool>,
        term: watch::Receiver<Option<Instant>>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Leader {
        fn start(store: Arc<dyn Store>) -> Self {
            let (leads, leading) = watch::channel(false);
            let (term_tx, term) = watch::channel(None);
            let (lease, _) = watch::channel(None);
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(lead_forever(
                store,
                "a".into(),
                leads,
                term_tx,
                lease,
                stopped,
            ));
            Leader {
                leading,
                term,
                stop,
                task,
            }
        }

        async fn stop(self) {
            self.stop.send(true).unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        }
    }

    /// Asked at 0 s, a leader may lead by its own clock until 4 s (the
    /// database's term ends at 5 s, when another may take the lease): a
    /// renewal still pending then does not keep it leading.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_stops_by_its_own_clock_while_a_renewal_is_pending() {
        // The first renewal is taken at once but answered late; the second
        // never answers in time.
        let store: Arc<dyn Store> = renewals(|ask| {
            if ask == 0 {
                std::thread::sleep(Duration::from_millis(3500));
                Ok(Some(1))
            } else {
                std::thread::sleep(Duration::from_secs(6));
                Ok(None)
            }
        });
        let started = Instant::now();
        let leader = Leader::start(store);
        tokio::time::sleep_until(started + Duration::from_millis(3700)).await;
        assert!(*leader.leading.borrow(), "leading once the answer came");
        let until = leader.term.borrow().expect("a term while leading");
        assert!(until <= started + TERM - MARGIN + Duration::from_millis(100));
        tokio::time::sleep_until(started + Duration::from_millis(4500)).await;
        let still = *leader.leading.borrow();
        let term_then = *leader.term.borrow();
        leader.stop().await;
        assert!(!still, "still leading at 4.5 s, past its own deadline");
        assert_eq!(term_then, None, "a term at 4.5 s, past its own deadline");
    }

    /// The API's calls wait for the database in the blocking pool; the
    /// lease is asked for outside it, so a leader whose pool is taken up
    /// (here, by one call, on a pool of one thread) still leads at once.
    #[test]
    fn a_busy_blocking_pool_does_not_hold_up_the_lease() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let busy = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(3)));
            let store: Arc<dyn Store> = renewals(|_| Ok(Some(1)));
            let mut leader = Leader::start(store);
            let led = tokio::time::timeout(
                Duration::from_secs(1),
                leader.leading.wait_for(|leads| *leads),
            )
            .await
            .is_ok();
            assert!(!busy.is_finished(), "the pool was busy throughout");
            leader.stop().await;
            assert!(
                led,
                "not leading within 1 s while the blocking pool was busy"
            );
        });
    }

    /// Renewals that each answer well within the term keep the lease,
    /// however many in a row are slow: the next is asked a second after the
    /// last was asked (here, at once), not a second after its answer, which
    /// would let two 1.7 s answers outlast the 4 s a leader may lead by its
    /// own clock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_renewals_in_a_row_keep_the_lease() {
        // Every renewal answers, yes, after 1.7 s.
        let store: Arc<dyn Store> = renewals(|_| {
            std::thread::sleep(Duration::from_millis(1700));
            Ok(Some(1))
        });
        let started = Instant::now();
        let mut leader = Leader::start(store);
        let leading = &mut leader.leading;
        tokio::time::timeout(Duration::from_secs(3), leading.wait_for(|leads| *leads))
            .await
            .expect("leading once the first answer came")
            .unwrap();
        let mut lapsed = None;
        while Instant::now() < started + Duration::from_secs(8) {
            let until = started + Duration::from_secs(8);
            match tokio::time::timeout_at(until, leading.changed()).await {
                Ok(Ok(())) if !*leading.borrow() => {
                    lapsed = Some(started.elapsed());
                    break;
                }
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        leader.stop().await;
        assert_eq!(
            lapsed, None,
            "stopped leading while every renewal answered in 1.7 s"
        );
    }

    /// Runs a leader on `store` until it has led, stopped and led again
    /// (within 10 s); what each ask said of `renewing`.
    async fn led_stopped_and_led_again<F>(store: &Arc<Renewals<F>>) -> Vec<bool>
    where
        F: Fn(usize) -> crate::store::Result<Option<i64>> + Send + Sync + 'static,
    {
        let mut leader = Leader::start(Arc::clone(store) as Arc<dyn Store>);
        let leading = &mut leader.leading;
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            leading.wait_for(|leads| *leads).await.unwrap();
            leading.wait_for(|leads| !*leads).await.unwrap();
            leading.wait_for(|leads| *leads).await.unwrap();
        })
        .await;
        leader.stop().await;
        waited.expect("led, stopped, then led again");
        store.asks.lock().unwrap().clone()
    }

    /// Once a leader stopped by its own clock, its next ask is for a new
    /// term (`renewing` false), even though the late answer said it still
    /// held the lease: its jobs were halted, and what they left under way
    /// must carry a lower epoch than what the restarted jobs do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_that_stopped_asks_for_a_new_term() {
        // Answers at once, then once after 4.2 s, then at once again.
        let store = renewals(|ask| {
            if ask == 1 {
                std::thread::sleep(Duration::from_millis(4200));
            }
            Ok(Some(1))
        });
        let asks = led_stopped_and_led_again(&store).await;
        assert_eq!(asks[..3], [false, true, false], "{asks:?}");
    }

    /// A renewal that answers yes within its timeout, but after the
    /// leader's own deadline, does not resume the term it renewed: the jobs
    /// were halted at the deadline, and the next ask is for a new term.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_answered_after_the_deadline_does_not_resume_the_term() {
        // Asked at 0 s and answered at 2.5 s (leading until 4 s); the
        // renewal asked at 2.5 s answers at 5 s, within its own 4 s.
        let store = renewals(|ask| {
            if ask < 2 {
                std::thread::sleep(Duration::from_millis(2500));
            }
            Ok(Some(1))
        });
        let asks = led_stopped_and_led_again(&store).await;
        assert_eq!(asks[..3], [false, true, false], "{asks:?}");
    }

    /// A renewal answered with another epoch than the one held (another
    /// instance led in between) ends the term: the jobs are halted, and
    /// the next ask is for a new term.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_under_another_epoch_starts_a_new_term() {
        let store = renewals(|ask| Ok(Some(if ask == 0 { 5 } else { 7 + ask as i64 })));
        let asks = led_stopped_and_led_again(&store).await;
        assert_eq!(asks[..3], [false, true, false], "{asks:?}");
    }

    /// Leading lost and taken again before the job's task looked (a new
    /// term): the job is halted and started again, not left running on
    /// into the new term.
    #[tokio::test]
    async fn a_job_is_started_again_for_a_term_taken_back_at_once() {
        let (leads, leading) = watch::channel(false);
        let (_stop, stopped) = watch::channel(false);
        let (started, mut starts) = tokio::sync::mpsc::unbounded_channel::<watch::Receiver<bool>>();
        tokio::spawn(while_leading(leading, stopped, move |halted| {
            let _ = started.send(halted.clone());
            let mut halted = halted;
            async move {
                let _ = halted.wait_for(|halted| *halted).await;
            }
        }));
        leads.send_replace(true);
        let mut first = starts.recv().await.expect("started");
        // Lost and taken back with nothing in between.
        leads.send_replace(false);
        leads.send_replace(true);
        let within = Duration::from_secs(10);
        tokio::time::timeout(within, first.wait_for(|halted| *halted))
            .await
            .expect("the first term's job is halted")
            .unwrap();
        let again = tokio::time::timeout(within, starts.recv()).await;
        assert!(
            again.is_ok_and(|job| job.is_some()),
            "and started for the new term"
        );
    }

    /// At a stop, the leader's `leading` closes as `stopped` fires: no
    /// leader-only job starts then.
    #[tokio::test]
    async fn no_job_starts_once_the_server_stopped() {
        let started = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let (leads, leading) = watch::channel(false);
            let (stop, stopped) = watch::channel(false);
            stop.send(true).unwrap();
            drop(leads);
            let counting = Arc::clone(&started);
            while_leading(leading, stopped, move |_halted| {
                counting.fetch_add(1, Ordering::SeqCst);
                async {}
            })
            .await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 0);
    }
}
