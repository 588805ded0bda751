//! Every screen, at 80x24 and 160x48, with real data from a broker on loopback.

use chrono::TimeDelta;
use crossterm::event::KeyCode;
use hoist::app::state::Connection;
use hoist::app::{Screen, State};
use hoist::backend;
use hoist::demo::ask;

use crate::helpers::*;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn snap(name: &str, state: &State) {
    for (width, height) in SIZES {
        let text = screen(state, width, height);
        settings().bind(|| insta::assert_snapshot!(format!("{name}_{width}x{height}"), text));
    }
}

/// alice with one pending request and one active grant, on top of the demo history.
async fn busy_alice(demo: &hoist::demo::Demo) -> hoist::tui::App {
    let alice = backend::connect(&demo.url(), "demo-alice").unwrap();
    alice
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
    alice
        .file(
            &ask("prod-logs-read", "Trace checkout 502s again", None),
            "k2",
        )
        .await
        .unwrap();
    let mut app = app(demo, "alice").await;
    assert!(
        app.wait_until(WAIT, |s| s.grants.len() == 1 && s.requests.len() == 4)
            .await
    );
    let start = app.state.grants[0].starts_at;
    freeze(&mut app, start + TimeDelta::milliseconds(30_500));
    app
}

#[tokio::test]
async fn requester_screens() {
    let demo = demo().await;
    let mut app = busy_alice(&demo).await;
    let now = app.state.now;

    snap("roles", &app.state);

    key(&mut app, KeyCode::Char('/'));
    keys(&mut app, "prdb");
    snap("roles_filtered", &app.state);
    key(&mut app, KeyCode::Esc);

    key(&mut app, KeyCode::Char('/'));
    keys(&mut app, "k8s");
    key(&mut app, KeyCode::Enter);
    keys(&mut app, "fix");
    key(&mut app, KeyCode::Tab);
    keys(&mut app, "JIRA-9");
    snap("form_with_problems", &app.state);
    key(&mut app, KeyCode::Esc);

    key(&mut app, KeyCode::Char('2'));
    snap("requests", &app.state);

    key(&mut app, KeyCode::Char('3'));
    snap("grants", &app.state);
    // The demo's roles name no tier: given here, each grant shows its
    // role's tier as a badge, and the details say what it means.
    let tiered = with_tiers(&app.state);
    snap("grants_tiered", &tiered);
    key(&mut app, KeyCode::Char('x'));
    snap("confirm_revoke", &app.state);
    key(&mut app, KeyCode::Char('n'));

    key(&mut app, KeyCode::Char('5'));
    assert!(app.wait_until(WAIT, |s| !s.activity.is_empty()).await);
    freeze(&mut app, now);
    snap("activity", &app.state);

    // Over a screen without wall-clock times, which the overlay would cut
    // where the snapshot filter cannot see them.
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('?'));
    snap("help", &app.state);
    demo.stop().await;
}

#[tokio::test]
async fn approver_screens() {
    let demo = demo().await;
    let alice = backend::connect(&demo.url(), "demo-alice").unwrap();
    alice
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
    let mut bob = app(&demo, "bob").await;
    key(&mut bob, KeyCode::Char('4'));
    assert!(
        bob.wait_until(WAIT, |s| s.queue.len() == 3 && s.break_glass.len() == 1)
            .await
    );
    // The oldest pending request lapses first: it sits on top, its history loads.
    assert!(
        bob.wait_until(WAIT, |s| s
            .selected_review()
            .is_some_and(|(_, r)| s.histories.contains_key(&r.id)))
            .await
    );
    let oldest = bob.state.queue.iter().map(|r| r.created_at).min().unwrap();
    freeze(&mut bob, oldest + TimeDelta::milliseconds(30_500));
    snap("reviews", &bob.state);

    key(&mut bob, KeyCode::Char('d'));
    keys(&mut bob, "Not during the freeze");
    snap("deny_prompt", &bob.state);
    key(&mut bob, KeyCode::Esc);

    // bob approves carol's 2-of-2 request: it leaves "To decide" for
    // "Waiting for others", which names who else may approve. The demo's
    // roles name no tier, so tiers are given here to show their badges.
    key(&mut bob, KeyCode::Char('a'));
    key(&mut bob, KeyCode::Enter);
    // The review answered and the reload after it done: nothing in flight.
    assert!(
        bob.wait_until(WAIT, |s| s.to_decide() == 2
            && s.queue.len() == 3
            && s.busy.is_empty())
            .await
    );
    freeze(&mut bob, oldest + TimeDelta::milliseconds(30_500));
    let mut tiered = bob.state.clone();
    for request in tiered.queue.iter_mut().chain(&mut tiered.break_glass) {
        request.tier = Some(match request.role.as_str() {
            "prod-k8s-admin" => 0,
            "prod-db-admin" => 1,
            "staging-k8s-admin" => 2,
            _ => 3,
        });
    }
    snap("reviews_waiting", &tiered);

    // Break-glass rows are acknowledged, and the responder's form turns red.
    let mut carol = app(&demo, "carol").await;
    key(&mut carol, KeyCode::Char('/'));
    keys(&mut carol, "deploy");
    key(&mut carol, KeyCode::Enter);
    keys(&mut carol, "Roll back cart-svc now");
    ctrl(&mut carol, 'b');
    let now = carol.state.now;
    freeze(&mut carol, now);
    snap("form_break_glass", &carol.state);
    assert_eq!(carol.state.screen, Screen::Roles);
    demo.stop().await;
}

