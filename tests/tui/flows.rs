//! The whole story driven by keys against a real broker: file a request, see
//! another identity approve it, watch the countdown, revoke it; an approver
//! finds their queue and decides; the broker goes away and comes back.
//!
//! Long because each test is one whole story, told in keys; the helpers are
//! in `helpers.rs`.

use crossterm::event::KeyCode;
use hoist::app::state::{Connection, Modal};
use hoist_api::{GrantState, RequestState};

use crate::helpers::*;

#[tokio::test]
async fn file_get_approved_watch_the_countdown_and_revoke() {
    let demo = demo().await;
    let mut alice = app(&demo, "alice").await;
    let mut bob = app(&demo, "bob").await;

    // "I need prod-db-admin": filter, enter, justify, ticket, send.
    key(&mut alice, KeyCode::Char('/'));
    keys(&mut alice, "pdb");
    key(&mut alice, KeyCode::Enter);
    assert_eq!(alice.state.form.as_ref().unwrap().role.id, "prod-db-admin");
    keys(&mut alice, "Vacuum the bloated orders table");
    key(&mut alice, KeyCode::Tab);
    keys(&mut alice, "CHG-1024");
    ctrl(&mut alice, 's');
    assert!(
        alice
            .wait_until(WAIT, |s| s.form.is_none()
                && s.open_request_for("prod-db-admin").is_some())
            .await
    );
    assert!(screen(&alice.state, 80, 24).contains("◌ pending"));

    // bob sees it arrive in his queue live, and approves in two keys.
    key(&mut bob, KeyCode::Char('4'));
    assert!(
        bob.wait_until(WAIT, |s| s.queue.iter().any(|r| r.requester == "alice"))
            .await
    );
    let position = bob
        .state
        .queue
        .iter()
        .position(|r| r.requester == "alice")
        .unwrap();
    for _ in 0..position {
        key(&mut bob, KeyCode::Down);
    }
    assert_eq!(bob.state.selected_review().unwrap().1.role, "prod-db-admin");
    key(&mut bob, KeyCode::Char('a'));
    key(&mut bob, KeyCode::Enter);
    assert!(
        bob.wait_until(WAIT, |s| !s.queue.iter().any(|r| r.requester == "alice"))
            .await
    );

    // alice is told, and the countdown runs.
    assert!(
        alice
            .wait_until(WAIT, |s| s.grant_for("prod-db-admin").is_some())
            .await
    );
    let banner = alice.state.banner.clone().expect("an approval notice");
    assert!(banner.text.contains("approved by bob"), "{}", banner.text);
    assert!(
        alice
            .effects
            .iter()
            .any(|e| matches!(e, hoist::app::Command::Notify(_))),
        "the bell rings"
    );
    key(&mut alice, KeyCode::Char('3'));
    let drawn = screen(&alice.state, 80, 24);
    assert!(
        drawn.contains("prod-db-admin") && (drawn.contains("30:00") || drawn.contains("29:5")),
        "{drawn}"
    );

    // Revoke early, with confirmation.
    key(&mut alice, KeyCode::Char('x'));
    assert!(screen(&alice.state, 80, 24).contains("Revoke prod-db-admin now?"));
    key(&mut alice, KeyCode::Char('y'));
    assert!(alice.wait_until(WAIT, |s| s.grants.is_empty()).await);
    let request = alice
        .state
        .requests
        .iter()
        .find(|r| r.role == "prod-db-admin")
        .unwrap()
        .clone();
    assert!(
        alice
            .wait_until(WAIT, |s| s
                .requests
                .iter()
                .any(|r| r.id == request.id && r.state == RequestState::Revoked))
            .await
    );
    let grants = demo
        .client("alice")
        .await
        .unwrap()
        .grants(true)
        .await
        .unwrap();
    assert_eq!(
        grants
            .iter()
            .find(|g| g.role == "prod-db-admin")
            .unwrap()
            .state,
        GrantState::Revoked
    );
    demo.stop().await;
}

