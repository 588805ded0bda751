//! Workload identities against a real OpenID provider minting client
//! credentials JWTs (`tests/oidc-provider`): the exchange (RFC 8693), the
//! task's credential and its `act`, the workload's own revocation, every bad
//! input refused with its code and audited, the separation of people's and
//! workloads' routes, a role a person must approve, and a job that gives up
//! withdrawing its task.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hoist_api::{
    AuditKind, Decision, ErrorCode, Grant, JWT_TOKEN_TYPE, Me, OAuthError, RequestState,
    TOKEN_EXCHANGE_GRANT, TaskWithdrawn, TokenExchangeResponse, TokenPending, WorkloadErrorCode,
    WorkloadRevoked,
};
use hoistd::broker::LAPSE_MARGIN_SECS;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::oidc::{Provider, jwt_claims};

const AUDIENCE: &str = "https://hoist.test/ci";

/// The test policy with `deploy` (automatic) and `k8s` (a person approves)
/// for `deploy-bot` from `issuer` on `main` of acme/app, and `extra` after.
pub(crate) fn policy(issuer: &str, extra: &str) -> String {
    let base = policy_text("");
    format!(
        r#"{base}
[[roles]]
id = "deploy"
name = "Deploy"
scope = "deploy://prod"
eligible_groups = ["eng"]
default_duration = "10m"
max_duration = "1h"
approver_groups = ["approvers"]

[[workloads]]
name = "ci"
issuer = "{issuer}"
audience = "{AUDIENCE}"
leeway = "0s"
run_url = "https://ci.example/{{repository}}/runs/{{run_id}}"
[workloads.claims]
sub = "deploy-bot"
repository = "acme/*"
ref = "refs/heads/main"
[[workloads.roles]]
role = "deploy"
max_ttl_minutes = 10
[[workloads.roles]]
role = "k8s"
max_ttl_minutes = 15
approval = "person"
{extra}
"#
    )
}

fn main_claims() -> Value {
    json!({ "repository": "acme/app", "ref": "refs/heads/main", "run_id": 4242 })
}

pub(crate) async fn ci_token(provider: &Provider) -> String {
    provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), None)
        .await
}

/// What `POST /v1/token` answered: its status and JSON body.
async fn exchange(broker: &TestBroker, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/token", broker.url()))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "token responses are never cached"
    );
    (status, response.json().await.unwrap())
}

