//! Grants: starting one, reading them, revoking, and extending without a gap.

use std::sync::Arc;

use std::time::Duration;

use hoist_api::{
    AccessRequest, AccessState, AuditKind, ErrorCode, Grant, GrantState, RequestKind, RequestState,
    TargetAccess,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::limits::Act;
use super::{
    Broker, Change, HolderAct, SYSTEM_ACTOR, Work, delta, event, grant_event, new_id, now,
    settle_grant, settle_request, std_delta, window_end,
};
use crate::domain;
use crate::error::{Error, Result};
use crate::store::{GrantQuery, RequestQuery};

/// The active grant of a request's role its requester already holds, if
/// any: read by [`Work::holding`] for [`Work::activate`].
pub(super) struct Holding(Option<String>);

impl Work<'_> {
    /// What [`Work::activate`] reads: the active grant of the request's
    /// role that its requester holds, if any. A workload's tasks each have
    /// a grant of their own, so it holds none this way. Read it before the
    /// transaction's first write: an optimistic transaction then takes the
    /// lock only to commit, rather than for a round trip to this read.
    pub(super) fn holding(&self, request: &AccessRequest) -> Result<Holding> {
        let held = match hoist_api::is_workload(&request.requester) {
            true => Vec::new(),
            false => self.tx.grants(&GrantQuery::held_for(request))?,
        };
        self.holding_of(request, held)
    }

    /// [`Work::holding`] from `held`, the grants that
    /// [`Tx::request_with_holding`](crate::store::Tx::request_with_holding)
    /// read with the request in this transaction.
    pub(super) fn holding_of(&self, request: &AccessRequest, held: Vec<Grant>) -> Result<Holding> {
        self.recall(&request.requester)?;
        if hoist_api::is_workload(&request.requester) {
            return Ok(Holding(None));
        }
        Ok(Holding(held.into_iter().find_map(|mut grant| {
            settle_grant(&mut grant, self.now);
            (grant.state == GrantState::Active).then_some(grant.id)
        })))
    }

    /// Starts the grant for an approved access request if its requester
    /// may still have it, and cancels the request if not. A scheduled
    /// request's grant ends when its window does, however late it starts
    /// (the broker may have been down); one whose window has passed ends
    /// without a grant. `holding` is [`Work::holding`] of this request, in
    /// this transaction.
    pub(super) fn activate(
        &mut self,
        request: &mut AccessRequest,
        actor: &str,
        holding: Holding,
    ) -> Result<()> {
        if let Some(reason) = self.ineligible(request)? {
            return self.cancel(request, reason);
        }
        if let Holding(Some(held)) = holding {
            // One person, one grant of a role at a time, as filing holds:
            // a request approved after its requester broke glass for the
            // same role gives nothing more; the grant they hold stands.
            let reason = format!(
                "{} already holds role `{}` (grant {held}); extend that grant for more time",
                request.requester, request.role
            );
            return self.cancel(request, reason);
        }
        let mut ends = window_end(request).unwrap_or(self.now + delta(request.duration_secs));
        // No longer than the role allows now: a policy may have shortened
        // it while the request waited.
        if let Some(role) = self.policy.role(&request.role) {
            ends = ends.min(self.now + delta(role.max_duration.as_secs()));
        }
        // A workload's, no longer than its rule allows now, likewise.
        if let Some(allowed) = self
            .policy
            .workload_rule_of(&request.requester)
            .and_then(|rule| rule.role(&request.role))
        {
            ends = ends.min(self.now + delta(allowed.max_ttl.as_secs()));
        }
        if ends <= self.now {
            request.state = RequestState::Expired;
            request.reason = Some(format!(
                "its scheduled window ended at {} before it could start",
                ends.to_rfc3339()
            ));
            request.lapses_at = None;
            self.save_request(request)?;
            let mut expired = event(AuditKind::Expired, SYSTEM_ACTOR, self.now, request);
            expired.reason = request.reason.clone();
            expired.details = json!({ "starts_at": request.starts_at, "expires_at": ends });
            self.audit(expired)?;
            return Ok(());
        }
        let grant = Grant {
            id: new_id("gr"),
            request_id: request.id.clone(),
            role: request.role.clone(),
            role_name: request.role_name.clone(),
            holder: request.requester.clone(),
            starts_at: self.now,
            expires_at: ends,
            state: GrantState::Active,
            ended_at: None,
            revoked_by: None,
            revoke_reason: None,
            break_glass: request.break_glass,
            ticket: request.ticket.clone(),
            incident: request.incident.clone(),
            justification: request.justification.clone(),
            // Its end is fixed now; however long the target takes, the
            // grant ends then.
            access: self
                .policy
                .role(&request.role)
                .and_then(|role| role.access.as_ref())
                .map(|access| TargetAccess {
                    target: access.target.clone(),
                    kind: access.kind.to_string(),
                    state: AccessState::Provisioning,
                    reason: None,
                    attempts: 0,
                    next_attempt_at: None,
                    updated_at: self.now,
                    live_until: None,
                }),
        };
        self.tx.insert_grant(&grant)?;
        self.queue_first_effect(&grant)?;
        request.state = RequestState::Active;
        request.grant_id = Some(grant.id.clone());
        request.lapses_at = None;
        self.save_request(request)?;
        let mut activated = event(AuditKind::Activated, actor, self.now, request);
        activated.details = json!({
            "starts_at": grant.starts_at,
            "expires_at": grant.expires_at,
            "duration_secs": request.duration_secs,
        });
        self.audit(activated)?;
        self.changes.push(Change::Grant(grant));
        Ok(())
    }

    /// What [`Work::extend`] reads: the grant an extension request would
    /// extend. Read it before the transaction's first write, as
    /// [`Work::holding`] is.
    pub(super) fn extending(&self, request: &AccessRequest) -> Result<Grant> {
        let grant_id = request.grant_id.clone().unwrap_or_default();
        self.tx
            .grant(&grant_id)?
            .ok_or_else(|| Error::not_found("grant", &grant_id))
    }

    /// Moves an active grant's end for an approved extension; never earlier,
    /// and never more than the role's maximum from now. `grant` is
    /// [`Work::extending`] of this request, in this transaction.
    pub(super) fn extend(
        &mut self,
        request: &mut AccessRequest,
        max: Duration,
        actor: &str,
        mut grant: Grant,
    ) -> Result<()> {
        if let Some(reason) = self.ineligible(request)? {
            return self.cancel(request, reason);
        }
        // A break-glass grant stands on the right to break glass (the
        // extension itself is filed as a plain request): held still?
        let policy = &self.policy;
        if grant.break_glass
            && !policy
                .role(&request.role)
                .is_some_and(|role| policy.may_hold(&request.requester, role, true))
        {
            let reason = format!(
                "{} may no longer break glass for role `{}`, on which grant {} stands",
                request.requester, request.role, grant.id
            );
            return self.cancel(request, reason);
        }
        settle_grant(&mut grant, self.now);
        self.relies_on_grant(&grant);
        if grant.state != GrantState::Active {
            request.state = RequestState::Cancelled;
            request.reason = Some(format!(
                "grant {} ended before the extension was approved",
                grant.id
            ));
            request.lapses_at = None;
            self.save_request(request)?;
            let mut cancelled = event(AuditKind::Cancelled, SYSTEM_ACTOR, self.now, request);
            cancelled.reason = request.reason.clone();
            self.audit(cancelled)?;
            return Ok(());
        }
        let previous = grant.expires_at;
        let ceiling = self.now + std_delta(max);
        grant.expires_at = previous.max((previous + delta(request.duration_secs)).min(ceiling));
        let moved = grant.expires_at > previous;
        // Nothing to add (the role's maximum was lowered, or time enough
        // was given meanwhile): not an extension, and not audited as one.
        if !moved {
            let reason = format!(
                "grant {} already ends at {}, as late as role `{}` allows from now",
                grant.id,
                previous.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                request.role
            );
            return self.cancel(request, reason);
        }
        // Live at its target until the end the target has, until it takes
        // the new one (`record_effect`).
        if let Some(access) = grant.access.as_mut()
            && access.state == AccessState::Live
            && moved
        {
            access.live_until = access.live_until.or(Some(previous));
        }
        // The target learns the new end (a PostgreSQL role's VALID UNTIL),
        // with the access the role gives now: an extension never prolongs
        // what a reload took out of the role.
        if moved && let Some(why) = self.provision_again(&grant)? {
            let reason = format!(
                "grant {} cannot be extended: {why}; request role `{}` again",
                grant.id, request.role
            );
            return self.cancel(request, reason);
        }
        self.save_grant(&grant)?;
        request.state = RequestState::Active;
        request.lapses_at = None;
        self.save_request(request)?;
        let mut extended = event(AuditKind::Extended, actor, self.now, request);
        extended.details =
            json!({ "previous_expires_at": previous, "expires_at": grant.expires_at });
        self.audit(extended)?;
        Ok(())
    }

    /// Ends a grant (expired or revoked) and everything hanging off it.
    pub(super) fn end_grant(
        &mut self,
        grant: &mut Grant,
        state: GrantState,
        actor: &str,
        reason: Option<String>,
    ) -> Result<()> {
        let ended_at = if state == GrantState::Expired {
            grant.expires_at.min(self.now)
        } else {
            self.now
        };
        grant.state = state;
        grant.ended_at = Some(ended_at);
        if state == GrantState::Revoked {
            grant.revoked_by = Some(actor.to_string());
            grant.revoke_reason = reason.clone();
        }
        // Ended in hoist at once; the removal at the target is in the
        // outbox, committed with this, and retried until confirmed.
        self.end_access(grant)?;
        self.save_grant(grant)?;
        let attached = self.tx.requests(&RequestQuery {
            grant_id: Some(grant.id.clone()),
            states: vec![RequestState::Active, RequestState::Pending],
            ..RequestQuery::default()
        })?;
        for mut request in attached {
            // An extension whose time for a decision is over has read as
            // timed out since; the reaper may not have recorded it yet.
            if request.state == RequestState::Pending
                && request.lapses_at.is_some_and(|at| at <= self.now)
            {
                self.time_out(&mut request)?;
            } else if request.state == RequestState::Pending {
                request.state = RequestState::Cancelled;
                request.reason = Some(format!("grant {} ended", grant.id));
                request.lapses_at = None;
                request.claim = None;
                self.save_request(&mut request)?;
                let mut cancelled = event(AuditKind::Cancelled, SYSTEM_ACTOR, self.now, &request);
                cancelled.reason = request.reason.clone();
                self.audit(cancelled)?;
            } else {
                request.state = match state {
                    GrantState::Revoked => RequestState::Revoked,
                    _ => RequestState::Expired,
                };
                request.reason = reason.clone().or(request.reason.take());
                self.save_request(&mut request)?;
            }
        }
        let kind = match state {
            GrantState::Revoked => AuditKind::Revoked,
            _ => AuditKind::Expired,
        };
        let mut ended = grant_event(kind, actor, self.now, grant);
        ended.reason = reason;
        ended.details = json!({ "expires_at": grant.expires_at, "ended_at": ended_at });
        self.audit(ended)?;
        Ok(())
    }
}