#[tokio::test]
async fn an_approver_denies_with_a_reason_and_never_sees_their_own_requests() {
    let demo = demo().await;
    let mut bob = app(&demo, "bob").await;
    key(&mut bob, KeyCode::Char('4'));
    let before = bob.state.queue.len();
    assert!(before >= 2);
    assert!(bob.state.queue.iter().all(|r| r.requester != "bob"));
    let target = bob.state.selected_review().unwrap().1.id.clone();

    key(&mut bob, KeyCode::Char('m'));
    assert!(
        bob.wait_until(WAIT, |s| s.queue.iter().any(
            |r| r.id == target && r.claim.as_ref().is_some_and(|c| c.by == "bob")
        ))
        .await
    );

    key(&mut bob, KeyCode::Char('d'));
    key(&mut bob, KeyCode::Enter);
    assert!(
        screen(&bob.state, 80, 24).contains("a reason is required"),
        "an empty denial is refused"
    );
    keys(&mut bob, "Not during the freeze");
    key(&mut bob, KeyCode::Enter);
    assert!(bob.wait_until(WAIT, |s| s.queue.len() == before - 1).await);
    let decided = demo
        .client("bob")
        .await
        .unwrap()
        .request(&target)
        .await
        .unwrap();
    assert_eq!(decided.state, RequestState::Denied);
    assert_eq!(decided.reason.as_deref(), Some("Not during the freeze"));

    // bob files his own request: it never appears in his queue.
    key(&mut bob, KeyCode::Char('1'));
    key(&mut bob, KeyCode::Char('/'));
    keys(&mut bob, "stk8s");
    key(&mut bob, KeyCode::Enter);
    keys(&mut bob, "Load test the ingress");
    ctrl(&mut bob, 's');
    assert!(
        bob.wait_until(WAIT, |s| s.open_request_for("staging-k8s-admin").is_some())
            .await
    );
    assert!(bob.state.queue.iter().all(|r| r.requester != "bob"));
    demo.stop().await;
}

/// A paste is text, never keys: a reason pasted with line breaks stays in
/// the prompt (the breaks as spaces) instead of sending it and letting the
/// rest act as keys (`k` moving to another request, `a` approving it); on
/// a screen, where nothing is typed, a paste does nothing.
#[tokio::test]
async fn a_pasted_reason_with_line_breaks_stays_text() {
    let demo = demo().await;
    let mut bob = app(&demo, "bob").await;
    key(&mut bob, KeyCode::Char('4'));
    let before = bob.state.queue.len();
    assert!(before >= 2);
    key(&mut bob, KeyCode::Char('j'));
    let target = bob.state.selected_review().unwrap().1.id.clone();
    let client = demo.client("bob").await.unwrap();
    let mut others = Vec::new();
    for request in bob.state.queue.iter().filter(|r| r.id != target) {
        let state = client.request(&request.id).await.unwrap().state;
        others.push((request.id.clone(), state));
    }

    bob.paste("a\nq");
    assert!(bob.state.modal.is_none(), "{:?}", bob.state.modal);
    assert!(!bob.state.should_quit);

    key(&mut bob, KeyCode::Char('d'));
    bob.paste("No ticket.\r\nAsk again with CHG number\n");
    match &bob.state.modal {
        Some(Modal::Input { text, .. }) => {
            assert_eq!(text, "No ticket. Ask again with CHG number ")
        }
        other => panic!("the prompt closed: {other:?}"),
    }
    assert_eq!(bob.state.queue.len(), before, "nothing was decided");
    key(&mut bob, KeyCode::Enter);
    assert!(bob.wait_until(WAIT, |s| s.queue.len() == before - 1).await);
    let decided = client.request(&target).await.unwrap();
    assert_eq!(decided.state, RequestState::Denied);
    assert!(
        decided
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("No ticket. Ask again with CHG number")),
        "{:?}",
        decided.reason
    );
    for (id, state) in others {
        assert_eq!(client.request(&id).await.unwrap().state, state, "{id}");
    }

    // In the request form, a pasted justification keeps its line breaks.
    key(&mut bob, KeyCode::Char('1'));
    key(&mut bob, KeyCode::Char('/'));
    keys(&mut bob, "stk8s");
    key(&mut bob, KeyCode::Enter);
    bob.paste("Load test\nthe ingress");
    let form = bob.state.form.as_ref().expect("the form is open");
    assert_eq!(form.justification, "Load test\nthe ingress");
    demo.stop().await;
}

