//! The only place state changes: `update(state, action)` applies one action
//! and returns the side effects it needs, as commands. This file routes each
//! action to the concern that handles it; keys go by where the focus is
//! (a modal, the form, the filter, the screen).

mod form;
mod grants;
mod live;
mod load;
mod modals;
mod navigation;
mod requests;
mod reviews;
#[cfg(test)]
mod tests;

use chrono::TimeDelta;
use hoist_api::LiveEvent;

use super::action::{Action, Operation};
use super::command::Command;
use super::failure::{Failure, FailureKind};
use super::state::{Banner, Level, Modal, Screen, State};

/// How long a banner stays.
const BANNER_FOR: TimeDelta = TimeDelta::seconds(8);

pub use modals::why_not_leave;

pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    // A stronger sign-in asked for midway ends with the call that needed
    // it: an activation or a deactivation (Graph asks for one only there),
    // not a load or a poll that happens to end meanwhile.
    if matches!(
        action,
        Action::Filed(_)
            | Action::Extended { .. }
            | Action::GrantChanged(_)
            | Action::RevokeRefused { .. }
            | Action::Failed {
                operation: Operation::Filing | Operation::Revoking,
                ..
            }
    ) {
        modals::sign_in_over(state, None);
    }
    let heard = match &action {
        Action::Live(event) => match &**event {
            LiveEvent::Request { request } => Some(request.id.clone()),
            _ => None,
        },
        _ => None,
    };
    let answered = matches!(action, Action::Loaded(_) | Action::LoadFailed(_));
    let commands = match action {
        Action::Quit => modals::quit(state),
        Action::Tick(now) => grants::tick(state, now),
        Action::Resize(w, h) => {
            state.size = (w, h);
            vec![]
        }
        Action::Loaded(snapshot) => load::load(state, *snapshot),
        Action::LoadFailed(failure) => load::load_failed(state, &failure),
        Action::ActivityLoaded(events) => load::activity(state, events),
        Action::IncidentLoaded(view) => load::incident(state, *view),
        Action::HistoryLoaded(history) => reviews::history_loaded(state, history),
        Action::ReviewedGrantLoaded(grant) => reviews::grant_loaded(state, *grant),
        Action::Live(event) => live::event(state, *event),
        // Not a key: a pop-up or the form open does not swallow it.
        Action::ClockJumped => vec![Command::LoadAll],
        Action::StreamUp => live::stream_up(state),
        Action::StreamDown(reason) => live::stream_down(state, reason),
        Action::SessionExpired(reason) => live::session_expired(state, &reason),
        Action::SessionRenewed => live::session_renewed(state),
        Action::Filed(request) => form::filed(state, *request),
        Action::Extended { grant_id, request } => grants::extended(state, &grant_id, *request),
        Action::RequestChanged(request) => requests::changed(state, *request),
        Action::RevokePending(grant_id) => grants::revoke_pending(state, grant_id),
        Action::RevokeRefused { grant_id, failure } => {
            grants::revoke_refused(state, grant_id, &failure)
        }
        Action::GrantChanged(grant) => grants::changed(state, *grant),
        Action::CredentialLoaded { credential, copy } => {
            grants::credential_loaded(state, *credential, copy)
        }
        Action::Failed { operation, failure } => failed(state, operation, &failure),
        Action::DecisionFailed {
            request_id,
            operation,
            failure,
        } => decision_failed(state, &request_id, operation, &failure),
        Action::ExtendFailed { grant_id, failure } => {
            grants::extend_failed(state, &grant_id, failure.kind);
            failed(state, Operation::Extending, &failure)
        }
        Action::SignInPrompt(prompt) => modals::sign_in_arrived(state, prompt),
        Action::SwitchFailed { profile, reason } => modals::switch_failed(state, &profile, &reason),
        Action::SignInAgainFailed(reason) => sign_in_again_failed(state, &reason),
        other => key_action(state, other),
    };
    // What a load under way may not have read (see `State::loading`).
    if answered {
        state.loading = false;
        state.heard_while_loading.clear();
    }
    if let Some(id) = heard.filter(|_| state.loading) {
        state.heard_while_loading.insert(id);
    }
    if commands.contains(&Command::LoadAll) {
        state.loading = true;
        state.heard_while_loading.clear();
    }
    // A credential that came while a question, a form or the filter was
    // open, once it is closed; not if the question revoked its grant.
    if state.modal.is_none()
        && !grants::typing(state)
        && let Some(credential) = state.waiting_credential.take()
        && !matches!(&credential, Modal::Credential { grant_id, .. }
            if state.revoking.contains(grant_id))
    {
        state.modal = Some(credential);
    }
    commands
}

