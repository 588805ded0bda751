//! Grants at a real target, a PostgreSQL cluster the test stops and starts:
//! the Grants screen says where each grant's access is (failed with its
//! reason, live, removing, removed) in colours that carry meaning, `s`
//! shows a `psql` command that works, and "access removed" is said only
//! once the broker reports it.

use std::time::Duration;

use chrono::TimeDelta;
use crossterm::event::KeyCode;
use hoist::app::Command;
use hoist::app::state::Modal;
use hoist::demo::{Demo, ask};
use hoist_api::AccessState;
use ratatui::style::Color;

use crate::helpers::*;

/// Retries at a target back off to a second or two here; this is far more.
const TARGET_WAIT: Duration = Duration::from_secs(60);

/// The demo with its PostgreSQL target; a test fails, saying why, on a
/// machine without PostgreSQL's server (`scripts/test` installs it).
async fn demo_with_postgres() -> Demo {
    Demo::start_with_postgres()
        .await
        .expect("PostgreSQL's server for the target tests (scripts/test installs it)")
}

/// The foreground colour of a text on screen: its first cell's.
fn colour(
    terminal: &ratatui::Terminal<ratatui::backend::TestBackend>,
    text: &str,
) -> Option<Color> {
    let buffer = terminal.backend().buffer();
    for y in 0..buffer.area.height {
        let cells: Vec<&str> = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        let line = cells.concat();
        if let Some(at) = line.find(text) {
            let x = line[..at].chars().count() as u16;
            return buffer[(x, y)].fg.into();
        }
    }
    panic!("`{text}` is not on screen");
}

