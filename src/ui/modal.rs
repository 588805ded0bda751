//! Pop-ups over everything: help, confirmations, one-line prompts, and the
//! credential.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::widgets::block;
use crate::app::keymap;
use crate::app::state::{Modal, State};
use crate::text::local_time;
use crate::text::sanitize::line as clean;
use crate::ui::theme::Theme;

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// Width of one column of the help pop-up.
const HELP_COLUMN: u16 = 38;

/// Every key, section by section, in as many columns as the terminal
/// takes; what still does not fit is said to be there.
fn help(frame: &mut Frame, area: Rect, state: &State, theme: &Theme) {
    let rows = usize::from(area.height.saturating_sub(4)).max(1);
    let mut columns: Vec<Vec<Line>> = vec![Vec::new()];
    for (section, keys) in keymap::help(state) {
        let mut lines = vec![Line::from(Span::styled(section, theme.title()))];
        lines.extend(keys.into_iter().map(|(keys, label)| {
            Line::from(vec![
                Span::styled(format!("  {keys:<14}"), theme.key()),
                Span::raw(label),
            ])
        }));
        // A section starts a column when it would not fit in this one.
        if columns
            .last()
            .is_some_and(|c| !c.is_empty() && c.len() + lines.len() > rows)
        {
            columns.push(Vec::new());
        }
        for line in lines {
            if columns.last().is_some_and(|c| c.len() == rows) {
                columns.push(Vec::new());
            }
            if let Some(column) = columns.last_mut() {
                column.push(line);
            }
        }
    }
    let fit = usize::from(area.width.saturating_sub(4) / HELP_COLUMN).max(1);
    if columns.len() > fit {
        let hidden: usize = columns[fit..].iter().map(Vec::len).sum();
        columns.truncate(fit);
        if let Some(last) = columns.last_mut() {
            last.truncate(rows.saturating_sub(1));
            last.push(Line::from(Span::styled(
                format!("… {hidden} more lines: enlarge the terminal"),
                theme.muted(),
            )));
        }
    }
    let shown = u16::try_from(columns.len()).unwrap_or(1);
    let popup = centered(area, shown * HELP_COLUMN + 2, area.height.saturating_sub(2));
    frame.render_widget(Clear, popup);
    let frame_block = block(" Keys (esc closes) ", theme);
    let inner = frame_block.inner(popup);
    frame.render_widget(frame_block, popup);
    let cells =
        Layout::horizontal(vec![Constraint::Length(HELP_COLUMN); columns.len()]).split(inner);
    for (lines, cell) in columns.into_iter().zip(cells.iter()) {
        frame.render_widget(Paragraph::new(lines), *cell);
    }
}

