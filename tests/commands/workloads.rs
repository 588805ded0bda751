//! `hoist exec --workload-token-file` and its other token sources, the real
//! binary against a real broker and a real OpenID provider minting the
//! workload's token: exchange, run, revoke, the command's exit code; a job
//! that waits for a person's approval, and one that gives up waiting.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hoist_api::{AuditEvent, AuditKind, Grant, GrantState};
use serde_json::json;

use crate::oidc::Provider;

const AUDIENCE: &str = "https://hoist.test/ci";

fn policy(issuer: &str) -> String {
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
run_url = "https://ci.example/{{repository}}/runs/{{run_id}}"
[workloads.claims]
sub = "deploy-bot"
repository = "acme/app"
[[workloads.roles]]
role = "deploy"
max_ttl_minutes = 10
[[workloads.roles]]
role = "db"
max_ttl_minutes = 5
approval = "person"
"#,
        base = hoistd::testing::policy_text("")
    )
}

async fn setup() -> (Provider, hoistd::testing::TestBroker, String) {
    let provider = Provider::start().await;
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy(&provider.issuer))
        .start()
        .await;
    let token = provider
        .workload_token(
            "deploy-bot",
            AUDIENCE,
            &json!({ "repository": "acme/app", "run_id": 7 }),
            None,
        )
        .await;
    (provider, broker, token)
}

