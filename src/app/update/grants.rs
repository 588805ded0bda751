//! My grants: the clock that ends them, the warning before it does,
//! revoking (one or everything under an incident), extending, and the
//! credential.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{AccessRequest, Credential, Grant, GrantState, RequestState};

use super::{banner, clamp};
use crate::app::access;
use crate::app::command::Command;
use crate::app::failure::{Failure, FailureKind};
use crate::app::state::{Connection, Level, Modal, Screen, State, WARN_AT};
use crate::text::{clock, format_duration, local_time, plural};

pub(super) fn tick(state: &mut State, now: DateTime<Utc>) -> Vec<Command> {
    state.now = now;
    if state.banner.as_ref().is_some_and(|b| b.until <= now) {
        state.banner = None;
    }
    let mut commands = Vec::new();
    if let Some((due, tries)) = state.reload_due
        && due <= now
        && matches!(state.connection, Connection::Live)
    {
        // Kept (with its count) until a load succeeds.
        state.reload_due = Some((now + chrono::TimeDelta::seconds(60), tries));
        commands.extend(super::live::reload(state));
    }
    state.workload_grants.retain(|g| g.expires_at > now);
    // Grants that reached their end leave the list at once, whatever the network says.
    let ended: Vec<String> = state
        .grants
        .iter()
        .filter(|g| g.expires_at <= now)
        .map(|g| state.role_label(&g.role, &g.role_name).to_string())
        .collect();
    if !ended.is_empty() {
        // Access at a target outlives the grant until the broker removes
        // it: those grants move to the ending list, never straight out.
        let selection = state.selection();
        let (gone, kept): (Vec<Grant>, Vec<Grant>) = std::mem::take(&mut state.grants)
            .into_iter()
            .partition(|g| g.expires_at <= now);
        state.grants = kept;
        state
            .ending
            .extend(gone.into_iter().filter(access::still_ending));
        // The cursor stays on the grant it was on, if that one is left.
        state.reselect(&selection);
        clamp(state);
        super::modals::revocation_confirmed(state);
        let text = format!("{} expired", ended.join(", "));
        banner(state, text.clone(), Level::Warning);
        commands.push(Command::Notify(text));
    }
    // A grant extended out of the warning window is warned again when it
    // comes back into it; an ended one is forgotten.
    let warned: std::collections::HashSet<String> = state
        .grants
        .iter()
        .filter(|g| g.expires_at - now <= WARN_AT && state.warned.contains(&g.id))
        .map(|g| g.id.clone())
        .collect();
    state.warned = warned;
    let warn: Vec<(String, String, TimeDelta)> = state
        .grants
        .iter()
        .filter(|g| g.expires_at - now <= WARN_AT && !state.warned.contains(&g.id))
        .map(|g| {
            let role = state.role_label(&g.role, &g.role_name).to_string();
            (g.id.clone(), role, g.expires_at - now)
        })
        .collect();
    for (id, role, left) in warn {
        state.warned.insert(id);
        // Only where the broker extends (Entra does not): a key that does
        // nothing is no help with minutes left.
        let text = if state.capabilities.extend {
            format!(
                "⚠ {role} expires in {}: press e on Grants to extend",
                clock(left)
            )
        } else {
            format!("⚠ {role} expires in {}", clock(left))
        };
        banner(state, text.clone(), Level::Warning);
        commands.push(Command::Notify(text));
    }
    commands
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

pub(super) fn revoke(state: &mut State) -> Vec<Command> {
    let Some(grant) = target_grant(state) else {
        return vec![];
    };
    state.modal = Some(Modal::Confirm {
        prompt: format!(
            "Revoke {} now? Access ends at once.",
            state.role_label(&grant.role, &grant.role_name)
        ),
        yes: Command::Revoke {
            grant_id: grant.id.clone(),
            reason: Some("revoked early by the holder".into()),
        },
        danger: true,
        repeats: false,
    });
    vec![]
}

/// The broker's answer to an extension: the grant is no longer busy, and
/// whatever else is open (a form being typed) stays as it is.
pub(super) fn extended(state: &mut State, grant_id: &str, request: AccessRequest) -> Vec<Command> {
    state.busy.remove(grant_id);
    state.extending.remove(grant_id);
    state.extend_keys.remove(grant_id);
    let role = state.role_label(&request.role, &request.role_name);
    let text = match request.state {
        RequestState::Active => format!("{role} extended"),
        RequestState::Pending => format!(
            "Extension of {role} requested: waiting for {}",
            plural(request.approvals_required as usize, "approval")
        ),
        other => format!("Extension of {role}: {other}"),
    };
    let level = if request.state == RequestState::Active {
        Level::Success
    } else {
        Level::Info
    };
    banner(state, text, level);
    super::requests::upsert_request(state, request);
    vec![Command::LoadAll]
}

/// One key: ask for the role's default duration again, with the same justification.
pub(super) fn extend(state: &mut State) -> Vec<Command> {
    let Some(grant) = target_grant(state).cloned() else {
        return vec![];
    };
    // A second press while the first is on its way (a slow link mid-
    // incident) would be a second extension where no approval is needed.
    if state.extending.contains(&grant.id) {
        banner(
            state,
            format!("Already asking to extend {}", grant.role),
            Level::Info,
        );
        return vec![];
    }
    let secs = state
        .roles
        .iter()
        .find(|r| r.id == grant.role)
        .map_or(1800, |r| r.default_duration_secs);
    // Again soon after an extension whose answer was lost: the same key,
    // so the broker answers that one rather than extend a second time.
    let idempotency_key = match state.extend_keys.get(&grant.id) {
        Some((asked, key, at)) if *asked == secs && state.now - *at < EXTEND_RETRY => key.clone(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    state
        .extend_keys
        .insert(grant.id.clone(), (secs, idempotency_key.clone(), state.now));
    state.busy.insert(grant.id.clone());
    state.extending.insert(grant.id.clone());
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
        idempotency_key,
    }]
}

/// How long after an extension whose answer was lost a press of the same
/// extension is taken for a retry of it: long enough for a link to come
/// back, short enough that a press meant as a new extension is one.
const EXTEND_RETRY: TimeDelta = TimeDelta::minutes(10);

/// An extension that failed: one that may have been made (the broker did
/// not answer, or failed on its side) keeps its key for a retry; one
/// refused is forgotten.
pub(super) fn extend_failed(state: &mut State, grant_id: &str, kind: FailureKind) {
    state.extending.remove(grant_id);
    match kind {
        FailureKind::Unreachable | FailureKind::BrokerError => {
            let now = state.now;
            if let Some((_, _, at)) = state.extend_keys.get_mut(grant_id) {
                *at = now;
            }
        }
        _ => {
            state.extend_keys.remove(grant_id);
        }
    }
}

/// One key during an incident: revoke every grant of mine filed under it.
/// Before the incident's view has loaded (a slow link, a failed load),
/// the grants of mine under it that the list holds.
pub(super) fn revoke_incident(state: &mut State) -> Vec<Command> {
    let Some(incident) = state.selected_incident() else {
        return vec![];
    };
    let viewed: &[Grant] = state
        .incident
        .as_ref()
        .filter(|v| v.incident == incident)
        .map_or(&[], |v| v.grants.as_slice());
    // The view's, and any of mine under it the view has not heard of yet.
    let mut mine: Vec<&Grant> = Vec::new();
    let under = state
        .grants
        .iter()
        .filter(|g| g.incident.as_deref() == Some(incident.as_str()));
    for grant in viewed.iter().chain(under) {
        if grant.holder == state.user()
            && grant.state == GrantState::Active
            && grant.expires_at > state.now
            && !mine.iter().any(|g| g.id == grant.id)
        {
            mine.push(grant);
        }
    }
    if mine.is_empty() {
        let text = format!("You hold no active grant under {}", incident);
        banner(state, text, Level::Info);
        return vec![];
    }
    let roles: Vec<&str> = mine
        .iter()
        .map(|g| state.role_label(&g.role, &g.role_name))
        .collect();
    let reason = format!("revoked with everything under incident {}", incident);
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
            incident,
            roles.join(", ")
        ),
        yes: Command::Batch(commands),
        danger: true,
        repeats: false,
    });
    vec![]
}

