//! A real demo broker on loopback and TUI apps signed in as demo people,
//! driven by key events, rendered into ratatui's test backend.

use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use hoist::app::{Action, State};
use hoist::demo::Demo;
use hoist::tui::{App, Options};
use hoist::ui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn demo() -> Demo {
    Demo::start().await.unwrap()
}

/// An app signed in as `user`, with everything loaded.
pub async fn app(demo: &Demo, user: &str) -> App {
    let client = demo.client(user).await.unwrap();
    let options = Options {
        theme: Theme::default(),
        ticket_url: Some("https://tracker.example/browse/{ticket}".into()),
        ..Options::default()
    };
    let mut app = App::start(client, options);
    assert!(
        app.wait_until(WAIT, |s| s.loaded && s.me.is_some()).await,
        "app did not load"
    );
    app
}

/// A broker with the demo policy and no history (tokens `demo-<name>`).
pub fn demo_policy() -> hoistd::testing::Builder {
    hoistd::testing::TestBroker::builder()
        .policy(hoist::demo::DEMO_POLICY)
        .token_prefix("demo-")
}

pub fn key(app: &mut App, code: KeyCode) {
    app.key(KeyEvent::new(code, KeyModifiers::NONE));
}

pub fn ctrl(app: &mut App, c: char) {
    app.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
}

pub fn keys(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Pins the clock so countdowns and relative times draw the same every run.
pub fn freeze(app: &mut App, now: DateTime<Utc>) {
    app.drain();
    app.dispatch(Action::Tick(now));
    app.state.banner = None;
}

pub fn render(state: &State, theme: &Theme, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut state = state.clone();
    state.size = (width, height);
    terminal
        .draw(|frame| hoist::ui::draw(frame, &state, theme))
        .unwrap();
    terminal
}

/// The screen as text, one line per row.
pub fn screen(state: &State, width: u16, height: u16) -> String {
    let terminal = render(state, &Theme::default(), width, height);
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Ids and wall-clock times differ per run; everything else must not.
pub fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"req_[0-9a-z]{12}", "req_XXXXXXXXXXXX");
    settings.add_filter(r"gr_[0-9a-z]{12}", "gr_XXXXXXXXXXXX");
    settings.add_filter(r"\d\d-\d\d \d\d:\d\d:\d\d", "MM-DD hh:mm:ss");
    settings.add_filter(r"\b\d\d:\d\d:\d\d\b", "hh:mm:ss");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT");
    // A timeline's stamp cut short by a narrow column.
    settings.add_filter(r"\b\d\d-\d\d \d\d:\d\b", "MM-DD hh:m");
    settings.set_prepend_module_to_snapshot(false);
    settings
}
