//! The request form, drawn over the body: each field with its problem beside
//! it, red throughout when break-glass is on.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::widgets::block;
use crate::app::form::{Field, RequestForm};
use crate::app::state::State;
use crate::text::sanitize::line as clean;
use crate::text::{format_duration, plural};
use crate::ui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, form: &RequestForm, state: &State, theme: &Theme) {
    let problems = form.problems();
    let danger = form.break_glass;
    let mut lines = Vec::new();
    for field in form.fields() {
        let focused = form.field == field;
        let label_style = if focused { theme.key() } else { theme.muted() };
        let marker = if focused { "▸ " } else { "  " };
        let value: Vec<String> = match field {
            Field::Justification => {
                let mut text: Vec<String> = form
                    .justification
                    .split('\n')
                    .map(|l| clean(l).into_owned())
                    .collect();
                // Keep the end, where typing happens, in view.
                let keep = text.len().saturating_sub(4);
                text.drain(..keep);
                text
            }
            Field::Ticket => vec![clean(&form.ticket).into_owned()],
            Field::Incident => vec![clean(&form.incident).into_owned()],
            Field::Duration if form.duration.trim().is_empty() => {
                vec!["each role's default (type to set one for all)".to_string()]
            }
            Field::Duration => vec![format!(
                "◂ {} ▸  (max {})",
                clean(&form.duration),
                format_duration(
                    form.roles()
                        .map(|r| r.max_duration_secs)
                        .min()
                        .unwrap_or_default()
                )
            )],
            Field::BreakGlass => vec![if form.break_glass {
                "[x] ON: access starts now, reviewed after".into()
            } else {
                "[ ] off (ctrl-b)".into()
            }],
        };
        let problem = problems.for_field(field);
        for (i, text) in value.iter().enumerate() {
            let mut spans = vec![];
            if i == 0 {
                spans.push(Span::styled(
                    format!("{marker}{:<15}", field.label()),
                    label_style,
                ));
            } else {
                spans.push(Span::raw(" ".repeat(17)));
            }
            let mut text = text.clone();
            if focused
                && i + 1 == value.len()
                && field != Field::Duration
                && field != Field::BreakGlass
            {
                text.push('▏');
            }
            let value_style = if field == Field::BreakGlass && form.break_glass {
                theme.break_glass()
            } else {
                theme.text()
            };
            spans.push(Span::styled(text, value_style));
            if i + 1 == value.len() {
                if let Some(problem) = problem {
                    // A problem may quote the broker (a ticket pattern).
                    spans.push(Span::styled(
                        format!("  ✗ {}", clean(problem)),
                        theme.danger(),
                    ));
                } else if matches!(
                    field,
                    Field::Justification | Field::Ticket | Field::Duration
                ) {
                    spans.push(Span::styled("  ✓", theme.ok()));
                }
            }
            lines.push(Line::from(spans));
        }
    }
    lines.push(Line::from(""));
    let role = &form.role;
    let approval = if form.break_glass {
        "Break-glass: active at once; the role's approvers review it afterwards".to_string()
    } else if !form.extra.is_empty() {
        // A bundle: each role goes through its own rule; say so per role.
        form.roles()
            .map(|r| match r.approval.approvals {
                0 => format!("{}: at once", r.id),
                n => format!(
                    "{}: {} from {}",
                    r.id,
                    plural(n as usize, "approval"),
                    r.approval.approver_groups.join(",")
                ),
            })
            .collect::<Vec<_>>()
            .join(" · ")
    } else if role.approval.approvals == 0 {
        "No approval needed: active as soon as you submit".to_string()
    } else {
        format!(
            "Needs {} from {} ({})",
            plural(role.approval.approvals as usize, "approval"),
            role.approval.approver_groups.join(", "),
            role.approval
                .approvers
                .iter()
                .filter(|a| a.as_str() != state.user())
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    lines.push(Line::from(Span::styled(
        clean(&approval).into_owned(),
        if danger {
            theme.break_glass()
        } else {
            theme.muted()
        },
    )));
    if let Some(id) = &form.requested {
        lines.push(Line::from(Span::styled(
            format!("Your request {} for it stays as it is", clean(id)),
            theme.muted(),
        )));
    }
    if form.submitting {
        lines.push(Line::from(Span::styled("Sending…", theme.warn())));
    } else if let Some(error) = &form.error {
        lines.push(Line::from(Span::styled(
            format!("✗ {}", clean(error)),
            theme.danger(),
        )));
        lines.push(Line::from(Span::styled(
            "ctrl-s sends again (safely: never files twice)",
            theme.muted(),
        )));
    }
    let title = if danger {
        Line::from(Span::styled(
            format!(" BREAK-GLASS · {} ", clean(&role.id)),
            theme.break_glass().add_modifier(Modifier::REVERSED),
        ))
    } else {
        Line::from(Span::styled(
            if form.extra.is_empty() {
                format!(" Request {} · {} ", clean(&role.id), clean(&role.name))
            } else {
                let ids: Vec<String> = form.roles().map(|r| clean(&r.id).into_owned()).collect();
                format!(" Request {} roles together: {} ", ids.len(), ids.join(", "))
            },
            theme.title(),
        ))
    };
    let mut frame_block = block(title, theme);
    if danger {
        frame_block = frame_block.border_style(theme.break_glass());
    }
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(frame_block), area);
}
