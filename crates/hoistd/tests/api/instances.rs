//! Several hoistd instances on one PostgreSQL database, each the real
//! binary on loopback: leadership passing on when the leader is killed,
//! concurrent approvals across instances counted exactly, the audit chain
//! intact afterwards, and the database restarted under load. Then, in
//! process, what a leader that lost its lease without knowing can write.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_api::{
    AccessRequest, AccessState, AuditKind, CreateRequest, Decision, ErrorCode, GrantState,
    RequestState,
};
use hoist_api::{LiveEvent, Me};
use hoistd::store::{Lease, Migrations, PostgresStore, Store, StoreError};
use hoistd::testing::{Cluster, Postgres, eventually, policy_text, request};
use hoistd::{Broker, Policy};
use sha2::Digest;

use crate::events::EventStream;

const HOISTD: &str = env!("CARGO_BIN_EXE_hoistd");

async fn cluster(count: usize) -> Cluster {
    let cluster = Cluster::start(HOISTD.as_ref(), count, "").await;
    eventually(Duration::from_secs(20), || async {
        cluster.leader().is_some()
    })
    .await;
    cluster
}

fn verify_audit(cluster: &Cluster) {
    let verified = cluster.hoistd(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && out.starts_with("audit log intact"),
        "{out}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// With the database down, `/metrics` still answers, with what needs no
/// database (latencies, streams, the pool) and `hoistd_store_counted` 0,
/// rather than fail the scrape that an outage needs most.
#[tokio::test]
async fn metrics_answer_while_the_database_is_down() {
    let cluster = cluster(1).await;
    cluster.pg.stop();
    let response = reqwest::get(format!("{}/metrics", cluster.url(0)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("\nhoistd_store_counted 0\n"), "{text}");
    assert!(
        text.contains("\nhoistd_store_connections_max 16\n"),
        "{text}"
    );
    // As last read, before the server stopped: its clock is this
    // machine's, so no offset worth the name.
    let offset = crate::operations::sample(&text, "hoistd_clock_offset_seconds");
    assert!(offset.abs() < 0.25, "{offset}");
}

/// Access filed and approved on an instance that does not lead is set up
/// by the leader's outbox worker as soon as it commits: its notice says it
/// queued a target effect, and the leader looks at once. Left to itself,
/// the worker would look only after its idle sleep (5 s), so each of two
/// grants live well within that says the leader was woken.
#[tokio::test]
async fn access_approved_on_another_instance_is_set_up_by_the_leader_at_once() {
    let receiver = crate::targets_webhook::example_receiver();
    let dir = tempfile::tempdir().unwrap();
    let policy = crate::targets_webhook::policy(dir.path(), &receiver.url);
    let cluster = Cluster::start_with_policy(HOISTD.as_ref(), 2, &policy).await;
    eventually(Duration::from_secs(20), || async {
        cluster.leader().is_some()
    })
    .await;
    let other = (cluster.leader().unwrap() + 1) % cluster.len();
    for user in ["alice", "carol"] {
        let filed = cluster
            .as_user(other, user)
            .file(&request("k8s-admin", "drain np-3 after the CVE patch"))
            .await
            .unwrap();
        let approved = cluster
            .as_user(other, "bob")
            .approve(&filed.id)
            .await
            .unwrap();
        let grant = approved.grant_id.unwrap();
        let committed = std::time::Instant::now();
        eventually(Duration::from_secs(30), || async {
            let held = cluster.as_user(other, user).grant(&grant).await.unwrap();
            held.access.is_some_and(|a| a.state == AccessState::Live)
        })
        .await;
        assert!(
            committed.elapsed() < Duration::from_millis(2500),
            "{user}'s access took {:?}: the leader's outbox worker was not woken",
            committed.elapsed()
        );
    }
}

/// Killed without a chance to give up its lease, the leader is replaced
/// once the lease lapses, and grants that ended meanwhile are recorded as
/// expired by the new leader's reaper within a bound.
#[tokio::test]
async fn killing_the_leader_hands_the_reaper_to_another_instance() {
    let mut cluster = cluster(3).await;
    let leader = cluster.leader().unwrap();
    let epoch = cluster.epoch();
    let other = (leader + 1) % cluster.len();
    let mut grants = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let filed = cluster
            .as_user(other, user)
            .file(&CreateRequest {
                duration_secs: Some(3),
                ..request("logs", "reading the logs")
            })
            .await
            .unwrap();
        grants.push(filed.grant_id.unwrap());
    }
    cluster.kill(leader);

    let auditor = cluster.as_user(other, "erin");
    // The lease lapses after 5 s, and a new leader's reaper runs at once:
    // 20 s is a bound with room for a slow machine.
    eventually(Duration::from_secs(20), || async {
        let log = auditor.audit().await;
        grants.iter().all(|grant| {
            log.iter().any(|event| {
                event.kind == AuditKind::Expired && event.grant_id.as_deref() == Some(grant)
            })
        })
    })
    .await;
    let now_leading = cluster.leader().expect("someone leads");
    assert_ne!(now_leading, leader);
    assert!(cluster.epoch() > epoch, "the epoch grows with a new holder");
    // Each expiry recorded once, though every instance could have.
    let log = auditor.audit().await;
    for grant in &grants {
        let expiries = log
            .iter()
            .filter(|e| e.kind == AuditKind::Expired && e.grant_id.as_deref() == Some(grant))
            .count();
        assert_eq!(expiries, 1, "{grant}");
    }
    verify_audit(&cluster);
}

/// Twenty approvals of one 2-of-3 request at once, from its three
/// approvers (some twice or more) across three instances: exactly two
/// count, one grant is made, and the audit chain does not fork.
#[tokio::test]
async fn twenty_concurrent_approvals_across_instances_count_exactly_twice() {
    let cluster = cluster(3).await;
    let filed = cluster
        .as_user(0, "frank")
        .file(&request("k8s", "deploy the hotfix"))
        .await
        .unwrap();
    assert_eq!(filed.state, RequestState::Pending);
    assert_eq!(filed.approvals_required, 2);
    let approvers = ["bob", "dave", "alice"];
    let answers = futures::future::join_all((0..20).map(|i| {
        let client = cluster.as_user(i % 3, approvers[(i / 3) % 3]);
        let id = filed.id.clone();
        async move { client.review(&id, Decision::Approve, None).await }
    }))
    .await;
    let accepted = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(accepted, 2, "{answers:?}");
    for refused in answers.iter().filter_map(|answer| answer.as_ref().err()) {
        assert_eq!(refused.0, reqwest::StatusCode::CONFLICT, "{refused:?}");
    }

    let read = cluster
        .as_user(2, "frank")
        .request(&filed.id)
        .await
        .unwrap();
    assert_eq!(read.state, RequestState::Active);
    let reviewers: HashSet<_> = read.reviews.iter().map(|r| r.reviewer.as_str()).collect();
    assert_eq!((read.reviews.len(), reviewers.len()), (2, 2));
    assert_eq!(cluster.as_user(1, "frank").grants().await.len(), 1);
    let log = cluster.as_user(1, "erin").audit().await;
    let about = |kind| {
        log.iter()
            .filter(|e| e.kind == kind && e.request_id.as_deref() == Some(&*filed.id))
            .count()
    };
    assert_eq!(about(AuditKind::Reviewed), 2);
    assert_eq!(about(AuditKind::Approved), 1);
    assert_eq!(about(AuditKind::Activated), 1);
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>());
    verify_audit(&cluster);
}

/// `pg_ctl restart -m fast` while five people file and cancel requests
/// across three instances: calls fail while the server is down, with a 503
/// `unavailable` (never an internal error), the instances recover on their
/// own, and every request answered as filed (and every cancellation
/// answered) is there afterwards.
#[tokio::test]
async fn restarting_the_database_under_load_loses_no_committed_request() {
    let cluster = Arc::new(cluster(3).await);
    let filed = Arc::new(Mutex::new(Vec::<String>::new()));
    let cancelled = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let after_restart = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(Vec::<(reqwest::StatusCode, ErrorCode)>::new()));
    let workers: Vec<_> = ["alice", "bob", "carol", "dave", "frank"]
        .into_iter()
        .enumerate()
        .map(|(n, user)| {
            let (cluster, filed, cancelled) = (
                Arc::clone(&cluster),
                Arc::clone(&filed),
                Arc::clone(&cancelled),
            );
            let (after_restart, restarted) = (Arc::clone(&after_restart), Arc::clone(&restarted));
            let failed = Arc::clone(&failed);
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut open: Option<String> = None;
                let mut turn = n;
                while !*stopped.borrow() {
                    turn += 1;
                    let instance = turn % cluster.len();
                    let client = cluster.as_user(instance, user);
                    let ok = match &open {
                        Some(id) => match client.cancel(id).await {
                            Ok(_) => {
                                cancelled.lock().unwrap().push(id.clone());
                                open = None;
                                true
                            }
                            Err((status, error)) => {
                                failed.lock().unwrap().push((status, error.code));
                                false
                            }
                        },
                        None => match client.file(&request("k8s", "load while restarting")).await {
                            Ok(request) => {
                                filed.lock().unwrap().push(request.id.clone());
                                open = Some(request.id);
                                true
                            }
                            Err((status, error)) => {
                                failed.lock().unwrap().push((status, error.code));
                                false
                            }
                        },
                    };
                    if ok && restarted.load(std::sync::atomic::Ordering::SeqCst) {
                        after_restart.lock().unwrap().insert(instance);
                    }
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();

    eventually(Duration::from_secs(20), || async {
        filed.lock().unwrap().len() >= 20
    })
    .await;
    let restarting = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || restarting.pg.restart_fast().unwrap())
        .await
        .unwrap();
    restarted.store(true, std::sync::atomic::Ordering::SeqCst);
    // Every instance answers again without being restarted itself.
    eventually(Duration::from_secs(30), || async {
        after_restart.lock().unwrap().len() == cluster.len()
    })
    .await;
    let _ = stop.send(true);
    for worker in workers {
        worker.await.unwrap();
    }

    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.iter().any(|(status, _)| status.is_server_error()),
        "calls failed while the database was down: {failed:?}"
    );
    for (status, code) in &failed {
        if status.is_server_error() {
            assert_eq!(
                (*status, *code),
                (
                    reqwest::StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable
                )
            );
        }
    }
    let reader = cluster.as_user(0, "erin");
    let filed = filed.lock().unwrap().clone();
    let cancelled: HashSet<String> = cancelled.lock().unwrap().iter().cloned().collect();
    assert!(filed.len() > 20);
    for id in &filed {
        let read = reader
            .request(id)
            .await
            .unwrap_or_else(|err| panic!("{id}: {err:?}"));
        if cancelled.contains(id) {
            assert_eq!(read.state, RequestState::Cancelled, "{id}");
        }
    }
    verify_audit(&cluster);
}

/// The next event on `stream` that `wanted` accepts, within `limit`
/// (other events pass by).
async fn event_where(
    cluster: &Cluster,
    stream: &mut EventStream,
    limit: Duration,
    wanted: impl Fn(&LiveEvent) -> bool,
) -> LiveEvent {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.within(left).await {
            Some(event) if wanted(&event) => return event,
            Some(_) => continue,
            None => panic!(
                "no such event within {limit:?}; the stream's instance logged:\n{}",
                (0..3)
                    .map(|i| cluster.log(i))
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            ),
        }
    }
}

