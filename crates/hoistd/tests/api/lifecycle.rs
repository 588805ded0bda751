//! Filing, approval, denial, cancellation, time-out, scheduling, idempotency.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hoist_api::{AuditKind, Decision, ErrorCode, GrantState, RequestKind, RequestState};
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn a_request_is_approved_activated_and_becomes_a_grant() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));

    let filed = alice.file(&db_request()).await.unwrap();
    assert_eq!(filed.state, RequestState::Pending);
    assert_eq!(filed.kind, RequestKind::Access);
    assert_eq!(filed.duration_secs, 1800, "the role's default duration");
    assert_eq!(filed.approvals_required, 1);
    let lapses = filed
        .lapses_at
        .expect("a pending request shows when it lapses");
    assert!(lapses > filed.created_at + chrono::TimeDelta::minutes(59));

    let queue = bob.queue().await;
    assert_eq!(
        queue.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [filed.id.as_str()]
    );
    assert_eq!(
        queue[0].lapses_at,
        Some(lapses),
        "approvers see the lapse time too"
    );

    let approved = bob.approve(&filed.id).await.unwrap();
    assert_eq!(approved.state, RequestState::Active);
    assert_eq!(approved.reviews.len(), 1);
    assert_eq!(approved.reviews[0].reviewer, "bob");
    let grant_id = approved
        .grant_id
        .clone()
        .expect("activation creates a grant");

    let grants = alice.grants().await;
    assert_eq!(grants.len(), 1);
    let grant = &grants[0];
    assert_eq!(
        (grant.id.as_str(), grant.state),
        (grant_id.as_str(), GrantState::Active)
    );
    assert_eq!(
        grant.expires_at - grant.starts_at,
        chrono::TimeDelta::seconds(1800)
    );
    assert!(
        bob.queue().await.is_empty(),
        "a decided request leaves the queue"
    );

    let kinds: Vec<AuditKind> = alice.audit().await.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::Requested,
            AuditKind::Reviewed,
            AuditKind::Approved,
            AuditKind::Activated
        ]
    );
}

#[tokio::test]
async fn a_role_without_approvals_activates_at_once() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let filed = alice.file(&request("logs", "read the logs")).await.unwrap();
    assert_eq!(filed.state, RequestState::Active);
    assert!(filed.grant_id.is_some());
    assert_eq!(filed.lapses_at, None);
    let kinds: Vec<AuditKind> = alice.audit().await.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::Requested,
            AuditKind::Approved,
            AuditKind::Activated
        ]
    );
}

