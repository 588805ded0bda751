//! Text from the server is untrusted. Hostile text (ANSI escapes, OSC 52,
//! bidi overrides, zero-width characters, line separators, NUL, C1
//! controls, 100 kB) in every string the broker sends (ids, roles, names,
//! groups, justifications, tickets, incidents, reasons, claims, histories,
//! the incident view) renders harmlessly on every screen, in every pop-up,
//! in the form, the window title and desktop notices: proven on the bytes
//! sent to the terminal.

use chrono::{TimeDelta, Utc};
use hoist::app::form::RequestForm;
use hoist::app::state::{Banner, Connection, Level, Modal, Prompt, Screen, State};
use hoist::text::sanitize::is_invisible;
use hoist::ui::theme::Theme;
use hoist_api::{
    AccessRequest, Acknowledgement, ApprovalRule, AuditEvent, AuditKind, Claim, Grant, GrantState,
    IncidentView, Me, RequestHistory, RequestKind, RequestState, Review, Role, TicketRule,
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
    "tag\u{E0041}\u{E0042}",
];

/// A short hostile string that starts with `label`, for fields drawn in
/// narrow columns (so the payload is on screen, not cut off).
fn h(label: &str) -> String {
    format!("{label}{}", PAYLOADS.join(" "))
}

/// The long kind, for the fields that wrap: 100 kB after the payloads.
fn long(label: &str) -> String {
    format!("{}{}", h(label), "A".repeat(100_000))
}

fn request(id: &str, requester: &str, state: RequestState) -> AccessRequest {
    let now = Utc::now();
    AccessRequest {
        id: h(id),
        kind: RequestKind::Access,
        role: h("prod-db-admin"),
        role_name: long("name"),
        requester: requester.into(),
        justification: long("why"),
        ticket: Some(h("CHG-1")),
        incident: Some(h("INC-1")),
        duration_secs: 1800,
        starts_at: None,
        break_glass: true,
        state,
        created_at: now,
        updated_at: now,
        lapses_at: Some(now + TimeDelta::hours(1)),
        approvals_required: 1,
        reviews: vec![Review {
            reviewer: h("bob"),
            decision: hoist_api::Decision::Deny,
            comment: Some(long("comment")),
            at: now,
        }],
        claim: Some(Claim {
            by: h("dave"),
            until: now + TimeDelta::minutes(10),
        }),
        grant_id: Some(h("gr_1")),
        reason: Some(long("reason")),
        acknowledgement: Some(Acknowledgement {
            by: h("carol"),
            comment: Some(long("ack")),
            at: now,
        }),
        tier: Some(0),
        approvers: vec![h("bob"), h("dave")],
        signed_in_at: None,
    }
}

fn grant(id: &str) -> Grant {
    let now = Utc::now();
    Grant {
        id: h(id),
        request_id: h("req_1"),
        role: h("prod\x1b[5mdb"),
        role_name: long("name"),
        holder: h("alice"),
        starts_at: now,
        expires_at: now + TimeDelta::minutes(3),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: Some(h("mallory")),
        revoke_reason: Some(long("revoked")),
        break_glass: true,
        ticket: Some(h("CHG-2")),
        incident: Some(h("INC-1")),
        justification: long("why"),
        access: None,
    }
}

fn role(id: &str) -> Role {
    Role {
        id: h(id),
        name: long("name"),
        description: long("description"),
        scope: h("postgres://"),
        default_duration_secs: 1800,
        max_duration_secs: 7200,
        approval: ApprovalRule {
            approvals: 1,
            approver_groups: vec![h("dba")],
            approvers: vec![h("bob")],
        },
        break_glass: true,
        ticket: TicketRule {
            required: true,
            // A pattern that compiles, so the form quotes it.
            pattern: Some("^CHG-[0-9]+$|\x1b\\[31mRED\u{202E}".into()),
        },
        min_justification: 20,
        target: None,
        tier: None,
    }
}

