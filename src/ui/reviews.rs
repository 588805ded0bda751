//! The Reviews screen: what waits for me to decide, and break-glass
//! activations to acknowledge, with everything needed to decide on one screen.

use hoist_api::{AccessRequest, Decision};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::WIDE;
use super::requests::reviewers;
use super::roles::tier_words;
use super::widgets::{block, field, tier_badge, window_start};
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
    // The tier first: it is what an approver weighs before anything else.
    let mut spans = tier_badge(request.tier, theme);
    let left = format!(
        "{}{} · {}{claim}",
        if spans.is_empty() { " " } else { "" },
        clean(&request.requester),
        clean(state.role_label(&request.role, &request.role_name))
    );
    let badge: usize = spans.iter().map(|s| width_of(&s.content)).sum();
    let left = fit(&left, width.saturating_sub(badge + width_of(&right) + 1));
    let pad = width.saturating_sub(badge + width_of(&left) + width_of(&right));
    spans.extend([
        Span::styled(left, theme.text()),
        Span::raw(" ".repeat(pad)),
        Span::styled(right, theme.warn()),
    ]);
    let line = Line::from(spans);
    if selected {
        line.style(theme.selected())
    } else {
        line
    }
}

/// A section's heading, drawn above its first row.
fn heading<'a>(row: ReviewRow, state: &State, theme: &Theme) -> Option<Line<'a>> {
    match row {
        ReviewRow::Pending(_) => None,
        ReviewRow::BreakGlass(_) => Some(Line::from(Span::styled(
            format!("Break-glass to acknowledge ({})", state.break_glass.len()),
            theme.break_glass(),
        ))),
        ReviewRow::Waiting(_) => Some(Line::from(Span::styled(
            format!(
                "Waiting for others ({})",
                state.queue.len() - state.to_decide()
            ),
            theme.title(),
        ))),
    }
}

/// Approvals given of those needed, as a row's right-hand side says it.
fn approvals(request: &AccessRequest) -> String {
    let given = request
        .reviews
        .iter()
        .filter(|r| r.decision == Decision::Approve)
        .count();
    format!("{given} of {}", request.approvals_required)
}

fn draw_list(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let width = usize::from(area.width.saturating_sub(2));
    let rows = state.review_rows();
    let mut lines = Vec::new();
    lines.push(Line::from(Span::styled(
        format!("To decide ({})", state.to_decide()),
        theme.title(),
    )));
    let mut headed = Vec::new();
    // Borders, "To decide", and a line for each other section's heading or
    // for the note that nothing waits: the rest is rows
    let nothing_waits = state.to_decide() == 0 && state.break_glass.is_empty();
    // (At least two, as before there were more sections than one.)
    let headings = (1
        + usize::from(!state.break_glass.is_empty())
        + usize::from(state.to_decide() < state.queue.len())
        + usize::from(nothing_waits))
    .max(2);
    let height = usize::from(area.height).saturating_sub(2 + headings).max(1);
    let start = window_start(state.cursors.reviews, rows.len(), height);
    for (i, row) in rows.iter().enumerate().skip(start).take(height) {
        let selected = i == state.cursors.reviews;
        let section = std::mem::discriminant(row);
        if !headed.contains(&section) {
            headed.push(section);
            if let Some(line) = heading(*row, state, theme) {
                lines.push(line);
            }
        }
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
            ReviewRow::Waiting(index) => {
                let request = &state.queue[*index];
                lines.push(row_line(
                    request,
                    approvals(request),
                    state,
                    theme,
                    width,
                    selected,
                ));
            }
        }
    }
    if nothing_waits {
        let text = if state.capabilities.approver_roles
            && state
                .me
                .as_ref()
                .is_some_and(|me| me.approver_for.is_empty())
        {
            "You approve no roles."
        } else {
            "Nothing waits for you."
        };
        // Above the sections that follow, where "To decide" would list.
        lines.insert(1, Line::from(Span::styled(text, theme.muted())));
    }
    // Sections below the window, so that they are not missed.
    for row in rows.iter().skip(start + height) {
        let section = std::mem::discriminant(row);
        if !headed.contains(&section) {
            headed.push(section);
            if let Some(line) = heading(*row, state, theme) {
                let text = format!("{} ↓", line.spans[0].content);
                lines.push(Line::from(Span::styled(text, line.spans[0].style)));
            }
        }
    }
    let title = Line::from(Span::styled(" Reviews ", theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block(title, theme)), area);
}

