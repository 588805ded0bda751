//! `hoist demo`: a real broker on a free loopback port, with the demo policy,
//! a temporary database and some history, so everything can be tried at once;
//! and a real target for `prod-db-admin`: a throwaway PostgreSQL cluster
//! where the server is installed, otherwise a webhook receiver in process.

mod webhook;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hoist_api::{CreateRequest, Decision, LiveEvent, RequestState};
use hoistd::Broker;
use hoistd::testing::{Postgres, TestBroker};
use tokio::task::JoinSet;

use crate::backend::{self, Backend};

/// The demo identities; each one's token is `demo-<name>`.
pub const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// The demo's approvers, and how long each takes to look at a request.
const APPROVERS: [(&str, Duration); 2] = [
    ("bob", Duration::from_secs(3)),
    ("dave", Duration::from_secs(5)),
];

/// The demo policy, built in so the demo runs from any directory.
pub const DEMO_POLICY: &str = include_str!("../assets/demo-policy.toml");

/// The role whose grants reach the demo's target, and the target's name.
pub const TARGET_ROLE: &str = "prod-db-admin";
pub const TARGET: &str = "demo-db";
/// The database and the PostgreSQL role a demo grant is a member of.
const DATABASE: &str = "orders";
const MEMBER_OF: &str = "app_admin";

/// A running demo broker, over a temporary database that lives as long as it.
pub struct Demo {
    broker: TestBroker,
    /// The throwaway cluster `prod-db-admin` targets, removed when the demo
    /// is dropped (also when Ctrl-C ends it).
    postgres: Option<Postgres>,
    /// Or the webhook receiver it targets, and the directory of its secret.
    webhook: Option<(webhook::WebhookReceiver, tempfile::TempDir)>,
    /// Which target the demo has, and what to try, in a sentence.
    target_note: String,
}

impl Demo {
    /// The demo without a target: grants are signed credentials only.
    pub async fn start() -> anyhow::Result<Demo> {
        Self::start_on(DEMO_POLICY.to_string(), None, no_target_note()).await
    }

    /// The demo with a real target: a throwaway PostgreSQL cluster when
    /// the server's binaries are installed; otherwise the webhook receiver,
    /// and the note says why.
    pub async fn start_with_target() -> anyhow::Result<Demo> {
        match Self::start_with_postgres().await {
            Ok(demo) => Ok(demo),
            Err(err) => {
                let why = format!("{err:#}");
                Self::start_with_webhook(&why).await
            }
        }
    }

    /// The demo with `prod-db-admin` at a webhook receiver in this process,
    /// which checks every call's signature; `why` says why not PostgreSQL.
    pub async fn start_with_webhook(why: &str) -> anyhow::Result<Demo> {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("webhook-secret");
        crate::fs::write_private(&secret_file, secret.as_bytes())?;
        let receiver = webhook::WebhookReceiver::start(secret.into_bytes()).await?;
        let target = format!(
            "name = \"{TARGET}\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:{}/hoist\"\nsecret_file = {}\ntimeout = \"5s\"\n\
             env = [\"DEMO_GRANT\"]\ncommand = true\n",
            receiver.port,
            toml::Value::String(secret_file.display().to_string())
        );
        let policy = policy_with_target(&target, "demo = true\n")?;
        let note = format!(
            "Demo target: a webhook receiver in this process ({TARGET}; PostgreSQL's server \
             is not available: {}). Request {TARGET_ROLE}, then on Grants (3) press s.",
            crate::text::sanitize::line(why)
        );
        let mut demo = Self::start_on(policy, None, note).await?;
        demo.webhook = Some((receiver, dir));
        Ok(demo)
    }

    /// The demo with `prod-db-admin` granting logins at a throwaway
    /// PostgreSQL cluster (database `orders`, role `app_admin`).
    pub async fn start_with_postgres() -> anyhow::Result<Demo> {
        let postgres = Postgres::start().await?;
        let admin = postgres.admin().await?;
        // A database to look at and the role a grant's login joins: what an
        // operator would have made before pointing hoist at the server.
        // One statement each: CREATE DATABASE cannot run in the implicit
        // transaction of a multi-statement query.
        for statement in [
            format!("CREATE DATABASE {DATABASE}"),
            format!("CREATE ROLE {MEMBER_OF} NOLOGIN"),
            format!("GRANT ALL ON DATABASE {DATABASE} TO {MEMBER_OF}"),
        ] {
            admin.batch_execute(&statement).await?;
        }
        let policy = policy_with_postgres(&postgres)?;
        watch_over(&postgres);
        let note = format!(
            "Demo target: a throwaway PostgreSQL on 127.0.0.1:{} ({TARGET}). Request \
             {TARGET_ROLE} (1, enter), wait for the approval, then on Grants (3) press s \
             and paste the psql command into a terminal.",
            postgres.port()
        );
        Self::start_on(policy, Some(postgres), note).await
    }

