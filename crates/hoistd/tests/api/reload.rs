//! Policy reload: refused when bad, revokes what is no longer allowed, and
//! (through the real binary) happens on SIGHUP without dropping connections.

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use hoist_api::{AuditKind, GrantState, RequestState};

use crate::helpers::*;

/// Edits the policy file so that alice is no longer in `eng`, the group
/// every role's eligibility in the test policy names.
fn drop_alice_from_eng(broker: &TestBroker) {
    let text = std::fs::read_to_string(broker.policy_path())
        .unwrap()
        .replace(
            r#"eng = ["alice", "bob", "carol", "dave", "frank"]"#,
            r#"eng = ["bob", "carol", "dave", "frank"]"#,
        );
    std::fs::write(broker.policy_path(), text).unwrap();
}

#[tokio::test]
async fn a_reload_revokes_grants_whose_holder_is_no_longer_eligible() {
    let broker = TestBroker::start().await;
    let (alice, dave) = (broker.as_user("alice"), broker.as_user("dave"));
    let hers = alice.file(&request("logs", "reading")).await.unwrap();
    let his = dave.file(&request("logs", "reading")).await.unwrap();

    drop_alice_from_eng(&broker);
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 1);

    let grant = alice
        .grant(hers.grant_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(grant.state, GrantState::Revoked);
    assert_eq!(grant.revoked_by.as_deref(), Some("hoistd"));
    assert!(grant.revoke_reason.unwrap().contains("no longer eligible"));
    assert_eq!(
        alice.request(&hers.id).await.unwrap().state,
        RequestState::Revoked
    );
    assert_eq!(
        dave.grant(his.grant_id.as_deref().unwrap())
            .await
            .unwrap()
            .state,
        GrantState::Active
    );
    // Authorisation follows the new policy on the very next call.
    let roles: Vec<hoist_api::Role> = alice.get("/v1/roles").await.unwrap();
    assert!(roles.iter().all(|r| r.id != "logs"));

    let log = broker.as_user("erin").audit().await;
    let tail: Vec<AuditKind> = log.iter().rev().take(2).map(|e| e.kind.clone()).collect();
    assert_eq!(tail, [AuditKind::PolicyReloaded, AuditKind::Revoked]);
    // The broker's own entries say so in the hashed data; people's do not.
    for entry in &log {
        assert_eq!(
            entry.is_system(),
            entry.actor == "hoistd",
            "{:?} by {}",
            entry.kind,
            entry.actor
        );
    }
    assert!(log.iter().rev().take(2).all(|e| e.is_system()));
    assert_eq!(
        hoistd::audit::verify(broker.broker().store()).unwrap(),
        hoistd::audit::Verdict::Intact {
            entries: log.len() as u64
        }
    );
}

/// The policy file changed while hoistd was down: at start, before it
/// serves anyone, the grants it no longer allows are revoked.
#[tokio::test]
async fn grants_the_policy_no_longer_allows_are_revoked_at_start() {
    let mut broker = TestBroker::start().await;
    let hers = broker
        .as_user("alice")
        .file(&request("logs", "reading"))
        .await
        .unwrap();
    broker.stop().await;
    drop_alice_from_eng(&broker);
    broker.restart().await;
    let grant = broker
        .as_user("alice")
        .grant(hers.grant_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(grant.state, GrantState::Revoked);
    let reason = grant.revoke_reason.unwrap();
    assert!(
        reason.starts_with("policy at start: alice is no longer eligible"),
        "{reason}"
    );
}

/// A reload whose sweep cannot be made (another writer holds the database
/// past the store's patience) puts the previous policy back: no policy is
/// in force without its revocations, and a second try applies it.
#[tokio::test]
async fn a_reload_that_cannot_revoke_leaves_the_old_policy_in_force() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let hers = alice.file(&request("logs", "reading")).await.unwrap();
    drop_alice_from_eng(&broker);

    let holder = rusqlite::Connection::open(broker.db()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let refused = broker.server().reload(&broker.policy_path()).await;
    assert!(refused.is_err(), "{refused:?}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);

    let roles: Vec<hoist_api::Role> = alice.get("/v1/roles").await.unwrap();
    assert!(roles.iter().any(|r| r.id == "logs"), "the old policy stays");
    let grant_id = hers.grant_id.as_deref().unwrap();
    assert_eq!(
        alice.grant(grant_id).await.unwrap().state,
        GrantState::Active
    );

    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 1);
    assert_eq!(
        alice.grant(grant_id).await.unwrap().state,
        GrantState::Revoked
    );
}

#[tokio::test]
async fn no_user_may_take_the_brokers_own_name() {
    let text = policy_text("") + "\n[users.hoistd]\n";
    let Err(err) = TestBroker::builder().policy(&text).try_start().await else {
        panic!("a user named hoistd was accepted");
    };
    assert!(
        format!("{err:#}").contains("user name `hoistd` is reserved"),
        "{err:#}"
    );
    // Nor on reload: the old policy stays.
    let broker = TestBroker::start().await;
    std::fs::write(broker.policy_path(), &text).unwrap();
    let err = broker
        .server()
        .reload(&broker.policy_path())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("reserved"), "{err:#}");
}

