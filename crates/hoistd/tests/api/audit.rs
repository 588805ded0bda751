//! The audit log: who sees what, the hash chain, and tamper detection.

use std::process::Command;

use hoist_api::AuditKind;

use crate::helpers::*;

async fn some_history(broker: &TestBroker) {
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();
    let grant_id = bob.approve(&filed.id).await.unwrap().grant_id.unwrap();
    alice.revoke(&grant_id, "done").await.unwrap();
    broker
        .as_user("dave")
        .file(&request("logs", "dave reads logs"))
        .await
        .unwrap();
}

fn verify(broker: &TestBroker) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["audit", "verify", "--db"])
        .arg(broker.db())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn auditors_see_everything_others_only_their_own() {
    let broker = TestBroker::start().await;
    some_history(&broker).await;

    let all = broker.as_user("erin").audit().await;
    assert_eq!(all.len(), 8);
    assert!(
        all.windows(2)
            .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash)
    );
    assert!(all.iter().all(|e| e.hash.len() == 64));

    let dave = broker.as_user("dave").audit().await;
    assert!(
        dave.iter()
            .all(|e| e.actor == "dave" || e.subject.as_deref() == Some("dave"))
    );
    assert_eq!(
        dave.len(),
        3,
        "dave's own logs request: requested, approved, activated"
    );
    let frank = broker.as_user("frank").audit().await;
    assert!(frank.is_empty());

    let revoked = all.iter().find(|e| e.kind == AuditKind::Revoked).unwrap();
    assert_eq!(
        (revoked.actor.as_str(), revoked.reason.as_deref()),
        ("alice", Some("done"))
    );
    assert_eq!(revoked.subject.as_deref(), Some("alice"));
}

#[tokio::test]
async fn the_database_refuses_edits_to_the_audit_log() {
    let mut broker = TestBroker::start().await;
    some_history(&broker).await;
    broker.stop().await;
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    let err = db
        .execute(
            "UPDATE audit SET reason = 'nothing to see' WHERE seq = 2",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = db
        .execute("DELETE FROM audit WHERE seq = 2", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // A REPLACE deletes without firing the delete trigger.
    let err = db
        .execute(
            "INSERT OR REPLACE INTO audit SELECT * FROM audit WHERE seq = 2",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn verify_passes_an_intact_log_and_names_the_first_tampered_entry() {
    let mut broker = TestBroker::start().await;
    some_history(&broker).await;
    broker.stop().await;
    let (code, out) = verify(&broker);
    assert_eq!((code, out.trim()), (0, "audit log intact: 8 entries"));

    // Someone with the file drops the guard and rewrites history.
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    db.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
        .unwrap();
    let (code, out) = verify(&broker);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken at entry 3") && out.contains("altered"),
        "{out}"
    );

    // Restoring the field but deleting an entry is caught too.
    db.execute("UPDATE audit SET actor = 'bob' WHERE seq = 3", [])
        .unwrap();
    assert_eq!(verify(&broker).0, 0);
    // So is a value stored as another type, the same bytes or not.
    db.execute(
        "UPDATE audit SET details = CAST(details AS BLOB) WHERE seq = 4",
        [],
    )
    .unwrap();
    let (code, out) = verify(&broker);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken at entry 4") && out.contains("altered"),
        "{out}"
    );
    db.execute(
        "UPDATE audit SET details = CAST(details AS TEXT) WHERE seq = 4",
        [],
    )
    .unwrap();
    assert_eq!(verify(&broker).0, 0);
    db.execute("DELETE FROM audit WHERE seq = 5", []).unwrap();
    let (code, out) = verify(&broker);
    assert_eq!(code, 2);
    assert!(
        out.contains("broken at entry 6") && out.contains("removed"),
        "{out}"
    );
}

#[tokio::test]
async fn verify_takes_a_store_location_and_names_no_password() {
    let mut broker = TestBroker::start().await;
    some_history(&broker).await;
    broker.stop().await;
    let run = |db: &str| {
        Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .args(["audit", "verify", "--db", db])
            .output()
            .unwrap()
    };
    let location = format!("sqlite:{}", broker.db().display());
    let out = run(&location);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 8 entries"));

    // A missing file is not created and called intact.
    let missing = broker.dir().join("missing.db");
    let out = run(&format!("sqlite:{}", missing.display()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at"));
    assert!(!missing.exists());

    // A location this hoistd has no store for is refused by its scheme.
    let out = run("mysql://hoistd:s3cret-pw@db.internal/hoistd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no store for `mysql://`"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    // A PostgreSQL server that does not answer is named without its password.
    let out = run("postgres://hoistd:s3cret-pw@127.0.0.1:1/hoistd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("database unavailable"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

/// `audit verify` reads a snapshot: the broker goes on filing and
/// cancelling requests while it scans a long log. Holding the write lock
/// for the scan, as it once did, stalled every write until the scan ended.
#[tokio::test(flavor = "multi_thread")]
async fn writes_go_on_while_verify_reads_the_log() {
    // As many filings as the broker takes: the limit per person is not what is measured.
    let broker = TestBroker::with_settings("filing_rate = \"1000000/s\"").await;
    let entries = 30_000;
    let db = broker.db();
    tokio::task::spawn_blocking(move || {
        let store = hoistd::store::SqliteStore::open(&db).unwrap();
        let store: &dyn hoistd::Store = &store;
        let mut tx = store.transaction().unwrap();
        for n in 0..entries {
            hoistd::audit::append(
                tx.as_mut(),
                hoistd::audit::NewAuditEvent {
                    at: chrono::Utc::now(),
                    kind: AuditKind::Requested,
                    actor: "alice".into(),
                    subject: Some("alice".into()),
                    role: Some("logs".into()),
                    request_id: Some(format!("req_{n}")),
                    grant_id: None,
                    incident: None,
                    reason: Some("history".into()),
                    details: serde_json::json!({}),
                },
            )
            .unwrap();
        }
        tx.commit().unwrap();
    })
    .await
    .unwrap();

    let mut verifying = std::process::Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["audit", "verify", "--db"])
        .arg(broker.db())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let alice = broker.as_user("alice");
    let mut written_while_verifying = 0;
    while verifying.try_wait().unwrap().is_none() {
        let filed = alice.file(&db_request()).await.unwrap();
        alice.cancel(&filed.id).await.unwrap();
        if verifying.try_wait().unwrap().is_none() {
            written_while_verifying += 1;
        }
    }
    let out = verifying.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("intact"), "{said}");
    assert!(
        written_while_verifying >= 5,
        "only {written_while_verifying} requests were filed and cancelled while verify ran"
    );
}