#[tokio::test]
async fn the_form_checks_rules_before_sending_and_a_refusal_says_why() {
    let demo = demo().await;
    let mut alice = app(&demo, "alice").await;
    key(&mut alice, KeyCode::Char('/'));
    keys(&mut alice, "pdb");
    key(&mut alice, KeyCode::Enter);
    keys(&mut alice, "too short");
    ctrl(&mut alice, 's');
    let form = alice.state.form.as_ref().unwrap();
    assert!(!form.submitting, "nothing is sent while a rule is broken");
    assert!(
        form.problems()
            .justification
            .unwrap()
            .contains("at least 20")
    );
    assert_eq!(form.problems().ticket.as_deref(), Some("required"));
    let drawn = screen(&alice.state, 80, 24);
    assert!(drawn.contains("✗ required"), "{drawn}");
    key(&mut alice, KeyCode::Esc);

    // A role already held: the form is not offered again.
    key(&mut alice, KeyCode::Char('/'));
    keys(&mut alice, "logs");
    key(&mut alice, KeyCode::Enter);
    keys(&mut alice, "Trace checkout");
    ctrl(&mut alice, 's');
    // The grant's live event can come before the answer that closes the form.
    assert!(
        alice
            .wait_until(WAIT, |s| s.grant_for("prod-logs-read").is_some()
                && s.form.is_none())
            .await
    );
    key(&mut alice, KeyCode::Char('/'));
    keys(&mut alice, "logs");
    key(&mut alice, KeyCode::Enter);
    assert!(
        alice.state.form.is_none(),
        "a held role offers to extend instead of a second request"
    );
    assert!(
        alice
            .state
            .banner
            .as_ref()
            .unwrap()
            .text
            .contains("e extends it")
    );
    demo.stop().await;
}

