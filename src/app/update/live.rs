//! The broker's event stream and the session: changes as they happen,
//! the connection going down and coming back, the session ending.

use chrono::TimeDelta;
use hoist_api::{AccessRequest, Grant, GrantState, LiveEvent, RequestState};

use super::requests::{upsert_queue, upsert_request};
use super::{banner, grants, reviews};
use crate::app::command::Command;
use crate::app::state::{Banner, Connection, Level, Screen, State};
use crate::text::{clock, sanitize};

/// Keeps the incident on screen in step with a request the broker reported:
/// one filed under it since it loaded joins it.
pub(super) fn incident_request(state: &mut State, request: &AccessRequest) {
    let Some(view) = state.incident.as_mut() else {
        return;
    };
    if let Some(slot) = view.requests.iter_mut().find(|r| r.id == request.id) {
        *slot = request.clone();
    } else if request.incident.as_deref() == Some(view.incident.as_str()) {
        // Oldest first.
        view.requests.push(request.clone());
    }
}

/// Keeps the incident on screen in step with a grant the broker reported:
/// one granted under it since it loaded joins it (and what `X` revokes).
pub(super) fn incident_grant(state: &mut State, grant: &Grant) {
    let Some(view) = state.incident.as_mut() else {
        return;
    };
    if let Some(slot) = view.grants.iter_mut().find(|g| g.id == grant.id) {
        *slot = grant.clone();
    } else if grant.incident.as_deref() == Some(view.incident.as_str()) {
        // Newest first.
        view.grants.insert(0, grant.clone());
    }
}

pub(super) fn stream_up(state: &mut State) -> Vec<Command> {
    let was_offline = matches!(state.connection, Connection::Offline { .. });
    state.connection = Connection::Live;
    if was_offline {
        banner(state, "Reconnected to the broker", Level::Success);
    }
    // Anything may have changed while we were away.
    reload(state)
}

/// Everything shown, loaded again (a reconnect, a resync, `R`): the lists,
/// and what only a move of the cursor loads otherwise, the incident on
/// the Incidents screen and the grants the Reviews details show.
pub(super) fn reload(state: &mut State) -> Vec<Command> {
    let mut commands = vec![Command::LoadAll];
    if state.screen == Screen::Incidents || state.incident.is_some() {
        commands.extend(super::navigation::incident_for_selection(state));
    }
    // The selected review's grant, fetched again (the copy shown stays
    // until the new one comes); the others' when the cursor reaches them.
    let selected = state
        .selected_review()
        .and_then(|(_, request)| request.grant_id.clone());
    state
        .reviewed_grants
        .retain(|id, _| Some(id) == selected.as_ref());
    if state.screen == Screen::Reviews
        && state.capabilities.credential
        && let Some(grant_id) = selected
    {
        commands.push(Command::LoadGrant(grant_id));
    }
    commands
}

