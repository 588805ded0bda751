//! The Activity screen: a timeline of my requests, grants and audit events.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::widgets::{block, window_start};
use crate::app::state::State;
use crate::text::local_stamp;
use crate::text::sanitize::line as clean;
use crate::ui::theme::Theme;

pub fn list_area(body: Rect) -> Rect {
    body
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let height = usize::from(body.height.saturating_sub(3));
    let events = state.visible_activity();
    let start = window_start(state.cursors.activity, events.len(), height);
    let rows: Vec<Row> = events[start..]
        .iter()
        .take(height)
        .enumerate()
        .map(|(i, event)| {
            let at = local_stamp(event.at);
            let subject = match &event.subject {
                Some(s) if *s != event.actor => format!("→ {}", clean(s)),
                _ => String::new(),
            };
            let row = Row::new(vec![
                Cell::from(Span::styled(at, theme.muted())),
                Cell::from(clean(event.kind.as_str()).into_owned()),
                Cell::from(clean(&event.actor).into_owned()),
                Cell::from(
                    event
                        .role
                        .as_deref()
                        .map(|r| clean(r).into_owned())
                        .unwrap_or_default(),
                ),
                Cell::from(subject),
                Cell::from(
                    event
                        .reason
                        .as_deref()
                        .map(|r| clean(r).into_owned())
                        .unwrap_or_default(),
                ),
            ]);
            if start + i == state.cursors.activity {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new(["When", "What", "Who", "Role", "About", "Why"]).style(theme.muted());
    let widths = [
        Constraint::Length(15),
        Constraint::Length(17),
        Constraint::Length(8),
        Constraint::Length(18),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let title = match state.actors.label() {
        Some(whose) => format!(
            " Activity: {whose} ({} of {}) ",
            events.len(),
            state.activity.len()
        ),
        None => format!(" Activity ({}) ", events.len()),
    };
    let title = Line::from(Span::styled(title, theme.title()));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(title, theme)),
        body,
    );
    if events.is_empty() {
        let inner = Rect {
            y: body.y + 2,
            height: 1,
            x: body.x + 2,
            width: body.width.saturating_sub(4),
        };
        frame.render_widget(
            Paragraph::new(Span::styled("Nothing yet.", theme.muted())),
            inner,
        );
    }
}
