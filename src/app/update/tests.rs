//! `update` without a broker, a runtime or a terminal: a state and an action
//! in, the state and the commands out.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{GrantState, LiveEvent, Me, RequestState};

use super::update;
use crate::app::action::{Action, Operation, Snapshot};
use crate::app::command::Command;
use crate::app::failure::{Failure, FailureKind};
use crate::app::fixtures::{grant, request, role};
use crate::app::form::RequestForm;
use crate::app::state::{Connection, Level, Modal, ReviewRow, Screen, State};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// alice, loaded, with roles `db`, `logs` and `k8s` and no grants yet.
fn alice(now: DateTime<Utc>) -> State {
    let mut state = State::new("https://hoist.example".into(), now);
    // As hoistd says in its stream's first event.
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Hello {
            user: "alice".into(),
            time: now,
            ordered: true,
        })),
    );
    update(
        &mut state,
        Action::Loaded(Box::new(Snapshot {
            now,
            me: Me {
                user: "alice".into(),
                display_name: "Alice".into(),
                groups: vec![],
                approver_for: vec![],
                auditor: false,
            },
            roles: vec![role("db"), role("k8s"), role("logs")],
            requests: vec![],
            grants: vec![],
            queue: vec![],
            break_glass: vec![],
            workload_grants: vec![],
        })),
    );
    state
}

#[test]
fn a_tick_past_expiry_ends_the_grant_whatever_the_network_says() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![
        grant("g1", "db", "alice", now + TimeDelta::seconds(1)),
        grant("g2", "logs", "alice", now + TimeDelta::hours(2)),
    ];
    // Both already warned about, so only the expiry speaks.
    state.warned.insert("g1".into());

    let commands = update(&mut state, Action::Tick(now + TimeDelta::seconds(2)));

    assert_eq!(commands, [Command::Notify("db expired".into())]);
    assert_eq!(state.grants.len(), 1);
    assert_eq!(state.grants[0].role, "logs");
    let banner = state.banner.as_ref().unwrap();
    assert_eq!(
        (banner.text.as_str(), banner.level),
        ("db expired", Level::Warning)
    );
    assert_eq!(state.now, now + TimeDelta::seconds(2));
}

#[test]
fn a_tick_inside_the_warning_time_warns_once() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(10))];

    assert!(update(&mut state, Action::Tick(now + TimeDelta::minutes(4))).is_empty());
    let commands = update(&mut state, Action::Tick(now + TimeDelta::minutes(6)));
    let warning = "⚠ db expires in 04:00: press e on Grants to extend";
    assert_eq!(commands, [Command::Notify(warning.into())]);
    assert!(update(&mut state, Action::Tick(now + TimeDelta::minutes(7))).is_empty());
}

/// Where the broker cannot extend (Entra), the warning names no key.
#[test]
fn a_warning_offers_extending_only_where_the_broker_extends() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.capabilities.extend = false;
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(4))];
    let commands = update(&mut state, Action::Tick(now));
    assert_eq!(commands, [Command::Notify("⚠ db expires in 04:00".into())]);
}

#[test]
fn a_grant_extended_after_its_warning_is_warned_again_before_its_new_end() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(4))];
    assert_eq!(update(&mut state, Action::Tick(now)).len(), 1, "warned");

    let mut extended = state.grants[0].clone();
    extended.expires_at = now + TimeDelta::hours(1);
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant { grant: extended })),
    );
    assert!(update(&mut state, Action::Tick(now + TimeDelta::minutes(1))).is_empty());
    let commands = update(&mut state, Action::Tick(now + TimeDelta::minutes(56)));
    let warning = "⚠ db expires in 04:00: press e on Grants to extend";
    assert_eq!(commands, [Command::Notify(warning.into())]);
}

#[test]
fn a_request_event_with_a_duration_beyond_any_clock_is_shown_not_fatal() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.requests = vec![request("req_1", "db", "alice", now)];
    let mut approved = request("req_1", "db", "alice", now);
    approved.state = RequestState::Approved;
    approved.duration_secs = 100_000_000_000_000_000;
    approved.starts_at = Some(now + TimeDelta::hours(1));

    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: approved })),
    );

    assert!(!commands.is_empty(), "announced");
    assert_eq!(state.requests[0].state, RequestState::Approved);
}

#[test]
fn a_failed_filing_keeps_the_form_open_to_send_again() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut form = RequestForm::new(role("db"), "key-1".into());
    form.justification = "rotate the keys".into();
    form.submitting = true;
    state.form = Some(form);
    state.busy.insert("g1".into());

    let commands = update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::Unreachable, "connection refused or failed"),
        },
    );

    assert!(commands.is_empty());
    let form = state.form.as_ref().expect("the form stays open");
    assert!(!form.submitting);
    assert_eq!(
        form.error.as_deref(),
        Some("Broker unreachable (connection refused or failed); not confirmed, try again")
    );
    // The same key goes out again, so the broker never files twice.
    assert_eq!(form.idempotency_key, "key-1");
    assert_eq!(state.banner, None);
    // What another operation has under way (g1's) is not let go by it.
    assert!(state.busy.contains("g1"), "{:?}", state.busy);

    // Any other failure is a banner naming what was being done.
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Cancelling,
            failure: Failure::new(FailureKind::NotPossibleNow, "already decided"),
        },
    );
    let banner = state.banner.as_ref().unwrap();
    assert_eq!(
        banner.text,
        "Not possible now: already decided (cancelling)"
    );
    assert_eq!(banner.level, Level::Error);
}

#[test]
fn the_stream_down_before_the_first_load_still_loads() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = State::new("https://hoist.example".into(), now);

    let commands = update(&mut state, Action::StreamDown("refused".into()));

    assert_eq!(commands, [Command::LoadAll]);
    assert_eq!(
        state.connection,
        Connection::Offline {
            reason: "refused".into(),
            since: now
        }
    );
    // Once loaded, a dropped stream waits for the reconnect to load again.
    let mut loaded = alice(now);
    assert!(update(&mut loaded, Action::StreamDown("refused".into())).is_empty());
    assert_eq!(update(&mut loaded, Action::StreamUp), [Command::LoadAll]);
    assert_eq!(loaded.connection, Connection::Live);
    let banner = loaded.banner.as_ref().unwrap();
    assert_eq!(banner.text, "Reconnected to the broker");
}

/// A backend that cannot say who ended a grant (Entra: it is simply gone)
/// names no one: the banner gives the reason instead of an empty name,
/// and a grant gone while my own revoke was on its way is no alarm.
#[test]
fn a_grant_ended_by_no_one_named_is_said_plainly() {
    let now = at("2026-06-01T12:00:00Z");
    let mut gone = grant("g1", "db", "alice", now + TimeDelta::minutes(20));
    gone.state = GrantState::Revoked;
    gone.revoked_by = None;
    gone.revoke_reason = Some("ended in Entra before its expiry".into());

    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(20))];
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant {
            grant: gone.clone(),
        })),
    );
    assert_eq!(commands, [Command::Notify("db was revoked".into())]);
    assert_eq!(
        state.banner.as_ref().unwrap().text,
        "db was revoked: ended in Entra before its expiry"
    );

    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(20))];
    state.revoking.insert("g1".into());
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant { grant: gone })),
    );
    assert!(
        !commands.iter().any(|c| matches!(c, Command::Notify(_))),
        "{commands:?}"
    );
}

#[test]
fn a_revoke_by_someone_else_is_announced_and_ends_the_grant() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(20))];
    let mut revoked = grant("g1", "db", "alice", now + TimeDelta::minutes(20));
    revoked.state = GrantState::Revoked;
    revoked.revoked_by = Some("bob\x1b[2J".into());

    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant {
            grant: revoked.clone(),
        })),
    );

    assert_eq!(commands, [Command::Notify("db was revoked".into())]);
    assert!(state.grants.is_empty());
    let banner = state.banner.as_ref().unwrap();
    assert_eq!(banner.text, "db was revoked by bob⟨U+001B⟩[2J");
    assert_eq!(banner.level, Level::Error);

    // My own revoke ends the grant without an alarm.
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(20))];
    revoked.revoked_by = Some("alice".into());
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant { grant: revoked })),
    );
    assert!(commands.is_empty());
    assert!(state.grants.is_empty());
    assert_eq!(state.banner, None);
}

#[test]
fn a_click_on_a_row_selects_it() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);

    assert!(update(&mut state, Action::SelectRow(2)).is_empty());
    assert_eq!(state.cursors.roles, 2);
    assert_eq!(state.selected_role().unwrap().id, "logs");
    // Past the end: the last row.
    update(&mut state, Action::SelectRow(9));
    assert_eq!(state.cursors.roles, 2);

    // On Reviews, the selection brings the requester's history.
    state.queue = vec![
        request("req_1", "db", "carol", now),
        request("req_2", "k8s", "dave", now),
    ];
    state.screen = Screen::Reviews;
    let commands = update(&mut state, Action::SelectRow(1));
    assert_eq!(state.cursors.reviews, 1);
    assert_eq!(commands, [Command::LoadHistory("req_2".into())]);
}

#[test]
fn a_decision_on_my_request_is_announced_loudly() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.requests = vec![request("req_1", "db", "alice", now)];
    let mut denied = request("req_1", "db", "alice", now);
    denied.state = RequestState::Denied;
    denied.reason = Some("not during the freeze".into());
    denied.reviews = vec![hoist_api::Review {
        reviewer: "bob".into(),
        decision: hoist_api::Decision::Deny,
        comment: None,
        at: now,
    }];

    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: denied })),
    );

    let text = "✗ db denied by bob: not during the freeze";
    assert_eq!(commands, [Command::Notify(text.into()), Command::LoadAll]);
    assert_eq!(state.requests[0].state, RequestState::Denied);
    assert_eq!(state.banner.as_ref().unwrap().level, Level::Error);
}

/// A revoke is unconfirmed from the moment it is confirmed here, not from
/// its first failure: `q` while the first call hangs asks too, and Enter
/// there (a reflex) stays rather than quit.
#[test]
fn a_revoke_in_flight_is_unconfirmed_from_the_start() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::hours(1))];
    state.screen = Screen::Grants;
    update(&mut state, Action::Revoke);
    let commands = update(&mut state, Action::Confirm);
    assert!(
        matches!(&commands[..], [Command::Revoke { grant_id, .. }] if grant_id == "g1"),
        "{commands:?}"
    );
    update(&mut state, Action::Quit);
    assert!(!state.should_quit);
    assert_eq!(state.modal, Some(Modal::QuitWhileRevoking));
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    let answer = crate::app::keymap::action_for_key(&state, enter).expect("Enter is bound");
    update(&mut state, answer);
    assert!(!state.should_quit, "Enter quit, leaving the grant active");
    // Refused for good: no longer retried, so no longer held up; but the
    // question closes rather than quit, so the refusal is seen first.
    update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::DeniedByPolicy, "not yours"),
        },
    );
    assert!(!state.should_quit);
    assert_eq!(state.modal, None);
    update(&mut state, Action::Quit);
    assert!(state.should_quit);
}

#[test]
fn quitting_with_a_revocation_unconfirmed_asks_first() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::hours(1))];

    // Nothing pending: q quits at once.
    let mut quiet = state.clone();
    update(&mut quiet, Action::Quit);
    assert!(quiet.should_quit);

    // Sent, not confirmed: q asks; n stays (and the retries go on).
    state.revoking.insert("g1".into());
    update(&mut state, Action::Quit);
    assert!(!state.should_quit);
    assert_eq!(state.modal, Some(Modal::QuitWhileRevoking));
    assert_eq!(state.unconfirmed_revocations()[0].id, "g1");
    update(&mut state, Action::Decline);
    assert!(!state.should_quit && state.modal.is_none());

    // y quits anyway; so does a second Ctrl-C.
    for answer in [Action::Confirm, Action::Quit] {
        let mut asked = state.clone();
        update(&mut asked, Action::Quit);
        update(&mut asked, answer.clone());
        assert!(asked.should_quit, "{answer:?}");
    }

    // The broker confirms while the question is open: nothing is left to
    // wait for, so hoist does what it was asked.
    update(&mut state, Action::Quit);
    let mut revoked = grant("g1", "db", "alice", now + TimeDelta::hours(1));
    revoked.state = GrantState::Revoked;
    update(&mut state, Action::GrantChanged(Box::new(revoked)));
    assert!(state.should_quit);
    assert!(state.revoking.is_empty());
}

/// Ctrl-C in the middle of a decision, while a revocation is
/// unconfirmed: the question to quit covers the decision, and staying
/// opens it again as it was, its comment half-typed.
#[test]
fn staying_after_the_question_to_quit_gives_back_what_it_covered() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::hours(1))];
    state.revoking.insert("g1".into());
    let deciding = Modal::Input {
        prompt: crate::app::state::Prompt::Deny {
            request_id: "r1".into(),
        },
        title: "Deny r1".into(),
        text: "not during the freeze, ask".into(),
        required: true,
        error: None,
    };
    for stay in [Action::Decline, Action::Back] {
        state.modal = Some(deciding.clone());
        update(&mut state, Action::Quit);
        assert_eq!(state.modal, Some(Modal::QuitWhileRevoking));
        update(&mut state, stay.clone());
        assert!(!state.should_quit);
        assert_eq!(state.modal.as_ref(), Some(&deciding), "{stay:?}");
    }
    // The revocation refused while the question is open: the decision is
    // back too.
    update(&mut state, Action::Quit);
    update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::DeniedByPolicy, "not yours"),
        },
    );
    assert_eq!(state.modal.as_ref(), Some(&deciding));

    // A sign-in under way is hidden behind the question, not given back
    // once its call has ended.
    state.modal = None;
    state.revoking.insert("g1".into());
    update(&mut state, sign_in(None));
    assert!(matches!(state.modal, Some(Modal::SignIn(_))));
    update(&mut state, Action::Quit);
    assert!(state.hidden_sign_in.is_some());
    update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::DeniedByPolicy, "not yours"),
        },
    );
    assert_eq!(state.modal, None);
    assert!(
        state.hidden_sign_in.is_none(),
        "the sign-in ended with its call"
    );
}

