//! Answers that replace what the state holds: everything after a load,
//! the audit log, an incident.

use hoist_api::{AccessRequest, AuditEvent, GrantState, IncidentView, RequestKind, RequestState};

use super::navigation::refilter_keeping;
use super::{clamp, grants, notify_error};
use crate::app::action::{Operation, Snapshot};
use crate::app::command::Command;
use crate::app::failure::Failure;
use crate::app::state::{Connection, State};

pub(super) fn load(state: &mut State, snapshot: Snapshot) -> Vec<Command> {
    state.reload_due = None;
    // The broker's now as the answer came, by the offset it set: the
    // first ticks ran on the local clock alone.
    state.now = snapshot.now;
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
    state.heard.forget_old(state.now);
    state.requests = newest_requests(state, snapshot.requests, |_| true);
    // What was known before, so an access removed meanwhile is said once.
    let before: Vec<hoist_api::Grant> = std::mem::take(&mut state.grants)
        .into_iter()
        .chain(std::mem::take(&mut state.ending))
        .collect();
    let mut commands = Vec::new();
    for grant in snapshot.grants {
        // A load answered before a live event that came in meanwhile must
        // not put the grant back where it was (provisioning after live,
        // active after revoked).
        let (grant, _) = state.heard.newest_grant(grant, state.now);
        let prior = before.iter().find(|g| g.id == grant.id);
        if let Some(news) = grants::place(state, grant, prior) {
            commands.extend(grants::announce(state, &news));
        }
    }
    // A grant that ended meanwhile needs no revocation any more.
    super::modals::revocation_confirmed(state);
    // What the stream told of while the load ran, and the load's reads
    // may predate: kept where it belongs as last heard, though not in the
    // answer (a request filed meanwhile, its bell rung already).
    let heard_meanwhile =
        |list: &[AccessRequest], loaded: &[AccessRequest]| -> Vec<AccessRequest> {
            list.iter()
                .filter(|r| state.heard_while_loading.contains(&r.id))
                .filter(|r| loaded.iter().all(|l| l.id != r.id))
                .cloned()
                .collect()
        };
    let queued_meanwhile = heard_meanwhile(&state.queue, &snapshot.queue);
    let glass_meanwhile = heard_meanwhile(&state.break_glass, &snapshot.break_glass);
    state.queue = newest_requests(state, snapshot.queue, |r| r.state == RequestState::Pending);
    state.queue.extend(queued_meanwhile);
    state.queue.sort_by_key(|r| r.lapses_at);
    state.break_glass = newest_requests(state, snapshot.break_glass, |r| {
        r.break_glass && r.acknowledgement.is_none() && r.kind == RequestKind::Access
    });
    state.break_glass.extend(glass_meanwhile);
    let now = state.now;
    state.workload_grants = snapshot
        .workload_grants
        .into_iter()
        .map(|grant| state.heard.newest_grant(grant, now).0)
        .filter(|grant| grant.state == GrantState::Active && grant.expires_at > now)
        .collect();
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
    // With the stream up no event says to load again (one down reloads
    // when it is back): tried again by itself, later each time.
    if matches!(state.connection, Connection::Live) {
        let tries = state.reload_due.map_or(0, |(_, tries)| tries) + 1;
        let wait = (5_i64 << tries.min(4)).min(60);
        state.reload_due = Some((state.now + chrono::TimeDelta::seconds(wait), tries));
    }
    vec![]
}

pub(super) fn activity(state: &mut State, events: Vec<AuditEvent>) -> Vec<Command> {
    state.activity = events;
    state.activity.reverse();
    clamp(state);
    vec![]
}

/// The newest copy heard of each request a load brought; one that a change
/// heard since took out of the list (`belongs` no longer) is left out.
fn newest_requests(
    state: &mut State,
    loaded: Vec<AccessRequest>,
    belongs: impl Fn(&AccessRequest) -> bool,
) -> Vec<AccessRequest> {
    let now = state.now;
    loaded
        .into_iter()
        .filter_map(|request| {
            let approvers = request.approvers.clone();
            let (mut newest, overtaken) = state.heard.newest_request(request, now);
            if !overtaken {
                return Some(newest);
            }
            // Only the queue's load names a request's approvers.
            if newest.approvers.is_empty() {
                newest.approvers = approvers;
            }
            belongs(&newest).then_some(newest)
        })
        .collect()
}

/// Only the incident still selected is kept: the cursor may have moved on.
pub(super) fn incident(state: &mut State, mut view: IncidentView) -> Vec<Command> {
    if state.selected_incident().as_deref() == Some(view.incident.as_str()) {
        let now = state.now;
        for request in &mut view.requests {
            *request = state.heard.newest_request(request.clone(), now).0;
        }
        for grant in &mut view.grants {
            *grant = state.heard.newest_grant(grant.clone(), now).0;
        }
        state.incident = Some(view);
    }
    vec![]
}