pub fn draw(frame: &mut Frame, area: Rect, modal: &Modal, state: &State, theme: &Theme) {
    match modal {
        Modal::Help => help(frame, area, state, theme),
        Modal::Confirm {
            prompt,
            danger,
            repeats,
            ..
        } => {
            let style = if *danger {
                theme.break_glass()
            } else {
                theme.title()
            };
            // The keys that answer it (see `Modal::Confirm`).
            let yes = if *repeats && !*danger { "Enter" } else { "y" };
            let lines = vec![
                Line::from(Span::styled(clean(prompt).into_owned(), style)),
                Line::from(vec![
                    Span::styled(yes, theme.key()),
                    Span::raw(" yes   "),
                    Span::styled("n", theme.key()),
                    Span::raw(" no"),
                ]),
            ];
            let mut frame_block = block(" Confirm ", theme);
            if *danger {
                frame_block = frame_block.border_style(theme.break_glass());
            }
            // As tall as the prompt wraps to: a long one (a bundle of roles,
            // every grant under an incident) must not hide the keys.
            let paragraph = Paragraph::new(lines).wrap(Wrap { trim: true });
            fitted(frame, area, 64, paragraph, frame_block);
        }
        Modal::QuitWhileRevoking => {
            let grants = state.unconfirmed_revocations();
            let mut lines = vec![Line::from(Span::styled(
                "The broker has not confirmed these revocations yet:",
                theme.break_glass(),
            ))];
            for grant in grants {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!(
                            "  {:<24}",
                            clean(state.role_label(&grant.role, &grant.role_name))
                        ),
                        theme.text(),
                    ),
                    Span::styled(
                        format!("active until {}", local_time(grant.expires_at)),
                        theme.warn(),
                    ),
                ]));
            }
            lines.push(Line::from(
                "hoist keeps retrying while it runs. Quit anyway, leaving them active?",
            ));
            lines.push(Line::from(vec![
                Span::styled("y", theme.key()),
                Span::raw(" quit anyway   "),
                Span::styled("n", theme.key()),
                Span::raw(" stay and keep retrying"),
            ]));
            // As tall as long role names wrap to: the keys stay in view.
            fitted(
                frame,
                area,
                72,
                Paragraph::new(lines).wrap(Wrap { trim: false }),
                block(" Quit? ", theme).border_style(theme.break_glass()),
            );
        }
        Modal::Input {
            title, text, error, ..
        } => {
            let mut lines = vec![
                Line::from(Span::styled(clean(title).into_owned(), theme.title())),
                Line::from(format!("> {}▏", clean(text))),
            ];
            if let Some(error) = error {
                lines.push(Line::from(Span::styled(
                    clean(error).into_owned(),
                    theme.danger(),
                )));
            } else {
                lines.push(Line::from(Span::styled(
                    "enter sends · esc cancels",
                    theme.muted(),
                )));
            }
            // As tall as the title and the text wrap to: a long account
            // name and scope (an approval over Entra), or a long comment,
            // stay whole in view.
            fitted(
                frame,
                area,
                70,
                Paragraph::new(lines).wrap(Wrap { trim: false }),
                block("", theme),
            );
        }
        Modal::Profiles { cursor } => {
            let height = u16::try_from(state.profiles.len())
                .unwrap_or(u16::MAX)
                .saturating_add(4);
            let popup = centered(area, 56, height);
            let mut lines = Vec::new();
            for (i, profile) in state.profiles.iter().enumerate() {
                let current = Some(&profile.name) == state.profile_name.as_ref();
                let marker = if current { "● " } else { "  " };
                let style = if i == *cursor {
                    theme.selected()
                } else {
                    theme.text()
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("{marker}{:<28}", clean(&profile.name)), style),
                    Span::styled(format!(" {}", clean(&profile.kind)), theme.muted()),
                ]));
            }
            lines.push(Line::from(Span::styled(
                "enter switches · esc closes",
                theme.muted(),
            )));
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines).block(block(" Profiles ", theme)),
                popup,
            );
        }
        Modal::SignIn(prompt) => {
            let mut lines = vec![
                Line::from(Span::styled(clean(&prompt.why).into_owned(), theme.title())),
                Line::from(vec![
                    Span::raw("Open "),
                    Span::styled(clean(&prompt.url).into_owned(), theme.key()),
                ]),
                Line::from(vec![
                    Span::raw("and enter the code "),
                    Span::styled(clean(&prompt.code).into_owned(), theme.title()),
                ]),
            ];
            if let Some(complete) = &prompt.complete {
                lines.push(Line::from(Span::styled(
                    format!("(or open {})", clean(complete)),
                    theme.muted(),
                )));
            }
            lines.push(Line::from(Span::styled(
                format!(
                    "Waiting for you to sign in (the code expires in {} minutes)…",
                    prompt.minutes
                ),
                theme.warn(),
            )));
            lines.push(Line::from(Span::styled(
                "esc hides this; the sign-in keeps waiting",
                theme.muted(),
            )));
            // As tall as a long address wraps to: the code stays in view.
            fitted(
                frame,
                area,
                78,
                Paragraph::new(lines).wrap(Wrap { trim: false }),
                block(" Sign in ", theme),
            );
        }
        Modal::Credential {
            role,
            access: Some(access),
            ..
        } if access.certificate.is_some() => {
            draw_certificate(frame, area, role, access, &state.hoist, theme)
        }
        Modal::Credential {
            role,
            token,
            access: Some(access),
            ..
        } => {
            // How to use the access at its target: a command to paste into
            // a terminal, and the URI for anything else. Each on a line of
            // its own, unwrapped where the terminal is wide enough: a command
            // copied off the screen across a wrap would run without its end.
            let longest = [access.command.as_deref(), access.uri.as_deref()]
                .into_iter()
                .flatten()
                .map(|text| clean(text).chars().count())
                .max()
                .unwrap_or(0);
            let wanted = u16::try_from(longest + 2).unwrap_or(u16::MAX).max(120);
            let width = wanted.min(area.width.saturating_sub(4)).max(40);
            let mut lines = vec![
                Line::from(Span::styled(
                    format!(
                        "Access for {} at {} ({})",
                        clean(role),
                        clean(&access.target),
                        clean(&access.kind)
                    ),
                    theme.title(),
                )),
                Line::from(Span::styled(
                    format!("valid until {}", local_time(access.expires_at)),
                    theme.warn(),
                )),
            ];
            if let Some(command) = &access.command {
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    "Command (paste into a terminal)",
                    theme.muted(),
                )));
                lines.push(Line::from(clean(command).into_owned()));
            }
            if let Some(uri) = &access.uri {
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled("URI", theme.muted())));
                lines.push(Line::from(clean(uri).into_owned()));
            }
            if access.command.is_none() && access.uri.is_none() {
                lines.push(Line::from(""));
                lines.push(Line::from(clean(token).into_owned()));
            }
            lines.push(Line::from(""));
            // PostgreSQL sets a new password at each fetch; other kinds may not.
            if access.kind == "postgres" {
                lines.push(Line::from(Span::styled(
                    "Shown once: fetching it again sets a new password.",
                    theme.muted(),
                )));
            }
            let (copied, _) = crate::app::access::copied_by_y(access, token);
            let mut keys = vec![
                Span::styled("y", theme.key()),
                Span::raw(format!(" copies the {copied} · ")),
            ];
            if access.uri.is_some() && copied != "URI" {
                keys.extend([Span::styled("u", theme.key()), Span::raw(" the URI · ")]);
            }
            keys.extend([Span::styled("esc", theme.key()), Span::raw(" closes")]);
            lines.push(Line::from(keys));
            pop_up(frame, area, width, lines, theme);
        }
        Modal::Credential {
            role,
            token,
            expires_at,
            access: None,
            ..
        } => {
            let popup = centered(area, 78, 12);
            let lines = vec![
                Line::from(Span::styled(
                    format!("Credential for {}", clean(role)),
                    theme.title(),
                )),
                Line::from(Span::styled(
                    format!("valid until {}", local_time(*expires_at)),
                    theme.warn(),
                )),
                Line::from(clean(token).into_owned()),
                Line::from(Span::styled("y copies · esc closes", theme.muted())),
            ];
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(block("", theme)),
                popup,
            );
        }
    }
}

