//! Small pieces several screens draw: list windows, gauges, labelled detail
//! lines.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};

use crate::text::sanitize;
use crate::ui::theme::Theme;

/// First row to draw so the cursor stays visible, without any scroll state.
pub fn window_start(cursor: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    cursor.saturating_sub(height - 1).min(len - height)
}

/// A text bar of `width` cells, filled in proportion to `fraction`.
pub fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// A muted line inside an empty list, under its header row.
pub fn empty_notice(frame: &mut Frame, list: Rect, text: &str, theme: &Theme) {
    let inner = Rect {
        y: list.y + 2,
        height: 1,
        x: list.x + 2,
        width: list.width.saturating_sub(4),
    };
    frame.render_widget(Paragraph::new(Span::styled(text, theme.muted())), inner);
}

pub fn block<'a>(title: impl Into<Line<'a>>, theme: &Theme) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme.muted())
        .title(title)
}

/// `label  value` with the value sanitised.
pub fn field<'a>(label: &'a str, value: &str, style: Style, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{label:<15}"), theme.muted()),
        Span::styled(sanitize::line(value).into_owned(), style),
    ])
}

/// A role's risk tier as a badge (`T0 `), or nothing where the broker has
/// no tiers; the trailing space keeps it off what follows.
pub fn tier_badge<'a>(tier: Option<u8>, theme: &Theme) -> Vec<Span<'a>> {
    match tier {
        Some(t) => vec![Span::styled(format!("T{t}"), theme.tier(t)), Span::raw(" ")],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_cursor() {
        assert_eq!(window_start(0, 100, 10), 0);
        assert_eq!(window_start(9, 100, 10), 0);
        assert_eq!(window_start(10, 100, 10), 1);
        assert_eq!(window_start(99, 100, 10), 90);
        assert_eq!(window_start(5, 3, 10), 0);
    }

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(bar(2.0, 2), "██");
    }
}
