//! Expiry holds on every read, whether or not anything has recorded it yet:
//! with the reaper held back, reads past an end settle by themselves, for
//! grants, lapsing requests and scheduled starts, including those that fell
//! due while the broker was down.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hoist_api::{AuditKind, CreateRequest, ErrorCode, GrantState, RequestState};
use reqwest::StatusCode;

use crate::helpers::*;

fn kinds(log: &[hoist_api::AuditEvent]) -> Vec<AuditKind> {
    log.iter().map(|e| e.kind.clone()).collect()
}

#[tokio::test]
async fn a_grant_past_its_end_reads_as_expired_before_anything_records_it() {
    let broker = TestBroker::builder().reaper_held().start().await;
    let (alice, frank) = (broker.as_user("alice"), broker.as_user("frank"));
    let filed = alice
        .file(&CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading")
        })
        .await
        .unwrap();
    let id = filed.grant_id.unwrap();
    let credential = alice.credential(&id).await.unwrap();
    let grant = alice.grant(&id).await.unwrap();
    assert_eq!(grant.state, GrantState::Active);
    sleep_past(grant.expires_at).await;

    let read = alice.grant(&id).await.unwrap();
    assert_eq!(read.state, GrantState::Expired);
    assert_eq!(read.ended_at, Some(grant.expires_at));
    assert!(alice.grants().await.is_empty(), "not listed as active");
    assert_eq!(
        alice.request(&filed.id).await.unwrap().state,
        RequestState::Expired
    );
    assert!(!frank.introspect(&credential.token).await.active);
    refused(
        alice.credential(&id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    refused(
        alice.extend(&id, 60).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    // Nothing recorded the end: the reads did it themselves.
    let log = broker.as_user("erin").audit().await;
    assert!(!kinds(&log).contains(&AuditKind::Expired));
}

/// A pending extension past its lapse, not yet recorded, whose grant is
/// revoked: recorded as the timeout every read showed, not as cancelled.
#[tokio::test]
async fn a_lapsed_extension_of_a_revoked_grant_stays_timed_out() {
    let broker = TestBroker::builder()
        .settings(r#"pending_ttl = "1s""#)
        .reaper_held()
        .start()
        .await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();
    let grant_id = bob.approve(&filed.id).await.unwrap().grant_id.unwrap();
    let extension = alice.extend(&grant_id, 600).await.unwrap();
    assert_eq!(extension.state, RequestState::Pending);
    sleep_past(extension.lapses_at.unwrap()).await;
    assert_eq!(
        alice.request(&extension.id).await.unwrap().state,
        RequestState::TimedOut
    );

    alice.revoke(&grant_id, "done early").await.unwrap();
    let read = alice.request(&extension.id).await.unwrap();
    assert_eq!(read.state, RequestState::TimedOut);
    assert!(read.reason.unwrap().starts_with("no decision before"));
    let log = broker.as_user("erin").audit().await;
    let about: Vec<_> = log
        .iter()
        .filter(|e| e.request_id.as_deref() == Some(extension.id.as_str()))
        .map(|e| e.kind.clone())
        .collect();
    assert!(about.contains(&AuditKind::TimedOut), "{about:?}");
    assert!(!about.contains(&AuditKind::Cancelled), "{about:?}");
}

#[tokio::test]
async fn a_request_past_its_lapse_reads_as_timed_out_before_anything_records_it() {
    let broker = TestBroker::builder()
        .settings(r#"pending_ttl = "1s""#)
        .reaper_held()
        .start()
        .await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();
    bob.post::<_, hoist_api::AccessRequest>(
        &format!("/v1/requests/{}/claim", filed.id),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    sleep_past(filed.lapses_at.unwrap()).await;

    let read = alice.request(&filed.id).await.unwrap();
    assert_eq!(read.state, RequestState::TimedOut);
    assert_eq!(read.claim, None);
    assert!(bob.queue().await.is_empty());
    assert_eq!(
        alice.mine().await[0].state,
        RequestState::TimedOut,
        "listed as timed out too"
    );
    // And filtered by that state, not the one stored.
    let listed = |state: &str| {
        let alice = &alice;
        let path = format!("/v1/requests?state={state}");
        async move {
            alice
                .call::<Vec<hoist_api::AccessRequest>>(alice.raw(reqwest::Method::GET, &path))
                .await
                .unwrap()
        }
    };
    assert!(listed("pending").await.is_empty(), "not pending any more");
    let timed_out = listed("timed_out").await;
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].id, filed.id);
    refused(
        bob.approve(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    refused(
        alice.cancel(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(alice.grants().await.is_empty());
    let log = broker.as_user("erin").audit().await;
    assert!(!kinds(&log).contains(&AuditKind::TimedOut));
}

#[tokio::test]
async fn a_scheduled_start_never_grants_outside_its_window() {
    let mut broker = TestBroker::builder().reaper_held().start().await;
    let alice = broker.as_user("alice");
    let filed = alice
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            duration_secs: Some(1),
            ..request("logs", "nightly maintenance")
        })
        .await
        .unwrap();
    assert_eq!(filed.state, RequestState::Approved);
    let window_end = filed.starts_at.unwrap() + TimeDelta::seconds(1);
    sleep_past(window_end).await;

    // Its whole window passed unstarted: it reads as over, with no grant.
    assert_eq!(
        alice.request(&filed.id).await.unwrap().state,
        RequestState::Expired
    );
    assert!(alice.grants().await.is_empty());

    // Once the reaper runs, it records that, and never starts the grant late.
    broker.hold_reaper(false);
    eventually(Duration::from_secs(10), || async {
        kinds(&broker.as_user("erin").audit().await).contains(&AuditKind::Expired)
    })
    .await;
    let read = alice.request(&filed.id).await.unwrap();
    assert_eq!(read.state, RequestState::Expired);
    assert_eq!(read.grant_id, None);
    assert!(read.reason.unwrap().contains("scheduled window ended"));
    let all: Vec<hoist_api::Grant> = alice.get("/v1/grants?all=true").await.unwrap();
    assert!(all.is_empty(), "no grant at all: {all:?}");
}

/// A scheduled request nobody decided before its window ended could never
/// start: it times out then, leaving the queue and the role free for a new
/// filing, not after the whole pending time.
#[tokio::test]
async fn a_scheduled_request_undecided_past_its_window_times_out() {
    let broker = TestBroker::with_settings(r#"pending_ttl = "24h""#).await;
    let alice = broker.as_user("alice");
    let filed = alice
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            duration_secs: Some(1),
            ..db_request()
        })
        .await
        .unwrap();
    assert_eq!(filed.state, RequestState::Pending);
    let window_end = filed.starts_at.unwrap() + TimeDelta::seconds(1);
    assert_eq!(filed.lapses_at, Some(window_end));
    sleep_past(window_end).await;
    assert_eq!(
        alice.request(&filed.id).await.unwrap().state,
        RequestState::TimedOut
    );
    assert!(
        broker
            .as_user("bob")
            .get::<Vec<hoist_api::AccessRequest>>("/v1/reviews")
            .await
            .unwrap()
            .is_empty()
    );
    let again = alice.file(&db_request()).await.unwrap();
    assert_eq!(again.state, RequestState::Pending);
}

#[tokio::test]
async fn what_fell_due_while_the_broker_was_down_reads_as_over_after_a_restart() {
    let mut broker = TestBroker::with_settings(r#"pending_ttl = "1s""#).await;
    let alice = broker.as_user("alice");
    let granted = alice
        .file(&CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading")
        })
        .await
        .unwrap();
    let pending = alice.file(&db_request()).await.unwrap();
    // One whose window passes while the broker is down, and one that only
    // falls due then: it must still end when its window does.
    let missed = alice
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            duration_secs: Some(1),
            ..request("secret", "maintenance window")
        })
        .await
        .unwrap();
    let late = broker
        .as_user("frank")
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            duration_secs: Some(60),
            ..request("logs", "a later window")
        })
        .await
        .unwrap();
    broker.stop().await;
    sleep_past(missed.starts_at.unwrap() + TimeDelta::seconds(1)).await;
    sleep_past(pending.lapses_at.unwrap()).await;

    broker.hold_reaper(true);
    broker.restart().await;
    let grant = alice
        .grant(granted.grant_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(grant.state, GrantState::Expired);
    assert_eq!(
        alice.request(&pending.id).await.unwrap().state,
        RequestState::TimedOut
    );
    assert_eq!(
        alice.request(&missed.id).await.unwrap().state,
        RequestState::Expired
    );
    assert!(alice.grants().await.is_empty());
    let frank = broker.as_user("frank");
    assert_eq!(
        frank.request(&late.id).await.unwrap().state,
        RequestState::Approved,
        "due, but nothing started it yet"
    );
    assert!(frank.grants().await.is_empty());
    let log = broker.as_user("erin").audit().await;
    assert!(!kinds(&log).contains(&AuditKind::Expired));
    assert!(!kinds(&log).contains(&AuditKind::TimedOut));

    broker.hold_reaper(false);
    eventually(Duration::from_secs(10), || async {
        !frank.grants().await.is_empty()
    })
    .await;
    let started = &frank.grants().await[0];
    assert_eq!(
        started.expires_at,
        late.starts_at.unwrap() + TimeDelta::seconds(60),
        "a late start still ends with its window"
    );
    assert!(started.starts_at > late.starts_at.unwrap() + TimeDelta::milliseconds(500));
    let log = broker.as_user("erin").audit().await;
    let expired = log.iter().filter(|e| e.kind == AuditKind::Expired).count();
    assert_eq!(expired, 2, "the grant, and the window that never started");
    assert!(kinds(&log).contains(&AuditKind::TimedOut));
    assert!(
        alice
            .get::<Vec<hoist_api::Grant>>("/v1/grants")
            .await
            .unwrap()
            .is_empty()
    );
}

/// A mass expiry is recorded in turns: one reaper transaction ends a
/// bounded number of grants and says the rest are already due, so the
/// reaper runs again at once and the API's calls are served between.
#[test]
fn a_mass_expiry_is_recorded_in_turns() {
    use std::sync::Arc;

    use hoistd::store::{SqliteStore, Store};
    use hoistd::testing::{TEST_USERS, policy_text, request};
    use hoistd::{Broker, Policy};

    let roles: String = (0..50)
        .map(|n| {
            format!(
                "[[roles]]\nid = \"bulk{n}\"\nname = \"Bulk {n}\"\nscope = \"x://{n}\"\n\
                 eligible_groups = [\"eng\"]\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n"
            )
        })
        .collect();
    let text = format!("{}{roles}", policy_text("filing_rate = \"1000000/s\""));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let broker = Broker::new(store, Policy::parse("test policy", &text).unwrap()).unwrap();
    let eng = ["alice", "bob", "carol", "dave", "frank"];
    assert!(eng.iter().all(|u| TEST_USERS.contains(u)));
    for n in 0..50 {
        for user in eng {
            let (filed, _) = broker
                .create_request(
                    user,
                    &CreateRequest {
                        duration_secs: Some(1),
                        ..request(&format!("bulk{n}"), "reading the logs")
                    },
                    None,
                )
                .unwrap();
            assert_eq!(filed.state, RequestState::Active);
        }
    }
    std::thread::sleep(Duration::from_millis(1100));
    let expired = || {
        let audit = broker
            .audit("erin", hoistd::store::AuditQuery::default())
            .unwrap();
        audit
            .iter()
            .filter(|e| e.kind == AuditKind::Expired)
            .count()
    };
    let next = broker.reap().unwrap().expect("the rest are due");
    let first = expired();
    assert!(first > 0 && first < 250, "one turn ended {first} of 250");
    assert!(next <= Utc::now(), "the rest were left for later: {next}");
    while broker
        .reap()
        .unwrap()
        .is_some_and(|next| next <= Utc::now())
    {}
    assert_eq!(expired(), 250);
}

/// After an outage, ended grants are recorded before a backlog of lapsed
/// requests: a turn takes the grants first (each one's access is removed
/// once recorded), not 200 requests that change no access.
#[test]
fn ended_grants_go_before_a_backlog_of_lapsed_requests() {
    use std::sync::Arc;

    use hoistd::store::{SqliteStore, Store};
    use hoistd::testing::{policy_text, request};
    use hoistd::{Broker, Policy};

    let roles: String = (0..50)
        .map(|n| {
            format!(
                "[[roles]]\nid = \"asked{n}\"\nname = \"Asked {n}\"\nscope = \"x://{n}\"\n\
                 eligible_groups = [\"eng\"]\napprovals = 1\napprover_groups = [\"approvers\"]\n\
                 default_duration = \"10m\"\nmax_duration = \"1h\"\n"
            )
        })
        .collect();
    let text = format!(
        "{}{roles}",
        policy_text("filing_rate = \"1000000/s\"\npending_ttl = \"1s\"")
    );
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let broker = Broker::new(store, Policy::parse("test policy", &text).unwrap()).unwrap();
    for n in 0..50 {
        for user in ["alice", "bob", "carol", "dave", "frank"] {
            let (filed, _) = broker
                .create_request(user, &request(&format!("asked{n}"), "waiting"), None)
                .unwrap();
            assert_eq!(filed.state, RequestState::Pending);
        }
    }
    let (granted, _) = broker
        .create_request(
            "alice",
            &CreateRequest {
                duration_secs: Some(1),
                ..request("logs", "reading the logs")
            },
            None,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    broker.reap().unwrap();
    let grant = broker
        .grant("alice", granted.grant_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(grant.state, GrantState::Expired);
    let audit = broker
        .audit("erin", hoistd::store::AuditQuery::default())
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.kind == AuditKind::Expired && e.grant_id == granted.grant_id),
        "recorded in the first turn"
    );
}

/// A row the reaper cannot read (here a request's, as an edit outside
/// hoistd leaves it) keeps nothing else from being recorded: the grants
/// that end meanwhile are recorded as expired. Once the row
/// reads again, it is recorded too.
#[tokio::test]
async fn a_row_the_reaper_cannot_read_holds_up_no_other_expiry() {
    let mut broker = TestBroker::builder()
        .settings(r#"pending_ttl = "1s""#)
        .reaper_held()
        .start()
        .await;
    let alice = broker.as_user("alice");
    let pending = alice.file(&db_request()).await.unwrap();
    let granted = alice
        .file(&CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading")
        })
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    let unreadable = |value: &dyn rusqlite::ToSql| {
        db.execute(
            "UPDATE requests SET updated_at = ?1 WHERE id = ?2",
            rusqlite::params![value, pending.id],
        )
        .unwrap();
    };
    let updated_at = pending.updated_at.timestamp_millis();
    unreadable(&"not a time");
    sleep_past(alice.grant(&granted).await.unwrap().expires_at).await;
    sleep_past(pending.lapses_at.unwrap()).await;

    broker.hold_reaper(false);
    let recorded = |kind: AuditKind, id: String| {
        let erin = broker.as_user("erin");
        async move {
            erin.audit().await.iter().any(|e| {
                e.kind == kind && [&e.grant_id, &e.request_id].contains(&&Some(id.clone()))
            })
        }
    };
    eventually(Duration::from_secs(10), || {
        recorded(AuditKind::Expired, granted.clone())
    })
    .await;
    // A grant that ends later is recorded as it ends, the row still
    // unreadable.
    let later = alice
        .file(&CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading again")
        })
        .await
        .unwrap()
        .grant_id
        .unwrap();
    eventually(Duration::from_secs(10), || {
        recorded(AuditKind::Expired, later.clone())
    })
    .await;
    assert!(!recorded(AuditKind::TimedOut, pending.id.clone()).await);

    unreadable(&updated_at);
    eventually(Duration::from_secs(10), || {
        recorded(AuditKind::TimedOut, pending.id.clone())
    })
    .await;
}

