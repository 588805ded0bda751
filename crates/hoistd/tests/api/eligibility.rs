//! Every step that grants or prolongs access checks, under the policy in
//! force at that moment, that the requester may still have it; when they may
//! not, the request ends with a reason they see, audited as the broker's.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hoist_api::{AuditKind, CreateRequest, ErrorCode, RequestState};
use reqwest::StatusCode;

use crate::helpers::*;

/// Rewrites the test policy with `from` replaced by `to`, and reloads it.
async fn reload_with(broker: &TestBroker, from: &str, to: &str) {
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    assert!(text.contains(from), "the policy has no {from:?}");
    std::fs::write(broker.policy_path(), text.replace(from, to)).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
}

const ENG: &str = r#"eng = ["alice", "bob", "carol", "dave", "frank"]"#;

#[tokio::test]
async fn an_approval_after_the_requester_lost_eligibility_grants_nothing() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();
    let two = broker
        .as_user("frank")
        .file(&request("k8s", "drain a node"))
        .await
        .unwrap();
    broker.as_user("dave").approve(&two.id).await.unwrap();

    reload_with(&broker, ENG, r#"eng = ["bob", "carol", "dave"]"#).await;
    // bob may still approve: he is still an approver. The approval that
    // would have granted access cancels the request instead.
    for (who, id) in [("alice", &filed.id), ("frank", &two.id)] {
        let decided = bob.approve(id).await.unwrap();
        assert_eq!(decided.state, RequestState::Cancelled, "{who}");
        assert_eq!(decided.grant_id, None);
        let reason = decided.reason.unwrap();
        assert!(
            reason.contains(&format!("{who} is no longer eligible for role")),
            "{reason}"
        );
        let seen = broker.as_user(who).request(id).await.unwrap();
        assert_eq!(seen.state, RequestState::Cancelled);
        assert_eq!(seen.reason.as_deref(), Some(reason.as_str()));
        assert!(broker.as_user(who).grants().await.is_empty());
    }

    let log = broker.as_user("erin").audit().await;
    assert!(!log.iter().any(|e| e.kind == AuditKind::Activated));
    let cancelled: Vec<_> = log
        .iter()
        .filter(|e| e.kind == AuditKind::Cancelled)
        .collect();
    assert_eq!(cancelled.len(), 2);
    for entry in cancelled {
        assert_eq!(entry.actor, "hoistd");
        assert!(entry.is_system());
        assert!(
            entry
                .reason
                .as_deref()
                .unwrap()
                .contains("no longer eligible")
        );
    }
}

#[tokio::test]
async fn a_scheduled_start_checks_eligibility_when_it_falls_due() {
    let mut broker = TestBroker::builder().reaper_held().start().await;
    let alice = broker.as_user("alice");
    let filed = alice
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            ..request("logs", "nightly maintenance")
        })
        .await
        .unwrap();
    assert_eq!(filed.state, RequestState::Approved);
    reload_with(&broker, ENG, r#"eng = ["bob", "carol", "dave", "frank"]"#).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    broker.hold_reaper(false);
    eventually(Duration::from_secs(10), || async {
        alice.request(&filed.id).await.unwrap().state == RequestState::Cancelled
    })
    .await;
    let seen = alice.request(&filed.id).await.unwrap();
    assert!(seen.reason.unwrap().contains("no longer eligible"));
    assert!(alice.grants().await.is_empty());
}

/// A scheduled request approved by someone who, by its start, may no
/// longer approve the role does not start on that approval: it is
/// cancelled with why, as a final approval by them would not count.
#[tokio::test]
async fn a_scheduled_start_counts_only_approvals_that_still_count() {
    let mut broker = TestBroker::builder().reaper_held().start().await;
    let frank = broker.as_user("frank");
    let filed = frank
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            ..db_request()
        })
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    assert_eq!(
        approved.state,
        RequestState::Approved,
        "waiting for its start"
    );
    reload_with(
        &broker,
        r#"approvers = ["bob", "dave", "alice"]"#,
        r#"approvers = ["dave", "alice"]"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    broker.hold_reaper(false);
    eventually(Duration::from_secs(10), || async {
        frank.request(&filed.id).await.unwrap().state == RequestState::Cancelled
    })
    .await;
    let seen = frank.request(&filed.id).await.unwrap();
    assert!(
        seen.reason
            .as_deref()
            .unwrap()
            .contains("does not have the approvals role `db` needs now: 0 of the 1"),
        "{seen:?}"
    );
    assert!(frank.grants().await.is_empty());
}

