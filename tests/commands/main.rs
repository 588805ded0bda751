//! The real `hoist` binary against a real broker on loopback: every command,
//! every exit code, `--wait` and `exec` end to end.
//!
//! Long because every command shares the harness at the top (a broker, the
//! binary, its exit codes); split it by command when it grows further.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/oidc.rs"]
mod oidc;
mod proxy;
mod ssh;
mod tls;
mod workloads;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hoist_api::{AccessRequest, Grant, GrantState, RequestState, Role};

/// A broker with the demo policy (tokens `demo-<name>`), and `hoist` for its people.
struct Broker {
    broker: hoistd::testing::TestBroker,
    url: String,
}

impl Broker {
    async fn start() -> Broker {
        let broker = hoistd::testing::TestBroker::builder()
            .policy(hoist::demo::DEMO_POLICY)
            .token_prefix("demo-")
            .start()
            .await;
        let url = broker.url();
        Broker { broker, url }
    }

    /// `hoist` signed in as a demo person, with a config directory of their own.
    fn person(&self, user: &str) -> Hoist {
        let hoist = Hoist {
            config: tempfile::tempdir().unwrap(),
            broker: self.url.clone(),
        };
        let out = hoist.run_with_stdin(&["login", "--with-token"], &format!("demo-{user}\n"));
        assert!(
            out.status.success(),
            "login as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hoist
    }
}

struct Hoist {
    config: tempfile::TempDir,
    broker: String,
}

impl Hoist {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .arg("--broker")
            .arg(&self.broker)
            .args(args)
            .env("HOIST_CONFIG_DIR", self.config.path())
            .env("HOIST_KEYRING", "keyutils")
            .env("HOIST_CACHE_DIR", self.config.path().join("cache"))
            .env_remove("NO_COLOR");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// hoist as a job runs it: in a process group of its own, never the
    /// foreground of whatever terminal the tests run from.
    fn spawn(&self, args: &[&str]) -> Child {
        std::os::unix::process::CommandExt::process_group(&mut self.command(args), 0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const DB: [&str; 6] = [
    "request",
    "prod-db-admin",
    "--reason",
    "Vacuum the bloated orders table",
    "--ticket",
    "CHG-1024",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_commands_print_tables_for_people_and_json_or_yaml_for_scripts() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");

    let roles: Vec<Role> = alice.json(&["roles", "--json"]);
    assert_eq!(roles.len(), 7);
    let yaml = alice.run(&["roles", "--output", "yaml"]);
    let from_yaml: Vec<Role> = serde_norway::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_yaml, roles);
    let table = String::from_utf8(alice.run(&["roles"]).stdout).unwrap();
    assert!(table.starts_with("ROLE "), "{table}");
    assert!(table.contains("prod-db-admin"));
    assert!(
        !table.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let filed: AccessRequest = alice.json(&[&DB[..], &["--json"]].concat());
    let mine: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    assert!(mine.iter().any(|r| r.id == filed.id));
    let raw = String::from_utf8(alice.run(&["status", &filed.id, "--json"]).stdout).unwrap();
    let created = serde_json::from_str::<serde_json::Value>(&raw).unwrap()["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        created.ends_with('Z'),
        "JSON times are RFC 3339 UTC: {created}"
    );
    let human = String::from_utf8(alice.run(&["requests"]).stdout).unwrap();
    let zone = regex::Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d").unwrap();
    assert!(
        zone.is_match(&human),
        "people get local times with the zone: {human}"
    );

    let audit = alice.run(&["audit", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(events.iter().any(|e| e["kind"] == "requested"));
    let grants: Vec<Grant> = alice.json(&["grants", "--json"]);
    assert!(grants.is_empty());
}

/// Text the broker already holds with bidi controls and invisible
/// characters (here in the operator's policy) shows them as visible escapes
/// in tables; JSON and YAML keep the exact text, escaped so a terminal
/// shows it as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_characters_show_in_tables_and_survive_exactly_in_json_and_yaml() {
    let hidden = "Production\u{200B}logs \u{202E}daer\u{2028}(read)";
    let policy = hoist::demo::DEMO_POLICY.replace(
        r#"name = "Production logs (read)""#,
        r#"name = "Production\u200Blogs \u202Edaer\u2028(read)""#,
    );
    assert_ne!(policy, hoist::demo::DEMO_POLICY);
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy)
        .token_prefix("demo-")
        .start()
        .await;
    let url = broker.url();
    let broker = Broker { broker, url };
    let alice = broker.person("alice");

    let table = String::from_utf8(alice.run(&["roles"]).stdout).unwrap();
    assert!(
        table.contains("Production⟨U+200B⟩logs ⟨U+202E⟩daer⟨U+2028⟩(read)"),
        "{table}"
    );
    for raw in ['\u{200B}', '\u{202E}', '\u{2028}'] {
        assert!(!table.contains(raw), "U+{:04X} in the table", raw as u32);
    }

    // The escapes are what a terminal shows; the characters are not there.
    let escaped = |out: &[u8]| {
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.contains(r"Production\u200blogs \u202edaer\u2028(read)"),
            "{text}"
        );
        assert!(
            !text.contains('\u{202E}') && !text.contains('\u{200B}'),
            "{text}"
        );
    };
    let json = alice.run(&["roles", "--json"]);
    escaped(&json.stdout);
    let roles: Vec<Role> = serde_json::from_slice(&json.stdout).unwrap();
    let logs = roles.iter().find(|r| r.id == "prod-logs-read").unwrap();
    assert_eq!(logs.name, hidden, "JSON keeps the exact text");

    let yaml = alice.run(&["roles", "--output", "yaml"]);
    escaped(&yaml.stdout);
    let roles: Vec<Role> = serde_norway::from_slice(&yaml.stdout).unwrap();
    let logs = roles.iter().find(|r| r.id == "prod-logs-read").unwrap();
    assert_eq!(logs.name, hidden, "YAML keeps the exact text");
}

/// What the broker says about people and roles reaches the terminal only
/// as text: `login`, `whoami` and the tables print no escape sequence, no
/// control and no bidi character from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_from_the_broker_print_harmlessly() {
    let policy = hoist::demo::DEMO_POLICY
        .replace(
            r#"name = "Alice Adams""#,
            r#"name = "Alice\u001B]0;pwned\u0007 \u202Eevil \u001B[2J""#,
        )
        .replace(
            r#"name = "Production logs (read)""#,
            r#"name = "Logs\u001B[31m \u009B2J \u2066x""#,
        );
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy)
        .token_prefix("demo-")
        .start()
        .await;
    let url = broker.url();
    let broker = Broker { broker, url };
    let alice = broker.person("alice");
    let login = alice.run_with_stdin(&["login", "--with-token"], "demo-alice\n");
    let whoami = alice.run(&["whoami"]);
    let roles = alice.run(&["roles"]);
    for (what, out) in [("login", &login), ("whoami", &whoami), ("roles", &roles)] {
        assert!(out.status.success(), "{what}: {}", stderr(out));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
        for c in text.chars() {
            assert!(
                c == '\n' || (!c.is_control() && !hoist::text::sanitize::is_invisible(c)),
                "{what}: U+{:04X} printed: {text}",
                c as u32
            );
        }
    }
    let said = String::from_utf8_lossy(&whoami.stdout);
    assert!(
        said.contains("Alice⟨U+001B⟩]0;pwned⟨U+0007⟩ ⟨U+202E⟩evil ⟨U+001B⟩[2J"),
        "{said}"
    );
    assert!(
        stderr(&login).contains("Alice⟨U+001B⟩]0;pwned"),
        "{}",
        stderr(&login)
    );
    let table = String::from_utf8_lossy(&roles.stdout);
    assert!(
        table.contains("Logs⟨U+001B⟩[31m ⟨U+009B⟩2J ⟨U+2066⟩x"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_is_resolved_by_an_approval_from_another_identity() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let bob = broker.person("bob");
    let mut waiting = alice.spawn(&[&DB[..], &["--wait", "--json"]].concat());
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let first = progress.next().unwrap().unwrap();
    assert!(first.contains("pending"), "{first}");
    let id = first.split_whitespace().next().unwrap().to_string();

    let approved = bob.run(&["approve", &id, "--comment", "go"]);
    assert!(approved.status.success(), "{}", stderr(&approved));
    let rest: Vec<String> = progress.map(|l| l.unwrap()).collect();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("active")), "{rest:?}");
    let request: AccessRequest = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(request.state, RequestState::Active);
}

/// An id is sent as typed: one with a stray character is not found, never
/// taken for another (`req_1.2` was once `req_12`), and one that a URL
/// reads as a move is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_is_sent_as_typed() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let bob = broker.person("bob");
    let filed: AccessRequest = alice.json(&[&DB[..], &["--json"]].concat());
    let (head, tail) = filed.id.split_at(filed.id.len() / 2);
    for typo in [format!("{head}.{tail}"), format!("{head}/{tail}")] {
        let out = bob.run(&["approve", &typo]);
        assert!(!out.status.success(), "{typo}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("no request `{typo}`")),
            "{typo}: {}",
            stderr(&out)
        );
    }
    let out = bob.run(&["approve", ".."]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`..` is not an id or reference"),
        "{}",
        stderr(&out)
    );
    let kept: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    assert_eq!(kept[0].state, RequestState::Pending, "nothing was approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_with_its_own_code_when_denied_or_out_of_time() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let bob = broker.person("bob");

    let out = alice.run(&[&DB[..], &["--wait", "--timeout", "2s"]].concat());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("still pending"), "{}", stderr(&out));
    let kept: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    assert_eq!(kept[0].state, RequestState::Pending, "--timeout keeps it");
    assert!(
        stderr(&out).contains(&format!("`hoist cancel {}`", kept[0].id)),
        "{}",
        stderr(&out)
    );

