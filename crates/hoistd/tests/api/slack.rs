//! Approving from Slack: posts signed by slack-sdk's own code (PyPI's
//! `slack_sdk.signature.SignatureVerifier`, run by `HOIST_TEST_PYTHON`) to
//! a real broker on loopback, its answers caught by a receiver standing in
//! for Slack's `response_url`. Every rule of a review through the API
//! holds; forged, stale, replayed and unmapped posts are refused and
//! audited, a replay across two instances on one PostgreSQL too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_api::{AccessRequest, AuditKind, Decision, RequestState};
use hoistd::slack::{APPROVE_ACTION, DENY_ACTION, Settings, WINDOW_SECS};
use hoistd::store::Location;
use hoistd::{Options, Policy, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TEAM: &str = "T0HOIST";

/// The Slack user id each mapped person presses buttons as; frank has one
/// the policy does not name.
fn slack_id(user: &str) -> String {
    format!("U0{}", user.to_ascii_uppercase())
}

/// The test policy, with alice, bob, carol, dave and erin mapped to Slack.
fn policy() -> String {
    let mut text = policy_text("");
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let section = format!("[users.{user}]\n");
        text = text.replace(
            &section,
            &format!(
                "{section}slack = {{ team = \"{TEAM}\", user = \"{}\" }}\n",
                slack_id(user)
            ),
        );
    }
    text
}

/// What the stand-in for Slack's `response_url` was posted.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<Vec<(String, Value)>>>);

impl Answers {
    /// The text posted to `path`, once it arrives.
    async fn to(&self, path: &str) -> String {
        let mut found = None;
        eventually(Duration::from_secs(10), || {
            found = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(at, _)| at == path)
                .map(|(_, answer)| answer.clone());
            std::future::ready(found.is_some())
        })
        .await;
        let answer = found.unwrap();
        assert_eq!(answer["response_type"], "ephemeral", "{answer}");
        assert_eq!(answer["replace_original"], false, "{answer}");
        answer["text"].as_str().unwrap().to_string()
    }
}

