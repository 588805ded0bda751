//! Answers that replace what the state holds: everything after a load,
//! the audit log, an incident.

use hoist_api::{AuditEvent, IncidentView};

use super::navigation::refilter_keeping;
use super::{clamp, grants, notify_error};
use crate::app::action::{Operation, Snapshot};
use crate::app::command::Command;
use crate::app::failure::Failure;
use crate::app::state::State;

pub(super) fn load(state: &mut State, snapshot: Snapshot) -> Vec<Command> {
    let selection = state.selection();
    let role = state.selected_role().map(|r| r.id.clone());
    // The selected grant gone by the person's own revocation is no
    // surprise to them (`place` forgets it is theirs).
    let own = selection
        .grant
        .as_ref()
        .is_some_and(|id| state.revoking.contains(id));
    let lost = state.lost.grants;
    state.loaded = true;
    state.me = Some(snapshot.me);
    state.roles = snapshot.roles;
    state.search.clear();
    state.requests = snapshot.requests;
    // What was known before, so an access removed meanwhile is said once.
    let before: Vec<hoist_api::Grant> = std::mem::take(&mut state.grants)
        .into_iter()
        .chain(std::mem::take(&mut state.ending))
        .collect();
    let mut commands = Vec::new();
    for mut grant in snapshot.grants {
        let prior = before.iter().find(|g| g.id == grant.id);
        // A load answered before a live event that came in meanwhile must
        // not put the access back where it was (provisioning after live).
        if let Some(newer) = prior.and_then(|p| p.access.as_ref()).filter(|p| {
            grant
                .access
                .as_ref()
                .is_some_and(|a| a.updated_at < p.updated_at)
        }) {
            grant.access = Some(newer.clone());
        }
        if let Some(news) = grants::place(state, grant, prior) {
            commands.extend(grants::announce(state, &news));
        }
    }
    // A grant that ended meanwhile needs no revocation any more.
    super::modals::revocation_confirmed(state);
    state.queue = snapshot.queue;
    state.workload_grants = snapshot.workload_grants;
    state.break_glass = snapshot.break_glass;
    let known: std::collections::HashSet<&str> = state
        .queue
        .iter()
        .chain(&state.break_glass)
        .map(|r| r.id.as_str())
        .collect();
    state.histories.retain(|id, _| known.contains(id.as_str()));
    state.reselect(&selection);
    if own {
        state.lost.grants = lost;
    }
    refilter_keeping(state, role);
    commands
}

/// Without a first load the screens would say "loading…" forever; they
/// say why instead.
pub(super) fn load_failed(state: &mut State, failure: &Failure) -> Vec<Command> {
    state.loaded = true;
    notify_error(state, Operation::Loading, failure);
    vec![]
}

pub(super) fn activity(state: &mut State, events: Vec<AuditEvent>) -> Vec<Command> {
    state.activity = events;
    state.activity.reverse();
    clamp(state);
    vec![]
}

/// Only the incident still selected is kept: the cursor may have moved on.
pub(super) fn incident(state: &mut State, view: IncidentView) -> Vec<Command> {
    if state.selected_incident().as_deref() == Some(view.incident.as_str()) {
        state.incident = Some(view);
    }
    vec![]
}
