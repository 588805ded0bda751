//! hoist's Entra PIM backend against a stateful fake of Microsoft Graph on
//! loopback (`tests/support/graph.rs`), signed in through a real OpenID
//! provider shaped like an Entra tenant's authority (`tests/oidc-provider`
//! with `--mount` and `--graph`): the fake checks every token's signature
//! against that provider's keys. Contract tests: no Entra tenant is
//! reachable from here, and nothing here claims to be one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/graph.rs"]
mod graph;
#[path = "../support/oidc.rs"]
mod oidc;
#[path = "../support/tenant.rs"]
mod tenant;

mod commands;
mod openapi;
mod record;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hoist::backend::{self, BackendError, Hooks};
use hoist_api::{Decision, ErrorCode, GrantState, LiveEvent, RequestState};
pub use tenant::Tenant;

fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

pub fn role_id(role: &str) -> String {
    format!("dir:{role}")
}

#[test]
fn eligible_roles_come_with_their_policy_terms() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let me = alice.me().await.unwrap();
        assert_eq!(me.user, "alice@contoso.example");
        assert_eq!(me.display_name, "Alice");
        let roles = alice.roles().await.unwrap();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Exchange Administrator",
                "prod-dba (member)",
                "Security Administrator",
                "User Administrator"
            ]
        );
        let user_admin = roles
            .iter()
            .find(|r| r.name == "User Administrator")
            .unwrap();
        assert_eq!(user_admin.id, role_id(graph::USER_ADMIN));
        assert_eq!(user_admin.max_duration_secs, 7200);
        assert_eq!(user_admin.default_duration_secs, 3600);
        assert_eq!(user_admin.min_justification, 1);
        assert_eq!(user_admin.approval.approvals, 0);
        let exchange = roles
            .iter()
            .find(|r| r.name == "Exchange Administrator")
            .unwrap();
        assert!(exchange.ticket.required);
        assert_eq!(exchange.approval.approvals, 1);
        assert_eq!(exchange.approval.approvers, ["Bob", "Dave"]);
        let group = roles
            .iter()
            .find(|r| r.name == "prod-dba (member)")
            .unwrap();
        assert_eq!(group.id, format!("grp:{}:member", graph::PROD_GROUP));
        assert_eq!(group.max_duration_secs, 3600);
        assert!(group.scope.contains("PIM for Groups"), "{}", group.scope);
        let security = roles
            .iter()
            .find(|r| r.name == "Security Administrator")
            .unwrap();
        assert!(
            security.description.contains("authentication context"),
            "{}",
            security.description
        );
        // What Entra cannot do is said, not attempted.
        let caps = alice.capabilities();
        assert!(caps.review && caps.revoke && caps.cancel);
        assert!(
            !caps.credential && !caps.audit && !caps.incidents && !caps.claim && !caps.acknowledge
        );
        assert_eq!(
            alice.audit(0, 10).await.unwrap_err(),
            BackendError::Unsupported("the audit log")
        );
        let with_incident = hoist_api::CreateRequest {
            incident: Some("INC-1".into()),
            ..body(&role_id(graph::USER_ADMIN), None, None)
        };
        assert_eq!(
            alice.file(&with_incident, "k").await.unwrap_err(),
            BackendError::Unsupported("incident references")
        );
    });
}

pub fn body(role: &str, ticket: Option<&str>, secs: Option<u64>) -> hoist_api::CreateRequest {
    hoist_api::CreateRequest {
        role: role.to_string(),
        justification: "Reset a locked-out account for the helpdesk".into(),
        ticket: ticket.map(str::to_string),
        incident: None,
        duration_secs: secs,
        starts_at: None,
        break_glass: false,
    }
}