/// The exchange's form for `token` and `role`; a withdrawal presents it too.
pub(crate) fn task_form(token: &str, role: &str) -> [(&'static str, String); 4] {
    [
        ("grant_type", TOKEN_EXCHANGE_GRANT.to_string()),
        ("subject_token", token.to_string()),
        ("subject_token_type", JWT_TOKEN_TYPE.to_string()),
        ("resource", format!("urn:hoist:role:{role}")),
    ]
}

pub(crate) async fn exchange_for(
    broker: &TestBroker,
    token: &str,
    role: &str,
) -> (StatusCode, Value) {
    let form = task_form(token, role);
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange(broker, &fields).await
}

pub(crate) fn issued(answer: (StatusCode, Value)) -> TokenExchangeResponse {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    serde_json::from_value(answer.1).unwrap()
}

/// Asserts the RFC 6749 error with this code, and returns its description.
fn refused_with(answer: (StatusCode, Value), code: WorkloadErrorCode) -> String {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    let error: OAuthError = serde_json::from_value(answer.1).unwrap();
    assert_eq!(error.code, code, "{}", error.error_description);
    assert_eq!(error.error, code.oauth_error());
    assert!(!error.error_description.is_empty());
    error.error_description
}

async fn revoke(broker: &TestBroker, credential: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/token/revoke", broker.url()))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// A JWT with this header and these claims and a signature of garbage: what
/// an attacker can make without the issuer's key.
fn forged(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn hs256(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test]
async fn a_job_exchanges_its_token_uses_the_credential_and_revokes_it() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let token = ci_token(&provider).await;
    let jti = jwt_claims(&token)["jti"].as_str().unwrap().to_string();

    let credential = issued(exchange_for(&broker, &token, "deploy").await);
    assert_eq!(credential.scope, "deploy");
    assert_eq!(credential.token_type, "Bearer");
    assert_eq!(credential.issued_token_type, JWT_TOKEN_TYPE);
    assert!(credential.expires_in <= 600 && credential.expires_in > 0);
    let claims = jwt_claims(&credential.access_token);
    let principal = "workload:ci:deploy-bot";
    assert_eq!(claims["act"], json!({ "sub": principal }));
    assert_eq!(claims["sub"], principal);
    assert_eq!(claims["grant_id"], credential.grant_id.as_str());
    assert_eq!(claims["exp"], credential.expires_at.timestamp());

    // Approvers and auditors see the workload's grant; its holder is the
    // workload.
    let grant: Grant = broker
        .as_user("erin")
        .grant(&credential.grant_id)
        .await
        .unwrap();
    assert_eq!(grant.holder, principal);
    assert_eq!(grant.state.as_str(), "active");
    assert!(grant.expires_at <= grant.starts_at + chrono::TimeDelta::minutes(10));
    assert!(grant.justification.contains("repository: acme/app"));

    // The workload introspects its own credential.
    let workload = broker.with_token(&credential.access_token);
    assert!(workload.introspect(&credential.access_token).await.active);

    // Its credential ends the task.
    let (status, body) = revoke(&broker, &credential.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revoked: WorkloadRevoked = serde_json::from_value(body).unwrap();
    assert_eq!(revoked.state, "revoked");
    // Its credential ended with its grant, as a caller too, before its exp.
    let (status, body) = workload
        .call::<serde_json::Value>(
            workload
                .raw(reqwest::Method::POST, "/v1/introspect")
                .form(&[("token", credential.access_token.as_str())]),
        )
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
    let asked = broker
        .as_user("erin")
        .introspect(&credential.access_token)
        .await;
    assert!(!asked.active);
    let grant = broker
        .as_user("erin")
        .grant(&credential.grant_id)
        .await
        .unwrap();
    assert_eq!(grant.revoked_by.as_deref(), Some(principal));

    // Issuance, approval, use and revocation are separate events, each with
    // the workload's identity.
    let audit = broker.as_user("erin").audit().await;
    let of_grant: Vec<_> = audit
        .iter()
        .filter(|e| e.grant_id.as_deref() == Some(credential.grant_id.as_str()))
        .map(|e| (e.kind.clone(), e.actor.as_str()))
        .collect();
    for expected in [
        (AuditKind::Activated, hoist_api::SYSTEM_ACTOR),
        (AuditKind::CredentialIssued, principal),
        (AuditKind::CredentialUsed, principal),
        (AuditKind::Revoked, principal),
    ] {
        assert!(of_grant.contains(&expected), "{expected:?} in {of_grant:?}");
    }
    let requested = audit
        .iter()
        .find(|e| e.kind == AuditKind::Requested && e.actor == principal)
        .unwrap();
    assert_eq!(requested.details["workload"]["task"], jti);
    assert_eq!(
        requested.details["workload"]["claims"]["ref"],
        "refs/heads/main"
    );
    assert_eq!(
        requested.details["workload"]["run_url"],
        "https://ci.example/acme/app/runs/4242"
    );
    assert!(audit.iter().any(|e| {
        e.kind == AuditKind::Approved
            && e.request_id == requested.request_id
            && e.reason
                .as_deref()
                .is_some_and(|r| r.contains("automatically"))
    }));
    assert!(
        audit
            .iter()
            .all(|e| !serde_json::to_string(e).unwrap().contains(&token)),
        "the workload's token is never in the audit log"
    );

    // Revoking again changes nothing.
    let (status, body) = revoke(&broker, &credential.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Every bad input: refused with the code that names it, audited as
/// `workload_refused` with that code, and nothing granted.
#[tokio::test]
async fn every_bad_input_is_refused_with_its_code_audited_and_grants_nothing() {
    let provider = Provider::start().await;
    let stranger = Provider::start().await;
    let people = Provider::start().await;
    let extra = format!(
        "[[oidc]]\nissuer = \"{}\"\nclient_id = \"hoist\"\n",
        people.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, &extra))
        .start()
        .await;
    let good = main_claims();
    let mut cases: Vec<(WorkloadErrorCode, String, &str, Option<&str>)> = Vec::new();

    // An issuer no rule names, and one that only signs people in.
    cases.push((
        WorkloadErrorCode::UnknownIssuer,
        stranger
            .workload_token("deploy-bot", AUDIENCE, &good, None)
            .await,
        "deploy",
        None,
    ));
    cases.push((
        WorkloadErrorCode::WrongIssuer,
        people
            .workload_token("deploy-bot", AUDIENCE, &good, None)
            .await,
        "deploy",
        None,
    ));
    cases.push((
        WorkloadErrorCode::WrongAudience,
        provider
            .workload_token("deploy-bot", "https://hoist.test/elsewhere", &good, None)
            .await,
        "deploy",
        None,
    ));
    cases.push((
        WorkloadErrorCode::SubjectMismatch,
        provider
            .workload_token("other-bot", AUDIENCE, &good, None)
            .await,
        "deploy",
        None,
    ));
    cases.push((
        WorkloadErrorCode::ClaimMismatch,
        provider
            .workload_token(
                "deploy-bot",
                AUDIENCE,
                &json!({ "repository": "acme/app", "ref": "refs/heads/feature" }),
                None,
            )
            .await,
        "deploy",
        None,
    ));
    cases.push((
        WorkloadErrorCode::RoleNotAllowed,
        ci_token(&provider).await,
        "db",
        None,
    ));
    cases.push((
        WorkloadErrorCode::TtlTooLong,
        ci_token(&provider).await,
        "deploy",
        Some("601"),
    ));
    // `alg: none`, and HS256 signed with the issuer's public key as the
    // secret (the classic key-confusion forgery).
    let now = chrono::Utc::now().timestamp();
    let forged_claims = json!({
        "iss": provider.issuer, "aud": AUDIENCE, "sub": "deploy-bot", "jti": "forged-1",
        "exp": now + 300, "iat": now, "repository": "acme/app", "ref": "refs/heads/main",
    });
    cases.push((
        WorkloadErrorCode::AlgorithmRefused,
        forged(json!({ "alg": "none", "typ": "JWT" }), &forged_claims, b""),
        "deploy",
        None,
    ));
    let public_key = provider.jwks().await["keys"][0]["n"]
        .as_str()
        .unwrap()
        .to_string();
    cases.push((
        WorkloadErrorCode::AlgorithmRefused,
        hs256(&forged_claims, public_key.as_bytes()),
        "deploy",
        None,
    ));
    // A real header and claims with another signature.
    let real = ci_token(&provider).await;
    let mut parts: Vec<&str> = real.split('.').collect();
    let tampered_claims = URL_SAFE_NO_PAD.encode(
        json!({ "sub": "deploy-bot", "jti": "t-1", "iss": provider.issuer, "aud": AUDIENCE,
                "exp": now + 300, "repository": "acme/app", "ref": "refs/heads/main" })
        .to_string(),
    );
    parts[1] = &tampered_claims;
    cases.push((
        WorkloadErrorCode::InvalidSignature,
        parts.join("."),
        "deploy",
        None,
    ));
    // An expired token: one second of life, then a wait past it.
    let short = provider
        .workload_token("deploy-bot", AUDIENCE, &good, Some(1))
        .await;
    let exp = jwt_claims(&short)["exp"].as_i64().unwrap();
    while chrono::Utc::now().timestamp() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    cases.push((WorkloadErrorCode::TokenExpired, short, "deploy", None));

    for (code, token, role, ttl) in &cases {
        let mut fields = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", token.as_str()),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("scope", *role),
        ];
        if let Some(ttl) = ttl {
            fields.push(("requested_ttl", ttl));
        }
        refused_with(exchange(&broker, &fields).await, *code);
    }

    // A replay: the first exchange counts, the second is refused.
    let token = ci_token(&provider).await;
    let first = issued(exchange_for(&broker, &token, "deploy").await);
    refused_with(
        exchange_for(&broker, &token, "deploy").await,
        WorkloadErrorCode::Replayed,
    );
    // The exchange is kept a day past its token's expiry, longer than any
    // leeway lets the token in, so the replay stays refused until then.
    let exp = jwt_claims(&token)["exp"].as_i64().unwrap();
    let expired = chrono::DateTime::from_timestamp(exp, 0).unwrap();
    let purge = |at: chrono::DateTime<chrono::Utc>| {
        let inner = std::sync::Arc::clone(broker.broker());
        tokio::task::spawn_blocking(move || inner.purge(at).unwrap())
    };
    let kept = purge(expired + hoistd::broker::EXCHANGES_KEPT)
        .await
        .unwrap();
    assert_eq!(kept.exchanges, 0);
    refused_with(
        exchange_for(&broker, &token, "deploy").await,
        WorkloadErrorCode::Replayed,
    );
    let forgot = purge(expired + hoistd::broker::EXCHANGES_KEPT + chrono::TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(forgot.exchanges, 1);

    // Malformed forms and grant types, in RFC 6749's terms.
    refused_with(
        exchange(&broker, &[("grant_type", "client_credentials")]).await,
        WorkloadErrorCode::UnsupportedGrantType,
    );
    refused_with(
        exchange(
            &broker,
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token", "not-a-jwt"),
                ("subject_token_type", JWT_TOKEN_TYPE),
                ("scope", "deploy"),
            ],
        )
        .await,
        WorkloadErrorCode::MalformedToken,
    );

    let audit = broker.as_user("erin").audit().await;
    let refusals: Vec<&str> = audit
        .iter()
        .filter(|e| e.kind == AuditKind::WorkloadRefused)
        .filter_map(|e| e.details["code"].as_str())
        .collect();
    for (code, ..) in &cases {
        assert!(refusals.contains(&code.as_str()), "{code} in {refusals:?}");
    }
    assert!(refusals.contains(&"replayed"), "{refusals:?}");
    let replay = audit
        .iter()
        .find(|e| e.kind == AuditKind::WorkloadRefused && e.details["code"] == "replayed")
        .unwrap();
    assert_eq!(replay.actor, "workload:ci:deploy-bot");

    // Only the one good exchange granted anything.
    let grants: Vec<_> = audit
        .iter()
        .filter(|e| e.kind == AuditKind::Activated)
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].grant_id.as_deref(), Some(first.grant_id.as_str()));
}

#[tokio::test]
async fn people_and_workloads_never_use_each_others_routes() {
    let provider = Provider::start().await;
    let extra = format!(
        "[[oidc]]\nissuer = \"{}\"\nclient_id = \"hoist\"\n",
        provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, &extra))
        .start()
        .await;

    // A workload's token as a person's bearer token.
    let token = ci_token(&provider).await;
    let message = refused(
        broker.with_token(&token).get::<Me>("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
    );
    assert!(message.contains("POST /v1/token"), "{message}");

    // A workload's credential on a person's routes.
    let credential = issued(exchange_for(&broker, &token, "deploy").await);
    let workload = broker.with_token(&credential.access_token);
    for answer in [
        workload.get::<Me>("/v1/me").await.map(|_| ()),
        workload.get::<Vec<Grant>>("/v1/grants").await.map(|_| ()),
        workload
            .revoke(&credential.grant_id, "done")
            .await
            .map(|_| ()),
    ] {
        let message = refused(answer, StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated);
        assert!(message.contains("workload's credential"), "{message}");
    }

    // A person's ID token at the exchange: its audience is people's.
    let id_token = provider.device_flow_tokens("alice", "hoist").await["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    refused_with(
        exchange_for(&broker, &id_token, "deploy").await,
        WorkloadErrorCode::WrongAudience,
    );
    // A person's token on the workload's revoke route.
    let (status, body) = revoke(&broker, "t-alice").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "invalid_credential");
    let (status, body) = revoke(&broker, &id_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A person's credential is not a workload's either.
    let alice = broker.as_user("alice");
    let request = alice.file(&request("logs", "tail the logs")).await.unwrap();
    let grant = request.grant_id.unwrap();
    let person_credential = alice.credential(&grant).await.unwrap();
    let (status, _) = revoke(&broker, &person_credential.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(alice.grant(&grant).await.unwrap().state.as_str(), "active");
}

/// A rule whose `max_ttl_minutes` a reload shortened while its job's
/// request waited for approval gives no longer than it now allows, as a
/// role's shortened `max_duration` does.
#[tokio::test]
async fn a_rule_shortened_while_its_request_waits_caps_the_grant() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let token = ci_token(&provider).await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    let shorter = text.replace("max_ttl_minutes = 15", "max_ttl_minutes = 5");
    assert_ne!(shorter, text);
    std::fs::write(broker.policy_path(), shorter).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    for approver in ["bob", "dave"] {
        broker
            .as_user(approver)
            .approve(&pending.request_id)
            .await
            .unwrap();
    }
    let grant_id = broker
        .as_user("bob")
        .request(&pending.request_id)
        .await
        .unwrap()
        .grant_id
        .expect("granted");
    let grant = broker.as_user("bob").grant(&grant_id).await.unwrap();
    let lasts = grant.expires_at - grant.starts_at;
    assert!(
        lasts <= chrono::TimeDelta::minutes(5),
        "{lasts} under a rule of 5 minutes"
    );
}

#[tokio::test]
async fn a_role_a_person_must_approve_waits_for_the_approver() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let token = ci_token(&provider).await;

    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();
    assert_eq!(pending.status, "approval");

    // Polling with the same token is not a replay while nobody decided.
    let (status, _) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The same task for another role is not a poll: it named k8s.
    let other = refused_with(
        exchange_for(&broker, &token, "deploy").await,
        WorkloadErrorCode::Replayed,
    );
    assert!(other.contains("`k8s`"), "{other}");

    // Approvers see it with the workload's claims and run link.
    let bob = broker.as_user("bob");
    let queued = bob
        .queue()
        .await
        .into_iter()
        .find(|r| r.id == pending.request_id)
        .expect("the workload's request is in bob's queue");
    assert_eq!(queued.requester, "workload:ci:deploy-bot");
    // Only the token can collect what an approval gives: the request
    // lapses two poll intervals before the token ends (the rule's leeway
    // is 0), so the job's next poll comes while it is good; not an hour on.
    let exp = jwt_claims(&token)["exp"].as_i64().unwrap() - LAPSE_MARGIN_SECS as i64;
    assert_eq!(queued.lapses_at.map(|at| at.timestamp()), Some(exp));
    assert!(queued.justification.contains("repository: acme/app"));
    assert!(queued.justification.contains("ref: refs/heads/main"));
    assert!(
        queued
            .justification
            .contains("run: https://ci.example/acme/app/runs/4242")
    );
    // k8s needs two approvals.
    bob.approve(&pending.request_id).await.unwrap();
    let (status, _) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    broker
        .as_user("dave")
        .approve(&pending.request_id)
        .await
        .unwrap();

    let credential = issued(exchange_for(&broker, &token, "k8s").await);
    assert_eq!(credential.request_id, pending.request_id);
    assert_eq!(
        jwt_claims(&credential.access_token)["act"]["sub"],
        "workload:ci:deploy-bot"
    );
    // Handed over once: the token is spent.
    refused_with(
        exchange_for(&broker, &token, "k8s").await,
        WorkloadErrorCode::Replayed,
    );
    let audit = broker.as_user("erin").audit().await;
    assert!(audit.iter().any(|e| e.kind == AuditKind::Approved
        && e.actor == "dave"
        && e.request_id.as_deref() == Some(pending.request_id.as_str())));
}

