//! Every screen, at 80x24 and 160x48, with real data from a broker on loopback.

use chrono::TimeDelta;
use crossterm::event::KeyCode;
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
