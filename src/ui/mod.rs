//! Drawing: a pure function of the state. One file per screen; this one lays
//! out the frame (tabs, banner, body, footer) and maps mouse clicks back to
//! what was drawn there.

mod activity;
mod form;
mod grants;
mod incidents;
mod modal;
mod requests;
mod reviews;
mod roles;
pub mod theme;
pub mod widgets;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::app::keymap;
use crate::app::state::{Connection, Level, Screen, State};
use crate::text::{clock, sanitize};
use crate::ui::theme::Theme;

/// Width from which lists and details sit side by side.
pub const WIDE: u16 = 110;

pub fn draw(frame: &mut Frame, state: &State, theme: &Theme) {
    let [header, banner, body, footer] = layout(state, frame.area());
    draw_header(frame, header, state, theme);
    draw_banner(frame, banner, state, theme);
    match state.screen {
        Screen::Roles => roles::draw(frame, body, state, theme),
        Screen::Requests => requests::draw(frame, body, state, theme),
        Screen::Grants => grants::draw(frame, body, state, theme),
        Screen::Reviews => reviews::draw(frame, body, state, theme),
        Screen::Activity => activity::draw(frame, body, state, theme),
        Screen::Incidents => incidents::draw(frame, body, state, theme),
    }
    if let Some(form) = &state.form {
        form::draw(frame, body, form, state, theme);
    }
    draw_footer(frame, footer, state, theme);
    if let Some(modal) = &state.modal {
        modal::draw(frame, frame.area(), modal, state, theme);
    }
}

/// Rows a banner takes at most: a longer one is cut at the last.
const BANNER_ROWS: usize = 3;

