//! The Grants screen: every active grant with a live countdown and a gauge of
//! the time left, coloured as the end nears; for a grant at a target, where
//! its access is (provisioning, live, failed, removing), and the grants that
//! ended while their access is still being removed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use ratatui::style::Style;

use super::roles::tier_words;
use super::widgets::{bar, block, empty_notice, field, tier_badge, window_start};
use crate::app::access::{self, Tone};
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

/// The style an access line is drawn in: under way muted into warning,
/// failed in danger, live in calm.
pub fn access_style(tone: Tone, theme: &Theme) -> Style {
    match tone {
        Tone::Pending => theme.warn(),
        Tone::Live => theme.ok(),
        Tone::Failed => theme.danger(),
        Tone::Gone => theme.muted(),
    }
}

pub fn draw(frame: &mut Frame, body: Rect, state: &State, theme: &Theme) {
    let [list, details] = split(body);
    let height = usize::from(list.height.saturating_sub(3));
    let start = window_start(state.cursors.grants, state.grants.len(), height);
    // The access column only where some grant reaches a target, so a
    // broker without targets draws exactly as before.
    let with_access = state
        .grants
        .iter()
        .chain(&state.ending)
        .any(|g| g.access.is_some());
    let access_width: u16 = match (with_access, list.width >= 120) {
        (false, _) => 0,
        (true, true) => 40,
        (true, false) => 24,
    };
    // Room for a tier badge only where some grant has a tier, so a broker
    // without tiers draws exactly as before.
    let with_tiers = state
        .grants
        .iter()
        .chain(&state.ending)
        .chain(&state.workload_grants)
        .any(|g| state.grant_tier(g).is_some());
    let role_width: u16 = if with_tiers { 25 } else { 22 };
    let gauge_width =
        usize::from(list.width.saturating_sub(38 + role_width + access_width)).clamp(6, 40);
    // The role with its tier's badge, coloured by tier.
    let role_cell = |grant: &hoist_api::Grant, label: String, style: Style| {
        let mut spans = tier_badge(state.grant_tier(grant), theme);
        spans.push(Span::styled(label, style));
        Cell::from(Line::from(spans))
    };
    let access_cell = |grant: &hoist_api::Grant| match &grant.access {
        Some(access) => {
            let (line, tone) = access::describe(grant, access, state.now);
            Cell::from(Span::styled(line, access_style(tone, theme)))
        }
        None => Cell::from(""),
    };
    let mut rows: Vec<Row> = state.grants[start..]
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
            let mut cells = vec![
                role_cell(
                    grant,
                    format!(
                        "{flag}{}",
                        clean(state.role_label(&grant.role, &grant.role_name))
                    ),
                    Style::default(),
                ),
                if state.revoking.contains(&grant.id) {
                    // Sent, not yet confirmed: never shown as done.
                    Cell::from(Span::styled("revoking…", theme.warn()))
                } else if state.revoke_refused.contains_key(&grant.id) {
                    // Refused for good: still active, and nothing retries it.
                    Cell::from(Span::styled("refused", theme.danger()))
                } else {
                    Cell::from(Span::styled(clock(left), style))
                },
            ];
            if with_access {
                cells.push(access_cell(grant));
            }
            cells.push(Cell::from(Span::styled(bar(fraction, gauge_width), style)));
            cells.push(Cell::from(local_time(grant.expires_at)));
            let row = Row::new(cells);
            if start + i == state.cursors.grants {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    // Ended in hoist, access still at the target: below the active ones,
    // not selectable, until the broker reports the access removed.
    let room = height.saturating_sub(rows.len());
    if !state.ending.is_empty() && room > 1 {
        rows.push(Row::new(vec![Cell::from(Span::styled(
            "Ending",
            theme.muted(),
        ))]));
        for grant in state.ending.iter().take(room - 1) {
            rows.push(Row::new(vec![
                role_cell(
                    grant,
                    clean(state.role_label(&grant.role, &grant.role_name)).into_owned(),
                    theme.muted(),
                ),
                Cell::from(Span::styled(grant.state.as_str(), theme.muted())),
                access_cell(grant),
                Cell::from(""),
                Cell::from(Span::styled(
                    local_time(grant.ended_at.unwrap_or(grant.expires_at)),
                    theme.muted(),
                )),
            ]));
        }
    }
    // Grants workloads hold on roles I approve or audit: below mine, not
    // selectable, each with its countdown and the workload that holds it.
    let room = height.saturating_sub(rows.len());
    if !state.workload_grants.is_empty() && room > 1 {
        rows.push(Row::new(vec![Cell::from(Span::styled(
            "Workloads",
            theme.muted(),
        ))]));
        for grant in state.workload_grants.iter().take(room - 1) {
            let left = state.time_left(grant);
            let mut cells = vec![
                role_cell(grant, clean(&grant.role).into_owned(), Style::default()),
                Cell::from(Span::styled(clock(left), theme.countdown(left))),
            ];
            if with_access {
                cells.push(access_cell(grant));
            }
            cells.push(Cell::from(Span::styled(
                clean(&grant.holder).into_owned(),
                theme.muted(),
            )));
            cells.push(Cell::from(local_time(grant.expires_at)));
            rows.push(Row::new(cells));
        }
    }
    let header = if with_access {
        Row::new(["Role", "Left", "Access", "", "Ends"])
    } else {
        Row::new(["Role", "Left", "", "Ends"])
    }
    .style(theme.muted());
    let mut widths = vec![Constraint::Length(role_width), Constraint::Length(10)];
    if with_access {
        widths.push(Constraint::Length(access_width));
    }
    widths.push(Constraint::Length(gauge_width as u16));
    widths.push(Constraint::Min(12));
    let ending = if state.ending.is_empty() {
        String::new()
    } else {
        format!("· ending ({}) ", state.ending.len())
    };
    let workloads = if state.workload_grants.is_empty() {
        String::new()
    } else {
        format!("· workloads ({}) ", state.workload_grants.len())
    };
    let title = Line::from(Span::styled(
        format!(
            " Active grants ({}) {ending}{workloads}",
            state.grants.len()
        ),
        theme.title(),
    ));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(title, theme)),
        list,
    );
    if state.grants.is_empty() && state.ending.is_empty() && state.workload_grants.is_empty() {
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
        // Nothing active to select: the grants still ending say, in full,
        // where their removal stands (the list cuts the reason short).
        let lines: Vec<Line> = state
            .ending
            .iter()
            .filter_map(|g| {
                let access = g.access.as_ref()?;
                let (line, tone) = access::describe(g, access, state.now);
                Some(Line::from(vec![
                    Span::styled(format!("{:<15}", clean(&g.role)), theme.muted()),
                    Span::styled(line, access_style(tone, theme)),
                ]))
            })
            .collect();
        let title = if lines.is_empty() {
            " Details "
        } else {
            " Ending "
        };
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .block(block(title, theme)),
            details,
        );
        return;
    };
    let mut lines = vec![field("Grant", &grant.id, theme.muted(), theme)];
    if let Some(tier) = state.grant_tier(grant) {
        lines.push(field(
            "Risk tier",
            &tier_words(tier),
            theme.tier(tier),
            theme,
        ));
    }
    if let Some(access) = &grant.access {
        let (line, tone) = access::describe(grant, access, state.now);
        let line = format!("{line} ({})", clean(&access.kind));
        lines.push(field("Access", &line, access_style(tone, theme), theme));
        // An ssh grant's certificates: whom they log in as, and their
        // validity, which is the grant's window (to the second below).
        let principals = state
            .roles
            .iter()
            .find(|role| role.id == grant.role)
            .and_then(|role| role.target.as_ref())
            .filter(|target| target.kind == access::SSH && !target.principals.is_empty())
            .map(|target| target.principals.join(", "));
        if let Some(principals) = principals {
            lines.push(field(
                "Certificate",
                &format!(
                    "as {} · valid {} to {}",
                    clean(&principals),
                    local_time(grant.starts_at),
                    local_time(grant.expires_at)
                ),
                theme.text(),
                theme,
            ));
        }
    }
    lines.push(field(
        "Started",
        &local_time(grant.starts_at),
        theme.text(),
        theme,
    ));
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
