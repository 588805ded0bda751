//! The OpenID key cache under a slow provider: a token whose key is cached
//! never waits on a fetch, tokens with unknown key ids share one fetch and
//! are then answered as unknown without another, and a fetch is bounded;
//! and a token dated in the future is refused.

use hoist_api::{ErrorCode, Me};
use reqwest::StatusCode;

use crate::helpers::*;
use crate::issuer::Issuer;

async fn broker_trusting(issuer: &Issuer, extra: &str) -> TestBroker {
    TestBroker::builder()
        .policy(&(policy_text("") + &issuer.policy(extra)))
        .start()
        .await
}

#[tokio::test]
async fn a_token_with_a_cached_key_never_waits_on_a_slow_fetch() {
    let issuer = Issuer::start().await;
    let broker = broker_trusting(&issuer, r#"keys_refetch_after = "1s""#).await;
    let known = broker.with_token(&issuer.token("k1", "zed", 300, serde_json::json!({})));
    assert_eq!(known.get::<Me>("/v1/me").await.unwrap().user, "zed");
    assert_eq!(issuer.jwks_fetches(), 1);

    // Past the refetch pause, an unknown key id makes the broker ask again,
    // and the provider sits on the answer.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    issuer.hold();
    let unknown = broker.with_token(&issuer.token("k2", "zed", 300, serde_json::json!({})));
    let first = tokio::spawn({
        let unknown = unknown.clone();
        async move { unknown.get::<Me>("/v1/me").await }
    });
    issuer.arrived().await;
    let second = tokio::spawn({
        let unknown = unknown.clone();
        async move { unknown.get::<Me>("/v1/me").await }
    });

    // The cached key answers while that fetch is still held.
    assert_eq!(known.get::<Me>("/v1/me").await.unwrap().user, "zed");
    assert!(
        !first.is_finished() && !second.is_finished(),
        "the valid token was answered only after the fetch ended"
    );

    issuer.release();
    for waiting in [first, second] {
        let message = refused(
            waiting.await.unwrap(),
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
        );
        assert!(message.contains("no signing key `k2`"), "{message}");
    }
    assert_eq!(issuer.jwks_fetches(), 2, "the two waited on one fetch");

    // Known to be unknown now: refused at once, and the provider not asked.
    let message = refused(
        unknown.get::<Me>("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
    );
    assert!(message.contains("no signing key `k2`"), "{message}");
    assert_eq!(issuer.jwks_fetches(), 2);
    assert_eq!(known.get::<Me>("/v1/me").await.unwrap().user, "zed");
}

#[tokio::test]
async fn a_fetch_that_gets_no_answer_is_cut_off() {
    let issuer = Issuer::start().await;
    let broker = broker_trusting(&issuer, r#"keys_timeout = "1s""#).await;
    issuer.hold();
    let client = broker.with_token(&issuer.token("k1", "zed", 300, serde_json::json!({})));
    // Not the caller's fault, nor a sign-in's to mend: a 503 to try again.
    let message = refused(
        client.get::<Me>("/v1/me").await,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
    );
    assert!(
        message.contains("keys could not be fetched: no answer within 1s"),
        "{message}"
    );
    issuer.release();
}

/// A token that says it was issued, or its person signed in, later than
/// now (past the leeway) is refused: its sign-in would otherwise pass every
/// step-up check for as long as the token lives.
#[tokio::test]
async fn a_token_from_the_future_is_refused() {
    let issuer = Issuer::start().await;
    let broker = broker_trusting(&issuer, r#"leeway = "30s""#).await;
    let now = chrono::Utc::now().timestamp();
    for claim in ["iat", "auth_time"] {
        let token = issuer.token("k1", "zed", 300, serde_json::json!({ claim: now + 3600 }));
        let message = refused(
            broker.with_token(&token).get::<Me>("/v1/me").await,
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
        );
        assert!(
            message.contains(&format!("`{claim}` is in the future")),
            "{message}"
        );
    }
    // Within the leeway, a provider's clock a little ahead is taken.
    let ahead = issuer.token(
        "k1",
        "zed",
        300,
        serde_json::json!({ "iat": now + 10, "auth_time": now + 10 }),
    );
    assert_eq!(
        broker
            .with_token(&ahead)
            .get::<Me>("/v1/me")
            .await
            .unwrap()
            .user,
        "zed"
    );
}

/// Past `keys_max_age` the cached keys are not trusted: while the provider
/// cannot give fresh ones, even a token signed by a key it once published
/// is refused, as unavailable, and taken again once it answers.
#[tokio::test]
async fn keys_past_their_max_age_are_not_trusted_while_the_provider_fails() {
    let issuer = Issuer::start().await;
    let broker = broker_trusting(
        &issuer,
        "keys_ttl = \"1s\"\nkeys_max_age = \"2s\"\nkeys_refetch_after = \"1s\"",
    )
    .await;
    let client = broker.with_token(&issuer.token("k1", "zed", 300, serde_json::json!({})));
    assert_eq!(client.get::<Me>("/v1/me").await.unwrap().user, "zed");
    let loaded = std::time::Instant::now();
    issuer.fail(true);

    // Stale but not too old: answered from the cache while the refresh fails.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(client.get::<Me>("/v1/me").await.unwrap().user, "zed");

    tokio::time::sleep(std::time::Duration::from_millis(2300).saturating_sub(loaded.elapsed()))
        .await;
    let message = refused(
        client.get::<Me>("/v1/me").await,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
    );
    assert!(message.contains("keys could not be fetched"), "{message}");

    issuer.fail(false);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(client.get::<Me>("/v1/me").await.unwrap().user, "zed");
}

/// A key the provider stops publishing is trusted until the keys are
/// fetched again, `keys_ttl` after the last fetch, and not after.
#[tokio::test]
async fn a_key_the_provider_retires_stops_counting_after_keys_ttl() {
    let issuer = Issuer::start().await;
    let broker = broker_trusting(&issuer, "keys_ttl = \"1s\"\nkeys_refetch_after = \"1s\"").await;
    let retired = broker.with_token(&issuer.token("k1", "zed", 300, serde_json::json!({})));
    assert_eq!(retired.get::<Me>("/v1/me").await.unwrap().user, "zed");
    issuer.publish(&["k2"]);

    // Answered from the cache, which starts the fetch that drops it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(retired.get::<Me>("/v1/me").await.unwrap().user, "zed");
    // The fetch is under way; once its set is in, k1 is unknown.
    let mut answer = retired.get::<Me>("/v1/me").await;
    for _ in 0..250 {
        if answer.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        answer = retired.get::<Me>("/v1/me").await;
    }
    let message = refused(answer, StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated);
    assert!(message.contains("no signing key `k1`"), "{message}");
    assert_eq!(issuer.jwks_fetches(), 2);
    let current = broker.with_token(&issuer.token("k2", "zed", 300, serde_json::json!({})));
    assert_eq!(current.get::<Me>("/v1/me").await.unwrap().user, "zed");
}

#[test]
fn the_key_fetch_settings_are_checked() {
    let issuer = "\n[[oidc]]\nissuer = \"https://id.example\"\nclient_id = \"hoist\"\n";
    for (line, needle) in [
        (
            "keys_timeout = \"0s\"",
            "keys_timeout must be longer than zero",
        ),
        (
            "keys_refetch_after = \"100ms\"",
            "keys_refetch_after must be at least 1s",
        ),
        (
            "keys_ttl = \"10s\"",
            "oidc keys_ttl (10s) is shorter than keys_refetch_after (30s)",
        ),
        (
            "keys_max_age = \"10m\"",
            "oidc keys_max_age (10m) is shorter than keys_ttl (1h)",
        ),
        // A leeway is for clock skew: a month would take any token expired
        // within it.
        (
            "leeway = \"30d\"",
            "oidc leeway 2592000s is above the most allowed, 300s",
        ),
    ] {
        let text = format!("{}{issuer}{line}\n", policy_text(""));
        let err = hoistd::Policy::parse("p.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    // Unless given, keys are fetched again no sooner than they may be.
    let text = format!("{}{issuer}keys_refetch_after = \"2h\"\n", policy_text(""));
    let policy = hoistd::Policy::parse("p.toml", &text).unwrap();
    assert_eq!(
        policy.oidc[0].keys_ttl,
        std::time::Duration::from_secs(7_200)
    );
}