impl Broker {
    pub fn grants(&self, user: &str, include_ended: bool, limit: usize) -> Result<Vec<Grant>> {
        let tx = self.store.read()?;
        let now = now();
        let mut grants = tx.grants(&GrantQuery {
            holder: Some(user.to_string()),
            states: if include_ended {
                Vec::new()
            } else {
                vec![GrantState::Active]
            },
            // Settled below: one past its end is expired, though the
            // reaper may not have recorded it yet. Left out here, it does
            // not take a place in the page from one still active.
            ends_after: (!include_ended).then_some(now),
            limit: Some(limit),
            ..GrantQuery::default()
        })?;
        grants.iter_mut().for_each(|g| settle_grant(g, now));
        if !include_ended {
            grants.retain(|g| g.state == GrantState::Active);
        }
        Ok(grants)
    }

    /// Active grants held by workloads that `user` may see: on roles they
    /// approve, or every one for an auditor. Newest first.
    pub fn workload_grants(&self, user: &str, limit: usize) -> Result<Vec<Grant>> {
        let policy = self.policy();
        let tx = self.store.read()?;
        let now = now();
        let mut grants: Vec<Grant> = tx
            .grants(&GrantQuery {
                states: vec![GrantState::Active],
                ends_after: Some(now),
                ..GrantQuery::default()
            })?
            .into_iter()
            .filter(|g| hoist_api::is_workload(&g.holder) && self.visible_grant(&policy, user, g))
            .collect();
        grants.iter_mut().for_each(|g| settle_grant(g, now));
        grants.retain(|g| g.state == GrantState::Active);
        grants.truncate(limit);
        Ok(grants)
    }

