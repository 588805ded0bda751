//! Moving around: screens, cursors, the Roles filter and favourites, and
//! opening a selection's ticket in the browser.

use hoist_api::AccessRequest;

use super::{banner, clamp, form, reviews};
use crate::app::action::Action;
use crate::app::command::Command;
use crate::app::roles;
use crate::app::state::{Level, Screen, State};

/// Keys typed while the Roles filter has the focus; `None` for the keys
/// that act as they do without a filter (arrows, screens).
pub(super) fn filter_key(state: &mut State, action: &Action) -> Option<Vec<Command>> {
    match action {
        Action::Input(c) => {
            state.filter.push(*c);
            refilter(state);
        }
        Action::Backspace => {
            state.filter.pop();
            refilter(state);
        }
        Action::Back => {
            state.filtering = false;
            state.filter.clear();
            refilter(state);
        }
        Action::Select => {
            state.filtering = false;
            return Some(form::open_form(state));
        }
        _ => return None,
    }
    Some(vec![])
}

/// A new search, as `/` is in vim and less.
pub(super) fn start_filter(state: &mut State) -> Vec<Command> {
    state.filtering = true;
    state.filter.clear();
    refilter(state);
    vec![]
}

/// The filter's text changed: typing a filter puts the best match under
/// the cursor; otherwise the selection is kept.
pub(super) fn refilter(state: &mut State) {
    let selected = if state.filtering {
        None
    } else {
        state.selected_role().map(|r| r.id.clone())
    };
    refilter_keeping(state, selected);
}

/// The roles shown again, keeping the cursor on the role `selected` (by
/// id), which the caller read before it replaced the roles: the old
/// visible indices point into the old list, not the new one. A reload
/// while the person filters keeps the match they moved to; without one,
/// the cursor goes to the best match.
pub(super) fn refilter_keeping(state: &mut State, selected: Option<String>) {
    state.visible_roles = roles::visible(
        &state.roles,
        &state.favourites,
        &state.filter,
        &mut state.search,
    );
    state.cursors.roles = selected
        .and_then(|id| {
            state
                .visible_roles
                .iter()
                .position(|i| state.roles[*i].id == id)
        })
        .unwrap_or(0);
    clamp(state);
}

pub(super) fn go_to(state: &mut State, screen: Screen) -> Vec<Command> {
    state.screen = screen;
    state.filtering = false;
    // What is on the screen now is what the person chooses from.
    chose(state);
    match screen {
        Screen::Activity => vec![Command::LoadActivity],
        Screen::Reviews => reviews::history_for_selection(state),
        Screen::Incidents => incident_for_selection(state),
        _ => vec![],
    }
}

/// The screen `step` places on in tab order, past those the backend
/// cannot show.
pub(super) fn next_screen(state: &State, step: usize) -> Screen {
    let count = Screen::ALL.len();
    (1..count)
        .map(|n| Screen::ALL[(state.screen.index() + n * step) % count])
        .find(|screen| state.capabilities.shows(*screen))
        .unwrap_or(state.screen)
}

pub(super) fn incident_for_selection(state: &State) -> Vec<Command> {
    state
        .selected_incident()
        .map(Command::LoadIncident)
        .into_iter()
        .collect()
}

/// Whether the item the person had selected on this screen left its list
/// by someone else's doing (see [`crate::app::state::Lost`]): then a key
/// that acts on an item does nothing, this once, but say so, rather than
/// fall on the neighbour that took its place. The next one acts.
pub(super) fn selection_left(state: &mut State) -> bool {
    let (lost, what) = match state.screen {
        Screen::Requests => (&mut state.lost.requests, "request"),
        Screen::Grants => (&mut state.lost.grants, "grant"),
        Screen::Reviews => (&mut state.lost.reviews, "request"),
        _ => return false,
    };
    if !std::mem::take(lost) {
        return false;
    }
    banner(
        state,
        format!(
            "The {what} you had selected was decided or ended meanwhile; nothing was done. \
             The cursor is on the next one: press again to act on it"
        ),
        Level::Warning,
    );
    true
}

/// Forgets that this screen's selection left its list: the person chose
/// again.
fn chose(state: &mut State) {
    match state.screen {
        Screen::Requests => state.lost.requests = false,
        Screen::Grants => state.lost.grants = false,
        Screen::Reviews => state.lost.reviews = false,
        _ => {}
    }
}

pub(super) fn move_cursor(state: &mut State, by: isize) -> Vec<Command> {
    chose(state);
    let len = match state.screen {
        Screen::Roles => state.visible_roles.len(),
        Screen::Requests => state.requests.len(),
        Screen::Grants => state.grants.len(),
        Screen::Reviews => state.queue.len() + state.break_glass.len(),
        Screen::Activity => state.visible_activity().len(),
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
        reviews::history_for_selection(state)
    } else if state.screen == Screen::Incidents {
        incident_for_selection(state)
    } else {
        vec![]
    }
}

pub(super) fn select_row(state: &mut State, index: usize) -> Vec<Command> {
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

pub(super) fn toggle_favourite(state: &mut State) -> Vec<Command> {
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

/// The ticket or incident reference of whatever is selected.
pub(super) fn selected_reference(state: &State) -> Option<String> {
    let from_request = |r: &AccessRequest| r.ticket.clone().or_else(|| r.incident.clone());
    match state.screen {
        Screen::Requests => state.selected_request().and_then(from_request),
        Screen::Grants => state
            .selected_grant()
            .and_then(|g| g.ticket.clone().or_else(|| g.incident.clone())),
        Screen::Reviews => state.selected_review().and_then(|(_, r)| from_request(r)),
        Screen::Activity => state
            .visible_activity()
            .get(state.cursors.activity)
            .and_then(|e| e.incident.clone()),
        Screen::Incidents => state.selected_incident(),
        Screen::Roles => None,
    }
}

pub(super) fn open_ticket(state: &mut State) -> Vec<Command> {
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
fn ticket_url(template: Option<&str>, reference: &str) -> Option<String> {
    let template = template?;
    if !template.contains("{ticket}") {
        return None;
    }
    let encoded: String = url::form_urlencoded::byte_serialize(reference.as_bytes()).collect();
    let filled = template.replace("{ticket}", &encoded);
    let parsed = url::Url::parse(&filled).ok()?;
    matches!(parsed.scheme(), "https" | "http").then(|| parsed.to_string())
}

/// Everyone's events, then people's only, then workloads' only.
pub(super) fn cycle_actors(state: &mut State) -> Vec<Command> {
    state.actors = state.actors.next();
    state.cursors.activity = 0;
    vec![]
}
