//! The request form: opening it on a role or a bundle of marked roles,
//! typing into it, and sending it.

use hoist_api::{AccessRequest, RequestState, Role};

use super::navigation::{move_cursor, refilter};
use super::{banner, requests};
use crate::app::action::Action;
use crate::app::command::Command;
use crate::app::form::{Field, RequestForm};
use crate::app::state::{Level, Modal, Prompt, State};
use crate::text::{clock, plural};

pub(super) fn form_action(state: &mut State, action: Action) -> Vec<Command> {
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
        // Space on the Break-glass field is the same toggle.
        Action::Input(' ') if form.field == Field::BreakGlass => {
            toggle_break_glass(form, &state.requests)
        }
        Action::Input(c) => form.input(c),
        Action::Backspace => form.backspace(),
        Action::Newline => form.newline(),
        Action::NextField => form.move_field(true),
        Action::PrevField => form.move_field(false),
        Action::Left if form.field == Field::Duration => form.cycle_duration(false),
        Action::Right if form.field == Field::Duration => form.cycle_duration(true),
        Action::ToggleBreakGlass => toggle_break_glass(form, &state.requests),
        Action::Back => state.form = None,
        Action::Submit => return submit(state),
        _ => {}
    }
    vec![]
}

/// [`RequestForm::toggle_break_glass`], once a request decided since the
/// form opened no longer holds break-glass on.
fn toggle_break_glass(form: &mut RequestForm, requests: &[AccessRequest]) {
    form.requested.retain(|(_, id)| {
        requests.iter().any(|r| {
            r.id == *id && matches!(r.state, RequestState::Pending | RequestState::Approved)
        })
    });
    form.toggle_break_glass()
}

fn submit(state: &mut State) -> Vec<Command> {
    // Approved while the form was open: the broker would refuse to file
    // it again, and the form could never be sent.
    let held: Vec<String> = match &state.form {
        Some(form) => form
            .roles()
            .filter(|r| state.grant_for(&r.id).is_some())
            .map(|r| r.id.clone())
            .collect(),
        None => return vec![],
    };
    let Some(form) = state.form.as_mut() else {
        return vec![];
    };
    if !held.is_empty() {
        let names = held.join(", ");
        if !held.iter().all(|role| form.remove_role(role)) {
            state.form = None;
            banner(state, format!("You hold {names} now"), Level::Info);
            return vec![];
        }
        form.error = Some(format!(
            "You hold {names} now: taken out of the form; send again to file the rest"
        ));
        return vec![];
    }
    if !form.problems().is_empty() {
        form.error = Some("fix the fields marked in red first".into());
        return vec![];
    }
    if form.roles().all(|role| form.filed.contains(&role.id)) {
        // What is left of it was filed already (the rest taken out).
        state.form = None;
        banner(state, "Every role of the form is filed", Level::Info);
        return vec![];
    }
    let command = filing(form);
    // The most critical roles are confirmed by typing the role's id (one
    // of them, for a bundle): a stronger check than yes or no, and it
    // stands for the break-glass question too.
    if let Some(role) = form.roles().find(|r| r.tier == Some(0)) {
        let role = role.id.clone();
        let what = if form.break_glass {
            "BREAK GLASS on tier-0 role"
        } else {
            "Tier-0 role"
        };
        state.modal = Some(Modal::Input {
            title: format!("{what} {role}: type its id to file"),
            prompt: Prompt::TypeRoleId {
                role,
                file: Box::new(command),
            },
            text: String::new(),
            required: true,
            error: None,
        });
        return vec![];
    }
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
            repeats: false,
        });
        return vec![];
    }
    form.begin_sending();
    state.marked.clear();
    vec![command]
}

/// What filing the form sends: every role of a bundle at once, each with
/// its own idempotency key, so sending it again files nothing twice.
pub(super) fn filing(form: &RequestForm) -> Command {
    let mut commands: Vec<Command> = form
        .bodies()
        .into_iter()
        // Filed already (a bundle sent again for a role refused): its
        // answer came, and nothing of it is asked again.
        .filter(|(body, _)| !form.filed.contains(&body.role))
        .map(|(body, idempotency_key)| Command::Submit {
            body,
            idempotency_key,
        })
        .collect();
    if commands.len() == 1 {
        commands.remove(0)
    } else {
        Command::Batch(commands)
    }
}