/// A receiver on loopback taking posts as Slack's `response_url` does.
async fn receiver() -> (Answers, String) {
    let answers = Answers::default();
    let kept = answers.clone();
    let app = axum::Router::new().route(
        "/actions/{*rest}",
        axum::routing::post(
            move |uri: axum::http::Uri, axum::Json(answer): axum::Json<Value>| {
                let kept = kept.clone();
                async move {
                    kept.0
                        .lock()
                        .unwrap()
                        .push((uri.path().to_string(), answer));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (answers, origin)
}

async fn slack_broker() -> (TestBroker, Answers, String) {
    let (answers, origin) = receiver().await;
    let settings = Settings::new(SECRET)
        .unwrap()
        .answer_to_loopback(&origin)
        .unwrap();
    let broker = TestBroker::builder()
        .policy(&policy())
        .slack(settings)
        .start()
        .await;
    (broker, answers, origin)
}

/// Slack's signature of `body` at `timestamp`, made by slack-sdk.
fn slack_sdk_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let script = r#"
import sys
from slack_sdk.signature import SignatureVerifier
body = sys.stdin.buffer.read()
print(SignatureVerifier(sys.argv[1]).generate_signature(timestamp=sys.argv[2], body=body))
"#;
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(&python)
        .args(["-c", script, secret, timestamp])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the tests with scripts/test"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "slack-sdk is not installed for {python}? scripts/test installs it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A signed post, as Slack would send it.
#[derive(Clone)]
struct Post {
    body: String,
    timestamp: String,
    signature: String,
}

/// A press of `action` on `request_id` by `slack_user`, posted `age`
/// seconds ago, its answer to go to `answer_path` under `origin`.
fn press(
    slack_user: &str,
    action: &str,
    request_id: &str,
    origin: &str,
    answer_path: &str,
    age: i64,
) -> Post {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": slack_user, "username": "someone", "team_id": TEAM},
        "api_app_id": "A0HOIST",
        "team": {"id": TEAM, "domain": "hoist-test"},
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        "trigger_id": "1.2.3",
        "channel": {"id": "C0APPROVALS", "name": "approvals"},
        "response_url": format!("{origin}actions{answer_path}"),
        "actions": [{
            "action_id": action,
            "block_id": "decide",
            "text": {"type": "plain_text", "text": "Approve"},
            "value": request_id,
            "type": "button",
            "action_ts": "1700000000.000200",
        }],
    });
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let timestamp = (chrono::Utc::now().timestamp() - age).to_string();
    let signature = slack_sdk_signature(SECRET, &timestamp, &body);
    Post {
        body,
        timestamp,
        signature,
    }
}

/// Posts to `/v1/slack/actions` at `base`: the status and the JSON answer.
async fn send(base: &str, post: &Post) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/slack/actions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &post.timestamp)
        .header("x-slack-signature", &post.signature)
        .body(post.body.clone())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn state_of(broker: &TestBroker, id: &str) -> AccessRequest {
    broker.as_user("erin").request(id).await.unwrap()
}

/// A k8s request (two approvals) filed by carol.
async fn k8s_by(broker: &TestBroker, user: &str) -> AccessRequest {
    broker
        .as_user(user)
        .file(&request("k8s", "drain the failing node pool"))
        .await
        .unwrap()
}

#[tokio::test]
async fn two_slack_approvers_grant_a_two_of_two_request_and_one_denies() {
    let (broker, answers, origin) = slack_broker().await;
    let filed = k8s_by(&broker, "carol").await;

    let (status, answer) = send(
        &broker.url(),
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &filed.id,
            &origin,
            "/bob",
            0,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let first = answers.to("/actions/bob").await;
    assert_eq!(answer["text"], first.as_str());
    assert!(
        first.contains("You approved carol's request") && first.contains("1 of 2 approvals"),
        "{first}"
    );
    let after_one = state_of(&broker, &filed.id).await;
    assert_eq!(after_one.state, RequestState::Pending);
    assert_eq!(after_one.reviews.len(), 1);
    assert_eq!(after_one.reviews[0].reviewer, "bob");

    send(
        &broker.url(),
        &press(
            &slack_id("dave"),
            APPROVE_ACTION,
            &filed.id,
            &origin,
            "/dave",
            0,
        ),
    )
    .await;
    assert!(answers.to("/actions/dave").await.contains("access granted"));
    let granted = state_of(&broker, &filed.id).await;
    assert_eq!(granted.state, RequestState::Active);
    assert!(granted.grant_id.is_some());

    // The audit log says who reviewed, and that it came from Slack.
    let audit = broker.as_user("erin").audit().await;
    let reviews: Vec<_> = audit
        .iter()
        .filter(|e| e.kind == AuditKind::Reviewed && e.request_id.as_deref() == Some(&filed.id))
        .collect();
    assert_eq!(reviews.len(), 2);
    for (event, user) in reviews.iter().zip(["bob", "dave"]) {
        assert_eq!(event.actor, user);
        assert_eq!(event.details["via"], "slack");
        assert_eq!(event.details["decision"], "approve");
        assert_eq!(
            event.details["slack"],
            json!({"team": TEAM, "user": slack_id(user)})
        );
    }
    let approved = audit
        .iter()
        .find(|e| e.kind == AuditKind::Approved && e.request_id.as_deref() == Some(&filed.id))
        .unwrap();
    assert_eq!(approved.details["via"], "slack");
    assert_eq!(approved.details["approvers"], json!(["bob", "dave"]));

    // Deny: one press ends the request, with the fixed reason.
    let denied = broker.as_user("carol").file(&db_request()).await.unwrap();
    send(
        &broker.url(),
        &press(
            &slack_id("bob"),
            DENY_ACTION,
            &denied.id,
            &origin,
            "/deny",
            0,
        ),
    )
    .await;
    assert!(
        answers
            .to("/actions/deny")
            .await
            .starts_with("You denied carol's request")
    );
    let denied = state_of(&broker, &denied.id).await;
    assert_eq!(denied.state, RequestState::Denied);
    assert_eq!(denied.reason.as_deref(), Some("denied from Slack"));
    assert_eq!(
        denied.reviews[0].comment.as_deref(),
        Some("denied from Slack")
    );
}

/// An approval given before a reload took its approver out of the role's
/// approvers no longer counts, and the next approver pressing in Slack is
/// told the count that holds: 1 of 2, not 2 of 2.
#[tokio::test]
async fn the_answer_to_a_press_counts_only_approvals_that_still_count() {
    let (broker, answers, origin) = slack_broker().await;
    let filed = k8s_by(&broker, "carol").await;
    broker
        .as_user("alice")
        .review(&filed.id, Decision::Approve, None)
        .await
        .unwrap();
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    let from = r#"approvers = ["bob", "dave", "alice"]"#;
    assert!(text.contains(from));
    std::fs::write(
        broker.policy_path(),
        text.replace(from, r#"approvers = ["bob", "dave"]"#),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();

    send(
        &broker.url(),
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &filed.id,
            &origin,
            "/bob",
            0,
        ),
    )
    .await;
    let said = answers.to("/actions/bob").await;
    assert!(said.contains("1 of 2 approvals so far"), "{said}");
    let after = state_of(&broker, &filed.id).await;
    assert_eq!(after.state, RequestState::Pending);
    assert_eq!(after.reviews.len(), 2);
}

#[tokio::test]
async fn every_rule_of_a_review_holds_from_slack() {
    let (broker, answers, origin) = slack_broker().await;
    let url = broker.url();
    // alice is an approver of db, and may file it.
    let own = broker.as_user("alice").file(&db_request()).await.unwrap();

    let cases = [
        // Self-approval.
        (
            "alice",
            own.id.as_str(),
            "/self",
            "you cannot review your own request",
        ),
        // carol requests, but approves nothing: the request is not hers to see.
        ("carol", own.id.as_str(), "/carol", "no request `"),
        // erin audits, so she sees it, but approves nothing either.
        (
            "erin",
            own.id.as_str(),
            "/erin",
            "you are not an approver of role `db`",
        ),
        // An id that names nothing.
        ("bob", "req_nothing", "/none", "no request `req_nothing`"),
    ];
    for (user, id, path, said) in cases {
        let (status, _) = send(
            &url,
            &press(&slack_id(user), APPROVE_ACTION, id, &origin, path, 0),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let text = answers.to(&format!("/actions{path}")).await;
        assert!(text.starts_with("hoist refused: "), "{text}");
        assert!(text.contains(said), "{text}");
    }
    assert_eq!(
        state_of(&broker, &own.id).await.state,
        RequestState::Pending
    );

    // One review per reviewer: bob approves a two-approval request twice.
    let k8s = k8s_by(&broker, "carol").await;
    send(
        &url,
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &k8s.id,
            &origin,
            "/once",
            0,
        ),
    )
    .await;
    answers.to("/actions/once").await;
    send(
        &url,
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &k8s.id,
            &origin,
            "/twice",
            0,
        ),
    )
    .await;
    let text = answers.to("/actions/twice").await;
    assert!(text.contains("you already reviewed request"), "{text}");
    assert_eq!(state_of(&broker, &k8s.id).await.reviews.len(), 1);

    // A decided request: denied through the API, then approved from Slack.
    broker
        .as_user("dave")
        .review(&own.id, hoist_api::Decision::Deny, Some("not today"))
        .await
        .unwrap();
    send(
        &url,
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &own.id,
            &origin,
            "/late",
            0,
        ),
    )
    .await;
    let text = answers.to("/actions/late").await;
    assert!(
        text.contains("is denied; only pending requests can be reviewed"),
        "{text}"
    );
    assert_eq!(state_of(&broker, &own.id).await.reviews.len(), 1);
}

#[tokio::test]
async fn forged_stale_replayed_and_unmapped_posts_are_refused_and_audited() {
    let (broker, answers, origin) = slack_broker().await;
    let url = broker.url();
    let filed = k8s_by(&broker, "carol").await;

    // Signed with another secret.
    let mut forged = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/f",
        0,
    );
    forged.signature = slack_sdk_signature("not-the-secret", &forged.timestamp, &forged.body);
    let (status, answer) = send(&url, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["code"], "unauthenticated");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    // The body changed after signing.
    let mut altered = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/a",
        0,
    );
    altered.body = altered.body.replace(&filed.id, "req_other");
    assert_eq!(send(&url, &altered).await.0, StatusCode::UNAUTHORIZED);
    // Signed properly, but older than the window.
    let stale = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/s",
        WINDOW_SECS + 30,
    );
    let (status, answer) = send(&url, &stale).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["message"].as_str().unwrap().contains("too old"),
        "{answer}"
    );
    // No signature at all.
    let mut unsigned = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/u",
        0,
    );
    unsigned.signature = String::new();
    assert_eq!(send(&url, &unsigned).await.0, StatusCode::UNAUTHORIZED);
    assert!(state_of(&broker, &filed.id).await.reviews.is_empty());

    // The same genuine post twice: taken once.
    let post = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/r",
        0,
    );
    assert_eq!(send(&url, &post).await.0, StatusCode::OK);
    answers.to("/actions/r").await;
    let (status, answer) = send(&url, &post).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["message"].as_str().unwrap().contains("replay"),
        "{answer}"
    );
    // Its signature in upper case still verifies, and is the same post.
    let mut shouted = post.clone();
    shouted.signature = format!("v0={}", shouted.signature["v0=".len()..].to_uppercase());
    let (status, answer) = send(&url, &shouted).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["message"].as_str().unwrap().contains("replay"),
        "{answer}"
    );
    assert_eq!(state_of(&broker, &filed.id).await.reviews.len(), 1);

    // A Slack account the policy does not map.
    let (status, answer) = send(
        &url,
        &press(
            &slack_id("frank"),
            APPROVE_ACTION,
            &filed.id,
            &origin,
            "/frank",
            0,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = answers.to("/actions/frank").await;
    assert_eq!(answer["text"], text.as_str());
    assert!(
        text.contains("not linked to a hoist user")
            && text.contains(r#"slack = { team = "T0HOIST", user = "U0FRANK" }"#),
        "{text}"
    );
    assert_eq!(state_of(&broker, &filed.id).await.reviews.len(), 1);

    // Genuine, but not a press of hoist's buttons.
    let other = press(
        &slack_id("bob"),
        "someone_elses_button",
        &filed.id,
        &origin,
        "/o",
        0,
    );
    let (status, answer) = send(&url, &other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("not one of hoist's buttons"),
        "{answer}"
    );
    assert_eq!(state_of(&broker, &filed.id).await.reviews.len(), 1);

    // The notification's link button is posted too: taken, nothing done,
    // nothing refused.
    let open = press(&slack_id("bob"), "hoist_open", &filed.id, &origin, "/l", 0);
    assert_eq!(send(&url, &open).await.0, StatusCode::OK);
    assert_eq!(state_of(&broker, &filed.id).await.reviews.len(), 1);

    // A second forged post within the minute is counted, not written.
    let mut again = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/g",
        0,
    );
    again.signature = slack_sdk_signature("not-the-secret", &again.timestamp, &again.body);
    assert_eq!(send(&url, &again).await.0, StatusCode::UNAUTHORIZED);

    let refusals: Vec<(String, String)> = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.kind == AuditKind::SlackRefused)
        .map(|e| (e.actor, e.details["code"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("slack:unknown", "forged"),
        ("slack:unknown", "stale"),
        ("slack:unknown", "bad_signature"),
        ("slack:unknown", "replayed"),
        ("slack:T0HOIST:U0FRANK", "unmapped"),
        ("slack:unknown", "malformed"),
    ]
    .into_iter()
    .map(|(actor, code)| (actor.to_string(), code.to_string()))
    .collect();
    assert_eq!(refusals, expected);
    // Nothing of the post's answer URL, and no signature, in the log.
    let log = serde_json::to_string(&broker.as_user("erin").audit().await).unwrap();
    assert!(!log.contains(&post.signature) && !log.contains("/actions/"));
}

#[tokio::test]
async fn without_a_signing_secret_there_is_no_slack_endpoint() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let (_, origin) = receiver().await;
    let filed = k8s_by(&broker, "carol").await;
    let (status, answer) = send(
        &broker.url(),
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &filed.id,
            &origin,
            "/x",
            0,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "not_found");
    assert!(state_of(&broker, &filed.id).await.reviews.is_empty());
}

/// Two brokers on one PostgreSQL database: a post taken by one is a
/// replay at the other.
#[tokio::test]
async fn a_replay_is_refused_by_another_instance_on_the_same_database() {
    let pg = Postgres::start()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let db = pg.create_database("hoistd").unwrap();
    let (answers, origin) = receiver().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let store = Location::Postgres(db.clone()).open().unwrap();
        let options = Options {
            slack: Some(
                Settings::new(SECRET)
                    .unwrap()
                    .answer_to_loopback(&origin)
                    .unwrap(),
            ),
            ..Options::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let policy = Policy::parse("policy.toml", &policy()).unwrap();
        servers.push(
            Server::start_with(listener, store, policy, options)
                .await
                .unwrap(),
        );
    }
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}", s.addr))
        .collect();
    let carol = Client {
        base: urls[0].clone(),
        token: "t-carol".into(),
        http: reqwest::Client::new(),
    };
    let filed = carol
        .file(&request("k8s", "drain the failing node pool"))
        .await
        .unwrap();

    let post = press(
        &slack_id("bob"),
        APPROVE_ACTION,
        &filed.id,
        &origin,
        "/one",
        0,
    );
    assert_eq!(send(&urls[0], &post).await.0, StatusCode::OK);
    answers.to("/actions/one").await;
    let (status, answer) = send(&urls[1], &post).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("replay"));
    assert_eq!(carol.request(&filed.id).await.unwrap().reviews.len(), 1);
    for server in servers {
        server.stop().await;
    }
}

