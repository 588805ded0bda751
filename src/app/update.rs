//! The only place state changes: `update(state, action)` applies one action
//! and returns the side effects it needs, as commands.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{AccessRequest, Decision, Grant, GrantState, LiveEvent, RequestKind, RequestState};

use super::action::{Action, Operation, Snapshot};
use super::command::Command;
use super::failure::Failure;
use super::form::RequestForm;
use super::roles;
use super::state::{Banner, Connection, Level, Modal, Prompt, ReviewRow, Screen, State, WARN_AT};
use crate::text::{clock, format_duration, local_time, plural, sanitize};

/// How long a banner stays.
const BANNER_FOR: TimeDelta = TimeDelta::seconds(8);

pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    match action {
        Action::Quit => {
            state.should_quit = true;
            vec![]
        }
        Action::Tick(now) => tick(state, now),
        Action::Resize(w, h) => {
            state.size = (w, h);
            vec![]
        }
        Action::Loaded(snapshot) => {
            load(state, *snapshot);
            vec![]
        }
        Action::LoadFailed(failure) => {
            state.loaded = true;
            notify_error(state, Operation::Loading, &failure);
            vec![]
        }
        Action::ActivityLoaded(events) => {
            state.activity = events;
            state.activity.reverse();
            clamp(state);
            vec![]
        }
        Action::HistoryLoaded(history) => {
            let key = state
                .queue
                .iter()
                .chain(&state.break_glass)
                .find(|r| r.requester == history.requester && r.role == history.role)
                .map(|r| r.id.clone());
            if let Some(id) = key {
                state.histories.insert(id, history);
            }
            vec![]
        }
        Action::Live(event) => live(state, *event),
        Action::StreamUp => {
            let was_offline = matches!(state.connection, Connection::Offline { .. });
            state.connection = Connection::Live;
            if was_offline {
                banner(state, "Reconnected to the broker", Level::Success);
            }
            // Anything may have changed while we were away.
            vec![Command::LoadAll]
        }
        Action::StreamDown(reason) => {
            if !matches!(state.connection, Connection::Offline { .. }) {
                state.connection = Connection::Offline {
                    reason,
                    since: state.now,
                };
            }
            // The first load waits for the stream; without one, load anyway,
            // to show what the broker has (or why it cannot be reached).
            if state.loaded {
                vec![]
            } else {
                vec![Command::LoadAll]
            }
        }
        Action::SessionExpired(reason) => {
            state.banner = Some(Banner {
                text: format!(
                    "Session ended ({}): run `hoist login` in another terminal; your work here is kept",
                    sanitize::line(&reason)
                ),
                level: Level::Error,
                until: state.now + TimeDelta::days(1),
            });
            vec![]
        }
        Action::SessionRenewed => {
            banner(state, "Signed in again", Level::Success);
            vec![Command::LoadAll]
        }
        Action::Filed(request) => filed(state, *request),
        Action::IncidentLoaded(view) => {
            if state.selected_incident().as_deref() == Some(view.incident.as_str()) {
                state.incident = Some(*view);
            }
            vec![]
        }
        Action::RevokePending(grant_id) => {
            let role = state
                .grants
                .iter()
                .find(|g| g.id == grant_id)
                .map(|g| g.role.clone())
                .unwrap_or_default();
            state.revoking.insert(grant_id);
            banner(
                state,
                format!("Revoking {role}: waiting for the broker, retrying until it confirms"),
                Level::Warning,
            );
            vec![]
        }
        Action::RequestChanged(request) => {
            let request = *request;
            state.busy.remove(&request.id);
            upsert_request(state, request);
            vec![Command::LoadAll]
        }
        Action::GrantChanged(grant) => {
            let grant = *grant;
            state.busy.remove(&grant.id);
            if grant.state != GrantState::Active {
                banner(
                    state,
                    format!("{} {}", grant.role, grant.state.as_str()),
                    Level::Info,
                );
            }
            upsert_grant(state, grant);
            vec![Command::LoadAll]
        }
        Action::CredentialLoaded { credential, copy } => {
            let credential = *credential;
            state.busy.remove(&credential.grant_id);
            if copy {
                let until = local_time(credential.expires_at);
                banner(
                    state,
                    format!(
                        "Credential for {} copied; valid until {until}",
                        credential.role
                    ),
                    Level::Success,
                );
                vec![Command::Copy(credential.token)]
            } else {
                state.modal = Some(Modal::Credential {
                    role: credential.role,
                    token: credential.token,
                    expires_at: credential.expires_at,
                });
                vec![]
            }
        }
        Action::Failed { operation, failure } => {
            state.busy.clear();
            if let Some(form) = state.form.as_mut()
                && operation == Operation::Filing
            {
                form.submitting = false;
                form.error = Some(failure.describe());
                // A retry after a network error reuses the idempotency key.
                return vec![];
            }
            notify_error(state, operation, &failure);
            vec![]
        }
        other => key_action(state, other),
    }
}