/// A filing answered: the form that sent it closes once every role of it
/// is filed; until then (a bundle's other roles still on their way, or one
/// refused, whose reason the form keeps showing) it stays. A form opened
/// since, for another filing, stays too.
pub(super) fn filed(state: &mut State, request: AccessRequest) -> Vec<Command> {
    let all_filed = match state.form.as_mut() {
        Some(form) if form.sent && form.roles().any(|role| role.id == request.role) => {
            form.filed.insert(request.role.clone());
            let all = form.roles().all(|role| form.filed.contains(&role.id));
            Some(all)
        }
        _ => None,
    };
    if all_filed == Some(true) {
        state.form = None;
        if !state.filter.is_empty() {
            state.filter.clear();
            refilter(state);
        }
    }
    let role = state.role_label(&request.role, &request.role_name);
    let text = match request.state {
        RequestState::Active => format!("{} is active", role),
        RequestState::Pending => format!(
            "Requested {}: waiting for {}",
            role,
            plural(request.approvals_required as usize, "approval")
        ),
        // Approved with no start of its own: granted, and taking effect at
        // the broker (Entra applies a role minutes after activating it).
        RequestState::Approved if request.starts_at.is_none() => {
            format!(
                "{} activated, propagating: the access follows shortly",
                role
            )
        }
        RequestState::Approved => format!("{} approved; starts as scheduled", role),
        other => format!("{}: {other}", role),
    };
    let level = if request.state == RequestState::Active {
        Level::Success
    } else {
        Level::Info
    };
    banner(state, text, level);
    requests::upsert_request(state, request);
    vec![Command::LoadAll]
}

pub(super) fn open_form(state: &mut State) -> Vec<Command> {
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
    let requested = state.open_request_for(&role.id).map(|open| open.id.clone());
    if let Some(id) = &requested
        && !role.break_glass
    {
        banner(
            state,
            format!("{} is already requested ({id}); see Requests", role.id),
            Level::Info,
        );
        return vec![];
    }
    // Mid-incident, a request still waiting for approval must not stand
    // between a responder who may break glass and the role: the form
    // opens to break glass over it.
    let mut form = RequestForm::new(role, uuid::Uuid::new_v4().to_string());
    form.break_glass = requested.is_some();
    form.requested = requested
        .map(|id| (form.role.id.clone(), id))
        .into_iter()
        .collect();
    state.form = Some(form);
    vec![]
}

/// The form for every marked role not already held. A marked role with a
/// request of the caller's still waiting is filed again only by breaking
/// glass: where the caller may break glass on every role of the form, it
/// comes in when break-glass is switched on (ctrl-b), and the form opens
/// in break-glass when there is nothing else to file; otherwise it is left
/// out. The banner names what is left out, and why.
fn open_bundle(state: &mut State) -> Vec<Command> {
    // Each marked role, in the screen's order, with the caller's grant of
    // it (held) or request for it still waiting, if any.
    let marked: Vec<(Role, bool, Option<String>)> = state
        .roles
        .iter()
        .filter(|r| state.marked.contains(&r.id))
        .map(|r| {
            let held = state.grant_for(&r.id).is_some();
            let waiting = state.open_request_for(&r.id).map(|o| o.id.clone());
            (r.clone(), held, waiting)
        })
        .collect();
    let unheld = || marked.iter().filter(|(_, held, _)| !held);
    let may_break_glass = unheld().all(|(role, _, _)| role.break_glass);
    let mut free = Vec::new();
    let mut waiting = Vec::new();
    let mut left_out = Vec::new();
    for (role, held, open) in marked {
        match (held, open) {
            (true, _) => left_out.push(format!("{} (held)", role.id)),
            (false, Some(id)) if !may_break_glass => {
                left_out.push(format!("{} (requested: {id})", role.id))
            }
            (false, Some(id)) => waiting.push((role, id)),
            (false, None) => free.push(role),
        }
    }
    if !left_out.is_empty() {
        banner(
            state,
            format!("Left out of the bundle: {}", left_out.join(", ")),
            Level::Info,
        );
    }
    let Some(mut form) = RequestForm::bundle(free) else {
        // Only waiting roles: the form can only break glass over them.
        state.form = RequestForm::bundle(waiting.iter().map(|(r, _)| r.clone()).collect()).map(
            |mut form| {
                form.break_glass = true;
                form.requested = waiting
                    .into_iter()
                    .map(|(role, id)| (role.id, id))
                    .collect();
                form
            },
        );
        return vec![];
    };
    form.set_aside = waiting
        .into_iter()
        .map(|(role, id)| (role, id, uuid::Uuid::new_v4().to_string()))
        .collect();
    if !form.set_aside.is_empty() {
        // Each role's own default, as in any bundle: one role's would be
        // too long for another that comes in with break-glass.
        form.duration = String::new();
    }
    state.form = Some(form);
    vec![]
}

pub(super) fn mark(state: &mut State) -> Vec<Command> {
    let Some(role) = state.selected_role().map(|r| r.id.clone()) else {
        return vec![];
    };
    if !state.marked.remove(&role) {
        state.marked.insert(role);
    }
    move_cursor(state, 1)
}

/// Marks the roles of the next named bundle from the config.
pub(super) fn next_bundle(state: &mut State) -> Vec<Command> {
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