/// A revoke refused (access still live) rings, and its error stays on
/// screen while the other revocations' answers come in; trying it again
/// lets the news of that try show.
#[test]
fn a_refused_revoke_rings_and_is_not_hidden_by_the_next_answer() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    for (id, role) in [("g1", "db"), ("g2", "k8s")] {
        update(
            &mut state,
            grant_event(grant(id, role, "alice", now + TimeDelta::minutes(30))),
        );
    }
    let sent = update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::DeniedByPolicy, "frozen"),
        },
    );
    assert!(
        sent.iter()
            .any(|c| matches!(c, Command::Notify(text) if text.contains("db was NOT revoked"))),
        "{sent:?}"
    );
    let mut revoked = grant("g2", "k8s", "alice", now + TimeDelta::minutes(30));
    revoked.state = GrantState::Revoked;
    update(&mut state, Action::GrantChanged(Box::new(revoked)));
    let shown = state.banner.clone().unwrap();
    assert_eq!(shown.level, Level::Error);
    assert!(shown.text.contains("db was NOT revoked"), "{}", shown.text);

    state.cursors.grants = state.grants.iter().position(|g| g.id == "g1").unwrap();
    update(&mut state, Action::Revoke);
    update(&mut state, Action::Confirm);
    assert!(
        state
            .banner
            .as_ref()
            .is_none_or(|b| !b.text.contains("NOT revoked")),
        "{:?}",
        state.banner
    );

    // No active grant by that id (ended already, or deactivated elsewhere):
    // said plainly and the lists read again, not rung as live access.
    let sent = update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::NotFound, "no active grant g1"),
        },
    );
    assert!(
        !sent.iter().any(|c| matches!(c, Command::Notify(_))),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|c| matches!(c, Command::LoadAll)),
        "{sent:?}"
    );
    let shown = state.banner.clone().unwrap();
    assert_eq!(shown.level, Level::Warning);
    assert!(
        shown
            .text
            .contains("db was not revoked here: the broker knows no active grant"),
        "{}",
        shown.text
    );
}

#[test]
fn an_activation_still_taking_effect_is_never_shown_as_access() {
    let now = at("2026-01-01T10:00:00Z");
    let mut state = alice(now);
    let mut filed = request("r1", "db", "alice", now);
    filed.state = RequestState::Approved;
    filed.starts_at = None;
    update(&mut state, Action::Filed(Box::new(filed.clone())));
    let banner = state.banner.clone().unwrap();
    assert!(
        banner.text.contains("db activated, propagating"),
        "{}",
        banner.text
    );
    assert!(state.grants.is_empty());
    // The broker applies it: active, announced without an approver to name.
    let mut active = filed;
    active.state = RequestState::Active;
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: active })),
    );
    let banner = state.banner.clone().unwrap();
    assert!(banner.text.starts_with("✓ db: active, "), "{}", banner.text);
    assert!(commands.contains(&Command::LoadAll));
}

fn at_target(mut g: hoist_api::Grant, state: hoist_api::AccessState) -> hoist_api::Grant {
    g.access = Some(hoist_api::TargetAccess {
        target: "db-prod-1".into(),
        kind: "postgres".into(),
        state,
        reason: None,
        attempts: 0,
        next_attempt_at: None,
        updated_at: g.starts_at,
        live_until: None,
    });
    g
}

/// alice's credential of grant `g1` on `db`, with `access` at its target.
fn credential_of_g1(
    now: DateTime<Utc>,
    access: hoist_api::AccessCredential,
) -> hoist_api::Credential {
    hoist_api::Credential {
        grant_id: "g1".into(),
        role: "db".into(),
        token_type: "Bearer".into(),
        token: "a.b.c".into(),
        issued_at: now,
        expires_at: now + TimeDelta::minutes(5),
        access: Some(access),
    }
}

fn grant_event(grant: hoist_api::Grant) -> Action {
    Action::Live(Box::new(LiveEvent::Grant { grant }))
}

/// alice's grant `g1` of `db`, live at its PostgreSQL target for 30 more
/// minutes from `now`.
fn live_db(now: DateTime<Utc>) -> hoist_api::Grant {
    at_target(
        grant("g1", "db", "alice", now + TimeDelta::minutes(30)),
        hoist_api::AccessState::Live,
    )
}

#[test]
fn access_removed_is_said_only_when_the_broker_reports_it() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let live = live_db(now);
    update(&mut state, grant_event(live.clone()));
    assert_eq!(state.grants.len(), 1);

    // Revoked: gone from the active grants, still shown as ending.
    let mut revoked = live.clone();
    revoked.state = GrantState::Revoked;
    revoked.revoked_by = Some("alice".into());
    revoked.access.as_mut().unwrap().state = AccessState::Removing;
    let commands = update(&mut state, grant_event(revoked.clone()));
    assert!(commands.is_empty(), "{commands:?}");
    assert!(state.grants.is_empty());
    assert_eq!(state.ending.len(), 1);
    assert!(
        state
            .banner
            .as_ref()
            .is_none_or(|b| !b.text.contains("removed"))
    );

    // A failed removal attempt keeps it there.
    let mut failing = revoked.clone();
    failing.access.as_mut().unwrap().reason = Some("connection refused".into());
    assert!(update(&mut state, grant_event(failing)).is_empty());
    assert_eq!(state.ending.len(), 1);

    // The broker confirms: said once, in the banner and the notice.
    let mut removed = revoked;
    removed.access.as_mut().unwrap().state = AccessState::Removed;
    let commands = update(&mut state, grant_event(removed.clone()));
    let said = "db: access removed at db-prod-1";
    assert_eq!(commands, [Command::Notify(said.into())]);
    assert_eq!(state.banner.as_ref().unwrap().text, said);
    assert!(state.ending.is_empty());
    // Heard again (a reload): nothing new to say.
    assert!(update(&mut state, grant_event(removed)).is_empty());
}

#[test]
fn an_expired_grant_at_a_target_is_ending_until_removed() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.warned.insert("g1".into());
    state.grants = vec![at_target(
        grant("g1", "db", "alice", now + TimeDelta::seconds(1)),
        AccessState::Live,
    )];
    update(&mut state, Action::Tick(now + TimeDelta::seconds(2)));
    assert!(state.grants.is_empty());
    assert_eq!(
        state.ending.len(),
        1,
        "not removed until the broker says so"
    );
}

#[test]
fn the_credential_of_access_still_provisioning_is_not_asked_for() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    update(
        &mut state,
        grant_event(at_target(
            grant("g1", "db", "alice", now + TimeDelta::minutes(30)),
            AccessState::Provisioning,
        )),
    );
    let commands = update(&mut state, Action::ShowCredential);
    assert!(commands.is_empty(), "{commands:?}");
    assert!(state.modal.is_none());
    let banner = state.banner.as_ref().unwrap();
    assert!(
        banner.text.contains("still being provisioned at db-prod-1"),
        "{}",
        banner.text
    );

    // Live: asked for once confirmed (a new password), and shown with the
    // access; y copies what is shown.
    let live = live_db(now);
    update(&mut state, grant_event(live));
    update(&mut state, Action::ShowCredential);
    let commands = update(&mut state, Action::Confirm);
    assert_eq!(
        commands,
        [Command::Credential {
            grant_id: "g1".into(),
            copy: false
        }]
    );
    let credential = credential_of_g1(
        now,
        hoist_api::AccessCredential {
            target: "db-prod-1".into(),
            kind: "postgres".into(),
            env: Default::default(),
            uri: Some("postgresql://u:pw@h/db".into()),
            command: Some("psql \"postgresql://u:pw@h/db\"".into()),
            expires_at: now + TimeDelta::minutes(30),
            certificate: None,
        },
    );
    update(
        &mut state,
        Action::CredentialLoaded {
            credential: Box::new(credential),
            copy: false,
        },
    );
    assert!(matches!(
        state.modal,
        Some(Modal::Credential {
            access: Some(_),
            ..
        })
    ));
    let commands = update(&mut state, Action::CopyCredential);
    assert_eq!(
        commands,
        [Command::Copy("psql \"postgresql://u:pw@h/db\"".into())]
    );
    let commands = update(&mut state, Action::CopyUri);
    assert_eq!(commands, [Command::Copy("postgresql://u:pw@h/db".into())]);
    // Closed: the secret is no longer held.
    update(&mut state, Action::Back);
    assert!(state.modal.is_none());
}

/// What a paste would act on (a line break ending a bracketed paste, an
/// escape) is not copied, though the pop-up shows it cleaned: `y` copies
/// nothing and says why, in the pop-up and from the list alike.
#[test]
fn broker_text_a_paste_would_act_on_is_not_copied() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    let live = live_db(now);
    update(&mut state, grant_event(live));
    let credential = credential_of_g1(
        now,
        hoist_api::AccessCredential {
            target: "db-prod-1".into(),
            kind: "webhook".into(),
            env: Default::default(),
            uri: Some("postgresql://h/db\u{1b}[201~".into()),
            command: Some("psql x\nrm -rf ~".into()),
            expires_at: now + TimeDelta::minutes(30),
            certificate: None,
        },
    );
    for copy in [false, true] {
        let commands = update(
            &mut state,
            Action::CredentialLoaded {
                credential: Box::new(credential.clone()),
                copy,
            },
        );
        if copy {
            assert_eq!(commands, []);
        } else {
            assert_eq!(update(&mut state, Action::CopyCredential), []);
            assert_eq!(update(&mut state, Action::CopyUri), []);
        }
        let banner = state.banner.as_ref().unwrap();
        assert!(banner.text.contains("not copied"), "{}", banner.text);
        update(&mut state, Action::Back);
    }
}

#[test]
fn a_load_older_than_a_live_event_keeps_the_newer_access() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let provisioning = at_target(
        grant("g1", "db", "alice", now + TimeDelta::minutes(30)),
        AccessState::Provisioning,
    );
    let mut live = provisioning.clone();
    let access = live.access.as_mut().unwrap();
    access.state = AccessState::Live;
    access.updated_at += TimeDelta::milliseconds(5);
    update(&mut state, grant_event(live));
    let (me, roles, now) = (state.me.clone().unwrap(), state.roles.clone(), state.now);
    update(
        &mut state,
        Action::Loaded(Box::new(Snapshot {
            now,
            me,
            roles,
            requests: vec![],
            grants: vec![provisioning],
            queue: vec![],
            break_glass: vec![],
            workload_grants: vec![],
        })),
    );
    let access = state.grants[0].access.as_ref().unwrap();
    assert_eq!(access.state, AccessState::Live);
}

#[test]
fn a_list_that_changes_under_the_cursor_keeps_it_on_the_same_item() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    // The broker's order is not the lapse order the live updates keep.
    state.queue = vec![
        request("req_late", "db", "carol", now + TimeDelta::hours(1)),
        request("req_soon", "k8s", "dave", now),
    ];
    state.screen = Screen::Reviews;
    state.cursors.reviews = 0;
    let mut claimed = request("req_soon", "k8s", "dave", now);
    claimed.claim = Some(hoist_api::Claim {
        by: "erin".into(),
        until: now + TimeDelta::minutes(10),
    });
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: claimed })),
    );
    assert_eq!(state.queue[0].id, "req_soon", "re-sorted by lapse");
    // A decision keyed next lands on the request the approver was reading.
    assert_eq!(state.selected_review().unwrap().1.id, "req_late");

    state.grants = vec![
        grant("g_db", "db", "alice", now + TimeDelta::minutes(20)),
        grant("g_logs", "logs", "alice", now + TimeDelta::hours(2)),
    ];
    state.cursors.grants = 1;
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant {
            grant: grant("g_k8s", "k8s", "alice", now + TimeDelta::minutes(5)),
        })),
    );
    assert_eq!(state.grants[0].id, "g_k8s");
    assert_eq!(state.selected_grant().unwrap().id, "g_logs");

    state.requests = vec![request("req_mine", "db", "alice", now)];
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request {
            request: request("req_new", "k8s", "alice", now),
        })),
    );
    assert_eq!(state.requests[0].id, "req_new");
    assert_eq!(state.selected_request().unwrap().id, "req_mine");
}

/// A grant above the cursor expiring, or a role added before the selected
/// one at a reload, leaves the cursor on what it was on: a key pressed next
/// (extend, fetch the credential) acts on what the person was looking at.
#[test]
fn an_expiry_or_a_reload_keeps_the_cursor_on_the_same_item() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![
        grant("g_a", "db", "alice", now + TimeDelta::seconds(1)),
        grant("g_b", "k8s", "alice", now + TimeDelta::hours(1)),
        grant("g_c", "logs", "alice", now + TimeDelta::hours(2)),
    ];
    state.warned.insert("g_a".into());
    state.cursors.grants = 1;
    update(&mut state, Action::Tick(now + TimeDelta::seconds(2)));
    assert_eq!(state.selected_grant().unwrap().id, "g_b");

    state.screen = Screen::Roles;
    state.cursors.roles = 2;
    assert_eq!(state.selected_role().unwrap().id, "logs");
    let (me, now) = (state.me.clone().unwrap(), state.now);
    update(
        &mut state,
        Action::Loaded(Box::new(Snapshot {
            now,
            me,
            roles: vec![role("db"), role("db2"), role("k8s"), role("logs")],
            requests: vec![],
            grants: vec![],
            queue: vec![],
            break_glass: vec![],
            workload_grants: vec![],
        })),
    );
    assert_eq!(state.selected_role().unwrap().id, "logs");
}

#[test]
fn access_going_live_is_said_once_and_never_before() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let provisioning = at_target(
        grant("g1", "db", "alice", now + TimeDelta::minutes(30)),
        AccessState::Provisioning,
    );
    update(&mut state, grant_event(provisioning.clone()));
    assert!(state.banner.is_none());
    let mut failed = provisioning.clone();
    failed.access.as_mut().unwrap().state = AccessState::Failed;
    update(&mut state, grant_event(failed));
    assert!(state.banner.is_none(), "{:?}", state.banner);
    let mut live = provisioning;
    live.access.as_mut().unwrap().state = AccessState::Live;
    update(&mut state, grant_event(live.clone()));
    let said = "✓ db is live at db-prod-1: s on Grants shows how to use it";
    assert_eq!(state.banner.as_ref().unwrap().text, said);
    state.banner = None;
    update(&mut state, grant_event(live));
    assert!(state.banner.is_none(), "said once");
}

