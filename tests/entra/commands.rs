//! The real `hoist` binary on an Entra profile: the scriptable commands
//! work as they do against hoistd, and those Entra cannot do say so.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hoist_api::{AccessRequest, Grant, RequestState, Role};

use super::{Tenant, graph, run};

pub struct Hoist {
    pub config: tempfile::TempDir,
    /// The access token it signed in with.
    pub token: String,
}

impl Hoist {
    /// `hoist` with an Entra profile for `tenant`, signed in as `who` with a
    /// token from the tenant's provider (`login --with-token`).
    pub async fn signed_in(tenant: &Tenant, who: &str) -> Hoist {
        let session = tenant.sign_in(who, None).await;
        let hoist = Hoist {
            config: tempfile::tempdir().unwrap(),
            token: session.access_token.clone(),
        };
        std::fs::write(hoist.config.path().join("config.toml"), tenant.profile()).unwrap();
        let out = hoist.run_with_stdin(&["login", "--with-token"], &session.access_token);
        assert!(out.status.success(), "login: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("as {who}@contoso.example")),
            "{}",
            stderr(&out)
        );
        hoist
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .args(["--profile", "entra"])
            .args(args)
            .env("HOIST_CONFIG_DIR", self.config.path())
            .env("HOIST_KEYRING", "keyutils")
            .env("HOIST_CACHE_DIR", self.config.path().join("cache"))
            .env_remove("HOIST_BROKER");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
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

    pub fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits (bounded) for something the fake Graph will see soon.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

#[test]
fn commands_work_on_an_entra_profile() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = Hoist::signed_in(&tenant, "alice").await;
        let roles: Vec<Role> = alice.json(&["roles", "--json"]);
        assert_eq!(roles.len(), 4);
        let table = alice.run(&["roles"]);
        assert!(String::from_utf8_lossy(&table.stdout).contains("User Administrator"));
        // A pasted Graph token lasts as long as it says, with no renewal.
        let whoami = alice.run(&["whoami"]);
        let said = String::from_utf8_lossy(&whoami.stdout);
        assert!(
            said.contains("session:  pasted token, valid until"),
            "{said}{}",
            stderr(&whoami)
        );

        // Activate by name; it propagates before it is a grant.
        let filed: AccessRequest = alice.json(&[
            "request",
            "User Administrator",
            "--reason",
            "Unlock the helpdesk lead's account",
            "--duration",
            "30m",
            "--json",
        ]);
        assert_eq!(filed.state, RequestState::Approved);
        let none: Vec<Grant> = alice.json(&["grants", "--json"]);
        assert!(none.is_empty());
        tenant.graph.propagate();
        let grants: Vec<Grant> = alice.json(&["grants", "--json"]);
        assert_eq!(grants.len(), 1);
        let status: AccessRequest = alice.json(&["status", &filed.id, "--json"]);
        assert_eq!(status.state, RequestState::Active);
        // By the role's name, as it was asked for.
        let out = alice.run(&["revoke", "user administrator", "--reason", "done"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let after: Vec<Grant> = alice.json(&["grants", "--json"]);
        assert!(after.is_empty());

        // What Entra cannot do: exit 2, naming the capability.
        let audit = alice.run(&["audit"]);
        assert_eq!(audit.status.code(), Some(2), "{}", stderr(&audit));
        assert!(
            stderr(&audit).contains("does not offer the audit log"),
            "{}",
            stderr(&audit)
        );
        let exec = alice.run(&["exec", "User Administrator", "--reason", "x", "--", "true"]);
        assert_eq!(exec.status.code(), Some(2), "{}", stderr(&exec));
        assert!(stderr(&exec).contains("credentials"), "{}", stderr(&exec));
        assert_eq!(tenant.graph.made("selfActivate"), 1, "exec filed nothing");
        // A policy refusal is exit 7 with the rule in words.
        let refused = alice.run(&[
            "request",
            &format!("dir:{}", graph::EXCHANGE_ADMIN),
            "--reason",
            "Mailbox migration",
        ]);
        assert_eq!(refused.status.code(), Some(7), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("ticket number"),
            "{}",
            stderr(&refused)
        );
    });
}

#[test]
fn request_wait_follows_approval_and_propagation() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = Hoist::signed_in(&tenant, "alice").await;
        let role = format!("dir:{}", graph::EXCHANGE_ADMIN);
        let child = alice
            .command(&[
                "request",
                &role,
                "--reason",
                "Mailbox migration",
                "--ticket",
                "CHG-2291",
                "--wait",
                "--timeout",
                "5m",
                "--json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        until("the request is pending", || {
            tenant
                .graph
                .statuses()
                .iter()
                .any(|(_, s)| s == "PendingApproval")
        })
        .await;
        let bob = tenant.backend("bob").await;
        let waiting = bob.review_queue().await.unwrap();
        bob.review(&waiting[0].id, hoist_api::Decision::Approve, None)
            .await
            .unwrap();
        until("the approval is provisioned", || {
            tenant.graph.propagating() == 1
        })
        .await;
        tenant.graph.propagate();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let done: AccessRequest = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(done.state, RequestState::Active);
        let said = stderr(&out);
        assert!(said.contains("pending"), "{said}");
        assert!(said.contains("active"), "{said}");
    });
}