/// A role made stricter by a reload holds the requests already waiting to
/// its new rule: one filed with no approval needed does not start on
/// none, and one filed needing one approval needs two.
#[tokio::test]
async fn waiting_requests_need_the_approvals_their_role_needs_now() {
    let mut broker = TestBroker::builder().reaper_held().start().await;
    let frank = broker.as_user("frank");
    let scheduled = frank
        .file(&CreateRequest {
            starts_at: Some(Utc::now() + TimeDelta::milliseconds(300)),
            ..request("logs", "nightly maintenance")
        })
        .await
        .unwrap();
    assert_eq!(scheduled.state, RequestState::Approved);
    assert_eq!(scheduled.approvals_required, 0);
    let pending = broker.as_user("alice").file(&db_request()).await.unwrap();
    assert_eq!(pending.approvals_required, 1);

    reload_with(
        &broker,
        r#"scope = "logs://prod""#,
        "scope = \"logs://prod\"\napprovals = 1\napprover_groups = [\"approvers\"]",
    )
    .await;
    reload_with(
        &broker,
        "approvals = 1\napprover_groups = [\"approvers\"]\nbreak_glass",
        "approvals = 2\napprover_groups = [\"approvers\"]\nbreak_glass",
    )
    .await;

    // One approval no longer carries it, and the request says what it needs.
    let once = broker.as_user("bob").approve(&pending.id).await.unwrap();
    assert_eq!(once.state, RequestState::Pending);
    assert_eq!(once.approvals_required, 2);
    let twice = broker.as_user("dave").approve(&pending.id).await.unwrap();
    assert_eq!(twice.state, RequestState::Active);

    tokio::time::sleep(Duration::from_millis(400)).await;
    broker.hold_reaper(false);
    eventually(Duration::from_secs(10), || async {
        frank.request(&scheduled.id).await.unwrap().state == RequestState::Cancelled
    })
    .await;
    let seen = frank.request(&scheduled.id).await.unwrap();
    assert!(
        seen.reason
            .as_deref()
            .unwrap()
            .contains("does not have the approvals role `logs` needs now: 0 of the 1"),
        "{seen:?}"
    );
    assert!(frank.grants().await.is_empty());
}

#[tokio::test]
async fn break_glass_and_extensions_check_eligibility_as_they_stand() {
    let broker = TestBroker::start().await;
    let carol = broker.as_user("carol");
    let alice = broker.as_user("alice");
    let logs = alice.file(&request("logs", "reading")).await.unwrap();
    reload_with(&broker, r#"oncall = ["carol"]"#, r#"oncall = []"#).await;
    let glass = CreateRequest {
        break_glass: true,
        ticket: None,
        incident: Some("INC-7".into()),
        ..db_request()
    };
    let message = refused(
        carol.file(&glass).await,
        StatusCode::FORBIDDEN,
        ErrorCode::BreakGlassNotAllowed,
    );
    assert!(message.contains("break-glass"), "{message}");

    // Once alice is out, her grant is revoked and cannot be extended.
    reload_with(&broker, ENG, r#"eng = ["bob", "carol", "dave", "frank"]"#).await;
    refused(
        alice.extend(logs.grant_id.as_deref().unwrap(), 60).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
}

/// A role's ticket rule tightened by a reload holds what was filed before
/// it: a waiting request without a ticket gives no access when approved,
/// and a grant without one is not extended; a break-glass grant with an
/// incident reference still is, as its filing was.
#[tokio::test]
async fn the_ticket_rule_in_force_holds_what_was_filed_before_it() {
    let broker = TestBroker::start().await;
    let (alice, carol, frank) = (
        broker.as_user("alice"),
        broker.as_user("carol"),
        broker.as_user("frank"),
    );
    let waiting = alice.file(&request("k8s", "drain a node")).await.unwrap();
    assert_eq!(waiting.ticket, None);
    let logs = frank.file(&request("logs", "reading")).await.unwrap();
    assert_eq!(logs.state, RequestState::Active);
    let glass = carol
        .file(&CreateRequest {
            break_glass: true,
            ticket: None,
            incident: Some("INC-7".into()),
            ..db_request()
        })
        .await
        .unwrap();
    assert_eq!(glass.state, RequestState::Active);

    // An incident on a plain request, where no ticket was needed: it
    // stands for no ticket once one is.
    let mut incident = request("logs", "looking into INC-9");
    incident.incident = Some("INC-9".into());
    let with_incident = alice.file(&incident).await.unwrap();
    assert_eq!(with_incident.state, RequestState::Active);

    for scope in [r#"scope = "k8s://prod""#, r#"scope = "logs://prod""#] {
        reload_with(&broker, scope, &format!("{scope}\nticket_required = true")).await;
    }

    broker.as_user("bob").approve(&waiting.id).await.unwrap();
    let decided = broker.as_user("dave").approve(&waiting.id).await.unwrap();
    assert_eq!(decided.state, RequestState::Cancelled);
    assert_eq!(decided.grant_id, None);
    let reason = decided.reason.unwrap();
    assert!(
        reason.contains("role `k8s` needs a ticket reference now; file it again"),
        "{reason}"
    );
    assert!(alice.grants().await.iter().all(|g| g.role != "k8s"));

    let message = refused(
        frank.extend(logs.grant_id.as_deref().unwrap(), 60).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::TicketRequired,
    );
    assert!(
        message.contains("is not extended without one") && message.contains("file a new request"),
        "{message}"
    );

    refused(
        alice
            .extend(with_incident.grant_id.as_deref().unwrap(), 60)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::TicketRequired,
    );

    // db needed a ticket all along; the incident stood for one.
    let extension = carol
        .extend(glass.grant_id.as_deref().unwrap(), 60)
        .await
        .unwrap();
    assert_eq!(extension.state, RequestState::Pending);
    let extended = broker.as_user("bob").approve(&extension.id).await.unwrap();
    assert_eq!(extended.state, RequestState::Active, "{extended:?}");
}