fn key_action(state: &mut State, action: Action) -> Vec<Command> {
    // The keymap offers none of these; a click or a script might.
    if !state.capabilities.allows(&action) {
        return vec![];
    }
    if state.modal.is_some() {
        return modal_action(state, action);
    }
    if state.form.is_some() {
        return form_action(state, action);
    }
    if state.filtering {
        match action {
            Action::Input(c) => {
                state.filter.push(c);
                refilter(state);
                return vec![];
            }
            Action::Backspace => {
                state.filter.pop();
                refilter(state);
                return vec![];
            }
            Action::Back => {
                state.filtering = false;
                state.filter.clear();
                refilter(state);
                return vec![];
            }
            Action::Select => {
                state.filtering = false;
                return open_form(state);
            }
            _ => {}
        }
    }
    match action {
        Action::GoTo(screen) => go_to(state, screen),
        Action::NextScreen => go_to(state, next_screen(state, 1)),
        Action::PrevScreen => go_to(state, next_screen(state, Screen::ALL.len() - 1)),
        Action::Up | Action::ScrollUp => move_cursor(state, -1),
        Action::Down | Action::ScrollDown => move_cursor(state, 1),
        Action::PageUp => move_cursor(state, -(state.page() as isize)),
        Action::PageDown => move_cursor(state, state.page() as isize),
        Action::Top => move_cursor(state, isize::MIN / 2),
        Action::Bottom => move_cursor(state, isize::MAX / 2),
        Action::SelectRow(index) => select_row(state, index),
        Action::Help => {
            state.modal = Some(Modal::Help);
            vec![]
        }
        Action::Back => {
            state.banner = None;
            vec![]
        }
        Action::Refresh => {
            let mut commands = vec![Command::LoadAll];
            if state.screen == Screen::Activity {
                commands.push(Command::LoadActivity);
            }
            commands
        }
        Action::StartFilter if state.screen == Screen::Roles => {
            // A new search, as `/` is in vim and less.
            state.filtering = true;
            state.filter.clear();
            refilter(state);
            vec![]
        }
        Action::ToggleFavourite => toggle_favourite(state),
        Action::Mark if state.screen == Screen::Roles => mark(state),
        Action::NextBundle if state.screen == Screen::Roles => next_bundle(state),
        Action::RevokeIncident if state.screen == Screen::Incidents => revoke_incident(state),
        Action::NewRequest | Action::Select if state.screen == Screen::Roles => open_form(state),
        Action::Cancel => cancel(state),
        Action::Revoke => revoke(state),
        Action::Extend => extend(state),
        Action::ShowCredential | Action::CopyCredential => {
            let copy = action == Action::CopyCredential;
            let grant = state
                .selected_grant()
                .filter(|_| state.screen == Screen::Grants)
                .map(|g| g.id.clone());
            match grant {
                Some(grant_id) => {
                    state.busy.insert(grant_id.clone());
                    vec![Command::Credential { grant_id, copy }]
                }
                None => vec![],
            }
        }
        Action::Approve | Action::Deny | Action::Acknowledge => review_prompt(state, &action),
        Action::Claim => match state.selected_review() {
            Some((ReviewRow::Pending(_), request)) => {
                let id = request.id.clone();
                state.busy.insert(id.clone());
                vec![Command::Claim(id)]
            }
            _ => vec![],
        },
        Action::OpenTicket => open_ticket(state),
        _ => vec![],
    }
}