/// Reviews made on one instance reach the requester's stream on another,
/// each as it is committed; when that instance's listener loses its
/// connection, its streams are told to resync, and events flow again.
#[tokio::test]
async fn an_approval_on_one_instance_reaches_a_stream_on_another() {
    let cluster = cluster(3).await;
    let frank = cluster.as_user(2, "frank");
    let mut events = EventStream::open(&frank).await;
    assert!(matches!(events.next().await, Some(LiveEvent::Hello { .. })));
    let filed = cluster
        .as_user(1, "frank")
        .file(&request("k8s", "deploy the hotfix"))
        .await
        .unwrap();
    let limit = Duration::from_secs(10);
    event_where(
        &cluster,
        &mut events,
        limit,
        |e| matches!(e, LiveEvent::Request { request } if request.id == filed.id),
    )
    .await;
    cluster
        .as_user(0, "bob")
        .review(&filed.id, Decision::Approve, None)
        .await
        .unwrap();
    event_where(&cluster, &mut events, limit, |e| {
        matches!(e, LiveEvent::Request { request }
            if request.id == filed.id && request.reviews.len() == 1)
    })
    .await;

    // Cut every listening connection: instance 2's listener reconnects and
    // its streams resync, since what was sent meanwhile is lost.
    let cut = cluster.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN hoistd_changes%'",
    );
    assert_eq!(cut.trim(), "3", "one listener per instance");
    event_where(&cluster, &mut events, limit, |e| {
        matches!(e, LiveEvent::Resync { .. })
    })
    .await;
    // Listening again (the resync is sent once it is), the next review
    // arrives too.
    cluster
        .as_user(1, "dave")
        .review(&filed.id, Decision::Approve, None)
        .await
        .unwrap();
    event_where(&cluster, &mut events, limit, |e| {
        matches!(e, LiveEvent::Request { request }
            if request.id == filed.id && request.state == RequestState::Active)
    })
    .await;
}

