//! Grants at a real PostgreSQL target (`scripts/bench --only targets`): a
//! throwaway PostgreSQL cluster on loopback (`hoistd::testing::Postgres`)
//! and a broker in this process over a SQLite file
//! (`hoistd::testing::TestBroker`), called over loopback HTTP.
//!
//! ```text
//! targets login [--grants 200]
//!     From sending the approval to the first successful PostgreSQL login with
//!     the credential hoist hands over: the requester polls the grant every
//!     2 ms until its access is live, fetches the credential and logs in.
//! targets revoke [--grants 200]
//!     From sending the revocation to the moment a session opened during the
//!     grant is terminated (polled every 2 ms), with a new login then checked
//!     to be refused.
//! targets reconcile [--grants 200] [--passes 5]
//!     One reconciler pass over that many live grants (each inspected at the
//!     target, and the target's hoist roles listed), timed in process.
//! ```
//!
//! Prints one JSON object per line: `{"id", "run", "metrics", "meta"}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use hoist_api::{AccessState, CreateRequest};
use hoistd::testing::{Client, Postgres, TestBroker};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::Args;

const POLL: Duration = Duration::from_millis(2);

fn policy(pg: &Postgres, users: usize) -> String {
    let mut text = String::from(
        "[settings]\nfiling_rate = \"1000000/m\"\ncredential_fetch_rate = \"1000000/m\"\n\n",
    );
    let names: Vec<String> = (0..users).map(|i| format!("u{i:04}")).collect();
    for name in names.iter().chain(["approver".to_string()].iter()) {
        let hash = hex::encode(Sha256::digest(format!("tok-{name}").as_bytes()));
        text.push_str(&format!("[users.{name}]\ntoken_sha256 = \"{hash}\"\n"));
    }
    text.push_str(&format!(
        "\n[groups]\neng = [{}]\napprovers = [\"approver\"]\n\n",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str(&pg.target_toml("db1"));
    for (id, approvals) in [("pgdb", 1), ("pgdb-auto", 0)] {
        text.push_str(&format!(
            "\n[[roles]]\nid = \"{id}\"\neligible_groups = [\"eng\"]\ndefault_duration = \"30m\"\n\
             max_duration = \"1h\"\napprovals = {approvals}\napprover_groups = [\"approvers\"]\n\
             target = \"db1\"\n\n[roles.access]\nmember_of = [\"app_admin\"]\n"
        ));
    }
    text
}

fn request(role: &str) -> CreateRequest {
    CreateRequest {
        role: role.into(),
        justification: "benchmark of the PostgreSQL target".into(),
        ticket: None,
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    }
}

fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        ms(samples[rank - 1])
    };
    json!({
        "samples": samples.len(),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": ms(*samples.last().unwrap()),
    })
}

async fn setup(users: usize) -> (Postgres, TestBroker) {
    let pg = Postgres::start()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    pg.admin()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE app_admin NOLOGIN")
        .await
        .unwrap();
    let broker = TestBroker::builder()
        .policy(&policy(&pg, users))
        .token_prefix("tok-")
        .start()
        .await;
    (pg, broker)
}

async fn until_live(client: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let grant = client.grant(id).await.unwrap();
        if grant.access.map(|a| a.state) == Some(AccessState::Live) {
            return;
        }
        assert!(Instant::now() < deadline, "grant {id} never went live");
        tokio::time::sleep(POLL).await;
    }
}

/// Files, approves, and logs in: the time from the approval to the login.
async fn login(grants: usize) {
    let (pg, broker) = setup(1).await;
    let (user, approver) = (broker.as_user("u0000"), broker.as_user("approver"));
    let mut samples = Vec::new();
    for _ in 0..grants {
        let filed = user.file(&request("pgdb")).await.unwrap();
        let began = Instant::now();
        let approved = approver.approve(&filed.id).await.unwrap();
        let id = approved.grant_id.unwrap();
        until_live(&user, &id).await;
        let credential = user.credential(&id).await.unwrap().access.unwrap();
        let session = pg
            .connect_as(&credential.env["PGUSER"], &credential.env["PGPASSWORD"])
            .await
            .unwrap();
        samples.push(began.elapsed());
        drop(session);
        user.revoke(&id, "next").await.unwrap();
    }
    println!(
        "{}",
        json!({
            "id": "targets.login",
            "run": 0,
            "metrics": summary(&mut samples),
            "meta": { "what": format!(
                "{grants} grants one after another: from sending the approval (POST \
                 /v1/requests/ID/reviews) to the first successful PostgreSQL login with the \
                 credential hoist handed over (the grant polled every 2 ms until its access is \
                 live, GET .../credential, a SCRAM login); broker in process, PostgreSQL 15 on \
                 loopback") },
        })
    );
}