/// A role held at an administrative unit's scope has the terms of the
/// role's one policy, which Entra keeps at the tenant.
#[test]
fn a_role_held_at_an_administrative_unit_has_its_policy_terms() {
    run(async {
        let tenant = Tenant::start().await;
        tenant.graph.make_eligible(
            graph::ALICE,
            graph::EXCHANGE_ADMIN,
            "/administrativeUnits/au-emea",
        );
        let alice = tenant.backend("alice").await;
        let roles = alice.roles().await.unwrap();
        let scoped = roles
            .iter()
            .find(|r| r.scope.contains("au-emea"))
            .expect("the role held at the administrative unit");
        assert!(scoped.ticket.required, "{scoped:?}");
        assert_eq!(scoped.approval.approvals, 1);
        assert_eq!(scoped.approval.approvers, ["Bob", "Dave"]);
    });
}

/// Reading a role's PIM policy takes a directory reader's role many
/// engineers lack: without it the roles still show, saying their rules were
/// not read, and an activation for a duration given still goes through.
#[test]
fn roles_show_and_activate_when_their_policy_cannot_be_read() {
    run(async {
        let tenant = Tenant::start().await;
        tenant.graph.refuse_policy_reads();
        let alice = tenant.backend("alice").await;
        let roles = alice.roles().await.expect("roles without their policy");
        assert_eq!(roles.len(), 4);
        for role in &roles {
            assert!(
                role.description.contains("could not be read"),
                "{}: {}",
                role.name,
                role.description
            );
            // Nothing the tenant may allow is refused here: up to PIM's
            // own ceiling, and Entra says no to more than its policy does.
            assert_eq!(role.max_duration_secs, 24 * 3600, "{}", role.name);
        }
        let filed = alice
            .file(
                &hoist_api::CreateRequest {
                    role: role_id(graph::USER_ADMIN),
                    justification: "rotate the break-glass account's password".into(),
                    ticket: None,
                    incident: None,
                    duration_secs: Some(1800),
                    starts_at: None,
                    break_glass: false,
                },
                "key-1",
            )
            .await
            .expect("activated without reading the policy");
        assert_eq!(filed.duration_secs, 1800);
    });
}

/// Graph throttling a call (429, `Retry-After`) is waited out and the call
/// made again; throttling that lasts ends the call as something to retry
/// later, saying so.
#[test]
fn throttled_calls_wait_as_graph_asks_then_try_again() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        tenant.graph.throttle(2);
        let roles = alice.roles().await.expect("waited out the throttling");
        assert_eq!(roles.len(), 4);
        let throttled = tenant
            .graph
            .received()
            .iter()
            .filter(|r| r.status == 429)
            .count();
        assert_eq!(throttled, 2);

        tenant.graph.throttle(100);
        let refused = alice.roles().await.unwrap_err();
        assert!(refused.is_transient(), "{refused:?}");
        assert!(refused.to_string().contains("throttling"), "{refused}");
    });
}

/// Graph asking for a wait longer than a call waits by itself: the call
/// ends as something to retry later, and every call until the wait is
/// over is answered here, without reaching Graph, which would throttle
/// longer for each call it is sent meanwhile.
#[test]
fn a_long_retry_after_is_kept_by_every_call() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        tenant.graph.throttle_for(1, 30);
        let refused = alice.roles().await.unwrap_err();
        assert!(refused.is_transient(), "{refused:?}");
        // Answered here, not by Graph (whose 429 says something else).
        let again = alice.roles().await.unwrap_err();
        assert!(again.is_transient(), "{again:?}");
        assert!(again.to_string().contains("Graph asked to wait"), "{again}");
    });
}

