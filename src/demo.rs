//! `hoist demo`: a real broker on a free loopback port, with the demo policy,
//! a temporary database and some history, so everything can be tried at once.

use std::sync::Arc;

use hoist_api::{CreateRequest, Decision};
use hoistd::{Broker, Policy, Server};

/// The demo policy, built in so the demo runs from any directory.
pub const DEMO_POLICY: &str = include_str!("../assets/demo-policy.toml");

/// A running demo broker and the directory holding its database.
pub struct Demo {
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl Demo {
    pub async fn start() -> anyhow::Result<Demo> {
        let dir = tempfile::tempdir()?;
        let policy = Policy::parse("demo-policy.toml", DEMO_POLICY)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Server::start(listener, &dir.path().join("hoistd.db"), policy).await?;
        let broker = Arc::clone(&server.broker);
        tokio::task::spawn_blocking(move || seed(&broker)).await??;
        Ok(Demo { server, _dir: dir })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

fn ask(role: &str, justification: &str, ticket: Option<&str>) -> CreateRequest {
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
