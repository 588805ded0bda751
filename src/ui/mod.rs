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
pub mod widgets;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::keymap;
use crate::app::state::{Connection, Level, Screen, State};
use crate::text::{clock, sanitize};
use crate::theme::Theme;

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

fn layout(state: &State, area: Rect) -> [Rect; 4] {
    let banner =
        u16::from(state.banner.is_some() || matches!(state.connection, Connection::Offline { .. }));
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
            Screen::Reviews if !state.queue.is_empty() || !state.break_glass.is_empty() => {
                format!(" ({})", state.queue.len() + state.break_glass.len())
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
    let full: usize = Screen::ALL
        .iter()
        .map(|s| label(*s, false).chars().count())
        .sum();
    let short = 7 + full + 16 > usize::from(state.size.0);
    let mut x = 7; // after " hoist "
    Screen::ALL
        .iter()
        .map(|screen| {
            let label = label(*screen, short);
            let width = label.chars().count() as u16;
            let tab = (*screen, label, x, x + width);
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

    let who = state
        .me
        .as_ref()
        .map_or(String::new(), |me| sanitize::line(&me.user).into_owned());
    let (status, style) = match &state.connection {
        Connection::Live => ("● live", theme.ok()),
        Connection::Connecting => ("… connecting", theme.warn()),
        Connection::Offline { .. } => ("○ offline", theme.danger()),
    };
    let room = usize::from(area.width.saturating_sub(tabs_end));
    let full = who.chars().count() + status.chars().count() + 2;
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

fn draw_banner(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let (text, style) = match (&state.banner, &state.connection) {
        (Some(banner), _) => {
            let style = match banner.level {
                Level::Info => theme.title(),
                Level::Success => theme.ok(),
                Level::Warning => theme.warn(),
                Level::Error => theme.danger(),
            };
            (sanitize::line(&banner.text).into_owned(), style)
        }
        (None, Connection::Offline { reason, since }) => (
            format!(
                "Offline for {}: {}. Countdowns continue from the last known times; reconnecting…",
                clock(state.now - *since),
                sanitize::line(reason)
            ),
            theme.danger(),
        ),
        _ => return,
    };
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(format!(" {text}"), style))),
        area,
    );
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
            state.activity.len(),
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