/// Grants filed on another instance, with no event stream open anywhere,
/// are expired by the leader when they end, not at its next idle look
/// (seconds apart): each commit tells the leader when what it changed
/// falls due, and the leader's reaper wakes for it without reading the
/// rows. Filed a little apart, no one idle look could be on time for all.
#[tokio::test]
async fn the_leader_expires_grants_filed_elsewhere_on_time_without_streams() {
    let cluster = cluster(2).await;
    let leader = cluster.leader().unwrap();
    let other = (leader + 1) % cluster.len();
    let mut grants = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let client = cluster.as_user(other, user);
        let filed = client
            .file(&CreateRequest {
                duration_secs: Some(1),
                ..request("logs", "reading the logs")
            })
            .await
            .unwrap();
        let grant = client.grant(&filed.grant_id.unwrap()).await.unwrap();
        grants.push(grant);
        tokio::time::sleep(Duration::from_millis(1700)).await;
    }
    let auditor = cluster.as_user(other, "erin");
    eventually(Duration::from_secs(20), || async {
        let log = auditor.audit().await;
        grants.iter().all(|grant| {
            log.iter()
                .any(|e| e.kind == AuditKind::Expired && e.grant_id.as_ref() == Some(&grant.id))
        })
    })
    .await;
    let log = auditor.audit().await;
    for grant in &grants {
        let expired = log
            .iter()
            .find(|e| e.kind == AuditKind::Expired && e.grant_id.as_ref() == Some(&grant.id))
            .unwrap();
        let late = expired.at - grant.expires_at;
        assert!(
            late < chrono::TimeDelta::seconds(1),
            "{} expired {late} after its end",
            grant.id
        );
    }
}