#[test]
fn an_activation_propagates_before_it_is_a_grant_then_deactivates() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let filed = alice
            .file(
                &body(&role_id(graph::USER_ADMIN), Some("CHG-1024"), Some(1800)),
                "k1",
            )
            .await
            .unwrap();
        // Provisioned, but no active instance yet: approved, not active.
        assert_eq!(filed.state, RequestState::Approved);
        assert_eq!(filed.grant_id, None);
        assert_eq!(filed.duration_secs, 1800);
        assert_eq!(filed.requester, "alice@contoso.example");
        assert!(alice.grants(false).await.unwrap().is_empty());
        assert_eq!(
            alice.request(&filed.id).await.unwrap().state,
            RequestState::Approved
        );
        // Not a request to cancel any more, and said what to do instead.
        let err = alice.cancel(&filed.id, None).await.unwrap_err();
        assert!(err.to_string().contains("deactivate that"), "{err}");

        tenant.graph.propagate();
        let active = alice.request(&filed.id).await.unwrap();
        assert_eq!(active.state, RequestState::Active);
        let grants = alice.grants(false).await.unwrap();
        assert_eq!(grants.len(), 1);
        let grant = &grants[0];
        assert_eq!(active.grant_id.as_deref(), Some(grant.id.as_str()));
        assert_eq!(grant.role, role_id(graph::USER_ADMIN));
        assert_eq!(grant.role_name, "User Administrator");
        assert_eq!(grant.ticket.as_deref(), Some("CHG-1024"));
        // The ticket went with the system it is from, as the profile names it.
        let posted = tenant
            .graph
            .received()
            .into_iter()
            .find(|r| r.method == "POST")
            .and_then(|r| r.body)
            .unwrap();
        assert_eq!(
            posted["ticketInfo"],
            serde_json::json!({ "ticketNumber": "CHG-1024", "ticketSystem": "ServiceNow" })
        );
        assert_eq!((grant.expires_at - grant.starts_at).num_seconds(), 1800);
        assert_eq!(grant.request_id, filed.id);

        let ended = alice.revoke(&grant.id, Some("done".into())).await.unwrap();
        assert_eq!(ended.state, GrantState::Revoked);
        assert_eq!(ended.revoked_by.as_deref(), Some("alice@contoso.example"));
        assert!(alice.grants(false).await.unwrap().is_empty());
        let statuses = tenant.graph.statuses();
        assert_eq!(
            statuses.last().unwrap(),
            &("selfDeactivate".to_string(), "Revoked".to_string())
        );
        let after = alice.request(&filed.id).await.unwrap();
        assert_eq!(after.state, RequestState::Revoked);
    });
}

/// A screen's load lists requests and grants at once: one reading of
/// Graph serves both (Graph throttles per caller). A write of this
/// client's is never hidden by a reading made before it.
#[test]
fn requests_and_grants_listed_together_read_graph_once() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let filed = alice
            .file(&body(&role_id(graph::USER_ADMIN), None, None), "k1")
            .await
            .unwrap();
        tenant.graph.propagate();
        let listings = || {
            tenant
                .graph
                .received()
                .iter()
                .filter(|r| {
                    r.method == "GET"
                        && r.uri
                            .contains("/roleAssignmentScheduleRequests/filterByCurrentUser")
                })
                .count()
        };
        let before = listings();
        let (requests, grants) =
            futures::try_join!(alice.requests(500), alice.grants(true)).unwrap();
        assert_eq!(listings() - before, 1, "one listing for both");
        assert_eq!(requests[0].id, filed.id);
        assert_eq!(requests[0].state, RequestState::Active);
        assert_eq!(grants.len(), 1);

        alice.revoke(&grants[0].id, None).await.unwrap();
        let (requests, grants) =
            futures::try_join!(alice.requests(500), alice.grants(true)).unwrap();
        assert!(grants.is_empty(), "{grants:?}");
        assert_eq!(requests[0].state, RequestState::Revoked);
        // Asked again later, Graph is read again.
        let before = listings();
        alice.grants(true).await.unwrap();
        assert_eq!(listings() - before, 1);
    });
}

#[test]
fn group_membership_activates_like_a_role() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let role = format!("grp:{}:member", graph::PROD_GROUP);
        let filed = alice.file(&body(&role, None, None), "k").await.unwrap();
        assert_eq!(filed.state, RequestState::Approved);
        assert_eq!(filed.duration_secs, 3600);
        assert_eq!(filed.role_name, "prod-dba (member)");
        tenant.graph.propagate();
        let grants = alice.grants(false).await.unwrap();
        assert_eq!(grants.len(), 1);
        assert!(grants[0].id.starts_with("grp:"), "{}", grants[0].id);
        alice.revoke(&grants[0].id, None).await.unwrap();
        assert!(alice.grants(false).await.unwrap().is_empty());
    });
}