fn state() -> State {
    let now = Utc::now();
    let mut state = State::new("http://127.0.0.1:1".into(), now);
    state.loaded = true;
    let user = h("alice");
    state.me = Some(Me {
        user: user.clone(),
        display_name: long("Alice"),
        groups: vec![h("engineers"), h("oncall")],
        approver_for: vec![h("prod-db-admin")],
        auditor: false,
    });
    state.roles = vec![role("prod-db-admin"), role("prod-logs-read")];
    state.visible_roles = vec![0, 1];
    state.favourites.insert(state.roles[0].id.clone());
    state.filter = h("filter");
    state.requests = vec![request("req_1", &user, RequestState::Denied)];
    state.queue = vec![request("req_2", &h("mallory"), RequestState::Pending)];
    state.break_glass = vec![request("req_3", &h("eve"), RequestState::Active)];
    let queued = state.queue[0].clone();
    state.histories.insert(
        queued.id.clone(),
        RequestHistory {
            requester: queued.requester.clone(),
            role: queued.role.clone(),
            recent: vec![request("req_4", &h("mallory"), RequestState::Denied)],
        },
    );
    state.grants = vec![grant("gr_1"), grant("gr_2")];
    state.revoking.insert(state.grants[1].id.clone());
    state.incident = Some(IncidentView {
        incident: h("INC-1"),
        requests: vec![
            request("req_1", &user, RequestState::Active),
            request("req_5", &h("mallory"), RequestState::Revoked),
        ],
        grants: vec![grant("gr_1"), {
            let mut ended = grant("gr_1");
            ended.state = GrantState::Revoked;
            ended
        }],
    });
    state.activity = vec![AuditEvent {
        seq: 1,
        at: now,
        kind: AuditKind::Denied,
        actor: h("bob\x1b]0;pwned\x07"),
        subject: Some(h("alice")),
        role: Some(long("role")),
        request_id: Some(h("req_1")),
        grant_id: Some(h("gr_1")),
        incident: Some(h("INC-1")),
        reason: Some(long("reason")),
        details: serde_json::json!({}),
        prev_hash: String::new(),
        hash: String::new(),
    }];
    // A kind from a newer broker is shown by its name, which the broker
    // wrote.
    let mut newer = state.activity[0].clone();
    newer.seq = 2;
    newer.kind = AuditKind::parse(&h("new"));
    state.activity.push(newer);
    state.banner = Some(Banner {
        text: long("banner"),
        level: Level::Error,
        until: now + TimeDelta::hours(1),
    });
    state
}

/// Every pop-up, with hostile text wherever it shows the broker's.
fn modals() -> Vec<Modal> {
    vec![
        Modal::Help,
        Modal::Confirm {
            prompt: long("confirm"),
            yes: hoist::app::Command::LoadAll,
            danger: true,
            repeats: false,
        },
        Modal::Input {
            prompt: Prompt::Deny {
                request_id: h("req_2"),
            },
            title: long("Deny"),
            text: h("typed"),
            required: true,
            error: Some(h("error")),
        },
        Modal::Credential {
            grant_id: long("grant"),
            role: long("role"),
            token: long("token"),
            expires_at: Utc::now(),
            access: None,
        },
        Modal::Credential {
            grant_id: long("grant"),
            role: long("role"),
            token: long("token"),
            expires_at: Utc::now(),
            access: Some(Box::new(hoist_api::AccessCredential {
                target: long("target"),
                kind: h("postgres"),
                env: [(h("PGUSER"), long("user"))].into_iter().collect(),
                uri: Some(long("uri")),
                command: Some(long("command")),
                expires_at: Utc::now(),
                certificate: None,
            })),
        },
        // An ssh grant's certificate: every field of it from the broker.
        Modal::Credential {
            grant_id: long("grant"),
            role: long("role"),
            token: long("token"),
            expires_at: Utc::now(),
            access: Some(Box::new(hoist_api::AccessCredential {
                target: long("target"),
                kind: h("ssh"),
                env: Default::default(),
                uri: None,
                command: None,
                expires_at: Utc::now(),
                certificate: Some(hoist_api::SshCertificate {
                    certificate: long("certificate"),
                    key_id: long("key id"),
                    principals: vec![long("principal"), h("root")],
                    valid_after: Utc::now(),
                    valid_before: Utc::now(),
                    fingerprint: long("fingerprint"),
                }),
            })),
        },
        Modal::QuitWhileRevoking,
    ]
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

/// Nothing in `out` but text and the drawing's own CSI sequences (cursor
/// moves and colours): no OSC, no BEL or NUL, no C1 control, no bidi or
/// invisible character, and no payload behind an ESC.
fn assert_harmless(out: &[u8], what: &str) {
    let text = String::from_utf8_lossy(out);
    assert!(
        out.len() < 512 * 1024,
        "{what}: {} bytes for one frame",
        out.len()
    );
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\x1b' {
            // Only CSI: ESC [ parameters final-byte.
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('['),
                "{what}: ESC not starting a CSI at {at}"
            );
            while chars
                .peek()
                .is_some_and(|(_, c)| c.is_ascii_digit() || matches!(c, ';' | '?' | ':'))
            {
                chars.next();
            }
            let end = chars.next().map(|(_, c)| c);
            assert!(
                end.is_some_and(|c| c.is_ascii_alphabetic()),
                "{what}: a CSI ends in {end:?} at {at}"
            );
            continue;
        }
        assert!(
            !c.is_control() && !is_invisible(c),
            "{what}: U+{:04X} reached the terminal",
            c as u32
        );
    }
    // The visible remains of each escape are there, but never behind an ESC.
    for needle in ["[31;1mRED", "[2J", "[5mdb", "52;c;", "]0;pwned"] {
        for (at, _) in text.match_indices(needle) {
            assert!(
                !text[..at].ends_with('\x1b'),
                "{what}: `{needle}` was sent as an escape sequence"
            );
        }
    }
}

