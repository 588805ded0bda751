//! The Grants screen: every active grant with a live countdown and a gauge of
//! the time left, coloured as the end nears.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::widgets::{bar, block, empty_notice, field, window_start};
use crate::app::state::State;
use crate::text::sanitize::{line as clean, lines as clean_lines};
use crate::text::{clock, local_time};
use crate::ui::theme::Theme;

fn split(body: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Min(5), Constraint::Length(8)]).areas(body)
}

pub fn list_area(body: Rect) -> Rect {
    split(body)[0]
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let [list, details] = split(body);
    let height = usize::from(list.height.saturating_sub(3));
    let start = window_start(state.cursors.grants, state.grants.len(), height);
    let gauge_width = usize::from(list.width.saturating_sub(60)).clamp(6, 40);
    let rows: Vec<Row> = state.grants[start..]
        .iter()
        .take(height)
        .enumerate()
        .map(|(i, grant)| {
            let left = state.time_left(grant);
            let total = (grant.expires_at - grant.starts_at)
                .num_milliseconds()
                .max(1) as f64;
            let fraction = left.num_milliseconds() as f64 / total;
            let style = theme.countdown(left);
            let flag = if grant.break_glass { "!" } else { "" };
            let row = Row::new(vec![
                Cell::from(format!("{flag}{}", clean(&grant.role))),
                if state.revoking.contains(&grant.id) {
                    // Sent, not yet confirmed: never shown as done.
                    Cell::from(Span::styled("revoking…", theme.warn()))
                } else {
                    Cell::from(Span::styled(clock(left), style))
                },
                Cell::from(Span::styled(bar(fraction, gauge_width), style)),
                Cell::from(local_time(grant.expires_at)),
            ]);
            if start + i == state.cursors.grants {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new(["Role", "Left", "", "Ends"]).style(theme.muted());
    let widths = [
        Constraint::Length(22),
        Constraint::Length(10),
        Constraint::Length(gauge_width as u16),
        Constraint::Min(12),
    ];
    let title = Line::from(Span::styled(
        format!(" Active grants ({}) ", state.grants.len()),
        theme.title(),
    ));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(title, theme)),
        list,
    );
    if state.grants.is_empty() {
        empty_notice(
            frame,
            list,
            if state.loaded {
                "No active access. Request a role from Roles (1)."
            } else {
                "loading…"
            },
            theme,
        );
    }

    let Some(grant) = state.selected_grant() else {
        frame.render_widget(block(" Details ", theme), details);
        return;
    };
    let mut lines = vec![
        field("Grant", &grant.id, theme.muted(), theme),
        field("Started", &local_time(grant.starts_at), theme.text(), theme),
    ];
    if let Some(reference) = grant.ticket.as_ref().or(grant.incident.as_ref()) {
        lines.push(field("Reference", reference, theme.text(), theme));
    }
    if grant.break_glass {
        lines.push(field(
            "Break-glass",
            "yes: reviewed after the fact",
            theme.break_glass(),
            theme,
        ));
    }
    let mut justification = vec![Span::styled(format!("{:<15}", "Why"), theme.muted())];
    justification.push(Span::raw(clean_lines(&grant.justification).join(" ")));
    lines.push(Line::from(justification));
    let title = Line::from(Span::styled(
        format!(" {} ", clean(&grant.role_name)),
        theme.title(),
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(title, theme)),
        details,
    );
}