/// Filing counts against `filing_rate`; asking again about the task filed
/// (every 2 s while a person decides) does not, or a job would be slowed
/// down for waiting as told.
#[tokio::test]
async fn polling_a_filed_task_does_not_use_up_the_filing_limit() {
    let provider = Provider::start().await;
    let text = policy(&provider.issuer, "").replacen(
        "[settings]\n",
        "[settings]\nfiling_rate = \"2/m\"\n",
        1,
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let token = ci_token(&provider).await;
    for _ in 0..6 {
        let (status, body) = exchange_for(&broker, &token, "k8s").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // New tasks still count: the second fits in 2 a minute, the third not.
    let (status, body) = exchange_for(&broker, &ci_token(&provider).await, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = exchange_for(&broker, &ci_token(&provider).await, "k8s").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited");
}

/// Asking again about a task filed already still takes the writers' turn:
/// it counts against a limit of its own, at `introspection_rate`, far above
/// a poll every 2 s, so that one token cannot hold up every writer. A
/// withdrawal takes that turn too, and has a bucket of its own at the same
/// rate, so a job that polled its bucket dry can still withdraw as it gives
/// up. The refusals are audited as the workload's, once a window with their
/// count, naming the role.
#[tokio::test]
async fn polls_of_a_filed_task_have_a_limit_of_their_own() {
    let provider = Provider::start().await;
    let text = policy(&provider.issuer, "").replacen(
        "[settings]\n",
        "[settings]\nintrospection_rate = \"3/m\"\n",
        1,
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let token = ci_token(&provider).await;
    for _ in 0..4 {
        let (status, body) = exchange_for(&broker, &token, "k8s").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited");
    let (status, body) = withdraw(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["request_state"], "cancelled");
    for _ in 0..2 {
        let (status, body) = withdraw(&broker, &token, "k8s").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = withdraw(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited");
    let audit = broker.as_user("erin").audit().await;
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.kind == AuditKind::WorkloadRefused && e.details["code"] == "rate_limited")
        .collect();
    assert_eq!(refused.len(), 1, "once a window: {refused:?}");
    assert_eq!(refused[0].actor, "workload:ci:deploy-bot");
    assert_eq!(refused[0].role.as_deref(), Some("k8s"));
    assert!(
        refused[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("too many"),
        "{refused:?}"
    );
    // A new task is a filing, not a poll: it is still taken.
    let (status, body) = exchange_for(&broker, &ci_token(&provider).await, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Asserts that the task `run` of `provider`'s tokens is remembered until
/// `token` expires.
fn remembered_until(broker: &TestBroker, provider: &Provider, run: u64, token: &str) {
    let exchange = broker
        .broker()
        .store()
        .read()
        .unwrap()
        .exchange(&format!("{}\ndeploy-bot\nrun_id:{run}", provider.issuer))
        .unwrap()
        .expect("the task's exchange");
    let exp = jwt_claims(token)["exp"].as_i64().unwrap();
    assert_eq!(exchange.expires_at.timestamp(), exp);
}

/// A task keyed by its run presents a newer token at each poll: its
/// exchange is kept until the last of them expires, so a replay within
/// that token's life is still found and refused, and its request waits
/// for a person as long.
#[tokio::test]
async fn a_run_keyed_task_is_remembered_until_its_latest_token_expires() {
    let provider = Provider::start().await;
    let text = policy(&provider.issuer, "").replacen(
        "leeway = \"0s\"\n",
        "leeway = \"0s\"\ntask_claim = \"run_id\"\n",
        1,
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let first = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(120))
        .await;
    let later = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(900))
        .await;
    for token in [&first, &later] {
        let (status, body) = exchange_for(&broker, token, "k8s").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    remembered_until(&broker, &provider, 4242, &later);
    let exp = jwt_claims(&later)["exp"].as_i64().unwrap();
    // And its request waits for a person as long as the newer token lives.
    let queued = broker
        .as_user("bob")
        .queue()
        .await
        .into_iter()
        .find(|r| r.requester == "workload:ci:deploy-bot")
        .expect("the task's request waits for bob");
    assert_eq!(
        queued.lapses_at.map(|at| at.timestamp()),
        Some(exp - LAPSE_MARGIN_SECS as i64)
    );

    // Denied: a newer token is refused, and still keeps the task
    // remembered as long as it lives.
    broker
        .as_user("bob")
        .review(&queued.id, hoist_api::Decision::Deny, Some("not today"))
        .await
        .unwrap();
    let latest = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(1200))
        .await;
    refused_with(
        exchange_for(&broker, &latest, "k8s").await,
        WorkloadErrorCode::Denied,
    );
    remembered_until(&broker, &provider, 4242, &latest);

    // A task handed over already: a newer token is a replay, and the task
    // is remembered as long as that token lives.
    let run = json!({ "repository": "acme/app", "ref": "refs/heads/main", "run_id": 5151 });
    let first = provider
        .workload_token("deploy-bot", AUDIENCE, &run, Some(120))
        .await;
    let later = provider
        .workload_token("deploy-bot", AUDIENCE, &run, Some(900))
        .await;
    issued(exchange_for(&broker, &first, "deploy").await);
    refused_with(
        exchange_for(&broker, &later, "deploy").await,
        WorkloadErrorCode::Replayed,
    );
    remembered_until(&broker, &provider, 5151, &later);
}

/// A fresh token's `k8s` task, filed and approved by bob and dave: its
/// token.
async fn approved_task(broker: &TestBroker, provider: &Provider) -> String {
    let token = ci_token(provider).await;
    approve_task(broker, &token).await;
    token
}

/// Files `token`'s `k8s` task and has bob and dave approve it: its request.
async fn approve_task(broker: &TestBroker, token: &str) -> TokenPending {
    let (status, body) = exchange_for(broker, token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();
    for approver in ["bob", "dave"] {
        broker
            .as_user(approver)
            .approve(&pending.request_id)
            .await
            .unwrap();
    }
    pending
}

pub(crate) async fn withdraw(broker: &TestBroker, token: &str, role: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/token/withdraw", broker.url()))
        .form(&task_form(token, role))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// A job that gives up waiting withdraws its task with the token it
/// exchanged: a pending request is cancelled and leaves the approvers'
/// queue, a grant already made is ended, and nothing else is touched.
#[tokio::test]
async fn a_job_that_gives_up_withdraws_its_request_or_ends_its_grant() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let bob = broker.as_user("bob");

    // Pending: cancelled, out of the queue, and a later poll is refused.
    let token = ci_token(&provider).await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();
    let other = ci_token(&provider).await;
    let message = refused_with(
        withdraw(&broker, &other, "k8s").await,
        WorkloadErrorCode::InvalidRequest,
    );
    assert!(message.contains("never exchanged"), "{message}");
    assert!(
        bob.queue().await.iter().any(|r| r.id == pending.request_id),
        "another task's token withdrew nothing"
    );
    let (status, body) = withdraw(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let withdrawn: TaskWithdrawn = serde_json::from_value(body).unwrap();
    assert_eq!(withdrawn.request_id, pending.request_id);
    assert_eq!(withdrawn.request_state, "cancelled");
    assert_eq!(withdrawn.grant_id, None);
    assert!(!bob.queue().await.iter().any(|r| r.id == pending.request_id));
    refused_with(
        exchange_for(&broker, &token, "k8s").await,
        WorkloadErrorCode::Denied,
    );
    let audit = broker.as_user("erin").audit().await;
    assert!(audit.iter().any(|e| e.kind == AuditKind::Cancelled
        && e.actor == "workload:ci:deploy-bot"
        && e.request_id.as_deref() == Some(pending.request_id.as_str())));

    // Approved before the job gave up: the grant is ended, unused.
    let token = approved_task(&broker, &provider).await;
    let (status, body) = withdraw(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let withdrawn: TaskWithdrawn = serde_json::from_value(body).unwrap();
    assert_eq!(withdrawn.request_state, "active");
    assert!(withdrawn.grant_id.is_some());
    assert_eq!(withdrawn.grant_state.as_deref(), Some("revoked"));
    refused_with(
        exchange_for(&broker, &token, "k8s").await,
        WorkloadErrorCode::Denied,
    );

    // Handed over: the grant is left to whoever holds its credential (a
    // job of the same run may be using it), who ends it with that.
    let token = approved_task(&broker, &provider).await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let issued: TokenExchangeResponse = serde_json::from_value(body).unwrap();
    let (status, body) = withdraw(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let withdrawn: TaskWithdrawn = serde_json::from_value(body).unwrap();
    assert_eq!(
        withdrawn.grant_id.as_deref(),
        Some(issued.grant_id.as_str())
    );
    assert_eq!(withdrawn.grant_state.as_deref(), Some("active"));
    let erin = broker.as_user("erin");
    let audit = erin.audit().await;
    let entry = audit
        .iter()
        .find(|e| e.kind == AuditKind::TaskWithdrawn)
        .expect("the withdrawal that left the grant is audited");
    assert_eq!(entry.actor, "workload:ci:deploy-bot");
    assert_eq!(entry.grant_id.as_deref(), Some(issued.grant_id.as_str()));
    assert!(entry.details["task"].is_string(), "{:?}", entry.details);
    let (status, body) = withdraw(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let audit = erin.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == AuditKind::TaskWithdrawn)
            .count(),
        1,
        "withdrawn again: audited once"
    );
    assert!(
        erin.introspect(&issued.access_token).await.active,
        "its holder's to end"
    );
    let (status, body) = revoke(&broker, &issued.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!erin.introspect(&issued.access_token).await.active);

    // A token nobody signed withdraws nothing.
    let claims = jwt_claims(&ci_token(&provider).await);
    let forged = forged(
        json!({"alg": "RS256", "kid": "whatever", "typ": "JWT"}),
        &claims,
        b"not a signature",
    );
    let (status, _) = withdraw(&broker, &forged, "k8s").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Junk tokens cannot grow the audit log one entry each: refusals with one
/// code are audited once a minute, then as a count; another code is still
/// audited at once.
#[tokio::test]
async fn a_flood_of_junk_tokens_is_audited_once_with_a_count() {
    let provider = Provider::start().await;
    let mut broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    for _ in 0..30 {
        refused_with(
            exchange_for(&broker, "not-a-jwt", "deploy").await,
            WorkloadErrorCode::MalformedToken,
        );
    }
    let claims = jwt_claims(&ci_token(&provider).await);
    let forged = forged(
        json!({"alg": "RS256", "kid": "whatever", "typ": "JWT"}),
        &claims,
        b"not a signature",
    );
    refused_with(
        exchange_for(&broker, &forged, "deploy").await,
        WorkloadErrorCode::InvalidSignature,
    );
    let refusals = |log: &[hoist_api::AuditEvent], code: &str| -> Vec<hoist_api::AuditEvent> {
        log.iter()
            .filter(|e| e.kind == AuditKind::WorkloadRefused && e.details["code"] == code)
            .cloned()
            .collect()
    };
    // A token its issuer signed, refused for what it asks: audited as the
    // workload it is, never folded into the junk's count.
    refused_with(
        exchange_for(&broker, &ci_token(&provider).await, "secret").await,
        WorkloadErrorCode::RoleNotAllowed,
    );
    // One its issuer signed for a job no rule admits: audited as no rule's.
    let stranger = provider
        .workload_token("other-bot", AUDIENCE, &main_claims(), None)
        .await;
    refused_with(
        exchange_for(&broker, &stranger, "deploy").await,
        WorkloadErrorCode::SubjectMismatch,
    );
    let log = broker.as_user("erin").audit().await;
    let unmatched = refusals(&log, "subject_mismatch");
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].actor, "workload:unmatched");
    assert_eq!(unmatched[0].details["subject"], "other-bot");
    let malformed = refusals(&log, "malformed_token");
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].actor, "workload:unverified");
    assert_eq!(refusals(&log, "invalid_signature").len(), 1);
    let asked = refusals(&log, "role_not_allowed");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].actor, "workload:ci:deploy-bot");
    assert_eq!(asked[0].details["subject"], "deploy-bot");

    // The count is written when the window ends, or the broker stops.
    broker.restart().await;
    let log = broker.as_user("erin").audit().await;
    let malformed = refusals(&log, "malformed_token");
    assert_eq!(malformed.len(), 2);
    assert_eq!(malformed[1].details["repeats"], 29, "{:?}", malformed[1]);
}

#[tokio::test]
async fn a_denied_workload_request_is_refused_as_denied() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let token = ci_token(&provider).await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();
    broker
        .as_user("bob")
        .review(
            &pending.request_id,
            hoist_api::Decision::Deny,
            Some("not today"),
        )
        .await
        .unwrap();
    let message = refused_with(
        exchange_for(&broker, &token, "k8s").await,
        WorkloadErrorCode::Denied,
    );
    assert!(message.contains("not today"), "{message}");
}

/// A token is held to the terms of the rule that grants, not of the first
/// rule for its issuer and audience: a rule before it with an hour of
/// leeway (for another subject) does not let an expired token in.
#[tokio::test]
async fn a_token_is_held_to_the_leeway_of_the_rule_that_grants() {
    let provider = Provider::start().await;
    let lenient = format!(
        "[[workloads]]\nname = \"tools\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         leeway = \"1h\"\n[workloads.claims]\nsub = \"tools-bot\"\n\
         [[workloads.roles]]\nrole = \"deploy\"\nmax_ttl_minutes = 10\n\n[[workloads]]\nname = \"ci\"",
        provider.issuer
    );
    let text = policy(&provider.issuer, "").replacen("[[workloads]]\nname = \"ci\"", &lenient, 1);
    let broker = TestBroker::builder().policy(&text).start().await;
    let short = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(1))
        .await;
    let exp = jwt_claims(&short)["exp"].as_i64().unwrap();
    while chrono::Utc::now().timestamp() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    refused_with(
        exchange_for(&broker, &short, "deploy").await,
        WorkloadErrorCode::TokenExpired,
    );
    // Its signature verified (under `tools`): refused as the workload the
    // rule that admits it names (`ci`, not `tools`, which pins another
    // subject), apart from junk tokens' refusals.
    let audit = broker.as_user("erin").audit().await;
    let refusal = audit
        .iter()
        .find(|e| e.kind == AuditKind::WorkloadRefused)
        .expect("the refusal is audited");
    assert_eq!(refusal.actor, "workload:ci:deploy-bot", "{refusal:?}");
    assert_eq!(refusal.details["code"], "token_expired", "{refusal:?}");
    // A live token of the same subject is granted by `ci`.
    let token = ci_token(&provider).await;
    issued(exchange_for(&broker, &token, "deploy").await);
}

/// Of two rules that admit a token, the one that grants the role asked
/// for names the workload a refusal is audited as: its grants and
/// replays are that workload's too.
#[tokio::test]
async fn a_refusal_names_the_rule_that_grants_the_role_asked_for() {
    let provider = Provider::start().await;
    let other = format!(
        "[[workloads]]\nname = \"audit\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         [workloads.claims]\nsub = \"deploy-bot\"\n\
         [[workloads.roles]]\nrole = \"k8s\"\nmax_ttl_minutes = 5\n\n[[workloads]]\nname = \"ci\"",
        provider.issuer
    );
    let text = policy(&provider.issuer, "").replacen("[[workloads]]\nname = \"ci\"", &other, 1);
    let broker = TestBroker::builder().policy(&text).start().await;
    let token = ci_token(&provider).await;
    let mut fields: Vec<(&str, String)> = task_form(&token, "deploy").to_vec();
    fields.push(("requested_ttl", "601".into()));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    refused_with(
        exchange(&broker, &fields).await,
        WorkloadErrorCode::TtlTooLong,
    );
    let audit = broker.as_user("erin").audit().await;
    let refusal = audit
        .iter()
        .find(|e| e.kind == AuditKind::WorkloadRefused)
        .expect("the refusal is audited");
    assert_eq!(refusal.actor, "workload:ci:deploy-bot", "{refusal:?}");
}

/// One token is one task, whichever rules admit it: a rule keying tasks
/// by their run does not let a token exchanged under a rule keying them by
/// `jti` file a second task, nor the reverse.
#[tokio::test]
async fn a_token_files_one_task_under_rules_keying_tasks_differently() {
    let provider = Provider::start().await;
    let runs = format!(
        "[[workloads]]\nname = \"runs\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         task_claim = \"run_id\"\n[workloads.claims]\nsub = \"deploy-bot\"\n\
         [[workloads.roles]]\nrole = \"logs\"\nmax_ttl_minutes = 10\n",
        provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, &runs))
        .start()
        .await;
    for (run, first, second) in [(4242, "deploy", "logs"), (4243, "logs", "deploy")] {
        let mut claims = main_claims();
        claims["run_id"] = json!(run);
        let token = provider
            .workload_token("deploy-bot", AUDIENCE, &claims, None)
            .await;
        issued(exchange_for(&broker, &token, first).await);
        let why = refused_with(
            exchange_for(&broker, &token, second).await,
            WorkloadErrorCode::Replayed,
        );
        assert!(why.contains("exchanged already"), "{first}: {why}");
    }
    assert_eq!(activated(&broker).await, 2, "one grant a token");
}

/// A pinned claim with an invisible character in it matches no glob:
/// approvers would be shown it without (`acme/app`).
#[tokio::test]
async fn a_claim_with_an_invisible_character_matches_no_pin() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let mut claims = main_claims();
    claims["repository"] = json!("acme/app\u{200b}");
    let token = provider
        .workload_token("deploy-bot", AUDIENCE, &claims, None)
        .await;
    let why = refused_with(
        exchange_for(&broker, &token, "deploy").await,
        WorkloadErrorCode::ClaimMismatch,
    );
    assert!(why.contains("`repository`"), "{why}");
}

/// How many grants the audit log says were activated.
async fn activated(broker: &TestBroker) -> usize {
    let audit = broker.as_user("erin").audit().await;
    audit
        .iter()
        .filter(|e| e.kind == AuditKind::Activated)
        .count()
}

/// A token without a `jti` is known by its own hash: it files one task
/// under rules keying tasks by different claims.
#[tokio::test]
async fn a_token_without_a_jti_files_one_task_under_rules_keying_tasks_differently() {
    let provider = Provider::start().await;
    let rules = format!(
        "[[roles]]\nid = \"builds\"\nname = \"Builds\"\nscope = \"builds://ci\"\n\
         eligible_groups = [\"eng\"]\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n\
         [[workloads]]\nname = \"runs\"\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\n\
         task_claim = \"run_id\"\n[workloads.claims]\nsub = \"deploy-bot\"\n\
         [[workloads.roles]]\nrole = \"logs\"\nmax_ttl_minutes = 10\n\
         [[workloads]]\nname = \"commits\"\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\n\
         task_claim = \"sha\"\n[workloads.claims]\nsub = \"deploy-bot\"\n\
         [[workloads.roles]]\nrole = \"builds\"\nmax_ttl_minutes = 10\n",
        issuer = provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, &rules))
        .start()
        .await;
    let mut claims = main_claims();
    claims["sha"] = json!("9f2c1e0");
    claims["jti"] = Value::Null;
    let token = provider
        .workload_token("deploy-bot", AUDIENCE, &claims, None)
        .await;
    assert_eq!(jwt_claims(&token).get("jti"), None);
    issued(exchange_for(&broker, &token, "logs").await);
    let why = refused_with(
        exchange_for(&broker, &token, "builds").await,
        WorkloadErrorCode::Replayed,
    );
    assert!(why.contains("exchanged already"), "{why}");
    assert_eq!(activated(&broker).await, 1, "one grant");
}

/// A task keyed by its run is one task per subject: the jobs of one run
/// (staging's and production's, each its own subject) get a grant each,
/// and another subject's token cannot take the run's value first.
#[tokio::test]
async fn the_jobs_of_one_run_are_tasks_of_their_own() {
    let provider = Provider::start().await;
    let rule = |name: &str, sub: &str| {
        format!(
            "[[workloads]]\nname = \"{name}\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
             task_claim = \"run_id\"\n[workloads.claims]\nsub = \"{sub}\"\n\
             [[workloads.roles]]\nrole = \"logs\"\nmax_ttl_minutes = 10\n",
            provider.issuer
        )
    };
    let rules = format!(
        "{}{}",
        rule("runs", "deploy-bot"),
        rule("others", "other-bot")
    );
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, &rules))
        .start()
        .await;
    let mut claims = main_claims();
    claims["run_id"] = json!(4300);
    for client in ["other-bot", "deploy-bot"] {
        let token = provider
            .workload_token(client, AUDIENCE, &claims, None)
            .await;
        issued(exchange_for(&broker, &token, "logs").await);
    }
    // Each still one task: a later token of the run is a replay.
    let again = provider
        .workload_token("deploy-bot", AUDIENCE, &claims, None)
        .await;
    refused_with(
        exchange_for(&broker, &again, "logs").await,
        WorkloadErrorCode::Replayed,
    );
}