/// Colours that carry meaning: the countdown turns red near the end,
/// break-glass is red, and NO_COLOR means no colour at all.
#[tokio::test]
async fn colours_carry_meaning_and_no_color_removes_them() {
    use ratatui::style::Color;
    let demo = demo().await;
    let mut app = busy_alice(&demo).await;
    key(&mut app, KeyCode::Char('3'));
    let end = app.state.grants[0].expires_at;
    freeze(&mut app, end - TimeDelta::seconds(30));
    let theme = hoist::ui::theme::Theme::default();
    let terminal = render(&app.state, &theme, 80, 24);
    let buffer = terminal.backend().buffer();
    let row = (0..24)
        .find(|y| {
            (0..80)
                .map(|x| buffer[(x, *y)].symbol())
                .collect::<String>()
                .contains("00:30")
        })
        .unwrap();
    let x = (0..80).find(|x| buffer[(*x, row)].symbol() == "0").unwrap();
    assert_eq!(buffer[(x, row)].fg, Color::Red, "30 seconds left is red");

    let mono = hoist::ui::theme::Theme::from_config(&Default::default(), true).unwrap();
    for screen in [
        Screen::Roles,
        Screen::Requests,
        Screen::Grants,
        Screen::Reviews,
    ] {
        app.state.screen = screen;
        let terminal = render(&app.state, &mono, 80, 24);
        let buffer = terminal.backend().buffer();
        for cell in buffer.content() {
            assert_eq!(
                (cell.fg, cell.bg),
                (Color::Reset, Color::Reset),
                "{screen:?} has colour under NO_COLOR"
            );
        }
    }
    demo.stop().await;
}

/// A size narrower than any the screens were laid out for.
const NARROW: (u16, u16) = (60, 18);

fn snap_at(name: &str, state: &State, sizes: &[(u16, u16)]) {
    for (width, height) in sizes {
        let text = screen(state, *width, *height);
        settings().bind(|| insta::assert_snapshot!(format!("{name}_{width}x{height}"), text));
    }
}

/// An app on a broker with no history, signed in as `user`, loaded.
async fn fresh_app(url: &str, user: &str) -> hoist::tui::App {
    let client = backend::connect(url, &format!("demo-{user}")).unwrap();
    let mut app = hoist::tui::App::start(client, hoist::tui::Options::default());
    assert!(
        app.wait_until(WAIT, |s| s.loaded && s.me.is_some()).await,
        "app did not load"
    );
    app
}

fn incident_ask(role: &str, ticket: Option<&str>) -> hoist_api::CreateRequest {
    hoist_api::CreateRequest {
        incident: Some("INC-4711".into()),
        ..ask(role, "Primary refusing connections; failing over", ticket)
    }
}