#[test]
fn policy_failures_become_clear_messages() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let no_ticket = alice
            .file(&body(&role_id(graph::EXCHANGE_ADMIN), None, None), "k")
            .await
            .unwrap_err();
        assert_eq!(no_ticket.code(), Some(ErrorCode::TicketRequired));
        assert!(
            no_ticket.to_string().contains("ticket number"),
            "{no_ticket}"
        );
        let too_long = alice
            .file(
                &body(&role_id(graph::USER_ADMIN), None, Some(3 * 3600)),
                "k",
            )
            .await
            .unwrap_err();
        assert_eq!(too_long.code(), Some(ErrorCode::DurationTooLong));
        assert!(too_long.to_string().contains("longer than"), "{too_long}");
        let unknown = alice
            .file(&body("prod-db-admin", None, None), "k")
            .await
            .unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("no eligible role `prod-db-admin`"),
            "{unknown}"
        );
    });
}

#[test]
fn already_requested_and_already_active_are_answered_with_what_exists() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        // By name, as people type it at the command line.
        let first = alice
            .file(&body("User Administrator", None, None), "k")
            .await
            .unwrap();
        let again = alice
            .file(&body("user administrator", None, None), "k")
            .await
            .unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.state, RequestState::Approved);
        tenant.graph.propagate();
        let active = alice
            .file(&body(&role_id(graph::USER_ADMIN), None, None), "k")
            .await
            .unwrap();
        assert_eq!(active.state, RequestState::Active);
        assert_eq!(active.id, first.id);
        // Graph answered RoleAssignmentExists, and hoist did not file a third.
        let activations = tenant.graph.made("selfActivate");
        assert_eq!(activations, 1);
    });
}

/// User Administrator activated by `who` (no approval) and active.
async fn user_admin_held(tenant: &Tenant, who: &Arc<dyn backend::Backend>) -> hoist_api::Grant {
    who.file(&body(&role_id(graph::USER_ADMIN), None, None), "k")
        .await
        .unwrap();
    tenant.graph.propagate();
    who.grants(false).await.unwrap().remove(0)
}

/// An activation Graph made but cannot read back yet (its replicas lag) is
/// reported as filed, from the POST's answer, not as a failure.
#[test]
fn an_activation_not_yet_readable_is_reported_as_filed() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        tenant.graph.lag_reads(1);
        let role = role_id(graph::USER_ADMIN);
        let filed = alice.file(&body(&role, None, None), "k").await.unwrap();
        assert_eq!(filed.role, role);
        assert_eq!(filed.requester, "alice@contoso.example");
        assert!(
            matches!(filed.state, RequestState::Approved | RequestState::Active),
            "{:?}",
            filed.state
        );
        // Read again once Graph sees it: the same request.
        assert_eq!(alice.request(&filed.id).await.unwrap().id, filed.id);
    });
}

/// An activation Graph made whose read-back fails (503 on every retry of
/// the read) is reported as filed, from the POST's answer, not as a
/// failure: the activation exists, and filing again would be refused.
#[test]
fn an_activation_whose_read_back_fails_is_reported_as_filed() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        tenant.graph.fail_reads(10);
        let role = role_id(graph::USER_ADMIN);
        let filed = alice.file(&body(&role, None, None), "k").await.unwrap();
        assert_eq!(filed.role, role);
        assert_eq!(tenant.graph.made("selfActivate"), 1);
        tenant.graph.fail_reads(0);
        assert_eq!(alice.request(&filed.id).await.unwrap().id, filed.id);
    });
}

