//! A real broker for tests (feature `testing`): on a loopback port, over a
//! fresh SQLite file in a directory of its own, with a typed client per
//! identity. The broker's own tests, the client's and the demo start their
//! brokers here, so there is one way to do it.
//!
//! ```no_run
//! # async fn example() {
//! use hoistd::testing::{TestBroker, db_request};
//! let broker = TestBroker::start().await; // the test policy; tokens are `t-<user>`
//! let request = broker.as_user("alice").file(&db_request()).await.unwrap();
//! broker.as_user("bob").approve(&request.id).await.unwrap();
//! # }
//! ```
//!
//! Logs go to the test's output when asked for, with `HOIST_TEST_LOG`
//! (a tracing filter such as `debug` or `hoistd=trace`) or
//! [`Builder::logs`].

// Test support: a broker that cannot start, or an answer that is not the
// JSON the contract promises, is a failed test, so these panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod cluster;
mod postgres;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hoist_api::ErrorCode;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

pub use client::{Answer, Client, db_request, request};
pub use cluster::{Cluster, clock_env};
pub use postgres::{Postgres, PostgresError};
pub use tls::TestCa;

use crate::http::serve::{Limits, StreamLimits};
use crate::http::tls::Tls;
use crate::store::Location;
use crate::{Broker, Options, Policy, Server};

/// Where a test asks for the broker's logs.
pub const LOG_ENV: &str = "HOIST_TEST_LOG";

/// The people of the test policy; each one's token is `t-<name>`.
pub const TEST_USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

/// The test policy, with `settings` added to its `[settings]` table.
/// Tokens are `t-<name>`; roles cover each approval rule: `db` (one
/// approval, a ticket pattern, break-glass for `oncall`), `k8s` (two
/// approvals), `logs` (none), `secret` (alice alone is eligible).
pub fn policy_text(settings: &str) -> String {
    let users: String = TEST_USERS
        .iter()
        .map(|u| {
            let hash = hex::encode(Sha256::digest(format!("t-{u}").as_bytes()));
            format!("[users.{u}]\ntoken_sha256 = \"{hash}\"\n")
        })
        .collect();
    format!(
        r#"
[settings]
auditor_groups = ["auditors"]
{settings}

{users}

[groups]
eng = ["alice", "bob", "carol", "dave", "frank"]
approvers = ["bob", "dave", "alice"]
oncall = ["carol"]
auditors = ["erin"]

[[roles]]
id = "db"
name = "Prod DB"
scope = "postgres://db"
eligible_groups = ["eng"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["approvers"]
break_glass = true
break_glass_groups = ["oncall"]
ticket_required = true
ticket_pattern = "INC-[0-9]+"
min_justification = 10

[[roles]]
id = "k8s"
name = "Prod cluster"
scope = "k8s://prod"
eligible_groups = ["eng"]
default_duration = "1h"
max_duration = "2h"
approvals = 2
approver_groups = ["approvers"]

[[roles]]
id = "logs"
name = "Logs"
scope = "logs://prod"
eligible_groups = ["eng"]
default_duration = "10m"
max_duration = "1h"

[[roles]]
id = "secret"
name = "Not for frank"
scope = "vault://x"
eligible_users = ["alice"]
default_duration = "10m"
max_duration = "1h"
"#
    )
}

/// A `[[roles]]` entry for the test policy whose grants reach `target`:
/// eligible to `eng`, one approval from `approvers`, 30 minutes by default,
/// with `access` (TOML lines) as its `[roles.access]`.
pub fn target_role(id: &str, target: &str, access: &str) -> String {
    format!(
        r#"
[[roles]]
id = "{id}"
name = "{id} at {target}"
scope = "{target}"
eligible_groups = ["eng"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["approvers"]
target = "{target}"

[roles.access]
{access}
"#
    )
}

/// How to start a [`TestBroker`].
#[derive(Debug, Clone)]
pub struct Builder {
    policy: String,
    token_prefix: String,
    logs: Option<String>,
    reaper_held: bool,
    limits: Limits,
    streams: StreamLimits,
    tls: bool,
    slack: Option<crate::slack::Settings>,
    ssh_ca_key: Option<ed25519_dalek::SigningKey>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            policy: policy_text(""),
            token_prefix: "t-".into(),
            logs: None,
            reaper_held: false,
            limits: Limits::default(),
            streams: StreamLimits::default(),
            tls: false,
            slack: None,
            ssh_ca_key: None,
        }
    }
}