/// The real binary: the secret from a file only its owner reads (one others
/// may read is refused, the secret never shown) or from the environment,
/// and `/v1/slack/actions` served with it.
#[tokio::test]
async fn the_binary_takes_the_secret_from_a_private_file_or_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let secret_file = dir.path().join("slack-signing-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let check = |with_file: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoistd"));
        command
            .arg("check-config")
            .arg("--db")
            .arg(dir.path().join("hoistd.db"))
            .arg("--policy")
            .arg(&policy_file)
            .env_remove("HOISTD_SLACK_SIGNING_SECRET")
            .env_remove("HOISTD_SLACK_SIGNING_SECRET_FILE");
        if with_file {
            command.arg("--slack-signing-secret-file").arg(&secret_file);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, said) = check(true);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("error: Slack: ") && said.contains("chmod 600"),
        "{said}"
    );
    assert!(!said.contains(SECRET), "{said}");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, said) = check(true);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("ok: Slack: button presses taken at /v1/slack/actions"),
        "{said}"
    );
    let (_, said) = check(false);
    assert!(said.contains("ok: Slack: off"), "{said}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("hoistd.db"))
        .arg("--policy")
        .arg(&policy_file)
        .env_remove("HOISTD_SLACK_SIGNING_SECRET_FILE")
        .env("HOISTD_SLACK_SIGNING_SECRET", SECRET)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), || {
        let health = http.get(format!("{base}/v1/health")).send();
        async move { health.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let carol = Client {
        base: base.clone(),
        token: "t-carol".into(),
        http: http.clone(),
    };
    let filed = carol
        .file(&request("k8s", "drain the failing node pool"))
        .await
        .unwrap();
    // Answers only ever go to Slack's origin: this one is posted nowhere.
    let elsewhere = "http://127.0.0.1:9/";
    let (status, answer) = send(
        &base,
        &press(
            &slack_id("bob"),
            APPROVE_ACTION,
            &filed.id,
            elsewhere,
            "/b",
            0,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("1 of 2 approvals"),
        "{answer}"
    );
    let mut forged = press(
        &slack_id("dave"),
        APPROVE_ACTION,
        &filed.id,
        elsewhere,
        "/d",
        0,
    );
    forged.signature = slack_sdk_signature("not-the-secret", &forged.timestamp, &forged.body);
    assert_eq!(send(&base, &forged).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(carol.request(&filed.id).await.unwrap().reviews.len(), 1);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
}

/// An Enterprise Grid member the policy maps under the organisation's
/// `E…` id acts as their user when they press in one of its workspaces;
/// the same press naming no such team is nobody's, and a `U…` id may not
/// be named under an organisation.
#[tokio::test]
async fn an_organisation_member_is_found_under_its_id_wherever_they_press() {
    let text = policy_text("").replace(
        "[users.bob]\n",
        "[users.bob]\nslack = { team = \"E0ORG\", user = \"W0BOB\" }\n",
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let filed = k8s_by(&broker, "carol").await;
    let press = |home_team: Option<&'static str>| {
        broker.broker().review_from_slack(
            "T0WORKSPC",
            home_team,
            "W0BOB",
            &filed.id,
            Decision::Approve,
        )
    };
    assert!(matches!(
        press(None).unwrap(),
        hoistd::broker::FromSlack::Unmapped
    ));
    match press(Some("E0ORG")).unwrap() {
        hoistd::broker::FromSlack::Reviewed { user, .. } => assert_eq!(user, "bob"),
        other => panic!("not reviewed: {other:?}"),
    }
    let reviewed = state_of(&broker, &filed.id).await;
    assert_eq!(reviewed.reviews.len(), 1);
    assert_eq!(reviewed.reviews[0].reviewer, "bob");
    // A U... id under an organisation is refused at load: it is one
    // workspace's, and would name nobody there (or someone else).
    let mapped_by_org = policy_text("").replace(
        "[users.dave]\n",
        "[users.dave]\nslack = { team = \"E0ORG\", user = \"U0DAVE\" }\n",
    );
    std::fs::write(broker.policy_path(), mapped_by_org).unwrap();
    let refused = broker
        .server()
        .reload(&broker.policy_path())
        .await
        .expect_err("a U... id under an organisation")
        .to_string();
    assert!(refused.contains("by their W... id"), "{refused}");
}

/// A guest from another workspace in a shared channel (a `U…` id whose
/// own team is another `T…`) is looked up under their own workspace only:
/// a host's member mapped under the same id is not who pressed. (A policy
/// cannot map one id to two users in two teams: a Slack id is one person.)
#[tokio::test]
async fn a_guests_id_is_looked_up_under_their_own_workspace_only() {
    let text = policy_text("").replace(
        "[users.bob]\n",
        "[users.bob]\nslack = { team = \"T0HOST\", user = \"U0SAME\" }\n",
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let filed = k8s_by(&broker, "carol").await;
    let press = |home_team: Option<&'static str>| {
        broker.broker().review_from_slack(
            "T0HOST",
            home_team,
            "U0SAME",
            &filed.id,
            Decision::Approve,
        )
    };
    // A guest nobody mapped under their own workspace is nobody, even
    // where the host maps the id.
    assert!(matches!(
        press(Some("T0GUEST")).unwrap(),
        hoistd::broker::FromSlack::Unmapped
    ));
    assert!(state_of(&broker, &filed.id).await.reviews.is_empty());
    // The host's own member, pressing there, is themselves.
    match press(None).unwrap() {
        hoistd::broker::FromSlack::Reviewed { user, .. } => assert_eq!(user, "bob"),
        other => panic!("not reviewed: {other:?}"),
    }
}