/// `s` shows the credential, `y` copies it; the broker issues it.
pub(super) fn credential(state: &mut State, copy: bool) -> Vec<Command> {
    let Some(grant) = state
        .selected_grant()
        .filter(|_| state.screen == Screen::Grants)
    else {
        return vec![];
    };
    // Access still on its way (or failing) at the target: say where it
    // is, rather than ask the broker for what it would refuse.
    if let Some(why) = access::not_usable(grant, state.now) {
        banner(state, why, Level::Warning);
        return vec![];
    }
    // At an ssh target the secret is the person's own key: the broker
    // certifies it for the grant's window.
    let at_target = grant.access.as_ref();
    let certify = at_target.is_some_and(|access| access.kind == access::SSH);
    let grant_id = grant.id.clone();
    // A fetch sets a new password at a PostgreSQL target: asked first,
    // since one in use (a `hoist exec` elsewhere) stops working for new
    // logins (the pop-up copies what it shows instead).
    if let Some(access) = at_target.filter(|access| access.kind == access::POSTGRES) {
        let prompt = format!(
            "{} a new password for {}? It is set at {} now: one fetched before stops working \
             for new logins",
            if copy { "Copy" } else { "Show" },
            crate::text::sanitize::line(&grant.role),
            crate::text::sanitize::line(&access.target)
        );
        state.modal = Some(Modal::Confirm {
            prompt,
            yes: Command::Credential { grant_id, copy },
            danger: false,
            repeats: true,
        });
        return vec![];
    }
    state.busy.insert(grant_id.clone());
    vec![if certify {
        Command::Certify { grant_id, copy }
    } else {
        Command::Credential { grant_id, copy }
    }]
}

