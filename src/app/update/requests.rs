//! My requests and the approver's queue, kept in step with answers and
//! live events; cancelling a request of mine.

use hoist_api::{AccessRequest, RequestKind, RequestState};

use super::{banner, clamp};
use crate::app::command::Command;
use crate::app::state::{Level, Modal, Screen, State};

/// The broker's answer to a cancel, review, claim or acknowledgement: a
/// request of mine goes to my requests, another's to the approver's lists
/// (while it is still marked as mine to decide, so its leaving the queue
/// is no surprise).
pub(super) fn changed(state: &mut State, request: AccessRequest) -> Vec<Command> {
    let id = request.id.clone();
    // An event of a later change came first: what it showed stays.
    let Some(request) = state.heard.request(request, state.now) else {
        state.busy.remove(&id);
        state.deciding.remove(&id);
        return vec![Command::LoadAll];
    };
    super::live::incident_request(state, &request);
    let mine = state
        .me
        .as_ref()
        .is_some_and(|me| me.user == request.requester);
    if mine {
        upsert_request(state, request);
    } else {
        upsert_queue(state, request);
    }
    state.busy.remove(&id);
    state.deciding.remove(&id);
    if matches!(&state.sent_reason, Some(Modal::Input { prompt, .. }) if prompt.request_id() == Some(id.as_str()))
    {
        state.sent_reason = None;
    }
    vec![Command::LoadAll]
}

pub(super) fn cancel(state: &mut State) -> Vec<Command> {
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
        prompt: format!(
            "Cancel your request for {}?",
            state.role_label(&request.role, &request.role_name)
        ),
        yes: Command::Cancel(request.id.clone()),
        danger: false,
        repeats: false,
    });
    vec![]
}

pub(super) fn upsert_request(state: &mut State, request: AccessRequest) {
    let selection = state.selection();
    match state.requests.iter_mut().find(|r| r.id == request.id) {
        Some(slot) => *slot = request,
        None => state.requests.insert(0, request),
    }
    state.reselect(&selection);
    clamp(state);
}

/// Keeps the approver's lists in step: pending requests in the queue,
/// unacknowledged break-glass in its own list, everything else out.
pub(super) fn upsert_queue(state: &mut State, mut request: AccessRequest) {
    let selection = state.selection();
    // Only the queue's own load names a request's approvers; an event or an
    // answer about it keeps the names already known.
    if request.approvers.is_empty()
        && let Some(known) = state.queue.iter().find(|r| r.id == request.id)
    {
        request.approvers = known.approvers.clone();
    }
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
    state.reselect(&selection);
    clamp(state);
}
