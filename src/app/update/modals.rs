//! Pop-ups that take the keys while open: confirmations, one-line prompts
//! (approve, deny, acknowledge), the credential and help, the profiles to
//! switch to, and a device sign-in in progress.

use hoist_api::Decision;

use super::banner;
use crate::app::action::Action;
use crate::app::command::Command;
use crate::app::state::{Level, Modal, Prompt, SignInPrompt, State};

/// What the busy spinner calls a switch in progress.
pub(super) const SWITCHING: &str = "switching profile";

/// Opens the list of profiles with the one on screen under the cursor.
pub(super) fn pick_profile(state: &mut State) -> Vec<Command> {
    let cursor = state
        .profiles
        .iter()
        .position(|p| Some(&p.name) == state.profile_name.as_ref())
        .unwrap_or(0);
    state.modal = Some(Modal::Profiles { cursor });
    vec![]
}

/// Closes the sign-in pop-up if it is the one for `profile` (`None`: a
/// stronger sign-in asked for midway), or forgets it if it was closed.
pub(super) fn sign_in_over(state: &mut State, profile: Option<&str>) {
    if let Some(Modal::SignIn(prompt)) = &state.modal
        && prompt.profile.as_deref() == profile
    {
        state.modal = None;
    }
    if state
        .hidden_sign_in
        .as_ref()
        .is_some_and(|prompt| prompt.profile.as_deref() == profile)
    {
        state.hidden_sign_in = None;
    }
}

/// Why the profile on screen may not be left now, if it may not: when the
/// picker asks, and again when the profile picked has opened (its sign-in
/// may take minutes, while this screen stays in use).
pub fn why_not_leave(state: &State) -> Option<String> {
    // Only this profile's hoist retries them: leaving would drop them.
    if !state.unconfirmed_revocations().is_empty() {
        return Some("A revocation is not confirmed yet: switch once it is".into());
    }
    if state
        .form
        .as_ref()
        .is_some_and(|form| form.submitting || !form.justification.trim().is_empty())
    {
        return Some("A request form is open: send or close it, then switch".into());
    }
    // A question or a typed reason would be dropped, and the keys meant
    // for it would act on the other profile's screen.
    if matches!(
        state.modal,
        Some(Modal::Confirm { .. } | Modal::Input { .. })
    ) {
        return Some("A question is open: answer or close it, then switch".into());
    }
    if !state.deciding.is_empty() {
        return Some("A decision is on its way to the broker: switch once it is answered".into());
    }
    None
}

/// Shows a sign-in's pop-up, new or closed earlier. One that comes while
/// another pop-up asks something, while the person types (a form not
/// being sent, the filter), or over a credential shown once, waits,
/// hidden, for ^O: the
/// question keeps its keys, what is typed goes where it was going, and
/// the credential stays on screen.
pub(super) fn sign_in_arrived(state: &mut State, prompt: SignInPrompt) -> Vec<Command> {
    // A form being sent takes no keys: the sign-in is what it waits for.
    let typing = state.form.as_ref().is_some_and(|form| !form.submitting) || state.filtering;
    let waits = match &state.modal {
        Some(Modal::SignIn(_)) => false,
        Some(Modal::Credential { .. }) => true,
        Some(open) => open.asks(),
        None => typing,
    };
    if waits {
        state.hidden_sign_in = Some(prompt);
        banner(
            state,
            "A sign-in waits for you: ^O shows its code".to_string(),
            Level::Warning,
        );
        return vec![];
    }
    show_sign_in(state, prompt)
}

/// Shows a sign-in's pop-up, as it arrives or asked for again (^O).
pub(super) fn show_sign_in(state: &mut State, prompt: SignInPrompt) -> Vec<Command> {
    state.hidden_sign_in = None;
    state.modal = Some(Modal::SignIn(prompt));
    vec![]
}

/// The profile could not be opened: what is on screen stays, and says why.
pub(super) fn switch_failed(state: &mut State, profile: &str, reason: &str) -> Vec<Command> {
    sign_in_over(state, Some(profile));
    state.busy.remove(SWITCHING);
    banner(
        state,
        format!("Could not open profile {profile}: {reason}"),
        Level::Error,
    );
    vec![]
}