async fn file_and_approve(demo: &Demo) {
    let alice = demo.client("alice").await.unwrap();
    let filed = alice
        .file(
            &ask(
                "prod-db-admin",
                "Vacuum the bloated orders table",
                Some("CHG-1024"),
            ),
            "k1",
        )
        .await
        .unwrap();
    let bob = demo.client("bob").await.unwrap();
    bob.review(&filed.id, hoist_api::Decision::Approve, Some("go".into()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_at_postgres_fails_goes_live_is_used_and_is_removed() {
    let demo = demo_with_postgres().await;
    let postgres = demo.postgres().unwrap();
    let theme = hoist::ui::theme::Theme::default();
    let mut alice = app(&demo, "alice").await;
    key(&mut alice, KeyCode::Char('3'));

    // The target is down when the grant is approved: the grant is active
    // (its countdown runs) but its access failed, with the reason.
    postgres.stop();
    file_and_approve(&demo).await;
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| s
                .grant_for("prod-db-admin")
                .and_then(|g| g.access.as_ref())
                .is_some_and(
                    |a| a.state == AccessState::Failed && a.reason.is_some()
                ))
            .await,
        "{:?}",
        alice.state.grant_for("prod-db-admin")
    );
    let drawn = render(&alice.state, &theme, 160, 48);
    let text = screen(&alice.state, 160, 48);
    assert!(text.contains("failed at demo-db:"), "{text}");
    assert!(
        text.contains("next attempt in") || text.contains("trying again"),
        "{text}"
    );
    assert_eq!(colour(&drawn, "failed at demo-db"), Some(theme.danger));
    // The countdown does not wait for the target.
    let left = alice
        .state
        .time_left(alice.state.grant_for("prod-db-admin").unwrap());
    assert!(left > TimeDelta::minutes(25), "{left:?}");

    // `s` on it says why it cannot be used yet, instead of an error.
    key(&mut alice, KeyCode::Char('s'));
    assert!(alice.state.modal.is_none());
    let banner = alice.state.banner.clone().unwrap();
    assert!(
        banner.text.contains("access failed at demo-db"),
        "{}",
        banner.text
    );

    // The target comes back: live, in the colour of what is usable.
    postgres.restart().unwrap();
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| access_state_of(s)
                == Some(AccessState::Live))
            .await
    );
    let drawn = render(&alice.state, &theme, 160, 48);
    assert_eq!(colour(&drawn, "live at demo-db"), Some(theme.ok));
    assert!(screen(&alice.state, 80, 24).contains("live at demo-db"));

    // `s`: the ready psql command, and it works.
    key(&mut alice, KeyCode::Char('s'));
    key(&mut alice, KeyCode::Enter);
    assert!(
        alice
            .wait_until(WAIT, |s| matches!(s.modal, Some(Modal::Credential { .. })))
            .await
    );
    let Some(Modal::Credential {
        access: Some(access),
        ..
    }) = alice.state.modal.clone()
    else {
        panic!("no access in the credential: {:?}", alice.state.modal);
    };
    let command = access.command.clone().unwrap();
    let password = &access.env["PGPASSWORD"];
    assert_eq!(
        command.split_once(" psql ").map(|(env, _)| env),
        Some(format!("PGPASSWORD={password}").as_str()),
        "{command}"
    );
    let (_, argument) = command.split_once(" psql ").unwrap();
    assert!(
        argument.starts_with("'postgresql://hoist_alice_") && !argument.contains(password.as_str()),
        "psql's arguments hold no password: {command}"
    );
    let shown = screen(&alice.state, 160, 48);
    assert!(shown.contains("psql 'postgresql://hoist_alice_"), "{shown}");
    assert!(
        shown.contains("Access for prod-db-admin at demo-db (postgres)"),
        "{shown}"
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} -tAc 'select current_user'"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = access.env.get("PGUSER").unwrap().clone();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), login);

    // `y` copies the command as shown (fetching again would change the
    // password); esc forgets it.
    alice.effects.clear();
    key(&mut alice, KeyCode::Char('y'));
    assert!(alice.effects.contains(&Command::Copy(command.clone())));
    key(&mut alice, KeyCode::Char('u'));
    assert!(
        alice
            .effects
            .contains(&Command::Copy(access.uri.clone().unwrap()))
    );
    key(&mut alice, KeyCode::Esc);
    assert!(alice.state.modal.is_none());

    // Revoked while the target is down: the grant ends in hoist at once
    // and stays under "Ending", removing, until the target confirms.
    postgres.stop();
    key(&mut alice, KeyCode::Char('x'));
    key(&mut alice, KeyCode::Char('y'));
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| s.grants.is_empty()
                && s.ending
                    .first()
                    .and_then(|g| g.access.as_ref())
                    .is_some_and(|a| a.reason.is_some()))
            .await,
        "{:?}",
        alice.state.ending
    );
    let text = screen(&alice.state, 160, 48);
    assert!(text.contains("Ending"), "{text}");
    assert!(text.contains("removing… at demo-db"), "{text}");
    assert!(!text.contains("removed"), "{text}");
    let drawn = render(&alice.state, &theme, 160, 48);
    assert_eq!(colour(&drawn, "removing… at demo-db"), Some(theme.danger));

    // Back: the broker removes it, and only then is it said.
    alice.effects.clear();
    postgres.restart().unwrap();
    assert!(alice.wait_until(TARGET_WAIT, |s| s.ending.is_empty()).await);
    let banner = alice.state.banner.clone().unwrap();
    assert_eq!(banner.text, "prod-db-admin: access removed at demo-db");
    assert!(alice.effects.contains(&Command::Notify(
        "prod-db-admin: access removed at demo-db".into()
    )));
    let admin = postgres.admin().await.unwrap();
    let left = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(left, 0, "the login role is gone");
    demo.stop().await;
}

fn access_state_of(state: &hoist::app::State) -> Option<AccessState> {
    state
        .grant_for("prod-db-admin")
        .and_then(|g| g.access.as_ref())
        .map(|a| a.state)
}