    async fn start_on(
        policy: String,
        postgres: Option<Postgres>,
        target_note: String,
    ) -> anyhow::Result<Demo> {
        let broker = TestBroker::builder()
            .policy(&policy)
            .token_prefix("demo-")
            .try_start()
            .await?;
        let seeding = Arc::clone(broker.broker());
        tokio::task::spawn_blocking(move || seed(&seeding)).await??;
        Ok(Demo {
            broker,
            postgres,
            webhook: None,
            target_note,
        })
    }

    /// Which target the demo has and what to try, for its first banner and
    /// `--serve-only`'s output.
    pub fn target_note(&self) -> &str {
        &self.target_note
    }

    /// The demo's PostgreSQL cluster, if it has one.
    pub fn postgres(&self) -> Option<&Postgres> {
        self.postgres.as_ref()
    }

    pub fn url(&self) -> String {
        self.broker.url()
    }

    /// The running broker, for tests that stop it or restart it.
    pub fn broker(&mut self) -> &mut TestBroker {
        &mut self.broker
    }

    /// A backend signed in as one of the demo people.
    pub async fn client(&self, user: &str) -> anyhow::Result<Arc<dyn Backend>> {
        if !PEOPLE.contains(&user) {
            anyhow::bail!(
                "no demo identity `{user}`; choose one of {}",
                PEOPLE.join(", ")
            );
        }
        let client = backend::connect(&self.url(), &format!("demo-{user}"))?;
        client.me().await?;
        Ok(client)
    }

    /// Demo approvers who act on `user`'s requests a few seconds after they
    /// are filed, so the whole lifecycle plays out in one terminal.
    pub fn start_approvers(&self, user: &str) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        for (approver, delay) in APPROVERS.into_iter().filter(|(a, _)| *a != user) {
            let url = self.url();
            let requester = user.to_string();
            tasks.spawn(async move {
                if let Err(err) = approve_forever(&url, approver, &requester, delay).await {
                    tracing::warn!(approver, error = %err, "demo approver stopped");
                }
            });
        }
        tasks
    }

    pub async fn stop(mut self) {
        self.broker.stop().await;
        // The cluster is stopped and its directory removed on drop.
        drop(self.postgres.take());
        drop(self.webhook.take());
    }
}

/// Sends this process's log (the demo broker's, in the same process) to
/// `path`, at the level `HOIST_LOG` names (an `EnvFilter`), `info` if
/// unset: the terminal belongs to the TUI. The file is made anew, readable
/// by its owner only.
pub fn log_to(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| {
            anyhow::anyhow!("cannot write the demo's log to {}: {err}", path.display())
        })?;
    let filter = std::env::var("HOIST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|err| anyhow::anyhow!("HOIST_LOG `{filter}` is not a log filter: {err}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .map_err(|err| anyhow::anyhow!("the demo's log is already set up: {err}"))
}

/// Removes the cluster if hoist dies without doing so itself (a kill -9, or
/// an abort), when no destructor runs. A detached shell waits for
/// this process to end, then fast-stops the server by its postmaster.pid
/// and removes its directory; after a clean exit both are already gone.
fn watch_over(postgres: &Postgres) {
    let Some(dir) = postgres.password_file().parent().map(|d| d.to_path_buf()) else {
        return;
    };
    let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
         pid=$(head -n 1 \"$2/data/postmaster.pid\" 2>/dev/null) && kill -INT \"$pid\" && \
         sleep 2; rm -rf \"$2\"";
    let spawned = std::process::Command::new("setsid")
        .args(["sh", "-c", script, "hoist-demo-watch"])
        .arg(std::process::id().to_string())
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "the demo's cluster is removed only on a clean exit");
    }
}

fn no_target_note() -> String {
    "Demo without a real target: credentials are signed tokens only.".to_string()
}

/// The demo policy with `prod-db-admin` at the demo's PostgreSQL: its
/// `[[targets]]` entry names the port and a password file of this run,
/// never a secret inline.
pub fn policy_with_postgres(postgres: &Postgres) -> anyhow::Result<String> {
    let target = format!(
        "name = \"{TARGET}\"\nkind = \"postgres\"\n\
         url = \"postgres://postgres@127.0.0.1:{}/{DATABASE}\"\n\
         password_file = {}\ndatabases = [\"{DATABASE}\"]\n\
         statement_timeout = \"5s\"\nconnect_timeout = \"5s\"\n",
        postgres.port(),
        toml::Value::String(postgres.password_file().display().to_string())
    );
    policy_with_target(
        &target,
        &format!("member_of = [\"{MEMBER_OF}\"]\nconnection_limit = 3\n"),
    )
}

