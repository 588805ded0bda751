//! The real `hoist` on an Entra profile in tmux, against the fake Graph and
//! the test OpenID provider mounted as the tenant's authority: signing in,
//! the eligible roles, an activation with a ticket that propagates before
//! its countdown starts, deactivation, a role whose authentication context
//! asks for a stronger sign-in midway, and an approver's decision.

use std::time::Duration;

use serde_json::json;

use super::tenant::Tenant;
use super::{LOAD, Pane, device_prompt, env, graph, login_with_token};

/// Polls are a second apart on the test profile; a change shows within a few.
const POLLED: Duration = Duration::from_secs(20);

fn pane(config: &std::path::Path, args: &str) -> Pane {
    let env = env(config);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Pane::start(args, &env, 120, 40)
}

#[test]
fn the_whole_entra_story_in_the_terminal() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenant = runtime.block_on(Tenant::start());
    let alice_config = tempfile::tempdir().unwrap();
    std::fs::write(alice_config.path().join("config.toml"), tenant.profile()).unwrap();

    // Not signed in: before it takes the terminal, hoist says where to sign in.
    let alice = pane(alice_config.path(), "--profile entra");
    let screen = alice.wait_for("enter the code", LOAD);
    let (url, code) = device_prompt(&screen);
    runtime.block_on(tenant.provider.approve_device_code(&url, &code, "alice"));
    alice.wait_for("Roles (4/4)", LOAD);
    alice.wait_for("entra (entra) · alice@contoso.example", LOAD);
    assert!(alice.alternate_screen());

    // Activate with a ticket: propagating, then a grant that counts down.
    alice.keys(&["/"]);
    alice.type_text("User Adm");
    alice.keys(&["Enter"]);
    alice.wait_for("· User Administrator", LOAD);
    alice.type_text("Unlock the helpdesk lead's account");
    alice.keys(&["Tab"]);
    alice.type_text("CHG-1024");
    alice.keys(&["C-s"]);
    alice.wait_for("◌ propagating", LOAD);
    let posted = tenant
        .graph
        .received()
        .into_iter()
        .find(|r| r.method == "POST")
        .and_then(|r| r.body)
        .unwrap();
    assert_eq!(
        posted["ticketInfo"],
        json!({ "ticketNumber": "CHG-1024", "ticketSystem": "ServiceNow" })
    );
    assert_eq!(posted["action"], "selfActivate");
    tenant.graph.propagate();
    alice.keys(&["3"]);
    alice.wait_for("Active grants (1)", POLLED);
    let countdown = |s: &str| {
        s.lines()
            .find(|l| l.trim_start_matches('│').starts_with("User Administrator"))
            .map(str::to_string)
    };
    let first = countdown(&alice.screen());
    assert!(first.is_some(), "{}", alice.screen());
    // The countdown moves: the row changes without a key.
    let start = std::time::Instant::now();
    while countdown(&alice.screen()) == first {
        assert!(
            start.elapsed() < LOAD,
            "the countdown stood still: {first:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deactivate.
    alice.keys(&["x"]);
    alice.wait_for("Revoke User Administrator now?", LOAD);
    alice.keys(&["y"]);
    alice.wait_for("No active access", LOAD);
    assert_eq!(
        tenant.graph.statuses().last().unwrap(),
        &("selfDeactivate".to_string(), "Revoked".to_string())
    );

    // A role behind an authentication context: Graph answers with a claims
    // challenge; the TUI shows the new sign-in's code, then files again.
    alice.keys(&["1", "/"]);
    alice.type_text("Security");
    alice.keys(&["Enter"]);
    alice.wait_for("· Security Administrator", LOAD);
    alice.type_text("Review the conditional access report");
    alice.keys(&["C-s"]);
    let screen = alice.wait_for("stronger sign-in", LOAD);
    let (url, code) = device_prompt(&screen);
    runtime.block_on(tenant.provider.approve_device_code(&url, &code, "alice"));
    alice.wait_for_line(&["Securi", "◌ propagating"], LOAD);
    let posts = tenant
        .graph
        .received()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.body.as_ref().unwrap()["roleDefinitionId"] == graph::SECURITY_ADMIN
        })
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(posts, [400, 201], "refused for the claims, then filed");

    // A role that needs an approver: bob, in his own terminal, approves it.
    alice.keys(&["/"]);
    alice.type_text("Exchange");
    alice.keys(&["Enter"]);
    alice.wait_for("· Exchange Administrator", LOAD);
    alice.type_text("Mailbox migration for the legal team");
    alice.keys(&["Tab"]);
    alice.type_text("CHG-2291");
    alice.keys(&["C-s"]);
    alice.wait_for_line(&["Exchan", "◌ pending"], LOAD);

    let bob_config = tempfile::tempdir().unwrap();
    std::fs::write(bob_config.path().join("config.toml"), tenant.profile()).unwrap();
    let token = runtime.block_on(tenant.sign_in("bob", None)).access_token;
    login_with_token(bob_config.path(), &["--profile", "entra"], &token);
    let bob = pane(bob_config.path(), "--profile entra");
    bob.wait_for("entra (entra) · bob@contoso.example", LOAD);
    bob.keys(&["4"]);
    bob.wait_for("To decide (1)", POLLED);
    bob.keys(&["a"]);
    bob.wait_for("Approve alice@contoso.example", LOAD);
    bob.type_text("Matches CHG-2291");
    bob.keys(&["Enter"]);
    bob.wait_for("To decide (0)", LOAD);
    // Approved is activated: alice's terminal follows it to propagating.
    alice.wait_for_line(&["Exchan", "◌ propagating"], POLLED);

    bob.keys(&["q"]);
    bob.wait_for("EXITED rc=0", LOAD);
    alice.keys(&["q"]);
    alice.wait_for("EXITED rc=0", LOAD);
    assert!(
        !alice.alternate_screen(),
        "the terminal is restored on quit"
    );
}