/// Without PostgreSQL's server the demo's target is its own webhook
/// receiver: the same story, with what the receiver hands over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_postgres_the_demo_targets_its_own_webhook_receiver() {
    let demo = Demo::start_with_webhook("not installed here")
        .await
        .unwrap();
    assert!(
        demo.target_note().contains("webhook receiver")
            && demo.target_note().contains("not installed here"),
        "{}",
        demo.target_note()
    );
    let mut alice = app(&demo, "alice").await;
    // The role's details say where its grants reach.
    key(&mut alice, KeyCode::Char('/'));
    keys(&mut alice, "pdb");
    assert_eq!(alice.state.selected_role().unwrap().id, "prod-db-admin");
    let roles = screen(&alice.state, 160, 48);
    assert!(
        roles.contains("Access at      demo-db (webhook)"),
        "{roles}"
    );
    key(&mut alice, KeyCode::Esc);
    key(&mut alice, KeyCode::Char('3'));
    file_and_approve(&demo).await;
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| access_state_of(s)
                == Some(AccessState::Live))
            .await
    );
    assert!(screen(&alice.state, 160, 48).contains("live at demo-db"));
    key(&mut alice, KeyCode::Char('s'));
    key(&mut alice, KeyCode::Char('y'));
    assert!(
        alice
            .wait_until(WAIT, |s| matches!(s.modal, Some(Modal::Credential { .. })))
            .await
    );
    let Some(Modal::Credential {
        access: Some(access),
        ..
    }) = alice.state.modal.clone()
    else {
        panic!("no access in the credential: {:?}", alice.state.modal);
    };
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(access.command.clone().unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("alice holds prod-db-admin at the demo receiver"),
        "{said}"
    );
    key(&mut alice, KeyCode::Esc);
    alice.effects.clear();
    key(&mut alice, KeyCode::Char('x'));
    key(&mut alice, KeyCode::Char('y'));
    let said = Command::Notify("prod-db-admin: access removed at demo-db".into());
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| s.grants.is_empty() && s.ending.is_empty())
            .await,
        "{:?}",
        alice.state.ending
    );
    assert!(
        alice.effects.contains(&said),
        "{:?} {:?}",
        alice.effects,
        alice.state.banner
    );
    demo.stop().await;
}

/// What a person sees in each state the broker reports, from the real
/// broker and cluster: live, the access modal, and removing with the
/// reason the target gave; the clock frozen, secrets and ports masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_state_snapshots() {
    let demo = demo_with_postgres().await;
    let postgres = demo.postgres().unwrap();
    let mut alice = app(&demo, "alice").await;
    key(&mut alice, KeyCode::Char('3'));
    file_and_approve(&demo).await;
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| access_state_of(s)
                == Some(AccessState::Live))
            .await
    );
    let start = alice.state.grant_for("prod-db-admin").unwrap().starts_at;
    freeze(&mut alice, start + TimeDelta::milliseconds(30_500));
    let mut settings = settings();
    settings.add_filter(r"hoist_alice_[a-z0-9_]+", "hoist_alice_GRANT");
    settings.add_filter(r":[A-Za-z0-9_-]{16,}@", ":PASSWORD@");
    settings.add_filter(r"PGPASSWORD=[A-Za-z0-9_-]{16,}", "PGPASSWORD=PASSWORD");
    settings.add_filter(r"next attempt in \d+s", "next attempt in Ns");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT");
    settings.add_filter(r"port \d+", "port PORT");
    let snap = |name: &str, state: &hoist::app::State, sizes: &[(u16, u16)]| {
        for &(width, height) in sizes {
            let text = screen(state, width, height);
            settings.bind(|| insta::assert_snapshot!(format!("{name}_{width}x{height}"), text));
        }
    };
    snap("access_live", &alice.state, &[(80, 24), (160, 48)]);

    key(&mut alice, KeyCode::Char('s'));
    key(&mut alice, KeyCode::Enter);
    assert!(
        alice
            .wait_until(WAIT, |s| matches!(s.modal, Some(Modal::Credential { .. })))
            .await
    );
    freeze(&mut alice, start + TimeDelta::milliseconds(30_500));
    // Wide enough that the command is one line, as a person copies it
    // (narrower, it wraps wherever the password and port fall).
    snap("access_credential", &alice.state, &[(160, 48)]);
    key(&mut alice, KeyCode::Esc);

    postgres.stop();
    key(&mut alice, KeyCode::Char('x'));
    key(&mut alice, KeyCode::Char('y'));
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| s
                .ending
                .first()
                .and_then(|g| g.access.as_ref())
                .is_some_and(|a| a.reason.is_some()))
            .await
    );
    let updated = alice.state.ending[0].access.as_ref().unwrap().updated_at;
    freeze(&mut alice, updated);
    snap("access_removing", &alice.state, &[(80, 24), (160, 48)]);
    postgres.restart().unwrap();
    demo.stop().await;
}