#[test]
fn hostile_text_renders_harmlessly_on_every_screen_and_pop_up() {
    let base = state();
    let offline = Connection::Offline {
        reason: long("offline"),
        since: Utc::now(),
    };
    for screen in Screen::ALL {
        for (width, height) in [(80, 24), (160, 48)] {
            let mut state = base.clone();
            state.screen = screen;
            let what = format!("{screen:?} {width}x{height}");
            assert_harmless(&bytes(&state, width, height), &what);
            for selected in 0..3 {
                state.cursors.reviews = selected;
                state.cursors.requests = selected;
                state.cursors.grants = selected;
                assert_harmless(
                    &bytes(&state, width, height),
                    &format!("{what} row {selected}"),
                );
            }
            state.banner = None;
            state.connection = offline.clone();
            assert_harmless(&bytes(&state, width, height), &format!("{what} offline"));
            state.filtering = true;
            assert_harmless(&bytes(&state, width, height), &format!("{what} filter"));
        }
    }
    for modal in modals() {
        let mut state = base.clone();
        state.screen = Screen::Grants;
        let what = format!("{modal:?}").chars().take(40).collect::<String>();
        state.modal = Some(modal);
        assert_harmless(&bytes(&state, 80, 24), &what);
        assert_harmless(&bytes(&state, 160, 48), &what);
    }
}

#[test]
fn hostile_roles_render_harmlessly_in_the_request_form() {
    let mut state = state();
    let mut form = RequestForm::new(state.roles[0].clone(), "key".into());
    form.justification = long("typed\nsecond line");
    form.ticket = "CHG-x".into();
    form.error = Some(long("refused"));
    state.form = Some(form.clone());
    assert_harmless(&bytes(&state, 80, 24), "form");
    assert_harmless(&bytes(&state, 160, 48), "form");
    // Its ticket problem quotes the role's pattern from the broker.
    let drawn = crate::helpers::screen(&state, 160, 48);
    assert!(
        drawn.contains(r"must match ^CHG-[0-9]+$|⟨U+001B⟩\[31mRED⟨U+202E⟩"),
        "{drawn}"
    );

    form.break_glass = true;
    form.extra = vec![state.roles[1].clone()];
    state.form = Some(form);
    assert_harmless(&bytes(&state, 80, 24), "bundle form");
    assert_harmless(&bytes(&state, 160, 48), "bundle form");
}