#[test]
fn a_revoke_answered_after_the_removal_does_not_bring_the_grant_back() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let live = live_db(now);
    update(&mut state, grant_event(live.clone()));
    let mut revoked = live;
    revoked.state = GrantState::Revoked;
    revoked.revoked_by = Some("alice".into());
    let mut removed = revoked.clone();
    removed.access.as_mut().unwrap().state = AccessState::Removed;
    revoked.access.as_mut().unwrap().state = AccessState::Removing;
    // A fast target: the removal's event comes before the revoke's answer.
    update(&mut state, grant_event(removed));
    update(&mut state, Action::GrantChanged(Box::new(revoked)));
    assert!(state.ending.is_empty(), "{:?}", state.ending);
    assert_eq!(
        state.banner.as_ref().unwrap().text,
        "db: access removed at db-prod-1"
    );
}

#[test]
fn access_live_right_after_approval_joins_the_approval_banner() {
    use hoist_api::AccessState;
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let provisioning = at_target(
        grant("g1", "db", "alice", now + TimeDelta::minutes(30)),
        AccessState::Provisioning,
    );
    update(&mut state, grant_event(provisioning.clone()));
    super::banner(
        &mut state,
        "✓ db approved by bob: active, 30:00 left",
        Level::Success,
    );
    let mut live = provisioning;
    live.access.as_mut().unwrap().state = AccessState::Live;
    update(&mut state, grant_event(live));
    assert_eq!(
        state.banner.as_ref().unwrap().text,
        "✓ db approved by bob: active, 30:00 left · live at db-prod-1: s on Grants shows how to use it"
    );
}

fn with_profiles(now: DateTime<Utc>) -> State {
    let mut state = alice(now);
    state.profile_name = Some("work".into());
    state.profiles = ["lab", "tenant", "work"]
        .iter()
        .zip(["hoistd", "entra", "hoistd"])
        .map(|(name, kind)| crate::app::state::ProfileChoice {
            name: name.to_string(),
            kind: kind.to_string(),
        })
        .collect();
    state
}

#[test]
fn the_picker_switches_to_another_profile_never_to_the_same() {
    let now = at("2026-06-01T12:00:00Z");
    // Without profiles to choose from, `P` is not on offer.
    let mut bare = alice(now);
    assert!(update(&mut bare, Action::PickProfile).is_empty());
    assert_eq!(bare.modal, None);

    let mut state = with_profiles(now);
    update(&mut state, Action::PickProfile);
    assert_eq!(state.modal, Some(Modal::Profiles { cursor: 2 }));
    // The one on screen: nothing to do.
    assert!(update(&mut state, Action::Select).is_empty());
    assert_eq!(state.modal, None);

    update(&mut state, Action::PickProfile);
    update(&mut state, Action::Up);
    update(&mut state, Action::Down);
    update(&mut state, Action::Up);
    assert_eq!(state.modal, Some(Modal::Profiles { cursor: 1 }));
    let commands = update(&mut state, Action::Select);
    assert_eq!(commands, [Command::SwitchProfile("tenant".into())]);
    assert_eq!(state.modal, None);
    assert!(!state.busy.is_empty());
    // A second pick while the first is opening is refused, and said so.
    update(&mut state, Action::PickProfile);
    update(&mut state, Action::Up);
    assert!(update(&mut state, Action::Select).is_empty());
    assert!(
        state.banner.clone().unwrap().text.contains("still opening"),
        "the person is told why"
    );

    // It could not be opened: said, and what is on screen stays.
    update(
        &mut state,
        Action::SwitchFailed {
            profile: "tenant".into(),
            reason: "no network".into(),
        },
    );
    assert!(state.busy.is_empty());
    let banner = state.banner.clone().unwrap();
    assert_eq!(banner.level, Level::Error);
    assert!(
        banner.text.contains("tenant: no network"),
        "{}",
        banner.text
    );
    assert_eq!(state.user(), "alice");
}

#[test]
fn no_switch_while_a_revocation_is_unconfirmed() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = with_profiles(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::hours(1))];
    state.revoking.insert("g1".into());
    update(&mut state, Action::PickProfile);
    update(&mut state, Action::Up);
    assert!(update(&mut state, Action::Select).is_empty());
    assert!(
        state.banner.unwrap().text.contains("not confirmed"),
        "the person is told why"
    );
}

fn sign_in(profile: Option<&str>) -> Action {
    Action::SignInPrompt(crate::app::state::SignInPrompt {
        profile: profile.map(str::to_string),
        why: "Sign in".into(),
        url: "https://login.example/device".into(),
        code: "ABCD-EFGH".into(),
        complete: None,
        minutes: 15,
    })
}

#[test]
fn a_sign_in_pop_up_lasts_as_long_as_what_waits_for_it() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = with_profiles(now);
    // A stronger sign-in midway ends with the answer to the call, not
    // with another call's.
    update(&mut state, sign_in(None));
    assert!(matches!(state.modal, Some(Modal::SignIn(_))));
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Loading,
            failure: Failure::new(FailureKind::Unreachable, "down"),
        },
    );
    assert!(matches!(state.modal, Some(Modal::SignIn(_))));
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::Refused, "no"),
        },
    );
    assert_eq!(state.modal, None);
    // A profile's sign-in is not ended by this profile's answers, only by
    // the switch's own outcome; esc hides it meanwhile.
    update(&mut state, sign_in(Some("tenant")));
    update(
        &mut state,
        Action::RequestChanged(Box::new(request("r1", "db", "alice", now))),
    );
    assert!(matches!(state.modal, Some(Modal::SignIn(_))));
    update(
        &mut state,
        Action::SwitchFailed {
            profile: "tenant".into(),
            reason: "timed out".into(),
        },
    );
    assert_eq!(state.modal, None);
    update(&mut state, sign_in(Some("tenant")));
    update(&mut state, Action::Back);
    assert_eq!(state.modal, None);
}

#[test]
fn activity_shows_everyone_then_people_then_workloads() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let event = |seq: i64, actor: &str, subject: Option<&str>, incident: Option<&str>| {
        hoist_api::AuditEvent {
            seq,
            at: now,
            kind: hoist_api::AuditKind::Requested,
            actor: actor.into(),
            subject: subject.map(Into::into),
            role: Some("db".into()),
            request_id: None,
            grant_id: None,
            incident: incident.map(Into::into),
            reason: None,
            details: serde_json::Value::Null,
            prev_hash: String::new(),
            hash: String::new(),
        }
    };
    state.screen = Screen::Activity;
    state.activity = vec![
        event(3, "workload:ci:deploy-bot", None, Some("INC-2")),
        event(2, "bob", Some("workload:ci:deploy-bot"), None),
        event(1, "alice", None, Some("INC-1")),
    ];
    state.cursors.activity = 2;
    let seqs =
        |state: &State| -> Vec<i64> { state.visible_activity().iter().map(|e| e.seq).collect() };
    assert_eq!(seqs(&state), [3, 2, 1]);

    update(&mut state, Action::CycleActors);
    assert_eq!(seqs(&state), [1], "people acting for themselves");
    assert_eq!(state.cursors.activity, 0);
    update(&mut state, Action::CycleActors);
    // An approval of a workload's request is about that workload.
    assert_eq!(seqs(&state), [3, 2]);
    // `o` opens what the row shown says, not the row underneath.
    assert_eq!(
        super::navigation::selected_reference(&state).as_deref(),
        Some("INC-2")
    );
    update(&mut state, Action::CycleActors);
    assert_eq!(seqs(&state), [3, 2, 1]);

    // Elsewhere the key does nothing.
    state.screen = Screen::Grants;
    update(&mut state, Action::CycleActors);
    assert_eq!(state.actors, crate::app::state::Actors::Everyone);
}

#[test]
fn what_i_approved_waits_for_others_and_leaves_to_decide() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut mine = request("req_1", "db", "carol", now);
    mine.approvals_required = 2;
    mine.approvers = vec!["alice".into(), "bob".into(), "dave".into()];
    mine.reviews = vec![hoist_api::Review {
        reviewer: "alice".into(),
        decision: hoist_api::Decision::Approve,
        comment: None,
        at: now,
    }];
    state.queue = vec![mine.clone(), request("req_2", "k8s", "dave", now)];
    state.screen = Screen::Reviews;

    // What needs me first, then what waits for others.
    assert_eq!(state.to_decide(), 1);
    assert_eq!(
        state.review_rows(),
        [ReviewRow::Pending(1), ReviewRow::Waiting(0)]
    );
    state.cursors.reviews = 1;
    let (row, selected) = state.selected_review().unwrap();
    assert_eq!(
        (row, selected.id.as_str()),
        (ReviewRow::Waiting(0), "req_1")
    );
    assert_eq!(state.others_to_approve(selected), ["bob", "dave"]);

    // It cannot be approved again: hoist says why instead of asking.
    assert!(update(&mut state, Action::Approve).is_empty());
    assert_eq!(state.modal, None);
    assert_eq!(
        state.banner.as_ref().unwrap().text,
        "You already approved this request; it waits for other approvers"
    );

    // bob approves too, and the event (which names no approvers) keeps
    // the names the queue gave.
    let mut second = mine.clone();
    second.approvers = Vec::new();
    second.reviews.push(hoist_api::Review {
        reviewer: "bob".into(),
        decision: hoist_api::Decision::Approve,
        comment: None,
        at: now,
    });
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: second })),
    );
    let waiting = state.queue.iter().find(|r| r.id == "req_1").unwrap();
    assert_eq!(state.others_to_approve(waiting), ["dave"]);
}

#[test]
fn a_tier_0_role_is_filed_only_once_its_id_is_typed() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut critical = role("db");
    critical.tier = Some(0);
    let mut form = RequestForm::new(critical, "key-1".into());
    form.justification = "rotate the keys".into();
    state.form = Some(form);
    state.screen = Screen::Roles;

    assert!(update(&mut state, Action::Submit).is_empty());
    let Some(Modal::Input { title, .. }) = &state.modal else {
        panic!("a tier-0 role asks for its id: {:?}", state.modal);
    };
    assert_eq!(title, "Tier-0 role db: type its id to file");
    for c in "dv".chars() {
        update(&mut state, Action::Input(c));
    }
    assert!(update(&mut state, Action::Submit).is_empty());
    let Some(Modal::Input { error, .. }) = &state.modal else {
        panic!("a wrong id keeps the prompt open");
    };
    assert_eq!(error.as_deref(), Some("type db exactly to file"));
    assert!(!state.form.as_ref().unwrap().submitting);

    update(&mut state, Action::Backspace);
    update(&mut state, Action::Backspace);
    update(&mut state, Action::Input('d'));
    update(&mut state, Action::Input('b'));
    let commands = update(&mut state, Action::Submit);
    assert!(
        matches!(commands.as_slice(), [Command::Submit { body, idempotency_key }]
            if body.role == "db" && idempotency_key == "key-1"),
        "{commands:?}"
    );
    assert!(state.form.as_ref().unwrap().submitting);
    assert_eq!(state.modal, None);
}

/// Over Entra a role's id is a GUID: the expiry's warning, its end, a
/// revoke's banner and the terminal title name the role as people know
/// it, and an approval that activates it counts the grant's real time.
#[test]
fn entra_roles_are_named_by_their_names_in_every_notice() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.capabilities = crate::backend::entra::CAPABILITIES;
    let guid = "dir:62e90394-69f5-4237-9190-012177145e10";
    let mut admin = grant("g1", guid, "alice", now + TimeDelta::minutes(4));
    admin.role_name = "Global Administrator".into();
    update(&mut state, grant_event(admin.clone()));
    let commands = update(&mut state, Action::Tick(now + TimeDelta::seconds(1)));
    let warned: Vec<&String> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Notify(text) => Some(text),
            _ => None,
        })
        .collect();
    assert!(
        warned.len() == 1 && warned[0].starts_with("⚠ Global Administrator expires in"),
        "{warned:?}"
    );
    let title = crate::tui::title(&state);
    assert!(
        title.contains("Global Administrator") && !title.contains("dir:"),
        "{title}"
    );

    // Approved (by the broker, propagated): the grant's own time left.
    let mut filed = request("req_1", guid, "alice", now);
    filed.role_name = "Global Administrator".into();
    filed.duration_secs = 8 * 3600;
    update(&mut state, Action::Filed(Box::new(filed.clone())));
    filed.state = RequestState::Active;
    filed.reviews.push(hoist_api::Review {
        reviewer: "bob".into(),
        decision: hoist_api::Decision::Approve,
        comment: None,
        at: now,
    });
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: filed })),
    );
    let shown = state.banner.clone().unwrap().text;
    assert!(
        shown.starts_with("✓ Global Administrator approved by bob: active, 03:5"),
        "{shown}"
    );

    let ended = update(&mut state, Action::Tick(now + TimeDelta::minutes(5)));
    assert!(
        ended
            .iter()
            .any(|c| matches!(c, Command::Notify(text) if text == "Global Administrator expired")),
        "{ended:?}"
    );
}

/// Over a broker that names no roles I approve (Entra), someone else's
/// request that reaches me is from my review queue: it is news as well,
/// and the empty queue does not say I approve nothing.
#[test]
fn a_request_from_my_queue_is_news_where_approver_roles_are_not_named() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.capabilities = crate::backend::entra::CAPABILITIES;
    if let Some(me) = state.me.as_mut() {
        me.approver_for.clear();
    }
    let filed = request("req_1", "dir:role", "carol", now);
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: filed })),
    );
    assert!(
        matches!(commands.first(), Some(Command::Notify(text)) if text.starts_with("To review: carol")),
        "{commands:?}"
    );
    // Over hoistd, a request on a role I do not approve (one I audit) is not.
    let mut hoistd = alice(now);
    if let Some(me) = hoistd.me.as_mut() {
        me.approver_for.clear();
    }
    let commands = update(
        &mut hoistd,
        Action::Live(Box::new(LiveEvent::Request {
            request: request("req_2", "db", "carol", now),
        })),
    );
    assert!(
        !commands.iter().any(|c| matches!(c, Command::Notify(_))),
        "{commands:?}"
    );
}

