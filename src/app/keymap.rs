//! Keys to actions, as data. The footer and the help overlay are generated
//! from these tables, so a key is described in exactly one place.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Action;
use super::capabilities::Capabilities;
use super::state::{Modal, Screen, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn key(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

const fn code(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

impl Key {
    pub fn label(&self) -> String {
        let name = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "enter".into(),
            KeyCode::Esc => "esc".into(),
            KeyCode::Tab => "tab".into(),
            KeyCode::BackTab => "S-tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "pgup".into(),
            KeyCode::PageDown => "pgdn".into(),
            KeyCode::Home => "home".into(),
            KeyCode::End => "end".into(),
            KeyCode::Backspace => "bksp".into(),
            other => format!("{other:?}"),
        };
        if self.ctrl {
            format!("^{}", name.to_uppercase())
        } else {
            name
        }
    }

    fn matches(&self, event: &KeyEvent) -> bool {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let code = match event.code {
            // Shift+letter arrives as the upper-case char.
            KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
            other => other,
        };
        code == self.code && ctrl == self.ctrl
    }
}

/// One binding: the keys, what they do, and how the footer and help name it.
#[derive(Debug, Clone)]
pub struct Binding {
    pub keys: Vec<Key>,
    pub action: Action,
    pub label: &'static str,
    /// Shown in the footer as well as in help.
    pub footer: bool,
}

fn bind(keys: &[Key], action: Action, label: &'static str, footer: bool) -> Binding {
    Binding {
        keys: keys.to_vec(),
        action,
        label,
        footer,
    }
}

/// Where the keyboard focus is; each has its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Screen(Screen),
    Filter,
    Form,
    Input,
    Confirm,
    /// A dangerous confirm: `y` says yes, Enter nothing.
    ConfirmDanger,
    /// A confirm asked by a key it would otherwise answer: Enter says yes.
    ConfirmEnter,
    /// Quit while revocations are unconfirmed: only `y` quits; Enter stays.
    QuitWhileRevoking,
    Overlay,
    /// The list of profiles.
    Picker,
}

impl Context {
    pub fn of(state: &State) -> Context {
        match &state.modal {
            Some(Modal::Confirm { danger: true, .. }) => return Context::ConfirmDanger,
            Some(Modal::Confirm { repeats: true, .. }) => return Context::ConfirmEnter,
            Some(Modal::Confirm { .. }) => return Context::Confirm,
            Some(Modal::QuitWhileRevoking) => return Context::QuitWhileRevoking,
            Some(Modal::Input { .. }) => return Context::Input,
            Some(Modal::Help | Modal::Credential { .. } | Modal::SignIn(_)) => {
                return Context::Overlay;
            }
            Some(Modal::Profiles { .. }) => return Context::Picker,
            None => {}
        }
        if state.form.is_some() {
            Context::Form
        } else if state.filtering {
            Context::Filter
        } else {
            Context::Screen(state.screen)
        }
    }

    /// Whether unbound printable keys are typed as text here.
    pub fn takes_text(self) -> bool {
        matches!(self, Context::Filter | Context::Form | Context::Input)
    }
}

/// Keys that work on every screen.
pub fn global() -> Vec<Binding> {
    vec![
        bind(&[key('1')], Action::GoTo(Screen::Roles), "roles", false),
        bind(
            &[key('2')],
            Action::GoTo(Screen::Requests),
            "requests",
            false,
        ),
        bind(&[key('3')], Action::GoTo(Screen::Grants), "grants", false),
        bind(&[key('4')], Action::GoTo(Screen::Reviews), "reviews", false),
        bind(
            &[key('5')],
            Action::GoTo(Screen::Activity),
            "activity",
            false,
        ),
        bind(
            &[key('6')],
            Action::GoTo(Screen::Incidents),
            "incidents",
            false,
        ),
        bind(
            &[code(KeyCode::Tab), key('L')],
            Action::NextScreen,
            "next screen",
            false,
        ),
        bind(
            &[code(KeyCode::BackTab), key('H')],
            Action::PrevScreen,
            "previous screen",
            false,
        ),
        bind(&[code(KeyCode::Up), key('k')], Action::Up, "up", false),
        bind(
            &[code(KeyCode::Down), key('j')],
            Action::Down,
            "down",
            false,
        ),
        bind(
            &[code(KeyCode::PageUp), ctrl('u')],
            Action::PageUp,
            "page up",
            false,
        ),
        bind(
            &[code(KeyCode::PageDown), ctrl('d')],
            Action::PageDown,
            "page down",
            false,
        ),
        bind(
            &[code(KeyCode::Home), key('g')],
            Action::Top,
            "first",
            false,
        ),
        bind(
            &[code(KeyCode::End), key('G')],
            Action::Bottom,
            "last",
            false,
        ),
        bind(&[key('o')], Action::OpenTicket, "open ticket", false),
        bind(&[key('R'), ctrl('r')], Action::Refresh, "refresh", false),
        bind(&[key('P')], Action::PickProfile, "profiles", false),
        bind(&[ctrl('o')], Action::ShowSignIn, "sign-in code", true),
        bind(&[key('?')], Action::Help, "help", true),
        bind(&[key('q'), ctrl('c')], Action::Quit, "quit", true),
    ]
}

/// Keys of one context, most useful first (the footer shows them in order).
pub fn bindings(context: Context) -> Vec<Binding> {
    match context {
        Context::Screen(Screen::Roles) => vec![
            bind(
                &[code(KeyCode::Enter), key('r')],
                Action::NewRequest,
                "request",
                true,
            ),
            bind(&[key('/')], Action::StartFilter, "filter", true),
            bind(&[key(' ')], Action::Mark, "mark", true),
            bind(&[key('b')], Action::NextBundle, "bundle", false),
            bind(&[key('f')], Action::ToggleFavourite, "favourite", true),
            bind(&[key('x')], Action::Revoke, "revoke", false),
            bind(&[key('e')], Action::Extend, "extend", false),
        ],
        Context::Screen(Screen::Requests) => vec![
            bind(&[key('c')], Action::Cancel, "cancel", true),
            bind(&[key('o')], Action::OpenTicket, "ticket", true),
        ],
        Context::Screen(Screen::Grants) => vec![
            bind(&[key('e')], Action::Extend, "extend", true),
            bind(&[key('x')], Action::Revoke, "revoke", true),
            bind(&[key('s')], Action::ShowCredential, "credential", true),
            bind(&[key('y')], Action::CopyCredential, "copy", true),
            bind(&[key('o')], Action::OpenTicket, "ticket", false),
        ],
        Context::Screen(Screen::Reviews) => vec![
            bind(&[key('a')], Action::Approve, "approve", true),
            bind(&[key('d')], Action::Deny, "deny", true),
            bind(&[key('m')], Action::Claim, "claim", true),
            bind(&[key('K')], Action::Acknowledge, "acknowledge", true),
            bind(&[key('o')], Action::OpenTicket, "ticket", true),
        ],
        Context::Screen(Screen::Activity) => vec![bind(
            &[key('w')],
            Action::CycleActors,
            "people/workloads",
            true,
        )],
        Context::Screen(Screen::Incidents) => vec![
            bind(&[key('X')], Action::RevokeIncident, "revoke all mine", true),
            bind(&[key('o')], Action::OpenTicket, "open incident", true),
        ],
        Context::Filter => vec![
            bind(&[code(KeyCode::Enter)], Action::Select, "request", true),
            bind(&[code(KeyCode::Esc)], Action::Back, "clear", true),
            bind(&[code(KeyCode::Up)], Action::Up, "up", false),
            bind(&[code(KeyCode::Down)], Action::Down, "down", false),
            bind(
                &[code(KeyCode::Backspace)],
                Action::Backspace,
                "erase",
                false,
            ),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        Context::Form => vec![
            bind(&[ctrl('s')], Action::Submit, "submit", true),
            bind(
                &[code(KeyCode::Tab), code(KeyCode::Down)],
                Action::NextField,
                "next field",
                true,
            ),
            bind(
                &[code(KeyCode::BackTab), code(KeyCode::Up)],
                Action::PrevField,
                "previous field",
                false,
            ),
            bind(&[code(KeyCode::Left)], Action::Left, "shorter", false),
            bind(&[code(KeyCode::Right)], Action::Right, "longer", true),
            bind(&[ctrl('b')], Action::ToggleBreakGlass, "break-glass", true),
            bind(&[ctrl('o')], Action::ShowSignIn, "sign-in code", true),
            bind(
                &[code(KeyCode::Enter)],
                Action::Newline,
                "newline / next",
                false,
            ),
            bind(
                &[code(KeyCode::Backspace)],
                Action::Backspace,
                "erase",
                false,
            ),
            bind(&[code(KeyCode::Esc)], Action::Back, "close", true),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        Context::Input => vec![
            bind(&[code(KeyCode::Enter)], Action::Submit, "send", true),
            bind(
                &[code(KeyCode::Backspace)],
                Action::Backspace,
                "erase",
                false,
            ),
            bind(&[code(KeyCode::Esc)], Action::Back, "cancel", true),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        Context::Confirm => vec![
            bind(
                &[key('y'), code(KeyCode::Enter)],
                Action::Confirm,
                "yes",
                true,
            ),
            bind(&[key('n'), code(KeyCode::Esc)], Action::Decline, "no", true),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        // A reflex Enter must not start or end access.
        Context::ConfirmDanger => vec![
            bind(&[key('y')], Action::Confirm, "yes", true),
            bind(&[key('n'), code(KeyCode::Esc)], Action::Decline, "no", true),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        // The key that asked, pressed again or held, must not answer.
        Context::ConfirmEnter => vec![
            bind(&[code(KeyCode::Enter)], Action::Confirm, "yes", true),
            bind(&[key('n'), code(KeyCode::Esc)], Action::Decline, "no", true),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        // A reflex Enter must not leave grants active.
        Context::QuitWhileRevoking => vec![
            bind(&[key('y')], Action::Confirm, "quit anyway", true),
            bind(
                &[key('n'), code(KeyCode::Esc), code(KeyCode::Enter)],
                Action::Decline,
                "stay",
                true,
            ),
            bind(&[ctrl('c')], Action::Quit, "quit anyway", false),
        ],
        Context::Overlay => vec![
            bind(
                &[code(KeyCode::Esc), key('q'), key('?'), code(KeyCode::Enter)],
                Action::Back,
                "close",
                true,
            ),
            bind(&[key('y')], Action::CopyCredential, "copy", false),
            bind(&[key('u')], Action::CopyUri, "copy URI", false),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
        Context::Picker => vec![
            bind(&[code(KeyCode::Enter)], Action::Select, "switch", true),
            bind(&[code(KeyCode::Up), key('k')], Action::Up, "up", false),
            bind(
                &[code(KeyCode::Down), key('j')],
                Action::Down,
                "down",
                false,
            ),
            bind(&[code(KeyCode::Esc), key('q')], Action::Back, "close", true),
            bind(&[ctrl('c')], Action::Quit, "quit", false),
        ],
    }
}

/// The action a key stands for where the focus is, if any.
pub fn action_for_key(state: &State, event: KeyEvent) -> Option<Action> {
    let context = Context::of(state);
    let mut tables = vec![bindings(context)];
    if matches!(context, Context::Screen(_)) {
        tables.push(global());
    }
    let allowed = |b: &&Binding| state.offers(&b.action);
    for table in &tables {
        if let Some(binding) = table
            .iter()
            .filter(allowed)
            .find(|b| b.keys.iter().any(|k| k.matches(&event)))
        {
            return Some(binding.action.clone());
        }
    }
    match event.code {
        KeyCode::Char(c)
            if context.takes_text() && !event.modifiers.contains(KeyModifiers::CONTROL) =>
        {
            Some(Action::Input(c))
        }
        _ => None,
    }
}

/// Footer hints for the current focus: `(keys, label)`.
pub fn footer(state: &State) -> Vec<(String, &'static str)> {
    let context = Context::of(state);
    let offered = |b: &Binding| b.footer && state.offers(&b.action);
    let mut hints: Vec<(String, &'static str)> = bindings(context)
        .into_iter()
        .filter(offered)
        .map(|b| (b.keys[0].label(), b.label))
        .collect();
    if matches!(context, Context::Screen(_)) {
        hints.push((screen_keys(state.capabilities), "screens"));
        hints.extend(
            global()
                .into_iter()
                .filter(offered)
                .map(|b| (b.keys[0].label(), b.label)),
        );
    }
    hints
}

/// The digits of the screens this backend shows: "1-6", or "1-3,5" when
/// one in the middle is hidden.
fn screen_keys(capabilities: Capabilities) -> String {
    let shown: Vec<usize> = Screen::ALL
        .iter()
        .filter(|s| capabilities.shows(**s))
        .map(|s| s.index() + 1)
        .collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for n in shown {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => runs.push((n, n)),
        }
    }
    runs.iter()
        .map(|(start, end)| match end - start {
            0 => start.to_string(),
            1 => format!("{start},{end}"),
            _ => format!("{start}-{end}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Every key the backend has a use for, by context, for the help overlay.
pub fn help(state: &State) -> Vec<(&'static str, Vec<(String, &'static str)>)> {
    let capabilities = state.capabilities;
    let screen = |screen: Screen| (screen.title(), Context::Screen(screen));
    let sections = [
        ("Roles", Context::Screen(Screen::Roles)),
        ("Filter", Context::Filter),
        ("Request form", Context::Form),
        screen(Screen::Requests),
        screen(Screen::Grants),
        screen(Screen::Incidents),
        screen(Screen::Reviews),
        screen(Screen::Activity),
        ("Pop-ups", Context::Overlay),
        ("Prompts", Context::Input),
        ("Confirm", Context::Confirm),
        (
            "Confirm: access starts or ends at once",
            Context::ConfirmDanger,
        ),
        ("Confirm: a new password", Context::ConfirmEnter),
        ("Profiles", Context::Picker),
    ];
    let describe = |table: Vec<Binding>| {
        table
            .into_iter()
            .filter(|b| state.offers(&b.action))
            .map(|b| {
                (
                    b.keys.iter().map(Key::label).collect::<Vec<_>>().join(" "),
                    b.label,
                )
            })
            .collect::<Vec<_>>()
    };
    std::iter::once(("Everywhere", describe(global())))
        .chain(
            sections
                .into_iter()
                .filter(|(_, context)| match context {
                    Context::Screen(screen) => capabilities.shows(*screen),
                    Context::Picker => state.offers(&Action::PickProfile),
                    _ => true,
                })
                .map(|(title, context)| (title, describe(bindings(context)))),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ctrl-C quits wherever the focus is, as help says under "Everywhere".
    #[test]
    fn ctrl_c_quits_in_every_context() {
        let contexts = [
            Context::Screen(Screen::Roles),
            Context::Filter,
            Context::Form,
            Context::Input,
            Context::Confirm,
            Context::ConfirmDanger,
            Context::ConfirmEnter,
            Context::QuitWhileRevoking,
            Context::Overlay,
            Context::Picker,
        ];
        for context in contexts {
            let mut tables = vec![bindings(context)];
            if matches!(context, Context::Screen(_)) {
                tables.push(global());
            }
            assert!(
                tables.iter().flatten().any(|b| b.action == Action::Quit
                    && b.keys.iter().any(|k| k.matches(&KeyEvent::new(
                        KeyCode::Char('c'),
                        crossterm::event::KeyModifiers::CONTROL
                    )))),
                "{context:?}"
            );
        }
    }

    #[test]
    fn the_screen_hint_names_only_the_screens_shown() {
        assert_eq!(screen_keys(Capabilities::ALL), "1-6");
        let no_incidents = Capabilities {
            incidents: false,
            ..Capabilities::ALL
        };
        assert_eq!(screen_keys(no_incidents), "1-5");
        let neither = Capabilities {
            review: false,
            acknowledge: false,
            incidents: false,
            ..Capabilities::ALL
        };
        assert_eq!(screen_keys(neither), "1-3,5");
        let least = Capabilities {
            audit: false,
            ..neither
        };
        assert_eq!(screen_keys(least), "1-3");
    }
}
