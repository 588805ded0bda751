//! Reviewing others' requests: the approve, deny and acknowledge prompts,
//! claims, and the requester's history beside each review.

use hoist_api::{Grant, RequestHistory};

use super::banner;
use crate::app::action::Action;
use crate::app::command::Command;
use crate::app::state::{Level, Modal, Prompt, ReviewRow, Screen, State};

pub(super) fn review_prompt(state: &mut State, action: &Action) -> Vec<Command> {
    if state.screen != Screen::Reviews {
        return vec![];
    }
    let Some((row, request)) = state.selected_review() else {
        return vec![];
    };
    let id = request.id.clone();
    let role = state
        .role_label(&request.role, &request.role_name)
        .to_string();
    let who = request.requester.clone();
    let (prompt, title, required) = match (action, row) {
        (Action::Approve, ReviewRow::Pending(_)) => (
            Prompt::Approve { request_id: id },
            format!("Approve {who} for {role} (comment optional)"),
            false,
        ),
        (Action::Deny, ReviewRow::Pending(_)) => (
            Prompt::Deny { request_id: id },
            format!("Deny {who} for {role}: why?"),
            true,
        ),
        (Action::Acknowledge, ReviewRow::BreakGlass(_)) => (
            Prompt::Acknowledge { request_id: id },
            format!("Acknowledge {who}'s break-glass on {role} (comment optional)"),
            false,
        ),
        (Action::Approve | Action::Deny, ReviewRow::Waiting(_)) => {
            banner(
                state,
                "You already approved this request; it waits for other approvers",
                Level::Info,
            );
            return vec![];
        }
        (Action::Acknowledge, _) => {
            banner(
                state,
                "K acknowledges break-glass activations (lower list)",
                Level::Info,
            );
            return vec![];
        }
        _ => {
            banner(
                state,
                "Break-glass activations are acknowledged (K), not approved",
                Level::Info,
            );
            return vec![];
        }
    };
    state.modal = Some(Modal::Input {
        prompt,
        title,
        text: String::new(),
        required,
        error: None,
    });
    vec![]
}

/// Only a pending request is claimed; break-glass is acknowledged instead.
pub(super) fn claim(state: &mut State) -> Vec<Command> {
    match state.selected_review() {
        Some((ReviewRow::Pending(_), request)) => {
            let id = request.id.clone();
            state.busy.insert(id.clone());
            vec![Command::Claim(id)]
        }
        _ => vec![],
    }
}

pub(super) fn history_for_selection(state: &State) -> Vec<Command> {
    let Some((_, request)) = state.selected_review() else {
        return vec![];
    };
    let mut commands = Vec::new();
    if state.capabilities.history && !state.histories.contains_key(&request.id) {
        commands.push(Command::LoadHistory(request.id.clone()));
    }
    // An activation already has a grant: where is its access?
    if let Some(grant_id) = &request.grant_id
        && state.capabilities.credential
        && !state.reviewed_grants.contains_key(grant_id)
    {
        commands.push(Command::LoadGrant(grant_id.clone()));
    }
    commands
}

/// A grant under review, loaded or changed: kept while a request on the
/// Reviews screen points at it.
pub(super) fn grant_loaded(state: &mut State, grant: Grant) -> Vec<Command> {
    let reviewed = state
        .queue
        .iter()
        .chain(&state.break_glass)
        .any(|r| r.grant_id.as_deref() == Some(grant.id.as_str()));
    if reviewed {
        state.reviewed_grants.insert(grant.id.clone(), grant);
    }
    vec![]
}

/// Filed under every request it is about, found by requester and role (a
/// break-glass request and a pending one of the same person and role have
/// the same history).
pub(super) fn history_loaded(state: &mut State, history: RequestHistory) -> Vec<Command> {
    let ids: Vec<String> = state
        .queue
        .iter()
        .chain(&state.break_glass)
        .filter(|r| r.requester == history.requester && r.role == history.role)
        .map(|r| r.id.clone())
        .collect();
    for id in ids {
        state.histories.insert(id, history.clone());
    }
    vec![]
}