/// A later token of a run that collects the run's task (filed by an
/// earlier token) is bound to it as well: it files no other task under a
/// rule keying tasks by `jti`, and a token that filed one there collects
/// nothing of the run's.
#[tokio::test]
async fn a_token_that_collects_a_runs_task_files_no_other() {
    let provider = Provider::start().await;
    let runs = format!(
        "[[workloads]]\nname = \"runs\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         task_claim = \"run_id\"\n[workloads.claims]\nsub = \"deploy-bot\"\n\
         [[workloads.roles]]\nrole = \"db\"\nmax_ttl_minutes = 10\napproval = \"person\"\n",
        provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, &runs))
        .start()
        .await;
    let token_of_run = |run: u64| {
        let mut claims = main_claims();
        claims["run_id"] = json!(run);
        let provider = &provider;
        async move {
            provider
                .workload_token("deploy-bot", AUDIENCE, &claims, None)
                .await
        }
    };
    // Filed by one token, collected by the next: that one then files
    // nothing under `ci`.
    let filer = token_of_run(4250).await;
    let (status, body) = exchange_for(&broker, &filer, "db").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let later = token_of_run(4250).await;
    let (status, body) = exchange_for(&broker, &later, "db").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a poll of the run's task: {body}"
    );
    let why = refused_with(
        exchange_for(&broker, &later, "deploy").await,
        WorkloadErrorCode::Replayed,
    );
    assert!(why.contains("exchanged already"), "{why}");

    // The other way round: a token that got a grant under `ci` does not
    // collect the run's task.
    let filer = token_of_run(4251).await;
    let (status, body) = exchange_for(&broker, &filer, "db").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let later = token_of_run(4251).await;
    issued(exchange_for(&broker, &later, "deploy").await);
    let why = refused_with(
        exchange_for(&broker, &later, "db").await,
        WorkloadErrorCode::Replayed,
    );
    assert!(why.contains("for another task"), "{why}");

    assert_eq!(activated(&broker).await, 1, "one grant");
}

