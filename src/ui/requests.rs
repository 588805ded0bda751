//! The Requests screen: my requests with their live state, who reviewed, why
//! one was denied; cancel a pending one.

use hoist_api::{AccessRequest, Decision, RequestKind, RequestState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::WIDE;
use super::widgets::{block, empty_notice, field, tier_badge, window_start};
use crate::app::state::State;
use crate::text::sanitize::{line as clean, lines as clean_lines};
use crate::text::{ago, clock, format_duration};
use crate::ui::theme::Theme;

fn split(body: Rect) -> [Rect; 2] {
    if body.width >= WIDE {
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body)
    } else {
        Layout::vertical([Constraint::Min(5), Constraint::Length(9)]).areas(body)
    }
}

pub fn list_area(body: Rect) -> Rect {
    split(body)[0]
}

/// "bob ✓ dave ✗" for the reviews so far.
pub fn reviewers(request: &AccessRequest) -> String {
    request
        .reviews
        .iter()
        .map(|r| {
            let mark = if r.decision == Decision::Approve {
                "✓"
            } else {
                "✗"
            };
            format!("{} {mark}", clean(&r.reviewer))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to say about where a request stands now.
pub fn standing(request: &AccessRequest, state: &State) -> String {
    match request.state {
        RequestState::Pending => match request.lapses_at {
            Some(at) => format!(
                "{}/{} · lapses in {}",
                request
                    .reviews
                    .iter()
                    .filter(|r| r.decision == Decision::Approve)
                    .count(),
                request.approvals_required,
                clock(at - state.now)
            ),
            None => String::new(),
        },
        RequestState::Active => match state
            .grants
            .iter()
            .find(|g| Some(&g.id) == request.grant_id.as_ref())
        {
            Some(grant) => format!("{} left", clock(state.time_left(grant))),
            None => String::new(),
        },
        _ => request
            .reason
            .as_deref()
            .map(|r| clean(r).into_owned())
            .unwrap_or_default(),
    }
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let [list, details] = split(body);
    let height = usize::from(list.height.saturating_sub(3));
    let start = window_start(state.cursors.requests, state.requests.len(), height);
    let rows: Vec<Row> = state.requests[start..]
        .iter()
        .take(height)
        .enumerate()
        .map(|(i, r)| {
            let kind = if r.kind == RequestKind::Extension {
                "+"
            } else {
                ""
            };
            let bg = if r.break_glass { "!" } else { "" };
            let row = Row::new(vec![
                Cell::from(Span::styled(r.state.as_str(), theme.request_state(r.state))),
                Cell::from(Line::from({
                    let mut spans = tier_badge(r.tier, theme);
                    spans.push(Span::raw(format!(
                        "{bg}{kind}{}",
                        clean(state.role_label(&r.role, &r.role_name))
                    )));
                    spans
                })),
                Cell::from(ago(r.created_at, state.now)),
                Cell::from(format_duration(r.duration_secs)),
                Cell::from(reviewers(r)),
                Cell::from(standing(r, state)),
            ]);
            if start + i == state.cursors.requests {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new(["State", "Role", "Filed", "For", "Reviews", "Now"]).style(theme.muted());
    let widths = [
        Constraint::Length(10),
        Constraint::Length(20),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    let title = Line::from(Span::styled(
        format!(" My requests ({}) ", state.requests.len()),
        theme.title(),
    ));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block(title, theme));
    frame.render_widget(table, list);
    if state.requests.is_empty() {
        empty_notice(
            frame,
            list,
            if state.loaded {
                "No requests yet. File one from Roles (1)."
            } else {
                "loading…"
            },
            theme,
        );
    }
    draw_details(frame, details, state.selected_request(), state, theme);
}

pub fn draw_details(
    frame: &mut Frame,
    area: Rect,
    request: Option<&AccessRequest>,
    state: &State,
    theme: &Theme,
) {
    let Some(r) = request else {
        frame.render_widget(block(" Details ", theme), area);
        return;
    };
    let mut lines = vec![
        field("Request", &r.id, theme.muted(), theme),
        field(
            "State",
            r.state.as_str(),
            theme.request_state(r.state),
            theme,
        ),
    ];
    if let Some(ticket) = &r.ticket {
        lines.push(field("Ticket", ticket, theme.text(), theme));
    }
    if let Some(incident) = &r.incident {
        lines.push(field("Incident", incident, theme.text(), theme));
    }
    if r.break_glass {
        let ack = match &r.acknowledgement {
            Some(a) => format!("acknowledged by {}", clean(&a.by)),
            None => "awaiting acknowledgement".into(),
        };
        lines.push(field("Break-glass", &ack, theme.break_glass(), theme));
    }
    for review in &r.reviews {
        let verdict = if review.decision == Decision::Approve {
            "approved"
        } else {
            "denied"
        };
        let comment = review
            .comment
            .as_deref()
            .map(|c| format!(": {}", clean(c)))
            .unwrap_or_default();
        lines.push(field(
            "Review",
            &format!("{} {verdict}{comment}", review.reviewer),
            theme.text(),
            theme,
        ));
    }
    if let Some(reason) = &r.reason {
        lines.push(field("Reason", reason, theme.warn(), theme));
    }
    lines.push(Line::from(Span::styled("Justification", theme.muted())));
    lines.extend(clean_lines(&r.justification).into_iter().map(Line::from));
    let title = Line::from(Span::styled(
        format!(" {} ", clean(&r.role_name)),
        theme.title(),
    ));
    let _ = state;
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(title, theme)),
        area,
    );
}
