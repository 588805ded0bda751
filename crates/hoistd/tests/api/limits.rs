//! Per-identity rate limits on credential fetches, introspection and
//! filing (429 with Retry-After and the JSON error body), and repeated uses
//! of one grant audited once with a count rather than once each.

use hoist_api::{ApiError, AuditKind, ErrorCode};
use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// The id of the `logs` grant `client` files for (no approval needed).
async fn logs_grant(client: &Client) -> String {
    client
        .file(&request("logs", "reading"))
        .await
        .unwrap()
        .grant_id
        .unwrap()
}

/// Asserts a 429 with a Retry-After of at least a second and the error body.
async fn limited(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let error: ApiError = response.json().await.unwrap();
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert!(error.message.contains(what), "{}", error.message);
}

#[tokio::test]
async fn each_identity_is_limited_on_credentials_introspection_and_filing() {
    let broker = TestBroker::with_settings(
        "credential_fetch_rate = \"3/m\"\nintrospection_rate = \"2/m\"\nfiling_rate = \"2/m\"",
    )
    .await;
    let (alice, dave, frank) = (
        broker.as_user("alice"),
        broker.as_user("dave"),
        broker.as_user("frank"),
    );
    let grant = logs_grant(&alice).await;
    let path = format!("/v1/grants/{grant}/credential");
    for _ in 0..3 {
        alice.credential(&grant).await.unwrap();
    }
    limited(
        alice.raw(Method::GET, &path).send().await.unwrap(),
        "too many credential fetches: at most 3 per 1m",
    )
    .await;
    // Another identity has its own allowance.
    let his = logs_grant(&dave).await;
    let credential = dave.credential(&his).await.unwrap();

    for _ in 0..2 {
        assert!(frank.introspect(&credential.token).await.active);
    }
    limited(
        frank
            .raw(Method::POST, "/v1/introspect")
            .form(&[("token", credential.token.as_str())])
            .send()
            .await
            .unwrap(),
        "too many introspections",
    )
    .await;
    assert!(dave.introspect(&credential.token).await.active);

    // alice filed once; one more, then no more.
    alice.file(&request("secret", "one more")).await.unwrap();
    limited(
        alice
            .raw(Method::POST, "/v1/requests")
            .json(&db_request())
            .send()
            .await
            .unwrap(),
        "too many filings",
    )
    .await;
    assert_eq!(
        alice.mine().await.len(),
        2,
        "the refused filing wrote nothing"
    );
    // An extension is a filing too: the limit holds for it.
    limited(
        alice
            .raw(Method::POST, &format!("/v1/grants/{grant}/extend"))
            .json(&serde_json::json!({"duration_secs": 600}))
            .send()
            .await
            .unwrap(),
        "too many filings",
    )
    .await;
    assert_eq!(alice.mine().await.len(), 2, "no extension was filed");

    // A reviewer's claims and releases, each a write and an event to every
    // approver, have a bucket of their own at the filing rate; a release
    // of nothing claimed writes nothing.
    let bob = broker.as_user("bob");
    let waiting = dave.file(&db_request()).await.unwrap();
    let claim = format!("/v1/requests/{}/claim", waiting.id);
    let log = broker.as_user("erin").audit().await.len();
    let released = bob.raw(Method::DELETE, &claim).send().await.unwrap();
    assert_eq!(released.status(), StatusCode::OK);
    assert_eq!(broker.as_user("erin").audit().await.len(), log);
    let claimed = bob.raw(Method::POST, &claim).send().await.unwrap();
    assert_eq!(claimed.status(), StatusCode::OK);
    limited(
        bob.raw(Method::DELETE, &claim).send().await.unwrap(),
        "too many claims and releases",
    )
    .await;

    // Revoking, cancelling and acknowledging take the writers' lock before
    // they know whether they change anything: a flood of them, of ids that
    // are not the caller's, is turned away before it, at the introspection
    // rate, in a bucket of their own.
    for _ in 0..2 {
        let foreign = frank
            .raw(Method::POST, &format!("/v1/grants/{his}/revoke"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    }
    limited(
        frank
            .raw(Method::POST, "/v1/requests/req_nothing/cancel")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
        "too many revocations, cancellations and acknowledgements",
    )
    .await;
    alice.revoke(&grant, "done").await.unwrap();
}

/// A window's count is audited within seconds of its end by the instance
/// that counted it, with no reaper running there (an instance that does not
/// lead runs none), not only when the broker stops.
#[tokio::test]
async fn a_windows_count_is_audited_when_it_ends_without_the_reaper() {
    let broker = TestBroker::builder().reaper_held().start().await;
    let alice = broker.as_user("alice");
    let grant = logs_grant(&alice).await;
    let token = alice.credential(&grant).await.unwrap().token;
    let frank = broker.as_user("frank");
    for _ in 0..3 {
        assert!(frank.introspect(&token).await.active);
    }
    let auditor = broker.as_user("erin");
    let ended = hoistd::broker::REPEAT_WINDOW.to_std().unwrap();
    eventually(ended + std::time::Duration::from_secs(20), || async {
        auditor.audit().await.iter().any(|e| {
            e.kind == AuditKind::CredentialUsed
                && e.details.get("repeats").and_then(|r| r.as_u64()) == Some(2)
        })
    })
    .await;
}

#[tokio::test]
async fn repeated_uses_of_a_credential_are_audited_once_with_a_count() {
    let mut broker = TestBroker::start().await;
    let (alice, frank) = (broker.as_user("alice"), broker.as_user("frank"));
    let grant = logs_grant(&alice).await;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(alice.credential(&grant).await.unwrap().token);
    }
    let (first, last) = (&tokens[0], &tokens[4]);
    for _ in 0..10 {
        assert!(frank.introspect(last).await.active);
    }
    assert!(frank.introspect(first).await.active);
    let count = |log: &[hoist_api::AuditEvent], kind| log.iter().filter(|e| e.kind == kind).count();
    let jtis = |log: &[hoist_api::AuditEvent], kind| {
        log.iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.details["jti"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let jti = |token: &str| {
        crate::oidc::jwt_claims(token)["jti"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let log = broker.as_user("erin").audit().await;
    // Each credential is a bearer token of its own: each issuance is on
    // record with its jti.
    assert_eq!(count(&log, AuditKind::CredentialIssued), 5);
    assert_eq!(
        jtis(&log, AuditKind::CredentialIssued),
        tokens.iter().map(|t| jti(t)).collect()
    );
    // Each credential's first use is on record; the repeats of one are
    // counted.
    assert_eq!(
        jtis(&log, AuditKind::CredentialUsed),
        [jti(first), jti(last)].into_iter().collect()
    );
    assert_eq!(count(&log, AuditKind::CredentialUsed), 2);

    // Their counts are written when the window ends, or the broker stops.
    broker.restart().await;
    let log = broker.as_user("erin").audit().await;
    let repeats = |kind| {
        log.iter()
            .filter(|e| e.kind == kind)
            .filter_map(|e| e.details.get("repeats").and_then(|r| r.as_u64()))
            .collect::<Vec<_>>()
    };
    assert_eq!(repeats(AuditKind::CredentialIssued), Vec::<u64>::new());
    assert_eq!(repeats(AuditKind::CredentialUsed), [9]);
    assert_eq!(
        hoistd::audit::verify(broker.broker().store()).unwrap(),
        hoistd::audit::Verdict::Intact {
            entries: log.len() as u64
        }
    );
}