/// Nor is a token held to the terms of a stricter rule before it for
/// another subject: the rule that grants takes it with its own leeway.
#[tokio::test]
async fn a_stricter_rule_for_another_subject_does_not_refuse_a_token() {
    let provider = Provider::start().await;
    let strict = format!(
        "[[workloads]]\nname = \"tools\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         leeway = \"0s\"\n[workloads.claims]\nsub = \"tools-bot\"\n\
         [[workloads.roles]]\nrole = \"deploy\"\nmax_ttl_minutes = 10\n\n[[workloads]]\nname = \"ci\"",
        provider.issuer
    );
    let text = policy(&provider.issuer, "")
        .replacen("[[workloads]]\nname = \"ci\"", &strict, 1)
        .replacen("leeway = \"0s\"\nrun_url", "leeway = \"1h\"\nrun_url", 1);
    assert!(text.contains("leeway = \"1h\"\nrun_url"), "{text}");
    let broker = TestBroker::builder().policy(&text).start().await;
    let short = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(1))
        .await;
    let exp = jwt_claims(&short)["exp"].as_i64().unwrap();
    while chrono::Utc::now().timestamp() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    issued(exchange_for(&broker, &short, "deploy").await);
}

/// A rule narrowed at a reload so that it no longer pins the subject a
/// grant went to ends that grant, as a person's grant ends when they leave
/// the role's groups.
#[tokio::test]
async fn a_reload_that_narrows_a_rules_subject_revokes_its_grants() {
    let provider = Provider::start().await;
    let text = policy(&provider.issuer, "");
    let broker = TestBroker::builder().policy(&text).start().await;
    let token = ci_token(&provider).await;
    let credential = issued(exchange_for(&broker, &token, "deploy").await);

    std::fs::write(
        broker.policy_path(),
        text.replace("sub = \"deploy-bot\"", "sub = \"release-bot\""),
    )
    .unwrap();
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 1);
    let grant = broker
        .as_user("erin")
        .grant(&credential.grant_id)
        .await
        .unwrap();
    assert_eq!(grant.state, hoist_api::GrantState::Revoked);
}

