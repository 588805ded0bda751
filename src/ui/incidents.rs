//! The Incidents screen: everything filed under one incident reference, mine
//! and (for approvers) everyone's, grouped by person; one key revokes all of
//! mine.

use hoist_api::{GrantState, RequestState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::widgets::{block, window_start};
use crate::app::state::State;
use crate::text::sanitize::line as clean;
use crate::text::{clock, plural};
use crate::ui::theme::Theme;

fn split(body: Rect) -> [Rect; 2] {
    Layout::horizontal([Constraint::Length(22), Constraint::Min(20)]).areas(body)
}

pub fn list_area(body: Rect) -> Rect {
    split(body)[0]
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let [list, details] = split(body);
    let refs = state.incident_refs();
    let height = usize::from(list.height.saturating_sub(2));
    let start = window_start(state.cursors.incidents, refs.len(), height);
    let mut lines: Vec<Line> = refs[start..]
        .iter()
        .take(height)
        .enumerate()
        .map(|(i, reference)| {
            let line = Line::from(Span::raw(format!(" {}", clean(reference))));
            if start + i == state.cursors.incidents {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    if refs.is_empty() {
        lines.push(Line::from(Span::styled("No incidents yet.", theme.muted())));
    }
    frame.render_widget(
        Paragraph::new(lines).block(block(
            Line::from(Span::styled(" Incidents ", theme.title())),
            theme,
        )),
        list,
    );

    let selected = state.selected_incident();
    let Some(view) = state
        .incident
        .as_ref()
        .filter(|v| Some(&v.incident) == selected.as_ref())
    else {
        let text = if selected.is_some() { "loading…" } else { "" };
        frame.render_widget(
            Paragraph::new(Span::styled(text, theme.muted())).block(block(" Incident ", theme)),
            details,
        );
        return;
    };
    let mut people: Vec<&str> = view.requests.iter().map(|r| r.requester.as_str()).collect();
    people.sort_unstable();
    people.dedup();
    // Mine first, then everyone else by name.
    people.sort_by_key(|p| *p != state.user());
    let mut rows = Vec::new();
    for person in people {
        for request in view.requests.iter().filter(|r| r.requester == person) {
            let grant = view
                .grants
                .iter()
                .find(|g| Some(&g.id) == request.grant_id.as_ref());
            let (now, style) = match grant {
                Some(g) if g.state == GrantState::Active && state.revoking.contains(&g.id) => {
                    ("revoking…".to_string(), theme.warn())
                }
                Some(g)
                    if g.state == GrantState::Active
                        && g.expires_at > state.now
                        && state.revoke_refused.contains_key(&g.id) =>
                {
                    ("revoke refused".to_string(), theme.danger())
                }
                Some(g) if g.state == GrantState::Active && g.expires_at > state.now => {
                    let left = g.expires_at - state.now;
                    (format!("{} left", clock(left)), theme.countdown(left))
                }
                // Past its end, whatever the view last heard.
                Some(g) if g.state == GrantState::Active => (
                    "expired".to_string(),
                    theme.grant_state(GrantState::Expired),
                ),
                Some(g) => (
                    format!(
                        "{} {}",
                        g.state.as_str(),
                        g.revoked_by
                            .as_deref()
                            .map(|b| format!("by {}", clean(b)))
                            .unwrap_or_default()
                    ),
                    theme.grant_state(g.state),
                ),
                None => (
                    request.state.to_string(),
                    theme.request_state(request.state),
                ),
            };
            let state_style = theme.request_state(request.state);
            let who = if person == state.user() {
                format!("{} (you)", clean(person))
            } else {
                clean(person).into_owned()
            };
            let mut cells = vec![
                Cell::from(who),
                Cell::from(clean(&request.role).into_owned()),
                Cell::from(Span::styled(request.state.as_str(), state_style)),
                Cell::from(Span::styled(now, style)),
            ];
            // Approvers see where each grant's access is, as its holder does.
            if let Some((g, access)) = grant.and_then(|g| g.access.as_ref().map(|a| (g, a))) {
                let (mut line, tone) = crate::app::access::describe(g, access, state.now);
                // Narrow, the state alone ("live", "failed"): the target
                // and reason are on the holder's and the reviewer's screens.
                if details.width < 100
                    && let Some((state_word, _)) = line.split_once(" at ")
                {
                    line = state_word.to_string();
                }
                cells.push(Cell::from(Span::styled(
                    line,
                    super::grants::access_style(tone, theme),
                )));
            }
            rows.push(Row::new(cells));
        }
    }
    let active_mine = view
        .grants
        .iter()
        .filter(|g| g.holder == state.user() && g.state == GrantState::Active)
        .count();
    let pending = view
        .requests
        .iter()
        .filter(|r| r.state == RequestState::Pending)
        .count();
    let title = format!(
        " {}: {}, {} pending, {} of yours active ",
        clean(&view.incident),
        plural(view.requests.len(), "request"),
        pending,
        active_mine
    );
    let with_access = view.grants.iter().any(|g| g.access.is_some());
    let header = if with_access {
        Row::new(["Who", "Role", "State", "Now", "Access"])
    } else {
        Row::new(["Who", "Role", "State", "Now"])
    }
    .style(theme.muted());
    // 80 columns leave 56 inside the frame: "3:59:30 left" must fit whole.
    let mut widths = vec![
        Constraint::Length(14),
        Constraint::Length(18),
        Constraint::Length(9),
        Constraint::Min(12),
    ];
    if with_access {
        widths[3] = Constraint::Length(12);
        widths.push(Constraint::Min(10));
    }
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(Line::from(Span::styled(title, theme.title())), theme)),
        details,
    );
}