/// An ssh grant's certificate for the person's own key: whom it logs in
/// as, when it is valid (the grant's window), the key id hosts log, and
/// what to run. The certificate itself is one long line: copied, not shown.
fn draw_certificate(
    frame: &mut Frame,
    area: Rect,
    role: &str,
    access: &hoist_api::AccessCredential,
    hoist: &str,
    theme: &Theme,
) {
    let Some(certificate) = &access.certificate else {
        return;
    };
    let width = area.width.saturating_sub(4).clamp(40, 100);
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{name:<12}"), theme.muted()),
            Span::raw(value),
        ])
    };
    let lines = vec![
        Line::from(Span::styled(
            format!(
                "SSH certificate for {} at {}",
                clean(role),
                clean(&access.target)
            ),
            theme.title(),
        )),
        Line::from(Span::styled(
            format!(
                "valid {} to {}",
                local_time(certificate.valid_after),
                local_time(certificate.valid_before)
            ),
            theme.warn(),
        )),
        Line::from(""),
        field(
            "Logs in as",
            clean(&certificate.principals.join(", ")).into_owned(),
        ),
        field("Key id", clean(&certificate.key_id).into_owned()),
        field("Your key", clean(&certificate.fingerprint).into_owned()),
        Line::from(""),
        Line::from(Span::styled("Log in with", theme.muted())),
        Line::from(format!(
            "{} ssh {} [user@]HOST",
            clean(hoist),
            clean(&crate::text::shell_word(role))
        )),
        Line::from(Span::styled(
            format!(
                "or: {} credential {} --write-certificate, then plain ssh",
                clean(hoist),
                clean(&crate::text::shell_word(role))
            ),
            theme.muted(),
        )),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", theme.key()),
            Span::raw(" copies the certificate · "),
            Span::styled("esc", theme.key()),
            Span::raw(" closes"),
        ]),
    ];
    pop_up(frame, area, width, lines, theme);
}

/// `lines` in a bordered box `width` wide over whatever is beneath.
fn pop_up(frame: &mut Frame, area: Rect, width: u16, lines: Vec<Line>, theme: &Theme) {
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    fitted(frame, area, width, paragraph, block("", theme));
}

/// `paragraph` in `frame_block` (bordered), `width` wide and as tall as its
/// lines wrap to, centred over whatever is beneath: nothing in it (text
/// the broker sent, the line of keys under it) is cut off while the screen
/// has the room.
fn fitted(frame: &mut Frame, area: Rect, width: u16, paragraph: Paragraph, frame_block: Block) {
    let width = width.min(area.width);
    let height = u16::try_from(paragraph.line_count(width.saturating_sub(2)))
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(paragraph.block(frame_block), popup);
}