#[tokio::test]
async fn a_bad_policy_on_reload_is_refused_and_the_old_one_stays() {
    let broker = TestBroker::start().await;
    std::fs::write(
        broker.policy_path(),
        "[[roles]]\nid = \"x\"\nmax_duration = \"soon\"\n",
    )
    .unwrap();
    let err = broker
        .server()
        .reload(&broker.policy_path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("policy.toml:3:"), "{err}");
    let roles: Vec<hoist_api::Role> = broker.as_user("alice").get("/v1/roles").await.unwrap();
    assert_eq!(roles.len(), 4);
}

fn hoistd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hoistd"))
}

#[test]
fn a_malformed_policy_is_refused_at_start_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("bad.toml");
    std::fs::write(
        &policy,
        policy_text("").replace("approvals = 2", "approvals = \"two\""),
    )
    .unwrap();
    let out = hoistd()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("x.db"))
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = policy_text("")
        .lines()
        .position(|l| l == "approvals = 2")
        .unwrap()
        + 1;
    assert!(stderr.contains(&format!("bad.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("invalid type"), "{stderr}");
    assert!(
        !dir.path().join("x.db").exists(),
        "nothing is written for a refused start"
    );
}

#[tokio::test]
async fn sighup_reloads_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |_| {});

    let client = Client {
        base: hoistd.url(),
        token: "t-alice".into(),
        http: reqwest::Client::new(),
    };
    let response = client
        .raw(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    assert!(stream.next().await.is_some(), "hello");

    std::fs::write(
        &policy,
        policy_text("").replace("id = \"secret\"", "id = \"vault\""),
    )
    .unwrap();
    hoistd.signal("HUP");
    let reloaded = hoistd.line();
    assert!(reloaded.contains("policy reloaded"), "{reloaded}");
    // Named by its digest, as `/metrics` and `check-config` name it.
    let digest = crate::operations::file_digest(&policy);
    assert!(reloaded.contains(&digest), "{reloaded}");

    let roles: Vec<hoist_api::Role> = client.get("/v1/roles").await.unwrap();
    assert!(roles.iter().any(|r| r.id == "vault"));
    // The stream opened before the reload still delivers.
    client
        .file(&request("vault", "after the reload"))
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("after the reload"));

    hoistd.signal("TERM");
    let exit = hoistd.wait();
    assert!(exit.success(), "{exit}");
}

/// SIGHUP through the real binary: grants of people no longer eligible are
/// revoked, and their credentials introspect as inactive at once.
#[tokio::test]
async fn sighup_revokes_grants_of_people_no_longer_eligible() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |_| {});
    let as_user = |user: &str| Client {
        base: hoistd.url(),
        token: format!("t-{user}"),
        http: reqwest::Client::new(),
    };
    let (alice, dave, frank) = (as_user("alice"), as_user("dave"), as_user("frank"));
    let hers = alice.file(&request("logs", "reading")).await.unwrap();
    let his = dave.file(&request("logs", "reading")).await.unwrap();
    let grant = hers.grant_id.unwrap();
    let credential = alice.credential(&grant).await.unwrap();
    assert!(frank.introspect(&credential.token).await.active);

    std::fs::write(
        &policy,
        policy_text("").replace(
            r#"eng = ["alice", "bob", "carol", "dave", "frank"]"#,
            r#"eng = ["bob", "carol", "dave", "frank"]"#,
        ),
    )
    .unwrap();
    hoistd.signal("HUP");
    let reloaded = hoistd.line();
    assert!(reloaded.contains("policy reloaded"), "{reloaded}");
    let plain = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&reloaded, "");
    assert!(plain.contains("revoked=1"), "{plain}");

    let ended = alice.grant(&grant).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
    assert_eq!(ended.revoked_by.as_deref(), Some("hoistd"));
    assert!(!frank.introspect(&credential.token).await.active);
    assert_eq!(
        dave.grant(his.grant_id.as_deref().unwrap())
            .await
            .unwrap()
            .state,
        GrantState::Active
    );

    hoistd.signal("TERM");
    assert!(hoistd.wait().success());
}

