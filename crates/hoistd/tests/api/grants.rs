//! Revocation, extension, hard expiry, credentials and introspection.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hoist_api::{
    AuditKind, CredentialClaims, ErrorCode, GrantState, Jwks, RequestKind, RequestState,
};
use reqwest::StatusCode;

use crate::helpers::*;

async fn active_grant(
    broker: &TestBroker,
    user: &str,
    role: &str,
    secs: Option<u64>,
) -> hoist_api::Grant {
    let client = broker.as_user(user);
    let filed = client
        .file(&hoist_api::CreateRequest {
            duration_secs: secs,
            ..request(role, "needed for the task")
        })
        .await
        .unwrap();
    assert_eq!(filed.state, RequestState::Active);
    client
        .grant(filed.grant_id.as_deref().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn revoking_ends_the_grant_and_revoking_twice_is_harmless() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", None).await;

    let revoked = alice.revoke(&grant.id, "done early").await.unwrap();
    assert_eq!(revoked.state, GrantState::Revoked);
    assert_eq!(revoked.revoked_by.as_deref(), Some("alice"));
    assert_eq!(revoked.revoke_reason.as_deref(), Some("done early"));
    let ended_at = revoked.ended_at.expect("an ended grant says when");

    let again = alice.revoke(&grant.id, "again").await.unwrap();
    assert_eq!(
        (again.state, again.ended_at),
        (GrantState::Revoked, Some(ended_at))
    );
    // A bad reason is refused as it would have been before the end.
    let long = "x".repeat(hoist_api::MAX_COMMENT_CHARS + 1);
    let answer = alice.revoke(&grant.id, &long).await;
    assert!(answer.is_err(), "{answer:?}");
    assert!(alice.grants().await.is_empty());
    assert_eq!(
        alice.request(&grant.request_id).await.unwrap().state,
        RequestState::Revoked
    );
    let revocations = alice
        .audit()
        .await
        .iter()
        .filter(|e| e.kind == AuditKind::Revoked)
        .count();
    assert_eq!(revocations, 1);
}

#[tokio::test]
async fn an_approver_may_revoke_and_a_bystander_may_not() {
    let broker = TestBroker::start().await;
    let filed = broker.as_user("alice").file(&db_request()).await.unwrap();
    let active = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let grant_id = active.grant_id.unwrap();

    refused(
        broker.as_user("frank").revoke(&grant_id, "x").await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let revoked = broker
        .as_user("dave")
        .revoke(&grant_id, "suspicious")
        .await
        .unwrap();
    assert_eq!(revoked.revoked_by.as_deref(), Some("dave"));
}

#[tokio::test]
async fn an_extension_without_approval_moves_the_same_grants_end() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(600)).await;

    let extension = alice.extend(&grant.id, 300).await.unwrap();
    assert_eq!(extension.kind, RequestKind::Extension);
    assert_eq!(extension.state, RequestState::Active);
    assert_eq!(extension.grant_id.as_deref(), Some(grant.id.as_str()));
    let after = alice.grant(&grant.id).await.unwrap();
    assert_eq!(after.expires_at, grant.expires_at + TimeDelta::seconds(300));
    assert_eq!(after.starts_at, grant.starts_at, "the same grant, no gap");
    assert_eq!(alice.grants().await.len(), 1);
}

/// A grant's justification stored before a character rule tightened (a
/// variation selector with nothing to select) is carried to its extension
/// as it was; new text is held to the rules.
#[tokio::test]
async fn an_extension_carries_its_grants_justification_as_stored() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(600)).await;
    let older = "step 2\u{FE0F} of the runbook";
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    db.execute(
        "UPDATE grants SET justification = ?1 WHERE id = ?2",
        rusqlite::params![older, grant.id],
    )
    .unwrap();
    drop(db);

    let extension = alice.extend(&grant.id, 300).await.unwrap();
    assert_eq!(extension.justification, older);
    let refused = alice
        .post::<_, hoist_api::AccessRequest>(
            &format!("/v1/grants/{}/extend", grant.id),
            &serde_json::json!({ "duration_secs": 300, "justification": "step 3\u{FE0F} now" }),
        )
        .await
        .unwrap_err();
    assert!(
        refused.1.message.contains("NOTHING TO SELECT"),
        "{:?}",
        refused.1
    );
}