#[test]
fn a_request_landing_in_my_queue_is_a_desktop_notice_once() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    if let Some(me) = state.me.as_mut() {
        me.approver_for = vec!["db".into()];
    }
    let mut filed = request("req_1", "db", "carol", now);
    filed.tier = Some(0);
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request {
            request: filed.clone(),
        })),
    );
    assert_eq!(
        commands.first(),
        Some(&Command::Notify("To review: carol asks for db (T0)".into()))
    );
    assert_eq!(state.queue.len(), 1);

    // The same request again (a claim, another's review) is no news.
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: filed })),
    );
    assert!(!commands.iter().any(|c| matches!(c, Command::Notify(_))));

    // Nor is one for a role I do not approve (an auditor sees it too).
    let other = request("req_2", "k8s", "carol", now);
    let commands = update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: other })),
    );
    assert!(!commands.iter().any(|c| matches!(c, Command::Notify(_))));
}

#[test]
fn the_credential_of_an_ssh_grant_is_a_certificate_shown_and_copied() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    let mut shell = live_db(now);
    if let Some(access) = shell.access.as_mut() {
        access.target = "hosts".into();
        access.kind = "ssh".into();
    }
    update(&mut state, grant_event(shell));
    // Certified for the person's own key, not fetched.
    let commands = update(&mut state, Action::ShowCredential);
    assert_eq!(
        commands,
        [Command::Certify {
            grant_id: "g1".into(),
            copy: false
        }]
    );
    let line = "ssh-ed25519-cert-v01@openssh.com AAAA alice";
    let credential = credential_of_g1(
        now,
        hoist_api::AccessCredential {
            target: "hosts".into(),
            kind: "ssh".into(),
            env: Default::default(),
            uri: None,
            command: None,
            expires_at: now + TimeDelta::minutes(30),
            certificate: Some(hoist_api::SshCertificate {
                certificate: line.into(),
                key_id: "hoist grant=g1 holder=alice".into(),
                principals: vec!["deploy".into()],
                valid_after: now,
                valid_before: now + TimeDelta::minutes(30),
                fingerprint: "SHA256:abc".into(),
            }),
        },
    );
    update(
        &mut state,
        Action::CredentialLoaded {
            credential: Box::new(credential.clone()),
            copy: false,
        },
    );
    // y in the pop-up copies the certificate shown, not the token.
    let commands = update(&mut state, Action::CopyCredential);
    assert_eq!(commands, [Command::Copy(line.into())]);
    assert!(
        state
            .banner
            .as_ref()
            .is_some_and(|b| b.text == "SSH certificate for db copied"),
        "{:?}",
        state.banner
    );
    update(&mut state, Action::Back);
    // y on the list certifies and copies at once.
    let commands = update(&mut state, Action::CopyCredential);
    assert_eq!(
        commands,
        [Command::Certify {
            grant_id: "g1".into(),
            copy: true
        }]
    );
    let commands = update(
        &mut state,
        Action::CredentialLoaded {
            credential: Box::new(credential),
            copy: true,
        },
    );
    assert_eq!(commands, [Command::Copy(line.into())]);
    assert!(state.modal.is_none());
}

/// Esc closes a sign-in's pop-up without ending the sign-in; Ctrl-O,
/// offered in the footer while the sign-in waits, shows its code again,
/// over a screen or over the form, until the sign-in is over.
#[test]
fn a_closed_sign_in_pop_up_is_shown_again_until_the_sign_in_is_over() {
    use crate::app::keymap::{action_for_key, footer};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let ctrl_o = KeyEvent::new(KeyCode::Char('o'), KeyModifiers::CONTROL);
    let offered = |state: &State| footer(state).iter().any(|(_, l)| *l == "sign-in code");
    let shows_code = |state: &State| matches!(&state.modal, Some(Modal::SignIn(prompt)) if prompt.code == "ABCD-EFGH");

    let mut state = with_profiles(at("2026-06-01T12:00:00Z"));
    assert!(!offered(&state));
    update(&mut state, sign_in(Some("tenant")));
    update(&mut state, Action::Back);
    assert_eq!(state.modal, None);
    assert!(offered(&state), "{:?}", footer(&state));
    let action = action_for_key(&state, ctrl_o).expect("ctrl-o is bound");
    update(&mut state, action);
    assert!(shows_code(&state), "{:?}", state.modal);
    update(&mut state, Action::Back);
    update(
        &mut state,
        Action::SwitchFailed {
            profile: "tenant".into(),
            reason: "timed out".into(),
        },
    );
    assert!(!offered(&state));
    assert_eq!(action_for_key(&state, ctrl_o), None);

    // A stronger sign-in over the form, where keys are typed as text.
    let (mut state, _) = refused_for_an_old_sign_in(true);
    update(&mut state, sign_in(None));
    update(&mut state, Action::Back);
    assert!(state.form.is_some() && state.modal.is_none());
    assert!(offered(&state), "{:?}", footer(&state));
    let action = action_for_key(&state, ctrl_o).expect("ctrl-o is bound in the form");
    update(&mut state, action);
    assert!(shows_code(&state), "{:?}", state.modal);
    assert_eq!(
        state.form.as_ref().map(|f| f.justification.as_str()),
        Some("rotate the keys")
    );
}

/// A sign-in that arrives while the person types (a form, the filter) or
/// reads a credential shown once waits for ^O: the keys typed go where
/// they were going, and the credential stays on screen.
#[test]
fn a_sign_in_waits_while_the_person_types_or_reads_a_credential() {
    use crate::app::keymap::action_for_key;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.form = Some(RequestForm::new(role("db"), "key-1".into()));
    update(&mut state, sign_in(None));
    assert_eq!(state.modal, None);
    for key in ['h', 'q', '?'] {
        let typed = KeyEvent::new(KeyCode::Char(key), KeyModifiers::NONE);
        let action = action_for_key(&state, typed).expect("typed into the form");
        update(&mut state, action);
    }
    assert_eq!(state.form.as_ref().unwrap().justification, "hq?");
    assert!(state.hidden_sign_in.is_some(), "^O shows it");

    let mut state = alice(now);
    state.modal = Some(Modal::Credential {
        grant_id: "g1".into(),
        role: "db".into(),
        token: "t".into(),
        expires_at: now + TimeDelta::minutes(5),
        access: None,
    });
    update(&mut state, sign_in(None));
    assert!(
        matches!(state.modal, Some(Modal::Credential { .. })),
        "{:?}",
        state.modal
    );
    assert!(state.hidden_sign_in.is_some());
}

/// alice's form for a tier-0 `db`, filed once and refused for a sign-in
/// too old for it.
fn refused_for_an_old_sign_in(signs_in_again: bool) -> (State, Vec<Command>) {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.signs_in_again = signs_in_again;
    let mut critical = role("db");
    critical.tier = Some(0);
    let mut form = RequestForm::new(critical, "key-1".into());
    form.justification = "rotate the keys".into();
    form.submitting = true;
    state.form = Some(form);
    let commands = update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(
                FailureKind::StepUpRequired,
                "role `db` needs a sign-in within 15m",
            ),
        },
    );
    (state, commands)
}

#[test]
fn a_step_up_signs_in_again_and_files_the_same_form_once_more() {
    let (mut state, commands) = refused_for_an_old_sign_in(true);
    let [Command::SignInAgain { then }] = commands.as_slice() else {
        panic!("signs in again: {commands:?}");
    };
    assert!(
        matches!(then.as_ref(), Command::Submit { body, idempotency_key }
            if body.role == "db" && body.justification == "rotate the keys"
                && idempotency_key == "key-1"),
        "the same form, the same key: {then:?}"
    );
    let form = state.form.as_ref().unwrap();
    assert!(form.submitting, "kept while signing in");
    assert!(
        form.error
            .as_deref()
            .is_some_and(|e| e.contains("sign in again to file it")),
        "{:?}",
        form.error
    );

    // Refused again after signing in: said, and no third sign-in.
    let commands = update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::StepUpRequired, "still too old"),
        },
    );
    assert!(commands.is_empty(), "{commands:?}");
    let form = state.form.as_ref().unwrap();
    assert!(!form.submitting);
    assert!(
        form.error
            .as_deref()
            .is_some_and(|e| e.contains("still too old")),
        "{:?}",
        form.error
    );
    assert_eq!(form.justification, "rotate the keys", "the form is kept");
}

#[test]
fn a_sign_in_again_that_fails_leaves_the_form_saying_why() {
    let (mut state, _) = refused_for_an_old_sign_in(true);
    update(
        &mut state,
        Action::SignInPrompt(crate::app::state::SignInPrompt {
            profile: None,
            why: "This role asks for a recent sign-in".into(),
            url: "https://idp.example/device".into(),
            code: "ABCD".into(),
            complete: None,
            minutes: 10,
        }),
    );
    update(
        &mut state,
        Action::SignInAgainFailed("that sign-in was bob's, not alice's".into()),
    );
    assert!(state.modal.is_none(), "the sign-in pop-up closes");
    let form = state.form.as_ref().unwrap();
    assert!(!form.submitting);
    assert_eq!(
        form.error.as_deref(),
        Some("Could not sign in again: that sign-in was bob's, not alice's")
    );
}

#[test]
fn without_a_way_to_sign_in_again_a_step_up_says_to_run_hoist_login_fresh() {
    let (state, commands) = refused_for_an_old_sign_in(false);
    assert!(commands.is_empty(), "{commands:?}");
    let form = state.form.as_ref().unwrap();
    assert!(!form.submitting);
    assert!(
        form.error
            .as_deref()
            .is_some_and(|e| e.contains("run `hoist login --fresh`")),
        "{:?}",
        form.error
    );
}

/// A request still waiting for approval does not stand between a
/// responder who may break glass and the role: Enter opens the form to
/// break glass over it, and break-glass stays on (the broker would refuse
/// a second ordinary request). On a role without break-glass, Enter says
/// the role is requested and opens nothing.
#[test]
fn a_pending_request_leaves_break_glass_open_on_its_role() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.roles[0].break_glass = true; // db
    state.visible_roles = vec![0, 1, 2];
    state.requests = vec![
        request("req_db", "db", "alice", now),
        request("req_k8s", "k8s", "alice", now),
    ];

    state.cursors.roles = 0;
    update(&mut state, Action::Select);
    let form = state.form.clone().expect("the form opens on db");
    assert!(form.break_glass);
    assert_eq!(form.requested, [("db".to_string(), "req_db".to_string())]);
    update(&mut state, Action::ToggleBreakGlass);
    let form = state.form.clone().unwrap();
    assert!(form.break_glass, "break-glass stays on");
    assert!(
        form.error
            .as_deref()
            .unwrap_or("")
            .contains("already requested: db (req_db)"),
        "{:?}",
        form.error
    );
    // Space on the Break-glass field is the same toggle, and keeps it on too.
    state.form.as_mut().unwrap().field = crate::app::form::Field::BreakGlass;
    update(&mut state, Action::Input(' '));
    assert!(
        state.form.as_ref().unwrap().break_glass,
        "space keeps it on"
    );
    update(&mut state, Action::Back);

    state.cursors.roles = 1;
    update(&mut state, Action::Select);
    assert_eq!(state.form, None);
    assert!(
        state
            .banner
            .clone()
            .unwrap()
            .text
            .contains("k8s is already requested (req_k8s)"),
        "the person is told why"
    );
}

/// alice, who may break glass on every role, with a request for `db`
/// waiting (`req_db`).
fn responder_waiting_for_db(now: DateTime<Utc>) -> State {
    let mut state = alice(now);
    for role in &mut state.roles {
        role.break_glass = true;
    }
    state.visible_roles = vec![0, 1, 2];
    state.requests = vec![request("req_db", "db", "alice", now)];
    state
}

/// A bundle mid-incident: a marked role with a waiting request is filed
/// again only by breaking glass. Where the responder may break glass on
/// every role, the form opens ordinary with it set aside, ctrl-b brings it
/// in (break-glass over its request) and takes it out again; a form of
/// only such roles opens in break-glass and stays so. A held role is left
/// out, and the banner says which and why. Where one role of the bundle
/// has no break-glass, the waiting one is left out instead.
#[test]
fn a_pending_request_goes_in_a_bundle_only_by_breaking_glass() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = responder_waiting_for_db(now);
    state.grants = vec![grant("g_logs", "logs", "alice", now + TimeDelta::hours(1))];
    state.marked = ["db", "k8s", "logs"].map(String::from).into();
    let ids = |state: &State| -> Vec<String> {
        let form = state.form.as_ref().expect("a form");
        form.roles().map(|r| r.id.clone()).collect()
    };

    update(&mut state, Action::Select);
    assert_eq!(ids(&state), ["k8s"]);
    let form = state.form.clone().unwrap();
    assert!(!form.break_glass, "break-glass is the responder's choice");
    assert_eq!(form.set_aside.len(), 1);
    assert_eq!(form.set_aside[0].1, "req_db");
    let banner = state.banner.clone().unwrap().text;
    assert!(banner.contains("logs (held)"), "{banner}");
    assert!(!banner.contains("db"), "{banner}");

    update(&mut state, Action::ToggleBreakGlass);
    assert_eq!(ids(&state), ["k8s", "db"]);
    let form = state.form.clone().unwrap();
    assert!(form.break_glass);
    assert_eq!(form.requested, [("db".to_string(), "req_db".to_string())]);
    let sent = super::form::filing(&form);
    let Command::Batch(filings) = sent else {
        panic!("{sent:?}")
    };
    assert_eq!(filings.len(), 2);
    assert!(
        filings
            .iter()
            .all(|f| matches!(f, Command::Submit { body, .. } if body.break_glass))
    );

    update(&mut state, Action::ToggleBreakGlass);
    assert_eq!(ids(&state), ["k8s"], "off again, db steps out");
    let form = state.form.clone().unwrap();
    assert!(!form.break_glass);
    assert!(form.requested.is_empty());
    assert_eq!(form.set_aside.len(), 1);
    update(&mut state, Action::Back);

    // Nothing but the waiting role: break-glass, and it stays on.
    state.marked = ["db", "logs"].map(String::from).into();
    update(&mut state, Action::Select);
    assert_eq!(ids(&state), ["db"]);
    assert!(state.form.as_ref().unwrap().break_glass);
    update(&mut state, Action::ToggleBreakGlass);
    let form = state.form.clone().unwrap();
    assert!(form.break_glass, "break-glass stays on");
    assert!(
        form.error.as_deref().unwrap_or("").contains("db (req_db)"),
        "{:?}",
        form.error
    );
    update(&mut state, Action::Back);

    state.grants.clear();
    state
        .roles
        .iter_mut()
        .find(|r| r.id == "logs")
        .unwrap()
        .break_glass = false;
    update(&mut state, Action::Select);
    assert_eq!(ids(&state), ["logs"]);
    let form = state.form.clone().unwrap();
    assert!(!form.break_glass);
    assert!(form.requested.is_empty() && form.set_aside.is_empty());
    let banner = state.banner.clone().unwrap().text;
    assert!(banner.contains("db (requested: req_db)"), "{banner}");
}

