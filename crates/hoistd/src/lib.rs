//! `hoistd`: the reference just-in-time access broker.
//!
//! [`Server::start`] takes a store (see [`store::open`]) and a policy and
//! serves the HTTP API on a listener; the `hoistd` binary and the
//! `hoist demo` command both use it.

pub mod audit;
pub mod broker;
pub mod checkpoint;
pub mod clock;
pub mod credential;
pub mod domain;
pub mod error;
pub mod http;
pub mod keys;
pub mod leadership;
pub mod notify;
pub mod oidc;
pub mod outbound;
pub mod policy;
pub mod slack;
pub mod store;
pub mod target;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use broker::Broker;
pub use policy::Policy;
pub use store::Store;

/// Longest the reaper sleeps between checks, in case a wake-up is missed.
const REAPER_MAX_SLEEP: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// How often each instance audits the counts of its repeat windows that
/// ended, and lets its rate limiters forget idle callers: both live in this
/// instance's memory, so every instance does it, leading or not.
const USES_EVERY: Duration = Duration::from_secs(5);
/// How often the leader forgets old idempotency keys, workload exchanges
/// and delivery log entries (`Broker::purge`); the first time as it starts
/// to lead.
const PURGE_EVERY: Duration = Duration::from_secs(3_600);

/// Longest the server waits at start-up to hear other instances' changes.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// How long a stopping server waits for the leader's jobs to stop, all
/// together: past the outbox's wait for its calls under way and most store
/// answers, and well within a service manager's stop timeout.
const JOBS_WAIT: Duration = Duration::from_secs(10);

/// How a [`Server`] serves: its connection limits, and the keys it keeps
/// outside the store.
#[derive(Clone, Default)]
pub struct Options {
    pub limits: http::serve::Limits,
    /// Signs credentials with this key instead of the one in the store.
    pub signing_key: Option<ed25519_dalek::SigningKey>,
    /// Signs SSH user certificates with this key instead of the one in the
    /// store.
    pub ssh_ca_key: Option<ed25519_dalek::SigningKey>,
    /// Writes signed audit checkpoints.
    pub checkpoints: Option<Checkpointing>,
    /// The caps on open event streams.
    pub streams: http::serve::StreamLimits,
    /// Serves HTTPS (HTTP/2 and HTTP/1.1) with this certificate.
    pub tls: Option<Arc<http::tls::Tls>>,
    /// Takes presses of Slack's Approve and Deny buttons at
    /// `/v1/slack/actions`, checked with this signing secret.
    pub slack: Option<slack::Settings>,
}

/// Where and how often the server writes signed audit checkpoints: at
/// start, every `every` while the log grows, and at stop, each to the log
/// and, given a file, appended to it.
#[derive(Clone)]
pub struct Checkpointing {
    pub key: ed25519_dalek::SigningKey,
    pub file: Option<std::path::PathBuf>,
    pub every: Duration,
}

/// A running broker: its address, and the handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    tls: Option<Arc<http::tls::Tls>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    metrics: Arc<http::ops::Metrics>,
}

impl Server {
    /// Records whatever fell due while the broker was down, then serves on
    /// `listener` until [`Server::stop`], with the default [`Options`].
    pub async fn start(
        listener: TcpListener,
        store: Arc<dyn Store>,
        policy: Policy,
    ) -> anyhow::Result<Self> {
        Self::start_with(listener, store, policy, Options::default()).await
    }

    /// [`Server::start`] with these options.
    pub async fn start_with(
        listener: TcpListener,
        store: Arc<dyn Store>,
        policy: Policy,
        options: Options,
    ) -> anyhow::Result<Self> {
        Self::launch(listener, store, policy, options, false).await
    }

    /// [`Server::start_with`] with the reaper held back from the first moment,
    /// start-up included (see [`Broker::hold_reaper`]).
    #[cfg(feature = "testing")]
    pub async fn start_with_reaper_held(
        listener: TcpListener,
        store: Arc<dyn Store>,
        policy: Policy,
        options: Options,
    ) -> anyhow::Result<Self> {
        Self::launch(listener, store, policy, options, true).await
    }