    /// Everything under one incident reference the caller may see.
    pub fn incident(&self, user: &str, incident: &str) -> Result<hoist_api::IncidentView> {
        let policy = self.policy();
        let tx = self.store.read()?;
        let now = now();
        let mut requests: Vec<AccessRequest> = tx
            .requests(&RequestQuery {
                incident: Some(incident.to_string()),
                ..RequestQuery::default()
            })?
            .into_iter()
            .filter(|r| self.visible_request(&policy, user, r))
            .collect();
        self.settle_views(tx.as_ref(), &mut requests, now)?;
        let mut grants: Vec<Grant> = tx
            .grants(&GrantQuery {
                incident: Some(incident.to_string()),
                ..GrantQuery::default()
            })?
            .into_iter()
            .filter(|g| self.visible_grant(&policy, user, g))
            .collect();
        grants.iter_mut().for_each(|g| settle_grant(g, now));
        Ok(hoist_api::IncidentView {
            incident: incident.to_string(),
            requests,
            grants,
        })
    }

    pub fn grant(&self, user: &str, id: &str) -> Result<Grant> {
        let policy = self.policy();
        let tx = self.store.read()?;
        let mut grant = tx
            .grant(id)?
            .filter(|g| self.visible_grant(&policy, user, g))
            .ok_or_else(|| Error::not_found("grant", id))?;
        settle_grant(&mut grant, now());
        Ok(grant)
    }