/// Quits, unless a revocation is still unconfirmed: hoist is what keeps
/// retrying it, so quitting would leave the grant active until it expires.
/// Then it asks; asked again (a second Ctrl-C), it quits.
pub(super) fn quit(state: &mut State) -> Vec<Command> {
    let asked = matches!(state.modal, Some(Modal::QuitWhileRevoking));
    if asked || state.unconfirmed_revocations().is_empty() {
        state.should_quit = true;
    } else {
        state.behind_quit = match state.modal.replace(Modal::QuitWhileRevoking) {
            // A sign-in goes on behind the question, hidden as Esc hides
            // it (^O shows it again), and is forgotten when it ends.
            Some(Modal::SignIn(prompt)) => {
                state.hidden_sign_in = Some(prompt);
                None
            }
            covered => covered,
        };
    }
    vec![]
}

/// The question to quit closed with hoist still running: the pop-up it
/// covered is open again, as it was.
pub(super) fn stay(state: &mut State) {
    state.modal = state.behind_quit.take();
}

/// A revocation was confirmed: if the question to quit was waiting only on
/// that, the answer is in, and hoist quits as it was asked to.
pub(super) fn revocation_confirmed(state: &mut State) {
    if matches!(state.modal, Some(Modal::QuitWhileRevoking))
        && state.unconfirmed_revocations().is_empty()
    {
        state.modal = None;
        state.should_quit = true;
    }
}