/// A reload that pins another claim, or moves the rule to another
/// audience, ends the grants whose tokens it would no longer admit, and
/// only those: the claims the token was verified with are kept with its
/// exchange, not only the subject its principal names.
#[tokio::test]
async fn a_reload_that_narrows_a_rules_other_claims_revokes_what_it_no_longer_admits() {
    let provider = Provider::start().await;
    let text = policy(&provider.issuer, "");
    let broker = TestBroker::builder().policy(&text).start().await;
    let app = issued(exchange_for(&broker, &ci_token(&provider).await, "deploy").await);
    let web = provider
        .workload_token(
            "deploy-bot",
            AUDIENCE,
            &json!({ "repository": "acme/web", "ref": "refs/heads/main", "run_id": 4343 }),
            None,
        )
        .await;
    let web = issued(exchange_for(&broker, &web, "deploy").await);
    let state = |id: String| {
        let erin = broker.as_user("erin");
        async move { erin.grant(&id).await.unwrap() }
    };

    std::fs::write(
        broker.policy_path(),
        text.replace("repository = \"acme/*\"", "repository = \"acme/web\""),
    )
    .unwrap();
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 1);
    let ended = state(app.grant_id.clone()).await;
    assert_eq!(ended.state, hoist_api::GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap();
    assert!(reason.contains("claim `repository`"), "{reason}");
    assert_eq!(
        state(web.grant_id.clone()).await.state,
        hoist_api::GrantState::Active
    );

    let moved = text
        .replace("repository = \"acme/*\"", "repository = \"acme/web\"")
        .replace(
            &format!("audience = \"{AUDIENCE}\""),
            "audience = \"https://elsewhere.example\"",
        );
    std::fs::write(broker.policy_path(), moved).unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1
    );
    let reason = state(web.grant_id.clone()).await.revoke_reason.unwrap();
    assert!(reason.contains("rule's audience"), "{reason}");
}