/// A deactivation Graph carried out but whose answer was lost is retried,
/// as the TUI retries a revocation until confirmed: the retry finds the
/// role no longer active and confirms the revocation, not "no such grant".
#[test]
fn a_deactivation_whose_answer_was_lost_is_confirmed_on_retry() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let grant = user_admin_held(&tenant, &alice).await;
        tenant.graph.lose_answers(1);
        let lost = alice.revoke(&grant.id, None).await.unwrap_err();
        assert!(lost.is_transient(), "{lost:?}");
        // Graph away: try again (exit 6), not another failure.
        assert_eq!(lost.code(), Some(ErrorCode::Unavailable), "{lost:?}");
        assert!(alice.grants(false).await.unwrap().is_empty());
        let ended = alice.revoke(&grant.id, None).await.unwrap();
        assert_eq!(ended.id, grant.id);
        assert_eq!(ended.state, GrantState::Revoked);
        // Sent once: the retry did not deactivate again.
        let deactivations = tenant.graph.made("selfDeactivate");
        assert_eq!(deactivations, 1);
        // A grant this client never deactivated is still unknown.
        let err = alice.revoke("dir:nothing", None).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err:?}");
    });
}

/// A deactivation Graph answers as failed is refused, never reported as a
/// revocation: the role is still active, and says so.
#[test]
fn a_deactivation_entra_answers_as_failed_is_not_a_revocation() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let grant = user_admin_held(&tenant, &alice).await;
        tenant
            .graph
            .answer_deactivations("FailedAsResourceIsLocked");
        let err = alice.revoke(&grant.id, None).await.unwrap_err();
        assert!(!err.is_transient(), "{err:?}");
        assert_eq!(err.code(), Some(ErrorCode::InvalidState), "{err:?}");
        assert!(err.to_string().contains("still active"), "{err}");
        assert_eq!(alice.grants(false).await.unwrap().len(), 1);
    });
}

#[test]
fn deactivating_within_five_minutes_is_explained() {
    run(async {
        let tenant = Tenant::start().await;
        tenant.graph.set_min_active(300);
        let alice = tenant.backend("alice").await;
        let grant = user_admin_held(&tenant, &alice).await;
        let err = alice.revoke(&grant.id, None).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidState));
        assert!(err.to_string().contains("5 minutes"), "{err}");
        assert_eq!(alice.grants(false).await.unwrap().len(), 1);
    });
}

#[test]
fn an_approver_decides_and_a_second_decision_is_refused() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let filed = alice
            .file(
                &body(&role_id(graph::EXCHANGE_ADMIN), Some("CHG-2291"), None),
                "k",
            )
            .await
            .unwrap();
        assert_eq!(filed.state, RequestState::Pending);
        assert_eq!(filed.approvals_required, 1);
        assert!(filed.lapses_at.is_some());
        let bob = tenant.backend("bob").await;
        let queue = bob.review_queue().await.unwrap();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].id, filed.id);
        assert_eq!(queue[0].requester, "alice@contoso.example");
        assert_eq!(queue[0].role_name, "Exchange Administrator");
        assert!(alice.review_queue().await.unwrap().is_empty());

        let decided = bob
            .review(&filed.id, Decision::Approve, Some("ok for CHG-2291".into()))
            .await
            .unwrap();
        assert_eq!(decided.state, RequestState::Approved);
        // The requester is named as in the queue, not by another name.
        assert_eq!(decided.requester, "alice@contoso.example");
        assert!(bob.review_queue().await.unwrap().is_empty());

        let dave = tenant.backend("dave").await;
        let late = dave
            .review(&filed.id, Decision::Deny, Some("no".into()))
            .await
            .unwrap_err();
        assert_eq!(late.code(), Some(ErrorCode::AlreadyReviewed));
        assert!(
            late.to_string().contains("another approver decided"),
            "{late}"
        );

        tenant.graph.propagate();
        assert_eq!(
            alice.request(&filed.id).await.unwrap().state,
            RequestState::Active
        );
    });
}