impl Builder {
    /// The policy as TOML text, instead of the test policy.
    pub fn policy(mut self, text: &str) -> Self {
        self.policy = text.to_string();
        self
    }

    /// The test policy with these lines added to its `[settings]`.
    pub fn settings(mut self, settings: &str) -> Self {
        self.policy = policy_text(settings);
        self
    }

    /// What [`TestBroker::as_user`] puts before a name to make its token
    /// (`t-` for the test policy; the demo policy's tokens are `demo-<name>`).
    pub fn token_prefix(mut self, prefix: &str) -> Self {
        self.token_prefix = prefix.to_string();
        self
    }

    /// Starts with the reaper held back, start-up included, until
    /// [`TestBroker::hold_reaper`] lets it go: what falls due is then only
    /// seen by reads settling it themselves.
    pub fn reaper_held(mut self) -> Self {
        self.reaper_held = true;
        self
    }

    /// Serve with these connection limits (short timeouts, a small cap).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Cap event streams at these.
    pub fn streams(mut self, streams: StreamLimits) -> Self {
        self.streams = streams;
        self
    }

    /// Serve HTTPS with a certificate from a CA of the test's own
    /// ([`TestBroker::ca`]); [`TestBroker::url`] is then
    /// `https://localhost:PORT` and its clients trust that CA alone.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Take Slack's button presses with these settings (a signing secret,
    /// and answers to a receiver on loopback).
    pub fn slack(mut self, settings: crate::slack::Settings) -> Self {
        self.slack = Some(settings);
        self
    }

    /// Sign SSH certificates with this CA key, as `--ssh-ca-key` does,
    /// instead of the database's.
    pub fn ssh_ca_key(mut self, key: ed25519_dalek::SigningKey) -> Self {
        self.ssh_ca_key = Some(key);
        self
    }

    /// The broker's logs in the test's output, at this tracing filter
    /// (`HOIST_TEST_LOG` does the same without a change to the test).
    pub fn logs(mut self, filter: &str) -> Self {
        self.logs = Some(filter.to_string());
        self
    }

    /// Starts the broker; panics if it cannot, as a test should.
    pub async fn start(self) -> TestBroker {
        self.try_start()
            .await
            .unwrap_or_else(|err| panic!("the test broker did not start: {err:#}"))
    }

    /// Picks an address and writes the policy, but serves nothing until
    /// [`TestBroker::restart`]: a broker that is down when a client starts.
    pub async fn prepare(self) -> TestBroker {
        let (broker, listener) = self
            .bind()
            .await
            .unwrap_or_else(|err| panic!("the test broker could not be prepared: {err:#}"));
        drop(listener);
        broker
    }

    /// Starts the broker, or says why it could not (for the demo, which is
    /// no test and should not panic).
    pub async fn try_start(self) -> anyhow::Result<TestBroker> {
        let (mut broker, listener) = self.bind().await?;
        broker.serve(listener).await?;
        Ok(broker)
    }

    async fn bind(self) -> anyhow::Result<(TestBroker, tokio::net::TcpListener)> {
        if let Some(filter) = self.logs.or_else(|| std::env::var(LOG_ENV).ok()) {
            // Once per process; a second test's subscriber is the first one.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().context("no temporary directory for the broker")?;
        std::fs::write(dir.path().join("policy.toml"), &self.policy)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (ca, tls, http) = if self.tls {
            let ca = TestCa::new(&dir.path().join("tls"))?;
            let tls = Arc::new(Tls::load(&ca.cert(), &ca.key())?);
            let http = ca.client()?;
            (Some(ca), Some(tls), http)
        } else {
            (None, None, reqwest::Client::new())
        };
        let broker = TestBroker {
            server: None,
            dir,
            addr,
            token_prefix: self.token_prefix,
            http,
            reaper_held: self.reaper_held,
            limits: self.limits,
            streams: self.streams,
            ca,
            tls,
            slack: self.slack,
            ssh_ca_key: self.ssh_ca_key,
        };
        Ok((broker, listener))
    }
}

/// A running broker on loopback over a SQLite file of its own, which lives
/// as long as this does.
pub struct TestBroker {
    server: Option<Server>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    token_prefix: String,
    http: reqwest::Client,
    /// Whether the reaper is held, now and after a restart.
    reaper_held: bool,
    limits: Limits,
    streams: StreamLimits,
    ca: Option<TestCa>,
    tls: Option<Arc<Tls>>,
    slack: Option<crate::slack::Settings>,
    ssh_ca_key: Option<ed25519_dalek::SigningKey>,
}

impl TestBroker {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The test policy (see [`policy_text`]).
    pub async fn start() -> Self {
        Builder::default().start().await
    }