fn modal_action(state: &mut State, action: Action) -> Vec<Command> {
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
        (
            Modal::Input {
                prompt,
                title,
                mut text,
                required,
                ..
            },
            action,
        ) => match action {
            Action::Input(c) => {
                if !c.is_control() {
                    text.push(c);
                }
                state.modal = Some(Modal::Input {
                    prompt,
                    title,
                    text,
                    required,
                    error: None,
                });
                vec![]
            }
            Action::Backspace => {
                text.pop();
                state.modal = Some(Modal::Input {
                    prompt,
                    title,
                    text,
                    required,
                    error: None,
                });
                vec![]
            }
            Action::Back => vec![],
            Action::Submit => {
                let comment = Some(text.trim().to_string()).filter(|t| !t.is_empty());
                if required && comment.is_none() {
                    let error = Some("a reason is required: the requester sees it".to_string());
                    state.modal = Some(Modal::Input {
                        prompt,
                        title,
                        text,
                        required,
                        error,
                    });
                    return vec![];
                }
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
                if let Command::Review { request_id, .. }
                | Command::Acknowledge { request_id, .. } = &command
                {
                    state.busy.insert(request_id.clone());
                }
                vec![command]
            }
            _ => {
                state.modal = Some(Modal::Input {
                    prompt,
                    title,
                    text,
                    required,
                    error: None,
                });
                vec![]
            }
        },
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

fn form_action(state: &mut State, action: Action) -> Vec<Command> {
    let Some(form) = state.form.as_mut() else {
        return vec![];
    };
    if form.submitting {
        // Only closing is allowed while the broker is answering.
        if action == Action::Back {
            state.form = None;
        }
        return vec![];
    }
    match action {
        Action::Input(c) => form.input(c),
        Action::Backspace => form.backspace(),
        Action::Newline => form.newline(),
        Action::NextField => form.move_field(true),
        Action::PrevField => form.move_field(false),
        Action::Left if form.field == super::form::Field::Duration => form.cycle_duration(false),
        Action::Right if form.field == super::form::Field::Duration => form.cycle_duration(true),
        Action::ToggleBreakGlass if form.may_break_glass() => {
            form.break_glass = !form.break_glass;
            form.error = None;
        }
        Action::Back => state.form = None,
        Action::Submit => return submit(state),
        _ => {}
    }
    vec![]
}

fn submit(state: &mut State) -> Vec<Command> {
    let Some(form) = state.form.as_mut() else {
        return vec![];
    };
    if !form.problems().is_empty() {
        form.error = Some("fix the fields marked in red first".into());
        return vec![];
    }
    // Every role of a bundle goes out at once, each with its own key.
    let mut commands: Vec<Command> = form
        .bodies()
        .into_iter()
        .map(|(body, idempotency_key)| Command::Submit {
            body,
            idempotency_key,
        })
        .collect();
    let command = if commands.len() == 1 {
        commands.remove(0)
    } else {
        Command::Batch(commands)
    };
    if form.break_glass {
        let roles: Vec<&str> = form.roles().map(|r| r.id.as_str()).collect();
        let prompt = format!(
            "BREAK GLASS on {} now? Access starts at once and your approvers will review it.",
            roles.join(", ")
        );
        state.modal = Some(Modal::Confirm {
            prompt,
            yes: command,
            danger: true,
        });
        return vec![];
    }
    form.submitting = true;
    state.marked.clear();
    vec![command]
}

fn filed(state: &mut State, request: AccessRequest) -> Vec<Command> {
    state.form = None;
    if !state.filter.is_empty() {
        state.filter.clear();
        refilter(state);
    }
    let text = match request.state {
        RequestState::Active => format!("{} is active", request.role),
        RequestState::Pending => format!(
            "Requested {}: waiting for {}",
            request.role,
            plural(request.approvals_required as usize, "approval")
        ),
        RequestState::Approved => format!("{} approved; starts as scheduled", request.role),
        other => format!("{}: {other}", request.role),
    };
    let level = if request.state == RequestState::Active {
        Level::Success
    } else {
        Level::Info
    };
    banner(state, text, level);
    upsert_request(state, request);
    vec![Command::LoadAll]
}

fn load(state: &mut State, snapshot: Snapshot) {
    state.loaded = true;
    state.me = Some(snapshot.me);
    state.roles = snapshot.roles;
    state.search.clear();
    state.requests = snapshot.requests;
    state.grants = Vec::new();
    for grant in snapshot.grants {
        upsert_grant(state, grant);
    }
    state.queue = snapshot.queue;
    state.break_glass = snapshot.break_glass;
    let known: std::collections::HashSet<&str> = state
        .queue
        .iter()
        .chain(&state.break_glass)
        .map(|r| r.id.as_str())
        .collect();
    state.histories.retain(|id, _| known.contains(id.as_str()));
    refilter(state);
}

/// Keeps cursors inside their lists.
fn clamp(state: &mut State) {
    let c = &mut state.cursors;
    c.roles = c.roles.min(state.visible_roles.len().saturating_sub(1));
    c.requests = c.requests.min(state.requests.len().saturating_sub(1));
    c.grants = c.grants.min(state.grants.len().saturating_sub(1));
    c.reviews = c
        .reviews
        .min((state.queue.len() + state.break_glass.len()).saturating_sub(1));
    c.activity = c.activity.min(state.activity.len().saturating_sub(1));
}

pub fn refilter(state: &mut State) {
    let selected = state.selected_role().map(|r| r.id.clone());
    state.visible_roles = roles::visible(
        &state.roles,
        &state.favourites,
        &state.filter,
        &mut state.search,
    );
    // Typing a filter puts the best match under the cursor; otherwise keep the selection.
    state.cursors.roles = if state.filtering {
        0
    } else {
        selected
            .and_then(|id| {
                state
                    .visible_roles
                    .iter()
                    .position(|i| state.roles[*i].id == id)
            })
            .unwrap_or(0)
    };
    clamp(state);
}

fn go_to(state: &mut State, screen: Screen) -> Vec<Command> {
    state.screen = screen;
    state.filtering = false;
    match screen {
        Screen::Activity => vec![Command::LoadActivity],
        Screen::Reviews => history_for_selection(state),
        Screen::Incidents => incident_for_selection(state),
        _ => vec![],
    }
}

/// The screen `step` places on in tab order, past those the backend
/// cannot show.
fn next_screen(state: &State, step: usize) -> Screen {
    let count = Screen::ALL.len();
    (1..count)
        .map(|n| Screen::ALL[(state.screen.index() + n * step) % count])
        .find(|screen| state.capabilities.shows(*screen))
        .unwrap_or(state.screen)
}

fn incident_for_selection(state: &State) -> Vec<Command> {
    state
        .selected_incident()
        .map(Command::LoadIncident)
        .into_iter()
        .collect()
}

fn move_cursor(state: &mut State, by: isize) -> Vec<Command> {
    let len = match state.screen {
        Screen::Roles => state.visible_roles.len(),
        Screen::Requests => state.requests.len(),
        Screen::Grants => state.grants.len(),
        Screen::Reviews => state.queue.len() + state.break_glass.len(),
        Screen::Activity => state.activity.len(),
        Screen::Incidents => state.incident_refs().len(),
    };
    let cursor = match state.screen {
        Screen::Roles => &mut state.cursors.roles,
        Screen::Requests => &mut state.cursors.requests,
        Screen::Grants => &mut state.cursors.grants,
        Screen::Reviews => &mut state.cursors.reviews,
        Screen::Activity => &mut state.cursors.activity,
        Screen::Incidents => &mut state.cursors.incidents,
    };
    *cursor = (*cursor as isize)
        .saturating_add(by)
        .clamp(0, len.saturating_sub(1) as isize) as usize;
    if state.screen == Screen::Reviews {
        history_for_selection(state)
    } else if state.screen == Screen::Incidents {
        incident_for_selection(state)
    } else {
        vec![]
    }
}

fn select_row(state: &mut State, index: usize) -> Vec<Command> {
    let current = match state.screen {
        Screen::Roles => state.cursors.roles,
        Screen::Requests => state.cursors.requests,
        Screen::Grants => state.cursors.grants,
        Screen::Reviews => state.cursors.reviews,
        Screen::Activity => state.cursors.activity,
        Screen::Incidents => state.cursors.incidents,
    };
    move_cursor(state, index as isize - current as isize)
}

fn history_for_selection(state: &State) -> Vec<Command> {
    if !state.capabilities.history {
        return vec![];
    }
    match state.selected_review() {
        Some((_, request)) if !state.histories.contains_key(&request.id) => {
            vec![Command::LoadHistory(request.id.clone())]
        }
        _ => vec![],
    }
}

fn toggle_favourite(state: &mut State) -> Vec<Command> {
    if state.screen != Screen::Roles {
        return vec![];
    }
    let Some(role) = state.selected_role().map(|r| r.id.clone()) else {
        return vec![];
    };
    if !state.favourites.remove(&role) {
        state.favourites.insert(role);
    }
    refilter(state);
    vec![Command::SaveFavourites(
        state.favourites.iter().cloned().collect(),
    )]
}

fn open_form(state: &mut State) -> Vec<Command> {
    if !state.marked.is_empty() {
        return open_bundle(state);
    }
    let Some(role) = state.selected_role().cloned() else {
        return vec![];
    };
    if let Some(grant) = state.grant_for(&role.id) {
        let left = clock(state.time_left(grant));
        banner(
            state,
            format!("You hold {} ({left} left): e extends it", role.id),
            Level::Info,
        );
        return vec![];
    }
    if let Some(open) = state.open_request_for(&role.id) {
        let id = open.id.clone();
        banner(
            state,
            format!("{} is already requested ({id}); see Requests", role.id),
            Level::Info,
        );
        return vec![];
    }
    state.form = Some(RequestForm::new(role, uuid::Uuid::new_v4().to_string()));
    vec![]
}

/// The form for every marked role not already held or requested.
fn open_bundle(state: &mut State) -> Vec<Command> {
    let (ready, skipped): (Vec<_>, Vec<_>) = state
        .roles
        .iter()
        .filter(|r| state.marked.contains(&r.id))
        .cloned()
        .partition(|r| state.grant_for(&r.id).is_none() && state.open_request_for(&r.id).is_none());
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|r| r.id.as_str()).collect();
        banner(
            state,
            format!("Already held or requested, left out: {}", names.join(", ")),
            Level::Info,
        );
    }
    state.form = RequestForm::bundle(ready);
    vec![]
}

