//! Risk tiers over the API: a role's tier on the wire, its terms enforced
//! when filing, the queue naming who else may approve, and a tier-0 step-up
//! weighed against a real provider token's `auth_time`.

use hoist_api::{CreateRequest, ErrorCode, RequestState, Role};
use reqwest::StatusCode;

use crate::helpers::*;
use crate::oidc::Provider;

/// The test policy with a tier-0 role: two approvals, a ticket, an hour at
/// most, by its tier.
fn tiered() -> String {
    format!(
        "{}\n[[roles]]\nid = \"vault-root\"\ntier = 0\neligible_groups = [\"eng\"]\n\
         approver_groups = [\"approvers\"]\ndefault_duration = \"15m\"\n",
        policy_text("")
    )
}

#[tokio::test]
async fn a_tier_0_role_is_filed_on_its_tiers_terms_and_carries_its_tier() {
    let broker = TestBroker::builder().policy(&tiered()).start().await;
    let carol = broker.as_user("carol");
    let roles: Vec<Role> = carol.get("/v1/roles").await.unwrap();
    let root = roles.iter().find(|r| r.id == "vault-root").unwrap();
    assert_eq!(root.tier, Some(0));
    assert_eq!(root.approval.approvals, 2);
    assert_eq!(root.max_duration_secs, 3600);
    assert!(root.ticket.required);
    // A role that names no tier is held to tier 3's terms, unclassified.
    assert_eq!(roles.iter().find(|r| r.id == "logs").unwrap().tier, None);

    refused(
        carol
            .file(&request("vault-root", "unseal after the outage"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::TicketRequired,
    );
    let filed = carol
        .file(&CreateRequest {
            ticket: Some("CHG-7".into()),
            ..request("vault-root", "unseal after the outage")
        })
        .await
        .unwrap();
    assert_eq!((filed.tier, filed.approvals_required), (Some(0), 2));
    assert_eq!(filed.state, RequestState::Pending);
}

#[tokio::test]
async fn the_queue_names_who_else_may_approve_what_i_approved() {
    let broker = TestBroker::start().await;
    let (carol, bob) = (broker.as_user("carol"), broker.as_user("bob"));
    // k8s needs 2 of the approvers bob, dave and alice.
    let filed = carol
        .file(&request("k8s", "upgrade the ingress"))
        .await
        .unwrap();

    let queue = bob.queue().await;
    let mine = queue.iter().find(|r| r.id == filed.id).unwrap();
    assert_eq!(mine.approvers, ["alice", "bob", "dave"]);
    assert!(mine.reviews.is_empty());

    bob.approve(&filed.id).await.unwrap();
    // Still in bob's queue, reviewed by him: the client files it under
    // "Waiting for others", naming alice and dave.
    let queue = bob.queue().await;
    let waiting = queue.iter().find(|r| r.id == filed.id).unwrap();
    assert_eq!(waiting.reviews[0].reviewer, "bob");
    assert_eq!(waiting.approvers, ["alice", "bob", "dave"]);
    // Nowhere but the queue names approvers.
    assert!(carol.request(&filed.id).await.unwrap().approvers.is_empty());
}

/// Provider people: bob and dave approve, carol files; `prod-db` is tier 0
/// with a step-up of `step_up`.
fn provider_policy(issuer: &str, step_up: &str) -> String {
    format!(
        r#"
[groups]
engineers = []
prod-approvers = []

[[roles]]
id = "prod-db"
tier = 0
eligible_groups = ["engineers"]
approver_groups = ["prod-approvers"]
default_duration = "30m"
step_up = "{step_up}"

[[oidc]]
issuer = "{issuer}"
client_id = "hoist"
leeway = "0s"
"#
    )
}

/// An ID token for `login`, signed in now through the device flow.
async fn id_token(provider: &Provider, login: &str) -> String {
    provider.device_flow_tokens(login, "hoist").await["id_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// carol's ID token from `provider`, when she signed in (its
/// `auth_time`), and a broker trusting `provider` whose tier-0 role wants a
/// sign-in within ten minutes.
async fn carol_signed_in(provider: &Provider) -> (String, i64, TestBroker) {
    let carol_token = id_token(provider, "carol").await;
    let auth_time = crate::oidc::jwt_claims(&carol_token)["auth_time"]
        .as_i64()
        .unwrap();
    let broker = TestBroker::builder()
        .policy(&provider_policy(&provider.issuer, "10m"))
        .start()
        .await;
    (carol_token, auth_time, broker)
}

fn prod_db() -> CreateRequest {
    CreateRequest {
        ticket: Some("CHG-1".into()),
        ..request("prod-db", "fail over the primary")
    }
}

#[tokio::test]
async fn a_tier_0_request_needs_a_recent_sign_in_at_the_provider() {
    let provider = Provider::start().await;
    let tokens = provider.device_flow_tokens("carol", "hoist").await;
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let claims = crate::oidc::jwt_claims(&id_token);
    let auth_time = claims["auth_time"]
        .as_i64()
        .expect("the provider says auth_time");

    // A sign-in within ten minutes: filed.
    let broker = TestBroker::builder()
        .policy(&provider_policy(&provider.issuer, "10m"))
        .start()
        .await;
    let carol = broker.with_token(&id_token);
    let filed = carol.file(&prod_db()).await.unwrap();
    assert_eq!(filed.tier, Some(0));

    // The same token where a sign-in must be under a second old: once a
    // second has passed since auth_time (the clock is only waited on, never
    // measured), the sign-in is too old, whatever the token's own life.
    let broker = TestBroker::builder()
        .policy(&provider_policy(&provider.issuer, "1s"))
        .start()
        .await;
    while chrono::Utc::now().timestamp() <= auth_time + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let carol = broker.with_token(&id_token);
    let message = refused(
        carol.file(&prod_db()).await,
        StatusCode::FORBIDDEN,
        ErrorCode::StepUpRequired,
    );
    assert!(
        message.contains("role `prod-db` needs a sign-in within 1s; yours was"),
        "{message}"
    );
    // A preview says the same: one that passes is a filing that passes.
    refused(
        carol.preview(&prod_db()).await,
        StatusCode::FORBIDDEN,
        ErrorCode::StepUpRequired,
    );
    // Reading is not filing: the session itself is good.
    assert!(carol.mine().await.is_empty());
}

/// A filing whose answer was lost, asked for again under the same
/// Idempotency-Key once the sign-in has grown too old for the role, is
/// answered with the request it made: refusing would leave the caller
/// with no id for a request that exists. A new filing is refused.
#[tokio::test]
async fn a_retried_filing_is_answered_however_old_the_sign_in_has_grown() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&provider_policy(&provider.issuer, "3s"))
        .start()
        .await;
    let tokens = provider.device_flow_tokens("carol", "hoist").await;
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let auth_time = crate::oidc::jwt_claims(&id_token)["auth_time"]
        .as_i64()
        .unwrap();
    let carol = broker.with_token(&id_token);
    let filed = carol.file_with_key(&prod_db(), "retry-1").await.unwrap();
    while chrono::Utc::now().timestamp() <= auth_time + 3 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let again = carol.file_with_key(&prod_db(), "retry-1").await.unwrap();
    assert_eq!(again.id, filed.id);
    refused(
        carol.file_with_key(&prod_db(), "retry-2").await,
        StatusCode::FORBIDDEN,
        ErrorCode::StepUpRequired,
    );
}

/// More time is access asked for: an extension wants the same recent
/// sign-in as a filing.
#[tokio::test]
async fn extending_a_tier_0_grant_needs_a_recent_sign_in_too() {
    let provider = Provider::start().await;
    let token = |login: &'static str| id_token(&provider, login);
    let (carol_token, auth_time, broker) = carol_signed_in(&provider).await;
    let carol = broker.with_token(&carol_token);
    let filed = carol.file(&prod_db()).await.unwrap();
    broker
        .with_token(&token("bob").await)
        .approve(&filed.id)
        .await
        .unwrap();
    let active = broker
        .with_token(&token("dave").await)
        .approve(&filed.id)
        .await
        .unwrap();
    assert_eq!(active.state, RequestState::Active);
    let grant_id = active.grant_id.unwrap();

    std::fs::write(
        broker.policy_path(),
        provider_policy(&provider.issuer, "1s"),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    while chrono::Utc::now().timestamp() <= auth_time + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let message = refused(
        carol.extend(&grant_id, 600).await,
        StatusCode::FORBIDDEN,
        ErrorCode::StepUpRequired,
    );
    assert!(message.contains("needs a sign-in within 1s"), "{message}");
}

/// The role's step-up as it stands at the decision holds a request filed
/// before it: one filed with a sign-in older than a reload now allows is
/// cancelled at its final approval, saying why, and grants nothing.
#[tokio::test]
async fn a_step_up_tightened_by_a_reload_holds_requests_already_waiting() {
    let provider = Provider::start().await;
    let token = |login: &'static str| id_token(&provider, login);
    let (carol_token, auth_time, broker) = carol_signed_in(&provider).await;
    // Filed more than two seconds after the sign-in.
    while chrono::Utc::now().timestamp() <= auth_time + 2 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let carol = broker.with_token(&carol_token);
    let filed = carol.file(&prod_db()).await.unwrap();
    assert_eq!(
        filed.signed_in_at.map(|at| at.timestamp()),
        Some(auth_time),
        "the request keeps when its requester signed in"
    );
    broker
        .with_token(&token("bob").await)
        .approve(&filed.id)
        .await
        .unwrap();

    std::fs::write(
        broker.policy_path(),
        provider_policy(&provider.issuer, "1s"),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    let decided = broker
        .with_token(&token("dave").await)
        .approve(&filed.id)
        .await
        .unwrap();
    assert_eq!(decided.state, RequestState::Cancelled);
    assert_eq!(decided.grant_id, None);
    let reason = decided.reason.unwrap();
    assert!(
        reason.contains("role `prod-db` now needs a sign-in within 1s of filing")
            && reason.contains("file it again"),
        "{reason}"
    );
    assert!(carol.grants().await.is_empty());
}