/// A form's roles approved while it was open are taken out as it is sent
/// (the broker would refuse them, and the form could never go); a request
/// decided meanwhile no longer holds break-glass on.
#[test]
fn a_form_drops_what_was_decided_while_it_was_open() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = responder_waiting_for_db(now);
    state.marked = ["db", "k8s"].map(String::from).into();
    update(&mut state, Action::Select);
    update(&mut state, Action::ToggleBreakGlass);
    {
        let form = state.form.as_mut().unwrap();
        form.justification = "the primary refuses connections".into();
        form.incident = "INC-1".into();
    }
    // db is approved meanwhile.
    state.requests[0].state = RequestState::Active;
    state.grants = vec![grant("g_db", "db", "alice", now + TimeDelta::hours(1))];
    let sent = update(&mut state, Action::Submit);
    assert!(sent.is_empty(), "{sent:?}");
    let form = state.form.clone().unwrap();
    let ids: Vec<&str> = form.roles().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["k8s"]);
    assert!(form.requested.is_empty());
    assert!(
        form.error
            .as_deref()
            .unwrap_or("")
            .contains("You hold db now"),
        "{:?}",
        form.error
    );
    // Off now: nothing holds it on any more.
    update(&mut state, Action::ToggleBreakGlass);
    assert!(!state.form.as_ref().unwrap().break_glass);
    update(&mut state, Action::Back);

    // A single role's form over a request then denied: break-glass may go.
    state.grants.clear();
    state.requests = vec![request("req_k8s", "k8s", "alice", now)];
    state.marked.clear();
    state.cursors.roles = state
        .visible_roles
        .iter()
        .position(|&i| state.roles[i].id == "k8s")
        .unwrap();
    update(&mut state, Action::Select);
    assert!(state.form.as_ref().unwrap().break_glass);
    state.requests[0].state = RequestState::Denied;
    // Space on the Break-glass field, as ctrl-b.
    state.form.as_mut().unwrap().field = crate::app::form::Field::BreakGlass;
    update(&mut state, Action::Input(' '));
    assert!(!state.form.as_ref().unwrap().break_glass);

    // The form's only role approved meanwhile: it closes, saying so.
    state.requests[0].state = RequestState::Active;
    state.grants = vec![grant("g_k8s", "k8s", "alice", now + TimeDelta::hours(1))];
    update(&mut state, Action::Submit);
    assert!(state.form.is_none());
    let banner = state.banner.clone().unwrap().text;
    assert!(banner.contains("You hold k8s now"), "{banner}");
}

/// A bundle sent once keeps each role's filing as it went: ctrl-b is
/// refused then (a role filed ordinary would go again under the same key
/// with break-glass, which the broker refuses), and sending again files
/// only what is not filed yet. A bundle with roles set aside takes each
/// role's own default duration.
#[test]
fn a_sent_bundle_keeps_its_filings() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = responder_waiting_for_db(now);
    state.marked = ["db", "k8s", "logs"].map(String::from).into();
    update(&mut state, Action::Select);
    {
        let form = state.form.as_mut().unwrap();
        assert_eq!(form.duration, "", "each role's own default");
        form.justification = "the primary refuses connections".into();
        assert!(form.problems().is_empty(), "{:?}", form.problems());
    }
    let sent = update(&mut state, Action::Submit);
    assert!(
        matches!(&sent[..], [Command::Batch(b)] if b.len() == 2),
        "{sent:?}"
    );
    update(
        &mut state,
        Action::Filed(Box::new(request("req_k8s", "k8s", "alice", now))),
    );
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::NotPossibleNow, "logs needs a ticket"),
        },
    );
    let form = state.form.clone().expect("the refusal keeps the form");
    assert!(!form.submitting);

    update(&mut state, Action::ToggleBreakGlass);
    let form = state.form.clone().unwrap();
    assert!(!form.break_glass, "break-glass stays as it was sent");
    assert_eq!(form.set_aside.len(), 1, "db stays aside");
    assert!(
        form.error
            .as_deref()
            .unwrap_or("")
            .contains("filed already"),
        "{:?}",
        form.error
    );

    state.form.as_mut().unwrap().ticket = "CHG-1".into();
    let sent = update(&mut state, Action::Submit);
    match &sent[..] {
        [Command::Submit { body, .. }] => assert_eq!(body.role, "logs"),
        other => panic!("only logs goes again: {other:?}"),
    }
    // Its answer lost, but it was filed, and approved: taken out as it is
    // sent again, and then nothing is left to send.
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::Unreachable, "connection reset"),
        },
    );
    state.grants = vec![grant("g_logs", "logs", "alice", now + TimeDelta::hours(1))];
    assert!(update(&mut state, Action::Submit).is_empty());
    assert!(state.form.is_some(), "it says what it took out");
    assert!(update(&mut state, Action::Submit).is_empty());
    assert!(state.form.is_none(), "a form of roles all filed stays open");
    assert!(state.banner.clone().unwrap().text.contains("filed"));
}

/// A failed extension lets its own grant be extended again, and only its
/// own: another grant's extension on its way still guards it.
#[test]
fn a_failed_extension_frees_only_its_own_grant() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![
        grant("g1", "db", "alice", now + TimeDelta::minutes(10)),
        grant("g2", "k8s", "alice", now + TimeDelta::minutes(20)),
    ];
    state.screen = Screen::Grants;
    let extend = |state: &mut State, at: usize| {
        state.cursors.grants = at;
        let id = state.selected_grant().unwrap().id.clone();
        let sent = update(state, Action::Extend);
        (id, !sent.is_empty())
    };
    let (first, sent) = extend(&mut state, 0);
    assert!(sent);
    let (second, sent) = extend(&mut state, 1);
    assert!(sent && first != second);
    update(
        &mut state,
        Action::ExtendFailed {
            grant_id: first.clone(),
            failure: Failure::new(FailureKind::Unreachable, "down"),
        },
    );
    assert_eq!(extend(&mut state, 1), (second, false), "still on its way");
    assert_eq!(extend(&mut state, 0), (first, true), "free again");
}

/// An extension whose answer was lost is sent again with its key, so the
/// broker answers the one it made rather than extend twice; one refused,
/// one answered, or one pressed again long after gets a key of its own.
#[test]
fn an_extension_whose_answer_was_lost_is_retried_with_its_key() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(10))];
    state.screen = Screen::Grants;
    let key = |state: &mut State| match update(state, Action::Extend).as_slice() {
        [
            Command::Extend {
                idempotency_key, ..
            },
        ] => idempotency_key.clone(),
        other => panic!("no extension sent: {other:?}"),
    };
    let fail = |state: &mut State, kind| {
        update(
            state,
            Action::ExtendFailed {
                grant_id: "g1".into(),
                failure: Failure::new(kind, "x"),
            },
        );
    };
    let first = key(&mut state);
    fail(&mut state, FailureKind::Unreachable);
    assert_eq!(key(&mut state), first, "a lost answer is retried as itself");
    fail(&mut state, FailureKind::BrokerError);
    assert_eq!(key(&mut state), first);
    fail(&mut state, FailureKind::Refused);
    let second = key(&mut state);
    assert_ne!(second, first, "a refusal made nothing to retry");
    fail(&mut state, FailureKind::Unreachable);
    state.now = now + TimeDelta::minutes(11);
    let third = key(&mut state);
    assert_ne!(third, second, "pressed long after, a new extension");
    let answered = hoist_api::AccessRequest {
        state: RequestState::Active,
        ..request("x1", "db", "alice", now)
    };
    update(
        &mut state,
        Action::Extended {
            grant_id: "g1".into(),
            request: Box::new(answered),
        },
    );
    assert_ne!(key(&mut state), third, "answered: the next is a new one");
}

/// An extension's answer ends its grant's "working…" and leaves a form
/// being typed meanwhile as it is.
#[test]
fn an_extension_answered_clears_its_spinner_and_keeps_an_open_form() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(10))];
    state.screen = Screen::Grants;
    // Its credential being fetched is no extension on its way.
    state.busy.insert("g1".into());
    let commands = update(&mut state, Action::Extend);
    assert!(matches!(commands.as_slice(), [Command::Extend { .. }]));
    assert!(state.busy.contains("g1"));
    // A second press while the first is on its way sends nothing.
    assert!(update(&mut state, Action::Extend).is_empty());
    assert!(
        state
            .banner
            .clone()
            .unwrap()
            .text
            .starts_with("Already asking")
    );
    state.screen = Screen::Roles;
    state.cursors.roles = 1;
    update(&mut state, Action::NewRequest);
    update(&mut state, Action::Input('x'));
    let typed = state.form.clone().expect("a form is open");
    let mut extension = request("req_ext", "db", "alice", now);
    extension.kind = hoist_api::RequestKind::Extension;
    update(
        &mut state,
        Action::Extended {
            grant_id: "g1".into(),
            request: Box::new(extension),
        },
    );
    assert!(state.busy.is_empty(), "{:?}", state.busy);
    assert_eq!(state.form, Some(typed));
    let said = state.banner.clone().unwrap().text;
    assert!(said.starts_with("Extension of db requested"), "{said}");
}

/// Ctrl-C quits while filtering, as help says it does everywhere.
#[test]
fn ctrl_c_quits_while_filtering() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut state = alice(at("2026-06-01T12:00:00Z"));
    update(&mut state, Action::StartFilter);
    assert!(state.filtering);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(
        crate::app::keymap::action_for_key(&state, ctrl_c),
        Some(Action::Quit)
    );
}

/// Help lists the Activity screen's key and the pop-ups' copy keys.
#[test]
fn help_lists_the_activity_and_pop_up_keys() {
    let state = alice(at("2026-06-01T12:00:00Z"));
    let help = crate::app::keymap::help(&state);
    let labels: Vec<&str> = help
        .iter()
        .flat_map(|(_, keys)| keys.iter().map(|(_, label)| *label))
        .collect();
    for wanted in ["people/workloads", "copy", "copy URI"] {
        assert!(labels.contains(&wanted), "help lacks {wanted}: {help:?}");
    }
}

/// Asked to quit with two revocations unconfirmed (an incident's), one
/// refused: the question closes, so the refusal is seen, and the other's
/// confirmation later does not quit by itself.
#[test]
fn a_refusal_while_asked_to_quit_closes_the_question() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![
        grant("g1", "db", "alice", now + TimeDelta::hours(1)),
        grant("g2", "logs", "alice", now + TimeDelta::hours(1)),
    ];
    state.revoking = ["g1".to_string(), "g2".to_string()].into();
    update(&mut state, Action::Quit);
    assert_eq!(state.modal, Some(Modal::QuitWhileRevoking));
    update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::DeniedByPolicy, "not yours"),
        },
    );
    assert_eq!(state.modal, None);
    assert!(!state.should_quit);
    let mut revoked = grant("g2", "logs", "alice", now + TimeDelta::hours(1));
    revoked.state = GrantState::Revoked;
    update(&mut state, Action::GrantChanged(Box::new(revoked)));
    assert!(!state.should_quit, "quit on another's confirmation");
    assert_eq!(state.refused_revocations().len(), 1);
}

/// Every command a message names runs against the broker on screen: with
/// `hoist --profile work` on screen, a bare `hoist` would reach another
/// profile's broker, where the grant is unknown and the session another.
#[test]
fn the_commands_messages_name_choose_the_broker_on_screen() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.hoist = "hoist --profile work".into();
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(30))];
    state.screen = Screen::Grants;
    update(&mut state, Action::RevokePending("g1".into()));
    let exit = crate::tui::unconfirmed(&state);
    assert!(
        exit.len() == 1 && exit[0].contains("`hoist --profile work revoke g1`"),
        "{exit:?}"
    );
    update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::SessionEnded, "401"),
        },
    );
    let banner = state.banner.clone().expect("a banner");
    assert!(
        banner.text.contains("run `hoist --profile work login`"),
        "{}",
        banner.text
    );
    update(&mut state, Action::SessionExpired("refused".into()));
    let banner = state.banner.clone().expect("a banner");
    assert!(
        banner
            .text
            .contains("run `hoist --profile work login` in another"),
        "{}",
        banner.text
    );
}