/// Entra names no roles one approves: `hoist reviews` lists, and
/// `reviews --watch` prints as it lands, what Graph says waits for the
/// approver's decision.
#[test]
fn an_approver_on_an_entra_profile_sees_what_waits_for_them() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = Hoist::signed_in(&tenant, "alice").await;
        let bob = Hoist::signed_in(&tenant, "bob").await;
        let mut watch = bob
            .command(&["reviews", "--watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = watch.stdout.take().unwrap();
        let (lines, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                if lines.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        let filed: AccessRequest = alice.json(&[
            "request",
            &format!("dir:{}", graph::EXCHANGE_ADMIN),
            "--reason",
            "Mailbox migration",
            "--ticket",
            "CHG-2291",
            "--json",
        ]);
        assert_eq!(filed.state, RequestState::Pending);
        let line = tokio::task::spawn_blocking(move || {
            heard.recv_timeout(std::time::Duration::from_secs(30))
        })
        .await
        .unwrap();
        let _ = watch.kill();
        let _ = watch.wait();
        let printed: AccessRequest =
            serde_json::from_str(&line.expect("watch printed it")).unwrap();
        assert_eq!(printed.requester, "alice@contoso.example");
        assert_eq!(printed.state, RequestState::Pending);
        let listed = bob.run(&["reviews", "--json"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let listed = String::from_utf8(listed.stdout).unwrap();
        assert_eq!(listed.lines().count(), 1, "{listed}");
        let waiting: AccessRequest = serde_json::from_str(listed.trim()).unwrap();
        assert_eq!(waiting.id, printed.id);
        let mine = alice.run(&["reviews", "--json"]);
        assert!(mine.status.success(), "{}", stderr(&mine));
        assert!(mine.stdout.is_empty(), "not the requester's to review");
    });
}

/// A job's workload identity token is never sent to an Entra tenant's
/// sign-in service: `hoist exec` as a workload on an Entra profile is
/// refused before anything is read or sent.
#[test]
fn a_workload_exec_on_an_entra_profile_is_refused() {
    let hoist = Hoist {
        config: tempfile::tempdir().unwrap(),
        token: String::new(),
    };
    std::fs::write(
        hoist.config.path().join("config.toml"),
        "[profiles.entra]\nkind = \"entra\"\ntenant = \"contoso.example\"\nclient_id = \"hoist\"\n",
    )
    .unwrap();
    let out = hoist
        .command(&["exec", "db", "--", "true"])
        .env(hoist::commands::ENV_WORKLOAD_TOKEN, "eyJ.job-token.sig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("Microsoft Entra tenant"), "{said}");
    assert!(!said.contains("job-token"), "{said}");
}

/// Before any sign-in, the command to run is the one that signs in to an
/// Entra tenant: the device flow, not a pasted token.
#[test]
fn not_signed_in_says_how_to_sign_in_to_the_tenant() {
    let hoist = Hoist {
        config: tempfile::tempdir().unwrap(),
        token: String::new(),
    };
    std::fs::write(
        hoist.config.path().join("config.toml"),
        "[profiles.entra]\nkind = \"entra\"\ntenant = \"contoso.example\"\nclient_id = \"hoist\"\n",
    )
    .unwrap();
    let out = hoist.run(&["roles"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `hoist login`"),
        "{}",
        stderr(&out)
    );
}