/// An extension asked for before a grant's end that waits for the writers'
/// lock past it is refused, and the grant stays ended: the extension's
/// moment was read before its first statement waited, and its commit
/// checks under the lock that the grant's end has not come. A revoke that
/// waits the same way goes through.
#[tokio::test]
async fn an_extension_that_waits_past_the_grants_end_is_refused() {
    let cluster = cluster(1).await;
    let alice = cluster.as_user(0, "alice");
    let filed = alice
        .file(&CreateRequest {
            duration_secs: Some(2),
            ..request("logs", "reading the logs")
        })
        .await
        .unwrap();
    let grant = alice.grant(&filed.grant_id.unwrap()).await.unwrap();
    // Asked for first, the extension has the lock before the reaper.
    let holder = hold_writers_lock(&cluster.db, 4);
    let extended = alice.extend(&grant.id, 600).await;
    assert!(
        chrono::Utc::now() > grant.expires_at,
        "the lock was let go early"
    );
    holder.join().unwrap();
    let (status, refusal) = extended.expect_err("an extension past the grant's end went through");
    assert_eq!(
        (status.as_u16(), refusal.code),
        (409, ErrorCode::InvalidState),
        "{refusal:?}"
    );
    assert!(refusal.message.contains("reached its end"), "{refusal:?}");
    let after = alice.grant(&grant.id).await.unwrap();
    assert_eq!(
        (after.state, after.expires_at),
        (GrantState::Expired, grant.expires_at)
    );

    // A revoke that waits past the end relies on nothing: it answers with
    // the grant ended, as a revoke of an ended grant does, never refused.
    let filed = alice
        .file(&CreateRequest {
            duration_secs: Some(2),
            ..request("logs", "reading the logs again")
        })
        .await
        .unwrap();
    let grant = alice.grant(&filed.grant_id.unwrap()).await.unwrap();
    let holder = hold_writers_lock(&cluster.db, 4);
    let revoked = alice.revoke(&grant.id, "done").await;
    holder.join().unwrap();
    let revoked = revoked.expect("a revoke past the end was refused");
    assert_ne!(revoked.state, GrantState::Active);
}