    let pending: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    let id = pending[0].id.clone();
    alice.run(&["cancel", &id]);
    // With another profile the default, the command to run names this
    // one: a bare `hoist cancel` would go to the other broker.
    let file = alice.config.path().join("config.toml");
    let config = std::fs::read_to_string(&file).unwrap();
    let rest: Vec<&str> = config
        .lines()
        .filter(|line| !line.starts_with("default_profile"))
        .collect();
    std::fs::write(
        &file,
        format!(
            "default_profile = \"elsewhere\"\n{}\n[profiles.elsewhere]\n\
             broker = \"https://elsewhere.example\"\n",
            rest.join("\n")
        ),
    )
    .unwrap();
    let out = alice.run(&[&DB[..], &["--wait", "--timeout", "1s"]].concat());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`hoist --profile default cancel req_"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&file, config).unwrap();
    let pending: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    let id = pending
        .iter()
        .find(|r| r.state == RequestState::Pending)
        .unwrap()
        .id
        .clone();
    alice.run(&["cancel", &id]);
    let mut waiting = alice.spawn(&[
        "request",
        "prod-deploy",
        "--reason",
        "Roll back cart-svc",
        "--wait",
    ]);
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let id = progress
        .next()
        .unwrap()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let denied = bob.run(&["deny", &id, "--comment", "not during the freeze"]);
    assert!(denied.status.success(), "{}", stderr(&denied));
    let status = waiting.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    assert!(rest.contains("not during the freeze"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_own_exit_code() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    // Usage.
    assert_eq!(code(&alice.run(&["request", "prod-db-admin"])), 2);
    let bad = alice.run(&[
        "request",
        "prod-logs-read",
        "--reason",
        "x",
        "--duration",
        "soon",
    ]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("`soon` is not a duration"));
    // Policy refusal: unknown role, and a rule of the role broken.
    let unknown = alice.run(&["request", "nope", "--reason", "some reason"]);
    assert_eq!(code(&unknown), 7, "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("no role `nope`"));
    let short = alice.run(&[
        "request",
        "prod-db-admin",
        "--reason",
        "short",
        "--ticket",
        "CHG-1",
    ]);
    assert_eq!(code(&short), 7);
    assert!(stderr(&short).contains("at least 20"), "{}", stderr(&short));
    // Not signed in.
    let stranger = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: broker.url.clone(),
    };
    let out = stranger.run(&["roles"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    // A broker without single sign-on says which token sign-in to run,
    // named the same way.
    let sso = stranger.run(&["login"]);
    assert_eq!(code(&sso), 2, "{}", stderr(&sso));
    assert!(
        stderr(&sso).contains(&format!(
            "offers no single sign-on: sign in with a token it issued, \
             `hoist --broker {} login --with-token`",
            broker.url
        )),
        "{}",
        stderr(&sso)
    );
    // Named by the broker it was run with: a bare `hoist login` could
    // pick another profile's, and the token pasted would go there.
    assert!(
        stderr(&out).contains(&format!(
            "run `hoist --broker {} login --with-token`",
            broker.url
        )),
        "{}",
        stderr(&out)
    );
    // Broker unreachable.
    let nowhere = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: "http://127.0.0.1:9".into(),
    };
    let out = nowhere.run_with_stdin(&["login", "--with-token"], "demo-alice\n");
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    // Plain http to anywhere but loopback is refused before anything is sent.
    let insecure = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: "http://hoist.example.com".into(),
    };
    assert_eq!(code(&insecure.run(&["roles"])), 2);
}

/// Each layer adds its context once: a new user's first mistakes name
/// their cause exactly once, on one line.
#[test]
fn an_error_names_its_cause_once() {
    let insecure = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: "http://example.com".into(),
    };
    let out = insecure.run(&["roles"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let message = stderr(&out);
    assert_eq!(
        message
            .matches("plain http is only allowed to a loopback address")
            .count(),
        1,
        "{message}"
    );
    assert_eq!(
        message.matches("http://example.com").count(),
        1,
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    let nowhere = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: "http://127.0.0.1:9".into(),
    };
    let out = nowhere.run_with_stdin(&["login", "--with-token"], "demo-alice\n");
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let message = stderr(&out);
    assert_eq!(message.matches("unreachable").count(), 1, "{message}");
    assert_eq!(message.matches("127.0.0.1:9").count(), 1, "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_revoke_and_credential() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let filed: AccessRequest = alice.json(&[&DB[..], &["--json"]].concat());
    let cancelled: AccessRequest = alice.json(&["cancel", &filed.id, "--json"]);
    assert_eq!(cancelled.state, RequestState::Cancelled);

    let active: AccessRequest = alice.json(&[
        "request",
        "prod-logs-read",
        "--reason",
        "Trace 502s",
        "--json",
    ]);
    assert_eq!(active.state, RequestState::Active);
    let token = String::from_utf8(alice.run(&["credential", "prod-logs-read"]).stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    let revoked: Grant = alice.json(&["revoke", "prod-logs-read", "--reason", "done", "--json"]);
    assert_eq!(revoked.state, GrantState::Revoked);
    let none = alice.run(&["credential", "prod-logs-read"]);
    assert_eq!(code(&none), 1);
}

/// A grant revoked under the command (here by its holder, by hand) is
/// said at the end: a command that failed for it is not taken for one that
/// failed by itself. The command's exit code is still the one returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_says_when_the_grant_ended_under_the_command() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let script = format!(
        "{} --broker {} revoke \"$HOIST_GRANT_ID\" --reason 'pulled by hand' >/dev/null && exit 5",
        env!("CARGO_BIN_EXE_hoist"),
        broker.url
    );
    let out = alice.run(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "Nightly log export",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("had already ended: revoked at") && said.contains("(pulled by hand)"),
        "{said}"
    );

    // Revoked by exec itself, nothing of the kind is said.
    let out = alice.run(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "Nightly log export",
        "--",
        "true",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("already ended"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_with_the_credential_and_revokes_what_it_requested() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let out = alice.run(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "Nightly log export",
        "--",
        "sh",
        "-c",
        "test -n \"$HOIST_CREDENTIAL\" && echo role=$HOIST_ROLE grant=$HOIST_GRANT_ID && exit 3",
    ]);
    assert_eq!(
        code(&out),
        3,
        "the command's own exit code: {}",
        stderr(&out)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("role=prod-logs-read grant=gr_"), "{said}");
    let grant_id = said.split("grant=").nth(1).unwrap().trim().to_string();
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.id == grant_id).unwrap();
    assert_eq!(
        grant.state,
        GrantState::Revoked,
        "exec revokes the grant it created"
    );

    // Without a grant, asking for one takes a reason.
    let out = alice.run(&["exec", "staging-db-admin", "--", "true"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--reason is required to request one"),
        "{}",
        stderr(&out)
    );

    // A grant that was already there is reused, with no reason asked for,
    // and left alone.
    let held: AccessRequest = alice.json(&[
        "request",
        "staging-db-admin",
        "--reason",
        "migration",
        "--json",
    ]);
    let out = alice.run(&[
        "exec",
        "staging-db-admin",
        "--",
        "sh",
        "-c",
        "echo $HOIST_GRANT_ID",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        held.grant_id.clone().unwrap()
    );
    assert!(
        stderr(&out).contains("this command did not ask for it."),
        "{}",
        stderr(&out)
    );
    let grants: Vec<Grant> = alice.json(&["grants", "--json"]);
    assert!(
        grants.iter().any(|g| Some(&g.id) == held.grant_id.as_ref()),
        "still active"
    );

    // Reused, it says when it ends and which flags go unused; a
    // --duration longer than it has left is refused, and nothing runs.
    let out = alice.run(&[
        "exec",
        "staging-db-admin",
        "--reason",
        "again",
        "--",
        "true",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("active already, ends ")
            && stderr(&out).contains("--reason unused, being for a new request"),
        "{}",
        stderr(&out)
    );
    let out = alice.run(&[
        "exec",
        "staging-db-admin",
        "--duration",
        "9h",
        "--",
        "sh",
        "-c",
        "echo ran",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the command ran");
    assert!(
        stderr(&out).contains("sooner than --duration 9h asks; nothing was asked for or run"),
        "{}",
        stderr(&out)
    );

    // The role is named by its id, as a filing names it: a display name
    // (any text the policy gives) finds no grant to reuse.
    let out = alice.run(&["exec", "Staging database admin", "--", "true"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--reason is required to request one"),
        "{}",
        stderr(&out)
    );
}

/// With standard error gone (its reader closed), exec still runs the
/// command and revokes what it asked for: its progress lines are best
/// effort, and a failed write must not end it half-way with access left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_standard_error_gone_still_runs_and_revokes() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let mut child = alice
        .command(&[
            "exec",
            "prod-logs-read",
            "--reason",
            "Nightly log export",
            "--",
            "sh",
            "-c",
            "echo ran $HOIST_GRANT_ID",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{said}");
    let grant_id = said.split("ran ").nth(1).unwrap().trim().to_string();
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.id == grant_id).unwrap();
    assert_eq!(grant.state, GrantState::Revoked);
}

/// The request `hoist exec` filed, read from its first line of progress.
fn filed_by(progress: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    let first = progress.next().unwrap().unwrap();
    assert!(first.contains("pending"), "{first}");
    first.split_whitespace().next().unwrap().to_string()
}

/// An approval that comes after exec gave up must not grant anything.
fn assert_withdrawn(alice: &Hoist, bob: &Hoist, id: &str) {
    let request: AccessRequest = alice.json(&["status", id, "--json"]);
    assert_eq!(request.state, RequestState::Cancelled, "{request:?}");
    assert!(
        request
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("hoist exec"),
        "{request:?}"
    );
    let late = bob.run(&["approve", id]);
    assert_eq!(code(&late), 7, "{}", stderr(&late));
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    assert!(
        grants.iter().all(|g| g.role != "prod-db-admin"),
        "{grants:?}"
    );
}

const EXEC_DB: [&str; 9] = [
    "exec",
    "prod-db-admin",
    "--ticket",
    "CHG-1024",
    "--reason",
    "Vacuum the bloated orders table",
    "--duration",
    "30m",
    "--timeout",
];

/// The broker's answers to exec's filing are lost for a few seconds (the
/// filing made each time): exec asks again under the same key until one
/// comes back, so one request is filed, its grant used and revoked, and
/// the command's code stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_whose_filing_answers_are_lost_files_once_and_goes_on() {
    let broker = Broker::start().await;
    let url =
        proxy::relay_losing_at_first(&broker.url, "POST /v1/requests ", Duration::from_secs(3));
    let alice = person_at(&url, "alice");
    let out = alice.run(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "Nightly log export",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let requests: Vec<hoist_api::AccessRequest> = alice.json(&["requests", "--json"]);
    let filed: Vec<_> = requests
        .iter()
        .filter(|r| r.role == "prod-logs-read")
        .collect();
    assert_eq!(filed.len(), 1, "{filed:?}");
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    assert!(
        grants
            .iter()
            .filter(|g| g.role == "prod-logs-read")
            .all(|g| g.state == GrantState::Revoked),
        "{grants:?}"
    );
}

/// A proxy in front of `broker` that holds the answer to exec's first
/// filing at `first` and then loses it (the broker filed it all the same),
/// and holds the answer to the filing after it at `then`.
fn filing_held(broker: &str, first: proxy::Gate, then: proxy::Gate) -> String {
    let filings = std::sync::atomic::AtomicUsize::new(0);
    proxy::relay_losing(
        broker,
        |_| {},
        move |line, _| {
            if !line.starts_with("POST /v1/requests ") {
                return false;
            }
            match filings.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => {
                    first.hold();
                    true
                }
                1 => {
                    then.hold();
                    false
                }
                _ => false,
            }
        },
    )
}

/// A signal while exec's filing goes unanswered (the broker filed it; its
/// answer is lost): exec asks once more under the same key, learns what
/// was filed, and withdraws it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stopped_while_filing_withdraws_what_the_broker_filed() {
    use nix::sys::signal::Signal;
    let broker = Broker::start().await;
    let bob = broker.person("bob");
    let (first, filing) = proxy::gate();
    let (then, check) = proxy::gate();
    check.open();
    let alice = person_at(&filing_held(&broker.url, first, then), "alice");
    let ran = alice.config.path().join("ran");
    let command = ["1h", "--", "touch", ran.to_str().unwrap()];
    let mut waiting = alice.spawn(&[&EXEC_DB[..], &command].concat());
    let progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    filing.reached("exec never filed").await;
    let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    filing.open();
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    let status = waiting.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "{rest}"
    );
    let requests: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    let filed: Vec<_> = requests
        .iter()
        .filter(|r| r.role == "prod-db-admin")
        .collect();
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert!(rest.contains("SIGTERM while filing"), "{rest}");
    assert!(
        rest.contains(&format!("{} is cancelled", filed[0].id)),
        "{rest}"
    );
    assert_withdrawn(&alice, &bob, &filed[0].id);
    assert!(!ran.exists(), "the command never ran");
}

/// `--timeout` ends while the broker holds the answer to exec's filing:
/// exec stops there (exit 4), not an attempt's whole call timeout later,
/// and withdraws what the broker filed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_whose_filing_outlasts_its_timeout_gives_up_and_withdraws_it() {
    let broker = Broker::start().await;
    let bob = broker.person("bob");
    let (first, _filing) = proxy::gate();
    let (then, check) = proxy::gate();
    check.open();
    let alice = person_at(&filing_held(&broker.url, first, then), "alice");
    let out = alice.run(&[&EXEC_DB[..], &["2s", "--", "true"]].concat());
    let said = stderr(&out);
    assert_eq!(code(&out), 4, "{said}");
    assert!(said.contains("gave up filing at the timeout"), "{said}");
    let requests: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    let filed: Vec<_> = requests
        .iter()
        .filter(|r| r.role == "prod-db-admin")
        .collect();
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert!(
        said.contains(&format!("{} is cancelled", filed[0].id)),
        "{said}"
    );
    assert_withdrawn(&alice, &bob, &filed[0].id);
}

/// A second signal while exec checks whether its interrupted filing was
/// made stops the check there and then, and exec says what may be left and
/// how to find it; it does not wait out the check to stop a withdrawal
/// that had not begun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stopped_twice_while_filing_stops_the_check_and_says_what_may_be_left() {
    use nix::sys::signal::Signal;
    let broker = Broker::start().await;
    let (first, filing) = proxy::gate();
    let (then, check) = proxy::gate();
    let alice = person_at(&filing_held(&broker.url, first, then), "alice");
    let ran = alice.config.path().join("ran");
    let command = ["1h", "--", "touch", ran.to_str().unwrap()];
    let mut waiting = alice.spawn(&[&EXEC_DB[..], &command].concat());
    let progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    filing.reached("exec never filed").await;
    let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    filing.open();
    check.reached("exec never checked its filing").await;
    nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
    // Read while the check's answer is still held.
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    let status = waiting.wait().unwrap();
    check.open();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "{rest}"
    );
    assert!(rest.contains("SIGINT stopped the check"), "{rest}");
    assert!(rest.contains("a request may have been filed"), "{rest}");
    assert!(!rest.contains("cancelling"), "{rest}");
    let requests: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    let filed: Vec<_> = requests
        .iter()
        .filter(|r| r.role == "prod-db-admin")
        .collect();
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert_eq!(filed[0].state, RequestState::Pending, "{rest}");
    assert!(!ran.exists(), "the command never ran");
}

/// Every answer to `hoist request`'s filing is lost (the broker files each
/// one): it fails saying that a request may have been filed and how to
/// find it, for one role and for each role of a bundle (a break-glass
/// grant may be active), not only that the broker was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_whose_filing_answers_are_all_lost_says_one_may_have_been_filed() {
    let broker = Broker::start().await;
    let url = proxy::relay_losing(
        &broker.url,
        |_| {},
        |line, _| line.starts_with("POST /v1/requests "),
    );
    let alice = person_at(&url, "alice");
    let out = alice.run(&["request", "prod-logs-read", "--reason", "Nightly export"]);
    let said = stderr(&out);
    assert_eq!(code(&out), 6, "{said}");
    assert!(
        said.contains("the broker did not answer the filing; a request may have been filed"),
        "{said}"
    );
    assert!(said.contains("`hoist requests`"), "{said}");

    let config = alice.config.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[bundles.outage]\nroles = [\"prod-k8s-admin\", \"prod-db-admin\"]\n");
    std::fs::write(&config, text).unwrap();
    let out = alice.run(&[
        "request",
        "--bundle",
        "outage",
        "--ticket",
        "CHG-7",
        "--reason",
        "Primary database is refusing connections",
    ]);
    let said = stderr(&out);
    assert_ne!(code(&out), 0, "{said}");
    for role in ["prod-k8s-admin", "prod-db-admin"] {
        assert!(
            said.contains(&format!(
                "{role}: the broker did not answer the filing; a request may have been filed"
            )),
            "{said}"
        );
    }
    let requests: Vec<AccessRequest> = alice.json(&["requests", "--json"]);
    let count = |role: &str| requests.iter().filter(|r| r.role == role).count();
    for role in ["prod-logs-read", "prod-k8s-admin", "prod-db-admin"] {
        assert_eq!(count(role), 1, "{role}: {requests:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_cancels_its_request_when_it_times_out() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let bob = broker.person("bob");
    let out = alice.run(&[&EXEC_DB[..], &["1s", "--", "true"]].concat());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let said = stderr(&out);
    let id = said.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("req_"), "{said}");
    assert!(said.contains(&format!("{id} is cancelled")), "{said}");
    assert!(!said.contains("still pending"), "{said}");
    assert_withdrawn(&alice, &bob, &id);
}

/// A request cancelled while exec waits (here by its requester, from
/// another shell) is an ordinary failure, exit 1: exit 4 ("timed out, try
/// again later") would have a script file it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_whose_request_is_cancelled_meanwhile_fails_with_1_not_4() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let ran = alice.config.path().join("ran");
    let command = ["1h", "--", "touch", ran.to_str().unwrap()];
    let mut waiting = alice.spawn(&[&EXEC_DB[..], &command].concat());
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let id = filed_by(&mut progress);
    let cancelled = alice.run(&["cancel", &id]);
    assert_eq!(code(&cancelled), 0, "{}", stderr(&cancelled));
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    assert_eq!(waiting.wait().unwrap().code(), Some(1), "{rest}");
    assert!(rest.contains("cancelled"), "{rest}");
    assert!(!ran.exists(), "the command never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_cancels_its_request_when_a_signal_ends_the_wait() {
    use nix::sys::signal::Signal;
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let bob = broker.person("bob");
    let ran = alice.config.path().join("ran");
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let command = ["1h", "--", "touch", ran.to_str().unwrap()];
        let mut waiting = alice.spawn(&[&EXEC_DB[..], &command].concat());
        let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
        let id = filed_by(&mut progress);
        let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let rest: Vec<String> = progress.map(|l| l.unwrap()).collect();
        let status = waiting.wait().unwrap();
        // Ended by the signal, as a shell must see it to stop a loop.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(signal as i32),
            "{signal}: {rest:?}"
        );
        assert!(
            rest.iter()
                .any(|l| l.contains(signal.as_str()) && l.contains("is cancelled")),
            "{signal}: {rest:?}"
        );
        assert_withdrawn(&alice, &bob, &id);
    }
    assert!(!ran.exists(), "the command never ran");
}

/// A request approved just as exec, stopped by a signal, cancels it: its
/// grant is revoked instead, and a second signal while that revoke is under
/// way does not stop it (nor is the person told to cancel a request that
/// became a grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_revokes_a_grant_approved_as_it_withdrew_through_a_second_signal() {
    use nix::sys::signal::Signal;
    let broker = Broker::start().await;
    let bob = std::sync::Arc::new(broker.person("bob"));
    let (gate, keeper) = proxy::gate();
    let url = proxy::relay(
        &broker.url,
        move |line| {
            // bob approves the request just before its cancel arrives.
            let cancelled = line
                .strip_prefix("POST /v1/requests/")
                .and_then(|rest| rest.split_once("/cancel "));
            if let Some((id, _)) = cancelled {
                let out = bob.run(&["approve", id, "--comment", "go"]);
                assert!(out.status.success(), "{}", stderr(&out));
            }
            // The revoke is held until the second signal was sent.
            if line.starts_with("POST /v1/grants/") && line.contains("/revoke ") {
                gate.hold();
            }
        },
        |_, _| {},
    );
    let alice = person_at(&url, "alice");
    let ran = alice.config.path().join("ran");
    let command = ["1h", "--", "touch", ran.to_str().unwrap()];
    let mut waiting = alice.spawn(&[&EXEC_DB[..], &command].concat());
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let id = filed_by(&mut progress);
    let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    keeper.reached("exec never revoked the grant").await;
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    keeper.open();
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    let status = waiting.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "{rest}"
    );
    let request: AccessRequest = alice.json(&["status", &id, "--json"]);
    let grant_id = request.grant_id.expect("approved");
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.id == grant_id).expect("listed");
    assert_eq!(grant.state, GrantState::Revoked, "{rest}");
    assert!(
        rest.contains(&format!("its grant {grant_id} is revoked")),
        "{rest}"
    );
    assert!(!rest.contains("hoist cancel"), "{rest}");
    assert!(!ran.exists(), "the command never ran");
}

/// A signal while exec withdraws the request it gave up waiting for at
/// its timeout ends exec by that signal, as a signal ends it anywhere
/// else: a shell loop around it stops, where "timed out" (4) would have
/// it file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stopped_while_withdrawing_at_its_timeout_ends_by_the_signal() {
    use nix::sys::signal::Signal;
    let broker = Broker::start().await;
    let (gate, keeper) = proxy::gate();
    let url = proxy::relay(
        &broker.url,
        move |line| {
            if line.starts_with("POST /v1/requests/") && line.contains("/cancel ") {
                gate.hold();
            }
        },
        |_, _| {},
    );
    let alice = person_at(&url, "alice");
    let ran = alice.config.path().join("ran");
    let command = ["2s", "--", "touch", ran.to_str().unwrap()];
    let mut waiting = alice.spawn(&[&EXEC_DB[..], &command].concat());
    let progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    keeper.reached("exec never withdrew its request").await;
    let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    let status = waiting.wait().unwrap();
    keeper.open();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(2),
        "{rest}"
    );
    assert!(rest.contains("SIGINT stopped the cancelling"), "{rest}");
    assert!(rest.contains("hoist cancel req_"), "{rest}");
    assert!(!ran.exists(), "the command never ran");
}

/// A proxy in front of `broker` that loses the answers to the reads of
/// grants (`GET /v1/grants`, counted from 0) that `lost` picks, as a broker
/// restarting would.
fn grant_reads_lost(broker: &str, lost: fn(usize) -> bool) -> String {
    let reads = std::sync::atomic::AtomicUsize::new(0);
    proxy::relay_losing(
        broker,
        |_| {},
        move |line, _| {
            line.starts_with("GET /v1/grants")
                && lost(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        },
    )
}

/// Runs `args` as `who`, has `approver` approve the request it files, and
/// gives the request's id, what it said on stderr, its stdout and status.
fn approved_while_waiting(
    who: &Hoist,
    approver: &Hoist,
    args: &[&str],
) -> (String, String, String, std::process::ExitStatus) {
    let mut waiting = who.spawn(args);
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let id = filed_by(&mut progress);
    let approved = approver.run(&["approve", &id, "--comment", "go"]);
    assert!(approved.status.success(), "{}", stderr(&approved));
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut waiting.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = waiting.wait().unwrap();
    (id, rest, stdout, status)
}

/// The broker away for a moment just as exec's request is approved: the
/// grant is read again, not thrown away, and the command runs with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reads_a_grant_made_while_the_broker_blinked_and_runs() {
    let broker = Broker::start().await;
    // The first read is exec's look for a grant held already; the next two,
    // after the approval, are lost.
    let url = grant_reads_lost(&broker.url, |read| matches!(read, 1 | 2));
    let alice = person_at(&url, "alice");
    let command = ["1m", "--", "sh", "-c", "echo grant=$HOIST_GRANT_ID"];
    let (id, rest, stdout, status) = approved_while_waiting(
        &alice,
        &broker.person("bob"),
        &[&EXEC_DB[..], &command].concat(),
    );
    assert_eq!(status.code(), Some(0), "{rest}");
    let request: AccessRequest = alice.json(&["status", &id, "--json"]);
    let grant_id = request.grant_id.expect("approved");
    assert_eq!(stdout.trim(), format!("grant={grant_id}"), "{rest}");
    // `hoist status` names the grant to revoke, as exec's messages say.
    let shown = alice.run(&["status", &id]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!("grant {grant_id}")),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.id == grant_id).expect("listed");
    assert_eq!(
        grant.state,
        GrantState::Revoked,
        "revoked once the command ended"
    );
    assert_eq!(
        grant.revoke_reason.as_deref(),
        Some("hoist exec: the command finished"),
        "{rest}"
    );
}

/// `request --wait` whose reads of the new grant are lost for a moment
/// (the broker restarting as the approval lands) reads it again: the
/// grant is there, so the wait succeeds, rather than exiting 6 ("try
/// again"), which would be refused as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wait_reads_a_grant_made_while_the_broker_blinked() {
    let broker = Broker::start().await;
    let url = grant_reads_lost(&broker.url, |read| read < 2);
    let alice = person_at(&url, "alice");
    let (_, rest, stdout, status) = approved_while_waiting(
        &alice,
        &broker.person("bob"),
        &[&DB[..], &["--wait", "--json"]].concat(),
    );
    assert_eq!(status.code(), Some(0), "{rest}");
    let printed: AccessRequest = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed.state, RequestState::Active, "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wait_stopped_by_a_signal_keeps_the_request_and_says_how_to_cancel() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let mut waiting = alice.spawn(&[&DB[..], &["--wait", "--json"]].concat());
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let id = filed_by(&mut progress);
    let pid = nix::unistd::Pid::from_raw(waiting.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let rest: String = progress.map(|l| l.unwrap() + "\n").collect();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut waiting.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = waiting.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(2),
        "ended by SIGINT: {rest}"
    );
    assert!(rest.contains(&format!("`hoist cancel {id}`")), "{rest}");
    // A script still gets the request it filed, with its id.
    let printed: AccessRequest = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed.id, id);
    let request: AccessRequest = alice.json(&["status", &id, "--json"]);
    assert_eq!(
        request.state,
        RequestState::Pending,
        "as documented, it stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_signals_and_revokes_when_killed() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let mut child = alice.spawn(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "long job",
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 30",
    ]);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "started");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "sleep was ended by the forwarded SIGTERM, and hoist by it in turn"
    );
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.role == "prod-logs-read").unwrap();
    assert_eq!(grant.state, GrantState::Revoked);
}

/// Two execs of one role on one machine share its grant: the one that
/// asked for it, ending first, leaves the revoke to the other, whose
/// command keeps its access until it ends too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execs_sharing_a_grant_leave_its_revoke_to_the_last_to_end() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let signals = tempfile::tempdir().unwrap();
    let wait_for = |name: &str| {
        format!(
            "echo started; echo $HOIST_GRANT_ID; while [ ! -e '{}' ]; do sleep 0.05; done",
            signals.path().join(name).display()
        )
    };
    let (asked, mut asked_out) = long_job(&alice, &wait_for("first"));
    let grant_id = asked_out.next().unwrap().unwrap();
    let (reused, mut reused_out) = long_job(&alice, &wait_for("second"));
    assert_eq!(reused_out.next().unwrap().unwrap(), grant_id, "reused");

    std::fs::write(signals.path().join("first"), "").unwrap();
    let out = asked.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{grant_id} is still used by another hoist exec here: it is revoked when the last"
        )),
        "{}",
        stderr(&out)
    );
    let grants: Vec<Grant> = alice.json(&["grants", "--json"]);
    assert!(
        grants.iter().any(|g| g.id == grant_id),
        "revoked under the command still running"
    );

    std::fs::write(signals.path().join("second"), "").unwrap();
    let out = reused.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.id == grant_id).unwrap();
    assert_eq!(grant.state, GrantState::Revoked, "the last one revokes it");
    assert_eq!(
        grant.revoke_reason.as_deref(),
        Some("hoist exec: the command finished")
    );
}

/// An exec that finds the grant being revoked by the last exec here that
/// used it waits for that, then asks for a grant of its own, rather than
/// run with one about to end or be refused as holding one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_waits_out_a_revoke_here_then_asks_for_its_own_grant() {
    use sha2::Digest;
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let held: AccessRequest = alice.json(&[
        "request",
        "prod-logs-read",
        "--reason",
        "earlier export",
        "--json",
    ]);
    let old = held.grant_id.unwrap();
    // As the exec revoking it leaves the grant's files: its `.uses` held
    // alone, its state `revoking`.
    let digest = sha2::Sha256::digest(format!("{}\n{old}", broker.url).as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let dir = alice.config.path().join("cache/uses");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.lock")), "revoking").unwrap();
    let uses = std::fs::File::create(dir.join(format!("{name}.uses"))).unwrap();
    uses.lock().unwrap();

    let mut exec = alice.spawn(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "nightly export",
        "--",
        "sh",
        "-c",
        "echo $HOIST_GRANT_ID",
    ]);
    let mut said = BufReader::new(exec.stderr.take().unwrap()).lines();
    let line = said.next().unwrap().unwrap();
    assert!(
        line.contains(&format!("{old} (prod-logs-read) is being revoked")),
        "{line}"
    );
    let out = alice.run(&["revoke", &old, "--reason", "done"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    drop(uses);

    let out = exec.wait_with_output().unwrap();
    let rest: Vec<String> = said.map_while(Result::ok).collect();
    assert_eq!(code(&out), 0, "{rest:?}");
    let ran_with = String::from_utf8(out.stdout).unwrap();
    assert!(ran_with.trim().starts_with("gr_"), "{ran_with}");
    assert_ne!(ran_with.trim(), old, "a grant of its own");
}

/// `hoist exec prod-logs-read -- sh -c SCRIPT` as `alice`, once SCRIPT
/// printed `started`: the process and the rest of its stdout.
fn long_job(
    alice: &Hoist,
    script: &str,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = alice.spawn(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "long job",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "started");
    (child, out)
}

/// `alice`'s exec of a command that ends once the broker is stopped: run
/// until exec said it could not revoke yet; its process and the rest of
/// its stderr.
async fn exec_ended_with_broker_away(
    broker: &mut Broker,
    alice: &Hoist,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStderr>>) {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.05; done",
        go.display()
    );
    let (mut child, _out) = long_job(alice, &script);
    broker.broker.stop().await;
    std::fs::write(&go, "").unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let said = err
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("could not revoke"))
        .expect("exec says it could not revoke yet");
    assert!(said.contains("could not revoke gr_"), "{said}");
    assert!(said.contains("trying again"), "{said}");
    (child, err)
}

/// The broker away as the command ends (restarting, say): exec says so
/// and keeps trying, and revokes once it is back, with the command's own
/// status. Away for good, a second exec stops trying at a signal, says how
/// to revoke by hand, and ends by that signal: the grant it leaves is never
/// passed off as revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_waits_for_a_broker_away_at_the_end_to_revoke() {
    let mut broker = Broker::start().await;
    let alice = broker.person("alice");
    let (mut child, err) = exec_ended_with_broker_away(&mut broker, &alice).await;
    broker.broker.restart().await;
    let status = child.wait().unwrap();
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(0), "the command's own status: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("revoked gr_")), "{rest:?}");
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.role == "prod-logs-read").unwrap();
    assert_eq!(grant.state, GrantState::Revoked);

    let (mut child, err) = exec_ended_with_broker_away(&mut broker, &alice).await;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("SIGTERM stopped the revoke") && l.contains("hoist revoke gr_")),
        "{rest:?}"
    );
    broker.broker.restart().await;
    let grants: Vec<Grant> = alice.json(&["grants", "--json"]);
    assert!(
        grants.iter().any(|g| g.role == "prod-logs-read"),
        "left active, as said"
    );
}

/// Off a terminal nothing else delivers the signal to the command: exec
/// forwards it, the command handles it, exec exits with its status and
/// revokes the grant.
async fn exec_forwards(signal: nix::sys::signal::Signal) {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let name = signal.as_str().trim_start_matches("SIG");
    let script = format!(
        "trap 'echo got {name}; exit 7' {name}; echo started; while :; do sleep 0.05; done"
    );
    let (mut child, mut out) = long_job(&alice, &script);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    assert_eq!(out.next().unwrap().unwrap(), format!("got {name}"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "the command's own status");
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.role == "prod-logs-read").unwrap();
    assert_eq!(grant.state, GrantState::Revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_sigint_off_a_terminal() {
    exec_forwards(nix::sys::signal::Signal::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_sigquit_off_a_terminal() {
    exec_forwards(nix::sys::signal::Signal::SIGQUIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_sigterm() {
    exec_forwards(nix::sys::signal::Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_sighup() {
    exec_forwards(nix::sys::signal::Signal::SIGHUP).await;
}

/// A signal hoist was started with ignored (`nohup hoist exec ...`) stays
/// ignored for the command, which inherits it so: hoist does not catch it,
/// which would reset it to its default in the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_leaves_a_signal_ignored_at_start_ignored_for_the_command() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let hoist = alice.command(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "nightly export",
        "--",
        "grep",
        "SigIgn",
        "/proc/self/status",
    ]);
    // As nohup starts it: SIGHUP ignored, then exec.
    let mut nohup = Command::new("sh");
    nohup
        .arg("-c")
        .arg("trap '' HUP; exec \"$@\"")
        .arg("sh")
        .arg(hoist.get_program())
        .args(hoist.get_args())
        .stdin(Stdio::null());
    for (name, value) in hoist.get_envs() {
        match value {
            Some(value) => nohup.env(name, value),
            None => nohup.env_remove(name),
        };
    }
    let out = nohup.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    let mask = said
        .trim()
        .strip_prefix("SigIgn:")
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(mask & 1, 1, "SIGHUP (1) is still ignored: {said}");
    assert_eq!(mask & 2, 0, "SIGINT (2) is not: {said}");

    // A command that undoes that and dies of SIGHUP leaves hoist, which
    // still ignores it, to exit 129 rather than die of it too.
    let hoist = alice.command(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "nightly export",
        "--",
        "python3",
        "-c",
        "import os, signal; signal.signal(signal.SIGHUP, signal.SIG_DFL); \
         os.kill(os.getpid(), signal.SIGHUP)",
    ]);
    let mut nohup = Command::new("sh");
    nohup
        .arg("-c")
        .arg("trap '' HUP; exec \"$@\"")
        .arg("sh")
        .arg(hoist.get_program())
        .args(hoist.get_args())
        .envs(hoist.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdin(Stdio::null());
    let out = nohup.output().unwrap();
    assert_eq!(code(&out), 129, "{}", stderr(&out));
}

/// A command that Ctrl-\ (SIGQUIT) ends leaves hoist to exit 131, not to
/// die of it: its default dumps core, and the core would hold the session
/// and the grant's credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_whose_command_dies_of_sigquit_exits_131_without_a_core() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let out = alice.run(&[
        "exec",
        "prod-logs-read",
        "--reason",
        "nightly export",
        "--",
        "sh",
        "-c",
        "kill -QUIT $$",
    ]);
    assert_eq!(out.status.code(), Some(131), "{}", stderr(&out));
}

/// A command that outlives one credential gets a valid one from
/// HOIST_CREDENTIAL_COMMAND for as long as the grant lives, and no secret
/// is on a command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_gives_a_long_command_a_fresh_credential_for_the_life_of_the_grant() {
    let policy =
        hoist::demo::DEMO_POLICY.replace(r#"credential_ttl = "5m""#, r#"credential_ttl = "1s""#);
    assert_ne!(policy, hoist::demo::DEMO_POLICY);
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy)
        .token_prefix("demo-")
        .start()
        .await;
    let url = broker.url();
    let broker = Broker { broker, url };
    let alice = broker.person("alice");
    let go = alice.config.path().join("go");
    let script = r#"printf 'first %s %s\n' "$HOIST_GRANT_ID" "$HOIST_CREDENTIAL"
while [ ! -e "$GO" ]; do sleep 0.05; done
printf 'second %s\n' "$(sh -c "$HOIST_CREDENTIAL_COMMAND")"
printf 'line %s\n' "$HOIST_CREDENTIAL_COMMAND"
while [ ! -e "$GO.done" ]; do sleep 0.05; done"#;
    let mut child = alice
        .command(&[
            "exec",
            "prod-logs-read",
            "--reason",
            "Nightly log export",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("GO", &go)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first_line = out.next().unwrap().unwrap();
    let [_, grant_id, first] = first_line.split(' ').collect::<Vec<_>>()[..] else {
        panic!("{first_line}");
    };
    let (grant_id, first) = (grant_id.to_string(), first.to_string());

    // The first credential ends while the command still runs.
    let introspect = broker.broker.as_user("alice");
    hoistd::testing::eventually(Duration::from_secs(20), || async {
        !introspect.introspect(&first).await.active
    })
    .await;
    std::fs::write(&go, "").unwrap();

    let second = out.next().unwrap().unwrap();
    let second = second.strip_prefix("second ").unwrap().to_string();
    let line = out.next().unwrap().unwrap();
    assert_ne!(second, first);
    let live = introspect.introspect(&second).await;
    assert!(live.active, "{second}");
    assert_eq!(live.grant_id.as_deref(), Some(grant_id.as_str()));
    std::fs::write(go.with_extension("done"), "").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{line}");
    assert!(
        !introspect.introspect(&second).await.active,
        "revoked with the grant"
    );
    // The command line names hoist, the broker, the profile and the grant:
    // no token, no session.
    assert!(line.contains(&format!("--broker {}", broker.url)), "{line}");
    assert!(
        line.ends_with(&format!("credential {grant_id} --format token")),
        "{line}"
    );
    assert!(
        !line.contains("demo-alice") && !line.contains(&first),
        "{line}"
    );
    let help = alice.run(&["exec", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("HOIST_CREDENTIAL_COMMAND"), "{help}");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("credential") && text.contains("exec"),
            "{shell}"
        );
    }
    let man = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("man")
        .output()
        .unwrap();
    let text = String::from_utf8(man.stdout).unwrap();
    assert!(
        text.starts_with(".ie") && text.contains("Exit codes"),
        "{}",
        &text[..200.min(text.len())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_filed_by_name_and_the_incident_exports_its_timeline() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let bob = broker.person("bob");
    let config = alice.config.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[bundles.db-outage]\nroles = [\"prod-logs-read\", \"prod-db-admin\", \"prod-k8s-admin\"]\n");
    std::fs::write(&config, text).unwrap();

    let filed: Vec<AccessRequest> = alice.json(&[
        "request",
        "--bundle",
        "db-outage",
        "--incident",
        "INC-77",
        "--ticket",
        "CHG-7",
        "--reason",
        "Primary database is refusing connections",
        "--json",
    ]);
    let state = |role: &str| filed.iter().find(|r| r.role == role).unwrap().state;
    assert_eq!(state("prod-logs-read"), RequestState::Active);
    assert_eq!(state("prod-db-admin"), RequestState::Pending);
    assert_eq!(state("prod-k8s-admin"), RequestState::Pending);
    let unknown = alice.run(&["request", "--bundle", "nope", "--reason", "x"]);
    assert_eq!(code(&unknown), 2);
    assert!(
        stderr(&unknown).contains("db-outage"),
        "{}",
        stderr(&unknown)
    );

    let db = filed.iter().find(|r| r.role == "prod-db-admin").unwrap();
    assert!(bob.run(&["approve", &db.id]).status.success());
    assert!(
        alice
            .run(&["revoke", "prod-db-admin", "--reason", "failover done"])
            .status
            .success()
    );

    let export: serde_json::Value =
        alice.json(&["incident", "export", "INC-77", "--format", "json"]);
    let log: Vec<serde_json::Value> = alice.json(&["audit", "--json", "--limit", "10000"]);
    let incident: Vec<&serde_json::Value> =
        log.iter().filter(|e| e["incident"] == "INC-77").collect();
    assert_eq!(
        export["events"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        incident,
        "event for event"
    );
    let access = export["access"].as_array().unwrap();
    let db_line = access
        .iter()
        .find(|a| a["role"] == "prod-db-admin")
        .unwrap();
    assert_eq!(db_line["approved_by"], serde_json::json!(["bob"]));
    assert_eq!(db_line["outcome"], "revoked");
    assert_eq!(db_line["end_reason"], "failover done");

    let markdown = String::from_utf8(alice.run(&["incident", "export", "INC-77"]).stdout).unwrap();
    assert!(
        markdown.starts_with("# Access timeline: INC-77"),
        "{markdown}"
    );
    assert!(markdown.contains("| prod-db-admin | alice |"), "{markdown}");
    assert!(markdown.contains("revoked (failover done)"), "{markdown}");
    assert_eq!(
        markdown.matches("\n| ").count() - 2,
        access.len() + incident.len(),
        "one row per grant and per event"
    );
    assert!(
        markdown.contains("**Partial:** alice is not an auditor"),
        "{markdown}"
    );
    // bob took part in alice's database access only, as its approver: his
    // export says it is partial and tells her row in part.
    let bobs = String::from_utf8(bob.run(&["incident", "export", "INC-77"]).stdout).unwrap();
    assert!(
        bobs.contains("**Partial:** bob is not an auditor"),
        "{bobs}"
    );
    let row = bobs
        .lines()
        .find(|l| l.starts_with("| prod-db-admin | alice |"))
        .unwrap_or_else(|| panic!("{bobs}"));
    assert!(row.contains("; as far as your own events show"), "{row}");
    // An auditor's is the whole story.
    let erin = broker.person("erin");
    let erins: serde_json::Value = erin.json(&["incident", "export", "INC-77", "--format", "json"]);
    assert_eq!(
        erins["access"], export["access"],
        "alice took part in all of it"
    );
    assert_eq!(erins.get("limited_to"), None);
    assert_eq!(export["limited_to"], "alice");
}

/// A justification is text, never markup: the postmortem document shows it
/// as written, and it cannot add a script, a link or a table cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_markdown_export_escapes_what_the_broker_holds() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let why = "Trace <script>alert(1)</script> and [x](javascript:alert(1))\n`rm -rf` | a pipe";
    let filed: AccessRequest = alice.json(&[
        "request",
        "prod-logs-read",
        "--incident",
        "INC-66",
        "--reason",
        why,
        "--json",
    ]);
    assert_eq!(filed.state, RequestState::Active);
    let done = alice.run(&[
        "revoke",
        "prod-logs-read",
        "--reason",
        "done <b>now</b> | ![img](http://x/y.png)",
    ]);
    assert!(done.status.success(), "{}", stderr(&done));

    let out = alice.run(&["incident", "export", "INC-66"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let markdown = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = markdown.lines().filter(|l| l.starts_with("| ")).collect();
    let held = rows
        .iter()
        .find(|r| r.starts_with("| prod-logs-read | alice |"))
        .unwrap_or_else(|| panic!("{markdown}"));
    assert!(
        held.contains(
            r"Trace &lt;script&gt;alert(1)&lt;/script&gt; and \[x\](javascript:alert(1))<br>\`rm -rf\` \| a pipe"
        ),
        "{held}"
    );
    assert!(
        held.contains(r"revoked (done &lt;b&gt;now&lt;/b&gt; \| !\[img\](http\://x/y.png))"),
        "{held}"
    );
    for raw in ["<script>", "<b>", "x](javascript:", "img](http:", "\n`"] {
        assert!(!markdown.contains(raw), "`{raw}` in {markdown}");
    }
    // The justification's pipe and line break did not add a cell or a row.
    let unescaped = |row: &str| row.matches('|').count() - row.matches(r"\|").count();
    assert_eq!(unescaped(held), 10, "{held}");
    assert!(rows.iter().all(|r| r.ends_with(" |")), "{markdown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_shows_active_grants_from_a_local_cache_without_the_network() {
    let mut broker = Broker::start().await;
    let alice = broker.person("alice");
    let prompt = |hoist: &Hoist| String::from_utf8(hoist.run(&["prompt"]).stdout).unwrap();
    assert_eq!(prompt(&alice), "");
    let _: AccessRequest = alice.json(&[
        "request",
        "prod-logs-read",
        "--reason",
        "Trace 502s",
        "--json",
    ]);
    let line = prompt(&alice);
    assert!(
        line.starts_with("prod-logs-read 3h59m") || line.starts_with("prod-logs-read 4h"),
        "{line:?}"
    );
    assert!(alice.run(&["revoke", "prod-logs-read"]).status.success());
    assert_eq!(prompt(&alice), "");
    let _: AccessRequest = alice.json(&[
        "request",
        "staging-db-admin",
        "--reason",
        "migration",
        "--json",
    ]);
    // The broker goes away; the prompt does not notice.
    broker.broker.stop().await;
    let out = alice.run(&["prompt"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("staging-db-admin 1h59m")
    );
}

/// A proxy in the environment never sees a loopback broker's calls: they
/// would go to it in plain http, token and all, and reach its machine's
/// loopback, not ours.
#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_broker_is_reached_directly_whatever_proxy_is_set() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    proxy.set_nonblocking(true).unwrap();
    let mut command = alice.command(&["roles", "--json"]);
    for name in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        command.env(name, &proxy_url);
    }
    let out = command
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Whatever reached the proxy was accepted by the kernel and waits there.
    let reached = proxy.accept().is_ok();
    assert!(!reached, "the proxy was sent a call");
    assert!(out.status.success(), "{}", stderr(&out));
    let roles: Vec<Role> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!roles.is_empty());
}

