//! The Reviews screen: what waits for me to decide, and break-glass
//! activations to acknowledge, with everything needed to decide on one screen.

use hoist_api::AccessRequest;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::WIDE;
use super::requests::reviewers;
use super::widgets::{block, field, window_start};
use crate::app::state::{ReviewRow, State};
use crate::text::sanitize::{line as clean, lines as clean_lines};
use crate::text::{ago, clock, fit, format_duration, local_time, width_of};
use crate::ui::theme::Theme;

fn split(body: Rect) -> [Rect; 2] {
    if body.width >= WIDE {
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body)
    } else {
        Layout::vertical([Constraint::Length(7), Constraint::Min(6)]).areas(body)
    }
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let [list, details] = split(body);
    draw_list(frame, list, state, theme);
    draw_details(frame, details, state, theme);
}

fn row_line<'a>(
    request: &AccessRequest,
    right: String,
    state: &State,
    theme: &Theme,
    width: usize,
    selected: bool,
) -> Line<'a> {
    let claim = match &request.claim {
        Some(c) if c.by == state.user() => " (mine)".to_string(),
        Some(c) => format!(" ({} looking)", clean(&c.by)),
        None => String::new(),
    };
    let left = format!(
        " {} · {}{claim}",
        clean(&request.requester),
        clean(state.role_label(&request.role, &request.role_name))
    );
    let left = fit(&left, width.saturating_sub(width_of(&right) + 1));
    let pad = width.saturating_sub(width_of(&left) + width_of(&right));
    let line = Line::from(vec![
        Span::styled(left, theme.text()),
        Span::raw(" ".repeat(pad)),
        Span::styled(right, theme.warn()),
    ]);
    if selected {
        line.style(theme.selected())
    } else {
        line
    }
}

fn draw_list(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let width = usize::from(area.width.saturating_sub(2));
    let rows = state.review_rows();
    let mut lines = Vec::new();
    lines.push(Line::from(Span::styled(
        format!("To decide ({})", state.queue.len()),
        theme.title(),
    )));
    let mut drawn_break_glass_header = false;
    let height = usize::from(area.height.saturating_sub(4));
    let start = window_start(state.cursors.reviews, rows.len(), height);
    for (i, row) in rows.iter().enumerate().skip(start).take(height) {
        let selected = i == state.cursors.reviews;
        match row {
            ReviewRow::Pending(index) => {
                let request = &state.queue[*index];
                let lapses = request
                    .lapses_at
                    .map(|at| format!("lapses {}", clock(at - state.now)))
                    .unwrap_or_default();
                lines.push(row_line(request, lapses, state, theme, width, selected));
            }
            ReviewRow::BreakGlass(index) => {
                if !drawn_break_glass_header {
                    drawn_break_glass_header = true;
                    lines.push(Line::from(Span::styled(
                        format!("Break-glass to acknowledge ({})", state.break_glass.len()),
                        theme.break_glass(),
                    )));
                }
                let request = &state.break_glass[*index];
                lines.push(row_line(
                    request,
                    ago(request.created_at, state.now),
                    state,
                    theme,
                    width,
                    selected,
                ));
            }
        }
    }
    if rows.is_empty() {
        let text = if state
            .me
            .as_ref()
            .is_some_and(|me| me.approver_for.is_empty())
        {
            "You approve no roles."
        } else {
            "Nothing waits for you."
        };
        lines.push(Line::from(Span::styled(text, theme.muted())));
    } else if !drawn_break_glass_header && !state.break_glass.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("Break-glass to acknowledge ({}) ↓", state.break_glass.len()),
            theme.break_glass(),
        )));
    }
    let title = Line::from(Span::styled(" Reviews ", theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block(title, theme)), area);
}

fn draw_details(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some((row, r)) = state.selected_review() else {
        frame.render_widget(block(" Request ", theme), area);
        return;
    };
    let mut lines = vec![
        field("Requester", &r.requester, theme.text(), theme),
        field(
            "Role",
            &format!("{} ({})", r.role, r.role_name),
            theme.text(),
            theme,
        ),
        field(
            "Duration",
            &format_duration(r.duration_secs),
            theme.text(),
            theme,
        ),
    ];
    match (&r.ticket, &r.incident) {
        (Some(t), Some(i)) => lines.push(field(
            "Ticket",
            &format!("{t} · incident {i}"),
            theme.text(),
            theme,
        )),
        (Some(t), None) => lines.push(field("Ticket", t, theme.text(), theme)),
        (None, Some(i)) => lines.push(field("Incident", i, theme.text(), theme)),
        (None, None) => lines.push(field("Ticket", "none", theme.muted(), theme)),
    }
    match row {
        ReviewRow::Pending(_) => {
            if let Some(at) = r.lapses_at {
                let text = format!("in {} ({})", clock(at - state.now), local_time(at));
                lines.push(field("Lapses", &text, theme.warn(), theme));
            }
            let progress = format!(
                "{} of {} · {}",
                r.reviews.len(),
                r.approvals_required,
                reviewers(r)
            );
            lines.push(field("Approvals", &progress, theme.text(), theme));
            if let Some(claim) = &r.claim {
                let text = format!("{} until {}", claim.by, local_time(claim.until));
                lines.push(field("Claimed by", &text, theme.warn(), theme));
            }
        }
        ReviewRow::BreakGlass(_) => {
            lines.push(field(
                "Break-glass",
                &format!("activated {}", ago(r.created_at, state.now)),
                theme.break_glass(),
                theme,
            ));
        }
    }
    // Where the grant's access is, as its holder sees it.
    if let Some(grant) = r
        .grant_id
        .as_ref()
        .and_then(|id| state.reviewed_grants.get(id))
        && let Some(access) = &grant.access
    {
        let (line, tone) = crate::app::access::describe(grant, access, state.now);
        lines.push(field(
            "Access",
            &line,
            super::grants::access_style(tone, theme),
            theme,
        ));
    }
    lines.push(Line::from(Span::styled("Justification", theme.muted())));
    lines.extend(clean_lines(&r.justification).into_iter().map(Line::from));
    if state.capabilities.history {
        history_lines(&mut lines, r, state, theme);
    }
    let title = Line::from(Span::styled(format!(" {} ", clean(&r.id)), theme.title()));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(title, theme)),
        area,
    );
}

/// The requester's recent requests for the role, to decide with.
fn history_lines(lines: &mut Vec<Line<'_>>, r: &AccessRequest, state: &State, theme: &Theme) {
    lines.push(Line::from(Span::styled(
        format!("{}'s recent requests for this role", clean(&r.requester)),
        theme.muted(),
    )));
    match state.histories.get(&r.id) {
        None => lines.push(Line::from(Span::styled("loading…", theme.muted()))),
        Some(history) if history.recent.is_empty() => {
            lines.push(Line::from(Span::styled("none", theme.muted())))
        }
        Some(history) => {
            for past in history.recent.iter().take(5) {
                let reason = past
                    .reason
                    .as_deref()
                    .map(|x| format!(" · {}", clean(x)))
                    .unwrap_or_default();
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{:<10}", past.state.as_str()),
                        theme.request_state(past.state),
                    ),
                    Span::raw(format!(
                        "{} · {}{reason}",
                        ago(past.created_at, state.now),
                        format_duration(past.duration_secs)
                    )),
                ]));
            }
        }
    }
}
