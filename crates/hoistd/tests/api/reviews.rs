//! Who may review, N-of-M thresholds, one denial, claims.

use hoist_api::{Decision, ErrorCode, RequestState};
use reqwest::{Method, StatusCode};

use crate::helpers::*;

#[tokio::test]
async fn a_requester_never_reviews_their_own_request_by_any_route() {
    let broker = TestBroker::start().await;
    // alice is in the approver group of k8s, and files for k8s herself.
    let alice = broker.as_user("alice");
    let filed = alice
        .file(&request("k8s", "upgrade the ingress"))
        .await
        .unwrap();

    assert!(
        alice.queue().await.is_empty(),
        "own requests never appear as reviewable"
    );
    for decision in [Decision::Approve, Decision::Deny] {
        refused(
            alice.review(&filed.id, decision, Some("mine")).await,
            StatusCode::FORBIDDEN,
            ErrorCode::SelfReview,
        );
    }
    refused(
        alice
            .call::<hoist_api::AccessRequest>(
                alice.raw(Method::POST, &format!("/v1/requests/{}/claim", filed.id)),
            )
            .await,
        StatusCode::FORBIDDEN,
        ErrorCode::SelfReview,
    );
    let seen = alice.request(&filed.id).await.unwrap();
    assert_eq!(seen.state, RequestState::Pending);
    assert!(seen.reviews.is_empty());
}

#[tokio::test]
async fn n_of_m_needs_n_distinct_approvers() {
    let broker = TestBroker::start().await;
    let (alice, bob, dave) = (
        broker.as_user("alice"),
        broker.as_user("bob"),
        broker.as_user("dave"),
    );
    let filed = alice
        .file(&request("k8s", "upgrade the ingress"))
        .await
        .unwrap();
    assert_eq!(filed.approvals_required, 2);

    let once = bob.approve(&filed.id).await.unwrap();
    assert_eq!(once.state, RequestState::Pending, "1 of 2 is not enough");
    refused(
        bob.approve(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::AlreadyReviewed,
    );
    assert_eq!(
        alice.request(&filed.id).await.unwrap().reviews.len(),
        1,
        "each approver counts once"
    );

    let twice = dave.approve(&filed.id).await.unwrap();
    assert_eq!(twice.state, RequestState::Active);
    let reviewers: Vec<&str> = twice.reviews.iter().map(|r| r.reviewer.as_str()).collect();
    assert_eq!(reviewers, ["bob", "dave"]);
}

#[tokio::test]
async fn one_denial_ends_a_request_even_after_approvals() {
    let broker = TestBroker::start().await;
    let (alice, bob, dave) = (
        broker.as_user("alice"),
        broker.as_user("bob"),
        broker.as_user("dave"),
    );
    let filed = alice
        .file(&request("k8s", "upgrade the ingress"))
        .await
        .unwrap();
    bob.approve(&filed.id).await.unwrap();
    let denied = dave
        .review(&filed.id, Decision::Deny, Some("not during the freeze"))
        .await
        .unwrap();
    assert_eq!(denied.state, RequestState::Denied);
    assert_eq!(denied.reason.as_deref(), Some("not during the freeze"));
    assert!(alice.grants().await.is_empty());
}

#[tokio::test]
async fn approvers_see_only_requests_for_roles_they_approve() {
    let broker = TestBroker::start().await;
    let (alice, frank, erin) = (
        broker.as_user("alice"),
        broker.as_user("frank"),
        broker.as_user("erin"),
    );
    let filed = alice.file(&db_request()).await.unwrap();

    assert!(frank.queue().await.is_empty());
    refused(
        frank.approve(&filed.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    refused(
        frank.request(&filed.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    // An auditor may read it but not decide it.
    assert_eq!(erin.request(&filed.id).await.unwrap().id, filed.id);
    refused(
        erin.approve(&filed.id).await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
}

#[tokio::test]
async fn a_claim_shows_who_is_looking_but_never_blocks_a_decision() {
    let broker = TestBroker::start().await;
    let (alice, bob, dave) = (
        broker.as_user("alice"),
        broker.as_user("bob"),
        broker.as_user("dave"),
    );
    let filed = alice.file(&db_request()).await.unwrap();
    let claim_path = format!("/v1/requests/{}/claim", filed.id);

    let claimed: hoist_api::AccessRequest = dave
        .call(dave.raw(Method::POST, &claim_path))
        .await
        .unwrap();
    let claim = claimed.claim.expect("claimed");
    assert_eq!(claim.by, "dave");
    assert!(claim.until > chrono::Utc::now() + chrono::TimeDelta::minutes(9));

    let in_queue = bob.queue().await;
    assert_eq!(
        in_queue[0].claim.as_ref().map(|c| c.by.as_str()),
        Some("dave")
    );
    let message = refused(
        bob.call::<hoist_api::AccessRequest>(bob.raw(Method::POST, &claim_path))
            .await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(message.contains("dave"), "{message}");

    let approved = bob.approve(&filed.id).await.unwrap();
    assert_eq!(approved.state, RequestState::Active);
    assert!(approved.claim.is_none(), "a decided request has no claim");
}

#[tokio::test]
async fn an_approver_sees_the_requesters_recent_history_for_the_role() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let first = alice.file(&db_request()).await.unwrap();
    bob.review(&first.id, Decision::Deny, Some("no"))
        .await
        .unwrap();
    let second = alice.file(&db_request()).await.unwrap();

    let history: hoist_api::RequestHistory = bob
        .get(&format!("/v1/requests/{}/history", second.id))
        .await
        .unwrap();
    assert_eq!(history.requester, "alice");
    assert_eq!(history.recent.len(), 1);
    assert_eq!(history.recent[0].id, first.id);
    assert_eq!(history.recent[0].state, RequestState::Denied);
}

/// An approval counts only while its reviewer may approve: one removed
/// from the approvers since (a reload) leaves the request waiting for
/// another.
#[tokio::test]
async fn an_approval_by_someone_no_longer_an_approver_does_not_count() {
    let broker = TestBroker::start().await;
    let filed = broker
        .as_user("frank")
        .file(&request("k8s", "roll the ingress"))
        .await
        .unwrap();
    broker.as_user("bob").approve(&filed.id).await.unwrap();
    let text = std::fs::read_to_string(broker.policy_path())
        .unwrap()
        .replace(
            r#"approvers = ["bob", "dave", "alice"]"#,
            r#"approvers = ["dave", "alice"]"#,
        );
    std::fs::write(broker.policy_path(), text).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();

    let after = broker.as_user("dave").approve(&filed.id).await.unwrap();
    assert_eq!(after.state, hoist_api::RequestState::Pending, "one of two");
    let done = broker.as_user("alice").approve(&filed.id).await.unwrap();
    assert_eq!(done.state, hoist_api::RequestState::Active);
    let approved = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .find(|e| e.kind == hoist_api::AuditKind::Approved)
        .unwrap();
    assert_eq!(
        approved.details["approvers"],
        serde_json::json!(["dave", "alice"])
    );
}