    /// Ends a grant early. Revoking an ended grant changes nothing.
    pub fn revoke_grant(&self, user: &str, id: &str, reason: Option<&str>) -> Result<Grant> {
        self.limit(Act::End, user)?;
        let mut work = self.begin()?;
        let policy = Arc::clone(&work.policy);
        work.recall(user)?;
        let mut grant = self.load_grant(&work, &policy, user, id)?;
        let approver = policy
            .role(&grant.role)
            .is_some_and(|role| policy.is_approver(user, role));
        if grant.holder != user && !approver {
            return Err(Error::refuse(
                ErrorCode::Forbidden,
                format!(
                    "only the holder or an approver of role `{}` may revoke this grant",
                    grant.role
                ),
            ));
        }
        // A bad reason is refused whatever the grant's state: the same call
        // answers the same way before and after the grant ends.
        let reason = domain::comment("reason", reason)?;
        if grant.state != GrantState::Active {
            return Ok(grant);
        }
        work.end_grant(&mut grant, GrantState::Revoked, user, reason)?;
        self.finish(work)?;
        Ok(grant)
    }

    /// Files an extension request for an active grant, under the role's rule.
    /// With an idempotency key, a retry of the same extension (same
    /// grant, duration and justification) answers the extension filed the
    /// first time, applied or not, with `true`; a different one under the
    /// key is refused. Without one, each call is an extension of its own.
    pub fn extend_grant(
        &self,
        caller: &super::Authenticated,
        id: &str,
        duration_secs: u64,
        justification: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<(AccessRequest, bool)> {
        let user = caller.user.as_str();
        // An extension is a filing: under the same limit, or extending and
        // withdrawing in a loop would flood approvers and the audit log.
        self.limit(Act::File, user)?;
        let mut work = self.begin()?;
        let body_hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&json!({
                "extend": id,
                "duration_secs": duration_secs,
                "justification": justification,
            }))
            .unwrap_or_default(),
        ));
        if let Some(request) = work.replayed(user, idempotency_key, &body_hash)? {
            drop(work);
            // As a filing's retry: the extension may be visible before it is
            // durable, and the answer must not confirm one a crash loses.
            self.store.barrier()?;
            return Ok((request, true));
        }
        let policy = Arc::clone(&work.policy);
        let (grant, role) = self.held_active_grant(&work, &policy, user, id, HolderAct::Extend)?;
        // More time is access asked for, as a filing is: a role that wants
        // a recent sign-in wants it here too.
        self.check_step_up(caller, &role.id)?;
        let duration_secs = domain::duration(role, Some(duration_secs))?;
        // Already ending within a minute of the latest the role allows from
        // now: an extension would add nothing (or milliseconds), yet be
        // audited as one and sent to the target.
        let ceiling = work.now + std_delta(role.max_duration);
        if ceiling - grant.expires_at < chrono::TimeDelta::minutes(1) {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "grant {id} already ends at {}, as late as role `{}` allows from now \
                     (max_duration {}): an extension has nothing to add yet",
                    grant
                        .expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    role.id,
                    humantime::format_duration(role.max_duration)
                ),
            ));
        }
        // More time goes by the role's ticket rule in force, with the
        // grant's references (it may have changed since the grant began).
        if !hoist_api::is_workload(user) {
            let incident_stands = grant.break_glass && grant.incident.is_some();
            domain::ticket_terms(role, grant.ticket.as_deref(), incident_stands).map_err(
                |err| match err {
                    Error::Refused { code, message } => Error::refuse(
                        code,
                        format!(
                            "{message} now; grant {id} is not extended without one: once it \
                             ends (revoke it to end it now), file a new request with a ticket"
                        ),
                    ),
                    other => other,
                },
            )?;
        }
        let justification = match justification {
            Some(text) if text.trim() != grant.justification.trim() => {
                domain::justification(role, text)?
            }
            _ => domain::justification_kept(role, &grant.justification)?,
        };
        let pending = work.tx.requests(&RequestQuery {
            grant_id: Some(grant.id.clone()),
            states: vec![RequestState::Pending],
            ..RequestQuery::default()
        })?;
        if let Some(existing) = pending.into_iter().find(|r| {
            let mut r = r.clone();
            settle_request(&mut r, work.now);
            r.state == RequestState::Pending
        }) {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "an extension of grant {id} is already pending ({})",
                    existing.id
                ),
            ));
        }
        domain::approvers(&policy, role, user, role.approvals)?;
        let mut request = AccessRequest {
            justification,
            ticket: grant.ticket.clone(),
            incident: grant.incident.clone(),
            duration_secs,
            grant_id: Some(grant.id.clone()),
            signed_in_at: caller.signed_in_at(),
            ..work.new_request(RequestKind::Extension, role, user, role.approvals, &policy)
        };
        let pending = request.state == RequestState::Pending;
        work.file(
            &request,
            json!({ "kind": "extension", "duration_secs": duration_secs, "approvals_required": role.approvals }),
        )?;
        if let Some(key) = idempotency_key {
            work.tx
                .insert_idempotency_key(user, key, &body_hash, &request.id, work.now)?;
        }
        if pending {
            work.changes.push(Change::Request(request.clone()));
        } else {
            work.approve_by_policy(&request)?;
            work.extend(&mut request, role.max_duration, SYSTEM_ACTOR, grant)?;
        }
        self.finish(work)?;
        Ok((request, false))
    }
}
