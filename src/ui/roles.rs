//! The Roles screen: eligible roles with a fuzzy filter, favourites on top,
//! each role's grant or open request on its row, and its policy terms.

use hoist_api::{RequestState, Role};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::WIDE;
use super::widgets::{block, field, tier_badge, window_start};
use crate::app::state::State;
use crate::text::sanitize::line as clean;
use crate::text::{clock, fit, format_duration, width_of};
use crate::ui::theme::Theme;

fn split(body: Rect) -> [Rect; 2] {
    if body.width >= WIDE {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body)
    } else {
        Layout::vertical([Constraint::Min(5), Constraint::Length(9)]).areas(body)
    }
}

pub fn list_area(body: Rect) -> Rect {
    split(body)[0]
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let [list, details] = split(body);
    draw_list(frame, list, state, theme);
    draw_details(frame, details, state, theme);
}

fn draw_list(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let mut title = vec![Span::styled(
        format!(
            " Roles ({}/{}) ",
            state.visible_roles.len(),
            state.roles.len()
        ),
        theme.title(),
    )];
    if state.filtering || !state.filter.is_empty() {
        let cursor = if state.filtering { "▏" } else { "" };
        title.push(Span::styled(
            format!("/{}{cursor} ", clean(&state.filter)),
            theme.warn(),
        ));
    }
    let height = usize::from(area.height.saturating_sub(2));
    let start = window_start(state.cursors.roles, state.visible_roles.len(), height);
    let width = usize::from(area.width.saturating_sub(2));
    let lines: Vec<Line> = state.visible_roles[start..]
        .iter()
        .take(height)
        .enumerate()
        .map(|(row, index)| {
            let role = &state.roles[*index];
            let selected = start + row == state.cursors.roles;
            role_line(role, state, theme, width, selected)
        })
        .collect();
    let empty = state.roles.is_empty() || state.visible_roles.is_empty();
    let content = if empty {
        let text = if !state.loaded {
            "loading…"
        } else if state.roles.is_empty() {
            "You are not eligible for any role."
        } else {
            "No role matches the filter. Esc clears it."
        };
        vec![Line::from(Span::styled(text, theme.muted()))]
    } else {
        lines
    };
    frame.render_widget(
        Paragraph::new(content).block(block(Line::from(title), theme)),
        area,
    );
}

fn role_line<'a>(
    role: &Role,
    state: &State,
    theme: &Theme,
    width: usize,
    selected: bool,
) -> Line<'a> {
    let star = if state.marked.contains(&role.id) {
        "▣ "
    } else if state.favourites.contains(&role.id) {
        "★ "
    } else {
        "  "
    };
    let (status, status_style) = if let Some(grant) = state.grant_for(&role.id) {
        let left = state.time_left(grant);
        (format!("● {}", clock(left)), theme.countdown(left))
    } else if let Some(request) = state.open_request_for(&role.id) {
        let text = if request.state == RequestState::Approved && request.starts_at.is_none() {
            "◌ propagating"
        } else if request.state == RequestState::Approved {
            "◌ scheduled"
        } else {
            "◌ pending"
        };
        (text.to_string(), theme.warn())
    } else {
        (String::new(), theme.text())
    };
    let id_column = format!("{:<24} ", clean(&role.id));
    let badge = tier_badge(role.tier, theme);
    let badge_width: usize = badge.iter().map(|s| width_of(&s.content)).sum();
    let left = 2 + badge_width + width_of(&id_column);
    let status_width = width_of(&status);
    let name = fit(
        &clean(&role.name),
        width.saturating_sub(left + status_width + 1),
    );
    let pad = width.saturating_sub(left + width_of(&name) + status_width);
    let mut spans = vec![Span::styled(star, theme.favourite())];
    spans.extend(badge);
    spans.extend([
        Span::styled(id_column, theme.text()),
        Span::styled(name, theme.muted()),
        Span::raw(" ".repeat(pad)),
        Span::styled(status, status_style),
    ]);
    let line = Line::from(spans);
    if selected {
        line.style(theme.selected())
    } else {
        line
    }
}

fn draw_details(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some(role) = state.selected_role() else {
        frame.render_widget(block(" Details ", theme), area);
        return;
    };
    let approvals = if role.approval.approvals == 0 {
        "none: active as soon as requested".to_string()
    } else {
        format!(
            "{} from {} ({})",
            role.approval.approvals,
            role.approval.approver_groups.join(", "),
            role.approval.approvers.join(", ")
        )
    };
    let ticket = match (role.ticket.required, &role.ticket.pattern) {
        (true, Some(p)) => format!("required, {p}"),
        (true, None) => "required".into(),
        (false, Some(p)) => format!("optional, {p}"),
        (false, None) => "optional".into(),
    };
    let mut lines = Vec::new();
    if let Some(tier) = role.tier {
        lines.push(field(
            "Risk tier",
            &tier_words(tier),
            theme.tier(tier),
            theme,
        ));
    }
    lines.push(field("Scope", &role.scope, theme.text(), theme));
    if let Some(target) = &role.target {
        // Where a grant of this role creates real access.
        lines.push(field(
            "Access at",
            &format!("{} ({})", target.name, target.kind),
            theme.text(),
            theme,
        ));
    }
    lines.extend([
        field(
            "Duration",
            &format!(
                "{} default, {} max",
                format_duration(role.default_duration_secs),
                format_duration(role.max_duration_secs)
            ),
            theme.text(),
            theme,
        ),
        field("Approvals", &approvals, theme.text(), theme),
        field(
            "Break-glass",
            if role.break_glass {
                "allowed for you"
            } else {
                "no"
            },
            if role.break_glass {
                theme.break_glass()
            } else {
                theme.text()
            },
            theme,
        ),
        field("Ticket", &ticket, theme.text(), theme),
        field(
            "Justification",
            &format!("at least {} characters", role.min_justification),
            theme.text(),
            theme,
        ),
    ]);
    if !role.description.is_empty() {
        lines.push(Line::from(Span::styled(
            clean(&role.description).into_owned(),
            theme.muted(),
        )));
    }
    let title = Line::from(Span::styled(
        format!(" {} ", clean(&role.name)),
        theme.title(),
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(title, theme)),
        area,
    );
}

/// A tier as its badge says it, with what it means.
pub fn tier_words(tier: u8) -> String {
    let meaning = match tier {
        0 => "most critical",
        1 => "critical",
        2 => "sensitive",
        _ => "routine",
    };
    format!("T{tier} · {meaning}")
}