/// Approvers see where a grant's access is too: carol's break-glass
/// activation of prod-db-admin, live at the demo's cluster, in bob's
/// Reviews details and on the Incidents screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_see_the_access_of_grants_they_review() {
    let demo = demo_with_postgres().await;
    let theme = hoist::ui::theme::Theme::default();
    let mut bob = app(&demo, "bob").await;
    key(&mut bob, KeyCode::Char('4'));
    assert!(bob.wait_until(WAIT, |s| !s.break_glass.is_empty()).await);
    while !matches!(
        bob.state.selected_review(),
        Some((hoist::app::state::ReviewRow::BreakGlass(_), _))
    ) {
        key(&mut bob, KeyCode::Down);
    }
    assert!(
        bob.wait_until(TARGET_WAIT, |s| {
            s.reviewed_grants.values().any(|g| {
                g.access
                    .as_ref()
                    .is_some_and(|a| a.state == AccessState::Live)
            })
        })
        .await
    );
    let drawn = render(&bob.state, &theme, 160, 48);
    assert_eq!(colour(&drawn, "live at demo-db"), Some(theme.ok));

    key(&mut bob, KeyCode::Char('6'));
    assert!(bob.wait_until(WAIT, |s| s.incident.is_some()).await);
    let text = screen(&bob.state, 160, 48);
    assert!(
        text.contains("Access") && text.contains("live at demo-db"),
        "{text}"
    );
    let narrow = screen(&bob.state, 80, 24);
    let row = narrow.lines().find(|l| l.contains("carol")).unwrap();
    assert!(
        row.trim_end_matches('│').trim_end().ends_with("live"),
        "{narrow}"
    );
    demo.stop().await;
}

