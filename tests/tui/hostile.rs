//! Text from the server is untrusted. A hostile justification (ANSI escapes,
//! OSC 52, bidi overrides, NUL, C1 controls, 100 kB) renders harmlessly on
//! every screen that shows it: proven on the bytes sent to the terminal.

use chrono::{TimeDelta, Utc};
use hoist::app::state::{Banner, Level, Modal, Screen, State};
use hoist::ui::theme::Theme;
use hoist_api::{
    AccessRequest, AuditEvent, AuditKind, Grant, GrantState, Me, RequestKind, RequestState, Review,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

const PAYLOADS: &[&str] = &[
    "\x1b[31;1mRED",
    "\x1b]52;c;cHduZWQ=\x07",
    "\u{202E}txt.exe",
    "nul\0byte",
    "\u{9b}2J",
    "\x1b[2J\x1b[H",
    "\u{2066}isolate\u{2069}",
    "zero\u{200B}\u{200B}width",
    "line\u{2028}separator",
];

fn hostile() -> String {
    let mut text = PAYLOADS.join(" ");
    text.push_str(&"A".repeat(100_000));
    text
}

fn request(id: &str, requester: &str, state: RequestState) -> AccessRequest {
    let now = Utc::now();
    AccessRequest {
        id: id.into(),
        kind: RequestKind::Access,
        role: "prod-db-admin".into(),
        role_name: hostile(),
        requester: requester.into(),
        justification: hostile(),
        ticket: Some("INC-1\x1b]52;c;eA==\x07".into()),
        incident: Some("\u{202E}INC".into()),
        duration_secs: 1800,
        starts_at: None,
        break_glass: true,
        state,
        created_at: now,
        updated_at: now,
        lapses_at: Some(now + TimeDelta::hours(1)),
        approvals_required: 1,
        reviews: vec![Review {
            reviewer: "bob\x1b[8m".into(),
            decision: hoist_api::Decision::Deny,
            comment: Some(hostile()),
            at: now,
        }],
        claim: None,
        grant_id: None,
        reason: Some(hostile()),
        acknowledgement: None,
    }
}

fn state() -> State {
    let now = Utc::now();
    let mut state = State::new("http://127.0.0.1:1".into(), now);
    state.loaded = true;
    state.me = Some(Me {
        user: "alice".into(),
        display_name: hostile(),
        groups: vec![],
        approver_for: vec!["prod-db-admin".into()],
        auditor: false,
    });
    state.requests = vec![request("req_1", "alice", RequestState::Denied)];
    state.queue = vec![request("req_2", "mallory\u{202E}", RequestState::Pending)];
    state.break_glass = vec![request("req_3", "mallory\x1b[2J", RequestState::Active)];
    state.grants = vec![Grant {
        id: "gr_1".into(),
        request_id: "req_1".into(),
        role: "prod\x1b[5mdb".into(),
        role_name: hostile(),
        holder: "alice".into(),
        starts_at: now,
        expires_at: now + TimeDelta::minutes(30),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
        break_glass: true,
        ticket: Some(hostile()),
        incident: None,
        justification: hostile(),
    }];
    state.activity = vec![AuditEvent {
        seq: 1,
        at: now,
        kind: AuditKind::Denied,
        actor: "bob\x1b]0;pwned\x07".into(),
        subject: Some("alice".into()),
        role: Some(hostile()),
        request_id: None,
        grant_id: None,
        incident: None,
        reason: Some(hostile()),
        details: serde_json::json!({}),
        prev_hash: String::new(),
        hash: String::new(),
    }];
    state.banner = Some(Banner {
        text: hostile(),
        level: Level::Error,
        until: now + TimeDelta::hours(1),
    });
    state
}

/// Draws the state through a real crossterm backend and returns the bytes.
fn bytes(state: &State, width: u16, height: u16) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let backend = CrosstermBackend::new(&mut out);
        let options = ratatui::TerminalOptions {
            viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, width, height)),
        };
        let mut terminal = Terminal::with_options(backend, options).unwrap();
        let mut state = state.clone();
        state.size = (width, height);
        terminal
            .draw(|frame| hoist::ui::draw(frame, &state, &Theme::default()))
            .unwrap();
    }
    out
}

fn assert_harmless(out: &[u8], what: &str) {
    let text = String::from_utf8_lossy(out);
    assert!(
        out.len() < 512 * 1024,
        "{what}: {} bytes for one frame",
        out.len()
    );
    assert!(
        !text.contains("\x1b]"),
        "{what}: an OSC sequence reached the terminal"
    );
    assert!(!out.contains(&0x07), "{what}: BEL reached the terminal");
    assert!(!out.contains(&0x00), "{what}: NUL reached the terminal");
    for bad in [
        '\u{202E}', '\u{2066}', '\u{2069}', '\u{9b}', '\u{200B}', '\u{2028}',
    ] {
        assert!(
            !text.contains(bad),
            "{what}: U+{:04X} reached the terminal",
            bad as u32
        );
    }
    // The visible remains of each escape are there, but never behind an ESC.
    for needle in ["[31;1mRED", "[2J", "[8m", "[5mdb", "52;c;"] {
        for (at, _) in text.match_indices(needle) {
            assert!(
                !text[..at].ends_with('\x1b'),
                "{what}: `{needle}` was sent as an escape sequence"
            );
        }
    }
}

#[test]
fn hostile_text_renders_harmlessly_on_every_screen() {
    let base = state();
    for screen in Screen::ALL {
        for (width, height) in [(80, 24), (160, 48)] {
            let mut state = base.clone();
            state.screen = screen;
            assert_harmless(
                &bytes(&state, width, height),
                &format!("{screen:?} {width}x{height}"),
            );
            for selected in 0..2 {
                state.cursors.reviews = selected;
                assert_harmless(
                    &bytes(&state, width, height),
                    &format!("{screen:?} row {selected}"),
                );
            }
        }
    }
    let mut state = base.clone();
    state.modal = Some(Modal::Confirm {
        prompt: hostile(),
        yes: hoist::app::Command::LoadAll,
        danger: true,
    });
    assert_harmless(&bytes(&state, 80, 24), "confirm");
    state.modal = Some(Modal::Credential {
        role: hostile(),
        token: hostile(),
        expires_at: Utc::now(),
    });
    assert_harmless(&bytes(&state, 80, 24), "credential");
}

#[test]
fn the_hostile_justification_is_actually_on_screen() {
    // Harmless must not mean hidden: the approver sees the text, defused.
    let mut state = state();
    state.screen = Screen::Reviews;
    state.banner = None;
    let drawn = crate::helpers::screen(&state, 160, 48);
    assert!(drawn.contains("⟨U+001B⟩[31;1mRED"), "{drawn}");
    assert!(drawn.contains("⟨U+202E⟩txt.exe"), "{drawn}");
    assert!(drawn.contains("zero⟨U+200B⟩⟨U+200B⟩width"), "{drawn}");
    assert!(drawn.contains("line⟨U+2028⟩separator"), "{drawn}");
}
