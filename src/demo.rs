//! `hoist demo`: a real broker on a free loopback port, with the demo policy,
//! a temporary database and some history, so everything can be tried at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hoist_api::{CreateRequest, Decision, LiveEvent, RequestState};
use hoistd::Broker;
use hoistd::testing::TestBroker;
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

/// A running demo broker, over a temporary database that lives as long as it.
pub struct Demo {
    broker: TestBroker,
}

impl Demo {
    pub async fn start() -> anyhow::Result<Demo> {
        let broker = TestBroker::builder()
            .policy(DEMO_POLICY)
            .token_prefix("demo-")
            .try_start()
            .await?;
        let seeding = Arc::clone(broker.broker());
        tokio::task::spawn_blocking(move || seed(&seeding)).await??;
        Ok(Demo { broker })
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
    }
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