/// `hoist exec` as a workload: no config, no keyring, the broker by URL.
fn hoist_exec(broker: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let config = tempfile::tempdir().unwrap().keep();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
    command
        .arg("--broker")
        .arg(broker)
        .arg("exec")
        .args(args)
        .env("HOIST_CONFIG_DIR", &config)
        .env("HOIST_CACHE_DIR", config.join("cache"))
        // A keyring that cannot work: the workload path must not touch it.
        .env("HOIST_KEYRING", "secret-service")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove(hoist::commands::ENV_WORKLOAD_TOKEN)
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// What the command printed of its environment, one `NAME=value` a line.
const SHOW_ENV: &str = r#"echo "grant=$HOIST_GRANT_ID"; echo "role=$HOIST_ROLE"; echo "credential=$HOIST_CREDENTIAL"; echo "workload=${HOIST_WORKLOAD_TOKEN:-none}"; echo "ci=${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-none} ${ACTIONS_ID_TOKEN_REQUEST_URL:-none}"; exit 7"#;

fn line<'a>(out: &'a Output, key: &str) -> &'a str {
    let stdout = std::str::from_utf8(&out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

async fn assert_ran_and_revoked(broker: &hoistd::testing::TestBroker, out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's exit code is forwarded: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grant_id = line(out, "grant");
    assert_eq!(line(out, "role"), "deploy");
    let claims = crate::oidc::jwt_claims(line(out, "credential"));
    assert_eq!(claims["act"]["sub"], "workload:ci:deploy-bot");
    let grant: Grant = broker.as_user("erin").grant(grant_id).await.unwrap();
    assert_eq!(grant.state, GrantState::Revoked);
    assert_eq!(grant.revoked_by.as_deref(), Some("workload:ci:deploy-bot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_workload_token_file_exchanges_runs_and_revokes() {
    let (_provider, broker, token) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    let out = hoist_exec(
        &broker.url(),
        &[
            "deploy",
            "--workload-token-file",
            path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            SHOW_ENV,
        ],
        &[],
    )
    .output()
    .unwrap();
    assert_ran_and_revoked(&broker, &out).await;

    // The same token again is a replay: refused, nothing run.
    let again = hoist_exec(
        &broker.url(),
        &[
            "deploy",
            "--workload-token-file",
            path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo ran",
        ],
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(7), "refused by the broker");
    assert!(again.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("replayed"), "{stderr}");
    assert!(!stderr.contains(&token), "the token is never printed");
}

/// A command that outlives its grant: the credential ends with the grant,
/// so the revoke after it is refused as unauthenticated, which means the
/// grant has ended already; the command's own exit code stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_outlives_its_grant_exits_with_its_own_code() {
    let (_provider, broker, token) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    let out = hoist_exec(
        &broker.url(),
        &[
            "deploy",
            "--duration",
            "2s",
            "--workload-token-file",
            path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "sleep 3; exit 3",
        ],
        &[],
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("had already ended at its expiry"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_takes_the_workload_token_from_the_environment() {
    let (_provider, broker, token) = setup().await;
    let out = hoist_exec(
        &broker.url(),
        &["deploy", "--", "sh", "-c", SHOW_ENV],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .output()
    .unwrap();
    assert_ran_and_revoked(&broker, &out).await;
    assert_eq!(
        line(&out, "workload"),
        "none",
        "the command gets the grant's credential, not the job's identity token"
    );
}

/// A CI system's token service, as GitHub Actions offers it: a GET with
/// the request token as bearer and `audience` in the query answers
/// `{"value": <ID token>}`. Serves one request; returns its URL and what
/// the request asked.
fn token_service(token: String) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/token?api-version=2.0",
        listener.local_addr().unwrap()
    );
    let served = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&request).into_owned();
        let authorised = request
            .lines()
            .any(|l| l.eq_ignore_ascii_case("authorization: bearer request-token"));
        let body = if authorised {
            json!({ "value": token }).to_string()
        } else {
            json!({ "message": "no" }).to_string()
        };
        let status = if authorised {
            "200 OK"
        } else {
            "401 Unauthorized"
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request
    });
    (url, served)
}

/// A server on loopback that answers every request with `answer` (a whole
/// HTTP response), until the test ends.
fn answering(answer: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 8192];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    url
}

/// The broker's answers to a job's first exchange are lost for a few
/// seconds, its task filed all the same (it waits for a person): hoist
/// asks again with the same token, which polls the same task, rather than
/// give up with the task left in the approvers' queue, and runs the
/// command once it is approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_exchange_whose_answers_are_lost_is_asked_again() {
    let (_provider, broker, token) = setup().await;
    let url = crate::proxy::relay_losing_at_first(
        &broker.url(),
        "POST /v1/token ",
        Duration::from_secs(2),
    );
    let mut child = hoist_exec(
        &url,
        &["db", "--", "sh", "-c", "echo role=$HOIST_ROLE; exit 0"],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let request = queued(&broker, &mut child).await;
    // Past the lost answers, and still waiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.try_wait().unwrap().is_none(), "exec gave up");
    broker.as_user("bob").approve(&request.id).await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(line(&out, "role"), "db");
    let queue = broker.as_user("bob").queue().await;
    assert!(queue.is_empty(), "one task, filed once: {queue:?}");
}

/// A proxy's HTML error page and a broker's JSON 503 are both "try again
/// later" (exit 6), named; neither is taken for a broken broker (exit 1).
/// hoist asks again until its `--timeout` (here), or a minute, in case the
/// task was filed with its answer lost, then withdraws it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_or_an_unavailable_broker_exits_6() {
    let response = |status: &str, kind: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let html = answering(response(
        "502 Bad Gateway",
        "text/html",
        "<html>upstream</html>",
    ));
    let unavailable = answering(response(
        "503 Service Unavailable",
        "application/json",
        &json!({
            "error": "temporarily_unavailable",
            "error_description": "the database does not answer",
            "code": "unavailable",
        })
        .to_string(),
    ));
    for (url, said) in [
        (html, "answered 502 Bad Gateway without hoistd's JSON"),
        (unavailable, "the database does not answer"),
    ] {
        let out = hoist_exec(
            &url,
            &["deploy", "--timeout", "2s", "--", "true"],
            &[(hoist::commands::ENV_WORKLOAD_TOKEN, "a.b.c")],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(stderr.contains("withdraw"), "{stderr}");
    }
}

/// The CI system's token service is an endpoint as any other: https, or
/// http to loopback only, and no credentials in its URL (never echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_token_service_url_is_checked_before_any_token_goes_to_it() {
    for (url, said) in [
        (
            "http://ci.example/token?api-version=2.0",
            "plain http is only allowed to a loopback address",
        ),
        (
            "https://user:s3cret@ci.example/token",
            "credentials do not belong in the URL",
        ),
    ] {
        let out = hoist_exec(
            "http://127.0.0.1:9",
            &["deploy", "--workload-audience", AUDIENCE, "--", "true"],
            &[
                ("ACTIONS_ID_TOKEN_REQUEST_URL", url),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token"),
            ],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

/// A signal while the CI system's token service keeps hoist waiting ends
/// hoist at once, by that signal: nothing was asked of the broker yet, and
/// nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_the_token_service_is_silent_ends_hoist_at_once() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || silent.accept().map(|(stream, _)| stream));
    let ran = tempfile::tempdir().unwrap();
    let marker = ran.path().join("ran");
    let child = hoist_exec(
        "http://127.0.0.1:9",
        &[
            "deploy",
            "--workload-audience",
            AUDIENCE,
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token"),
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Asked, and kept waiting.
    let _connection = held.join().unwrap().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "hoist waited out the token service's timeout"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(15),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was asked for or run"), "{stderr}");
    assert!(!marker.exists());
}

/// The same while the token file is a pipe nobody writes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_the_token_file_is_a_silent_pipe_ends_hoist_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("token");
    assert!(
        Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap()
            .success()
    );
    let child = hoist_exec(
        "http://127.0.0.1:9",
        &[
            "deploy",
            "--workload-token-file",
            pipe.to_str().unwrap(),
            "--",
            "true",
        ],
        &[],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Time to reach the read.
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "hoist waited on the pipe"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(15),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was asked for or run"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_asks_the_ci_systems_token_service_for_its_audience() {
    let (_provider, broker, token) = setup().await;
    let (url, served) = token_service(token);
    let out = hoist_exec(
        &broker.url(),
        &[
            "deploy",
            "--workload-audience",
            AUDIENCE,
            "--",
            "sh",
            "-c",
            SHOW_ENV,
        ],
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token"),
        ],
    )
    .output()
    .unwrap();
    let request = served.join().unwrap();
    assert!(
        request.starts_with("GET /token?api-version=2.0&audience=https%3A%2F%2Fhoist.test%2Fci "),
        "{request}"
    );
    assert_ran_and_revoked(&broker, &out).await;
    // What could ask the CI system for another identity stays with hoist.
    assert_eq!(line(&out, "ci"), "none none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_a_role_a_person_approves_waits_then_runs() {
    let (_provider, broker, token) = setup().await;
    let mut child = hoist_exec(
        &broker.url(),
        &["db", "--", "sh", "-c", "echo role=$HOIST_ROLE; exit 0"],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let bob = broker.as_user("bob");
    let request = loop {
        if let Some(request) = bob
            .queue()
            .await
            .into_iter()
            .find(|r| r.requester == "workload:ci:deploy-bot")
        {
            break request;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "exec ended ({status}) before anything was queued: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        request
            .justification
            .contains("run: https://ci.example/acme/app/runs/7"),
        "{}",
        request.justification
    );
    bob.approve(&request.id).await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line(&out, "role"), "db");
    assert!(String::from_utf8_lossy(&out.stderr).contains("waits for a person's approval"));
    let audit: Vec<AuditEvent> = broker.as_user("erin").audit().await;
    assert!(audit.iter().any(|e| e.kind == AuditKind::Revoked
        && e.actor == "workload:ci:deploy-bot"
        && e.request_id.as_deref() == Some(request.id.as_str())));
}

/// The workload's request in bob's queue, once exec has filed it.
async fn queued(
    broker: &hoistd::testing::TestBroker,
    child: &mut std::process::Child,
) -> hoist_api::AccessRequest {
    loop {
        if let Some(request) = broker
            .as_user("bob")
            .queue()
            .await
            .into_iter()
            .find(|r| r.requester == "workload:ci:deploy-bot")
        {
            return request;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "exec ended before anything was queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job that gives up waiting for its approver, at its --timeout or on a
/// signal, withdraws its request: nothing is left in the approvers' queue
/// to be approved for a job that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_gives_up_waiting_withdraws_its_request() {
    let (provider, broker, token) = setup().await;
    let out = hoist_exec(
        &broker.url(),
        &["db", "--timeout", "2s", "--", "sh", "-c", "echo ran"],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(out.stdout.is_empty(), "nothing was run");
    assert!(said.contains("gave up waiting for"), "{said}");
    assert!(said.contains("withdrew it (cancelled)"), "{said}");
    let bob = broker.as_user("bob");
    assert!(
        !bob.queue()
            .await
            .iter()
            .any(|r| r.requester == "workload:ci:deploy-bot"),
        "the withdrawn request left the queue"
    );

    let token = provider
        .workload_token(
            "deploy-bot",
            AUDIENCE,
            &json!({ "repository": "acme/app", "run_id": 8 }),
            None,
        )
        .await;
    let mut child = hoist_exec(
        &broker.url(),
        &["db", "--", "sh", "-c", "echo ran"],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let request = queued(&broker, &mut child).await;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "nothing was run");
    assert!(said.contains("SIGTERM while waiting"), "{said}");
    assert!(said.contains("withdrew it (cancelled)"), "{said}");
    let request = bob.request(&request.id).await.unwrap();
    assert_eq!(request.state, hoist_api::RequestState::Cancelled);
    let audit: Vec<AuditEvent> = broker.as_user("erin").audit().await;
    assert!(audit.iter().any(|e| e.kind == AuditKind::Cancelled
        && e.actor == "workload:ci:deploy-bot"
        && e.request_id.as_deref() == Some(request.id.as_str())));
}

/// A signal while the broker's answer with a credential is on its way:
/// hoist hears the answer out, runs nothing, and revokes the grant.
/// Withdrawing the task instead would leave it active until it expires, as
/// the broker had handed its credential over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_exchange_revokes_what_it_issued() {
    let (_provider, broker, token) = setup().await;
    // The broker's answer with a credential is held on its way until the
    // signal was sent.
    let (gate, keeper) = crate::proxy::gate();
    let url = crate::proxy::relay(
        &broker.url(),
        |_| {},
        move |line, answer| {
            if line.starts_with("POST /v1/token ") && answer.starts_with(b"HTTP/1.1 200") {
                gate.hold();
            }
        },
    );
    let child = hoist_exec(
        &url,
        &["deploy", "--", "sh", "-c", "echo ran"],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    keeper.reached("the broker issued no credential").await;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    keeper.open();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(15),
        "{said}"
    );
    assert!(out.stdout.is_empty(), "nothing was run: {said}");
    let grants = broker
        .broker()
        .store()
        .read()
        .unwrap()
        .grants(&hoistd::store::GrantQuery {
            holder: Some("workload:ci:deploy-bot".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].state, GrantState::Revoked, "{said}");
    assert!(said.contains("it was not run"), "{said}");
}

/// `hoist` signed in with a static token of the test policy.
fn person(broker: &hoistd::testing::TestBroker, user: &str) -> crate::Hoist {
    let hoist = crate::Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: broker.url(),
    };
    let out = hoist.run_with_stdin(&["login", "--with-token"], &format!("t-{user}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hoist
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_see_workload_grants_and_filter_the_audit_log_by_kind() {
    let (_provider, broker, token) = setup().await;
    // People's events first, more of them than a page of the filtered
    // view below: the filter looks past them.
    for user in ["bob", "carol", "dave"] {
        broker
            .as_user(user)
            .file(&hoistd::testing::request("logs", "tail the logs"))
            .await
            .unwrap();
    }
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/token", broker.url()))
        .form(&[
            ("grant_type", hoist_api::TOKEN_EXCHANGE_GRANT),
            ("subject_token", token.as_str()),
            ("subject_token_type", hoist_api::JWT_TOKEN_TYPE),
            ("scope", "deploy"),
        ])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let issued: hoist_api::TokenExchangeResponse = answer.json().await.unwrap();
    // A person's grant too, which the workload view leaves out.
    broker
        .as_user("alice")
        .file(&hoistd::testing::request("logs", "tail the logs"))
        .await
        .unwrap();

    let erin = person(&broker, "erin");
    let grants: Vec<Grant> = erin.json(&["grants", "--workloads", "--json"]);
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].id, issued.grant_id);
    assert_eq!(grants[0].holder, "workload:ci:deploy-bot");
    let table = erin.run(&["grants", "--workloads"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("workload:ci:deploy-bot"));
    // Someone who neither approves nor audits sees none.
    let frank = person(&broker, "frank");
    let none: Vec<Grant> = frank.json(&["grants", "--workloads", "--json"]);
    assert!(none.is_empty(), "{none:?}");

    let workloads: Vec<AuditEvent> = erin.json(&["audit", "--actor-kind", "workload", "--json"]);
    assert!(!workloads.is_empty());
    assert!(workloads.iter().all(AuditEvent::concerns_workload));
    assert!(
        workloads
            .iter()
            .any(|e| e.kind == AuditKind::CredentialIssued)
    );
    let people: Vec<AuditEvent> = erin.json(&["audit", "--actor-kind", "person", "--json"]);
    assert!(people.iter().any(|e| e.actor == "alice"));
    assert!(!people.iter().any(AuditEvent::concerns_workload));
    // A page of the filtered view is a page of what matches.
    let page: Vec<AuditEvent> = erin.json(&[
        "audit",
        "--actor-kind",
        "workload",
        "--limit",
        "2",
        "--json",
    ]);
    assert_eq!(page, workloads[..2], "{page:#?}");
    let next: Vec<AuditEvent> = erin.json(&[
        "audit",
        "--actor-kind",
        "workload",
        "--after",
        &page[1].seq.to_string(),
        "--json",
    ]);
    assert_eq!(next, workloads[2..]);
}

/// A job waiting for its approver rides out a broker that goes away for a
/// moment (a restart): it asks again, and runs once approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_rides_out_a_broker_restart() {
    let (_provider, mut broker, token) = setup().await;
    let mut child = hoist_exec(
        &broker.url(),
        &["db", "--", "sh", "-c", "echo role=$HOIST_ROLE"],
        &[(hoist::commands::ENV_WORKLOAD_TOKEN, &token)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let request = queued(&broker, &mut child).await;
    broker.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job gave up while the broker was away"
    );
    broker.restart().await;
    broker.as_user("bob").approve(&request.id).await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line(&out, "role"), "db");
}

/// A token file is read up to 64 KiB: a wrong path (a log, a disk image)
/// is refused as too long, with its path, before anything is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_too_long_to_be_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.log");
    std::fs::write(&file, "x".repeat((64 << 10) + 1)).unwrap();
    let out = hoist_exec(
        "http://127.0.0.1:9",
        &[
            "deploy",
            "--workload-token-file",
            file.to_str().unwrap(),
            "--",
            "true",
        ],
        &[],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("big.log") && stderr.contains("longer than 64 KiB"),
        "{stderr}"
    );
    let fits = dir.path().join("token");
    std::fs::write(&fits, "x".repeat(64 << 10)).unwrap();
    let out = hoist_exec(
        "http://127.0.0.1:9",
        &[
            "deploy",
            "--workload-token-file",
            fits.to_str().unwrap(),
            // Read, then sent to no broker: asked again no longer than this.
            "--timeout",
            "1s",
            "--",
            "true",
        ],
        &[],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("longer than"), "{stderr}");
    // Read and sent: no broker listens there, so nothing was filed, and
    // nothing is withdrawn.
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("nothing was filed") && stderr.contains("connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("withdraw"), "{stderr}");
}