/// A broker URL that answers every call with a redirect to another origin
/// (307 and 308 keep the method, the body and, in a client that follows,
/// the Authorization header). hoist follows none of them: the other origin
/// never hears from it, and the user is told why the call failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed_with_the_token() {
    use std::sync::{Arc, Mutex};

    // The other origin, which records whatever reaches it.
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&heard);
    let elsewhere = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = Arc::clone(&record);
        async move {
            let auth = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("?").to_string())
                .unwrap_or_default();
            record
                .lock()
                .unwrap()
                .push(format!("{} {} {auth}", request.method(), request.uri()));
            "{}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, elsewhere).await });

    for status in [301u16, 302, 307, 308] {
        let location = target.clone();
        let redirector = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let location = format!("{location}{uri}");
            async move {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [(axum::http::header::LOCATION, location)],
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirector).await });

        // The binary: signing in sends the token to /v1/me first.
        let hoist = Hoist {
            config: tempfile::tempdir().unwrap(),
            broker: broker.clone(),
        };
        let out = hoist.run_with_stdin(&["login", "--with-token"], "s3cret-token\n");
        assert_ne!(code(&out), 0, "{status}");
        assert!(
            stderr(&out).contains("redirect"),
            "{status}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("s3cret-token"), "{}", stderr(&out));

        // The library, for every kind of call: reads, writes, the stream.
        let client = hoist::backend::connect(&broker, "s3cret-token").unwrap();
        let body = hoist_api::CreateRequest {
            role: "prod-logs-read".into(),
            justification: "Trace checkout".into(),
            ticket: None,
            incident: None,
            duration_secs: None,
            starts_at: None,
            break_glass: false,
        };
        let refused = |what: &str, err: hoist::backend::BackendError| {
            assert!(
                err.to_string().contains("redirect"),
                "{status} {what}: {err}"
            );
        };
        refused("me", client.me().await.unwrap_err());
        refused("grants", client.grants(false).await.unwrap_err());
        refused("file", client.file(&body, "key").await.unwrap_err());
        refused("revoke", client.revoke("gr_1", None).await.unwrap_err());
        match client.events().await {
            Ok(_) => panic!("{status}: the event stream followed a redirect"),
            Err(err) => refused("events", err),
        }
        assert_eq!(*heard.lock().unwrap(), Vec::<String>::new(), "{status}");
    }
}