/// A revocation retried, then refused for good, is no longer shown as
/// being retried, but as refused: in a banner, and for as long as the
/// grant is active on its row and in what hoist says on exit. Everything
/// is loaded again (the grant may have ended), and revoking it again
/// clears the mark.
#[test]
fn a_revoke_refused_for_good_stays_marked_until_the_grant_ends() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(30))];
    state.screen = Screen::Grants;
    update(&mut state, Action::RevokePending("g1".into()));
    assert!(state.revoking.contains("g1"));
    let commands = update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::DeniedByPolicy, "not yours"),
        },
    );
    assert!(state.revoking.is_empty(), "{:?}", state.revoking);
    assert!(
        commands.iter().any(|c| matches!(c, Command::LoadAll)),
        "{commands:?}"
    );
    let banner = state.banner.clone().expect("a banner");
    assert_eq!(banner.level, Level::Error);
    assert!(banner.text.contains("NOT revoked"), "{}", banner.text);
    let refused: Vec<_> = state
        .refused_revocations()
        .iter()
        .map(|(g, why)| (g.id.clone(), why.to_string()))
        .collect();
    assert_eq!(
        refused,
        vec![("g1".to_string(), "Denied by policy: not yours".to_string())]
    );
    let exit = crate::tui::unconfirmed(&state);
    assert!(
        exit.len() == 1 && exit[0].contains("refused to revoke db (g1)"),
        "{exit:?}"
    );

    // Still marked after the banner has gone.
    update(&mut state, Action::Tick(now + TimeDelta::minutes(1)));
    assert!(state.banner.is_none());
    assert_eq!(state.refused_revocations().len(), 1);

    // Revoking it again: no longer marked as refused, but as unconfirmed.
    update(&mut state, Action::Revoke);
    update(&mut state, Action::Confirm);
    assert!(state.refused_revocations().is_empty());
    assert!(state.revoking.contains("g1"));
    update(
        &mut state,
        Action::RevokeRefused {
            grant_id: "g1".into(),
            failure: Failure::new(FailureKind::NotPossibleNow, "ended"),
        },
    );
    assert_eq!(state.refused_revocations().len(), 1);

    // Past its end it is no longer named: nothing is left active.
    update(&mut state, Action::Tick(now + TimeDelta::minutes(31)));
    assert!(state.refused_revocations().is_empty());
    assert!(crate::tui::unconfirmed(&state).is_empty());
}

/// The incident on screen follows what the broker reports of its grants
/// and requests: a revoke answered, and someone else's grant ending.
#[test]
fn the_incident_on_screen_follows_its_grants_and_requests() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mine = grant("g1", "db", "alice", now + TimeDelta::minutes(30));
    let theirs = grant("g2", "k8s", "bob", now + TimeDelta::minutes(30));
    let filed = request("req_1", "db", "carol", now);
    state.grants = vec![mine.clone()];
    state.incident = Some(hoist_api::IncidentView {
        incident: "INC-7".into(),
        requests: vec![filed.clone()],
        grants: vec![mine.clone(), theirs.clone()],
    });
    let mut revoked = mine;
    revoked.state = GrantState::Revoked;
    update(&mut state, Action::GrantChanged(Box::new(revoked)));
    let mut ended = theirs;
    ended.state = GrantState::Revoked;
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant { grant: ended })),
    );
    let mut denied = filed;
    denied.state = RequestState::Denied;
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: denied })),
    );
    let view = state.incident.clone().unwrap();
    assert!(
        view.grants.iter().all(|g| g.state == GrantState::Revoked),
        "{:?}",
        view.grants
    );
    assert_eq!(view.requests[0].state, RequestState::Denied);
}

/// A load that fails while the stream is up (the broker busy just after a
/// reconnect) is tried again by itself, later each time, until one
/// succeeds: no event would say to, and what is shown would stay stale.
#[test]
fn a_load_that_fails_with_the_stream_up_is_tried_again() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.connection = Connection::Live;
    let failed = || Action::LoadFailed(Failure::new(FailureKind::Unreachable, "503"));
    update(&mut state, failed());
    assert!(update(&mut state, Action::Tick(now + TimeDelta::seconds(5))).is_empty());
    let commands = update(&mut state, Action::Tick(now + TimeDelta::seconds(11)));
    assert!(commands.contains(&Command::LoadAll), "{commands:?}");
    // Nothing more while that load is out.
    assert!(update(&mut state, Action::Tick(now + TimeDelta::seconds(12))).is_empty());
    update(&mut state, failed());
    let later = state.reload_due.unwrap().0;
    assert!(later >= now + TimeDelta::seconds(12 + 20), "{later}");
    let commands = update(&mut state, Action::Tick(later));
    assert!(commands.contains(&Command::LoadAll), "{commands:?}");
    // Offline, nothing is tried: the stream's return loads everything.
    update(&mut state, failed());
    update(&mut state, Action::StreamDown("gone".into()));
    assert!(update(&mut state, Action::Tick(later + TimeDelta::minutes(5))).is_empty());
    assert_eq!(state.reload_due, None);
    let (me, roles, now) = (state.me.clone().unwrap(), state.roles.clone(), state.now);
    update(
        &mut state,
        Action::Loaded(Box::new(Snapshot {
            now,
            me,
            roles,
            requests: vec![],
            grants: vec![],
            queue: vec![],
            break_glass: vec![],
            workload_grants: vec![],
        })),
    );
    assert_eq!(state.reload_due, None);
}

/// alice on the Incidents screen, with INC-7 (one request of hers) loaded.
fn on_incident(now: DateTime<Utc>) -> State {
    let mut state = alice(now);
    let mut filed = request("req_1", "db", "alice", now);
    filed.incident = Some("INC-7".into());
    state.requests = vec![filed.clone()];
    state.screen = Screen::Incidents;
    state.incident = Some(hoist_api::IncidentView {
        incident: "INC-7".into(),
        requests: vec![filed],
        grants: vec![],
    });
    state
}

/// A reconnect, a resync and `R` load the incident on screen again, not
/// only the lists: what changed under it while the stream was down (a
/// grant revoked, another responder breaking glass) shows.
#[test]
fn a_reconnect_a_resync_and_r_load_the_incident_on_screen_again() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = on_incident(now);
    let loads_it = |commands: &[Command]| {
        commands.contains(&Command::LoadAll)
            && commands.contains(&Command::LoadIncident("INC-7".into()))
    };
    assert!(loads_it(&update(&mut state, Action::Refresh)));
    update(&mut state, Action::StreamDown("gone".into()));
    assert!(loads_it(&update(&mut state, Action::StreamUp)));
    assert!(loads_it(&update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Resync { time: now }))
    )));
}

/// A grant made under the incident after its view loaded (the approval of
/// a request filed under it) joins the view, and `X` revokes it; the
/// cursor stays on the incident when another reference arrives.
#[test]
fn a_grant_made_under_the_incident_since_it_loaded_is_revoked_with_it() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = on_incident(now);
    let mut granted = grant("g1", "db", "alice", now + TimeDelta::minutes(30));
    granted.incident = Some("INC-7".into());
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant { grant: granted })),
    );
    // A newer incident of someone else's comes first in the list.
    let mut other = request("req_2", "k8s", "bob", now + TimeDelta::minutes(1));
    other.incident = Some("INC-8".into());
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: other })),
    );
    assert_eq!(state.selected_incident().as_deref(), Some("INC-7"));
    update(&mut state, Action::RevokeIncident);
    match &state.modal {
        Some(Modal::Confirm {
            yes: Command::Batch(commands),
            ..
        }) => assert!(
            matches!(&commands[..], [Command::Revoke { grant_id, .. }] if grant_id == "g1"),
            "{commands:?}"
        ),
        other => panic!("{other:?}; banner {:?}", state.banner),
    }
}

/// `X` before the incident's view has loaded (a slow link, a failed
/// load) still offers the grants of mine under it that the list holds,
/// rather than do nothing.
#[test]
fn x_before_the_incidents_view_loads_revokes_what_the_list_holds() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = on_incident(now);
    state.incident = None;
    let mut granted = grant("g1", "db", "alice", now + TimeDelta::minutes(30));
    granted.incident = Some("INC-7".into());
    update(&mut state, grant_event(granted));
    assert_eq!(state.selected_incident().as_deref(), Some("INC-7"));
    update(&mut state, Action::RevokeIncident);
    match &state.modal {
        Some(Modal::Confirm {
            prompt,
            yes: Command::Batch(commands),
            ..
        }) => {
            assert!(prompt.contains("under INC-7"), "{prompt}");
            assert!(
                matches!(&commands[..], [Command::Revoke { grant_id, .. }] if grant_id == "g1"),
                "{commands:?}"
            );
        }
        other => panic!("{other:?}; banner {:?}", state.banner),
    }
}

/// `y` in a credential pop-up copies that grant's credential, even when
/// the list's selection has moved onto another grant meanwhile (the shown
/// one was revoked elsewhere): never another grant's.
#[test]
fn y_in_a_credential_pop_up_copies_the_grant_shown() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    let shown = grant("g1", "db", "alice", now + TimeDelta::minutes(30));
    update(&mut state, grant_event(shown.clone()));
    update(
        &mut state,
        grant_event(grant("g2", "logs", "alice", now + TimeDelta::minutes(50))),
    );
    state.cursors.grants = state.grants.iter().position(|g| g.id == "g1").unwrap();
    assert_eq!(
        update(&mut state, Action::ShowCredential),
        [Command::Credential {
            grant_id: "g1".into(),
            copy: false
        }]
    );
    let mut credential = credential_of_g1(
        now,
        hoist_api::AccessCredential {
            target: String::new(),
            kind: String::new(),
            env: Default::default(),
            uri: None,
            command: None,
            expires_at: now,
            certificate: None,
        },
    );
    credential.access = None;
    update(
        &mut state,
        Action::CredentialLoaded {
            credential: Box::new(credential),
            copy: false,
        },
    );
    // g1 is revoked elsewhere while the pop-up is open: the list's
    // selection falls on g2.
    let mut revoked = shown;
    revoked.state = GrantState::Revoked;
    update(&mut state, grant_event(revoked));
    assert_eq!(state.selected_grant().map(|g| g.id.as_str()), Some("g2"));
    assert!(matches!(state.modal, Some(Modal::Credential { .. })));
    assert_eq!(
        update(&mut state, Action::CopyCredential),
        [Command::Credential {
            grant_id: "g1".into(),
            copy: true
        }]
    );
}

/// alice on Reviews with carol's `req_a` (selected) and dave's `req_b`
/// waiting for her; and `req_a` as decided.
fn reviewing(now: DateTime<Utc>) -> (State, hoist_api::AccessRequest) {
    let mut state = alice(now);
    state.queue = vec![
        request("req_a", "db", "carol", now + TimeDelta::minutes(5)),
        request("req_b", "k8s", "dave", now + TimeDelta::hours(1)),
    ];
    state.screen = Screen::Reviews;
    let mut decided = request("req_a", "db", "carol", now + TimeDelta::minutes(5));
    decided.state = RequestState::Approved;
    (state, decided)
}

/// alice on Grants with `g_a` (selected) and `g_b`; and `g_a` as revoked
/// by `by`.
fn holding(now: DateTime<Utc>, by: &str) -> (State, hoist_api::Grant) {
    let mut state = alice(now);
    state.grants = vec![
        grant("g_a", "db", "alice", now + TimeDelta::minutes(20)),
        grant("g_b", "k8s", "alice", now + TimeDelta::hours(1)),
    ];
    state.screen = Screen::Grants;
    let mut revoked = grant("g_a", "db", "alice", now + TimeDelta::minutes(20));
    revoked.state = GrantState::Revoked;
    revoked.revoked_by = Some(by.into());
    (state, revoked)
}

/// The request an approver was on, decided by someone else, leaves the
/// queue and the cursor rests on the next: the next `a` only says so, and
/// the one after acts on what is now under the cursor. Their own decision
/// taking it out leaves nothing to say.
#[test]
fn a_key_after_the_selection_left_its_list_does_not_act_on_the_neighbour() {
    let now = at("2026-06-01T12:00:00Z");
    let (mut state, decided) = reviewing(now);
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: decided })),
    );
    assert_eq!(state.selected_review().unwrap().1.id, "req_b");
    update(&mut state, Action::Approve);
    assert!(state.modal.is_none(), "{:?}", state.modal);
    let banner = state.banner.as_ref().unwrap();
    assert!(
        banner.text.contains("decided or ended meanwhile"),
        "{}",
        banner.text
    );
    update(&mut state, Action::Approve);
    assert!(
        matches!(&state.modal, Some(Modal::Input { title, .. }) if title.contains("dave")),
        "{:?}",
        state.modal
    );

    // The approver's own decision: the next key acts at once.
    let (mut state, decided) = reviewing(now);
    state.deciding.insert("req_a".to_string());
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: decided })),
    );
    update(&mut state, Action::Approve);
    assert!(matches!(state.modal, Some(Modal::Input { .. })));

    // A claim of mine in flight is not my decision: decided by someone
    // else meanwhile, the request leaves the next key to no neighbour.
    let (mut state, decided) = reviewing(now);
    state.busy.insert("req_a".to_string());
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: decided })),
    );
    update(&mut state, Action::Approve);
    assert!(state.modal.is_none(), "{:?}", state.modal);

    // A grant whose extension is in flight ends meanwhile: `e` falls on no
    // other grant.
    let (mut state, revoked) = holding(now, "bob");
    state.busy.insert("g_a".into());
    update(&mut state, grant_event(revoked));
    assert_eq!(state.selected_grant().unwrap().id, "g_b");
    assert!(update(&mut state, Action::Extend).is_empty());
    assert!(
        state
            .banner
            .as_ref()
            .is_some_and(|b| b.text.contains("decided or ended meanwhile")),
        "{:?}",
        state.banner
    );

    // A grant revoked elsewhere: `x` falls on no other grant, and moving
    // the cursor is choosing again.
    let (mut state, revoked) = holding(now, "bob");
    update(&mut state, grant_event(revoked));
    assert_eq!(state.selected_grant().unwrap().id, "g_b");
    update(&mut state, Action::Revoke);
    assert!(state.modal.is_none(), "{:?}", state.modal);
    update(&mut state, Action::Down);
    update(&mut state, Action::Revoke);
    assert!(matches!(state.modal, Some(Modal::Confirm { .. })));
}