#[test]
fn the_window_title_and_desktop_notices_carry_no_escape() {
    let state = state();
    let title = hoist::tui::title(&state);
    assert!(title.starts_with("hoist · prod⟨U+001B⟩[5mdb"), "{title}");
    assert!(
        !title.chars().any(hoist::text::sanitize::is_hostile),
        "{title:?}"
    );

    // A notice names roles and people from the broker; only the bell and
    // the notice's own OSC 9 framing may be control characters.
    let notice = hoist::app::Command::Notify(format!("{} was revoked", long("role")));
    let mut out = Vec::new();
    hoist::tui::write_effect(&notice, &mut out, hoist::tui::Notices::Osc9).unwrap();
    let text = String::from_utf8(out).unwrap();
    let body = text
        .strip_prefix("\x07\x1b]9;hoist: ")
        .and_then(|t| t.strip_suffix('\x07'))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        !body.chars().any(hoist::text::sanitize::is_hostile),
        "{body:?}"
    );
    assert!(body.contains("role⟨U+001B⟩[31;1mRED"), "{body}");
    // OSC 777 frames it with a title; the body is cleaned the same way.
    let mut out = Vec::new();
    hoist::tui::write_effect(&notice, &mut out, hoist::tui::Notices::Osc777).unwrap();
    let text = String::from_utf8(out).unwrap();
    let body = text
        .strip_prefix("\x07\x1b]777;notify;hoist;")
        .and_then(|t| t.strip_suffix('\x07'))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        !body.chars().any(hoist::text::sanitize::is_hostile),
        "{body:?}"
    );
    let mut bell_only = Vec::new();
    hoist::tui::write_effect(&notice, &mut bell_only, hoist::tui::Notices::None).unwrap();
    assert_eq!(bell_only, b"\x07");
}

#[test]
fn the_hostile_text_is_actually_on_screen() {
    // Harmless must not mean hidden: the approver sees the text, defused.
    let mut state = state();
    state.screen = Screen::Reviews;
    state.banner = None;
    let drawn = crate::helpers::screen(&state, 160, 48);
    assert!(drawn.contains("⟨U+001B⟩[31;1mRED"), "{drawn}");
    assert!(drawn.contains("⟨U+202E⟩txt.exe"), "{drawn}");
    assert!(drawn.contains("zero⟨U+200B⟩⟨U+200B⟩width"), "{drawn}");
    assert!(drawn.contains("line⟨U+2028⟩separator"), "{drawn}");
    // The request's id in the details' title, as the broker sent it.
    assert!(drawn.contains(" req_2⟨U+001B⟩[31;1mRED"), "{drawn}");
}

#[test]
fn a_kind_from_a_newer_broker_is_shown_defused() {
    let mut state = state();
    state.screen = Screen::Activity;
    state.banner = None;
    let drawn = crate::helpers::screen(&state, 160, 48);
    assert!(drawn.contains(" new⟨U+001B⟩[31;1m "), "{drawn}");
}

/// A confirmation whose prompt wraps over several lines (revoking every
/// grant under an incident, breaking glass for a bundle) still shows its
/// keys, even in a narrow terminal.
#[test]
fn a_long_confirmation_still_shows_its_keys() {
    let mut state = state();
    let roles: Vec<String> = (0..6).map(|n| format!("prod-role-number-{n}")).collect();
    state.modal = Some(Modal::Confirm {
        prompt: format!(
            "Revoke all 6 of your grants under INC-7 ({})?",
            roles.join(", ")
        ),
        yes: hoist::app::Command::LoadAll,
        danger: true,
        repeats: false,
    });
    for (width, height) in [(60, 20), (80, 24)] {
        let drawn = crate::helpers::screen(&state, width, height);
        // The pop-up's own line (the footer's has two spaces).
        assert!(drawn.contains("y yes   n no"), "{width}x{height}:\n{drawn}");
    }
}

/// The approve and deny prompt grows with what it shows: a long account
/// name and scope (an approval over Entra) and a long comment stay whole,
/// with the keys below them, rather than cut off at the box's edge.
#[test]
fn a_long_review_prompt_is_shown_whole() {
    let mut state = state();
    let upn = "sam.approver-with-a-long-name@contoso-holdings-europe.onmicrosoft.com";
    state.modal = Some(Modal::Input {
        prompt: Prompt::Deny {
            request_id: "req_2".into(),
        },
        title: format!(
            "Deny req_2 for {upn}: Global Administrator at /providers/Microsoft.Management/managementGroups/contoso-root"
        ),
        text: "not during the change freeze, ask again on Monday after the review END".into(),
        required: true,
        error: None,
    });
    let screen = crate::helpers::screen(&state, 100, 30);
    // The box's rows, joined, with the spaces wrapping put in taken out.
    let flat: String = screen
        .lines()
        .filter_map(|line| line.split('│').nth(2))
        .collect::<String>()
        .replace(' ', "");
    for whole in [
        "sam.approver-with-a-long-name@contoso-holdings-europe.onmicrosoft.com:Global",
        "managementGroups/contoso-root>notduring",
        "afterthereviewEND▏entersends",
    ] {
        assert!(flat.contains(whole), "{whole} in {screen}");
    }
}