/// Text from the broker that a paste could act on is not copied: say so.
pub(super) fn not_copied(state: &mut State, what: &str, role: &str) {
    banner(
        state,
        format!(
            "The {what} for {} holds a line break or a control character a paste would act \
             on; not copied",
            crate::text::sanitize::line(role)
        ),
        Level::Error,
    );
}

pub(super) fn credential_loaded(
    state: &mut State,
    credential: Credential,
    copy: bool,
) -> Vec<Command> {
    state.busy.remove(&credential.grant_id);
    if copy && let Some(access) = &credential.access {
        let until = local_time(access.expires_at);
        let (what, text) = match (&access.certificate, &access.command, &access.uri) {
            (Some(certificate), _, _) => ("SSH certificate", certificate.certificate.clone()),
            (None, Some(command), _) => ("command", command.clone()),
            (None, None, Some(uri)) => ("URI", uri.clone()),
            (None, None, None) => ("credential", credential.token.clone()),
        };
        if !crate::app::access::copyable(&text, what == "credential") {
            not_copied(state, what, &credential.role);
            return vec![];
        }
        banner(
            state,
            format!(
                "{} {what} for {} copied; valid until {until}",
                crate::text::sanitize::line(&access.target),
                credential.role
            ),
            Level::Success,
        );
        return vec![Command::Copy(text)];
    }
    if copy {
        if !crate::app::access::copyable(&credential.token, true) {
            not_copied(state, "credential", &credential.role);
            return vec![];
        }
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
        let role = credential.role.clone();
        let shown = Modal::Credential {
            grant_id: credential.grant_id,
            role: credential.role,
            token: credential.token,
            expires_at: credential.expires_at,
            access: credential.access.map(Box::new),
        };
        // A question open meanwhile (revoke this grant? a reason to type?),
        // a request form or the filter being typed into keeps its keys: a
        // `y` meant for it must not copy a credential, nor a letter of a
        // justification close the pop-up.
        if state.modal.as_ref().is_some_and(Modal::asks) || typing(state) {
            state.waiting_credential = Some(shown);
            banner(
                state,
                format!("Credential for {role} fetched: shown when this closes"),
                Level::Info,
            );
        } else {
            state.modal = Some(shown);
        }
        vec![]
    }
}