/// An extension sent again with its Idempotency-Key (its answer lost)
/// answers the first, applied once: the grant's end moves once. The key
/// with another body is refused, and a new key is a new extension.
#[tokio::test]
async fn an_extension_sent_again_with_its_key_extends_once() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(600)).await;
    let extend = |secs: u64, key: &'static str| {
        alice
            .raw(
                reqwest::Method::POST,
                &format!("/v1/grants/{}/extend", grant.id),
            )
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({ "duration_secs": secs }))
            .send()
    };
    let first = extend(300, "ext-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: hoist_api::AccessRequest = first.json().await.unwrap();
    let again = extend(300, "ext-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: hoist_api::AccessRequest = again.json().await.unwrap();
    assert_eq!(again.id, first.id);
    let after = alice.grant(&grant.id).await.unwrap();
    assert_eq!(
        after.expires_at,
        grant.expires_at + TimeDelta::seconds(300),
        "extended once"
    );

    let other = extend(600, "ext-1").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let other: hoist_api::ApiError = other.json().await.unwrap();
    assert_eq!(other.code, ErrorCode::IdempotencyKeyReused);
    extend(300, "ext-2")
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    assert_eq!(
        alice.grant(&grant.id).await.unwrap().expires_at,
        grant.expires_at + TimeDelta::seconds(600),
        "a new key is a new extension"
    );
}

#[tokio::test]
async fn an_extension_needing_approval_keeps_access_until_approved_then_extends() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice.file(&db_request()).await.unwrap();
    let grant_id = bob.approve(&filed.id).await.unwrap().grant_id.unwrap();
    let before = alice.grant(&grant_id).await.unwrap();

    let extension = alice.extend(&grant_id, 600).await.unwrap();
    assert_eq!(extension.state, RequestState::Pending);
    assert_eq!(
        extension.justification, "rotate the replication slot",
        "same justification by default"
    );
    assert_eq!(extension.ticket.as_deref(), Some("INC-42"));
    assert_eq!(
        alice.grant(&grant_id).await.unwrap().expires_at,
        before.expires_at,
        "nothing moves yet"
    );
    refused(
        alice.extend(&grant_id, 600).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert_eq!(bob.queue().await[0].id, extension.id);

    bob.approve(&extension.id).await.unwrap();
    let after = alice.grant(&grant_id).await.unwrap();
    assert_eq!(after.state, GrantState::Active);
    assert_eq!(
        after.expires_at,
        before.expires_at + TimeDelta::seconds(600)
    );
}

#[tokio::test]
async fn an_extension_never_reaches_past_the_roles_maximum_from_now() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    // logs: max 1h. A 50m grant extended by 50m would end 1h40m from now.
    let grant = active_grant(&broker, "alice", "logs", Some(3000)).await;
    alice.extend(&grant.id, 3000).await.unwrap();
    let after = alice.grant(&grant.id).await.unwrap();
    let remaining = after.expires_at - Utc::now();
    assert!(remaining <= TimeDelta::hours(1), "{remaining}");
    assert!(after.expires_at > grant.expires_at);
    refused(
        alice.extend(&grant.id, 7200).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DurationTooLong,
    );
    // Ending as late as the role allows from now, it has nothing to add:
    // refused, and nothing is audited as an extension.
    let extended = broker
        .as_user("erin")
        .audit()
        .await
        .iter()
        .filter(|e| e.kind == hoist_api::AuditKind::Extended)
        .count();
    let message = refused(
        alice.extend(&grant.id, 600).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(message.contains("nothing to add"), "{message}");
    assert_eq!(
        broker
            .as_user("erin")
            .audit()
            .await
            .iter()
            .filter(|e| e.kind == hoist_api::AuditKind::Extended)
            .count(),
        extended
    );
}

#[tokio::test]
async fn a_grant_is_never_active_after_its_end() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(1)).await;
    let credential = alice.credential(&grant.id).await.unwrap();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Whatever the reaper has done, reads already say expired.
    let seen = alice.grant(&grant.id).await.unwrap();
    assert_eq!(seen.state, GrantState::Expired);
    assert_eq!(seen.ended_at, Some(grant.expires_at));
    assert!(alice.grants().await.is_empty());
    refused(
        alice.credential(&grant.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    refused(
        alice.extend(&grant.id, 60).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(!alice.introspect(&credential.token).await.active);

    eventually(Duration::from_secs(5), || async {
        alice
            .audit()
            .await
            .iter()
            .any(|e| e.kind == AuditKind::Expired && e.actor == "hoistd")
    })
    .await;
    assert_eq!(
        alice.request(&grant.request_id).await.unwrap().state,
        RequestState::Expired
    );
}

#[tokio::test]
async fn expiry_while_the_broker_is_down_is_recorded_at_restart() {
    let mut broker = TestBroker::start().await;
    let grant = active_grant(&broker, "alice", "logs", Some(1)).await;
    broker.stop().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    broker.restart().await;

    let alice = broker.as_user("alice");
    let seen = alice.grant(&grant.id).await.unwrap();
    assert_eq!(seen.state, GrantState::Expired);
    // Recorded before the broker served its first call, not on a later tick.
    let expired: Vec<_> = alice
        .audit()
        .await
        .into_iter()
        .filter(|e| e.kind == AuditKind::Expired)
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].grant_id.as_deref(), Some(grant.id.as_str()));
    assert_eq!(
        expired[0].details["expires_at"],
        serde_json::json!(grant.expires_at)
    );
}

