//! Proves the OpenID provider harness is real: a provider from the npm registry
//! that signs real tokens through real device and code flows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/oidc.rs"]
mod oidc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc::{DEVICE_CODE_GRANT, Provider, jwt_claims, jwt_header, ok_json, post_form};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

fn groups(claims: &Value) -> Vec<&str> {
    claims["groups"]
        .as_array()
        .expect("groups is an array")
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn discovery_names_the_device_authorization_endpoint() {
    let provider = Provider::start().await;
    let discovery = provider.discovery().await;

    assert_eq!(discovery["issuer"], provider.issuer.as_str());
    assert_eq!(
        discovery["device_authorization_endpoint"],
        format!("{}/device/auth", provider.issuer)
    );
    assert!(discovery["revocation_endpoint"].is_string());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
}

#[tokio::test]
async fn device_flow_gives_bob_a_signed_id_token_with_his_groups() {
    let provider = Provider::start().await;
    let tokens = provider.device_flow_tokens("bob", "hoist").await;

    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let claims = jwt_claims(id_token);
    assert_eq!(claims["iss"], provider.issuer.as_str());
    assert_eq!(claims["aud"], "hoist");
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["preferred_username"], "bob");
    assert_eq!(groups(&claims), ["engineers", "prod-approvers"]);
    assert!(
        tokens["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "no refresh_token in {tokens}"
    );

    // Signed with RS256 by a key the provider publishes.
    let header = jwt_header(id_token);
    assert_eq!(header["alg"], "RS256");
    let jwks = provider.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["kid"] == header["kid"]),
        "kid {} is not in {jwks}",
        header["kid"]
    );
}

#[tokio::test]
async fn unknown_users_sign_in_with_no_groups() {
    let provider = Provider::start().await;
    let tokens = provider.device_flow_tokens("zed", "hoist").await;

    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], "zed");
    assert!(groups(&claims).is_empty());
}

#[tokio::test]
async fn typed_user_code_approves_the_device_and_polling_waits_for_it() {
    let provider = Provider::start().await;
    let discovery = provider.discovery().await;
    let device = post_form(
        discovery["device_authorization_endpoint"].as_str().unwrap(),
        &[("client_id", "hoist"), ("scope", "openid offline_access")],
    )
    .await;
    let device = ok_json(device, "device authorization").await;
    let poll = [
        ("grant_type", DEVICE_CODE_GRANT),
        ("device_code", device["device_code"].as_str().unwrap()),
        ("client_id", "hoist"),
    ];
    let token_endpoint = discovery["token_endpoint"].as_str().unwrap();

    let pending = post_form(token_endpoint, &poll).await;
    assert_eq!(pending.status(), 400);
    let pending: Value = pending.json().await.unwrap();
    assert_eq!(pending["error"], "authorization_pending");

    provider
        .approve_device_code(
            device["verification_uri"].as_str().unwrap(),
            device["user_code"].as_str().unwrap(),
            "carol",
        )
        .await;

    let tokens = ok_json(post_form(token_endpoint, &poll).await, "device token").await;
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], "carol");
    assert_eq!(groups(&claims), ["engineers", "oncall"]);
}

#[tokio::test]
async fn refresh_grant_returns_a_new_id_token() {
    let provider = Provider::start().await;
    let tokens = provider.device_flow_tokens("alice", "hoist").await;

    let refreshed = provider
        .refresh_with(tokens["refresh_token"].as_str().unwrap())
        .await;
    let refreshed = ok_json(refreshed, "refresh").await;

    // ID tokens carry no jti: one minted in the same second as the first is
    // byte-identical to it, so compare claims rather than bytes.
    let id_token = refreshed["id_token"].as_str().expect("a new id_token");
    let claims = jwt_claims(id_token);
    let first = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert!(claims["iat"].as_i64() >= first["iat"].as_i64());
    assert_eq!(claims["aud"], "hoist");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(groups(&claims), ["engineers"]);
    // Public clients get a rotated refresh token on every use.
    let rotated = refreshed["refresh_token"]
        .as_str()
        .expect("a refresh_token");
    assert_ne!(rotated, tokens["refresh_token"].as_str().unwrap());

    // Replaying the spent one is taken as theft: it fails, and so does the
    // whole grant, rotated token included.
    for replayed in [tokens["refresh_token"].as_str().unwrap(), rotated] {
        let refused = provider.refresh_with(replayed).await;
        assert_eq!(refused.status(), 400);
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"], "invalid_grant");
    }
}

#[tokio::test]
async fn token_lifetime_follows_start_with_ttl() {
    let provider = Provider::start_with_ttl(2).await;
    let tokens = provider.device_flow_tokens("dave", "hoist").await;

    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );
    assert_eq!(tokens["expires_in"], 2);
}

#[tokio::test]
async fn other_app_tokens_carry_their_own_audience() {
    let provider = Provider::start().await;
    let tokens = provider.device_flow_tokens("bob", "other-app").await;

    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "other-app");
    assert_eq!(claims["iss"], provider.issuer.as_str());
}

#[tokio::test]
async fn revoked_refresh_token_no_longer_refreshes() {
    let provider = Provider::start().await;
    let tokens = provider.device_flow_tokens("erin", "hoist").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let revoked = post_form(
        &provider.endpoint("revocation_endpoint").await,
        &[
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
            ("client_id", "hoist"),
        ],
    )
    .await;
    assert_eq!(revoked.status(), 200, "{}", revoked.text().await.unwrap());

    let refused = provider.refresh_with(refresh_token).await;
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_grant");
}

#[tokio::test]
async fn code_flow_with_pkce_accepts_any_loopback_port() {
    let provider = Provider::start().await;
    // A real listener's port, as the client's would be; the test never serves on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect_uri = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr().unwrap().port()
    );
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));

    let mut authorization = Url::parse(&provider.endpoint("authorization_endpoint").await).unwrap();
    authorization
        .query_pairs_mut()
        .append_pair("client_id", "hoist")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid offline_access")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("state", "state-1")
        .append_pair("nonce", "nonce-1")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    let callback = provider
        .login_code_flow(authorization.as_str(), "alice")
        .await;
    let callback = Url::parse(&callback).unwrap();
    assert!(callback.as_str().starts_with(&redirect_uri), "{callback}");
    let query = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(query("state").as_deref(), Some("state-1"));
    assert_eq!(query("iss").as_deref(), Some(provider.issuer.as_str()));
    let code = query("code").unwrap_or_else(|| panic!("no code in {callback}"));

    let tokens = post_form(
        &provider.endpoint("token_endpoint").await,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", "hoist"),
        ],
    )
    .await;
    let tokens = ok_json(tokens, "code exchange").await;
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "hoist");
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(groups(&claims), ["engineers"]);
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn code_flow_without_pkce_is_refused() {
    let provider = Provider::start().await;
    let mut authorization = Url::parse(&provider.endpoint("authorization_endpoint").await).unwrap();
    authorization
        .query_pairs_mut()
        .append_pair("client_id", "hoist")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", "http://127.0.0.1:4242/callback")
        .append_pair("state", "state-2");

    let callback = provider
        .login_code_flow(authorization.as_str(), "alice")
        .await;
    let callback = Url::parse(&callback).unwrap();
    let error = callback
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned());
    assert_eq!(error.as_deref(), Some("invalid_request"), "{callback}");
}