/// Whether keys go to a form or the filter now.
pub(super) fn typing(state: &State) -> bool {
    state.form.is_some() || state.filtering
}

/// A revocation that could not reach the broker yet: shown as pending,
/// never as done.
pub(super) fn revoke_pending(state: &mut State, grant_id: String) -> Vec<Command> {
    let role = state
        .grants
        .iter()
        .find(|g| g.id == grant_id)
        .map(|g| state.role_label(&g.role, &g.role_name).to_string())
        .unwrap_or_default();
    state.revoking.insert(grant_id);
    banner(
        state,
        format!("Revoking {role}: waiting for the broker, retrying until it confirms"),
        Level::Warning,
    );
    vec![]
}

/// The broker refused a revoke for good. The grant may have ended already
/// (a conflict): everything is loaded again to find out. Until it ends or
/// is revoked again, its row says it was not revoked, and so does the
/// message hoist leaves on exit; quitting no longer waits for it, as
/// nothing retries it.
pub(super) fn revoke_refused(
    state: &mut State,
    grant_id: String,
    failure: &Failure,
) -> Vec<Command> {
    state.revoking.remove(&grant_id);
    state.busy.remove(&grant_id);
    // Asked to quit while it was retried: the question closes, so the
    // person sees what became of it rather than leave on another
    // revocation's confirmation; the next q asks again if any other is
    // still unconfirmed.
    if matches!(state.modal, Some(Modal::QuitWhileRevoking)) {
        super::modals::stay(state);
    }
    let role = state
        .grants
        .iter()
        .find(|g| g.id == grant_id)
        .map(|g| state.role_label(&g.role, &g.role_name).to_string())
        .unwrap_or_else(|| grant_id.clone());
    // No active grant by that id that the caller may see: it ended already
    // (at its end, or deactivated elsewhere, as Entra answers), or it is
    // no longer the caller's to see (an approver no more). Said as it is,
    // not rung as access known to be live; the lists are read again, and
    // show it if it is there.
    if failure.kind == FailureKind::NotFound {
        banner(
            state,
            format!(
                "{role} was not revoked here: the broker knows no active grant of it that you \
                 may see (it ended, or is no longer yours to see)"
            ),
            Level::Warning,
        );
        // Still listed once read again, its row says the revoke was refused.
        state
            .revoke_refused
            .insert(grant_id, failure.describe_for(&state.hoist));
        return vec![Command::LoadAll];
    }
    let text = format!(
        "{role} was NOT revoked: {} (x tries again)",
        failure.describe_for(&state.hoist)
    );
    banner(state, text.clone(), Level::Error);
    state
        .revoke_refused
        .insert(grant_id, failure.describe_for(&state.hoist));
    // Access that is still live: rung as an expiry is.
    vec![Command::Notify(text), Command::LoadAll]
}

/// The broker's answer to a revoke.
pub(super) fn changed(state: &mut State, grant: Grant) -> Vec<Command> {
    state.busy.remove(&grant.id);
    // An event of a later change came first: what it showed stays.
    let Some(grant) = state.heard.grant(grant, state.now) else {
        return vec![Command::LoadAll];
    };
    super::live::incident_grant(state, &grant);
    // Already reported removed at its target: that is the newer news.
    if grant.state != GrantState::Active && !state.access_removed.contains(&grant.id) {
        banner(
            state,
            format!(
                "{} {}",
                state.role_label(&grant.role, &grant.role_name),
                grant.state.as_str()
            ),
            Level::Info,
        );
    }
    let mut commands = match upsert_grant(state, grant) {
        Some(news) => announce(state, &news),
        None => vec![],
    };
    commands.push(Command::LoadAll);
    commands
}