fn mark(state: &mut State) -> Vec<Command> {
    let Some(role) = state.selected_role().map(|r| r.id.clone()) else {
        return vec![];
    };
    if !state.marked.remove(&role) {
        state.marked.insert(role);
    }
    move_cursor(state, 1)
}

/// Marks the roles of the next named bundle from the config.
fn next_bundle(state: &mut State) -> Vec<Command> {
    if state.bundles.is_empty() {
        banner(
            state,
            "No bundles in the config ([bundles.NAME] roles = [...])",
            Level::Info,
        );
        return vec![];
    }
    let current: Vec<String> = state.marked.iter().cloned().collect();
    let next = state
        .bundles
        .iter()
        .position(|(_, roles)| {
            let mut sorted = roles.clone();
            sorted.sort();
            sorted == current
        })
        .map_or(0, |i| (i + 1) % state.bundles.len());
    let (name, roles) = state.bundles[next].clone();
    let known: Vec<String> = roles
        .iter()
        .filter(|r| state.roles.iter().any(|x| &x.id == *r))
        .cloned()
        .collect();
    state.marked = known.iter().cloned().collect();
    banner(
        state,
        format!(
            "Bundle {name}: {} marked; enter requests them together",
            known.join(", ")
        ),
        Level::Info,
    );
    vec![]
}