/// More rows than the reaper records in one look (here copies of a grant,
/// unreadable, as an edit outside hoistd leaves them) falling due first
/// keep no grant that ends after them from being recorded as expired:
/// what failed at one look is tried again after the rest at the next.
#[tokio::test]
async fn a_batch_of_rows_the_reaper_cannot_read_holds_up_no_expiry_after_them() {
    let mut broker = TestBroker::builder().reaper_held().start().await;
    let alice = broker.as_user("alice");
    let first = alice
        .file(&CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading")
        })
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    db.execute(
        "CREATE TEMP TABLE copy AS SELECT * FROM grants WHERE id = ?1",
        [&first],
    )
    .unwrap();
    // More than a look's batch (200), and not a multiple of it.
    for n in 0..250 {
        db.execute(
            "UPDATE temp.copy SET id = ?1, ended_at = 'not a time'",
            [format!("gr_unreadable_{n}")],
        )
        .unwrap();
        db.execute("INSERT INTO grants SELECT * FROM temp.copy", [])
            .unwrap();
    }
    // Another holder's: filing reads alice's grants of `logs`.
    let bob = broker.as_user("bob");
    let later = bob
        .file(&CreateRequest {
            duration_secs: Some(1),
            ..request("logs", "reading later")
        })
        .await
        .unwrap()
        .grant_id
        .unwrap();
    sleep_past(bob.grant(&later).await.unwrap().expires_at).await;

    broker.hold_reaper(false);
    let erin = broker.as_user("erin");
    let expired = |id: String| {
        let erin = &erin;
        async move {
            erin.audit()
                .await
                .iter()
                .any(|e| e.kind == AuditKind::Expired && e.grant_id.as_deref() == Some(&*id))
        }
    };
    eventually(Duration::from_secs(10), || expired(later.clone())).await;
    eventually(Duration::from_secs(10), || expired(first.clone())).await;
}