/// What the broker just reported about a grant's access that the person
/// should hear: it went live, or it is gone from the target.
#[derive(Debug)]
pub(super) enum AccessNews {
    Live(Grant),
    Removed(Grant),
}

/// Puts a grant where it belongs: active, ending (its access not yet
/// removed at the target), or gone. Returns what became of its access, if
/// that is news.
pub(super) fn upsert_grant(state: &mut State, grant: Grant) -> Option<AccessNews> {
    let before = state
        .grants
        .iter()
        .chain(&state.ending)
        .find(|g| g.id == grant.id)
        .cloned();
    let selection = state.selection();
    // The person's own revocation taking it out is no surprise to them
    // (`place` forgets it is theirs).
    let own = state.revoking.contains(&grant.id);
    let lost = state.lost.grants;
    state.grants.retain(|g| g.id != grant.id);
    state.ending.retain(|g| g.id != grant.id);
    let removed = place(state, grant, before.as_ref());
    // The cursor stays on the grant it was on, wherever the list moved it.
    state.reselect(&selection);
    if own {
        state.lost.grants = lost;
    }
    clamp(state);
    removed
}

/// `upsert_grant` with what was known of the grant before, for a load that
/// replaces everything at once.
pub(super) fn place(state: &mut State, grant: Grant, before: Option<&Grant>) -> Option<AccessNews> {
    if grant.state != GrantState::Active && state.revoking.remove(&grant.id) {
        super::modals::revocation_confirmed(state);
    }
    let gone = grant
        .access
        .as_ref()
        .is_some_and(|a| a.state == hoist_api::AccessState::Removed);
    let removed_now = gone && before.is_some_and(access::still_ending);
    if grant.state == GrantState::Active && grant.expires_at > state.now {
        let live = |g: &Grant| {
            g.access
                .as_ref()
                .is_some_and(|a| a.state == hoist_api::AccessState::Live)
        };
        // Went live since we last saw it (not merely first seen live).
        let news = (live(&grant) && before.is_some_and(|b| b.access.is_some() && !live(b)))
            .then(|| AccessNews::Live(grant.clone()));
        state.grants.push(grant);
        state.grants.sort_by_key(|g| g.expires_at);
        clamp(state);
        return news;
    }
    let removed = removed_now.then(|| AccessNews::Removed(grant.clone()));
    if gone {
        state.access_removed.insert(grant.id.clone());
    } else if access::still_ending(&grant) && !state.access_removed.contains(&grant.id) {
        state.ending.push(grant);
        state
            .ending
            .sort_by_key(|g| g.ended_at.unwrap_or(g.expires_at));
    }
    clamp(state);
    removed
}

/// Says what the broker reported: access live (a banner pointing at `s`),
/// or gone from its target, the only place hoist says "access removed"
/// (a banner and a notice).
pub(super) fn announce(state: &mut State, news: &AccessNews) -> Vec<Command> {
    let target = |grant: &Grant| {
        grant
            .access
            .as_ref()
            .map(|a| crate::text::sanitize::line(&a.target).into_owned())
            .unwrap_or_default()
    };
    match news {
        AccessNews::Live(grant) => {
            let live = format!("live at {}: s on Grants shows how to use it", target(grant));
            // Right after its approval (a fast target): one banner says both.
            let approved = state.banner.as_ref().filter(|b| {
                b.until > state.now && b.text.starts_with(&format!("✓ {} ", grant.role))
            });
            let text = match approved {
                Some(b) => format!("{} · {live}", b.text),
                None => format!("✓ {} is {live}", grant.role),
            };
            banner(state, text, Level::Success);
            vec![]
        }
        AccessNews::Removed(grant) => {
            let text = format!("{}: access removed at {}", grant.role, target(grant));
            banner(state, text.clone(), Level::Success);
            vec![Command::Notify(text)]
        }
    }
}