/// A reload while the person filters the roles keeps the match they
/// moved to: Enter opens the form for it, not for the best match.
#[test]
fn a_reload_while_filtering_keeps_the_match_under_the_cursor() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let load = |roles: &[&str]| {
        Action::Loaded(Box::new(Snapshot {
            now,
            me: Me {
                user: "alice".into(),
                display_name: "Alice".into(),
                groups: vec![],
                approver_for: vec![],
                auditor: false,
            },
            roles: roles.iter().map(|id| role(id)).collect(),
            requests: vec![],
            grants: vec![],
            queue: vec![],
            break_glass: vec![],
            workload_grants: vec![],
        }))
    };
    update(&mut state, load(&["db", "db2", "k8s", "logs"]));
    update(&mut state, Action::StartFilter);
    for c in "db".chars() {
        update(&mut state, Action::Input(c));
    }
    let matches: Vec<String> = state
        .visible_roles
        .iter()
        .map(|i| state.roles[*i].id.clone())
        .collect();
    assert!(matches.len() >= 2, "{matches:?}");
    update(&mut state, Action::Down);
    let chosen = state.selected_role().unwrap().id.clone();
    assert_eq!(chosen, matches[1]);
    update(&mut state, load(&["db", "db2", "db3", "k8s", "logs"]));
    assert!(state.filtering);
    assert_eq!(state.selected_role().unwrap().id, chosen);
}

/// A bundle's refusal is kept on its form when another of its roles is
/// filed after it; and a form opened since one was sent (that one closed
/// while it was answered) is not closed, nor given the error, by its
/// answers.
#[test]
fn filing_answers_reach_only_the_form_that_sent_them() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut form = RequestForm::new(role("db"), "key-1".into());
    form.extra = vec![role("k8s")];
    form.extra_keys = vec!["key-2".into()];
    form.justification = "rotate the keys".into();
    form.submitting = true;
    state.form = Some(form);
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::NotPossibleNow, "k8s needs a ticket"),
        },
    );
    let filed = request("req_db", "db", "alice", now + TimeDelta::hours(1));
    update(&mut state, Action::Filed(Box::new(filed)));
    let form = state.form.as_ref().expect("the refusal stays on screen");
    assert!(
        form.error
            .as_deref()
            .unwrap()
            .contains("k8s needs a ticket"),
        "{:?}",
        form.error
    );
    assert!(state.banner.as_ref().unwrap().text.contains("db"));

    // Sent, closed while answered, and another form opened.
    let mut state = alice(now);
    let mut other = RequestForm::new(role("logs"), "key-3".into());
    other.justification = "reading the logs".into();
    state.form = Some(other.clone());
    let filed = request("req_db", "db", "alice", now + TimeDelta::hours(1));
    update(&mut state, Action::Filed(Box::new(filed)));
    assert_eq!(
        state.form.as_ref(),
        Some(&other),
        "closed by another's answer"
    );
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::NotPossibleNow, "db is not yours"),
        },
    );
    assert_eq!(state.form.as_ref().unwrap().error, None);
    let banner = state.banner.as_ref().unwrap();
    assert!(banner.text.contains("db is not yours"), "{}", banner.text);
}

/// The answer to my own decision takes the request out of my queue, never
/// into my own requests, and the next key acts at once; so does the
/// answer to my own revocation.
#[test]
fn my_own_decision_or_revocation_moves_the_cursor_without_a_word() {
    let now = at("2026-06-01T12:00:00Z");
    let (mut state, decided) = reviewing(now);
    state.deciding.insert("req_a".to_string());
    update(&mut state, Action::RequestChanged(Box::new(decided)));
    assert!(state.requests.is_empty(), "carol's request among mine");
    assert_eq!(state.selected_review().unwrap().1.id, "req_b");
    update(&mut state, Action::Approve);
    assert!(matches!(state.modal, Some(Modal::Input { .. })));

    let (mut state, revoked) = holding(now, "alice");
    state.revoking.insert("g_a".into());
    update(&mut state, Action::GrantChanged(Box::new(revoked)));
    assert_eq!(state.selected_grant().unwrap().id, "g_b");
    update(&mut state, Action::Revoke);
    assert!(matches!(state.modal, Some(Modal::Confirm { .. })));
}

/// A clock that jumped has everything loaded again even with a pop-up or
/// the form open, which take the keys: the broker's time is read afresh
/// before any countdown moves on the stale one.
#[test]
fn a_clock_jump_reloads_whatever_is_open() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.modal = Some(Modal::Help);
    assert_eq!(update(&mut state, Action::ClockJumped), [Command::LoadAll]);
    state.modal = None;
    state.form = Some(RequestForm::new(role("db"), "key-1".into()));
    assert_eq!(update(&mut state, Action::ClockJumped), [Command::LoadAll]);
    // A key's refresh stays the open form's to ignore.
    assert!(update(&mut state, Action::Refresh).is_empty());
}

/// A workload's grant on a role I approve follows its events on the Grants
/// screen: one revoked early goes, a new one comes, without a reload.
#[test]
fn workload_grants_follow_their_events() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let ci = "workload:ci:deploy-bot";
    state.workload_grants = vec![grant("w1", "k8s", ci, now + TimeDelta::minutes(10))];
    let mut revoked = grant("w1", "k8s", ci, now + TimeDelta::minutes(10));
    revoked.state = GrantState::Revoked;
    update(&mut state, grant_event(revoked));
    assert!(state.workload_grants.is_empty());
    update(
        &mut state,
        grant_event(grant("w2", "k8s", ci, now + TimeDelta::minutes(5))),
    );
    let shown: Vec<&str> = state
        .workload_grants
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(shown, ["w2"]);
}

/// A grant under the incident past its end, which the loaded view still
/// calls active (offline, or before its expiry arrives), is not offered to
/// `X`: only grants still running are revoked with the incident.
#[test]
fn a_grant_past_its_end_is_not_revoked_with_the_incident() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut filed = request("req_1", "db", "alice", now);
    filed.incident = Some("INC-7".into());
    let mut ended = grant("g_old", "db", "alice", now - TimeDelta::seconds(1));
    ended.incident = Some("INC-7".into());
    let mut running = grant("g_new", "k8s", "alice", now + TimeDelta::minutes(30));
    running.incident = Some("INC-7".into());
    state.requests = vec![filed.clone()];
    state.screen = Screen::Incidents;
    state.incident = Some(hoist_api::IncidentView {
        incident: "INC-7".into(),
        requests: vec![filed],
        grants: vec![ended, running],
    });
    update(&mut state, Action::RevokeIncident);
    match &state.modal {
        Some(Modal::Confirm {
            yes: Command::Batch(commands),
            prompt,
            ..
        }) => {
            assert!(
                matches!(&commands[..], [Command::Revoke { grant_id, .. }] if grant_id == "g_new"),
                "{commands:?}"
            );
            assert!(prompt.contains("all 1 of"), "{prompt}");
        }
        other => panic!("{other:?}; banner {:?}", state.banner),
    }
}

/// Confirming a break-glass bundle sends its form, as one role does: its
/// answers then close it, or keep a refusal on it.
/// The key that asked for a new password, pressed twice or held, does not
/// answer yes: only Enter does. A dangerous confirm (break glass, revoke)
/// is the reverse: a reflex Enter after sending the form leaves it asking,
/// and only `y` says yes.
#[test]
fn a_key_pressed_twice_or_a_reflex_enter_does_not_answer_a_confirm() {
    use crate::app::keymap::action_for_key;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let press = |state: &mut State, code: KeyCode| {
        let key = KeyEvent::new(code, KeyModifiers::NONE);
        match action_for_key(state, key) {
            Some(action) => update(state, action),
            None => Vec::new(),
        }
    };
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    let db = live_db(now);
    update(&mut state, grant_event(db));
    for key in ['y', 's'] {
        assert_eq!(press(&mut state, KeyCode::Char(key)), []);
        assert_eq!(press(&mut state, KeyCode::Char(key)), [], "{key} twice");
        assert!(
            matches!(state.modal, Some(Modal::Confirm { .. })),
            "{key} twice leaves it asking"
        );
        assert_eq!(
            press(&mut state, KeyCode::Enter),
            [Command::Credential {
                grant_id: "g1".into(),
                copy: key == 'y'
            }]
        );
        state.busy.clear();
    }

    let mut state = alice(now);
    state.screen = Screen::Grants;
    update(
        &mut state,
        grant_event(grant("g2", "logs", "alice", now + TimeDelta::minutes(30))),
    );
    assert_eq!(update(&mut state, Action::Revoke), []);
    assert_eq!(press(&mut state, KeyCode::Enter), []);
    assert!(
        matches!(state.modal, Some(Modal::Confirm { danger: true, .. })),
        "Enter leaves a revoke asking"
    );
    let sent = press(&mut state, KeyCode::Char('y'));
    assert!(
        matches!(&sent[..], [Command::Revoke { grant_id, .. }] if grant_id == "g2"),
        "{sent:?}"
    );
}

#[test]
fn a_confirmed_break_glass_bundle_is_the_forms_filing() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut form = RequestForm::new(role("db"), "key-1".into());
    form.extra = vec![role("k8s")];
    form.extra_keys = vec!["key-2".into()];
    form.break_glass = true;
    form.justification = "the database is down".into();
    state.form = Some(form.clone());
    state.modal = Some(Modal::Confirm {
        prompt: "BREAK GLASS on db, k8s now?".into(),
        yes: super::form::filing(&form),
        danger: true,
        repeats: false,
    });
    let sent = update(&mut state, Action::Confirm);
    assert!(matches!(&sent[..], [Command::Batch(_)]), "{sent:?}");
    assert!(state.form.as_ref().unwrap().submitting);
    let filed = request("req_db", "db", "alice", now + TimeDelta::hours(1));
    update(&mut state, Action::Filed(Box::new(filed)));
    assert!(state.form.is_some(), "k8s is still on its way");
    let filed = request("req_k8s", "k8s", "alice", now + TimeDelta::hours(1));
    update(&mut state, Action::Filed(Box::new(filed)));
    assert!(state.form.is_none(), "the filed form stayed open");
}

/// A bundle's role refused after another was filed keeps the form, and its
/// reason, on screen, though the others' answers come after it: sending it
/// again files the refused one (the others are answered, not filed twice),
/// and the form closes once every role is filed.
#[test]
fn a_bundle_with_a_refused_role_keeps_its_form_until_every_role_is_filed() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let mut form = RequestForm::new(role("db"), "key-1".into());
    form.extra = vec![role("k8s"), role("logs")];
    form.extra_keys = vec!["key-2".into(), "key-3".into()];
    form.justification = "drain the node pool".into();
    form.submitting = true;
    state.form = Some(form);
    let filed = |id: &str, role: &str| {
        Action::Filed(Box::new(request(
            id,
            role,
            "alice",
            now + TimeDelta::hours(1),
        )))
    };
    update(&mut state, filed("req_db", "db"));
    update(
        &mut state,
        Action::Failed {
            operation: Operation::Filing,
            failure: Failure::new(FailureKind::NotPossibleNow, "k8s needs a ticket"),
        },
    );
    update(&mut state, filed("req_logs", "logs"));
    let form = state
        .form
        .as_ref()
        .expect("the form stays, with the refusal");
    assert!(
        form.error
            .as_deref()
            .is_some_and(|e| e.contains("k8s needs a ticket")),
        "{:?}",
        form.error
    );
    assert!(!form.submitting);
    update(&mut state, Action::Submit);
    assert!(state.form.as_ref().unwrap().submitting, "sent again");
    for (id, role) in [("req_db", "db"), ("req_logs", "logs"), ("req_k8s", "k8s")] {
        update(&mut state, filed(id, role));
    }
    assert!(state.form.is_none(), "every role filed");
}

/// A selection lost when its list emptied is forgotten: the next request
/// to arrive is chosen anew, and `a` acts on it.
#[test]
fn a_list_that_emptied_has_no_lost_selection() {
    let now = at("2026-06-01T12:00:00Z");
    let (mut state, decided) = reviewing(now);
    state.queue.truncate(1);
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: decided })),
    );
    assert!(state.queue.is_empty());
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request {
            request: request("req_c", "logs", "frank", now + TimeDelta::hours(1)),
        })),
    );
    update(&mut state, Action::Approve);
    assert!(
        matches!(&state.modal, Some(Modal::Input { title, .. }) if title.contains("frank")),
        "{:?}; {:?}",
        state.modal,
        state.banner
    );
}

/// Events relayed by several broker instances can arrive out of order: a
/// copy older than one already heard is passed over, so a decided request
/// does not go back to pending, nor a revoked grant back to active.
#[test]
fn an_event_overtaken_by_a_newer_one_is_passed_over() {
    let now = at("2026-06-01T12:00:00Z");
    let (mut state, mut decided) = reviewing(now);
    let mut reviewed = state.queue[0].clone();
    reviewed.reviews.push(hoist_api::Review {
        reviewer: "bob".into(),
        decision: hoist_api::Decision::Approve,
        comment: None,
        at: now,
    });
    reviewed.updated_at += TimeDelta::milliseconds(1);
    decided.updated_at += TimeDelta::milliseconds(2);
    for request in [decided, reviewed] {
        update(
            &mut state,
            Action::Live(Box::new(LiveEvent::Request { request })),
        );
    }
    let queued: Vec<&str> = state.queue.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(queued, ["req_b"], "the approved request stays decided");

    let (mut state, revoked) = holding(now, "bob");
    let mut active = revoked.clone();
    active.state = GrantState::Active;
    active.revoked_by = None;
    for grant in [revoked, active] {
        update(
            &mut state,
            Action::Live(Box::new(LiveEvent::Grant { grant })),
        );
    }
    let held: Vec<&str> = state.grants.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(held, ["g_b"], "the revoked grant stays revoked");
}

/// A load answered before a change that an event brought meanwhile does not
/// put the older copies back: the decided request stays out of the queue,
/// the revoked grant out of the active ones, and my request decided.
#[test]
fn a_load_older_than_an_event_heard_meanwhile_keeps_the_event() {
    let now = at("2026-06-01T12:00:00Z");
    let (mut state, mut decided) = reviewing(now);
    let pending = state.queue.clone();
    decided.updated_at += TimeDelta::milliseconds(1);
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: decided })),
    );
    let mine = request("req_m", "logs", "alice", now);
    let mut approved = mine.clone();
    approved.state = RequestState::Approved;
    approved.updated_at = now + TimeDelta::milliseconds(1);
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: approved })),
    );
    let revoked = {
        let mut grant = grant("g_a", "db", "alice", now + TimeDelta::minutes(20));
        grant.state = GrantState::Revoked;
        grant
    };
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Grant { grant: revoked })),
    );

    let mut snapshot = Snapshot {
        now: state.now,
        me: state.me.clone().unwrap(),
        roles: state.roles.clone(),
        requests: vec![mine],
        grants: vec![grant("g_a", "db", "alice", now + TimeDelta::minutes(20))],
        queue: pending,
        break_glass: vec![],
        workload_grants: vec![],
    };
    snapshot.queue[0].approvers = vec!["bob".into()];
    update(&mut state, Action::Loaded(Box::new(snapshot)));

    let queued: Vec<&str> = state.queue.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(queued, ["req_b"]);
    assert_eq!(state.requests[0].state, RequestState::Approved);
    assert!(state.grants.is_empty(), "{:?}", state.grants);
}

