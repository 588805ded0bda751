//! What operators read: `/metrics` checked by Prometheus's own parser,
//! `/readyz` failing while the database cannot be read, and the JSON request
//! log of the real binary.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

pub(crate) async fn scrape(broker: &TestBroker) -> String {
    let response = reqwest::get(format!("{}/metrics", broker.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

/// The value of the one sample whose line starts with `series` (name and
/// labels as written).
pub(crate) fn sample(text: &str, series: &str) -> f64 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .collect();
    assert_eq!(lines.len(), 1, "one {series} in:\n{text}");
    lines[0].rsplit(' ').next().unwrap().parse().unwrap()
}

/// `promtool check metrics` (Debian's prometheus package; scripts/test
/// installs it): the exposition parses, and passes its lint.
fn promtool_accepts(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: scripts/test installs Debian's prometheus package");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool refused the metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_what_the_store_holds() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let waiting = alice.file(&db_request()).await.unwrap();
    alice.file(&request("logs", "reading")).await.unwrap();
    alice.request(&waiting.id).await.unwrap();
    // Junk paths must not become series of their own.
    for n in 0..5 {
        let _ = alice
            .raw(reqwest::Method::GET, &format!("/v1/no-such-thing-{n}"))
            .send()
            .await
            .unwrap();
    }
    // Nor methods made up: a client may send any token as one.
    for n in 0..3 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        let _ = alice.raw(method, "/v1/requests").send().await.unwrap();
    }
    let _events = alice
        .raw(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();

    let text = scrape(&broker).await;
    promtool_accepts(&text);
    assert_eq!(sample(&text, "hoistd_store_counted"), 1.0);
    assert_eq!(sample(&text, "hoistd_pending_requests"), 1.0);
    assert_eq!(sample(&text, r#"hoistd_active_grants{access="none"}"#), 1.0);
    assert_eq!(
        sample(&text, r#"hoistd_active_grants{access="failed"}"#),
        0.0
    );
    assert_eq!(sample(&text, "hoistd_reaper_lag_seconds"), 0.0);
    assert_eq!(sample(&text, "hoistd_removing_grants"), 0.0);
    assert_eq!(sample(&text, "hoistd_removal_lag_seconds"), 0.0);
    // SQLite's clock is this process's.
    assert_eq!(sample(&text, "hoistd_clock_offset_seconds"), 0.0);
    // Nothing old to forget yet; the series is there for alerts all the same.
    assert_eq!(
        sample(&text, r#"hoistd_purged_rows{kind="workload_exchanges"}"#),
        0.0
    );
    assert_eq!(sample(&text, "hoistd_event_stream_subscribers"), 1.0);
    // Every call above started at least one transaction; none waits now.
    assert!(sample(&text, "hoistd_store_transaction_wait_seconds_count") >= 4.0);
    assert_eq!(sample(&text, "hoistd_store_transactions_waiting"), 0.0);
    // SQLite's one writing connection, free between calls.
    assert_eq!(sample(&text, "hoistd_store_connections_max"), 1.0);
    assert_eq!(
        sample(&text, r#"hoistd_store_connections{state="idle"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"hoistd_store_connections{state="in_use"}"#),
        0.0
    );
    // Routes by their template, with method and status.
    assert_eq!(
        sample(
            &text,
            r#"hoistd_http_request_duration_seconds_count{method="GET",route="/v1/requests/{id}",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"hoistd_http_request_duration_seconds_count{method="POST",route="/v1/requests",status="201"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"hoistd_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}"#
        ),
        5.0
    );
    assert!(!text.contains(&waiting.id), "no raw path in a label");
    assert!(!text.contains("no-such-thing"), "no raw path in a label");
    assert!(!text.contains("MADEUP"), "no made-up method in a label");
    assert!(
        text.contains(r#"method="other""#),
        "made-up methods counted as other"
    );
}

/// The first 16 hex digits of `path`'s SHA-256, by `sha256sum`.
pub(crate) fn file_digest(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()[..16].to_string()
}

/// `hoistd_policy_info` names the policy in force by its file's digest, and
/// follows a reload: instances on one database that enforce different
/// policies show apart.
#[tokio::test]
async fn metrics_name_the_policy_in_force_by_its_digest() {
    let broker = TestBroker::start().await;
    let before = file_digest(&broker.policy_path());
    let text = scrape(&broker).await;
    let series = |digest: &str| format!(r#"hoistd_policy_info{{digest="{digest}"}}"#);
    assert_eq!(sample(&text, &series(&before)), 1.0);

    let mut policy = std::fs::read_to_string(broker.policy_path()).unwrap();
    policy.push_str("\n# edited\n");
    std::fs::write(broker.policy_path(), policy).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    let after = file_digest(&broker.policy_path());
    assert_ne!(before, after);
    let text = scrape(&broker).await;
    assert_eq!(sample(&text, &series(&after)), 1.0);
    assert_eq!(
        text.lines()
            .filter(|line| line.starts_with("hoistd_policy_info{"))
            .count(),
        1,
        "only the policy in force: {text}"
    );
    promtool_accepts(&text);
}

/// `/metrics` takes no token: scrapes however many and however fast read
/// the store once per interval, not once each.
#[tokio::test]
async fn scrapes_at_once_read_the_store_once() {
    let broker = TestBroker::builder().reaper_held().start().await;
    let reads = |text: &str| sample(text, "hoistd_store_transaction_wait_seconds_count");
    let before = reads(&scrape(&broker).await);
    let scrapes: Vec<_> = (0..20).map(|_| scrape(&broker)).collect();
    futures::future::join_all(scrapes).await;
    let after = reads(&scrape(&broker).await);
    assert!(after - before < 5.0, "{before} -> {after}");
}

/// `/v1/ssh/krl` takes no token either: asks however many and however
/// fast read the store once while nothing changes, not once each (each
/// read holds a connection and a blocking thread the lease renewal and
/// every caller need). A change is in the next answer all the same.
#[tokio::test]
async fn krl_asks_at_once_read_the_store_once_until_something_changes() {
    let broker = TestBroker::builder().reaper_held().start().await;
    let reads = |text: &str| sample(text, "hoistd_store_transaction_wait_seconds_count");
    let krl = || async {
        let answer = reqwest::get(format!("{}/v1/ssh/krl", broker.url()))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.bytes().await.unwrap()
    };
    let before = reads(&scrape(&broker).await);
    let asks: Vec<_> = (0..40).map(|_| krl()).collect();
    let answers = futures::future::join_all(asks).await;
    assert!(
        answers
            .iter()
            .all(|answer| answer.starts_with(b"SSHKRL\n\0"))
    );
    let after = reads(&scrape(&broker).await);
    // (The scrapes read the store's figures too.)
    assert!(after - before < 10.0, "{before} -> {after}");
    // A change is heard at once: the next ask reads again.
    broker
        .as_user("alice")
        .file(&request("logs", "tail the logs"))
        .await
        .unwrap();
    let again = reads(&scrape(&broker).await);
    krl().await;
    assert!(
        reads(&scrape(&broker).await) > again,
        "read again after a change"
    );
}

#[tokio::test]
async fn readyz_fails_while_the_database_cannot_be_read() {
    let broker = TestBroker::start().await;
    let readyz = format!("{}/readyz", broker.url());
    let ready = reqwest::get(&readyz).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");

    // The database's path cannot be opened any more (a directory is there).
    let db = broker.db();
    let aside = broker.dir().join("aside.db");
    std::fs::rename(&db, &aside).unwrap();
    std::fs::create_dir(&db).unwrap();
    // One check answers the probes of a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let unready = reqwest::get(&readyz).await.unwrap();
    assert_eq!(unready.status(), 503);
    let body: serde_json::Value = unready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["reason"], "the database does not answer");
    // Liveness is not readiness: the process still serves.
    let health = reqwest::get(format!("{}/v1/health", broker.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    std::fs::remove_dir(&db).unwrap();
    std::fs::rename(&aside, &db).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ready = reqwest::get(&readyz).await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// A probe under way when the server begins to stop (its request half
/// sent) is answered 503: an instance that is draining leaves rotation.
#[tokio::test]
async fn readyz_fails_once_the_server_is_stopping() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut broker = TestBroker::start().await;
    let mut probe = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
    probe
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: hoistd\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopped = tokio::spawn(async move {
        broker.stop().await;
        broker
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    probe.write_all(b"connection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("hoistd is stopping"), "{answer}");
    stopped.await.unwrap();
}

/// The real binary with `--log-format json`: one JSON object per line, a
/// request's line with its route template, status and duration, and no
/// query string or token.
#[tokio::test]
async fn json_logs_have_a_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |command| {
        command
            .args(["--log-format", "json"])
            .env_remove("HOISTD_LOG");
    });
    let serving: serde_json::Value = serde_json::from_str(&hoistd.serving).unwrap();
    assert_eq!(serving["message"], "hoistd serving");
    assert_eq!(serving["level"], "INFO");

    let client = Client {
        base: hoistd.url(),
        token: "t-alice".into(),
        http: reqwest::Client::new(),
    };
    let filed = client.file(&db_request()).await.unwrap();
    let _ = client
        .raw(
            reqwest::Method::GET,
            &format!("/v1/requests/{}?secret=hunter2", filed.id),
        )
        .send()
        .await
        .unwrap();

    let mut lines = Vec::new();
    while lines.len() < 2 {
        let line = hoistd.line();
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
        assert!(
            !line.contains("hunter2") && !line.contains("t-alice"),
            "{line}"
        );
        if entry["target"] == "access_log" {
            lines.push(entry);
        }
    }
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["route"], "/v1/requests");
    assert_eq!(lines[0]["status"], 201);
    assert!(lines[0]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(lines[1]["route"], "/v1/requests/{id}");
    assert_eq!(lines[1]["path"], format!("/v1/requests/{}", filed.id));
    assert_eq!(lines[1]["status"], 200);

    hoistd.signal("TERM");
    // Off the runtime, which must go on answering the broker meanwhile.
    let exit = tokio::task::spawn_blocking(move || hoistd.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
}

#[test]
fn check_config_reports_every_problem_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let ca = TestCa::new(&dir.path().join("tls")).unwrap();
    let good = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .arg("check-config")
        .arg("--db")
        .arg(dir.path().join("hoistd.db"))
        .arg("--policy")
        .arg(&policy)
        .arg("--tls-cert")
        .arg(ca.cert())
        .arg("--tls-key")
        .arg(ca.key())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(said.contains("ok: policy: "), "{said}");
    assert!(
        said.contains(&format!("(4 roles, digest {})", file_digest(&policy))),
        "{said}"
    );
    assert!(said.contains("(created at the first start)"), "{said}");
    assert!(said.contains("ok: TLS: certificate"), "{said}");
    assert!(!said.contains("error"), "{said}");

    std::fs::write(
        &policy,
        policy_text("").replace("approvals = 2", "approvals = \"two\""),
    )
    .unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .arg("check-config")
        .arg("--db")
        .arg(dir.path().join("no-such-dir/hoistd.db"))
        .arg("--policy")
        .arg(&policy)
        .arg("--tls-cert")
        .arg(ca.cert())
        .arg("--tls-key")
        .arg(dir.path().join("missing.key"))
        .args(["--idle-timeout", "0s"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{said}");
    assert!(
        said.contains("error: policy: ") && said.contains("invalid type"),
        "{said}"
    );
    assert!(
        said.contains("error: store: ") && said.contains("no-such-dir does not exist"),
        "{said}"
    );
    assert!(
        said.contains("error: TLS: cannot read the TLS key"),
        "{said}"
    );
    assert!(
        said.contains("error: limits: --idle-timeout must be longer than zero"),
        "{said}"
    );
    assert!(said.contains("4 problems found"), "{said}");
    assert!(!dir.path().join("hoistd.db").exists(), "nothing written");

    // A database a newer hoistd left (a rollback) is refused here, as
    // serve would refuse it; one behind is migrated at start.
    std::fs::write(&policy, policy_text("")).unwrap();
    let db = dir.path().join("hoistd.db");
    hoistd::store::SqliteStore::open(&db).unwrap();
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .arg("check-config")
            .arg("--db")
            .arg(&db)
            .arg("--policy")
            .arg(&policy)
            .output()
            .unwrap()
    };
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("(schema up to date)"), "{said}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 9999).unwrap();
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("error: store: ") && said.contains("newer than this hoistd knows"),
        "{said}"
    );
    conn.pragma_update(None, "user_version", 3).unwrap();
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("(schema at version 3 of "), "{said}");
}

/// Event streams hold their connections and are never closed for a
/// newcomer: a stream cap that is not below the connection cap is refused
/// by name, by check-config and serve alike.
#[test]
fn a_stream_cap_not_below_the_connection_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    for command in ["check-config", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .arg(command)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("hoistd.db"))
            .arg("--policy")
            .arg(&policy)
            .args(["--max-connections", "64", "--max-streams", "64"])
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{command}: {said}");
        assert!(
            said.contains("--max-streams (64) must be below --max-connections (64)"),
            "{command}: {said}"
        );
    }
    assert!(!dir.path().join("hoistd.db").exists(), "nothing written");
    // A lower connection cap alone takes half of it for streams.
    let out = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .arg("check-config")
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("hoistd.db"))
        .arg("--policy")
        .arg(&policy)
        .args(["--max-connections", "64"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("at most 64 connections, 32 of them event streams"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Plain HTTP would carry tokens and credentials unencrypted: anywhere
/// but loopback it is refused, by check-config and serve alike, unless the
/// operator says a TLS proxy is in front.
#[test]
fn plain_http_off_loopback_is_refused_unless_behind_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let hoistd = |command: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .arg(command)
            .args(["--listen", "0.0.0.0:0", "--db"])
            .arg(dir.path().join("hoistd.db"))
            .arg("--policy")
            .arg(&policy)
            .args(extra)
            .env_remove("HOISTD_PLAIN_HTTP_BEHIND_PROXY")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    };
    for command in ["check-config", "serve"] {
        let (code, said) = hoistd(command, &[]);
        assert_eq!(code, Some(1), "{command}: {said}");
        assert!(
            said.contains("plain HTTP on 0.0.0.0:0, which is not a loopback address")
                && said.contains("--plain-http-behind-proxy"),
            "{command}: {said}"
        );
    }
    assert!(!dir.path().join("hoistd.db").exists(), "nothing written");
    let (code, said) = hoistd("check-config", &["--plain-http-behind-proxy"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("ok: TLS: off (plain HTTP on 0.0.0.0:0, behind a proxy"),
        "{said}"
    );
}

/// Against a real PostgreSQL target: access it refuses is an error, as at
/// start; the target down is a warning, and the check passes.
#[tokio::test]
async fn check_config_refuses_access_a_target_refuses_and_warns_of_one_down() {
    let pg = Postgres::start()
        .await
        .unwrap_or_else(|err| panic!("{err} (scripts/test installs postgresql)"));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let check = |access: &str| {
        std::fs::write(
            &policy,
            format!(
                "{}\n{}\n{}",
                policy_text(""),
                pg.target_toml("db1"),
                target_role("pgdb", "db1", access)
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .arg("check-config")
            .arg("--db")
            .arg(dir.path().join("hoistd.db"))
            .arg("--policy")
            .arg(&policy)
            .env("HOISTD_LOG", "hoistd=warn")
            .output()
            .unwrap()
    };
    let refused = check("member_of = [\"no_such_role\"]");
    let said = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("error: targets: "), "{said}");
    assert!(said.contains("no PostgreSQL role `no_such_role`"), "{said}");

    pg.stop();
    let down = check("member_of = [\"pg_monitor\"]");
    let said = String::from_utf8_lossy(&down.stdout);
    let warned = String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "{said}{warned}");
    assert!(said.contains("ok: targets: "), "{said}");
    assert!(warned.contains("target not checked at load"), "{warned}");
}

/// A PostgreSQL target elsewhere with no `sslmode` loads, and check-config
/// and check-policy say it speaks plain text; one that says, does not.
#[test]
fn plain_text_to_a_remote_postgresql_target_is_named_by_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret").unwrap();
    let write = |extra: &str| {
        let target = format!(
            "[[targets]]\nname = \"db1\"\nkind = \"postgres\"\n\
             url = \"postgres://hoist_admin@db.invalid:5432/app\"\npassword_file = \"{}\"\n\
             connect_timeout = \"1s\"\n{extra}\n",
            password.display()
        );
        std::fs::write(
            &policy,
            format!(
                "{}\n{target}\n{}",
                policy_text("issuer = \"hoistd-test\""),
                target_role("pgdb", "db1", "member_of = [\"app_admin\"]")
            ),
        )
        .unwrap();
    };
    let run = |command: &str| {
        let mut hoistd = Command::new(env!("CARGO_BIN_EXE_hoistd"));
        hoistd.arg(command);
        if command == "check-config" {
            hoistd
                .arg("--db")
                .arg(dir.path().join("hoistd.db"))
                .arg("--policy");
        }
        hoistd.arg(&policy);
        let out = hoistd.env("HOISTD_LOG", "hoistd=error").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said
    };
    write("");
    for command in ["check-config", "check-policy"] {
        let said = run(command);
        assert!(
            said.contains("warning: target `db1`: sslmode is not set")
                && said.contains("db.invalid in plain text"),
            "{command}: {said}"
        );
    }
    write("sslmode = \"disable\"");
    for command in ["check-config", "check-policy"] {
        let said = run(command);
        assert!(!said.contains("warning"), "{command}: {said}");
    }
}

/// The database URL in the environment may hold its password: no help
/// text shows it (clap shows an environment variable's value by default).
#[test]
fn help_never_shows_the_database_url_from_the_environment() {
    for command in [
        vec!["serve"],
        vec!["migrate"],
        vec!["check-config"],
        vec!["audit", "verify"],
        vec!["ssh", "krl"],
        vec!["ssh", "ca"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .args(&command)
            .arg("--help")
            .env("HOISTD_DB", "postgres://hoistd:s3cr3t-pw@db.example/hoistd")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command:?}");
        assert!(said.contains("HOISTD_DB"), "{command:?}: {said}");
        assert!(!said.contains("s3cr3t-pw"), "{command:?}: {said}");
    }
}