/// A request filed for longer than its role allows after a reload gets no
/// longer a grant than the role allows now.
#[tokio::test]
async fn a_reload_that_shortens_a_role_caps_the_grants_of_waiting_requests() {
    let broker = TestBroker::start().await;
    let mut body = request("db", "vacuum the orders table");
    body.ticket = Some("INC-42".into());
    body.duration_secs = Some(3600);
    let filed = broker.as_user("alice").file(&body).await.unwrap();
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    let shorter = text.replacen(
        "default_duration = \"30m\"\nmax_duration = \"1h\"",
        "default_duration = \"10m\"\nmax_duration = \"10m\"",
        1,
    );
    assert_ne!(text, shorter);
    std::fs::write(broker.policy_path(), shorter).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();

    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let grant = broker
        .as_user("alice")
        .grant(approved.grant_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!((grant.expires_at - grant.starts_at).num_seconds(), 600);
}

/// A grant past its end that the reaper has not recorded yet (a leader
/// change, a reaper between passes) is the reaper's: a reload that drops
/// its holder does not log it as revoked, and the reaper logs it as
/// expired, at its end.
#[tokio::test]
async fn a_reload_leaves_a_grant_past_its_end_to_the_reaper() {
    let mut broker = TestBroker::start().await;
    broker.hold_reaper(true);
    let alice = broker.as_user("alice");
    let hers = alice
        .file(&hoist_api::CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading for a second")
        })
        .await
        .unwrap();
    let grant_id = hers.grant_id.unwrap();
    let ends = alice.grant(&grant_id).await.unwrap().expires_at;
    sleep_past(ends + chrono::TimeDelta::milliseconds(150)).await;

    drop_alice_from_eng(&broker);
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 0, "a grant past its end was revoked");

    broker.hold_reaper(false);
    let erin = broker.as_user("erin");
    eventually(Duration::from_secs(10), || async {
        erin.audit()
            .await
            .iter()
            .any(|e| e.kind == AuditKind::Expired && e.grant_id.as_deref() == Some(&grant_id))
    })
    .await;
    let log = erin.audit().await;
    assert!(
        !log.iter()
            .any(|e| e.kind == AuditKind::Revoked && e.grant_id.as_deref() == Some(&grant_id)),
        "{log:?}"
    );
    let ended = alice.grant(&grant_id).await.unwrap();
    assert_eq!(ended.state, GrantState::Expired);
}

/// A provider taken out of the policy vouches for no one from that reload
/// on: the grants of the people who signed in through it are revoked, and
/// they are no longer named among a role's approvers.
#[tokio::test]
async fn a_reload_that_drops_a_provider_revokes_the_grants_of_its_people() {
    let issuer = crate::issuer::Issuer::start().await;
    let trusted = policy_text("") + &issuer.policy("");
    let broker = TestBroker::builder().policy(&trusted).start().await;
    let groups = serde_json::json!({ "groups": ["eng", "approvers"] });
    let zed = broker.with_token(&issuer.token("k1", "zed", 300, groups));
    let filed = zed.file(&request("logs", "reading")).await.unwrap();
    let alice = broker.as_user("alice");
    assert_eq!(
        alice.preview(&db_request()).await.unwrap().approvers,
        ["bob", "dave", "zed"]
    );

    std::fs::write(broker.policy_path(), policy_text("")).unwrap();
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 1);
    let revocation = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .find(|e| e.kind == AuditKind::Revoked)
        .expect("the revocation is audited");
    assert_eq!(revocation.grant_id, filed.grant_id);
    let reason = revocation.reason.unwrap_or_default();
    assert!(reason.contains("zed is no longer eligible"), "{reason}");
    assert_eq!(
        alice.preview(&db_request()).await.unwrap().approvers,
        ["bob", "dave"]
    );
}