#[test]
fn a_denial_reaches_the_requester() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let filed = alice
            .file(
                &body(&role_id(graph::EXCHANGE_ADMIN), Some("CHG-1"), None),
                "k",
            )
            .await
            .unwrap();
        let dave = tenant.backend("dave").await;
        dave.review(&filed.id, Decision::Deny, Some("not this week".into()))
            .await
            .unwrap();
        assert_eq!(
            alice.request(&filed.id).await.unwrap().state,
            RequestState::Denied
        );
        // A pending request can be withdrawn; a decided one cannot.
        let err = alice.cancel(&filed.id, None).await.unwrap_err();
        assert!(err.to_string().contains("pending"), "{err}");
    });
}

#[test]
fn a_pending_request_can_be_cancelled() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let filed = alice
            .file(
                &body(&role_id(graph::EXCHANGE_ADMIN), Some("CHG-1"), None),
                "k",
            )
            .await
            .unwrap();
        let cancelled = alice.cancel(&filed.id, None).await.unwrap();
        assert_eq!(cancelled.state, RequestState::Cancelled);
    });
}

/// alice signed in (her session stored under her name), and her backend
/// opened with a prompt for the stronger sign-in a role asks for, which
/// `approver` (a login; alice herself, or another account the browser
/// holds) approves when told to.
async fn alice_stepping_up(
    tenant: &Tenant,
    approver: &'static str,
) -> (
    hoist::config::Target,
    hoist::auth::secrets::Session,
    Arc<dyn hoist::backend::Backend>,
    tokio::task::JoinHandle<()>,
) {
    let mut target = tenant.target();
    target.user = Some("alice@contoso.example".into());
    let session = tenant.sign_in("alice", None).await;
    let broker = target.broker.clone();
    let stored = session.clone();
    tokio::task::spawn_blocking(move || {
        hoist::auth::secrets::save(&broker, "alice@contoso.example", &stored)
    })
    .await
    .unwrap()
    .unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let prompt: hoist::auth::entra::Prompt = Arc::new(move |prompt| {
        let _ = sender.send(prompt.verification_uri_complete.clone().unwrap());
    });
    let provider = Arc::clone(&tenant.provider);
    let approving = tokio::spawn(async move {
        let url = receiver.recv().await.unwrap();
        provider.approve_device(&url, approver).await;
    });
    let alice = hoist::auth::session::open_with(&target, Some(prompt))
        .await
        .unwrap();
    (target, session, alice, approving)
}