#[tokio::test]
async fn offline_shows_a_banner_keeps_counting_and_resynchronises() {
    let mut broker = demo_policy().start().await;
    let url = broker.url();
    let client = hoist::backend::connect(&url, "demo-alice").unwrap();
    client
        .file(
            &hoist_api::CreateRequest {
                role: "prod-logs-read".into(),
                justification: "Trace checkout".into(),
                ticket: None,
                incident: None,
                duration_secs: None,
                starts_at: None,
                break_glass: false,
            },
            "k",
        )
        .await
        .unwrap();
    let mut alice = hoist::tui::App::start(client.clone(), hoist::tui::Options::default());
    assert!(
        alice
            .wait_until(WAIT, |s| s.connection == Connection::Live
                && s.grants.len() == 1)
            .await
    );

    broker.stop().await;
    assert!(
        alice
            .wait_until(WAIT, |s| matches!(s.connection, Connection::Offline { .. }))
            .await
    );
    let first = screen(&alice.state, 80, 24);
    assert!(first.contains("Offline for"), "{first}");
    assert!(first.lines().next().unwrap().contains('○'), "{first}");
    // Countdowns go on from the last known times.
    let left = alice.state.time_left(&alice.state.grants[0]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    alice.tick();
    assert!(alice.state.time_left(&alice.state.grants[0]) < left);

    // Meanwhile, the grant is revoked by someone else; on reconnect we learn it.
    broker.restart().await;
    let grant_id = alice.state.grants[0].id.clone();
    client.revoke(&grant_id, Some("done".into())).await.unwrap();
    assert!(
        alice
            .wait_until(std::time::Duration::from_secs(20), |s| s.connection
                == Connection::Live
                && s.grants.is_empty())
            .await
    );
    broker.stop().await;
}

#[tokio::test]
async fn started_with_the_broker_down_it_says_why_then_loads_when_it_comes_back() {
    let mut broker = demo_policy().prepare().await;
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    let mut alice = hoist::tui::App::start(client, hoist::tui::Options::default());

    // The first load waits for the event stream; when that fails, it still
    // runs, so the screen says what is wrong instead of "loading…".
    assert!(alice.wait_until(WAIT, |s| s.loaded).await);
    let banner = alice.state.banner.as_ref().map(|b| b.text.clone());
    assert!(
        banner.as_deref().is_some_and(|b| b.contains("(loading)")),
        "{banner:?}"
    );
    assert!(alice.state.roles.is_empty());

    broker.restart().await;
    assert!(
        alice
            .wait_until(std::time::Duration::from_secs(20), |s| s.connection
                == Connection::Live
                && !s.roles.is_empty())
            .await
    );
    broker.stop().await;
}

#[tokio::test]
async fn mouse_clicks_pick_tabs_and_rows_and_favourites_are_saved() {
    use std::sync::{Arc, Mutex};
    let demo = demo().await;
    let client = demo.client("alice").await.unwrap();
    let saved: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let sink = Arc::clone(&saved);
    let options = hoist::tui::Options {
        save_favourites: Some(Arc::new(move |favourites| {
            sink.lock().unwrap().push(favourites);
            Ok(())
        })),
        ..hoist::tui::Options::default()
    };
    let mut alice = hoist::tui::App::start(client, options);
    assert!(alice.wait_until(WAIT, |s| s.loaded).await);
    alice.dispatch(hoist::app::Action::Resize(80, 24));

    // Row 3 of the screen is the second role (header, border, first role).
    alice.click(10, 3);
    assert_eq!(alice.state.cursors.roles, 1);
    let role = alice.state.selected_role().unwrap().id.clone();
    key(&mut alice, KeyCode::Char('f'));
    assert_eq!(
        alice.state.selected_role().unwrap().id,
        role,
        "the selection follows the role to the top"
    );
    assert_eq!(
        alice.state.visible_roles[0],
        alice.state.roles.iter().position(|r| r.id == role).unwrap()
    );
    assert!(
        alice
            .wait_until(WAIT, |_| !saved.lock().unwrap().is_empty())
            .await
    );
    assert_eq!(saved.lock().unwrap().last().unwrap(), &vec![role]);

    // A click on the "3 Grants" tab goes there; the wheel moves the cursor.
    let header = screen(&alice.state, 80, 24)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let column = header.find("3 Grants").unwrap() as u16;
    alice.click(column, 0);
    assert_eq!(alice.state.screen, hoist::app::Screen::Grants);
    key(&mut alice, KeyCode::Char('1'));
    alice.dispatch(hoist::app::Action::ScrollDown);
    assert_eq!(alice.state.cursors.roles, 1);
    demo.stop().await;
}

/// Incident mode: three roles with different rules filed as one bundle,
/// each resolving on its own; then everything of mine under the incident
/// revoked with one key, and nothing else.
#[tokio::test]
async fn a_bundle_resolves_role_by_role_and_revoke_all_ends_only_the_incident() {
    let demo = demo().await;
    let mut alice = app(&demo, "alice").await;
    let bob = demo.client("bob").await.unwrap();
    let dave = demo.client("dave").await.unwrap();
    // Something outside the incident, which must survive.
    let outside = demo.client("alice").await.unwrap();
    let body = |role: &str| hoist_api::CreateRequest {
        role: role.into(),
        justification: "Unrelated staging work".into(),
        ticket: None,
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    };
    outside
        .file(&body("staging-db-admin"), "outside")
        .await
        .unwrap();

    // Mark three roles: one auto-approved, one needing one approval, one needing two.
    for role in ["prod-logs-read", "prod-db-admin", "prod-k8s-admin"] {
        key(&mut alice, KeyCode::Char('/'));
        keys(&mut alice, role);
        key(&mut alice, KeyCode::Esc);
        let at = alice
            .state
            .visible_roles
            .iter()
            .position(|i| alice.state.roles[*i].id == role)
            .unwrap();
        alice.state.cursors.roles = at;
        key(&mut alice, KeyCode::Char(' '));
    }
    assert_eq!(alice.state.marked.len(), 3);
    key(&mut alice, KeyCode::Enter);
    let form = alice.state.form.as_ref().expect("one form for the bundle");
    assert_eq!(form.roles().count(), 3);
    keys(&mut alice, "Primary database is refusing connections");
    key(&mut alice, KeyCode::Tab);
    keys(&mut alice, "CHG-7");
    key(&mut alice, KeyCode::Tab);
    keys(&mut alice, "INC-900");
    ctrl(&mut alice, 's');
    assert!(
        alice
            .wait_until(WAIT, |s| {
                s.grant_for("prod-logs-read").is_some()
                    && s.open_request_for("prod-db-admin").is_some()
                    && s.open_request_for("prod-k8s-admin").is_some()
            })
            .await,
        "the auto-approved role is active at once, the others wait"
    );
    assert!(alice.state.marked.is_empty());
    let pending: Vec<_> = alice
        .state
        .requests
        .iter()
        .filter(|r| r.state == RequestState::Pending)
        .cloned()
        .collect();
    assert!(
        pending
            .iter()
            .all(|r| r.incident.as_deref() == Some("INC-900"))
    );
    let db = pending
        .iter()
        .find(|r| r.role == "prod-db-admin")
        .unwrap()
        .id
        .clone();
    let k8s = pending
        .iter()
        .find(|r| r.role == "prod-k8s-admin")
        .unwrap()
        .id
        .clone();

    bob.review(&db, hoist_api::Decision::Approve, None)
        .await
        .unwrap();
    bob.review(&k8s, hoist_api::Decision::Approve, None)
        .await
        .unwrap();
    assert!(
        alice
            .wait_until(WAIT, |s| s.grant_for("prod-db-admin").is_some())
            .await
    );
    assert!(
        alice.state.grant_for("prod-k8s-admin").is_none(),
        "one of two approvals is not enough"
    );
    dave.review(&k8s, hoist_api::Decision::Approve, None)
        .await
        .unwrap();
    assert!(
        alice
            .wait_until(WAIT, |s| s.grant_for("prod-k8s-admin").is_some())
            .await
    );

    // The Incidents screen groups them; one key revokes all of mine under INC-900.
    key(&mut alice, KeyCode::Char('6'));
    assert_eq!(alice.state.selected_incident().as_deref(), Some("INC-900"));
    assert!(
        alice
            .wait_until(WAIT, |s| s
                .incident
                .as_ref()
                .is_some_and(|v| v.grants.len() == 3))
            .await
    );
    let drawn = screen(&alice.state, 100, 30);
    assert!(drawn.contains("INC-900: 3 requests"), "{drawn}");
    key(&mut alice, KeyCode::Char('X'));
    assert!(screen(&alice.state, 100, 30).contains("Revoke all 3 of your grants under INC-900"));
    key(&mut alice, KeyCode::Char('y'));
    assert!(alice.wait_until(WAIT, |s| s.grants.len() == 1).await);
    assert_eq!(
        alice.state.grants[0].role, "staging-db-admin",
        "nothing outside the incident is touched"
    );
    let all = outside.grants(true).await.unwrap();
    for grant in all
        .iter()
        .filter(|g| g.incident.as_deref() == Some("INC-900"))
    {
        assert_eq!(
            grant.state,
            hoist_api::GrantState::Revoked,
            "{}",
            grant.role
        );
    }
    demo.stop().await;
}

/// alice's TUI on `client`, once it shows the grant of prod-logs-read she
/// just asked for (approved by the policy).
async fn holding_logs(
    client: &std::sync::Arc<dyn hoist::backend::Backend>,
) -> (hoist::tui::App, String) {
    let body = hoist_api::CreateRequest {
        role: "prod-logs-read".into(),
        justification: "Trace checkout".into(),
        ticket: None,
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    };
    client.file(&body, "k").await.unwrap();
    let mut alice = hoist::tui::App::start(client.clone(), hoist::tui::Options::default());
    assert!(alice.wait_until(WAIT, |s| s.grants.len() == 1).await);
    let grant_id = alice.state.grants[0].id.clone();
    (alice, grant_id)
}

/// Revokes the grant on screen 3 (`x`, `y`): shown as being revoked.
async fn revoke_shown_grant(alice: &mut hoist::tui::App, grant_id: &str) {
    key(alice, KeyCode::Char('3'));
    key(alice, KeyCode::Char('x'));
    key(alice, KeyCode::Char('y'));
    assert!(
        alice
            .wait_until(WAIT, |s| s.revoking.contains(grant_id))
            .await
    );
}

/// Waits until alice's revoke is confirmed and off the screen, and checks
/// the broker says so.
async fn until_revoked(
    alice: &mut hoist::tui::App,
    client: &std::sync::Arc<dyn hoist::backend::Backend>,
) {
    assert!(
        alice
            .wait_until(std::time::Duration::from_secs(20), |s| s.grants.is_empty()
                && s.revoking.is_empty())
            .await
    );
    let grants = client.grants(true).await.unwrap();
    assert_eq!(grants[0].state, hoist_api::GrantState::Revoked);
}

#[tokio::test]
async fn a_revoke_while_the_broker_is_down_completes_when_it_returns() {
    let mut broker = demo_policy().start().await;
    let url = broker.url();
    let client = hoist::backend::connect(&url, "demo-alice").unwrap();
    let (mut alice, grant_id) = holding_logs(&client).await;

    broker.stop().await;
    revoke_shown_grant(&mut alice, &grant_id).await;
    let drawn = screen(&alice.state, 80, 24);
    assert!(
        drawn.contains("revoking…"),
        "shown as pending, never as done: {drawn}"
    );
    assert_eq!(alice.state.grants.len(), 1);

    broker.restart().await;
    until_revoked(&mut alice, &client).await;
    broker.stop().await;
}

/// A revoke answered 401 (the session ran out, say while the laptop slept)
/// stays pending and is sent again, not dropped: once the session is
/// renewed or signed in again elsewhere, the grant is revoked.
#[tokio::test]
async fn a_revoke_refused_for_a_session_that_ended_completes_once_it_is_renewed() {
    let broker = demo_policy().start().await;
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    let (mut alice, grant_id) = holding_logs(&client).await;

    // The token the TUI holds is no longer taken.
    client.set_token("demo-session-that-ended");
    revoke_shown_grant(&mut alice, &grant_id).await;
    // Tried again (500 ms, then 1 s), still shown as pending.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    alice.wait_until(WAIT, |_| true).await;
    assert!(alice.state.revoking.contains(&grant_id), "not dropped");
    assert!(
        screen(&alice.state, 80, 24).contains("revoking…"),
        "shown as pending, never as done"
    );

    // Renewed: the next try goes through.
    client.set_token("demo-alice");
    until_revoked(&mut alice, &client).await;
}

/// A revoke the broker refuses for good (here carol's token, which may not
/// revoke alice's grant) is not retried, and not forgotten: the row says
/// the revoke was refused for as long as the grant is active, and so does
/// what hoist says on exit. Revoking it again, allowed, clears the mark.
#[tokio::test]
async fn a_revoke_refused_for_good_is_shown_until_it_is_revoked() {
    let broker = demo_policy().start().await;
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    let (mut alice, grant_id) = holding_logs(&client).await;

    client.set_token("demo-carol");
    revoke_shown_grant(&mut alice, &grant_id).await;
    assert!(
        alice
            .wait_until(WAIT, |s| s.revoking.is_empty()
                && s.revoke_refused.contains_key(&grant_id))
            .await
    );
    // Alice again (what hoist loaded meanwhile was carol's), loaded anew.
    client.set_token("demo-alice");
    key(&mut alice, KeyCode::Char('R'));
    assert!(alice.wait_until(WAIT, |s| s.grants.len() == 1).await);
    // The banner's few seconds pass; the row still says it.
    alice
        .wait_until(WAIT, |s| {
            s.banner
                .as_ref()
                .is_none_or(|b| !b.text.contains("NOT revoked"))
        })
        .await;
    let drawn = screen(&alice.state, 80, 24);
    assert!(drawn.contains("prod-logs-read         refused"), "{drawn}");
    let exit = hoist::tui::unconfirmed(&alice.state);
    assert!(
        exit.len() == 1 && exit[0].contains("refused to revoke prod-logs-read"),
        "{exit:?}"
    );
    let grants = client.grants(true).await.unwrap();
    assert_eq!(grants[0].state, hoist_api::GrantState::Active);

    // Another profile shown meanwhile: still said on exit, and marked
    // again once this profile is back.
    let elsewhere = hoist::backend::connect(&broker.url(), "demo-bob").unwrap();
    alice.switched((
        "elsewhere".into(),
        Ok(hoist::tui::profiles::Opened {
            backend: elsewhere,
            options: hoist::tui::Options {
                profile: Some("elsewhere".into()),
                ..hoist::tui::Options::default()
            },
        }),
    ));
    assert!(alice.state.revoke_refused.is_empty());
    assert_eq!(alice.left_undone(), exit);
    alice.switched((
        "default".into(),
        Ok(hoist::tui::profiles::Opened {
            backend: client.clone(),
            options: hoist::tui::Options::default(),
        }),
    ));
    assert!(alice.wait_until(WAIT, |s| s.grants.len() == 1).await);
    assert_eq!(alice.left_undone(), exit);
    key(&mut alice, KeyCode::Char('3'));
    let drawn = screen(&alice.state, 80, 24);
    assert!(drawn.contains("prod-logs-read         refused"), "{drawn}");

    revoke_shown_grant(&mut alice, &grant_id).await;
    until_revoked(&mut alice, &client).await;
    assert!(alice.state.refused_revocations().is_empty());
    assert!(alice.left_undone().is_empty());
}

/// A responder who revoked while the broker was down and then presses q is
/// told the grant is still active and asked; if the broker confirms while
/// they read, hoist leaves as asked. What stays unconfirmed is said again
/// on the terminal after hoist is gone.
#[tokio::test]
async fn quitting_with_a_revoke_unconfirmed_asks_and_leaves_once_it_is_confirmed() {
    let mut broker = demo_policy().start().await;
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    let (mut alice, grant_id) = holding_logs(&client).await;

    broker.stop().await;
    revoke_shown_grant(&mut alice, &grant_id).await;

    key(&mut alice, KeyCode::Char('q'));
    assert!(!alice.state.should_quit, "no silent quit");
    let drawn = screen(&alice.state, 80, 24);
    assert!(
        drawn.contains("has not confirmed these revocations"),
        "{drawn}"
    );
    assert!(drawn.contains("prod-logs-read"), "{drawn}");
    assert!(drawn.contains("y quit anyway"), "{drawn}");
    let left = hoist::tui::unconfirmed(&alice.state);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].contains(&format!("`hoist revoke {grant_id}`"))
            && left[0].contains("prod-logs-read"),
        "{left:?}"
    );

    broker.restart().await;
    assert!(
        alice
            .wait_until(std::time::Duration::from_secs(20), |s| s.should_quit)
            .await,
        "leaves once the broker confirms"
    );
    assert!(hoist::tui::unconfirmed(&alice.state).is_empty());
    let grants = client.grants(true).await.unwrap();
    assert_eq!(grants[0].state, hoist_api::GrantState::Revoked);
    broker.stop().await;
}