/// A decision on `request_id` failed: it alone is let go, and the reason
/// typed with it comes back, to send again with Enter.
fn decision_failed(
    state: &mut State,
    request_id: &str,
    operation: Operation,
    failure: &Failure,
) -> Vec<Command> {
    state.busy.remove(request_id);
    state.deciding.remove(request_id);
    let its_reason = matches!(&state.sent_reason,
        Some(Modal::Input { prompt, .. }) if prompt.request_id() == Some(request_id));
    if its_reason
        && state.modal.is_none()
        && let Some(Modal::Input {
            prompt,
            title,
            text,
            required,
            ..
        }) = state.sent_reason.take()
    {
        state.modal = Some(Modal::Input {
            prompt,
            title,
            text,
            required,
            error: Some(format!(
                "{}; Enter sends it again",
                failure.describe_for(&state.hoist)
            )),
        });
    }
    notify_error(state, operation, failure);
    vec![]
}

fn failed(state: &mut State, operation: Operation, failure: &Failure) -> Vec<Command> {
    // What an operation on one item marked as under way is let go by its
    // failure (which item is not said: all of that kind). A load, a
    // history, a filing or the browser marked nothing; a profile being
    // switched to, nor a decision, is let go by another's failure (a
    // decision's own is `decision_failed`).
    match operation {
        Operation::Cancelling
        | Operation::Revoking
        | Operation::Claiming
        | Operation::FetchingCredential
        | Operation::Extending => {
            let keep: std::collections::BTreeSet<String> = state
                .busy
                .iter()
                .filter(|id| state.deciding.contains(*id) || *id == modals::SWITCHING)
                .cloned()
                .collect();
            state.busy = keep;
        }
        _ => {}
    }
    // Only a form being sent is told of a filing's failure: one opened
    // since (the one sent was closed while it was answered) is another
    // filing's, and the failure is a banner instead.
    if let Some(form) = state.form.as_mut().filter(|form| form.submitting)
        && operation == Operation::Filing
    {
        // The role wants a more recent sign-in: sign in again here and
        // file the same form once more, with the same idempotency keys (a
        // role of a bundle filed already is answered, not filed twice).
        if failure.kind == FailureKind::StepUpRequired
            && state.signs_in_again
            && !form.signed_in_again
        {
            form.signed_in_again = true;
            form.begin_sending();
            form.error = Some(format!(
                "{}: sign in again to file it…",
                crate::text::sanitize::line(&failure.message)
            ));
            return vec![Command::SignInAgain {
                then: Box::new(form::filing(form)),
            }];
        }
        form.submitting = false;
        form.error = Some(failure.describe_for(&state.hoist));
        // A retry after a network error reuses the idempotency key.
        return vec![];
    }
    notify_error(state, operation, failure);
    vec![]
}

/// Signing in again did not work: the form stays as it was, saying why.
fn sign_in_again_failed(state: &mut State, reason: &str) -> Vec<Command> {
    modals::sign_in_over(state, None);
    let said = format!(
        "Could not sign in again: {}",
        crate::text::sanitize::line(reason)
    );
    match state.form.as_mut() {
        Some(form) => {
            form.submitting = false;
            form.error = Some(said);
        }
        None => banner(state, said, Level::Error),
    }
    vec![]
}

