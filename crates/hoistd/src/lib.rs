//! `hoistd`: the reference just-in-time access broker.
//!
//! [`Server::start`] takes a store (see [`store::open`]) and a policy and
//! serves the HTTP API on a listener; the `hoistd` binary and the
//! `hoist demo` command both use it.

pub mod audit;
pub mod broker;
pub mod credential;
pub mod domain;
pub mod error;
pub mod http;
pub mod oidc;
pub mod policy;
pub mod store;
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
const REAPER_MAX_SLEEP: Duration = Duration::from_secs(5);

/// How a [`Server`] serves: its connection limits.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: http::serve::Limits,
}

/// A running broker: its address, and the handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
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
        let broker = Arc::new(Broker::new(store, policy)?);
        // Before serving anything: grants that ended while we were down are
        // recorded as expired now, not whenever the first tick comes.
        let reaping = Arc::clone(&broker);
        tokio::task::spawn_blocking(move || reaping.reap()).await??;

        let addr = listener.local_addr()?;
        let (shutdown, stopped) = watch::channel(false);
        let app = http::router(http::AppState {
            broker: Arc::clone(&broker),
            shutdown: stopped.clone(),
        });
        let reaper = tokio::spawn(reap_forever(Arc::clone(&broker), stopped.clone()));
        let limits = http::serve::fit_to_open_files(options.limits);
        let task = tokio::spawn(async move {
            http::serve::serve(listener, app, limits, stopped).await;
            reaper.abort();
        });
        Ok(Server {
            addr,
            broker,
            shutdown,
            task,
        })
    }

    /// Re-reads the policy file; a bad file leaves the current policy in force.
    pub async fn reload(&self, path: &Path) -> anyhow::Result<usize> {
        let policy = Policy::load(path)?;
        let broker = Arc::clone(&self.broker);
        Ok(tokio::task::spawn_blocking(move || broker.reload(policy)).await??)
    }

    /// Stops accepting, ends live streams, and waits for open calls to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Records expiries, time-outs and scheduled starts as they fall due.
async fn reap_forever(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    loop {
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
        let sleep = next
            .map(|at| (at - broker::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(REAPER_MAX_SLEEP)
            .min(REAPER_MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = broker.reaper_wakeup().notified() => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
    }
}