/// The renewal task against a broker whose token for alice changes: a
/// renewal that works, one that fails (the banner says so and everything
/// stays on screen), and one that works again (the banner clears and the
/// new token is the one used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_renewed_and_a_failed_renewal_is_shown_until_it_works_again() {
    use hoist::auth::secrets::Session;
    use hoist::backend::BackendError;
    use sha2::{Digest, Sha256};
    use std::sync::Arc;

    let broker = demo_policy().start().await;
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    // Each renewal answers what the test sends next.
    let (answers, queue) = tokio::sync::mpsc::unbounded_channel::<Result<Session, String>>();
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let renew: hoist::tui::Renew = Arc::new(move || {
        let queue = Arc::clone(&queue);
        Box::pin(async move {
            let next = queue.lock().await.recv().await;
            next.unwrap_or_else(|| Err("no more answers".into()))
        })
    });
    let options = hoist::tui::Options {
        renew: Some(renew),
        hoist: Some("hoist --profile work".into()),
        ..hoist::tui::Options::default()
    };
    let mut alice = hoist::tui::App::start(client.clone(), options);
    assert!(alice.wait_until(WAIT, |s| s.loaded && s.me.is_some()).await);
    let session = |token: &str, for_secs: i64| Session {
        expires_at: Some(chrono::Utc::now() + chrono::TimeDelta::seconds(for_secs)),
        ..Session::with_token(token)
    };

    // Renewed, but ending within the minute: due again at once, and the
    // provider is away.
    answers.send(Ok(session("demo-alice", 30))).unwrap();
    answers
        .send(Err("the identity provider is unreachable".into()))
        .unwrap();
    assert!(
        alice
            .wait_until(WAIT, |s| s
                .banner
                .as_ref()
                .is_some_and(|b| b.text.contains("Session ended")))
            .await
    );
    let drawn = screen(&alice.state, 120, 30);
    assert!(
        drawn.contains("Session ended (the identity provider is unreachable)"),
        "{drawn}"
    );
    assert!(
        drawn.contains("run `hoist --profile work login` in another terminal"),
        "{drawn}"
    );
    assert!(drawn.contains("prod-db-admin"), "the work stays: {drawn}");

    // Signed in again elsewhere: the broker now knows alice by a new token
    // only, and the old one is refused.
    let policy = std::fs::read_to_string(broker.policy_path()).unwrap();
    let hash = |token: &str| format!("{:x}", Sha256::digest(token.as_bytes()));
    let policy = policy.replace(&hash("demo-alice"), &hash("demo-alice-2"));
    std::fs::write(broker.policy_path(), policy).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    assert!(matches!(
        client.me().await,
        Err(BackendError::Unauthenticated(_))
    ));

    // The renewal retries and picks the new session up.
    answers.send(Ok(session("demo-alice-2", 3600))).unwrap();
    assert!(
        alice
            .wait_until(std::time::Duration::from_secs(30), |s| s
                .banner
                .as_ref()
                .is_some_and(|b| b.text == "Signed in again"))
            .await
    );
    let banner = alice.state.banner.clone().unwrap();
    assert_eq!(banner.level, hoist::app::state::Level::Success);
    assert!(!screen(&alice.state, 120, 30).contains("Session ended"));
    // Every clone of the backend, the app's included, uses the new token.
    assert_eq!(client.me().await.unwrap().user, "alice");
    assert!(alice.wait_until(WAIT, |s| s.loaded).await);
}