/// `hoist` signed in as a demo person at `url`.
fn person_at(url: &str, user: &str) -> Hoist {
    let hoist = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: url.to_string(),
    };
    let out = hoist.run_with_stdin(&["login", "--with-token"], &format!("demo-{user}\n"));
    assert!(out.status.success(), "login as {user}: {}", stderr(&out));
    hoist
}

/// The demo with `prod-db-admin` at a real PostgreSQL cluster.
async fn demo_with_postgres() -> hoist::demo::Demo {
    hoist::demo::Demo::start_with_postgres()
        .await
        .expect("PostgreSQL's server for the target tests (scripts/test installs it)")
}

async fn role_exists(demo: &hoist::demo::Demo, login: &str) -> bool {
    let admin = demo.postgres().unwrap().admin().await.unwrap();
    let count: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    count == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_psql_as_is_at_a_real_postgres_and_the_login_is_gone_after() {
    let demo = demo_with_postgres().await;
    let alice = person_at(&demo.url(), "alice");
    let _approvers = demo.start_approvers("alice");
    let out = alice.run(&[
        "exec",
        "prod-db-admin",
        "--ticket",
        "CHG-1024",
        "--reason",
        "Vacuum the bloated orders table",
        "--timeout",
        "2m",
        "--",
        "psql",
        "-tAc",
        "select current_user || ' ' || current_database()",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    let (login, database) = said.trim().split_once(' ').unwrap();
    assert!(login.starts_with("hoist_alice_"), "{said}");
    assert_eq!(database, "orders");
    // exec revoked its grant; the broker removes the login at the target.
    let login = login.to_string();
    hoistd::testing::eventually(Duration::from_secs(60), || {
        let demo = &demo;
        let login = login.clone();
        async move { !role_exists(demo, &login).await }
    })
    .await;
    demo.stop().await;
}

/// `request --wait` is over when the grant can be used: at a target that is
/// down it keeps waiting after the approval (and gives up at its timeout,
/// saying what it waited for); once the target is back it returns with the
/// login already there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wait_returns_when_the_access_is_live_not_just_approved() {
    let demo = demo_with_postgres().await;
    let postgres = demo.postgres().unwrap();
    let alice = person_at(&demo.url(), "alice");
    let bob = person_at(&demo.url(), "bob");

    postgres.stop();
    let mut waiting = alice.spawn(&[&DB[..], &["--wait", "--timeout", "8s"]].concat());
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let first = progress.next().unwrap().unwrap();
    let id = first.split_whitespace().next().unwrap().to_string();
    let approved = bob.run(&["approve", &id]);
    assert_eq!(code(&approved), 0, "{}", stderr(&approved));
    let rest: Vec<String> = progress.map(|l| l.unwrap()).collect();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("active")), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("waiting for prod-db-admin's access at demo-db")),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("gave up waiting for the access")),
        "{rest:?}"
    );

    postgres.restart().unwrap();
    let revoked = alice.run(&["revoke", "prod-db-admin"]);
    assert_eq!(code(&revoked), 0, "{}", stderr(&revoked));
    let mut waiting = alice.spawn(&[&DB[..], &["--wait", "--timeout", "2m"]].concat());
    let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let first = progress.next().unwrap().unwrap();
    let id = first.split_whitespace().next().unwrap().to_string();
    let approved = bob.run(&["approve", &id]);
    assert_eq!(code(&approved), 0, "{}", stderr(&approved));
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // No --wait here: the access must already be live.
    let uri = alice.run(&["credential", "prod-db-admin", "--format", "uri"]);
    assert_eq!(code(&uri), 0, "{}", stderr(&uri));
    let uri = String::from_utf8(uri.stdout).unwrap();
    let login = Command::new("psql")
        .args([uri.trim(), "-tAc", "select current_user"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_formats_at_a_real_postgres_and_a_clear_refusal_until_live() {
    let demo = demo_with_postgres().await;
    let postgres = demo.postgres().unwrap();
    let alice = person_at(&demo.url(), "alice");
    let bob = person_at(&demo.url(), "bob");

    // Approved while the target is down: not live, so no credential yet;
    // exit 7 naming the state, and --wait gives up at its timeout.
    postgres.stop();
    let filed: AccessRequest = alice.json(&[&DB[..], &["--json"]].concat());
    let approved = bob.run(&["approve", &filed.id]);
    assert_eq!(code(&approved), 0, "{}", stderr(&approved));
    let refused = alice.run(&["credential", "prod-db-admin", "--format", "env"]);
    assert_eq!(code(&refused), 7, "{}", stderr(&refused));
    let why = stderr(&refused);
    assert!(
        why.contains("access at demo-db is provisioning")
            || why.contains("access at demo-db is failed"),
        "{why}"
    );
    assert!(why.contains("--wait"), "{why}");
    assert!(refused.stdout.is_empty());
    let waited = alice.run(&["credential", "prod-db-admin", "--wait", "--timeout", "1s"]);
    assert_eq!(code(&waited), 4, "{}", stderr(&waited));

    // Back up: --wait returns once it is live.
    postgres.restart().unwrap();
    let token = alice.run(&["credential", "prod-db-admin", "--wait", "--timeout", "2m"]);
    assert_eq!(code(&token), 0, "{}", stderr(&token));
    let token = String::from_utf8(token.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT still: {token}");

    // env: export lines a shell evaluates, and psql runs with them as is.
    let exports = alice.run(&["credential", "prod-db-admin", "--format", "env"]);
    assert_eq!(code(&exports), 0, "{}", stderr(&exports));
    // Each fetch sets a new password there, and says so where a person
    // reads it, not in what a shell evaluates.
    assert!(
        stderr(&exports).contains("a new password was set for hoist_alice_")
            && stderr(&exports).contains("one fetched before stops working"),
        "{}",
        stderr(&exports)
    );
    let exports = String::from_utf8(exports.stdout).unwrap();
    for name in [
        "HOIST_CREDENTIAL",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
    ] {
        assert!(
            exports.contains(&format!("export {name}='")),
            "{name}: {exports}"
        );
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{exports}\npsql -tAc 'select current_user'"))
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hoist_alice_"));

    // uri: for `psql "$(...)"`.
    let uri = alice.run(&["credential", "prod-db-admin", "--format", "uri"]);
    let uri = String::from_utf8(uri.stdout).unwrap();
    assert!(uri.starts_with("postgresql://hoist_alice_"), "{uri}");
    let out = Command::new("psql")
        .args([uri.trim(), "-tAc", "select current_database()"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "orders",
        "{}",
        stderr(&out)
    );

    // The grants table says where the access is, for people.
    let table = alice.run(&["grants"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("ACCESS") && table.contains("live at demo-db"),
        "{table}"
    );

    // json: everything, as the API has it.
    let credential: hoist_api::Credential =
        alice.json(&["credential", "prod-db-admin", "--format", "json"]);
    let access = credential.access.unwrap();
    assert_eq!(access.target, "demo-db");
    let command = access.command.unwrap();
    assert!(command.starts_with("PGPASSWORD="), "{command}");
    assert!(command.contains(" psql 'postgresql://"), "{command}");
    assert!(access.env.contains_key("PGPASSWORD"));

    // A role with no target has no URI: said, exit 2.
    let _: AccessRequest = alice.json(&[
        "request",
        "prod-logs-read",
        "--reason",
        "Trace 502s",
        "--json",
    ]);
    let none = alice.run(&["credential", "prod-logs-read", "--format", "uri"]);
    assert_eq!(code(&none), 2, "{}", stderr(&none));
    assert!(stderr(&none).contains("no target"), "{}", stderr(&none));
    let env = alice.run(&["credential", "prod-logs-read", "--format", "env"]);
    let env = String::from_utf8(env.stdout).unwrap();
    assert!(env.starts_with("export HOIST_CREDENTIAL='"), "{env}");
    demo.stop().await;
}

/// `hoist demo --serve-only` says which target it runs, and Ctrl-C (SIGINT)
/// stops its PostgreSQL cluster with it.
#[test]
fn the_demo_says_which_target_and_ctrl_c_removes_its_cluster() {
    let config = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["demo", "--serve-only"])
        .env("HOIST_CONFIG_DIR", config.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let note = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("Demo target:"))
        .unwrap();
    assert!(
        note.contains("a throwaway PostgreSQL on 127.0.0.1:"),
        "{note}"
    );
    assert!(note.contains("press s"), "says what to try: {note}");
    let port: u16 = note
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reachable = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(reachable(), "the cluster runs with the demo");
    assert!(
        lines
            .map(Result::unwrap)
            .any(|l| l.starts_with("Ctrl-C stops it"))
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(demo.wait().unwrap().success());
    assert!(!reachable(), "the cluster stopped with the demo");
}

/// The access never goes live in time (the target is down): exec gives up
/// at its timeout without running the command, and revokes the grant it
/// requested, so nothing is left to be provisioned later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_gives_up_on_access_that_is_not_live_in_time_and_revokes() {
    let demo = demo_with_postgres().await;
    demo.postgres().unwrap().stop();
    let alice = person_at(&demo.url(), "alice");
    let _approvers = demo.start_approvers("alice");
    let out = alice.run(&[
        "exec",
        "prod-db-admin",
        "--ticket",
        "CHG-1024",
        "--reason",
        "Vacuum the bloated orders table",
        "--timeout",
        "8s",
        "--",
        "sh",
        "-c",
        "echo ran",
    ]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the command never ran");
    let said = stderr(&out);
    assert!(
        said.contains("waiting for prod-db-admin's access at demo-db"),
        "{said}"
    );
    assert!(said.contains("gave up waiting for the access"), "{said}");
    let grants: Vec<Grant> = alice.json(&["grants", "--all", "--json"]);
    let grant = grants.iter().find(|g| g.role == "prod-db-admin").unwrap();
    assert_eq!(grant.state, GrantState::Revoked, "{grant:?}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_watch_prints_each_new_review_once_as_it_lands() {
    let broker = Broker::start().await;
    let (alice, carol, dave) = (
        broker.person("alice"),
        broker.person("carol"),
        broker.person("dave"),
    );
    // One waits already: it is printed first.
    let earlier = alice.json::<AccessRequest>(&[&DB[..], &["--json"]].concat());
    let mut watching = dave.spawn(&["reviews", "--watch"]);
    let mut lines = BufReader::new(watching.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let fields: Vec<&str> = first.split('\t').collect();
    assert_eq!(
        fields,
        [
            earlier.id.as_str(),
            "-",
            "alice",
            "prod-db-admin",
            "CHG-1024",
            "Vacuum the bloated orders table"
        ],
        "{first}"
    );

    // A new one lands in dave's queue while he watches.
    let filed = carol.json::<AccessRequest>(&[
        "request",
        "prod-k8s-admin",
        "--reason",
        "Drain node pool np-3",
        "--ticket",
        "CHG-2291",
        "--json",
    ]);
    let next = lines.next().unwrap().unwrap();
    assert!(next.starts_with(&format!("{}\t", filed.id)), "{next}");
    assert!(next.contains("\tcarol\tprod-k8s-admin\t"), "{next}");

    // Once dave approves the first, it is not printed again; the next line
    // is the next new review.
    let approved = dave.run(&["approve", &earlier.id]);
    assert!(approved.status.success(), "{}", stderr(&approved));
    let third = alice.json::<AccessRequest>(&[
        "request",
        "prod-k8s-admin",
        "--reason",
        "Cordon the noisy node",
        "--ticket",
        "CHG-2292",
        "--json",
    ]);
    let next = lines.next().unwrap().unwrap();
    assert!(next.starts_with(&format!("{}\t", third.id)), "{next}");

    watching.kill().unwrap();
    watching.wait().unwrap();

    // Without --watch: what waits now, and it ends.
    let out = dave.run(&["reviews", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<AccessRequest>(l).unwrap().id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.contains(&filed.id) && ids.contains(&third.id),
        "{ids:?}"
    );
    // With -o yaml: one YAML document each, not JSON.
    let out = dave.run(&["reviews", "-o", "yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let documents: Vec<AccessRequest> = serde_norway::Deserializer::from_slice(&out.stdout)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    let yaml_ids: Vec<String> = documents.into_iter().map(|r| r.id).collect();
    assert_eq!(yaml_ids, ids);
    assert!(!out.stdout.starts_with(b"{"), "not JSON");
}

/// `--watch` outlives the broker's restart (its stream ends): it reconnects,
/// says so on stderr, and prints what lands afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_watch_reconnects_when_the_broker_restarts() {
    let mut broker = Broker::start().await;
    let (alice, dave) = (broker.person("alice"), broker.person("dave"));
    let mut watching = dave.spawn(&["reviews", "--watch"]);
    let stdout = watching.stdout.take().unwrap();
    let stderr_pipe = watching.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut text).unwrap();
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let before = alice.json::<AccessRequest>(&[&DB[..], &["--json"]].concat());
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with(&format!("{}\t", before.id)), "{first}");

    broker.broker.restart().await;
    let after = alice.json::<AccessRequest>(&[
        "request",
        "prod-k8s-admin",
        "--reason",
        "Drain node pool np-3",
        "--ticket",
        "CHG-2291",
        "--json",
    ]);
    let next = lines.next().unwrap().unwrap();
    assert!(next.starts_with(&format!("{}\t", after.id)), "{next}");
    assert!(watching.try_wait().unwrap().is_none(), "the watch goes on");
    watching.kill().unwrap();
    watching.wait().unwrap();
    let said = said.join().unwrap();
    assert!(
        said.contains("the broker's event stream ended; reconnecting in 1s"),
        "{said}"
    );
    assert!(
        said.contains("reconnected to the broker's event stream"),
        "{said}"
    );
}

/// A reader that goes away (`hoist roles --json | head -1`) ends a listing
/// quietly, as it ends other tools: no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_ends_a_listing_quietly() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let mut child = alice.spawn(&["roles", "--json"]);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("closed"), "nothing said of it: {err}");
    assert_eq!(code(&out), 0, "{err}");
}

/// `--wait --json` that runs out of time still prints the request it
/// filed, as a plain `--json` would: a script needs its id to cancel it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_still_names_the_request_under_json() {
    let broker = Broker::start().await;
    let alice = broker.person("alice");
    let out = alice.run(&[&DB[..], &["--wait", "--timeout", "2s", "--json"]].concat());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let request: AccessRequest = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(request.state, RequestState::Pending);
    assert!(request.id.starts_with("req_"), "{request:?}");
}

/// `audit --actor-kind` reads pages until enough match: a broker that
/// answers the same page whatever is asked (out of order, or hostile)
/// ends the reading with what matched, rather than be asked forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_page_that_does_not_move_on_ends_a_filtered_read() {
    let event = hoist_api::AuditEvent {
        seq: 5,
        at: chrono::Utc::now(),
        kind: hoist_api::AuditKind::Requested,
        actor: "alice".into(),
        subject: None,
        role: None,
        request_id: None,
        grant_id: None,
        incident: None,
        reason: None,
        details: serde_json::json!({}),
        prev_hash: "0".repeat(64),
        hash: "1".repeat(64),
    };
    let me = hoist_api::Me {
        user: "alice".into(),
        display_name: "Alice".into(),
        groups: Vec::new(),
        approver_for: Vec::new(),
        auditor: true,
    };
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&asked);
    let stuck = axum::Router::new()
        .route(
            "/v1/me",
            axum::routing::get(move || async move { axum::Json(me) }),
        )
        .route(
            "/v1/audit",
            axum::routing::get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let page = vec![event.clone()];
                async move { axum::Json(page) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, stuck).await });
    let hoist = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker,
    };
    let login = hoist.run_with_stdin(&["login", "--with-token"], "t-alice\n");
    assert!(login.status.success(), "{}", stderr(&login));

    let mut child = hoist.spawn(&["audit", "--actor-kind", "workload", "--json"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "still reading after {} pages",
                asked.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<hoist_api::AuditEvent> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert!(asked.load(std::sync::atomic::Ordering::Relaxed) <= 2);
}

/// SIGQUIT (Ctrl-\) ends any command without a core dump, whatever the
/// core size limit: the process holds the session's tokens. Here `login
/// --with-token` waits on its standard input, where no handler of a
/// command's own is installed, under a limit raised as far as it goes.
#[test]
fn sigquit_leaves_no_core_dump_behind() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -c \"$(ulimit -Hc)\" && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_hoist"))
        .args(["--broker", "http://127.0.0.1:9", "login", "--with-token"])
        .env("HOIST_CONFIG_DIR", config.path())
        .env("HOIST_KEYRING", "keyutils")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its runtime's threads exist once main is well under way.
    let status = format!("/proc/{}/status", child.id());
    let threads = || {
        std::fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while threads() < 2 {
        assert!(std::time::Instant::now() < deadline, "hoist never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT).unwrap();
    let ended = child.wait().unwrap();
    let sigquit = nix::sys::signal::Signal::SIGQUIT as i32;
    assert_eq!(ended.signal(), Some(sigquit), "{ended:?}");
    assert!(!ended.core_dumped(), "a core was dumped: {ended:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
