//! Signed audit checkpoints, with the real binary: a log cut short, emptied
//! or recomputed still passes the hash chain alone, and fails against a
//! checkpoint; keys stay out of the database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hoist_api::AuditKind;
use hoistd::Store;
use hoistd::store::AuditQuery;

use crate::helpers::*;

fn hoistd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(args)
        .env_remove("HOISTD_CHECKPOINT_KEY")
        .env_remove("HOISTD_SIGNING_KEY")
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A key made by `hoistd keygen`, and its public key file.
fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("checkpoint.pem");
    let out = hoistd(&["keygen", "--out", path(&key)]);
    assert!(out.status.success(), "{}", said(&out));
    let public = dir.join("checkpoint.pub.pem");
    std::fs::write(&public, &out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
    (key, public)
}

fn verify(db: &Path, checkpoints: &Path, key: &Path) -> (i32, String) {
    let out = hoistd(&[
        "audit",
        "verify",
        "--db",
        path(db),
        "--checkpoints",
        path(checkpoints),
        "--checkpoint-key",
        path(key),
    ]);
    (out.status.code().unwrap(), said(&out))
}

fn plain_verify(db: &Path) -> (i32, String) {
    let out = hoistd(&["audit", "verify", "--db", path(db)]);
    (out.status.code().unwrap(), said(&out))
}

/// A copy of the database without the triggers that refuse edits, as
/// someone holding the file would make it.
fn tamperable_copy(db: &Path, name: &str) -> (PathBuf, rusqlite::Connection) {
    let copy = db.with_file_name(name);
    let source = rusqlite::Connection::open(db).unwrap();
    source
        .execute(&format!("VACUUM INTO '{}'", path(&copy)), [])
        .unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    (copy, conn)
}

async fn history(broker: &TestBroker) {
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    for _ in 0..3 {
        let filed = alice.file(&db_request()).await.unwrap();
        let grant = bob.approve(&filed.id).await.unwrap().grant_id.unwrap();
        alice.revoke(&grant, "done").await.unwrap();
    }
}