/// Five minutes before a grant ends its holder hears the bell (the Notify
/// effect) once for that grant, however many ticks follow.
#[tokio::test]
async fn the_five_minute_warning_rings_once_per_grant() {
    let broker = demo_policy().start().await;
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    for (role, secs) in [("prod-logs-read", 240), ("staging-db-admin", 270)] {
        let body = hoist_api::CreateRequest {
            role: role.into(),
            justification: "Trace checkout".into(),
            ticket: None,
            incident: None,
            duration_secs: Some(secs),
            starts_at: None,
            break_glass: false,
        };
        client.file(&body, role).await.unwrap();
    }
    let mut alice = hoist::tui::App::start(client, hoist::tui::Options::default());
    assert!(alice.wait_until(WAIT, |s| s.grants.len() == 2).await);
    let start = alice.state.now;
    alice.dispatch(hoist::app::Action::Tick(start));
    let warning = alice.state.banner.clone().unwrap();
    assert_eq!(warning.level, hoist::app::state::Level::Warning);
    assert!(warning.text.contains("expires in"), "{}", warning.text);
    for second in 1..90 {
        alice.dispatch(hoist::app::Action::Tick(
            start + chrono::TimeDelta::seconds(second),
        ));
    }
    let rings = |role: &str| {
        alice
            .effects
            .iter()
            .filter(|e| {
                matches!(e, hoist::app::Command::Notify(text)
                    if text.contains(role) && text.contains("expires in"))
            })
            .count()
    };
    assert_eq!(rings("prod-logs-read"), 1);
    assert_eq!(rings("staging-db-admin"), 1);
}