/// A webhook receiver that holds every provision until the test releases
/// it, so the access is provisioning for as long as the test looks.
async fn holding_receiver(released: tokio::sync::watch::Receiver<bool>) -> u16 {
    use axum::Json;
    use axum::body::Bytes;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let mut released = released.clone();
            async move {
                let call: serde_json::Value = serde_json::from_slice(&body).unwrap();
                match call["action"].as_str() {
                    Some("provision") => {
                        released.wait_for(|r| *r).await.unwrap();
                        Json(serde_json::json!({ "status": "ok" }))
                    }
                    Some("inspect") => Json(serde_json::json!({ "present": true })),
                    _ => Json(serde_json::json!({ "status": "ok" })),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// Provisioning, for as long as the target takes: shown as such (never as
/// usable), the countdown running, and `s` saying so instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_shown_until_the_target_confirms() {
    let (release, released) = tokio::sync::watch::channel(false);
    let port = holding_receiver(released).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let policy = format!(
        "{}\n[[targets]]\nname = \"hook\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\ntimeout = \"10m\"\n{}",
        hoistd::testing::policy_text(""),
        dir.path().join("secret").display(),
        hoistd::testing::target_role("k8s-admin", "hook", "cluster = \"prod\"")
    );
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy)
        .start()
        .await;
    let client = hoist::backend::connect(&broker.url(), "t-alice").unwrap();
    let mut alice = hoist::tui::App::start(client.clone(), hoist::tui::Options::default());
    assert!(alice.wait_until(WAIT, |s| s.loaded).await);
    key(&mut alice, KeyCode::Char('3'));
    let filed = client
        .file(
            &ask("k8s-admin", "Drain np-3 after the CVE patch", None),
            "k1",
        )
        .await
        .unwrap();
    broker.as_user("bob").approve(&filed.id).await.unwrap();
    assert!(
        alice
            .wait_until(WAIT, |s| s
                .grant_for("k8s-admin")
                .and_then(|g| g.access.as_ref())
                .is_some_and(|a| a.state == AccessState::Provisioning))
            .await
    );
    let start = alice.state.grant_for("k8s-admin").unwrap().starts_at;
    freeze(&mut alice, start + TimeDelta::milliseconds(30_500));
    for (width, height) in [(80, 24), (160, 48)] {
        let text = screen(&alice.state, width, height);
        settings().bind(|| {
            insta::assert_snapshot!(format!("access_provisioning_{width}x{height}"), text)
        });
    }
    let theme = hoist::ui::theme::Theme::default();
    let drawn = render(&alice.state, &theme, 160, 48);
    assert_eq!(colour(&drawn, "provisioning… at hook"), Some(theme.warn));
    key(&mut alice, KeyCode::Char('s'));
    assert!(alice.state.modal.is_none());
    assert!(
        alice
            .state
            .banner
            .as_ref()
            .is_some_and(|b| b.text.contains("still being provisioned at hook")),
        "{:?}",
        alice.state.banner
    );

    release.send(true).unwrap();
    assert!(
        alice
            .wait_until(TARGET_WAIT, |s| s
                .grant_for("k8s-admin")
                .and_then(|g| g.access.as_ref())
                .is_some_and(|a| a.state == AccessState::Live))
            .await
    );
    drop(broker);
}

/// An ssh grant's details say whom its certificates log in as and their
/// validity, which is the grant's own window.
#[test]
fn an_ssh_grant_shows_its_certificate_principals_and_validity() {
    use hoist_api::{ApprovalRule, Grant, GrantState, Role, RoleTarget, TargetAccess, TicketRule};
    let now = chrono::Utc::now();
    let mut state = hoist::app::State::new("http://127.0.0.1:1".into(), now);
    state.roles = vec![Role {
        id: "prod-shell".into(),
        name: "Production shell".into(),
        description: String::new(),
        scope: "ssh://prod".into(),
        default_duration_secs: 1800,
        max_duration_secs: 3600,
        approval: ApprovalRule {
            approvals: 1,
            approver_groups: vec!["sre-leads".into()],
            approvers: vec!["bob".into()],
        },
        break_glass: false,
        ticket: TicketRule {
            required: false,
            pattern: None,
        },
        min_justification: 0,
        tier: None,
        target: Some(RoleTarget {
            name: "prod-hosts".into(),
            kind: "ssh".into(),
            principals: vec!["oncall".into(), "deploy".into()],
        }),
    }];
    state.grants = vec![Grant {
        id: "gr_1".into(),
        request_id: "req_1".into(),
        role: "prod-shell".into(),
        role_name: "Production shell".into(),
        holder: "alice".into(),
        starts_at: now,
        expires_at: now + TimeDelta::minutes(30),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
        break_glass: false,
        ticket: None,
        incident: None,
        justification: "disk full on web-3".into(),
        access: Some(TargetAccess {
            target: "prod-hosts".into(),
            kind: "ssh".into(),
            state: AccessState::Live,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
            updated_at: now,
            live_until: None,
        }),
    }];
    state.screen = hoist::app::state::Screen::Grants;
    let text = screen(&state, 160, 48);
    assert!(text.contains("live at prod-hosts (ssh)"), "{text}");
    assert!(text.contains("Certificate"), "{text}");
    assert!(text.contains("as oncall, deploy · valid"), "{text}");
}