/// Incident mode: two of alice's roles under one reference, one active
/// and one waiting, a third role of hers outside it; then the revocation
/// of everything under it waiting on a broker that is away, and the
/// question asked when she quits meanwhile.
#[tokio::test]
async fn incident_screens() {
    let mut broker = demo_policy().start().await;
    let alice = backend::connect(&broker.url(), "demo-alice").unwrap();
    for (key, body) in [
        ("k1", incident_ask("prod-logs-read", None)),
        ("k2", incident_ask("prod-db-admin", Some("CHG-1024"))),
        ("k3", ask("staging-db-admin", "Migration dry run", None)),
    ] {
        alice.file(&body, key).await.unwrap();
    }
    let mut app = fresh_app(&broker.url(), "alice").await;
    key(&mut app, KeyCode::Char('6'));
    assert!(
        app.wait_until(WAIT, |s| s.incident.as_ref().is_some_and(|v| v
            .requests
            .len()
            == 2
            && v.grants.len() == 1))
            .await
    );
    let start = app.state.grants.iter().map(|g| g.starts_at).max().unwrap();
    freeze(&mut app, start + TimeDelta::milliseconds(30_500));
    snap_at("incidents", &app.state, &[SIZES[0], SIZES[1], NARROW]);
    let mut one = app.state.clone();
    if let Some(view) = one.incident.as_mut() {
        view.requests.truncate(1);
    }
    let drawn = screen(&one, 160, 48);
    assert!(drawn.contains(": 1 request, 0 pending"), "{drawn}");

    broker.stop().await;
    key(&mut app, KeyCode::Char('X'));
    key(&mut app, KeyCode::Char('y'));
    assert!(
        app.wait_until(WAIT, |s| !s.revoking.is_empty()
            && matches!(s.connection, Connection::Offline { .. }))
            .await
    );
    let Connection::Offline { since, .. } = app.state.connection else {
        unreachable!()
    };
    freeze(&mut app, since + TimeDelta::milliseconds(30_500));
    snap("incidents_revoking", &app.state);
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.state.should_quit);
    snap("quit_while_revoking", &app.state);
}

/// Someone new to hoist: every screen with nothing on it yet.
#[tokio::test]
async fn empty_screens() {
    let broker = demo_policy().start().await;
    let mut app = fresh_app(&broker.url(), "alice").await;
    let now = app.state.now;
    for (screen, name) in [
        ('2', "empty_requests"),
        ('3', "empty_grants"),
        ('4', "empty_reviews"),
        ('6', "empty_incidents"),
    ] {
        key(&mut app, KeyCode::Char(screen));
        freeze(&mut app, now);
        snap(name, &app.state);
    }
    key(&mut app, KeyCode::Char('5'));
    assert!(app.wait_until(WAIT, |s| s.busy.is_empty()).await);
    freeze(&mut app, now);
    snap("empty_activity", &app.state);

    // A filter that matches nothing.
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('/'));
    keys(&mut app, "zzzz");
    snap("empty_roles_filtered", &app.state);
}

/// Every screen too narrow for its usual layout.
#[tokio::test]
async fn narrow_screens() {
    let demo = demo().await;
    let mut app = busy_alice(&demo).await;
    let now = app.state.now;
    for (screen, name) in [
        ('1', "narrow_roles"),
        ('2', "narrow_requests"),
        ('3', "narrow_grants"),
    ] {
        key(&mut app, KeyCode::Char(screen));
        snap_at(name, &app.state, &[NARROW]);
    }
    key(&mut app, KeyCode::Char('5'));
    assert!(app.wait_until(WAIT, |s| !s.activity.is_empty()).await);
    freeze(&mut app, now);
    snap_at("narrow_activity", &app.state, &[NARROW]);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('/'));
    keys(&mut app, "k8s");
    key(&mut app, KeyCode::Enter);
    keys(&mut app, "fix");
    snap_at("narrow_form", &app.state, &[NARROW]);
    // A justification longer than a line wraps, by words where it can and
    // inside a word too long for a line, and keeps its end, where typing
    // happens, in view.
    keys(
        &mut app,
        " the pods of checkout crash-looping since the 14:02 deploy; roll back and \
         read https://grafana.example/d/checkout-latency-and-errors-by-pod-and-node",
    );
    snap_at("narrow_form_long", &app.state, &[NARROW, SIZES[0]]);
    // Past the form's height, the start scrolls out; a problem too long to
    // sit beside its value goes on a line of its own.
    for line in [
        "Steps: scale the deployment to zero, then redeploy 4.2.1",
        "Rollback owner: alice; bob watches the error budget",
        "Done when the 5xx rate is under 0.1% for ten minutes",
    ] {
        key(&mut app, KeyCode::Enter);
        keys(&mut app, line);
    }
    key(&mut app, KeyCode::Tab);
    keys(&mut app, "JIRA-9");
    snap_at("narrow_form_longer", &app.state, &[NARROW]);
    demo.stop().await;
}