/// An instance whose host's clock is 30 s behind the database server's
/// times grants by the server's clock: a grant it makes ends when its
/// duration says, and as leader it records the end of a grant another
/// instance made on time, not 30 s late.
#[tokio::test]
async fn an_instance_whose_clock_is_behind_times_grants_by_the_databases() {
    let mut cluster = cluster(2).await;
    let first = cluster.leader().unwrap();
    let behind = 1 - first;
    cluster.kill(behind);
    cluster.set_clock(behind, -30);
    cluster.restart(behind).await;
    eventually(Duration::from_secs(10), || async {
        cluster
            .log(behind)
            .contains("timing grants by the database server's clock")
    })
    .await;
    assert!(
        cluster
            .log(behind)
            .contains("this instance's clock is behind"),
        "{}",
        cluster.log(behind)
    );

    let filed = cluster
        .as_user(behind, "alice")
        .file(&CreateRequest {
            duration_secs: Some(600),
            ..request("logs", "reading the logs")
        })
        .await
        .unwrap();
    let grant = cluster
        .as_user(behind, "alice")
        .grant(&filed.grant_id.unwrap())
        .await
        .unwrap();
    let off = grant.expires_at - (chrono::Utc::now() + chrono::TimeDelta::seconds(600));
    assert!(
        off.abs() < chrono::TimeDelta::seconds(3),
        "the grant ends {off} from its duration"
    );

    // The instance behind leads.
    cluster.kill(first);
    eventually(Duration::from_secs(20), || async {
        cluster.leader() == Some(behind)
    })
    .await;
    cluster.restart(first).await;
    let filed = cluster
        .as_user(first, "bob")
        .file(&CreateRequest {
            duration_secs: Some(2),
            ..request("logs", "reading the logs")
        })
        .await
        .unwrap();
    let id = filed.grant_id.unwrap();
    let grant = cluster.as_user(first, "bob").grant(&id).await.unwrap();
    let auditor = cluster.as_user(first, "erin");
    eventually(Duration::from_secs(15), || async {
        auditor
            .audit()
            .await
            .iter()
            .any(|e| e.kind == AuditKind::Expired && e.grant_id.as_ref() == Some(&id))
    })
    .await;
    let seen = chrono::Utc::now();
    assert!(
        seen - grant.expires_at < chrono::TimeDelta::seconds(5),
        "the end was recorded {} after it",
        seen - grant.expires_at
    );
    let log = auditor.audit().await;
    let expired = log
        .iter()
        .find(|e| e.kind == AuditKind::Expired && e.grant_id.as_ref() == Some(&id))
        .unwrap();
    let late = expired.at - grant.expires_at;
    assert!(
        late >= chrono::TimeDelta::zero() && late < chrono::TimeDelta::seconds(2),
        "recorded as {late} after its end"
    );
    assert_eq!(cluster.leader(), Some(behind));
}

/// An instance whose host's clock is 30 s ahead of the database server's,
/// starting while a grant has 20 s left, reads the server's clock before
/// its start-up reap: it does not record the grant as expired, nor queue
/// its removal, 10 s before the grant ends.
#[tokio::test]
async fn an_instance_ahead_starting_does_not_end_grants_early() {
    let mut cluster = cluster(2).await;
    let other = 1 - cluster.leader().unwrap();
    cluster.kill(other);
    let filed = cluster
        .as_user(1 - other, "alice")
        .file(&CreateRequest {
            duration_secs: Some(20),
            ..request("logs", "reading the logs")
        })
        .await
        .unwrap();
    let id = filed.grant_id.unwrap();
    cluster.set_clock(other, 30);
    cluster.restart(other).await;
    let log = cluster.as_user(other, "erin").audit().await;
    assert!(
        !log.iter()
            .any(|e| e.kind == AuditKind::Expired && e.grant_id.as_ref() == Some(&id)),
        "expired early"
    );
    let grant = cluster.as_user(other, "alice").grant(&id).await.unwrap();
    assert_eq!(grant.state, hoist_api::GrantState::Active);
    assert!(
        cluster
            .log(other)
            .contains("timing grants by the database server's clock"),
        "{}",
        cluster.log(other)
    );
}