/// A broker at its cap on event streams says so, and the TUI shows its
/// words as why it is offline, not just the status.
#[tokio::test]
async fn a_stream_refused_at_the_cap_says_the_brokers_reason() {
    let mut broker = demo_policy()
        .streams(hoistd::http::serve::StreamLimits {
            total: 16,
            per_identity: 1,
        })
        .start()
        .await;
    // alice's one stream, held open elsewhere (another terminal).
    let elsewhere = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    let held = elsewhere.events().await.unwrap();
    let client = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    let mut app = hoist::tui::App::start(client, hoist::tui::Options::default());
    assert!(
        app.wait_until(WAIT, |s| matches!(s.connection, Connection::Offline { .. }))
            .await
    );
    let Connection::Offline { reason, .. } = &app.state.connection else {
        unreachable!()
    };
    assert!(
        reason.contains("alice already has 1 event streams open"),
        "{reason}"
    );
    assert!(reason.starts_with("Too many requests"), "{reason}");
    drop(app);
    drop(held);
    broker.stop().await;
}

/// The Activity screen asks for the newest entries: once the log holds
/// more than one screen's load, it shows what just happened, not the
/// oldest entries for ever.
#[tokio::test]
async fn activity_loads_the_newest_entries() {
    let broker = demo_policy().start().await;
    let alice = hoist::backend::connect(&broker.url(), "demo-alice").unwrap();
    for n in 0..3 {
        let filed = alice
            .file(
                &hoist::demo::ask(
                    "prod-db-admin",
                    &format!("Vacuum the orders table, pass {n}"),
                    Some("CHG-1024"),
                ),
                &format!("k{n}"),
            )
            .await
            .unwrap();
        alice.cancel(&filed.id, None).await.unwrap();
    }
    let all = alice.audit(0, 10_000).await.unwrap();
    assert!(all.len() > 3, "{}", all.len());
    let newest = alice.latest_audit(2).await.unwrap();
    let seqs: Vec<i64> = newest.iter().map(|e| e.seq).collect();
    let last: Vec<i64> = all[all.len() - 2..].iter().map(|e| e.seq).collect();
    assert_eq!(seqs, last);
}