#[tokio::test]
async fn a_denial_carries_its_reason_back_and_needs_one() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();

    let message = refused(
        bob.review(&filed.id, Decision::Deny, Some("   ")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::CommentRequired,
    );
    assert!(message.contains("comment"), "{message}");

    bob.review(&filed.id, Decision::Deny, Some("use the read replica"))
        .await
        .unwrap();
    let seen = alice.request(&filed.id).await.unwrap();
    assert_eq!(seen.state, RequestState::Denied);
    assert_eq!(seen.reason.as_deref(), Some("use the read replica"));
    assert!(alice.grants().await.is_empty());
    refused(
        bob.approve(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
}

#[tokio::test]
async fn only_the_requester_cancels_and_only_while_pending() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();

    refused(
        bob.cancel(&filed.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let cancelled = alice.cancel(&filed.id).await.unwrap();
    assert_eq!(cancelled.state, RequestState::Cancelled);
    refused(
        alice.cancel(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(bob.queue().await.is_empty());

    // Finished requests stay queryable as history.
    let mine = alice.mine().await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].state, RequestState::Cancelled);
}

#[tokio::test]
async fn a_pending_request_times_out_and_says_so() {
    let broker = TestBroker::with_settings("pending_ttl = \"1s\"").await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();
    let lapses = filed.lapses_at.unwrap();
    assert!(lapses <= filed.created_at + chrono::TimeDelta::seconds(1));

    eventually(Duration::from_secs(5), || async {
        alice
            .audit()
            .await
            .iter()
            .any(|e| e.kind == AuditKind::TimedOut)
    })
    .await;
    let seen = alice.request(&filed.id).await.unwrap();
    assert_eq!(seen.state, RequestState::TimedOut);
    assert!(seen.reason.unwrap().contains("no decision"));
    assert!(bob.queue().await.is_empty());
    refused(
        bob.approve(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
}

#[tokio::test]
async fn a_scheduled_request_starts_when_due() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let start = Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let filed = alice
        .file(&hoist_api::CreateRequest {
            starts_at: Some(start),
            ..request("logs", "nightly maintenance")
        })
        .await
        .unwrap();
    assert_eq!(
        filed.state,
        RequestState::Approved,
        "approved, waiting for its start"
    );
    assert!(alice.grants().await.is_empty());

    eventually(Duration::from_secs(5), || async {
        !alice.grants().await.is_empty()
    })
    .await;
    let grant = &alice.grants().await[0];
    assert!(grant.starts_at >= start - chrono::TimeDelta::milliseconds(5));
    assert_eq!(
        alice.request(&filed.id).await.unwrap().state,
        RequestState::Active
    );
}

#[tokio::test]
async fn validate_only_answers_without_writing() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let preview = alice.preview(&db_request()).await.unwrap();
    assert_eq!(preview.approvals_required, 1);
    assert_eq!(preview.approver_groups, ["approvers"]);
    assert_eq!(preview.approvers, ["bob", "dave"], "never the requester");
    assert_eq!(preview.duration_secs, 1800);
    assert!(!preview.activates_immediately);
    assert!(preview.lapses_at.is_some());

    let auto = alice.preview(&request("logs", "x")).await.unwrap();
    assert!(auto.activates_immediately);

    let message = refused(
        alice
            .preview(&hoist_api::CreateRequest {
                duration_secs: Some(7200),
                ..db_request()
            })
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DurationTooLong,
    );
    assert!(
        message.contains("2h") && message.contains("1h"),
        "{message}"
    );

    assert!(alice.mine().await.is_empty());
    assert!(broker.as_user("erin").audit().await.is_empty());

    // With a request open for the role, a preview is refused as the
    // filing would be; break glass goes past it, as filing does.
    let filed = alice.file(&db_request()).await.unwrap();
    let message = refused(
        alice.preview(&db_request()).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(
        message.contains(&format!(
            "already have an open request for role `db` ({})",
            filed.id
        )),
        "{message}"
    );
}

#[tokio::test]
async fn an_idempotency_key_is_honoured_for_a_day_then_forgotten() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let first = alice.file_with_key(&db_request(), "key-1").await.unwrap();
    let other = hoist_api::CreateRequest {
        duration_secs: Some(600),
        ..db_request()
    };
    let purge = |after: chrono::TimeDelta| {
        let inner = Arc::clone(broker.broker());
        tokio::task::spawn_blocking(move || inner.purge(Utc::now() + after).unwrap())
    };

    // Within the day the key still answers with its request.
    let kept = purge(hoistd::broker::IDEMPOTENCY_KEPT - chrono::TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(kept.idempotency_keys, 0);
    let again = alice.file_with_key(&db_request(), "key-1").await.unwrap();
    assert_eq!(again.id, first.id);
    refused(
        alice.file_with_key(&other, "key-1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::IdempotencyKeyReused,
    );

    // A day later it is forgotten: the same key files anew (once the first
    // request is no longer open, as any second one).
    alice.cancel(&first.id).await.unwrap();
    let forgot = purge(hoistd::broker::IDEMPOTENCY_KEPT + chrono::TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(forgot.idempotency_keys, 1);
    assert!(!forgot.more_left());
    let anew = alice.file_with_key(&other, "key-1").await.unwrap();
    assert_ne!(anew.id, first.id);
    assert_eq!(anew.duration_secs, 600);
    assert_eq!(alice.mine().await.len(), 2);
}

#[tokio::test]
async fn the_leader_forgets_old_keys_and_deliveries_as_it_starts_to_lead() {
    let mut broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let filed = alice.file_with_key(&db_request(), "key-new").await.unwrap();
    broker.stop().await;
    let db = broker.db();
    tokio::task::spawn_blocking(move || {
        let store = hoistd::store::SqliteStore::open(&db).unwrap();
        let mut tx = hoistd::Store::transaction(&store).unwrap();
        let used = Utc::now() - hoistd::broker::IDEMPOTENCY_KEPT - chrono::TimeDelta::hours(1);
        // More than one batch: the purger goes on until none is left.
        for n in 0..=hoistd::broker::PURGE_BATCH {
            tx.insert_idempotency_key("alice", &format!("key-old-{n}"), "hash", &filed.id, used)
                .unwrap();
        }
        let delivery = |id: &str, at| hoistd::store::Delivery {
            id: id.into(),
            target: "hook".into(),
            action: "provision".into(),
            grant_id: None,
            status: Some(200),
            duration_ms: 3,
            error: None,
            at,
        };
        let month = hoistd::broker::DELIVERIES_KEPT;
        tx.insert_delivery(&delivery(
            "d-old",
            Utc::now() - month - chrono::TimeDelta::hours(1),
        ))
        .unwrap();
        tx.insert_delivery(&delivery(
            "d-new",
            Utc::now() - month + chrono::TimeDelta::hours(1),
        ))
        .unwrap();
        tx.commit().unwrap();
    })
    .await
    .unwrap();

    broker.restart().await;
    let inner = Arc::clone(broker.broker());
    eventually(Duration::from_secs(10), || {
        let inner = Arc::clone(&inner);
        async move {
            tokio::task::spawn_blocking(move || {
                let tx = inner.store().transaction().unwrap();
                let gone = |n: usize| {
                    let key = format!("key-old-{n}");
                    tx.idempotency_key("alice", &key).unwrap().is_none()
                };
                let new = tx.idempotency_key("alice", "key-new").unwrap();
                let deliveries: Vec<String> = tx
                    .deliveries(10)
                    .unwrap()
                    .into_iter()
                    .map(|d| d.id)
                    .collect();
                gone(0)
                    && gone(hoistd::broker::PURGE_BATCH)
                    && new.is_some()
                    && deliveries == ["d-new"]
            })
            .await
            .unwrap()
        }
    })
    .await;
}

#[tokio::test]
async fn a_retried_post_never_files_twice() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let first = alice.file_with_key(&db_request(), "key-1").await.unwrap();

    let response = alice
        .raw(reqwest::Method::POST, "/v1/requests")
        .header("Idempotency-Key", "key-1")
        .json(&db_request())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let again: hoist_api::AccessRequest = response.json().await.unwrap();
    assert_eq!(again.id, first.id);

    let other = hoist_api::CreateRequest {
        duration_secs: Some(600),
        ..db_request()
    };
    let message = refused(
        alice.file_with_key(&other, "key-1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::IdempotencyKeyReused,
    );
    assert!(message.contains("Idempotency-Key"), "{message}");

    assert_eq!(alice.mine().await.len(), 1);
    let requested = alice
        .audit()
        .await
        .iter()
        .filter(|e| e.kind == AuditKind::Requested)
        .count();
    assert_eq!(requested, 1);

    // Keys belong to their user: bob's "key-1" is his own.
    let bob = broker.as_user("bob");
    let his = bob.file_with_key(&db_request(), "key-1").await.unwrap();
    assert_ne!(his.id, first.id);

    // A key is visible ASCII, as the API document says: no spaces.
    let message = refused(
        broker
            .as_user("carol")
            .file_with_key(&db_request(), "key 2")
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidParameter,
    );
    assert!(message.contains("visible ASCII"), "{message}");
}

#[tokio::test]
async fn a_second_open_request_for_the_same_role_is_refused() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let first = alice.file(&db_request()).await.unwrap();
    let message = refused(
        alice.file(&db_request()).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(message.contains(&first.id), "{message}");
}