pub(super) fn modal_action(state: &mut State, action: Action) -> Vec<Command> {
    let Some(modal) = state.modal.take() else {
        return vec![];
    };
    match (modal, action) {
        (Modal::Confirm { yes, .. }, Action::Confirm) => {
            // A filing (one role, or a bundle's batch) is the form's, sent.
            let filing = match &yes {
                Command::Submit { .. } => true,
                Command::Batch(commands) => commands
                    .iter()
                    .all(|command| matches!(command, Command::Submit { .. })),
                _ => false,
            };
            if filing && let Some(form) = state.form.as_mut() {
                form.begin_sending();
                state.marked.clear();
            }
            // Unconfirmed from the moment it is asked for, not from its
            // first failure: quitting while the first call hangs asks too.
            let revokes = match &yes {
                Command::Batch(commands) => commands.iter().collect(),
                one => vec![one],
            };
            for command in revokes {
                match command {
                    Command::Revoke { grant_id, .. } => {
                        // Tried again: its refusal is no longer the news.
                        if state.revoke_refused.remove(grant_id).is_some() {
                            state.banner = None;
                        }
                        state.revoking.insert(grant_id.clone());
                    }
                    // A credential fetched after asking (a new password)
                    // shows its spinner as one fetched at once does.
                    Command::Credential { grant_id, .. } => {
                        state.busy.insert(grant_id.clone());
                    }
                    _ => {}
                }
            }
            vec![yes]
        }
        (Modal::Confirm { .. }, Action::Decline | Action::Back) => vec![],
        (Modal::QuitWhileRevoking, Action::Confirm) => {
            state.should_quit = true;
            vec![]
        }
        (Modal::QuitWhileRevoking, Action::Decline | Action::Back) => {
            stay(state);
            vec![]
        }
        (
            Modal::Input {
                prompt,
                title,
                mut text,
                required,
                ..
            },
            action,
        ) => {
            let error = match action {
                Action::Input(c) => {
                    if !c.is_control() {
                        text.push(c);
                    }
                    None
                }
                Action::Backspace => {
                    text.pop();
                    None
                }
                Action::Back => return vec![],
                Action::Submit if matches!(prompt, Prompt::TypeRoleId { .. }) => {
                    let Prompt::TypeRoleId { role, file } = prompt else {
                        return vec![];
                    };
                    if text.trim() == role {
                        if let Some(form) = state.form.as_mut() {
                            form.begin_sending();
                        }
                        state.marked.clear();
                        return vec![*file];
                    }
                    let error = Some(format!("type {role} exactly to file"));
                    state.modal = Some(Modal::Input {
                        prompt: Prompt::TypeRoleId { role, file },
                        title,
                        text,
                        required,
                        error,
                    });
                    return vec![];
                }
                Action::Submit => {
                    let comment = Some(text.trim().to_string()).filter(|t| !t.is_empty());
                    if !required || comment.is_some() {
                        state.sent_reason = comment.is_some().then(|| Modal::Input {
                            prompt: prompt.clone(),
                            title: title.clone(),
                            text: text.clone(),
                            required,
                            error: None,
                        });
                        return vec![send(state, prompt, comment)];
                    }
                    Some("a reason is required: the requester sees it".to_string())
                }
                _ => None,
            };
            state.modal = Some(Modal::Input {
                prompt,
                title,
                text,
                required,
                error,
            });
            vec![]
        }
        // Access at a target is copied as shown: fetching it again would
        // set a new password and stop the one on screen working.
        (
            Modal::Credential {
                grant_id,
                access: Some(access),
                role,
                token,
                expires_at,
            },
            action @ (Action::CopyCredential | Action::CopyUri),
        ) => {
            let (what, text) = match (&action, &access.uri) {
                (Action::CopyUri, Some(uri)) => ("URI", uri.clone()),
                _ => {
                    let (what, text) = crate::app::access::copied_by_y(&access, &token);
                    (what, text.to_string())
                }
            };
            let copyable = crate::app::access::copyable(&text, what == "credential");
            if copyable {
                super::banner(
                    state,
                    format!("{what} for {role} copied"),
                    crate::app::state::Level::Success,
                );
            } else {
                super::grants::not_copied(state, what, &role);
            }
            state.modal = Some(Modal::Credential {
                grant_id,
                access: Some(access),
                role,
                token,
                expires_at,
            });
            if copyable {
                vec![Command::Copy(text)]
            } else {
                vec![]
            }
        }
        (Modal::Credential { grant_id, .. }, Action::CopyCredential) => {
            // Copy the shown grant's credential: fetch a fresh one so its
            // lifetime is full. The list may have moved under the pop-up.
            vec![Command::Credential {
                grant_id: grant_id.clone(),
                copy: true,
            }]
        }
        (Modal::Profiles { cursor }, Action::Up) => {
            state.modal = Some(Modal::Profiles {
                cursor: cursor.saturating_sub(1),
            });
            vec![]
        }
        (Modal::Profiles { cursor }, Action::Down) => {
            let last = state.profiles.len().saturating_sub(1);
            state.modal = Some(Modal::Profiles {
                cursor: (cursor + 1).min(last),
            });
            vec![]
        }
        (Modal::Profiles { cursor }, Action::Select) => {
            let Some(chosen) = state.profiles.get(cursor).map(|p| p.name.clone()) else {
                return vec![];
            };
            if Some(&chosen) == state.profile_name.as_ref() {
                return vec![];
            }
            // One at a time: two sign-ins racing would show whichever ended last.
            if state.busy.contains(SWITCHING) {
                banner(state, "Another profile is still opening", Level::Warning);
                return vec![];
            }
            if let Some(why) = why_not_leave(state) {
                banner(state, why, Level::Warning);
                return vec![];
            }
            state.busy.insert(SWITCHING.into());
            banner(state, format!("Opening profile {chosen}…"), Level::Info);
            vec![Command::SwitchProfile(chosen)]
        }
        // Hidden, not cancelled: the sign-in keeps waiting until its code
        // expires, and Ctrl-O shows it again.
        (Modal::SignIn(prompt), Action::Back) => {
            state.hidden_sign_in = Some(prompt);
            vec![]
        }
        (Modal::Help | Modal::Credential { .. } | Modal::Profiles { .. }, Action::Back) => {
            vec![]
        }
        (modal, _) => {
            state.modal = Some(modal);
            vec![]
        }
    }
}

/// The decision or acknowledgement a prompt was for, marked busy until the
/// broker answers.
fn send(state: &mut State, prompt: Prompt, comment: Option<String>) -> Command {
    let command = match prompt {
        Prompt::Approve { request_id } => Command::Review {
            request_id,
            decision: Decision::Approve,
            comment,
        },
        Prompt::Deny { request_id } => Command::Review {
            request_id,
            decision: Decision::Deny,
            comment,
        },
        Prompt::Acknowledge { request_id } => Command::Acknowledge {
            request_id,
            comment,
        },
        Prompt::TypeRoleId { file, .. } => *file,
    };
    if let Command::Review { request_id, .. } | Command::Acknowledge { request_id, .. } = &command {
        state.busy.insert(request_id.clone());
        state.deciding.insert(request_id.clone());
    }
    command
}