#[tokio::test]
async fn truncated_emptied_and_recomputed_logs_fail_against_a_checkpoint() {
    let mut broker = TestBroker::start().await;
    history(&broker).await;
    broker.stop().await;
    let dir = broker.dir().to_path_buf();
    let db = broker.db();
    let (key, public) = keygen(&dir);
    let checkpoints = dir.join("checkpoints.jsonl");

    let out = hoistd(&[
        "audit",
        "checkpoint",
        "--db",
        path(&db),
        "--out",
        path(&checkpoints),
        "--checkpoint-key",
        path(&key),
    ]);
    assert!(out.status.success(), "{}", said(&out));
    let entries: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT max(seq) FROM audit", [], |row| row.get(0))
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&checkpoints).unwrap().trim()).unwrap();
    assert_eq!(line["seq"], entries);

    // A checkpoint file with nothing in it proves nothing, and says so
    // with a code of its own: a job that checks only the exit status must
    // not pass a log whose checkpoints were emptied with it.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let (code, out) = verify(&db, &empty, &public);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("holds no checkpoint"), "{out}");

    // The untouched log holds the checkpoint, checked with the public key
    // or the private one.
    for key in [&public, &key] {
        let (code, out) = verify(&db, &checkpoints, key);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("intact: {entries} entries")), "{out}");
        assert!(out.contains("signed checkpoints"), "{out}");
    }

    // Truncated: the last three entries are gone. The chain still holds.
    let (cut, conn) = tamperable_copy(&db, "truncated.db");
    conn.execute("DELETE FROM audit WHERE seq > ?1", [entries - 3])
        .unwrap();
    assert_eq!(plain_verify(&cut).0, 0, "the chain alone cannot see this");
    let (code, out) = verify(&cut, &checkpoints, &public);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("broken at entry {}", entries - 2)) && out.contains("truncated"),
        "{out}"
    );

    // Emptied.
    let (empty, conn) = tamperable_copy(&db, "emptied.db");
    conn.execute("DELETE FROM audit", []).unwrap();
    assert_eq!(plain_verify(&empty).0, 0);
    let (code, out) = verify(&empty, &checkpoints, &public);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken at entry 1") && out.contains("emptied"),
        "{out}"
    );

    // Recomputed: entry 4 deleted and every later entry renumbered and
    // rehashed with hoistd's own code, so the chain is whole again.
    let (rewritten, conn) = tamperable_copy(&db, "recomputed.db");
    let store = hoistd::store::SqliteStore::open(&rewritten).unwrap();
    let store: &dyn Store = &store;
    let kept: Vec<_> = {
        let tx = store.transaction().unwrap();
        tx.audit(&AuditQuery::default())
            .unwrap()
            .into_iter()
            .filter(|event| event.seq != 4)
            .collect()
    };
    conn.execute("DELETE FROM audit", []).unwrap();
    let mut tx = store.transaction().unwrap();
    for event in kept {
        hoistd::audit::append(
            tx.as_mut(),
            hoistd::audit::NewAuditEvent {
                at: event.at,
                kind: event.kind,
                actor: event.actor,
                subject: event.subject,
                role: event.role,
                request_id: event.request_id,
                grant_id: event.grant_id,
                incident: event.incident,
                reason: event.reason,
                details: event.details,
            },
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let (code, out) = plain_verify(&rewritten);
    assert_eq!(code, 0, "the recomputed chain is whole: {out}");
    let (code, out) = verify(&rewritten, &checkpoints, &public);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("truncated"), "{out}");

    // With a checkpoint in the middle too, the rewrite is named where it
    // shows first.
    let mid = hoistd::checkpoint::Checkpoint::sign(
        &hoistd::keys::signing_key(Some(&key), "HOISTD_TEST_UNSET")
            .unwrap()
            .unwrap(),
        &hoistd::store::AuditHead {
            seq: 5,
            hash: rusqlite::Connection::open(&db)
                .unwrap()
                .query_row("SELECT hash FROM audit WHERE seq = 5", [], |row| row.get(0))
                .unwrap(),
        },
        chrono::Utc::now(),
    );
    hoistd::checkpoint::append(&checkpoints, &mid).unwrap();
    let (code, out) = verify(&rewritten, &checkpoints, &public);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken at entry 5") && out.contains("rewritten"),
        "{out}"
    );
    assert_eq!(verify(&db, &checkpoints, &public).0, 0);
}