/// The demo policy (a file in `assets/`) with one `[[targets]]` entry
/// added and `prod-db-admin` pointed at it with `access`.
fn policy_with_target(target: &str, access: &str) -> anyhow::Result<String> {
    let mut policy: toml::Table = DEMO_POLICY.parse()?;
    let target: toml::Table = target.parse()?;
    policy
        .entry("targets")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("the demo policy's `targets` is not a list"))?
        .push(toml::Value::Table(target));
    let role = policy
        .get_mut("roles")
        .and_then(toml::Value::as_array_mut)
        .and_then(|roles| {
            roles
                .iter_mut()
                .filter_map(toml::Value::as_table_mut)
                .find(|r| r.get("id").and_then(toml::Value::as_str) == Some(TARGET_ROLE))
        })
        .ok_or_else(|| anyhow::anyhow!("the demo policy has no role {TARGET_ROLE}"))?;
    role.insert("target".into(), toml::Value::String(TARGET.into()));
    role.insert("access".into(), toml::Value::Table(access.parse()?));
    Ok(toml::to_string(&policy)?)
}

/// Follows the event stream as `approver` and approves `requester`'s pending
/// requests (and acknowledges their break-glass) after `delay`.
async fn approve_forever(
    url: &str,
    approver: &str,
    requester: &str,
    delay: Duration,
) -> anyhow::Result<()> {
    let client = backend::connect(url, &format!("demo-{approver}"))?;
    let mut events = client.events().await?;
    while let Some(event) = events.next().await {
        let LiveEvent::Request { request } = event? else {
            continue;
        };
        if request.requester != requester {
            continue;
        }
        let reviewed = request.reviews.iter().any(|r| r.reviewer == approver);
        let client = Arc::clone(&client);
        if request.state == RequestState::Pending && !reviewed {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = client
                    .review(
                        &request.id,
                        Decision::Approve,
                        Some("LGTM (demo approver)".into()),
                    )
                    .await;
            });
        } else if request.break_glass && request.acknowledgement.is_none() && approver == "bob" {
            tokio::spawn(async move {
                tokio::time::sleep(delay * 3).await;
                let _ = client
                    .acknowledge(
                        &request.id,
                        Some("Reviewed after the fact: justified".into()),
                    )
                    .await;
            });
        }
    }
    Ok(())
}

/// A request as the demo people file them (tests seed with it too).
pub fn ask(role: &str, justification: &str, ticket: Option<&str>) -> CreateRequest {
    CreateRequest {
        role: role.into(),
        justification: justification.into(),
        ticket: ticket.map(str::to_string),
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    }
}

/// A believable morning: finished requests, live grants, work waiting for approvers.
fn seed(broker: &Broker) -> anyhow::Result<()> {
    let (denied, _) = broker.create_request(
        "alice",
        &ask(
            "billing-readonly",
            "Check invoice totals for the Q3 reconciliation report",
            Some("FIN-311"),
        ),
        None,
    )?;
    broker.review_request(
        "bob",
        &denied.id,
        Decision::Deny,
        Some("Use the finance replica; billing PII needs a DPO ticket"),
    )?;

    let (logs, _) = broker.create_request(
        "alice",
        &ask("prod-logs-read", "Trace checkout 502s", None),
        None,
    )?;
    if let Some(grant) = logs.grant_id {
        broker.revoke_grant("alice", &grant, Some("found it: bad deploy of cart-svc"))?;
    }

    let (deploy, _) = broker.create_request(
        "dave",
        &ask("prod-deploy", "Roll back cart-svc 2.14.0", None),
        None,
    )?;
    broker.review_request("bob", &deploy.id, Decision::Approve, Some("go"))?;

    broker.create_request(
        "carol",
        &CreateRequest {
            break_glass: true,
            incident: Some("INC-4711".into()),
            ..ask(
                "prod-db-admin",
                "Primary is refusing connections; failing over to replica",
                None,
            )
        },
        None,
    )?;
    broker.create_request(
        "carol",
        &ask(
            "prod-k8s-admin",
            "Drain node pool np-3 after the kernel CVE patch",
            Some("CHG-2291"),
        ),
        None,
    )?;
    broker.create_request(
        "dave",
        &ask("staging-k8s-admin", "Load test the new ingress", None),
        None,
    )?;
    Ok(())
}