/// The longest text the broker accepts, as an approver and the requester
/// see it: a justification of many lines and long words, a long ticket,
/// a long incident reference.
#[tokio::test]
async fn long_text_screens() {
    let broker = demo_policy().start().await;
    let alice = backend::connect(&broker.url(), "demo-alice").unwrap();
    let why = format!(
        "Failover of db-prod-1 after the replica fell behind by {}.\n\
         Steps: promote db-prod-2, repoint pgbouncer, rebuild the old primary as a replica.\n\
         Runbook: https://wiki.example/runbooks/{}\n{}",
        "forty minutes and kept falling ".repeat(6),
        "postgres/failover/".repeat(8),
        "Supercalifragilisticexpialidocious".repeat(5),
    );
    let body = hoist_api::CreateRequest {
        incident: Some(format!("INC-{}", "4711".repeat(30))),
        ..ask(
            "prod-db-admin",
            &why,
            Some(&format!("CHG-{}", "1024".repeat(25))),
        )
    };
    alice.file(&body, "long").await.unwrap();
    let filed = alice.requests(10).await.unwrap().remove(0);

    let mut bob = fresh_app(&broker.url(), "bob").await;
    key(&mut bob, KeyCode::Char('4'));
    assert!(
        bob.wait_until(WAIT, |s| s.queue.len() == 1
            && s.histories.contains_key(&s.queue[0].id))
            .await
    );
    freeze(&mut bob, filed.created_at + TimeDelta::milliseconds(30_500));
    snap_at(
        "long_text_review",
        &bob.state,
        &[SIZES[0], SIZES[1], NARROW],
    );

    let mut app = fresh_app(&broker.url(), "alice").await;
    key(&mut app, KeyCode::Char('2'));
    freeze(&mut app, filed.created_at + TimeDelta::milliseconds(30_500));
    snap_at(
        "long_text_request",
        &app.state,
        &[SIZES[0], SIZES[1], NARROW],
    );
}

/// The colour of a text on screen: its first cell's.
fn colour_of(
    terminal: &ratatui::Terminal<ratatui::backend::TestBackend>,
    text: &str,
) -> ratatui::style::Style {
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    for y in 0..area.height {
        let line: Vec<&str> = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        let joined = line.concat();
        if let Some(at) = joined.find(text) {
            // Cells hold one character each here (no wide ones before it).
            let x = joined[..at].chars().count() as u16;
            let cell = &buffer[(x, y)];
            return ratatui::style::Style::new()
                .fg(cell.fg)
                .add_modifier(cell.modifier);
        }
    }
    panic!("`{text}` is not on screen");
}