pub(super) fn stream_down(state: &mut State, reason: String) -> Vec<Command> {
    // The stream's return loads everything again.
    state.reload_due = None;
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

/// Everything on screen is kept: the person signs in elsewhere and the
/// renewal picks the session up.
pub(super) fn session_expired(state: &mut State, reason: &str) -> Vec<Command> {
    state.banner = Some(Banner {
        text: format!(
            "Session ended ({}): run `{} login` in another terminal; your work here is kept",
            sanitize::line(reason),
            sanitize::line(&state.hoist)
        ),
        level: Level::Error,
        until: state.now + TimeDelta::days(1),
    });
    vec![]
}

pub(super) fn session_renewed(state: &mut State) -> Vec<Command> {
    banner(state, "Signed in again", Level::Success);
    vec![Command::LoadAll]
}

pub(super) fn event(state: &mut State, event: LiveEvent) -> Vec<Command> {
    // An older copy than one already heard (overtaken on its way from
    // another broker instance) would put the screen back where it was.
    let event = match event {
        LiveEvent::Request { request } => match state.heard.request(request, state.now) {
            Some(request) => LiveEvent::Request { request },
            None => return vec![],
        },
        LiveEvent::Grant { grant } => match state.heard.grant(grant, state.now) {
            Some(grant) => LiveEvent::Grant { grant },
            None => return vec![],
        },
        other => other,
    };
    match &event {
        LiveEvent::Request { request } => incident_request(state, request),
        LiveEvent::Grant { grant } => incident_grant(state, grant),
        _ => {}
    }
    match event {
        // A type only a newer broker knows: the requests and grants it
        // concerns still come as events of their own.
        LiveEvent::Hello { ordered, .. } => {
            state.heard.ordered = ordered;
            vec![]
        }
        LiveEvent::Unknown => vec![],
        LiveEvent::Resync { .. } => reload(state),
        LiveEvent::Request { request } => {
            let mine = request.requester == state.user();
            if mine {
                let before = state
                    .requests
                    .iter()
                    .find(|r| r.id == request.id)
                    .map(|r| r.state);
                let now_state = request.state;
                let role = state
                    .role_label(&request.role, &request.role_name)
                    .to_string();
                let role_id = request.role.clone();
                let reason = request.reason.clone();
                let approver = request
                    .reviews
                    .last()
                    .map(|r| r.reviewer.clone())
                    .unwrap_or_default();
                // Beyond what a duration can hold is "for ever" to show.
                let duration = i64::try_from(request.duration_secs)
                    .ok()
                    .and_then(TimeDelta::try_seconds)
                    .unwrap_or(TimeDelta::MAX);
                let scheduled = request.starts_at.is_some();
                upsert_request(state, request);
                if before != Some(now_state) && before.is_some() {
                    return announce(
                        state,
                        (&role_id, &role),
                        now_state,
                        &approver,
                        reason.as_deref(),
                        (duration, scheduled),
                    );
                }
                vec![]
            } else {
                let arrived = arrives_in_my_queue(state, &request);
                upsert_queue(state, request);
                let mut commands = reviews::history_for_selection(state);
                if let Some(text) = arrived {
                    commands.insert(0, Command::Notify(text));
                }
                commands
            }
        }
        LiveEvent::Grant { grant } if grant.holder != state.user() => {
            // A workload's grant on a role I approve or audit: shown beside
            // mine while active, gone once it ends.
            if hoist_api::is_workload(&grant.holder) {
                state.workload_grants.retain(|g| g.id != grant.id);
                if grant.state == GrantState::Active && grant.expires_at > state.now {
                    state.workload_grants.push(grant.clone());
                    state.workload_grants.sort_by_key(|g| g.expires_at);
                }
            }
            reviews::grant_loaded(state, grant)
        }
        LiveEvent::Grant { grant } => {
            if grant.holder == state.user() {
                let was_active = state.grants.iter().any(|g| g.id == grant.id);
                // A backend that cannot say who ended it (Entra: the grant
                // is simply gone) names no one; gone while my own revoke
                // was on its way, it is mine.
                let unnamed = grant.revoked_by.as_deref().is_none_or(str::is_empty);
                let ended_by_other = grant.state == GrantState::Revoked
                    && grant.revoked_by.as_deref() != Some(state.user())
                    && !(unnamed && state.revoking.contains(&grant.id));
                let role = state.role_label(&grant.role, &grant.role_name).to_string();
                let said = match (&grant.revoked_by, &grant.revoke_reason) {
                    (Some(by), _) if !by.is_empty() => {
                        format!("{role} was revoked by {}", sanitize::line(by))
                    }
                    (_, Some(why)) => format!("{role} was revoked: {}", sanitize::line(why)),
                    _ => format!("{role} was revoked"),
                };
                if let Some(news) = grants::upsert_grant(state, grant) {
                    let mut commands = grants::announce(state, &news);
                    if was_active && ended_by_other {
                        commands.push(Command::Notify(format!("{role} was revoked")));
                    }
                    return commands;
                }
                if was_active && ended_by_other {
                    banner(state, said, Level::Error);
                    return vec![Command::Notify(format!("{role} was revoked"))];
                }
            }
            vec![]
        }
    }
}

/// What to tell an approver when a request lands in their queue: one they
/// may decide, pending, not seen before, and not already reviewed by them.
fn arrives_in_my_queue(state: &State, request: &AccessRequest) -> Option<String> {
    let approver = !state.capabilities.approver_roles
        || state
            .me
            .as_ref()
            .is_some_and(|me| me.approver_for.contains(&request.role));
    let known = state.queue.iter().any(|r| r.id == request.id);
    if !approver || known || request.state != RequestState::Pending || state.awaits_others(request)
    {
        return None;
    }
    let tier = request.tier.map(|t| format!(" (T{t})")).unwrap_or_default();
    Some(format!(
        "To review: {} asks for {}{tier}",
        sanitize::line(&request.requester),
        sanitize::line(state.role_label(&request.role, &request.role_name))
    ))
}

/// Tells the requester, loudly, that their request was decided.
fn announce(
    state: &mut State,
    (role_id, role): (&str, &str),
    to: RequestState,
    by: &str,
    reason: Option<&str>,
    (duration, scheduled): (TimeDelta, bool),
) -> Vec<Command> {
    let by = sanitize::line(by).into_owned();
    let (text, level) = match to {
        RequestState::Active => {
            // The grant's own event may come a moment later; its length is known now.
            let left = state
                .grant_for(role_id)
                .map_or(duration, |g| state.time_left(g));
            // Activated without an approver (a broker that applies access
            // later, once it has propagated): nobody to name.
            let approved = if by.is_empty() {
                String::new()
            } else {
                format!(" approved by {by}")
            };
            (
                format!("✓ {role}{approved}: active, {} left", clock(left)),
                Level::Success,
            )
        }
        RequestState::Approved if !scheduled => (
            format!("✓ {role} activated, propagating: the access follows shortly"),
            Level::Success,
        ),
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