#[tokio::test]
async fn checkpoints_are_refused_when_forged_or_signed_by_another_key() {
    let mut broker = TestBroker::start().await;
    history(&broker).await;
    broker.stop().await;
    let dir = broker.dir().to_path_buf();
    let db = broker.db();
    let (key, public) = keygen(&dir);
    let checkpoints = dir.join("checkpoints.jsonl");
    let out = hoistd(&[
        "audit",
        "checkpoint",
        "--db",
        path(&db),
        "--out",
        path(&checkpoints),
        "--checkpoint-key",
        path(&key),
    ]);
    assert!(out.status.success(), "{}", said(&out));

    // Someone lowers the checkpointed sequence number to hide a truncation.
    let text = std::fs::read_to_string(&checkpoints).unwrap();
    let mut line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    line["seq"] = serde_json::json!(line["seq"].as_i64().unwrap() - 1);
    let forged = dir.join("forged.jsonl");
    std::fs::write(&forged, format!("{line}\n")).unwrap();
    let (code, out) = verify(&db, &forged, &public);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("forged.jsonl:1") && out.contains("forged"),
        "{out}"
    );

    // Checked with another key, a real checkpoint does not verify either.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_key, other_public) = keygen(&other);
    let (code, out) = verify(&db, &checkpoints, &other_public);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not by a key given"), "{out}");

    // A key id, or a field name, written to move the terminal's cursor
    // reaches it without its control characters.
    let mut line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    line["key_id"] = serde_json::json!("\u{1b}[2K\raudit log intact");
    let escaping = dir.join("escaping.jsonl");
    std::fs::write(&escaping, format!("{line}\n")).unwrap();
    let (code, out) = verify(&db, &escaping, &public);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("[2K") && !out.contains('\u{1b}') && !out.contains('\r'),
        "{out:?}"
    );
    let mut line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    line["\u{1b}[1Aextra"] = serde_json::json!(1);
    std::fs::write(&escaping, format!("{line}\n")).unwrap();
    let out = hoistd(&[
        "audit",
        "verify",
        "--db",
        path(&db),
        "--checkpoints",
        path(&escaping),
        "--checkpoint-key",
        path(&public),
    ]);
    let told = said(&out);
    assert!(!out.status.success(), "{told}");
    assert!(
        told.contains("[1Aextra") && !told.contains('\u{1b}'),
        "{told:?}"
    );

    // The key changed: the file goes on with lines of the new one, and
    // verifies with both public keys given, each line under its own.
    let out = hoistd(&[
        "audit",
        "checkpoint",
        "--db",
        path(&db),
        "--out",
        path(&checkpoints),
        "--checkpoint-key",
        path(&other_key),
    ]);
    assert!(out.status.success(), "{}", said(&out));
    let (code, out) = verify(&db, &checkpoints, &public);
    assert_eq!(code, 2, "the new key's line: {out}");
    let both = hoistd(&[
        "audit",
        "verify",
        "--db",
        path(&db),
        "--checkpoints",
        path(&checkpoints),
        "--checkpoint-key",
        path(&public),
        "--checkpoint-key",
        path(&other_public),
    ]);
    assert_eq!(both.status.code(), Some(0), "{}", said(&both));
    assert!(
        said(&both).contains("holding all 2 signed checkpoints"),
        "{}",
        said(&both)
    );

    // A write a crash cut short is named and checks nothing; the rest do.
    let mut text = std::fs::read_to_string(&checkpoints).unwrap();
    text.push_str("{\"seq\":3,\"hash\":\"ab");
    std::fs::write(&checkpoints, text).unwrap();
    let (code, out) = verify(&db, &checkpoints, &public);
    assert_eq!(code, 2, "still the new key's line: {out}");
    let both = hoistd(&[
        "audit",
        "verify",
        "--db",
        path(&db),
        "--checkpoints",
        path(&checkpoints),
        "--checkpoint-key",
        &format!("{},{}", path(&public), path(&other_public)),
    ]);
    assert_eq!(both.status.code(), Some(0), "{}", said(&both));
    assert!(
        said(&both).contains("checkpoints.jsonl:3: a checkpoint cut short"),
        "{}",
        said(&both)
    );

    // A key file others can read is refused, and no key text is shown.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = hoistd(&[
        "audit",
        "checkpoint",
        "--db",
        path(&db),
        "--out",
        path(&checkpoints),
        "--checkpoint-key",
        path(&key),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(said(&out).contains("chmod 600"), "{}", said(&out));
    assert!(!said(&out).contains("PRIVATE KEY"), "{}", said(&out));
}