/// A broker that does not order its copies (an older hoistd, Entra) is
/// taken as it always was: the copy heard last wins.
#[test]
fn with_a_broker_that_does_not_order_its_copies_the_last_one_wins() {
    let now = at("2026-06-01T12:00:00Z");
    let (mut state, mut decided) = reviewing(now);
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Hello {
            user: "alice".into(),
            time: now,
            ordered: false,
        })),
    );
    let mut reviewed = state.queue[0].clone();
    reviewed.updated_at += TimeDelta::milliseconds(1);
    decided.updated_at += TimeDelta::milliseconds(2);
    for request in [decided, reviewed] {
        update(
            &mut state,
            Action::Live(Box::new(LiveEvent::Request { request })),
        );
    }
    let queued: Vec<&str> = state.queue.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(queued, ["req_a", "req_b"]);
}

/// A credential or a sign-in that arrives while a question is open does
/// not take its keys: the `y` meant for "Revoke now?" revokes, and the
/// credential shows once the question is closed; the sign-in waits for ^O.
#[test]
fn what_arrives_during_a_question_does_not_take_its_keys() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let revoke = Command::Revoke {
        grant_id: "g2".into(),
        reason: None,
    };
    state.modal = Some(Modal::Confirm {
        prompt: "Revoke k8s now?".into(),
        yes: revoke.clone(),
        danger: true,
        repeats: false,
    });
    let credential = credential_of_g1(
        now,
        hoist_api::AccessCredential {
            target: "db-prod-1".into(),
            kind: "postgres".into(),
            env: Default::default(),
            uri: None,
            command: None,
            expires_at: now + TimeDelta::minutes(30),
            certificate: None,
        },
    );
    update(
        &mut state,
        Action::CredentialLoaded {
            credential: Box::new(credential.clone()),
            copy: false,
        },
    );
    update(&mut state, sign_in(None));
    assert!(matches!(state.modal, Some(Modal::Confirm { .. })));
    assert!(state.hidden_sign_in.is_some(), "the sign-in waits for ^O");
    let commands = update(&mut state, Action::Confirm);
    assert!(commands.contains(&revoke), "{commands:?}");
    assert!(
        matches!(state.modal, Some(Modal::Credential { .. })),
        "shown once the question closed"
    );
    update(&mut state, Action::Back);
    assert!(state.modal.is_none());
    update(&mut state, Action::ShowSignIn);
    assert!(matches!(state.modal, Some(Modal::SignIn(_))));
    update(&mut state, Action::Back);

    // The question revoked the credential's own grant: it is not shown.
    state.modal = Some(Modal::Confirm {
        prompt: "Revoke db now?".into(),
        yes: Command::Revoke {
            grant_id: "g1".into(),
            reason: None,
        },
        danger: true,
        repeats: false,
    });
    update(
        &mut state,
        Action::CredentialLoaded {
            credential: Box::new(credential.clone()),
            copy: false,
        },
    );
    update(&mut state, Action::Confirm);
    assert!(state.modal.is_none(), "{:?}", state.modal.is_some());
    assert!(state.waiting_credential.is_none(), "the secret is let go");

    // Nor does a credential take the keys of a request form or the filter
    // being typed into: it shows once they are closed.
    let credential = hoist_api::Credential {
        grant_id: "g3".into(),
        ..credential
    };
    for filtering in [false, true] {
        if filtering {
            state.filtering = true;
        } else {
            state.form = Some(RequestForm::new(role("k8s"), "k1".into()));
        }
        update(
            &mut state,
            Action::CredentialLoaded {
                credential: Box::new(credential.clone()),
                copy: false,
            },
        );
        assert!(state.modal.is_none(), "typing goes on");
        update(&mut state, Action::Tick(now));
        assert!(state.modal.is_none(), "typing goes on");
        state.form = None;
        state.filtering = false;
        update(&mut state, Action::Tick(now));
        assert!(
            matches!(state.modal, Some(Modal::Credential { .. })),
            "shown once the typing is done"
        );
        update(&mut state, Action::Back);
    }
}

/// A profile opened while a revocation here is still being retried, or a
/// form is being written, is not shown over them: leaving would drop the
/// retries (the grant would stay active) or what was typed.
#[test]
fn the_profile_on_screen_is_not_left_with_work_in_hand() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    assert_eq!(super::why_not_leave(&state), None);
    state.revoking.insert("g1".into());
    state.grants = vec![grant("g1", "db", "alice", now + TimeDelta::minutes(30))];
    assert!(
        super::why_not_leave(&state).is_some_and(|why| why.contains("revocation")),
        "{:?}",
        super::why_not_leave(&state)
    );
    state.revoking.clear();
    let mut form = RequestForm::new(role("db"), "key-1".into());
    form.justification = "rotate the keys".into();
    state.form = Some(form);
    assert!(super::why_not_leave(&state).is_some_and(|why| why.contains("form")));
    state.form.as_mut().unwrap().justification.clear();
    assert_eq!(
        super::why_not_leave(&state),
        None,
        "an empty form is no work"
    );
    // A reason being typed, and a decision the broker has not answered.
    state.modal = Some(Modal::Input {
        prompt: crate::app::state::Prompt::Deny {
            request_id: "req_1".into(),
        },
        title: "Deny".into(),
        text: "not during the freeze".into(),
        required: true,
        error: None,
    });
    assert!(super::why_not_leave(&state).is_some_and(|why| why.contains("question")));
    state.modal = None;
    state.deciding.insert("req_1".into());
    assert!(super::why_not_leave(&state).is_some_and(|why| why.contains("decision")));
}

/// The first load is placed by the broker's time as the answer came, not
/// by ticks of the local clock alone (which ran before any answer set the
/// offset): with this machine ten minutes fast, a grant with five minutes
/// left is active, listed and revocable, not ending.
#[test]
fn the_first_load_places_grants_by_the_brokers_time() {
    let local = at("2026-06-01T12:10:00Z");
    let broker = at("2026-06-01T12:00:00Z");
    let mut state = State::new("https://hoist.example".into(), local);
    update(&mut state, Action::Tick(local));
    let me = Me {
        user: "alice".into(),
        display_name: "Alice".into(),
        groups: vec![],
        approver_for: vec![],
        auditor: false,
    };
    update(
        &mut state,
        Action::Loaded(Box::new(Snapshot {
            now: broker,
            me,
            roles: vec![role("db")],
            requests: vec![],
            grants: vec![grant("g_a", "db", "alice", broker + TimeDelta::minutes(5))],
            queue: vec![],
            break_glass: vec![],
            workload_grants: vec![],
        })),
    );
    assert_eq!(state.now, broker);
    let active: Vec<&str> = state.grants.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(active, ["g_a"], "ending: {:?}", state.ending);
}

/// A failure lets go of what its own kind of operation had under way, not
/// of another's: a decision sent stays the person's own (its request's
/// leaving is no surprise), and a profile being opened keeps the guard
/// against opening another.
#[test]
fn a_failure_lets_go_only_of_its_own_kind_of_work() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.deciding.insert("req_a".into());
    state.busy.insert("req_a".into());
    state.busy.insert("switching profile".into());
    state.busy.insert("g1".into());
    let fail = |operation| Action::Failed {
        operation,
        failure: Failure::new(FailureKind::Unreachable, "connection refused or failed"),
    };
    update(&mut state, fail(Operation::LoadingHistory));
    assert_eq!(state.busy.len(), 3, "{:?}", state.busy);
    update(&mut state, fail(Operation::FetchingCredential));
    assert!(!state.busy.contains("g1"), "{:?}", state.busy);
    assert!(state.busy.contains("req_a") && state.busy.contains("switching profile"));
    assert!(state.deciding.contains("req_a"));
    // A decision's failure lets go of that decision only: another sent
    // since is still under way (and guards against leaving the profile).
    state.deciding.insert("req_b".into());
    state.busy.insert("req_b".into());
    update(
        &mut state,
        Action::DecisionFailed {
            request_id: "req_a".into(),
            operation: Operation::Reviewing,
            failure: Failure::new(FailureKind::Unreachable, "connection refused or failed"),
        },
    );
    assert_eq!(state.deciding.iter().collect::<Vec<_>>(), ["req_b"]);
    assert_eq!(
        state.busy.iter().collect::<Vec<_>>(),
        ["req_b", "switching profile"],
        "{:?}",
        state.busy
    );
}

/// A request the stream told of while a load ran, which the load's reads
/// predate, stays in the queue when the load is answered (its bell rang);
/// one the next load, with nothing heard meanwhile, does not have is gone.
#[test]
fn a_request_heard_while_loading_is_not_dropped_by_the_loads_answer() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.me.as_mut().unwrap().approver_for = vec!["db".into()];
    let snapshot = |state: &State| Snapshot {
        now,
        me: state.me.clone().unwrap(),
        roles: state.roles.clone(),
        requests: vec![],
        grants: vec![],
        queue: vec![],
        break_glass: vec![],
        workload_grants: vec![],
    };
    assert_eq!(update(&mut state, Action::ClockJumped), [Command::LoadAll]);
    let filed = request("req_new", "db", "carol", now + TimeDelta::hours(1));
    update(
        &mut state,
        Action::Live(Box::new(LiveEvent::Request { request: filed })),
    );
    let queued =
        |state: &State| -> Vec<String> { state.queue.iter().map(|r| r.id.clone()).collect() };
    assert_eq!(queued(&state), ["req_new"]);
    let loaded = snapshot(&state);
    update(&mut state, Action::Loaded(Box::new(loaded)));
    assert_eq!(
        queued(&state),
        ["req_new"],
        "dropped by an answer older than it"
    );

    assert_eq!(update(&mut state, Action::ClockJumped), [Command::LoadAll]);
    let loaded = snapshot(&state);
    update(&mut state, Action::Loaded(Box::new(loaded)));
    assert!(queued(&state).is_empty(), "{:?}", queued(&state));
}

/// A break-glass request and a pending one of the same person and role
/// share one history: loaded once, it is shown for both, not left
/// "loading…" on the second.
#[test]
fn a_history_is_shown_for_every_request_it_is_about() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    let pending = request("req_1", "db", "carol", now);
    let mut glass = request("req_2", "db", "carol", now);
    glass.state = RequestState::Active;
    glass.break_glass = true;
    state.queue = vec![pending];
    state.break_glass = vec![glass];
    update(
        &mut state,
        Action::HistoryLoaded(hoist_api::RequestHistory {
            requester: "carol".into(),
            role: "db".into(),
            recent: vec![],
        }),
    );
    assert!(state.histories.contains_key("req_1"));
    assert!(state.histories.contains_key("req_2"));
}

/// A reason typed with a decision that did not reach the broker comes back
/// in its prompt, with why, to send again; one that did is not kept.
#[test]
fn a_decision_that_fails_gives_back_its_reason() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.queue = vec![request("req_1", "db", "carol", now)];
    let deny = || Modal::Input {
        prompt: crate::app::state::Prompt::Deny {
            request_id: "req_1".into(),
        },
        title: "Deny".into(),
        text: "not during the freeze".into(),
        required: true,
        error: None,
    };
    state.modal = Some(deny());
    let sent = update(&mut state, Action::Submit);
    assert!(
        sent.iter().any(|c| matches!(c, Command::Review { .. })),
        "{sent:?}"
    );
    assert_eq!(state.modal, None);
    update(
        &mut state,
        Action::DecisionFailed {
            request_id: "req_1".into(),
            operation: Operation::Reviewing,
            failure: Failure::new(FailureKind::Unreachable, "connection refused"),
        },
    );
    match &state.modal {
        Some(Modal::Input { text, error, .. }) => {
            assert_eq!(text, "not during the freeze");
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("Enter sends it again")),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Sent again and answered: nothing is kept to give back.
    update(&mut state, Action::Submit);
    let mut denied = request("req_1", "db", "carol", now);
    denied.state = RequestState::Denied;
    update(&mut state, Action::RequestChanged(Box::new(denied)));
    assert_eq!(state.sent_reason, None);
}

/// `y` on the list fetches afresh, which at a PostgreSQL target sets a new
/// password: it asks first, and copies only on yes. `s` too: a password in
/// use elsewhere (a `hoist exec`) would stop working for new logins.
#[test]
fn copying_a_postgres_credential_from_the_list_asks_first() {
    let now = at("2026-06-01T12:00:00Z");
    let mut state = alice(now);
    state.screen = Screen::Grants;
    let db = live_db(now);
    assert_eq!(db.access.as_ref().unwrap().kind, "postgres");
    update(&mut state, grant_event(db));
    assert_eq!(update(&mut state, Action::CopyCredential), []);
    match &state.modal {
        Some(Modal::Confirm { prompt, .. }) => {
            assert!(prompt.contains("new password"), "{prompt}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        update(&mut state, Action::Confirm),
        [Command::Credential {
            grant_id: "g1".into(),
            copy: true
        }]
    );
    assert!(state.busy.contains("g1"));
    state.busy.clear();
    assert_eq!(update(&mut state, Action::ShowCredential), []);
    match &state.modal {
        Some(Modal::Confirm { prompt, .. }) => {
            assert!(prompt.starts_with("Show a new password"), "{prompt}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(update(&mut state, Action::Decline), []);
    assert!(!state.busy.contains("g1"), "nothing fetched on no");
    update(&mut state, Action::ShowCredential);
    assert_eq!(
        update(&mut state, Action::Confirm),
        [Command::Credential {
            grant_id: "g1".into(),
            copy: false
        }]
    );
}
