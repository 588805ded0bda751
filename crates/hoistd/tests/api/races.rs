//! Concurrency at the API: callers racing over real HTTP for the same
//! request or grant, where exactly one outcome may win.

use futures::future::join_all;
use hoist_api::{AuditKind, ErrorCode, GrantState, RequestState};
use reqwest::StatusCode;

use crate::helpers::*;

fn count(log: &[hoist_api::AuditEvent], kind: AuditKind) -> usize {
    log.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test]
async fn racing_final_approvals_of_a_two_of_three_request_grant_once() {
    let broker = TestBroker::start().await;
    for round in 0..5 {
        let requester = ["frank", "carol"][round % 2];
        let client = broker.as_user(requester);
        let filed = client
            .file(&request("k8s", "drain the node pool"))
            .await
            .unwrap();
        let approvers = ["alice", "bob", "dave"].map(|who| broker.as_user(who));
        let answers = join_all(approvers.iter().map(|a| a.approve(&filed.id))).await;
        let (won, lost): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.is_ok());
        assert_eq!(won.len(), 2, "two approvals count");
        for answer in lost {
            refused(answer, StatusCode::CONFLICT, ErrorCode::InvalidState);
        }
        let request = client.request(&filed.id).await.unwrap();
        assert_eq!(request.state, RequestState::Active);
        assert_eq!(request.reviews.len(), 2);
        assert_eq!(client.grants().await.len(), 1);
        client
            .revoke(request.grant_id.as_deref().unwrap(), "next round")
            .await
            .unwrap();
    }
    let log = broker.as_user("erin").audit().await;
    assert_eq!(count(&log, AuditKind::Activated), 5);
    assert_eq!(count(&log, AuditKind::Approved), 5);
}

#[tokio::test]
async fn the_same_idempotency_key_in_parallel_files_once() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let body = db_request();
    let answers = join_all((0..8).map(|_| alice.file_with_key(&body, "key-1"))).await;
    let ids: Vec<String> = answers.into_iter().map(|a| a.unwrap().id).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(alice.mine().await.len(), 1);
    let log = broker.as_user("erin").audit().await;
    assert_eq!(count(&log, AuditKind::Requested), 1);
}

#[tokio::test]
async fn revoke_racing_extend_leaves_the_grant_revoked() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    for _ in 0..5 {
        let filed = alice.file(&request("logs", "reading")).await.unwrap();
        let id = filed.grant_id.unwrap();
        let (revoked, extended) = tokio::join!(alice.revoke(&id, "done"), alice.extend(&id, 600));
        assert_eq!(revoked.unwrap().state, GrantState::Revoked);
        if let Err(answer) = extended {
            refused(
                Err::<(), _>(answer),
                StatusCode::CONFLICT,
                ErrorCode::InvalidState,
            );
        }
        // Whichever came first, the grant ends revoked and stays so.
        let grant = alice.grant(&id).await.unwrap();
        assert_eq!(grant.state, GrantState::Revoked);
        assert!(alice.grants().await.is_empty());
        refused(
            alice.credential(&id).await,
            StatusCode::CONFLICT,
            ErrorCode::InvalidState,
        );
    }
}

#[tokio::test]
async fn two_reviewers_claiming_at_once_one_wins() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    for _ in 0..5 {
        let filed = alice.file(&db_request()).await.unwrap();
        let path = format!("/v1/requests/{}/claim", filed.id);
        let (bob, dave) = (broker.as_user("bob"), broker.as_user("dave"));
        let body = serde_json::json!({});
        let (first, second) = tokio::join!(
            bob.post::<_, hoist_api::AccessRequest>(&path, &body),
            dave.post::<_, hoist_api::AccessRequest>(&path, &body)
        );
        let winner = match (first, second) {
            (Ok(r), Err(lost)) | (Err(lost), Ok(r)) => {
                let message = refused(
                    Err::<(), _>(lost),
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidState,
                );
                assert!(message.contains("is looking at"), "{message}");
                r.claim.unwrap().by
            }
            other => panic!("exactly one claim must win: {other:?}"),
        };
        let stored = alice.request(&filed.id).await.unwrap();
        assert_eq!(stored.claim.unwrap().by, winner);
        alice.cancel(&filed.id).await.unwrap();
    }
}