/// An instance weighs a provider user by the latest word any instance
/// heard from the provider, not by the token it happened to see last.
/// Instance 1 sees alice (an engineer) file, and dave (an approver) sign
/// in; the provider then takes alice out of `engineers` and dave out of
/// `prod-approvers`, and their next tokens reach only instance 0. On
/// instance 1, dave's earlier token no longer makes him an approver (of
/// the request, or to revoke her grant, however often he presents it),
/// alice's no longer gets her grant a credential, nor a grant of a role
/// that needs no approval, and bob's approval no longer activates her
/// request.
#[tokio::test]
async fn a_provider_users_latest_groups_reach_every_instance() {
    let bob = hex::encode(sha2::Sha256::digest(b"t-bob"));
    let (provider, cluster) = with_provider(
        2,
        &format!(
            r#"
[users.bob]
token_sha256 = "{bob}"

[groups]
engineers = []
prod-approvers = ["bob"]

[[roles]]
id = "prod-db"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["prod-approvers"]

[[roles]]
id = "logs"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 0
approver_groups = ["prod-approvers"]
"#
        ),
    )
    .await;
    let id_token = |login: &'static str| provider.id_token(login);
    let alice = id_token("alice").await;
    let filed = cluster
        .with_token(1, &alice)
        .file(&request("prod-db", "vacuum the orders table"))
        .await
        .unwrap();
    assert_eq!(filed.state, RequestState::Pending);
    let logs = cluster
        .with_token(1, &alice)
        .file(&request("logs", "read the logs for INC-7"))
        .await
        .unwrap();
    let grant_id = logs.grant_id.expect("granted at once");
    // dave's two tokens as close together as can be: most often of the
    // same second (`iat`), where which is the later cannot be told.
    let dave = id_token("dave").await;
    provider.set_groups("dave", &["engineers"]).await;
    let dave_later = id_token("dave").await;
    cluster
        .with_token(1, &dave)
        .get::<Me>("/v1/me")
        .await
        .unwrap();

    provider.set_groups("alice", &[]).await;
    let alice_later = id_token("alice").await;
    for (login, later) in [("alice", &alice_later), ("dave", &dave_later)] {
        let me = cluster
            .with_token(0, later)
            .get::<Me>("/v1/me")
            .await
            .unwrap();
        assert_eq!(me.user, login);
    }

    // A preview on instance 1 (the first call there since) weighs her by
    // the latest word, as the filing would.
    let (status, error) = cluster
        .with_token(1, &alice)
        .preview(&request("logs", "read the logs for INC-8"))
        .await
        .expect_err("a preview of a filing that is refused");
    assert!(
        [
            reqwest::StatusCode::FORBIDDEN,
            reqwest::StatusCode::NOT_FOUND
        ]
        .contains(&status),
        "{status} {error:?}"
    );

    // What they may see on instance 1, which has heard only their earlier
    // tokens, is weighed by the latest word too.
    let queue: Vec<AccessRequest> = cluster
        .with_token(1, &dave)
        .get("/v1/reviews")
        .await
        .unwrap();
    assert!(queue.is_empty(), "{queue:?}");
    let (status, _) = cluster
        .with_token(1, &dave)
        .get::<AccessRequest>(&format!("/v1/requests/{}", filed.id))
        .await
        .expect_err("no longer shown to dave");
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    let me: Me = cluster.with_token(1, &dave).get("/v1/me").await.unwrap();
    assert!(me.approver_for.is_empty(), "{me:?}");
    let roles: Vec<hoist_api::Role> = cluster
        .with_token(1, &alice)
        .get("/v1/roles")
        .await
        .unwrap();
    assert!(roles.is_empty(), "{roles:?}");

    let refused_with = |answer: Result<(), (reqwest::StatusCode, hoist_api::ApiError)>| {
        let (status, error) = answer.expect_err("refused");
        assert!(
            [
                reqwest::StatusCode::FORBIDDEN,
                reqwest::StatusCode::NOT_FOUND
            ]
            .contains(&status),
            "{status} {error:?}"
        );
    };
    refused_with(
        cluster
            .with_token(1, &dave)
            .revoke(&grant_id, "no longer needed")
            .await
            .map(|_| ()),
    );
    refused_with(
        cluster
            .with_token(1, &alice)
            .file(&request("logs", "read the logs for INC-8"))
            .await
            .map(|_| ()),
    );
    refused_with(
        cluster
            .with_token(1, &alice)
            .credential(&grant_id)
            .await
            .map(|_| ()),
    );
    refused_with(
        cluster
            .with_token(1, &dave)
            .approve(&filed.id)
            .await
            .map(|_| ()),
    );
    let by_bob = cluster.as_user(1, "bob").approve(&filed.id).await.unwrap();
    assert_ne!(by_bob.state, RequestState::Active, "{by_bob:?}");
    assert_eq!(by_bob.grant_id, None);
    let reason = by_bob.reason.unwrap_or_default();
    assert!(reason.contains("alice is no longer eligible"), "{reason}");
}