    /// The test policy with these lines added to its `[settings]`.
    pub async fn with_settings(settings: &str) -> Self {
        Builder::default().settings(settings).start().await
    }

    /// `http://127.0.0.1:PORT` (with TLS, `https://localhost:PORT`), the
    /// same across restarts.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The CA behind the broker's certificate ([`Builder::tls`]): issue a
    /// new certificate with it, then [`Server::reload_tls`].
    pub fn ca(&mut self) -> &mut TestCa {
        self.ca.as_mut().expect("the test broker serves no TLS")
    }

    /// A client for this broker's URL (trusting its CA, with TLS).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory holding the database and the policy file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite file, for tests that inspect or tamper with it.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("hoistd.db")
    }

    /// The policy file: edit it, then [`Server::reload`] or [`Self::restart`].
    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    /// The running server. Panics once stopped.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("the test broker is stopped")
    }

    /// The broker behind the HTTP API, for seeding and for tests below it.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.server().broker
    }

    /// Waits for the leader's first reconciler round to end (every system's
    /// first pass), so that the passes a test runs itself are not run
    /// alongside it (each system's next is `reconcile_every` away).
    pub async fn reconciled(&self) {
        let mut passes = self.broker().reconciler_passes();
        tokio::time::timeout(Duration::from_secs(10), passes.wait_for(|n| *n > 0))
            .await
            .expect("no reconciler pass ended within 10 s")
            .expect("the broker stopped");
    }

    /// Stops serving; the database and the address stay for [`Self::restart`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Stops the broker if it runs, and starts it (again) on the same
    /// address and database with the policy file as it is now.
    pub async fn restart(&mut self) {
        self.try_restart()
            .await
            .unwrap_or_else(|err| panic!("the test broker did not restart: {err:#}"));
    }

    /// [`TestBroker::restart`], saying why the broker did not start (it
    /// then stays stopped).
    pub async fn try_restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.serve(listener).await
    }

    async fn serve(&mut self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        let policy = Policy::load(&self.policy_path())?;
        let store = Location::Sqlite(self.db()).open()?;
        let options = Options {
            limits: self.limits,
            streams: self.streams,
            tls: self.tls.clone(),
            slack: self.slack.clone(),
            ssh_ca_key: self.ssh_ca_key.clone(),
            ..Options::default()
        };
        self.server = Some(if self.reaper_held {
            Server::start_with_reaper_held(listener, store, policy, options).await?
        } else {
            Server::start_with(listener, store, policy, options).await?
        });
        Ok(())
    }

    /// From the next [`Self::restart`] on, signs SSH certificates with
    /// this CA key (`--ssh-ca-key`), or with the database's.
    pub fn use_ssh_ca_key(&mut self, key: Option<ed25519_dalek::SigningKey>) {
        self.ssh_ca_key = key;
    }

    /// Holds the reaper back, or lets it go, now and across restarts.
    pub fn hold_reaper(&mut self, held: bool) {
        self.reaper_held = held;
        if let Some(server) = &self.server {
            server.broker.hold_reaper(held);
        }
    }

    /// A client whose token is the builder's prefix and `user`.
    pub fn as_user(&self, user: &str) -> Client {
        self.with_token(&format!("{}{user}", self.token_prefix))
    }

    /// A client with this bearer token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            base: self.url(),
            token: token.to_string(),
            http: self.http.clone(),
        }
    }
}

/// Asserts a refusal with this status and code, and returns its message.
pub fn refused<T: std::fmt::Debug>(
    answer: Answer<T>,
    status: StatusCode,
    code: ErrorCode,
) -> String {
    match answer {
        Err((got_status, error)) => {
            assert_eq!(
                (got_status, error.code),
                (status, code),
                "{}",
                error.message
            );
            assert!(!error.message.is_empty());
            error.message
        }
        Ok(value) => panic!("expected {status} {code:?}, got {value:?}"),
    }
}

/// Waits until `check` holds, polling; fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
