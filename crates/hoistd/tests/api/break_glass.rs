//! Break-glass: immediate access, flagged for review after the fact.

use hoist_api::{AccessRequest, AuditKind, CreateRequest, ErrorCode, RequestState};
use reqwest::StatusCode;

use crate::helpers::*;

fn break_glass(incident: Option<&str>) -> CreateRequest {
    CreateRequest {
        break_glass: true,
        incident: incident.map(str::to_string),
        ..request("db", "primary is down, failing over")
    }
}

#[tokio::test]
async fn break_glass_activates_at_once_and_queues_for_acknowledgement() {
    let broker = TestBroker::start().await;
    let (carol, bob) = (broker.as_user("carol"), broker.as_user("bob"));

    let filed = carol.file(&break_glass(Some("INC-7"))).await.unwrap();
    assert_eq!(filed.state, RequestState::Active);
    assert!(filed.break_glass);
    assert_eq!(carol.grants().await.len(), 1);
    assert!(bob.queue().await.is_empty(), "nothing to approve");

    let to_ack: Vec<AccessRequest> = bob.get("/v1/break-glass").await.unwrap();
    assert_eq!(to_ack.len(), 1);
    assert_eq!(to_ack[0].id, filed.id);

    let acked: AccessRequest = bob
        .post(
            &format!("/v1/requests/{}/acknowledge", filed.id),
            &serde_json::json!({"comment": "justified"}),
        )
        .await
        .unwrap();
    let ack = acked.acknowledgement.expect("acknowledged");
    assert_eq!(
        (ack.by.as_str(), ack.comment.as_deref()),
        ("bob", Some("justified"))
    );
    assert_eq!(
        acked.state,
        RequestState::Active,
        "acknowledging leaves the grant alone"
    );
    assert!(
        bob.get::<Vec<AccessRequest>>("/v1/break-glass")
            .await
            .unwrap()
            .is_empty()
    );
    refused(
        broker
            .as_user("dave")
            .post::<_, AccessRequest>(
                &format!("/v1/requests/{}/acknowledge", filed.id),
                &serde_json::json!({}),
            )
            .await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );

    let kinds: Vec<AuditKind> = carol.audit().await.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::Requested,
            AuditKind::BreakGlass,
            AuditKind::Activated,
            AuditKind::BreakGlassAcknowledged
        ]
    );
}

#[tokio::test]
async fn break_glass_needs_a_reference_a_role_that_allows_it_and_a_responder() {
    let broker = TestBroker::start().await;
    let (carol, alice) = (broker.as_user("carol"), broker.as_user("alice"));

    let message = refused(
        carol.file(&break_glass(None)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::TicketRequired,
    );
    assert!(message.contains("break-glass"), "{message}");
    refused(
        alice.file(&break_glass(Some("INC-7"))).await,
        StatusCode::FORBIDDEN,
        ErrorCode::BreakGlassNotAllowed,
    );
    let k8s = CreateRequest {
        role: "k8s".into(),
        ..break_glass(Some("INC-7"))
    };
    let message = refused(
        carol.file(&k8s).await,
        StatusCode::FORBIDDEN,
        ErrorCode::BreakGlassNotAllowed,
    );
    assert!(message.contains("k8s"), "{message}");
    assert!(carol.mine().await.is_empty());
}

/// With `incident_pattern`, an incident reference that does not match it
/// is refused, on any request: one stands in for a ticket when breaking
/// glass, so a typo or a made-up reference must not.
#[tokio::test]
async fn an_incident_reference_is_held_to_the_policys_pattern() {
    let text = policy_text("incident_pattern = \"INC-[0-9]+\"\n");
    let broker = TestBroker::builder().policy(&text).start().await;
    let carol = broker.as_user("carol");
    for made_up in ["tbd", "INC-12a", "inc-12"] {
        let message = refused(
            carol.file(&break_glass(Some(made_up))).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidReference,
        );
        assert!(
            message.contains("incident_pattern ^(?:INC-[0-9]+)$"),
            "{message}"
        );
        assert!(message.contains(made_up), "{message}");
    }
    let plain = CreateRequest {
        incident: Some("outage".into()),
        ..request("logs", "reading the failover's logs")
    };
    refused(
        broker.as_user("alice").file(&plain).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidReference,
    );
    assert!(carol.mine().await.is_empty());
    let filed = carol.file(&break_glass(Some("INC-4711"))).await.unwrap();
    assert_eq!(filed.state, RequestState::Active);
    assert_eq!(filed.incident.as_deref(), Some("INC-4711"));
}

#[tokio::test]
async fn the_responder_cannot_acknowledge_their_own_break_glass() {
    let broker = TestBroker::start().await;
    let carol = broker.as_user("carol");
    let filed = carol.file(&break_glass(Some("INC-8"))).await.unwrap();
    refused(
        carol
            .post::<_, AccessRequest>(
                &format!("/v1/requests/{}/acknowledge", filed.id),
                &serde_json::json!({}),
            )
            .await,
        StatusCode::FORBIDDEN,
        ErrorCode::SelfReview,
    );
}

/// Breaking glass while a request for the same role waits: approving the
/// waiting one later gives no second grant of the role; it is cancelled
/// with the reason, and the grant held stands.
#[tokio::test]
async fn a_request_approved_after_breaking_glass_for_its_role_gives_no_second_grant() {
    let broker = TestBroker::start().await;
    let carol = broker.as_user("carol");
    let waiting = carol
        .file(&CreateRequest {
            ticket: Some("INC-8".into()),
            ..request("db", "vacuum the orders table later")
        })
        .await
        .unwrap();
    assert_eq!(waiting.state, RequestState::Pending);
    let broke = carol.file(&break_glass(Some("INC-9"))).await.unwrap();
    assert_eq!(broke.state, RequestState::Active);

    let approved = broker.as_user("bob").approve(&waiting.id).await.unwrap();
    assert_eq!(approved.state, RequestState::Cancelled);
    let reason = approved.reason.unwrap();
    assert!(reason.contains("carol already holds role `db`"), "{reason}");
    let grants = carol.grants().await;
    let active: Vec<_> = grants
        .iter()
        .filter(|g| g.state == hoist_api::GrantState::Active)
        .collect();
    assert_eq!(active.len(), 1, "{grants:?}");
    assert_eq!(active[0].request_id, broke.id);
}

/// A responder taken off call loses the access they broke glass for at
/// the reload, though they may still ask for the role the usual way: it
/// stood on their being on call.
#[tokio::test]
async fn a_responder_taken_off_call_loses_their_break_glass_grant() {
    let broker = TestBroker::start().await;
    let carol = broker.as_user("carol");
    let filed = carol.file(&break_glass(Some("INC-7"))).await.unwrap();
    let grant = filed.grant_id.expect("granted at once");
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    let off_call = text.replace("oncall = [\"carol\"]", "oncall = []");
    assert_ne!(text, off_call);
    std::fs::write(broker.policy_path(), off_call).unwrap();
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 1);
    assert_eq!(
        carol.grant(&grant).await.unwrap().state,
        hoist_api::GrantState::Revoked
    );
}