/// Revokes a grant with a session open: the time until it is terminated.
async fn revoke(grants: usize) {
    let (pg, broker) = setup(1).await;
    let (user, approver) = (broker.as_user("u0000"), broker.as_user("approver"));
    let mut samples = Vec::new();
    let mut refused = 0;
    for _ in 0..grants {
        let filed = user.file(&request("pgdb")).await.unwrap();
        let id = approver.approve(&filed.id).await.unwrap().grant_id.unwrap();
        until_live(&user, &id).await;
        let credential = user.credential(&id).await.unwrap().access.unwrap();
        let (name, password) = (&credential.env["PGUSER"], &credential.env["PGPASSWORD"]);
        let session = pg.connect_as(name, password).await.unwrap();
        let began = Instant::now();
        user.revoke(&id, "done").await.unwrap();
        let deadline = began + Duration::from_secs(30);
        while session.query_one("SELECT 1", &[]).await.is_ok() {
            assert!(Instant::now() < deadline, "session of {name} never ended");
            tokio::time::sleep(POLL).await;
        }
        samples.push(began.elapsed());
        if pg.connect_as(name, password).await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, grants, "a new login succeeded after a revocation");
    println!(
        "{}",
        json!({
            "id": "targets.revoke",
            "run": 0,
            "metrics": { "terminated": summary(&mut samples), "new_logins_refused": refused },
            "meta": { "what": format!(
                "{grants} grants, each with a PostgreSQL session open: from sending the \
                 revocation (POST /v1/grants/ID/revoke) until that session is terminated \
                 (polled every 2 ms with SELECT 1), a new login then checked to be refused; \
                 broker in process, PostgreSQL 15 on loopback") },
        })
    );
}

/// Times reconciler passes over `grants` live grants.
async fn reconcile(grants: usize, passes: usize) {
    let (_pg, broker) = setup(grants).await;
    let mut ids = Vec::new();
    for i in 0..grants {
        let filed = broker
            .as_user(&format!("u{i:04}"))
            .file(&request("pgdb-auto"))
            .await
            .unwrap();
        ids.push((i, filed.grant_id.unwrap()));
    }
    for (i, id) in &ids {
        until_live(&broker.as_user(&format!("u{i:04}")), id).await;
    }
    let mut times = Vec::new();
    for _ in 0..passes {
        let began = Instant::now();
        let pass = hoistd::target::reconcile::pass(broker.broker()).await;
        times.push(began.elapsed());
        assert_eq!(pass.checked, grants, "{pass:?}");
        assert_eq!(
            (pass.missing, pass.drift_removed, pass.failures),
            (0, 0, 0),
            "{pass:?}"
        );
    }
    let seconds: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    println!(
        "{}",
        json!({
            "id": "targets.reconcile",
            "run": 0,
            "metrics": { "pass": summary(&mut times), "seconds": seconds },
            "meta": { "what": format!(
                "One reconciler pass (hoistd::target::reconcile::pass) over {grants} live grants \
                 at one PostgreSQL target: the target's hoist roles listed and each grant's \
                 role inspected, 16 at a time over the admin connection; {passes} passes a \
                 run, in process") },
        })
    );
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    let mode = args.0.first().cloned().unwrap_or_default();
    let grants = args.number("--grants", 200_usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match mode.as_str() {
            "login" => login(grants).await,
            "revoke" => revoke(grants).await,
            "reconcile" => reconcile(grants, args.number("--passes", 5)).await,
            // Under plain `cargo bench`, nothing to do.
            _ => eprintln!("targets: login | revoke | reconcile (see the source); nothing to do"),
        }
    });
}