fn key_action(state: &mut State, action: Action) -> Vec<Command> {
    // The keymap offers none of these; a click or a script might.
    if !state.offers(&action) {
        return vec![];
    }
    if state.modal.is_some() {
        return modals::modal_action(state, action);
    }
    if action == Action::ShowSignIn
        && let Some(prompt) = state.hidden_sign_in.take()
    {
        return modals::show_sign_in(state, prompt);
    }
    if state.form.is_some() {
        return form::form_action(state, action);
    }
    if state.filtering
        && let Some(commands) = navigation::filter_key(state, &action)
    {
        return commands;
    }
    match action {
        Action::GoTo(screen) => navigation::go_to(state, screen),
        Action::NextScreen => {
            let next = navigation::next_screen(state, 1);
            navigation::go_to(state, next)
        }
        Action::PrevScreen => {
            let previous = navigation::next_screen(state, Screen::ALL.len() - 1);
            navigation::go_to(state, previous)
        }
        Action::Up | Action::ScrollUp => navigation::move_cursor(state, -1),
        Action::Down | Action::ScrollDown => navigation::move_cursor(state, 1),
        Action::PageUp => navigation::move_cursor(state, -(state.page() as isize)),
        Action::PageDown => navigation::move_cursor(state, state.page() as isize),
        Action::Top => navigation::move_cursor(state, isize::MIN / 2),
        Action::Bottom => navigation::move_cursor(state, isize::MAX / 2),
        Action::SelectRow(index) => navigation::select_row(state, index),
        Action::Help => {
            state.modal = Some(Modal::Help);
            vec![]
        }
        Action::PickProfile => modals::pick_profile(state),
        Action::Back => {
            state.banner = None;
            vec![]
        }
        Action::Refresh => {
            let mut commands = live::reload(state);
            if state.screen == Screen::Activity {
                commands.push(Command::LoadActivity);
            }
            commands
        }
        Action::StartFilter if state.screen == Screen::Roles => navigation::start_filter(state),
        Action::ToggleFavourite => navigation::toggle_favourite(state),
        Action::Mark if state.screen == Screen::Roles => form::mark(state),
        Action::NextBundle if state.screen == Screen::Roles => form::next_bundle(state),
        Action::CycleActors if state.screen == Screen::Activity => navigation::cycle_actors(state),
        Action::RevokeIncident if state.screen == Screen::Incidents => {
            grants::revoke_incident(state)
        }
        Action::NewRequest | Action::Select if state.screen == Screen::Roles => {
            form::open_form(state)
        }
        Action::Cancel
        | Action::Revoke
        | Action::Extend
        | Action::ShowCredential
        | Action::CopyCredential
        | Action::Approve
        | Action::Deny
        | Action::Acknowledge
        | Action::Claim
            if navigation::selection_left(state) =>
        {
            vec![]
        }
        Action::Cancel => requests::cancel(state),
        Action::Revoke => grants::revoke(state),
        Action::Extend => grants::extend(state),
        Action::ShowCredential => grants::credential(state, false),
        Action::CopyCredential => grants::credential(state, true),
        Action::Approve | Action::Deny | Action::Acknowledge => {
            reviews::review_prompt(state, &action)
        }
        Action::Claim => reviews::claim(state),
        Action::OpenTicket => navigation::open_ticket(state),
        _ => vec![],
    }
}

/// Keeps cursors inside their lists.
fn clamp(state: &mut State) {
    let activity = state.visible_activity().len();
    let c = &mut state.cursors;
    c.roles = c.roles.min(state.visible_roles.len().saturating_sub(1));
    c.requests = c.requests.min(state.requests.len().saturating_sub(1));
    c.grants = c.grants.min(state.grants.len().saturating_sub(1));
    c.reviews = c
        .reviews
        .min((state.queue.len() + state.break_glass.len()).saturating_sub(1));
    c.activity = c.activity.min(activity.saturating_sub(1));
}

fn banner(state: &mut State, text: impl Into<String>, level: Level) {
    // An error still showing is not covered by news of less weight: the
    // next answer (another grant revoked, the stream back) would hide at
    // once what did not happen (a revoke refused). Warnings still show.
    let error_showing = state
        .banner
        .as_ref()
        .is_some_and(|shown| shown.level == Level::Error && state.now < shown.until);
    if error_showing && level == Level::Info {
        return;
    }
    state.banner = Some(Banner {
        text: text.into(),
        level,
        until: state.now + BANNER_FOR,
    });
}

fn notify_error(state: &mut State, operation: Operation, failure: &Failure) {
    banner(
        state,
        format!(
            "{} ({})",
            failure.describe_for(&state.hoist),
            operation.label()
        ),
        Level::Error,
    );
}