/// A task waiting for a person when a reload narrows its rule's claims is
/// not granted by the approval that follows: it is cancelled, named why.
#[tokio::test]
async fn an_approval_after_a_reload_that_narrows_the_rule_grants_nothing() {
    let provider = Provider::start().await;
    let text = policy(&provider.issuer, "");
    let broker = TestBroker::builder().policy(&text).start().await;
    let token = ci_token(&provider).await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();
    std::fs::write(
        broker.policy_path(),
        text.replace("ref = \"refs/heads/main\"", "ref = \"refs/tags/v*\""),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();

    // k8s needs two approvals; the second would grant it.
    broker
        .as_user("bob")
        .approve(&pending.request_id)
        .await
        .unwrap();
    let _ = broker.as_user("dave").approve(&pending.request_id).await;
    let request = broker
        .as_user("erin")
        .request(&pending.request_id)
        .await
        .unwrap();
    assert_eq!(request.state, hoist_api::RequestState::Cancelled);
    let reason = request.reason.unwrap();
    assert!(reason.contains("rule's claim `ref`"), "{reason}");
    assert!(request.grant_id.is_none());
}

#[tokio::test]
async fn a_rule_that_does_not_pin_its_subject_is_refused_at_load_with_its_line() {
    let rule = |claims: &str, ttl: u64| {
        format!(
            "{}\n[[workloads]]\nname = \"ci\"\nissuer = \"https://issuer.example\"\n\
             audience = \"https://hoist.example\"\n[workloads.claims]\n{claims}\n\
             [[workloads.roles]]\nrole = \"logs\"\nmax_ttl_minutes = {ttl}\n",
            policy_text("")
        )
    };
    let line_of_rule = |text: &str| {
        text.lines()
            .position(|l| l == "[[workloads]]")
            .map(|i| i + 1)
            .unwrap()
    };
    for (text, needle) in [
        (rule("repository = \"acme/app\"", 5), "does not pin `sub`"),
        (rule("sub = \"*\"", 5), "matches any subject"),
        (
            rule("sub = \"bot\"", 120),
            "max_ttl_minutes must be 1 to 60",
        ),
        // A rule cannot outlast its role: `logs` here lasts 30 minutes at most.
        (
            rule("sub = \"bot\"", 45).replace("max_duration = \"1h\"", "max_duration = \"30m\""),
            "longer than the role's max_duration",
        ),
        // Leeway is for clock skew; an exchange is remembered for a day.
        (
            rule("sub = \"bot\"", 5).replace(
                "audience = \"https://hoist.example\"\n",
                "audience = \"https://hoist.example\"\nleeway = \"2h\"\n",
            ),
            "leeway 7200s is above the most allowed, 3600s",
        ),
        (
            rule("sub = \"bot\"", 5).replace(
                "audience = \"https://hoist.example\"\n",
                "audience = \"https://hoist.example\"\nkeys_ttl = \"2d\"\n",
            ),
            "keys_max_age (1day) is shorter than keys_ttl (2days)",
        ),
        // Who started a run: the claims and the map need each other.
        (
            rule("sub = \"bot\"", 5).replace(
                "[workloads.claims]\n",
                "actor_claims = [\"actor\"]\n[workloads.claims]\n",
            ),
            "[workloads.actors] maps none of them",
        ),
        (
            rule("sub = \"bot\"", 5).replace(
                "[workloads.claims]\n",
                "[workloads.actors]\noctocat = \"bob\"\n[workloads.claims]\n",
            ),
            "no actor_claims names the claims",
        ),
        (
            rule("sub = \"bot\"", 5).replace(
                "[workloads.claims]\n",
                "actor_claims = [\"actor\"]\n[workloads.actors]\nocto = \"bob smith\"\n\
                 [workloads.claims]\n",
            ),
            "maps `octo` to `bob smith`, which is not a user id",
        ),
        (
            rule("sub = \"bot\"", 5).replace(
                "[workloads.claims]\n",
                "actor_claims = [\"actor\", \"actor\"]\n[workloads.actors]\nocto = \"bob\"\n\
                 [workloads.claims]\n",
            ),
            "actor_claims names `actor` twice",
        ),
    ] {
        let err = hoistd::Policy::parse("policy.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
        let line = line_of_rule(&text);
        assert!(
            err.starts_with(&format!("policy.toml:{line}:")),
            "{err} should point at line {line}"
        );
    }
    // A rule on people's issuer and audience would make an ID token a
    // workload's token.
    let text = format!(
        "{}\n[[oidc]]\nissuer = \"https://issuer.example\"\nclient_id = \"hoist\"\n",
        rule("sub = \"bot\"", 5).replace("https://hoist.example", "hoist")
    );
    let err = hoistd::Policy::parse("policy.toml", &text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audience of their own"), "{err}");
}

/// A token too close to its end for any approval to reach the job through
/// it is refused, rather than file a request for a person that would
/// lapse at once; one approved automatically is still granted.
#[tokio::test]
async fn a_token_about_to_expire_files_nothing_for_a_person() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let message = refused_with(
        exchange_for(&broker, &short_lived(&provider).await, "k8s").await,
        WorkloadErrorCode::TokenExpired,
    );
    assert!(message.contains("present a fresher one"), "{message}");
    assert!(broker.as_user("bob").queue().await.is_empty());
    // Audited as every refusal is, as the workload the rule admits.
    let audit = broker.as_user("erin").audit().await;
    let refusal = audit
        .iter()
        .find(|e| e.kind == AuditKind::WorkloadRefused)
        .expect("the refusal is audited");
    assert_eq!(refusal.actor, "workload:ci:deploy-bot", "{refusal:?}");
    assert_eq!(refusal.details["code"], "token_expired", "{refusal:?}");
    issued(exchange_for(&broker, &short_lived(&provider).await, "deploy").await);
}

/// A token that ends within the lapse margin.
async fn short_lived(provider: &Provider) -> String {
    provider
        .workload_token(
            "deploy-bot",
            AUDIENCE,
            &main_claims(),
            Some(LAPSE_MARGIN_SECS - 1),
        )
        .await
}

/// A grant whose job never collected its credential before the task's
/// token expired (approved in the token's last seconds, the job gone) is
/// revoked when no poll can come any more, not left to its end; a grant
/// whose credential was handed over lives on after its token ends.
#[tokio::test]
async fn a_grant_nobody_can_collect_is_revoked_when_its_token_ends() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let lasts = LAPSE_MARGIN_SECS + 3;
    let uncollected = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(lasts))
        .await;
    let pending = approve_task(&broker, &uncollected).await;
    let collected = provider
        .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(lasts))
        .await;
    let handed = issued(exchange_for(&broker, &collected, "deploy").await);

    let erin = broker.as_user("erin");
    let ended = |audit: &[hoist_api::AuditEvent], request: &str| {
        audit
            .iter()
            .filter(|e| {
                matches!(e.kind, AuditKind::Revoked | AuditKind::Expired)
                    && e.request_id.as_deref() == Some(request)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let exp = jwt_claims(&uncollected)["exp"].as_i64().unwrap();
    // No poll comes past the token's end (the rule's leeway is 0), nor
    // any poll's wait for the target (10 s) past that.
    let collect_by = exp + 10;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(lasts + 20);
    let revoked = loop {
        let audit = erin.audit().await;
        if let [revoked] = ended(&audit, &pending.request_id).as_slice() {
            break revoked.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the uncollected grant was not revoked: {:?}",
            ended(&audit, &pending.request_id)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(revoked.kind, AuditKind::Revoked);
    assert_eq!(revoked.actor, "hoistd");
    assert!(
        revoked.at.timestamp() >= collect_by,
        "revoked at {} while its token (exp {exp}) could still collect it",
        revoked.at
    );
    let reason = revoked.reason.unwrap_or_default();
    assert!(reason.contains("never collected"), "{reason}");
    // The job that collected its credential keeps its grant.
    assert!(ended(&erin.audit().await, &handed.request_id).is_empty());
    let grant = erin.grant(&revoked.grant_id.unwrap()).await.unwrap();
    assert_eq!(grant.state, hoist_api::GrantState::Revoked);
    assert_eq!(grant.revoked_by.as_deref(), Some("hoistd"));
}

/// A task whose request the reaper cannot read (as an edit outside hoistd
/// leaves it) keeps no other task nobody collected from being settled:
/// the others' grants are revoked as their tokens end.
#[tokio::test]
async fn an_uncollected_task_the_reaper_cannot_read_holds_up_no_other() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&provider.issuer, ""))
        .start()
        .await;
    let lasts = LAPSE_MARGIN_SECS + 3;
    let mut pending = Vec::new();
    for _ in 0..2 {
        let token = provider
            .workload_token("deploy-bot", AUDIENCE, &main_claims(), Some(lasts))
            .await;
        pending.push(approve_task(&broker, &token).await);
    }
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    let changed = db
        .execute(
            "UPDATE requests SET updated_at = 'not a time' WHERE id = ?1",
            [&pending[0].request_id],
        )
        .unwrap();
    assert_eq!(changed, 1);

    let erin = broker.as_user("erin");
    let revoked = |request: String| {
        let erin = &erin;
        async move {
            erin.audit().await.iter().any(|e| {
                e.kind == AuditKind::Revoked
                    && e.request_id.as_deref() == Some(&*request)
                    && e.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("never collected"))
            })
        }
    };
    eventually(std::time::Duration::from_secs(lasts + 30), || {
        revoked(pending[1].request_id.clone())
    })
    .await;
    assert!(!revoked(pending[0].request_id.clone()).await);
}