/// One key during an incident: revoke every grant of mine filed under it.
fn revoke_incident(state: &mut State) -> Vec<Command> {
    let Some(view) = state
        .incident
        .as_ref()
        .filter(|v| Some(&v.incident) == state.selected_incident().as_ref())
    else {
        return vec![];
    };
    let mine: Vec<&hoist_api::Grant> = view
        .grants
        .iter()
        .filter(|g| g.holder == state.user() && g.state == GrantState::Active)
        .collect();
    if mine.is_empty() {
        let text = format!("You hold no active grant under {}", view.incident);
        banner(state, text, Level::Info);
        return vec![];
    }
    let roles: Vec<&str> = mine.iter().map(|g| g.role.as_str()).collect();
    let reason = format!("revoked with everything under incident {}", view.incident);
    let commands = mine
        .iter()
        .map(|g| Command::Revoke {
            grant_id: g.id.clone(),
            reason: Some(reason.clone()),
        })
        .collect();
    state.modal = Some(Modal::Confirm {
        prompt: format!(
            "Revoke all {} of your grants under {} ({})?",
            mine.len(),
            view.incident,
            roles.join(", ")
        ),
        yes: Command::Batch(commands),
        danger: true,
    });
    vec![]
}

fn cancel(state: &mut State) -> Vec<Command> {
    if state.screen != Screen::Requests {
        return vec![];
    }
    let Some(request) = state.selected_request() else {
        return vec![];
    };
    if !matches!(
        request.state,
        RequestState::Pending | RequestState::Approved
    ) {
        banner(
            state,
            format!(
                "Only pending requests can be cancelled ({} is {})",
                request.id, request.state
            ),
            Level::Warning,
        );
        return vec![];
    }
    state.modal = Some(Modal::Confirm {
        prompt: format!("Cancel your request for {}?", request.role),
        yes: Command::Cancel(request.id.clone()),
        danger: false,
    });
    vec![]
}

