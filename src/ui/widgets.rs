//! Small pieces several screens draw: list windows, gauges, relative times,
//! labelled detail lines.

use chrono::{DateTime, TimeDelta, Utc};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};

use crate::sanitize;
use crate::theme::Theme;

/// First row to draw so the cursor stays visible, without any scroll state.
pub fn window_start(cursor: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    cursor.saturating_sub(height - 1).min(len - height)
}

/// Display width of text in terminal cells.
pub fn width_of(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// Text cut to at most `width` cells, with an ellipsis when cut.
pub fn fit(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// A text bar of `width` cells, filled in proportion to `fraction`.
pub fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// "just now", "5m ago", "3h ago", "2d ago"; or "in 5m" for the future.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = now - at;
    if delta < TimeDelta::zero() {
        return format!("in {}", span(-delta));
    }
    if delta < TimeDelta::minutes(1) {
        return "just now".into();
    }
    format!("{} ago", span(delta))
}

/// A duration in its largest sensible unit: "45s", "12m", "3h", "2d".
pub fn span(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d", s / 86_400),
    }
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
    fn bars_and_spans() {
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(bar(2.0, 2), "██");
        assert_eq!(span(TimeDelta::seconds(5400)), "1h30m");
        let now = Utc::now();
        assert_eq!(ago(now - TimeDelta::minutes(5), now), "5m ago");
        assert_eq!(ago(now + TimeDelta::minutes(5), now), "in 5m");
    }
}