fn layout(state: &State, area: Rect) -> [Rect; 4] {
    let banner = banner(state).map_or(0, |(text, _)| {
        // As many rows as its words wrap onto, so nothing it says is cut
        // off at the edge of a narrow terminal.
        let rows = Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .line_count(banner_text_area(area).width);
        rows.clamp(1, BANNER_ROWS) as u16
    });
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// Each screen's tab label and where it is drawn on the header line.
fn tabs(state: &State) -> Vec<(Screen, String, u16, u16)> {
    let label = |screen: Screen, short: bool| {
        let count = match screen {
            // What needs me: not what I approved and waits for others.
            Screen::Reviews if state.to_decide() + state.break_glass.len() > 0 => {
                format!(" ({})", state.to_decide() + state.break_glass.len())
            }
            Screen::Grants if !state.grants.is_empty() => format!(" ({})", state.grants.len()),
            _ => String::new(),
        };
        let title = if short {
            screen.short_title()
        } else {
            screen.title()
        };
        format!(" {} {}{} ", screen.index() + 1, title, count)
    };
    // Full names when they fit beside the status on the right; short ones otherwise.
    let shown = || {
        Screen::ALL
            .into_iter()
            .filter(|screen| state.capabilities.shows(*screen))
    };
    let full: usize = shown().map(|s| label(s, false).chars().count()).sum();
    let short = 7 + full + 16 > usize::from(state.size.0);
    let mut x = 7; // after " hoist "
    shown()
        .map(|screen| {
            let label = label(screen, short);
            let width = label.chars().count() as u16;
            let tab = (screen, label, x, x + width);
            x += width;
            tab
        })
        .collect()
}

fn draw_header(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut spans = vec![Span::styled(" hoist ", theme.title())];
    let tabs = tabs(state);
    let tabs_end = tabs.last().map_or(0, |t| t.3);
    for (screen, label, _, _) in tabs {
        let style = if screen == state.screen {
            theme.selected()
        } else {
            theme.muted()
        };
        spans.push(Span::styled(label, style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);

    let user = state
        .me
        .as_ref()
        .map_or(String::new(), |me| sanitize::line(&me.user).into_owned());
    let who = match &state.profile {
        Some(profile) if user.is_empty() => sanitize::line(profile).into_owned(),
        Some(profile) => format!("{} · {user}", sanitize::line(profile)),
        None => user,
    };
    let (status, style) = match &state.connection {
        Connection::Live => ("● live", theme.ok()),
        Connection::Connecting => ("… connecting", theme.warn()),
        Connection::Offline { .. } => ("○ offline", theme.danger()),
    };
    let room = usize::from(area.width.saturating_sub(tabs_end));
    // In cells, not characters: a wide name counted short would be drawn
    // over the tabs.
    let full = crate::text::width_of(&who) + crate::text::width_of(status) + 2;
    let right = if room > full {
        Line::from(vec![
            Span::styled(format!("{who} "), theme.text()),
            Span::styled(format!("{status} "), style),
        ])
    } else {
        // Narrow: the connection state matters more than the name.
        let symbol: String = status.chars().take(1).collect();
        Line::from(Span::styled(format!("{symbol} "), style))
    }
    .right_aligned();
    frame.render_widget(Paragraph::new(right), area);
}

/// The banner's text, and its level (`None`: offline), if one shows.
fn banner(state: &State) -> Option<(String, Option<Level>)> {
    match (&state.banner, &state.connection) {
        (Some(banner), _) => Some((
            sanitize::line(&banner.text).into_owned(),
            Some(banner.level),
        )),
        (None, Connection::Offline { reason, since }) => Some((
            format!(
                "Offline for {}: {}. Countdowns continue from the last known times; \
                 reconnecting…",
                clock(state.now - *since),
                sanitize::line(reason)
            ),
            None,
        )),
        _ => None,
    }
}

fn draw_banner(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some((text, level)) = banner(state).filter(|_| area.height > 0) else {
        return;
    };
    let style = match level {
        Some(Level::Info) => theme.title(),
        Some(Level::Success) => theme.ok(),
        Some(Level::Warning) => theme.warn(),
        Some(Level::Error) | None => theme.danger(),
    };
    frame.render_widget(
        Paragraph::new(Span::styled(text, style)).wrap(Wrap { trim: true }),
        banner_text_area(area),
    );
}

/// Where a banner's words go in its rows: one column in from the left.
fn banner_text_area(area: Rect) -> Rect {
    Rect {
        x: area.x.saturating_add(1),
        width: area.width.saturating_sub(1),
        ..area
    }
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut hints = keymap::footer(state);
    // Too narrow for every hint: drop from the middle, keeping the first
    // (the screen's main keys) and the last two (help, quit).
    let width = |hints: &[(String, &str)]| {
        hints
            .iter()
            .map(|(k, l)| k.chars().count() + l.chars().count() + 3)
            .sum::<usize>()
            + 1
    };
    while width(&hints) > usize::from(area.width) && hints.len() > 3 {
        hints.remove(hints.len() - 3);
    }
    let mut spans = vec![Span::raw(" ")];
    for (key, label) in hints {
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::styled(format!(" {label}  "), theme.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
    if !state.busy.is_empty() {
        let working = Line::from(Span::styled("working… ", theme.warn())).right_aligned();
        frame.render_widget(Paragraph::new(working), area);
    }
}

/// What a mouse click landed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Tab(Screen),
    /// A row of the current screen's list.
    Row(usize),
}

pub fn hit(state: &State, column: u16, row: u16) -> Option<Hit> {
    let area = Rect::new(0, 0, state.size.0, state.size.1);
    let [header, _, body, _] = layout(state, area);
    if row == header.y {
        return tabs(state)
            .into_iter()
            .find(|(_, _, start, end)| (*start..*end).contains(&column))
            .map(|(screen, ..)| Hit::Tab(screen));
    }
    let (list, first_row, cursor, len) = match state.screen {
        Screen::Roles => (
            roles::list_area(body),
            1,
            state.cursors.roles,
            state.visible_roles.len(),
        ),
        Screen::Requests => (
            requests::list_area(body),
            2,
            state.cursors.requests,
            state.requests.len(),
        ),
        Screen::Grants => (
            grants::list_area(body),
            2,
            state.cursors.grants,
            state.grants.len(),
        ),
        Screen::Reviews => return None,
        Screen::Incidents => (
            incidents::list_area(body),
            1,
            state.cursors.incidents,
            state.incident_refs().len(),
        ),
        Screen::Activity => (
            activity::list_area(body),
            2,
            state.cursors.activity,
            state.visible_activity().len(),
        ),
    };
    let top = list.y + first_row;
    let height = list.height.saturating_sub(first_row + 1);
    if row < top || row >= top + height || column < list.x || column >= list.x + list.width {
        return None;
    }
    let index = widgets::window_start(cursor, len, usize::from(height)) + usize::from(row - top);
    (index < len).then_some(Hit::Row(index))
}

/// Style for an optional emphasis, or none.
pub fn maybe(style: Style, on: bool) -> Style {
    if on { style } else { Style::new() }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::app::{Action, Capabilities, keymap, update};

    fn drawn(state: &State) -> Vec<String> {
        let (width, height) = state.size;
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| draw(frame, state, &Theme::default()))
            .unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
            .collect()
    }

    /// A pop-up is as tall as what the broker sent wraps to: the end of a
    /// long command, and the keys under it, stay in view in the credential
    /// pop-up, as the keys do under long role names when quitting while
    /// revocations are unconfirmed.
    #[test]
    fn pop_ups_grow_with_what_wraps_so_nothing_is_cut_off() {
        use crate::app::state::Modal;
        let mut state = State::new("https://b.example".into(), Utc::now());
        state.size = (80, 24);
        let command = format!("psql {}the-very-end", "--set=x ".repeat(80));
        state.modal = Some(Modal::Credential {
            grant_id: "gr_1".into(),
            role: "db".into(),
            token: "t".into(),
            expires_at: Utc::now(),
            access: Some(Box::new(hoist_api::AccessCredential {
                target: "db-1".into(),
                kind: "postgres".into(),
                env: Default::default(),
                uri: None,
                command: Some(command),
                expires_at: Utc::now(),
                certificate: None,
            })),
        });
        let screen = drawn(&state).join("\n");
        assert!(screen.contains("the-very-end"), "{screen}");
        assert!(screen.contains("esc closes"), "{screen}");

        let later = Utc::now() + chrono::TimeDelta::hours(1);
        for n in 0..3 {
            let id = format!("gr_{n}");
            let mut grant = crate::app::fixtures::grant(&id, &format!("role-{n}"), "me", later);
            grant.role = format!("role-{n}-{}", "long-name-".repeat(5));
            state.grants.push(grant);
            state.revoking.insert(id);
        }
        state.modal = Some(Modal::QuitWhileRevoking);
        let screen = drawn(&state).join("\n");
        assert!(screen.contains("stay and keep retrying"), "{screen}");
    }

    /// However many lines a requester's justification has, or however
    /// long its one line (in wide characters too), the approver still sees
    /// their history for the role, and is told that more of the
    /// justification did not fit.
    #[test]
    fn a_long_justification_does_not_push_the_requesters_history_out_of_view() {
        use crate::app::fixtures::request;
        use crate::app::state::Screen;
        let now = Utc::now();
        for (justification, more) in [
            (format!("routine{}", "\n.".repeat(60)), "more lines"),
            ("文".repeat(2000), "the rest of it"),
            (format!("{}\nsecond", "word ".repeat(900)), "1 more line"),
        ] {
            let mut state = State::new("https://b.example".into(), now);
            state.loaded = true;
            state.size = (120, 30);
            state.screen = Screen::Reviews;
            let mut asked = request("req_4k2m9x7q1z8w", "db", "mallory", now);
            asked.justification = justification;
            let mut past = request("req_4", "db", "mallory", now);
            past.state = hoist_api::RequestState::Denied;
            state.histories.insert(
                asked.id.clone(),
                hoist_api::RequestHistory {
                    requester: "mallory".into(),
                    role: "db".into(),
                    recent: vec![past],
                },
            );
            state.queue = vec![asked];
            let screen = drawn(&state).join("\n");
            assert!(
                screen.contains("mallory's recent requests for this role"),
                "{screen}"
            );
            assert!(screen.contains("denied"), "{screen}");
            assert!(screen.contains(&format!("{more} (")), "{screen}");
        }
    }

    /// A banner wider than the terminal wraps onto the rows below it,
    /// and the screen moves down to make room: every word of it shows.
    /// One that would take more than three rows is cut at the third.
    #[test]
    fn a_long_banner_wraps_instead_of_being_cut_off() {
        use crate::app::state::Banner;
        let mut state = State::new("https://b.example".into(), Utc::now());
        state.size = (60, 20);
        let text = "Demo target: a throwaway PostgreSQL on 127.0.0.1:5432 (demo-db). \
                    Request prod-db-admin, then on Grants press s.";
        state.banner = Some(Banner {
            text: text.into(),
            level: crate::app::state::Level::Info,
            until: Utc::now() + chrono::Duration::minutes(1),
        });
        let rows = drawn(&state);
        let shown = rows[1..4].join(" ");
        for word in text.split_whitespace() {
            assert!(
                shown.contains(word),
                "{word} is not shown:\n{}",
                rows.join("\n")
            );
        }
        assert!(rows[1].starts_with(" Demo target:"), "{}", rows[1]);
        let body = layout(&state, Rect::new(0, 0, 60, 20))[2];
        assert_eq!(body.y, 3, "two banner rows under the header");

        state.banner.as_mut().unwrap().text = "word ".repeat(200);
        let body = layout(&state, Rect::new(0, 0, 60, 20))[2];
        assert_eq!(body.y, 1 + BANNER_ROWS as u16);
    }

    /// The profile and its kind head the right of the header, when hoist
    /// was opened on a profile.
    #[test]
    fn the_header_names_the_profile_and_its_kind() {
        let mut state = State::new("https://b.example".into(), chrono::Utc::now());
        state.size = (120, 24);
        assert!(!drawn(&state)[0].contains("(entra)"));
        state.profile = Some("tenant (entra)".into());
        let header = &drawn(&state)[0];
        assert!(header.contains("tenant (entra)"), "{header}");
    }

    /// A profile or user name of wide characters is measured in cells:
    /// when it does not fit beside the tabs, only the connection's symbol
    /// shows, and the tabs are drawn whole.
    #[test]
    fn a_wide_name_never_covers_the_tabs() {
        let mut state = State::new("https://b.example".into(), chrono::Utc::now());
        state.size = (120, 24);
        let plain = drawn(&state)[0].clone();
        let status = plain.find("… connecting").unwrap();
        let tabs = plain[..status].trim_end().to_string();
        let room = 120 - crate::text::width_of(&tabs);
        // Fits by characters ("… connecting" and two spaces), not by cells.
        let wide = "Ｗ".repeat(room - 16);
        assert!(crate::text::width_of(&wide) > room);
        state.profile = Some(wide.clone());
        let header = drawn(&state)[0].clone();
        assert!(header.starts_with(&tabs), "{header}");
        assert!(!header.contains('Ｗ'), "{header}");
    }

    /// The picker lists each profile with its kind; the sign-in pop-up
    /// shows the provider's URL and code cleaned, since they come from it.
    #[test]
    fn the_picker_shows_kinds_and_the_sign_in_pop_up_cleans_what_it_shows() {
        use crate::app::state::{Modal, ProfileChoice, SignInPrompt};
        let mut state = State::new("https://b.example".into(), chrono::Utc::now());
        state.size = (120, 30);
        state.profile_name = Some("work".into());
        state.profiles = vec![
            ProfileChoice {
                name: "tenant".into(),
                kind: "entra".into(),
            },
            ProfileChoice {
                name: "work".into(),
                kind: "hoistd".into(),
            },
        ];
        state.modal = Some(Modal::Profiles { cursor: 0 });
        let screen = drawn(&state).join("\n");
        let row = |name: &str| screen.lines().find(|l| l.contains(name)).unwrap_or("");
        assert!(row("tenant").contains("entra"), "{screen}");
        assert!(row("● work").contains("hoistd"), "{screen}");

        state.modal = Some(Modal::SignIn(SignInPrompt {
            profile: Some("tenant".into()),
            why: "Sign in to profile tenant".into(),
            url: "https://login.example/device\u{1b}]0;owned\u{7}".into(),
            code: "ABCD\u{202e}EFGH".into(),
            complete: None,
            minutes: 15,
        }));
        let screen = drawn(&state).join("\n");
        assert!(screen.contains("Sign in to profile tenant"), "{screen}");
        assert!(screen.contains("https://login.example/device"), "{screen}");
        assert!(screen.contains("U+202E"), "shown, not obeyed: {screen}");
        assert!(!screen.contains('\u{1b}') && !screen.contains('\u{202e}'));
    }

    /// A form opened to break glass over waiting requests says that each
    /// stays as it is: by id alone for one role, by id and role for a
    /// bundle.
    #[test]
    fn a_break_glass_form_names_the_requests_it_leaves_waiting() {
        use crate::app::fixtures::role;
        use crate::app::form::RequestForm;
        let mut state = State::new("https://b.example".into(), Utc::now());
        state.loaded = true;
        state.size = (120, 40);
        let mut form = RequestForm::new(role("db"), "k1".into());
        form.break_glass = true;
        form.requested = vec![("db".into(), "req_db".into())];
        state.form = Some(form.clone());
        let screen = drawn(&state).join("\n");
        assert!(
            screen.contains("Your request req_db for it stays as it is"),
            "{screen}"
        );

        form.extra = vec![role("k8s"), role("logs")];
        form.extra_keys = vec!["k2".into(), "k3".into()];
        form.requested.push(("logs".into(), "req_logs".into()));
        state.form = Some(form.clone());
        let screen = drawn(&state).join("\n");
        assert!(
            screen.contains("Your requests stay as they are: req_db for db, req_logs for logs"),
            "{screen}"
        );
        assert!(
            screen.contains("BREAK-GLASS · 3 roles: db, k8s, logs"),
            "every role in the title: {screen}"
        );

        // Break-glass off: the waiting roles are set aside, and the form
        // says how to bring them in.
        let mut form = RequestForm::new(role("k8s"), "k2".into());
        form.set_aside = vec![(role("db"), "req_db".into(), "k1".into())];
        state.form = Some(form);
        let screen = drawn(&state).join("\n");
        assert!(
            screen.contains("Waiting for approval, so not in this request: db (req_db)"),
            "{screen}"
        );
        assert!(screen.contains("ctrl-b breaks glass"), "{screen}");
    }

    fn press(state: &State, c: char) -> Option<Action> {
        keymap::action_for_key(state, KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn offered(hints: &[(String, &'static str)], label: &str) -> bool {
        hints.iter().any(|(_, l)| *l == label)
    }

    /// A backend without incidents or claims: the tab is not drawn, the keys
    /// do nothing, and neither the footer nor the help offers them. The same
    /// checks with every capability show that each could fail.
    #[test]
    fn what_the_backend_cannot_do_is_hidden() {
        for capabilities in [
            Capabilities::ALL,
            Capabilities {
                incidents: false,
                claim: false,
                ..Capabilities::ALL
            },
        ] {
            let full = capabilities == Capabilities::ALL;
            let mut state = State::new("https://pim.example".into(), Utc::now());
            state.loaded = true;
            state.size = (120, 40);
            state.capabilities = capabilities;

            let header = &drawn(&state)[0];
            assert_eq!(header.contains("6 Incidents"), full, "{header}");
            assert!(header.contains("5 Activity"), "{header}");
            let help = keymap::help(&state);
            assert_eq!(help.iter().any(|(title, _)| *title == "Incidents"), full);
            let claim = |(_, keys): &(&str, Vec<(String, &'static str)>)| offered(keys, "claim");
            assert_eq!(help.iter().any(claim), full);

            assert_eq!(press(&state, '6').is_some(), full);
            update(&mut state, Action::GoTo(Screen::Incidents));
            assert_eq!(state.screen == Screen::Incidents, full);
            state.screen = Screen::Activity;
            update(&mut state, Action::NextScreen);
            let next = if full {
                Screen::Incidents
            } else {
                Screen::Roles
            };
            assert_eq!(state.screen, next);

            state.screen = Screen::Reviews;
            assert_eq!(press(&state, 'm'), full.then_some(Action::Claim));
            assert_eq!(offered(&keymap::footer(&state), "claim"), full);
            let footer = drawn(&state).pop().unwrap_or_default();
            assert_eq!(footer.contains("m claim"), full, "{footer}");
            assert!(footer.contains("a approve"), "{footer}");
        }
    }

    /// Where role ids mean nothing to people (Entra's `dir:<guid>`), lists
    /// name the role; where they do, the id, as before.
    #[test]
    fn lists_name_roles_by_what_people_know() {
        let now = Utc::now();
        for readable in [true, false] {
            let mut state = State::new("https://pim.example".into(), now);
            state.loaded = true;
            state.size = (120, 40);
            state.capabilities = Capabilities {
                readable_role_ids: readable,
                ..Capabilities::ALL
            };
            let mut grant = crate::app::fixtures::grant(
                "dir:g1",
                "dir:62e90394-69f5-4237-9190-012177145e10",
                "alice",
                now + chrono::TimeDelta::minutes(30),
            );
            grant.role_name = "User Administrator".into();
            state.grants = vec![grant];
            state.screen = Screen::Grants;
            let screen = drawn(&state).join("\n");
            let list = screen.lines().take(6).collect::<Vec<_>>().join("\n");
            assert_eq!(list.contains("User Administrator"), !readable, "{screen}");
            assert_eq!(list.contains("dir:62e90394"), readable, "{screen}");
        }
    }
}