/// The grant a key acts on: the selected grant, or on the Roles screen the
/// grant of the selected role.
fn target_grant(state: &State) -> Option<&Grant> {
    match state.screen {
        Screen::Grants => state.selected_grant(),
        Screen::Roles => state.selected_role().and_then(|r| state.grant_for(&r.id)),
        _ => None,
    }
}

fn revoke(state: &mut State) -> Vec<Command> {
    let Some(grant) = target_grant(state) else {
        return vec![];
    };
    state.modal = Some(Modal::Confirm {
        prompt: format!("Revoke {} now? Access ends at once.", grant.role),
        yes: Command::Revoke {
            grant_id: grant.id.clone(),
            reason: Some("revoked early by the holder".into()),
        },
        danger: true,
    });
    vec![]
}

/// One key: ask for the role's default duration again, with the same justification.
fn extend(state: &mut State) -> Vec<Command> {
    let Some(grant) = target_grant(state).cloned() else {
        return vec![];
    };
    let secs = state
        .roles
        .iter()
        .find(|r| r.id == grant.role)
        .map_or(1800, |r| r.default_duration_secs);
    state.busy.insert(grant.id.clone());
    banner(
        state,
        format!(
            "Asking to extend {} by {}",
            grant.role,
            format_duration(secs)
        ),
        Level::Info,
    );
    vec![Command::Extend {
        grant_id: grant.id,
        duration_secs: secs,
        justification: Some(grant.justification),
    }]
}