/// alice's session as the keyring holds it now.
async fn alices_stored_session(target: &hoist::config::Target) -> hoist::auth::secrets::Session {
    let broker = target.broker.clone();
    tokio::task::spawn_blocking(move || {
        hoist::auth::secrets::load(&broker, "alice@contoso.example")
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap()
}

#[test]
fn a_claims_challenge_signs_in_again_and_retries() {
    hoist::auth::secrets::prepare();
    let _ = hoist::auth::secrets::init_with(Some(hoist::auth::secrets::SessionStore::Keyutils));
    run(async {
        let tenant = Tenant::start().await;
        let (target, session, alice, approver) = alice_stepping_up(&tenant, "alice").await;
        let filed = alice
            .file(&body(&role_id(graph::SECURITY_ADMIN), None, None), "k")
            .await
            .unwrap();
        approver.await.unwrap();
        assert_eq!(filed.state, RequestState::Approved);
        // The first attempt was refused with the claims, the second carried them.
        let posts: Vec<_> = tenant
            .graph
            .received()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(posts.len(), 2);
        // The stronger session is the one kept.
        let kept = alices_stored_session(&target).await;
        let claims = oidc::jwt_claims(&kept.access_token);
        assert_eq!(claims["acrs"], serde_json::json!(["c1"]));
        assert_ne!(kept.access_token, session.access_token);
    });
}

/// The stronger sign-in a role asks for, made as another account (the one
/// the browser holds): refused, naming it, and the person's own session
/// stays stored.
#[test]
fn a_stronger_sign_in_as_someone_else_is_refused_and_kept_nowhere() {
    hoist::auth::secrets::prepare();
    let _ = hoist::auth::secrets::init_with(Some(hoist::auth::secrets::SessionStore::Keyutils));
    run(async {
        let tenant = Tenant::start().await;
        let (target, session, alice, approver) = alice_stepping_up(&tenant, "bob").await;
        let refused = alice
            .file(&body(&role_id(graph::SECURITY_ADMIN), None, None), "k")
            .await
            .unwrap_err();
        approver.await.unwrap();
        let text = refused.to_string();
        assert!(text.contains("not alice@contoso.example"), "{text}");
        // The session signed in still works: this is no expired session.
        assert!(
            !matches!(refused, hoist::backend::BackendError::Unauthenticated(_)),
            "{refused:?}"
        );
        let kept = alices_stored_session(&target).await;
        assert_eq!(kept.access_token, session.access_token);
    });
}

/// The stronger sign-in a role asks for, with the identity provider away:
/// unavailable, which scripts try again later (exit 6), not a refusal; the
/// person's session stays stored.
#[test]
fn a_stronger_sign_in_with_the_provider_away_is_unavailable_not_refused() {
    hoist::auth::secrets::prepare();
    let _ = hoist::auth::secrets::init_with(Some(hoist::auth::secrets::SessionStore::Keyutils));
    run(async {
        let tenant = Tenant::start().await;
        let (target, session, alice, approver) = alice_stepping_up(&tenant, "alice").await;
        tenant.provider.device_outage(503).await;
        let failed = alice
            .file(&body(&role_id(graph::SECURITY_ADMIN), None, None), "k")
            .await
            .unwrap_err();
        // No device code was shown: there is nothing to approve.
        approver.abort();
        let text = failed.to_string();
        // Graph refused the filing: nothing to try again at once (a
        // command retrying a lost answer would ask for sign-in after
        // sign-in), but exit 6 all the same.
        assert!(
            matches!(
                failed,
                hoist::backend::BackendError::Refused {
                    code: hoist_api::ErrorCode::Unavailable,
                    ..
                }
            ),
            "{failed:?}"
        );
        assert!(!failed.is_transient(), "{failed:?}");
        assert!(text.contains("signing in again for the role"), "{text}");
        assert!(text.contains("nothing was filed"), "{text}");
        let kept = alices_stored_session(&target).await;
        assert_eq!(kept.access_token, session.access_token);
    });
}

#[test]
fn changes_arrive_as_live_events() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = tenant.backend("alice").await;
        let mut events = alice.events().await.unwrap();
        let hello = events.next().await.unwrap().unwrap();
        assert!(
            matches!(hello, LiveEvent::Hello { ref user, .. } if user == "alice@contoso.example")
        );
        let filed = alice
            .file(&body(&role_id(graph::USER_ADMIN), None, None), "k")
            .await
            .unwrap();
        // The next poll sees the request, propagating.
        let seen = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let LiveEvent::Request { request } = seen else {
            panic!("{seen:?}");
        };
        assert_eq!(
            (request.id.as_str(), request.state),
            (filed.id.as_str(), RequestState::Approved)
        );
        tenant.graph.propagate();
        let mut active = None;
        let mut granted = None;
        while active.is_none() || granted.is_none() {
            match tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                LiveEvent::Request { request } => active = Some(request.state),
                LiveEvent::Grant { grant } => granted = Some(grant.state),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(active, Some(RequestState::Active));
        assert_eq!(granted, Some(GrantState::Active));
    });
}

#[test]
fn tokens_the_provider_did_not_sign_are_refused() {
    run(async {
        let tenant = Tenant::start().await;
        let forged =
            backend::connect_to(&tenant.target(), "e30.e30.c2ln", Hooks::default()).unwrap();
        let err = forged.me().await.unwrap_err();
        assert!(matches!(err, BackendError::Unauthenticated(_)), "{err:?}");
    });
}