    async fn launch(
        listener: TcpListener,
        store: Arc<dyn Store>,
        policy: Policy,
        options: Options,
        reaper_held: bool,
    ) -> anyhow::Result<Self> {
        policy.check_targets().await?;
        for caution in policy.cautions() {
            tracing::warn!("{caution}");
        }
        let metrics = Arc::new(http::ops::Metrics::new());
        let store = metrics.meter(store);
        // Before anything is timed (the start-up reap below above all):
        // instances sharing a database time grants by its server's clock.
        if store.shared() {
            let measuring = Arc::clone(&store);
            match tokio::task::spawn_blocking(move || measuring.measure_clock()).await? {
                Ok(Some(offset)) => leadership::follow(offset, store.clock_doubt()),
                Ok(None) => tracing::warn!(
                    "the database server's clock answered too slowly to read; timing by this host's until a lease ask reads it"
                ),
                Err(err) => tracing::warn!(
                    error = %err,
                    "could not read the database server's clock; timing by this host's until a lease ask reads it"
                ),
            }
        }
        let signer = match &options.signing_key {
            Some(key) => credential::Signer::from_key(key)?,
            None => credential::Signer::load_or_create(store.as_ref())?,
        };
        let ssh_ca = match &options.ssh_ca_key {
            Some(key) => target::ssh::Authority::from_key(key),
            None => target::ssh::Authority::load_or_create(store.as_ref())?,
        };
        ssh_ca.record(store.as_ref())?;
        let broker = Arc::new(Broker::with_keys(
            Arc::clone(&store),
            policy,
            signer,
            ssh_ca,
        )?);
        #[cfg(feature = "testing")]
        broker.hold_reaper(reaper_held);
        // Before serving anything: grants that ended while we were down are
        // recorded as expired now, not whenever the first tick comes.
        // And grants the policy no longer allows (the file may have
        // changed while we were down) are revoked before anyone uses them.
        if !reaper_held {
            let reaping = Arc::clone(&broker);
            tokio::task::spawn_blocking(move || -> error::Result<()> {
                // In turns, until nothing due is left.
                while reaping.reap()?.is_some_and(|next| next <= broker::now()) {}
                Ok(())
            })
            .await??;
            let sweeping = Arc::clone(&broker);
            let revoked = tokio::task::spawn_blocking(move || sweeping.sweep_at_start()).await??;
            if revoked > 0 {
                tracing::info!(
                    revoked,
                    "grants the policy no longer allows revoked at start"
                );
            }
        }
        let looking = Arc::clone(&broker);
        match tokio::task::spawn_blocking(move || looking.access_left_behind()).await {
            Ok(Ok(lines)) => {
                for line in lines {
                    tracing::error!("{line}");
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot tell whether targets moved since access was given")
            }
            Err(err) => tracing::warn!(error = %err, "the look at targets' systems failed"),
        }

        let addr = listener.local_addr()?;
        let purge_metrics = Arc::clone(&metrics);
        let server_metrics = Arc::clone(&metrics);
        let limits = http::serve::fit_to_open_files(options.limits);
        let (shutdown, stopped) = watch::channel(false);
        let app = http::router(http::AppState {
            broker: Arc::clone(&broker),
            shutdown: stopped.clone(),
            streams: Arc::new(http::events::StreamSlots::new(
                http::serve::fit_streams(options.streams, &options.limits, &limits),
                Arc::clone(&metrics),
            )),
            metrics,
            slack: options.slack.clone(),
        });
        // The reaper, the outbox worker, the notification worker and the
        // reconciler run on one instance of those sharing a database at a
        // time (see leadership).
        let holder = format!("{addr}/{}", uuid::Uuid::new_v4());
        let (leads, leading) = watch::channel(false);
        // The lease is given up only once the jobs have stopped (below).
        let (resign, resigning) = watch::channel(false);
        let lease = tokio::spawn(leadership::lead_forever(
            Arc::clone(&store),
            holder,
            leads,
            broker.term().clone(),
            broker.lease().clone(),
            resigning,
        ));
        let reaper = tokio::spawn(leadership::while_leading(
            leading.clone(),
            stopped.clone(),
            {
                let broker = Arc::clone(&broker);
                move |halted| reap_forever(Arc::clone(&broker), halted)
            },
        ));
        let checkpoints = options.checkpoints.map(|plan| {
            let periodic = tokio::spawn(checkpoint_forever(
                Arc::clone(&store),
                plan.clone(),
                stopped.clone(),
            ));
            (plan, periodic)
        });
        let uses = tokio::spawn(count_uses_forever(Arc::clone(&broker), stopped.clone()));
        // Effects left in the outbox by the last run, if any, go first.
        let outbox = tokio::spawn(leadership::while_leading(
            leading.clone(),
            stopped.clone(),
            {
                let broker = Arc::clone(&broker);
                move |halted| {
                    target::outbox::run(
                        Arc::clone(&broker),
                        Arc::clone(broker.outbox_wakeup()),
                        halted,
                    )
                }
            },
        ));
        // Notifications left unsent by the last run go out first, with the
        // delivery ids they had.
        let notifier = tokio::spawn(leadership::while_leading(
            leading.clone(),
            stopped.clone(),
            {
                let broker = Arc::clone(&broker);
                move |halted| {
                    notify::outbox::run(
                        Arc::clone(&broker),
                        Arc::clone(broker.notifier_wakeup()),
                        halted,
                    )
                }
            },
        ));
        let purger = tokio::spawn(leadership::while_leading(
            leading.clone(),
            stopped.clone(),
            {
                let broker = Arc::clone(&broker);
                move |halted| purge_forever(Arc::clone(&broker), Arc::clone(&purge_metrics), halted)
            },
        ));
        let tls = options.tls.clone();
        let serving_tls = options.tls;
        let reconciler = tokio::spawn(leadership::while_leading(leading, stopped.clone(), {
            let broker = Arc::clone(&broker);
            move |halted| {
                let every = Arc::clone(&broker);
                target::reconcile::run(
                    Arc::clone(&broker),
                    move || every.policy().settings.reconcile_every,
                    Arc::clone(broker.reconciler_wakeup()),
                    halted,
                )
            }
        }));
        // What other instances on the same database commit reaches this
        // one's live streams: listening before serving, so a stream opened
        // at once misses nothing (or, past the wait, is told to resync).
        let relay = match store.listen() {
            Some(mut heard) => {
                if tokio::time::timeout(LISTEN_WAIT, heard.recv())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "not yet listening for other instances' changes; serving anyway"
                    );
                }
                Some(tokio::spawn(relay_forever(Arc::clone(&broker), heard)))
            }
            None => None,
        };
        // At a stop, while connections drain: each job was told to stop
        // with the server and stops at its next step (the outbox once the
        // target calls under way are answered); all are awaited, so that
        // none still acts (a target call, a fenced write) once the lease is
        // given up and another instance leads. Those not stopped by one
        // deadline are aborted. Then the lease is given up at once, so
        // another instance takes over without waiting for the drain.
        let stepping_down = tokio::spawn({
            let mut stopping = stopped.clone();
            async move {
                let _ = stopping.wait_for(|stopped| *stopped).await;
                let deadline = tokio::time::Instant::now() + JOBS_WAIT;
                for (name, mut job) in [
                    ("reaper", reaper),
                    ("outbox", outbox),
                    ("notifications", notifier),
                    ("reconciler", reconciler),
                    ("purger", purger),
                ] {
                    if tokio::time::timeout_at(deadline, &mut job).await.is_err() {
                        tracing::warn!(job = name, "did not stop in time; aborted");
                        job.abort();
                        let _ = job.await;
                    }
                }
                let _ = resign.send(true);
                let _ = lease.await;
            }
        });
        let closing = Arc::clone(&broker);
        let task = tokio::spawn(async move {
            http::serve::serve(listener, app, limits, serving_tls, stopped).await;
            if let Some(relay) = relay {
                relay.abort();
            }
            uses.abort();
            let _ = stepping_down.await;
            // Repeated uses still being counted are audited with their
            // count, before the last checkpoint, so that it covers them.
            match tokio::task::spawn_blocking(move || closing.record_repeated_uses(true)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "repeated uses not audited"),
                Err(err) => tracing::error!(error = %err, "repeated uses not audited"),
            }
            // The last one after every connection has finished, so it covers
            // everything the broker answered.
            if let Some((plan, periodic)) = checkpoints {
                let mut last = periodic.await.ok().flatten();
                write_checkpoint(&store, &plan, &mut last).await;
            }
        });
        Ok(Server {
            addr,
            broker,
            tls,
            shutdown,
            task,
            metrics: server_metrics,
        })
    }

    /// Re-reads the policy file; a bad file leaves the current policy in force.
    pub async fn reload(&self, path: &Path) -> anyhow::Result<usize> {
        let policy = Policy::load(path)?;
        policy.check_targets().await?;
        for caution in policy.cautions() {
            tracing::warn!("{caution}");
        }
        let broker = Arc::clone(&self.broker);
        Ok(tokio::task::spawn_blocking(move || broker.reload(policy)).await??)
    }

    /// Reads the TLS certificate and key again, if the server has them; on
    /// an error the certificate in use stays. Open connections keep theirs.
    pub fn reload_tls(&self) -> Result<bool, http::tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Fails `/readyz` from now on while everything else is served as
    /// before: a load balancer takes the instance out of rotation before
    /// [`Server::stop`] closes its listener.
    pub fn drain(&self) {
        self.metrics
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops accepting, ends live streams, and waits for open calls to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Writes a checkpoint at start and every `plan.every` while the log grows;
/// returns the last sequence number it signed when the server stops.
async fn checkpoint_forever(
    store: Arc<dyn Store>,
    plan: Checkpointing,
    mut stopped: watch::Receiver<bool>,
) -> Option<i64> {
    let mut last = None;
    loop {
        write_checkpoint(&store, &plan, &mut last).await;
        tokio::select! {
            _ = tokio::time::sleep(plan.every) => {}
            _ = stopped.wait_for(|stopped| *stopped) => return last,
        }
    }
}

/// Signs the log's head unless it was the last one signed, and writes it to
/// the log and the checkpoint file. A failure is logged; serving goes on.
async fn write_checkpoint(store: &Arc<dyn Store>, plan: &Checkpointing, last: &mut Option<i64>) {
    let reading = Arc::clone(store);
    let key = plan.key.clone();
    let taken = tokio::task::spawn_blocking(move || checkpoint::take(reading.as_ref(), &key)).await;
    let checkpoint = match taken {
        Ok(Ok(checkpoint)) => checkpoint,
        Ok(Err(checkpoint::CheckpointError::Empty)) => return,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "no audit checkpoint");
            return;
        }
        Err(err) => {
            tracing::error!(error = %err, "no audit checkpoint");
            return;
        }
    };
    if *last == Some(checkpoint.seq) {
        return;
    }
    tracing::info!(checkpoint = %checkpoint.line(), "audit checkpoint");
    if let Some(file) = plan.file.clone() {
        let writing = checkpoint.clone();
        match tokio::task::spawn_blocking(move || checkpoint::append(&file, &writing)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(error = %err, "audit checkpoint not written to its file");
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, "audit checkpoint not written to its file");
                return;
            }
        }
    }
    *last = Some(checkpoint.seq);
}