/// Meaning carried by colour: break-glass is red wherever it shows, and
/// a countdown is calm, then a warning in the last five minutes.
#[tokio::test]
async fn break_glass_is_red_and_the_countdown_warns() {
    use ratatui::style::{Color, Modifier};
    let demo = demo().await;
    let theme = hoist::ui::theme::Theme::default();
    assert_eq!(theme.break_glass, Color::LightRed);

    // The responder's form, its title and its switch.
    let mut carol = app(&demo, "carol").await;
    key(&mut carol, KeyCode::Char('/'));
    keys(&mut carol, "deploy");
    key(&mut carol, KeyCode::Enter);
    keys(&mut carol, "Roll back cart-svc now");
    ctrl(&mut carol, 'b');
    let drawn = render(&carol.state, &theme, 80, 24);
    let title = colour_of(&drawn, "BREAK-GLASS");
    assert_eq!(title.fg, Some(Color::LightRed));
    assert!(title.add_modifier.contains(Modifier::REVERSED));
    assert_eq!(colour_of(&drawn, "[x] ON").fg, Some(Color::LightRed));
    key(&mut carol, KeyCode::Esc);
    let drawn = render(&carol.state, &theme, 160, 48);
    assert_eq!(
        colour_of(&drawn, "allowed for you").fg,
        Some(Color::LightRed)
    );

    // The approver's queue of break-glass activations to acknowledge.
    let mut bob = app(&demo, "bob").await;
    key(&mut bob, KeyCode::Char('4'));
    assert!(bob.wait_until(WAIT, |s| !s.break_glass.is_empty()).await);
    let drawn = render(&bob.state, &theme, 160, 48);
    assert_eq!(
        colour_of(&drawn, "Break-glass to acknowledge").fg,
        Some(Color::LightRed)
    );

    // A countdown with time to spare is green; five minutes before the
    // end it is yellow, the colour of the warning banner.
    let mut alice = busy_alice(&demo).await;
    key(&mut alice, KeyCode::Char('3'));
    let end = alice.state.grants[0].expires_at;
    freeze(&mut alice, end - TimeDelta::minutes(20));
    let drawn = render(&alice.state, &theme, 80, 24);
    assert_eq!(colour_of(&drawn, "20:00").fg, Some(Color::Green));
    alice.dispatch(hoist::app::Action::Tick(end - TimeDelta::minutes(4)));
    let drawn = render(&alice.state, &theme, 80, 24);
    assert_eq!(colour_of(&drawn, "04:00").fg, Some(Color::Yellow));
    assert_eq!(
        colour_of(&drawn, "⚠ prod-logs-read expires in").fg,
        Some(Color::Yellow)
    );
    demo.stop().await;
}

/// `state` with tiers on the demo's roles, as a broker with tiers says them.
fn with_tiers(state: &State) -> State {
    let mut tiered = state.clone();
    for role in &mut tiered.roles {
        role.tier = Some(match role.id.as_str() {
            "prod-k8s-admin" => 0,
            "prod-db-admin" => 1,
            "staging-k8s-admin" => 2,
            _ => 3,
        });
    }
    tiered
}

/// On the Grants screen each grant's tier badge is coloured as its tier is
/// everywhere else: as filed with its request, else as its role has it.
#[tokio::test]
async fn a_grants_tier_badge_is_coloured_by_its_tier() {
    let demo = demo().await;
    let mut app = busy_alice(&demo).await;
    key(&mut app, KeyCode::Char('3'));
    let theme = hoist::ui::theme::Theme::default();
    let badge_style = |state: &State, badge: &str| {
        let terminal = render(state, &theme, 80, 24);
        let buffer = terminal.backend().buffer().clone();
        let (x, y) = (0..24u16)
            .flat_map(|y| (0..79u16).map(move |x| (x, y)))
            .find(|&(x, y)| {
                format!("{}{}", buffer[(x, y)].symbol(), buffer[(x + 1, y)].symbol()) == badge
            })
            .unwrap_or_else(|| panic!("no {badge} badge"));
        (buffer[(x, y)].fg, buffer[(x, y)].modifier)
    };
    // Without tiers, no badge at all.
    let plain = screen(&app.state, 80, 24);
    assert!(!plain.contains("T3 "), "{plain}");
    // prod-logs-read is routine: muted.
    let mut tiered = with_tiers(&app.state);
    // Drawn in its tier's colour, with its modifiers (the selected row's
    // own may come on top).
    let drawn_as = |state: &State, badge: &str, tier: u8| {
        let (fg, modifier) = badge_style(state, badge);
        let style = theme.tier(tier);
        assert_eq!(Some(fg), style.fg, "{badge}");
        assert!(
            modifier.contains(style.add_modifier),
            "{badge}: {modifier:?}"
        );
    };
    drawn_as(&tiered, "T3", 3);
    // Its request says it was filed as tier 0: the grant shows that.
    let request_id = tiered.grants[0].request_id.clone();
    for request in &mut tiered.requests {
        if request.id == request_id {
            request.tier = Some(0);
        }
    }
    drawn_as(&tiered, "T0", 0);
    let details = screen(&tiered, 80, 24);
    assert!(
        details.contains("Risk tier      T0 · most critical"),
        "{details}"
    );
    demo.stop().await;
}