/// With the database down, a provider user's call is refused (503), with
/// a token the instance saw before and with one that says something new:
/// the database may hold a later word of them from another instance, and
/// neither may be weighed by an earlier one.
#[tokio::test]
async fn a_provider_users_call_is_refused_while_their_latest_word_cannot_be_read() {
    let (provider, cluster) = with_provider(
        1,
        r#"
[groups]
engineers = []

[[roles]]
id = "logs"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 0
"#,
    )
    .await;
    let id_token = || provider.id_token("alice");
    let seen = id_token().await;
    let me = cluster
        .with_token(0, &seen)
        .get::<Me>("/v1/me")
        .await
        .unwrap();
    assert_eq!(me.groups, ["engineers"]);
    provider.set_groups("alice", &["engineers", "oncall"]).await;
    // Of a later second (`iat`), so that it says something new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = id_token().await;

    cluster.pg.stop();
    for (which, token) in [("seen", &seen), ("new", &new)] {
        let (status, error) = cluster
            .with_token(0, token)
            .get::<Me>("/v1/me")
            .await
            .expect_err("refused");
        assert_eq!(
            status,
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "{which}: {error:?}"
        );
        assert_eq!(error.code, ErrorCode::Unavailable, "{which}: {error:?}");
    }
}

/// Holds the store's writers' lock (`BEGIN_LOCKED`'s) for `secs` from a
/// session of its own (`lock-holder`) on database `db`, and returns once
/// that session has it: not one of the instances' own short turns.
fn hold_writers_lock(db: &str, secs: u32) -> std::thread::JoinHandle<std::process::Output> {
    let url = db.to_string();
    let holder = std::thread::spawn(move || {
        std::process::Command::new("psql")
            .env("PGAPPNAME", "lock-holder")
            .args(["-X", "-q", "-d", &url, "-c"])
            .arg(format!(
                "SELECT pg_advisory_lock(7525349446954284152), pg_sleep({secs})"
            ))
            .output()
            .unwrap()
    });
    let held = || {
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-d", db, "-c"])
            .arg(
                "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) \
                 WHERE locktype = 'advisory' AND granted AND application_name = 'lock-holder'",
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() != "0"
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !held() {
        assert!(
            std::time::Instant::now() < deadline,
            "psql never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    holder
}

/// A token another instance stored already costs this one a read, not a
/// turn at the writers' lock: its first call answers while another session
/// holds that lock.
#[tokio::test]
async fn a_token_another_instance_stored_is_taken_in_without_the_writers_lock() {
    let (provider, cluster) = with_provider(2, "[groups]\nengineers = []\n").await;
    let alice = provider.id_token("alice").await;
    cluster
        .with_token(0, &alice)
        .get::<Me>("/v1/me")
        .await
        .unwrap();

    let holder = hold_writers_lock(&cluster.db, 8);
    let me = cluster
        .with_token(1, &alice)
        .get::<Me>("/v1/me")
        .await
        .unwrap();
    assert_eq!(me.groups, ["engineers"]);
    assert!(!holder.is_finished(), "the call waited for the lock");
    holder.join().unwrap();
}

/// A reload whose sweep cannot be made (another session holds the
/// writers' lock past the server's lock timeout) puts the previous policy
/// back, keeping the targets the new policy added: a grant may have been
/// given access at one between the swap and the sweep, and is removed
/// there only while the policy in force names it.
#[test]
fn a_reload_put_back_keeps_the_targets_the_new_policy_added() {
    let pg = Postgres::start_now().unwrap_or_else(|err| panic!("{err}"));
    let url = pg.create_database("hoistd").unwrap();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url, Migrations::Apply).unwrap());
    let broker = Broker::new(
        store,
        Policy::parse("test policy", &policy_text("")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = crate::targets_webhook::policy(dir.path(), "http://127.0.0.1:9/hook");
    let wider = Policy::parse("test policy", &text).unwrap();

    let holder = hold_writers_lock(&url, 12);
    let refused = broker.reload(wider);
    assert!(refused.is_err(), "{refused:?}");
    holder.join().unwrap();

    let policy = broker.policy();
    assert!(policy.role("k8s-admin").is_none(), "the old policy stays");
    assert!(
        policy.targets.get("hook").is_some(),
        "with the target the new one added"
    );
}

/// A leader paused or cut off past its term may not know another instance
/// took the lease: its reaper's transaction is fenced with the lease it
/// took, so it is refused and records nothing, and the next holder's
/// reaper records the expiry.
#[test]
fn a_deposed_leaders_reaper_writes_nothing() {
    let pg = Postgres::start_now().unwrap_or_else(|err| panic!("{err}"));
    let url = pg.create_database("hoistd").unwrap();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url, Migrations::Apply).unwrap());
    let policy = Policy::parse("test policy", &policy_text("")).unwrap();
    let broker = Broker::new(Arc::clone(&store), policy).unwrap();
    let (filed, _) = broker
        .create_request(
            "alice",
            &CreateRequest {
                duration_secs: Some(1),
                ..request("logs", "reading the logs")
            },
            None,
        )
        .unwrap();
    let grant_id = filed.grant_id.unwrap();
    let stored = |store: &dyn Store| {
        let read = store.read().unwrap();
        read.grant(&grant_id).unwrap().unwrap().state
    };
    let term = Duration::from_secs(60);
    let epoch = store.lead("deposed", term, false).unwrap().unwrap();
    broker.lease().send_replace(Some(Lease {
        holder: "deposed".into(),
        epoch,
    }));
    store.resign("deposed").unwrap();
    let successor = store.lead("successor", term, false).unwrap().unwrap();
    // The grant ends.
    std::thread::sleep(Duration::from_millis(1100));

    match broker.reap() {
        Err(hoistd::error::Error::Store(StoreError::Contended(message))) => assert!(
            message.contains("no longer leads"),
            "the refusal does not say why: {message}"
        ),
        other => panic!("a deposed leader's reaper was not refused: {other:?}"),
    }
    assert_eq!(stored(store.as_ref()), GrantState::Active);

    broker.lease().send_replace(Some(Lease {
        holder: "successor".into(),
        epoch: successor,
    }));
    broker.reap().unwrap();
    assert_eq!(stored(store.as_ref()), GrantState::Expired);
}

/// A proxy in an instance's environment (`HTTP_PROXY`, `ALL_PROXY`) never
/// sees its calls to this machine: the OpenID provider's keys, fetched in
/// plain http on loopback, come from the provider, not from whatever
/// listens at the proxy's address.
#[tokio::test]
async fn calls_to_this_machine_never_go_through_a_proxy() {
    let (provider, mut cluster) = with_provider(
        1,
        r#"
[groups]
engineers = []
"#,
    )
    .await;
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    cluster.kill(0);
    cluster.set_env(
        0,
        &[
            ("HTTP_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("all_proxy", &proxy_url),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    cluster.restart(0).await;
    let me = cluster
        .with_token(0, &provider.id_token("alice").await)
        .get::<Me>("/v1/me")
        .await
        .unwrap_or_else(|err| panic!("{err:?}\n{}", cluster.log(0)));
    assert_eq!(me.user, "alice");
    // Whatever reached the proxy was accepted by the kernel and waits there.
    assert!(proxy.accept().is_err(), "the proxy was sent a call");
}

/// A policy of `instances` instances on one database with `body` (groups
/// and roles) and the test provider as its `[[oidc]]`, with that provider.
pub(crate) async fn with_provider(
    instances: usize,
    body: &str,
) -> (crate::oidc::Provider, Cluster) {
    let provider = crate::oidc::Provider::start().await;
    let policy = format!(
        "{body}\n[[oidc]]\nissuer = \"{}\"\nclient_id = \"hoist\"\nleeway = \"0s\"\n",
        provider.issuer
    );
    let cluster = Cluster::start_with_policy(HOISTD.as_ref(), instances, &policy).await;
    (provider, cluster)
}