/// Hands each announcement from another instance to the broker's streams.
async fn relay_forever(
    broker: Arc<Broker>,
    mut heard: tokio::sync::mpsc::UnboundedReceiver<store::Announcement>,
) {
    while let Some(announcement) = heard.recv().await {
        let relaying = Arc::clone(&broker);
        match tokio::task::spawn_blocking(move || relaying.relay(announcement)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "another instance's change not relayed; streams resync");
                broker.relay(store::Announcement::Missed).ok();
            }
            // A relay that panicked lost its change all the same.
            Err(err) => {
                tracing::error!(error = %err, "relay task failed; streams resync");
                broker.relay(store::Announcement::Missed).ok();
            }
        }
    }
}

/// Audits the counts of repeat windows as they end, every [`USES_EVERY`],
/// until `stopped` ([`Server::stop`] audits the rest).
async fn count_uses_forever(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(USES_EVERY) => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        let counting = Arc::clone(&broker);
        match tokio::task::spawn_blocking(move || counting.record_repeated_uses(false)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "repeated uses not audited"),
            Err(err) => tracing::error!(error = %err, "repeated uses not audited"),
        }
    }
}

/// Forgets old idempotency keys, workload exchanges and delivery log
/// entries every [`PURGE_EVERY`], in turns of a batch, until none is left
/// or `halted`.
async fn purge_forever(
    broker: Arc<Broker>,
    metrics: Arc<http::ops::Metrics>,
    mut halted: watch::Receiver<bool>,
) {
    loop {
        let mut total = broker::Purged::default();
        loop {
            let purging = Arc::clone(&broker);
            match tokio::task::spawn_blocking(move || purging.purge(broker::now())).await {
                Ok(Ok(purged)) => {
                    metrics.count_purged(&purged);
                    total.add(purged);
                    if !purged.more_left() || *halted.borrow() {
                        break;
                    }
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot purge what is kept only for a while");
                    break;
                }
                Err(err) => {
                    tracing::error!(error = %err, "purge task failed");
                    break;
                }
            }
        }
        if total != broker::Purged::default() {
            tracing::info!(
                idempotency_keys = total.idempotency_keys,
                exchanges = total.exchanges,
                webhook_deliveries = total.webhook_deliveries,
                notification_deliveries = total.notification_deliveries,
                "purged what is kept only for a while"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = halted.wait_for(|halted| *halted) => return,
        }
    }
}

/// Records expiries, time-outs and scheduled starts as they fall due.
async fn reap_forever(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let mut held = broker.reaper_held();
    loop {
        tokio::select! {
            _ = held.wait_for(|held| !*held) => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        broker.reaper_looks();
        let reaping = Arc::clone(&broker);
        let next = match tokio::task::spawn_blocking(move || reaping.reap()).await {
            Ok(Ok(next)) => next,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "reaper failed; retrying");
                None
            }
            Err(err) => {
                tracing::error!(error = %err, "reaper task failed; retrying");
                None
            }
        };
        let next = broker.reaper_looked(next, broker::now() + REAPER_MAX_SLEEP);
        let sleep = (next - broker::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = broker.reaper_wakeup().notified() => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
    }
}