#[tokio::test]
async fn credentials_are_short_lived_verifiable_and_die_with_the_grant() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(120)).await;

    let credential = alice.credential(&grant.id).await.unwrap();
    assert!(credential.expires_at <= grant.expires_at);
    assert!(credential.expires_at - credential.issued_at <= TimeDelta::minutes(5));

    // Verify offline with the published key, as a target system would.
    let jwks: Jwks = alice.get("/.well-known/jwks.json").await.unwrap();
    let header = jsonwebtoken::decode_header(&credential.token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let key = jwks
        .keys
        .iter()
        .find(|k| Some(&k.kid) == header.kid.as_ref())
        .unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_ed_components(&key.x).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["logs://prod"]);
    let claims =
        jsonwebtoken::decode::<CredentialClaims>(&credential.token, &decoding, &validation)
            .unwrap()
            .claims;
    assert_eq!(
        (claims.sub.as_str(), claims.role.as_str()),
        ("alice", "logs")
    );
    assert_eq!(claims.grant_id, grant.id);
    assert!(claims.exp <= grant.expires_at.timestamp());

    // Online: active until revoked, then inactive at once.
    let target = broker.as_user("frank");
    let live = target.introspect(&credential.token).await;
    assert!(live.active);
    assert_eq!(live.sub.as_deref(), Some("alice"));
    alice.revoke(&grant.id, "finished").await.unwrap();
    let dead = target.introspect(&credential.token).await;
    assert!(!dead.active);
    assert_eq!(
        serde_json::to_value(&dead).unwrap(),
        serde_json::json!({"active": false})
    );
    assert!(!target.introspect("not-a-token").await.active);

    let kinds: Vec<AuditKind> = alice.audit().await.iter().map(|e| e.kind.clone()).collect();
    assert!(kinds.contains(&AuditKind::CredentialIssued));
    assert!(kinds.contains(&AuditKind::CredentialUsed));

    // Only the holder gets credentials.
    let other = active_grant(&broker, "alice", "secret", None).await;
    refused(
        broker.as_user("bob").credential(&other.id).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
}

/// A credential's `exp` is exclusive and checked to the millisecond: it is
/// dead from the first moment of its `exp` second, not a second later.
#[tokio::test]
async fn no_cache_keeps_a_credential_or_what_the_broker_answers() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(120)).await;
    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("/v1/grants/{}/credential", grant.id),
        ),
        (reqwest::Method::GET, format!("/v1/grants/{}", grant.id)),
        (reqwest::Method::GET, "/v1/requests".to_string()),
    ] {
        let response = alice.raw(method, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()[reqwest::header::CACHE_CONTROL],
            "no-store",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_credential_is_inactive_from_the_instant_of_its_exp() {
    // `exp` is whole seconds, so a 1 s credential could live a few ms; 3 s
    // leaves it at least 2 s, for the check that it is alive at first.
    let broker = TestBroker::with_settings(r#"credential_ttl = "3s""#).await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(600)).await;
    let credential = alice.credential(&grant.id).await.unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            credential.token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let exp_ms = claims["exp"].as_i64().unwrap() * 1000;
    assert_eq!(credential.expires_at.timestamp_millis(), exp_ms);
    let target = broker.as_user("frank");
    assert!(target.introspect(&credential.token).await.active);

    // Just past `exp`, within the same second: the broker shares this clock.
    let past = exp_ms + 100 - Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(past.max(0) as u64)).await;
    assert!(!target.introspect(&credential.token).await.active);
}

/// A credential never outlives its grant, whatever the two lengths.
#[tokio::test]
async fn a_credential_never_outlives_its_grant() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let grant = active_grant(&broker, "alice", "logs", Some(2)).await;
    let credential = alice.credential(&grant.id).await.unwrap();
    // The grant ends mid-second; the credential's whole-second `exp` is
    // rounded down to it, never up past it.
    assert!(credential.expires_at <= grant.expires_at);
}