fn draw_details(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let Some((row, r)) = state.selected_review() else {
        frame.render_widget(block(" Request ", theme), area);
        return;
    };
    let mut lines = Vec::new();
    if let Some(tier) = r.tier {
        lines.push(field(
            "Risk tier",
            &tier_words(tier),
            theme.tier(tier),
            theme,
        ));
    }
    lines.extend([
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
    ]);
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
        ReviewRow::Pending(_) | ReviewRow::Waiting(_) => {
            if let Some(at) = r.lapses_at {
                let text = format!("in {} ({})", clock(at - state.now), local_time(at));
                lines.push(field("Lapses", &text, theme.warn(), theme));
            }
            let mut progress = format!("{} of {}", r.reviews.len(), r.approvals_required);
            if !r.reviews.is_empty() {
                progress = format!("{progress} · {}", reviewers(r));
            }
            lines.push(field("Approvals", &progress, theme.text(), theme));
            if matches!(row, ReviewRow::Waiting(_)) {
                let others = state.others_to_approve(r);
                let text = if others.is_empty() {
                    "nobody else as the policy stands".to_string()
                } else {
                    others.join(", ")
                };
                lines.push(field("May approve", &text, theme.warn(), theme));
            }
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
    let mut history = Vec::new();
    if state.capabilities.history {
        history_lines(&mut history, r, state, theme);
    }
    // The justification is the requester's text: however many lines it
    // has, it does not push the requester's history (the broker's) out of
    // the approver's view. What does not fit is said to be there.
    let width = area.width.saturating_sub(2);
    let rows = |lines: &[Line<'_>]| {
        Paragraph::new(lines.to_vec())
            .wrap(Wrap { trim: false })
            .line_count(width)
    };
    let room =
        usize::from(area.height.saturating_sub(2)).saturating_sub(rows(&lines) + rows(&history));
    let justification: Vec<Line> = clean_lines(&r.justification)
        .into_iter()
        .map(Line::from)
        .collect();
    let heights: Vec<usize> = justification
        .iter()
        .map(|line| rows(std::slice::from_ref(line)))
        .collect();
    if heights.iter().sum::<usize>() <= room {
        lines.extend(justification);
    } else {
        let note = |more: &str| {
            Line::from(Span::styled(
                format!(
                    "… {more} (`{} status {} --json` shows all of it)",
                    clean(&state.hoist),
                    clean(&crate::text::shell_word(&r.id))
                ),
                theme.warn(),
            ))
        };
        // The note's rows are kept for it, as long as it may be; at least
        // a row of the justification shows: in a pane too small for
        // everything, the history is what is cut.
        let longest = note(&format!("{} more lines", justification.len()));
        let budget = room.saturating_sub(rows(&[longest])).max(1);
        let mut used = 0;
        let shown = heights
            .iter()
            .take_while(|height| {
                used += **height;
                used <= budget
            })
            .count();
        // Its first line alone too long: as much of it as fits.
        let cut = (shown == 0).then(|| {
            let chars: Vec<char> = justification[0].to_string().chars().collect();
            let with_ellipsis = |n: usize| chars[..n].iter().collect::<String>() + "…";
            let (mut fits, mut over) = (0, chars.len());
            while fits < over {
                let mid = (fits + over).div_ceil(2);
                if rows(&[Line::from(with_ellipsis(mid))]) <= budget {
                    fits = mid;
                } else {
                    over = mid - 1;
                }
            }
            with_ellipsis(fits)
        });
        let left = justification.len() - shown - usize::from(cut.is_some());
        let more = match (cut.is_some(), left) {
            (true, 0) => "the rest of it".to_string(),
            (_, 1) => "1 more line".to_string(),
            (_, n) => format!("{n} more lines"),
        };
        lines.extend(cut.map(Line::from));
        lines.extend(justification.into_iter().take(shown));
        lines.push(note(&more));
    }
    lines.extend(history);
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
