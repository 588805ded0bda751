//! Pop-ups that take the keys while open: confirmations, one-line prompts
//! (approve, deny, acknowledge), the credential and help.

use hoist_api::Decision;

use crate::app::action::Action;
use crate::app::command::Command;
use crate::app::state::{Modal, Prompt, State};

/// Quits, unless a revocation is still unconfirmed: hoist is what keeps
/// retrying it, so quitting would leave the grant active until it expires.
/// Then it asks; asked again (a second Ctrl-C), it quits.
pub(super) fn quit(state: &mut State) -> Vec<Command> {
    let asked = matches!(state.modal, Some(Modal::QuitWhileRevoking));
    if asked || state.unconfirmed_revocations().is_empty() {
        state.should_quit = true;
    } else {
        state.modal = Some(Modal::QuitWhileRevoking);
    }
    vec![]
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
            if let (Command::Submit { .. }, Some(form)) = (&yes, state.form.as_mut()) {
                form.submitting = true;
            }
            vec![yes]
        }
        (Modal::Confirm { .. }, Action::Decline | Action::Back) => vec![],
        (Modal::QuitWhileRevoking, Action::Confirm) => {
            state.should_quit = true;
            vec![]
        }
        (Modal::QuitWhileRevoking, Action::Decline | Action::Back) => vec![],
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
                Action::Submit => {
                    let comment = Some(text.trim().to_string()).filter(|t| !t.is_empty());
                    if !required || comment.is_some() {
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
                access: Some(access),
                role,
                token,
                expires_at,
            },
            action @ (Action::CopyCredential | Action::CopyUri),
        ) => {
            let (what, text) = match (&action, &access.command, &access.uri) {
                (Action::CopyUri, _, Some(uri)) => ("URI", uri.clone()),
                (_, Some(command), _) => ("command", command.clone()),
                (_, None, Some(uri)) => ("URI", uri.clone()),
                (_, None, None) => ("credential", token.clone()),
            };
            super::banner(
                state,
                format!("{what} for {role} copied"),
                crate::app::state::Level::Success,
            );
            state.modal = Some(Modal::Credential {
                access: Some(access),
                role,
                token,
                expires_at,
            });
            vec![Command::Copy(text)]
        }
        (Modal::Credential { .. }, Action::CopyCredential) => {
            // Copy what is shown: fetch a fresh one so its lifetime is full.
            match state.selected_grant() {
                Some(grant) => vec![Command::Credential {
                    grant_id: grant.id.clone(),
                    copy: true,
                }],
                None => vec![],
            }
        }
        (Modal::Help | Modal::Credential { .. }, Action::Back) => vec![],
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
    };
    if let Command::Review { request_id, .. } | Command::Acknowledge { request_id, .. } = &command {
        state.busy.insert(request_id.clone());
    }
    command
}
