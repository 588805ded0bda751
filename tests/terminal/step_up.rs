//! A tier-0 role whose step-up wants a recent sign-in, filed in the real
//! `hoist` signed in through a real OpenID provider: the broker refuses the
//! filing, the TUI signs the person in again in its pop-up (a fresh sign-in
//! at the provider, so `auth_time` is now) and files the same form once
//! more, without the person typing it again. The command refuses alike,
//! naming the command that signs in afresh.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::oidc::Provider;
use super::{LOAD, Pane, device_prompt, env, work_profile};

/// How recent a sign-in `prod-db` wants. The first sign-in is let grow
/// older than this; the second is made within it (the device flow polls
/// every few seconds).
const STEP_UP_SECS: u64 = 30;

fn policy(issuer: &str) -> String {
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
step_up = "{STEP_UP_SECS}s"

[[oidc]]
issuer = "{issuer}"
client_id = "hoist"
leeway = "0s"
scopes = ["openid", "offline_access"]
"#
    )
}

#[test]
fn a_sign_in_too_old_for_the_role_is_made_again_in_place_and_the_form_filed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let provider = runtime.block_on(Provider::start());
    let mut broker = runtime.block_on(
        hoistd::testing::TestBroker::builder()
            .policy(&policy(&provider.issuer))
            .start(),
    );
    let config = tempfile::tempdir().unwrap();
    work_profile(config.path(), &broker.url());
    let hoist = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .args(["--profile", "work"])
            .args(args)
            .envs(env(config.path()))
            .env_remove("HOIST_BROKER")
            .env_remove("HOIST_PROFILE")
            .stdin(Stdio::null());
        command
    };

    // carol signs in as `hoist login` does: the device flow.
    let mut login = hoist(&["login"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut said = BufReader::new(login.stderr.take().unwrap()).lines();
    let complete = said
        .by_ref()
        .map(|line| line.unwrap())
        .find_map(|line| {
            line.strip_prefix("(or open ")
                .and_then(|l| l.strip_suffix(')'))
                .map(str::to_string)
        })
        .expect("the verification URL was shown");
    runtime.block_on(provider.approve_device(&complete, "carol"));
    let rest: Vec<String> = said.map(|l| l.unwrap()).collect();
    assert!(login.wait().unwrap().success(), "{rest:?}");
    let signed_in = Instant::now();

    let env = env(config.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pane = Pane::start("--profile work", &env, 120, 36);
    pane.wait_for("work (hoistd) · carol", LOAD);
    pane.keys(&["/"]);
    pane.type_text("prod-db");
    pane.keys(&["Enter"]);
    pane.type_text("fail over the primary");
    pane.keys(&["Tab"]);
    pane.type_text("CHG-1");

    // The sign-in grows too old for the role (waited for, not measured).
    let old = Duration::from_secs(STEP_UP_SECS + 2);
    std::thread::sleep(old.saturating_sub(signed_in.elapsed()));

    // The command refuses too, and says which sign-in the role wants: a
    // plain `hoist login` may be signed in from the provider's session.
    let refused = hoist(&[
        "request",
        "prod-db",
        "--reason",
        "fail over the primary",
        "--ticket",
        "CHG-1",
    ])
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{said}");
    assert!(
        said.contains("sign in again with `hoist login --fresh`")
            && said.contains("needs a sign-in within"),
        "{said}"
    );
    // exec, the runbook's way to such a role, says so as well.
    let refused = hoist(&[
        "exec",
        "prod-db",
        "--reason",
        "fail over the primary",
        "--ticket",
        "CHG-1",
        "--",
        "true",
    ])
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{said}");
    assert!(
        said.contains("sign in again with `hoist login --fresh`"),
        "{said}"
    );
    pane.keys(&["C-s"]);
    pane.wait_for("type its id to file", LOAD);
    pane.type_text("prod-db");
    pane.keys(&["Enter"]);

    // Refused for the old sign-in: hoist asks for a new one in its pop-up.
    let screen = pane.wait_for("This role asks for a recent sign-in", LOAD);
    let (url, code) = device_prompt(&screen);
    runtime.block_on(provider.approve_device_code(&url, &code, "carol"));

    // Filed with the form as typed, once.
    let filed = pane.wait_for("Requested prod-db", LOAD);
    assert!(!filed.contains("hoist login"), "{filed}");
    let out = hoist(&["requests", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests: Vec<hoist_api::AccessRequest> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].role, "prod-db");
    assert_eq!(requests[0].justification, "fail over the primary");
    assert_eq!(requests[0].ticket.as_deref(), Some("CHG-1"));
    assert_eq!(requests[0].tier, Some(0));

    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
    runtime.block_on(broker.stop());
}
