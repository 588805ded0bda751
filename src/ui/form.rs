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
use crate::text::{format_duration, plural, width_of, wrap};
use crate::ui::theme::Theme;

/// Cells before a field's value: the marker and the label.
const LABEL: usize = 17;

pub fn draw(frame: &mut Frame, area: Rect, form: &RequestForm, state: &State, theme: &Theme) {
    let danger = form.break_glass;
    let inner = usize::from(area.width.saturating_sub(2));
    let rows = usize::from(area.height.saturating_sub(2));
    let after = summary(form, state, theme, inner);
    // As much of the justification as the height leaves room for: the
    // end, where typing happens, in view.
    let mut lines = fields(form, theme, inner, usize::MAX);
    let over = (lines.len() + after.len()).saturating_sub(rows);
    if over > 0 {
        let justification = justification(form, inner).len();
        lines = fields(
            form,
            theme,
            inner,
            justification.saturating_sub(over).max(1),
        );
    }
    lines.extend(after);
    let role = &form.role;
    let title = if danger {
        let what = if form.extra.is_empty() {
            clean(&role.id).into_owned()
        } else {
            let ids: Vec<String> = form.roles().map(|r| clean(&r.id).into_owned()).collect();
            format!("{} roles: {}", ids.len(), ids.join(", "))
        };
        Line::from(Span::styled(
            format!(" BREAK-GLASS · {what} "),
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

/// The fields, each with its problem beside it (or below, when it does not
/// fit), showing the last `keep` lines of the justification.
fn fields(form: &RequestForm, theme: &Theme, inner: usize, keep: usize) -> Vec<Line<'static>> {
    let problems = form.problems();
    let mut lines = Vec::new();
    for field in form.fields() {
        let focused = form.field == field;
        let label_style = if focused { theme.key() } else { theme.muted() };
        let marker = if focused { "▸ " } else { "  " };
        let value: Vec<String> = match field {
            Field::Justification => {
                let mut text = justification(form, inner);
                text.drain(..text.len().saturating_sub(keep));
                text
            }
            Field::Ticket => vec![clean(&form.ticket).into_owned()],
            Field::Incident => vec![clean(&form.incident).into_owned()],
            Field::Duration if form.duration.trim().is_empty() => vec![if form.extra.is_empty() {
                "the role's default".to_string()
            } else {
                "each role's default (type to set one for all)".to_string()
            }],
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
                spans.push(Span::raw(" ".repeat(LABEL)));
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
            let used = LABEL + width_of(&text);
            spans.push(Span::styled(text, value_style));
            if i + 1 == value.len() {
                if let Some(problem) = problem {
                    // A problem may quote the broker (a ticket pattern).
                    let problem = format!("✗ {}", clean(problem));
                    if used + 2 + width_of(&problem) <= inner {
                        spans.push(Span::raw("  "));
                        spans.push(Span::styled(problem, theme.danger()));
                    } else {
                        // On a line of its own, where it can be read whole.
                        lines.push(Line::from(spans));
                        spans = vec![
                            Span::raw(" ".repeat(LABEL)),
                            Span::styled(problem, theme.danger()),
                        ];
                    }
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
    lines
}

/// The justification as drawn: sanitised, each line wrapped to the room
/// beside the labels, leaving a cell for the cursor.
fn justification(form: &RequestForm, inner: usize) -> Vec<String> {
    let room = inner.saturating_sub(LABEL + 1).max(8);
    form.justification
        .split('\n')
        .flat_map(|l| wrap(&clean(l), room))
        .collect()
}

/// What the form files under, and how its filing goes, below the fields.
fn summary(form: &RequestForm, state: &State, theme: &Theme, inner: usize) -> Vec<Line<'static>> {
    let danger = form.break_glass;
    let mut lines = vec![Line::from("")];
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
    let approval_style = if danger {
        theme.break_glass()
    } else {
        theme.muted()
    };
    for line in wrap(&clean(&approval), inner) {
        lines.push(Line::from(Span::styled(line, approval_style)));
    }
    let waiting = match form.requested.as_slice() {
        [] => None,
        [(_, id)] if form.extra.is_empty() => {
            Some(format!("Your request {} for it stays as it is", clean(id)))
        }
        [(role, id)] => Some(format!(
            "Your request {} for {} stays as it is",
            clean(id),
            clean(role)
        )),
        requested => {
            let each: Vec<String> = requested
                .iter()
                .map(|(role, id)| format!("{} for {}", clean(id), clean(role)))
                .collect();
            Some(format!(
                "Your requests stay as they are: {}",
                each.join(", ")
            ))
        }
    };
    let set_aside = (!form.set_aside.is_empty()).then(|| {
        let each: Vec<String> = form
            .set_aside
            .iter()
            .map(|(role, id, _)| format!("{} ({})", clean(&role.id), clean(id)))
            .collect();
        format!(
            "Waiting for approval, so not in this request: {}; ctrl-b breaks glass on every \
             role, these with them",
            each.join(", ")
        )
    });
    for text in waiting.into_iter().chain(set_aside) {
        for line in wrap(&text, inner) {
            lines.push(Line::from(Span::styled(line, theme.muted())));
        }
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
    lines
}