/// `serve` checkpoints at start and at stop, to its file and its log, with
/// a key from the environment, and signs credentials with a key from a
/// file: the database holds neither key.
#[tokio::test]
async fn serve_checkpoints_to_file_and_log_and_keeps_keys_out_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint_key, public) = keygen(dir.path());
    let signing_key = dir.path().join("signing.pem");
    assert!(
        hoistd(&["keygen", "--out", path(&signing_key)])
            .status
            .success()
    );
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let db = dir.path().join("hoistd.db");
    let checkpoints = dir.path().join("checkpoints.jsonl");
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let log = std::fs::File::create(dir.path().join("hoistd.log")).unwrap();
    let mut serving = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["serve", "--listen", &addr.to_string()])
        .args(["--db", path(&db), "--policy", path(&policy)])
        .args(["--checkpoints", path(&checkpoints)])
        // The checkpoint key from the environment, the signing key from a file.
        .env(
            "HOISTD_CHECKPOINT_KEY",
            std::fs::read_to_string(&checkpoint_key).unwrap(),
        )
        .args(["--signing-key", path(&signing_key)])
        .env("HOISTD_LOG", "hoistd=info")
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    eventually(std::time::Duration::from_secs(30), || async {
        http.get(format!("{base}/v1/health")).send().await.is_ok()
    })
    .await;
    let alice = hoistd::testing::Client {
        base: base.clone(),
        token: "t-alice".into(),
        http: http.clone(),
    };
    let filed = alice
        .file(&request("logs", "reading the logs"))
        .await
        .unwrap();
    let grant = filed.grant_id.unwrap();
    let credential = alice.credential(&grant).await.unwrap();
    // A repeat within the window: counted, and audited with its count at
    // the stop, before the last checkpoint.
    alice.credential(&grant).await.unwrap();
    let jwks: hoist_api::Jwks = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signing = hoistd::keys::signing_key(Some(&signing_key), "HOISTD_TEST_UNSET")
        .unwrap()
        .unwrap();
    assert_eq!(
        jwks.keys[0].kid,
        hoistd::keys::key_id(&signing.verifying_key())
    );
    assert!(!credential.token.is_empty());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serving.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serving.wait().unwrap().success());

    let stored_keys: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM signing_keys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        stored_keys, 0,
        "the signing key from the file is not stored"
    );
    let head: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT max(seq) FROM audit", [], |row| row.get(0))
        .unwrap();
    let written = std::fs::read_to_string(&checkpoints).unwrap();
    let last: serde_json::Value = serde_json::from_str(written.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["seq"], head,
        "the checkpoint at stop covers everything"
    );
    let logged = std::fs::read_to_string(dir.path().join("hoistd.log")).unwrap();
    assert!(
        logged.contains("audit checkpoint") && logged.contains(last["signature"].as_str().unwrap()),
        "{logged}"
    );
    assert!(!logged.contains("PRIVATE KEY"), "{logged}");
    let (code, out) = verify(&db, &checkpoints, &public);
    assert_eq!(code, 0, "{out}");
    let kinds: Vec<AuditKind> = {
        let store = hoistd::store::SqliteStore::open(&db).unwrap();
        let store: &dyn Store = &store;
        let tx = store.transaction().unwrap();
        tx.audit(&AuditQuery::default())
            .unwrap()
            .into_iter()
            .map(|event| event.kind)
            .collect()
    };
    assert!(!kinds.is_empty());
}

/// Verifying a copy kept as evidence leaves it byte for byte as it was,
/// its mode too, with no write-ahead log or other file beside it: it is
/// read, not opened as a store.
#[tokio::test]
async fn verify_leaves_an_evidence_copy_byte_for_byte() {
    use std::os::unix::fs::PermissionsExt;
    let mut broker = TestBroker::start().await;
    history(&broker).await;
    broker.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("evidence.db");
    rusqlite::Connection::open(broker.db())
        .unwrap()
        .execute(&format!("VACUUM INTO '{}'", path(&copy)), [])
        .unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let (code, out) = plain_verify(&copy);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit log intact"), "{out}");
    assert!(
        std::fs::read(&copy).unwrap() == before,
        "verify changed the copy"
    );
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "verify changed the copy's mode");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(files, ["evidence.db"], "verify left files beside the copy");
}

/// Verifying reads the database as it is: an older copy (its schema a
/// version behind) kept as evidence is not migrated by the check.
#[tokio::test]
async fn verify_leaves_an_older_database_as_it_is() {
    let mut broker = TestBroker::start().await;
    history(&broker).await;
    broker.stop().await;
    let db = broker.db();
    let version = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    };
    let older = version(&db) - 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", older)
        .unwrap();
    let (code, out) = plain_verify(&db);
    assert_eq!(code, 0, "{out}");
    assert_eq!(version(&db), older, "verify migrated the copy");
}