fn review_prompt(state: &mut State, action: &Action) -> Vec<Command> {
    if state.screen != Screen::Reviews {
        return vec![];
    }
    let Some((row, request)) = state.selected_review() else {
        return vec![];
    };
    let id = request.id.clone();
    let role = request.role.clone();
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

/// The ticket or incident reference of whatever is selected.
fn selected_reference(state: &State) -> Option<String> {
    let from_request = |r: &AccessRequest| r.ticket.clone().or_else(|| r.incident.clone());
    match state.screen {
        Screen::Requests => state.selected_request().and_then(from_request),
        Screen::Grants => state
            .selected_grant()
            .and_then(|g| g.ticket.clone().or_else(|| g.incident.clone())),
        Screen::Reviews => state.selected_review().and_then(|(_, r)| from_request(r)),
        Screen::Activity => state
            .activity
            .get(state.cursors.activity)
            .and_then(|e| e.incident.clone()),
        Screen::Incidents => state.selected_incident(),
        Screen::Roles => None,
    }
}

fn open_ticket(state: &mut State) -> Vec<Command> {
    let Some(reference) = selected_reference(state) else {
        banner(
            state,
            "Nothing selected has a ticket or incident reference",
            Level::Info,
        );
        return vec![];
    };
    match ticket_url(state.ticket_url.as_deref(), &reference) {
        Some(url) => {
            banner(state, format!("Opening {reference}"), Level::Info);
            vec![Command::OpenUrl(url)]
        }
        None => {
            banner(
                state,
                "Set ticket_url in the config to open tickets (e.g. https://tracker/browse/{ticket})",
                Level::Warning,
            );
            vec![]
        }
    }
}

/// Fills `{ticket}` in the template with the reference, percent-encoded.
pub fn ticket_url(template: Option<&str>, reference: &str) -> Option<String> {
    let template = template?;
    if !template.contains("{ticket}") {
        return None;
    }
    let encoded: String = url::form_urlencoded::byte_serialize(reference.as_bytes()).collect();
    let filled = template.replace("{ticket}", &encoded);
    let parsed = url::Url::parse(&filled).ok()?;
    matches!(parsed.scheme(), "https" | "http").then(|| parsed.to_string())
}

fn live(state: &mut State, event: LiveEvent) -> Vec<Command> {
    match event {
        LiveEvent::Hello { .. } => vec![],
        LiveEvent::Resync { .. } => vec![Command::LoadAll],
        LiveEvent::Request { request } => {
            let mine = request.requester == state.user();
            if mine {
                let before = state
                    .requests
                    .iter()
                    .find(|r| r.id == request.id)
                    .map(|r| r.state);
                let now_state = request.state;
                let role = request.role.clone();
                let reason = request.reason.clone();
                let approver = request
                    .reviews
                    .last()
                    .map(|r| r.reviewer.clone())
                    .unwrap_or_default();
                let duration = TimeDelta::seconds(request.duration_secs as i64);
                upsert_request(state, request);
                if before != Some(now_state) && before.is_some() {
                    return announce(
                        state,
                        &role,
                        now_state,
                        &approver,
                        reason.as_deref(),
                        duration,
                    );
                }
                vec![]
            } else {
                upsert_queue(state, request);
                history_for_selection(state)
            }
        }
        LiveEvent::Grant { grant } => {
            if grant.holder == state.user() {
                let was_active = state.grants.iter().any(|g| g.id == grant.id);
                let ended_by_other = grant.state == GrantState::Revoked
                    && grant.revoked_by.as_deref() != Some(state.user());
                let role = grant.role.clone();
                let by = grant.revoked_by.clone().unwrap_or_default();
                upsert_grant(state, grant);
                if was_active && ended_by_other {
                    banner(
                        state,
                        format!("{role} was revoked by {}", sanitize::line(&by)),
                        Level::Error,
                    );
                    return vec![Command::Notify(format!("{role} was revoked"))];
                }
            }
            vec![]
        }
    }
}

/// Tells the requester, loudly, that their request was decided.
fn announce(
    state: &mut State,
    role: &str,
    to: RequestState,
    by: &str,
    reason: Option<&str>,
    duration: TimeDelta,
) -> Vec<Command> {
    let by = sanitize::line(by).into_owned();
    let (text, level) = match to {
        RequestState::Active => {
            // The grant's own event may come a moment later; its length is known now.
            let left = state
                .grant_for(role)
                .map_or(duration, |g| state.time_left(g));
            (
                format!("✓ {role} approved by {by}: active, {} left", clock(left)),
                Level::Success,
            )
        }
        RequestState::Approved => (
            format!("✓ {role} approved by {by}; starts as scheduled"),
            Level::Success,
        ),
        RequestState::Denied => (
            format!(
                "✗ {role} denied by {by}: {}",
                sanitize::line(reason.unwrap_or(""))
            ),
            Level::Error,
        ),
        RequestState::TimedOut => (
            format!("{role}: no decision in time; the request lapsed"),
            Level::Warning,
        ),
        RequestState::Pending => return vec![],
        other => (format!("{role}: {other}"), Level::Info),
    };
    banner(state, text.clone(), level);
    vec![Command::Notify(text), Command::LoadAll]
}

fn upsert_request(state: &mut State, request: AccessRequest) {
    match state.requests.iter_mut().find(|r| r.id == request.id) {
        Some(slot) => *slot = request,
        None => state.requests.insert(0, request),
    }
    clamp(state);
}

/// Keeps the approver's lists in step: pending requests in the queue,
/// unacknowledged break-glass in its own list, everything else out.
fn upsert_queue(state: &mut State, request: AccessRequest) {
    state.queue.retain(|r| r.id != request.id);
    state.break_glass.retain(|r| r.id != request.id);
    if request.state == RequestState::Pending {
        state.queue.push(request);
        state.queue.sort_by_key(|r| r.lapses_at);
    } else if request.break_glass
        && request.acknowledgement.is_none()
        && request.kind == RequestKind::Access
    {
        state.break_glass.push(request);
    }
    clamp(state);
}

fn upsert_grant(state: &mut State, grant: Grant) {
    state.grants.retain(|g| g.id != grant.id);
    if grant.state != GrantState::Active {
        state.revoking.remove(&grant.id);
    }
    if grant.state == GrantState::Active && grant.expires_at > state.now {
        state.grants.push(grant);
        state.grants.sort_by_key(|g| g.expires_at);
    }
    clamp(state);
}

fn tick(state: &mut State, now: DateTime<Utc>) -> Vec<Command> {
    state.now = now;
    if state.banner.as_ref().is_some_and(|b| b.until <= now) {
        state.banner = None;
    }
    let mut commands = Vec::new();
    // Grants that reached their end leave the list at once, whatever the network says.
    let ended: Vec<String> = state
        .grants
        .iter()
        .filter(|g| g.expires_at <= now)
        .map(|g| g.role.clone())
        .collect();
    if !ended.is_empty() {
        state.grants.retain(|g| g.expires_at > now);
        clamp(state);
        let text = format!("{} expired", ended.join(", "));
        banner(state, text.clone(), Level::Warning);
        commands.push(Command::Notify(text));
    }
    let warn: Vec<(String, String, TimeDelta)> = state
        .grants
        .iter()
        .filter(|g| g.expires_at - now <= WARN_AT && !state.warned.contains(&g.id))
        .map(|g| (g.id.clone(), g.role.clone(), g.expires_at - now))
        .collect();
    for (id, role, left) in warn {
        state.warned.insert(id);
        let text = format!(
            "⚠ {role} expires in {}: press e on Grants to extend",
            clock(left)
        );
        banner(state, text.clone(), Level::Warning);
        commands.push(Command::Notify(text));
    }
    commands
}

fn banner(state: &mut State, text: impl Into<String>, level: Level) {
    state.banner = Some(Banner {
        text: text.into(),
        level,
        until: state.now + BANNER_FOR,
    });
}

fn notify_error(state: &mut State, operation: Operation, failure: &Failure) {
    banner(
        state,
        format!("{} ({})", failure.describe(), operation.label()),
        Level::Error,
    );
}