/// A rule that maps who started a run (`actor_claims`, `actors`) keeps the
/// task from them: bob pushed, so bob does not see it, cannot review or
/// claim it, and is not among those who may decide it; the others are told
/// whose run it is. A reload that maps an actor after their approval no
/// longer counts that approval.
#[tokio::test]
async fn whoever_started_a_run_cannot_approve_its_task() {
    let provider = Provider::start().await;
    let mapped = "actor_claims = [\"actor\", \"triggering_actor\"]\n\
                  [workloads.actors]\noctocat = \"bob\"\nhubot = \"carol\"\n";
    // The rule's keys go before its claims table.
    let text = policy(&provider.issuer, "").replacen(
        "[workloads.claims]\n",
        &format!("{mapped}[workloads.claims]\n"),
        1,
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let mut claims = main_claims();
    claims["actor"] = json!("octocat");
    claims["triggering_actor"] = json!("someone-else");
    let token = provider
        .workload_token("deploy-bot", AUDIENCE, &claims, None)
        .await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending: TokenPending = serde_json::from_value(body).unwrap();

    let bob = broker.as_user("bob");
    assert!(
        bob.queue().await.iter().all(|r| r.id != pending.request_id),
        "the task of bob's run is not in bob's queue"
    );
    for decision in [Decision::Approve, Decision::Deny] {
        let refusal = refused(
            bob.review(&pending.request_id, decision, Some("mine"))
                .await,
            StatusCode::FORBIDDEN,
            ErrorCode::SelfReview,
        );
        assert!(refusal.contains("started the run"), "{refusal}");
    }
    refused(
        bob.call::<hoist_api::AccessRequest>(bob.raw(
            reqwest::Method::POST,
            &format!("/v1/requests/{}/claim", pending.request_id),
        ))
        .await,
        StatusCode::FORBIDDEN,
        ErrorCode::SelfReview,
    );
    let queued = broker
        .as_user("dave")
        .queue()
        .await
        .into_iter()
        .find(|r| r.id == pending.request_id)
        .expect("dave may decide it");
    assert_eq!(queued.approvers, ["alice", "dave"]);
    assert!(
        queued.justification.contains("\nactor: octocat (user bob)"),
        "{}",
        queued.justification
    );
    assert!(
        queued
            .justification
            .contains("\ntriggering_actor: someone-else"),
        "{}",
        queued.justification
    );
    let audit = broker.as_user("erin").audit().await;
    let requested = audit
        .iter()
        .find(|e| {
            e.kind == AuditKind::Requested
                && e.request_id.as_deref() == Some(pending.request_id.as_str())
        })
        .expect("the task's filing is audited");
    assert_eq!(requested.details["workload"]["started_by"], json!(["bob"]));

    // A re-run by hubot, carol to the map (no approver of k8s): alice's
    // approval counts until a reload maps hubot to her instead.
    let mut rerun = main_claims();
    rerun["run_id"] = json!(4243);
    rerun["actor"] = json!("octocat");
    rerun["triggering_actor"] = json!("hubot");
    let token = provider
        .workload_token("deploy-bot", AUDIENCE, &rerun, None)
        .await;
    let (status, body) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let second: TokenPending = serde_json::from_value(body).unwrap();
    broker
        .as_user("alice")
        .approve(&second.request_id)
        .await
        .unwrap();
    std::fs::write(
        broker.policy_path(),
        text.replace("hubot = \"carol\"", "hubot = \"alice\""),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    let decided = broker
        .as_user("dave")
        .approve(&second.request_id)
        .await
        .unwrap();
    assert_eq!(
        decided.state,
        RequestState::Pending,
        "alice's approval, given before the map named her, no longer counts"
    );
    let (status, _) = exchange_for(&broker, &token, "k8s").await;
    assert_eq!(status, StatusCode::ACCEPTED);
}
