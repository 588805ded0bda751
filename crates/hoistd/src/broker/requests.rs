//! Filing, previewing, reading and cancelling access requests.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessRequest, AuditKind, CreateRequest, ErrorCode, GrantState, RequestHistory, RequestKind,
    RequestPreview, RequestState,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::identities::Authenticated;
use super::limits::Act;
use super::{Broker, Change, SYSTEM_ACTOR, Work, event, new_id, now, settle_request, std_delta};
use crate::domain;
use crate::error::{Error, Result};
use crate::policy::{Policy, RoleDef};
use crate::store::RequestQuery;

/// How many of a requester's past requests an approver sees.
const HISTORY_LEN: usize = 10;

impl Work<'_> {
    /// A request `requester` files now: pending while it needs approvals
    /// (until the policy's pending time-out), approved at once otherwise.
    /// The caller fills in what was asked for.
    pub(super) fn new_request(
        &self,
        kind: RequestKind,
        role: &RoleDef,
        requester: &str,
        approvals_required: u32,
        policy: &Policy,
    ) -> AccessRequest {
        let pending = approvals_required > 0;
        AccessRequest {
            id: new_id("req"),
            kind,
            role: role.id.clone(),
            role_name: role.name.clone(),
            requester: requester.to_string(),
            justification: String::new(),
            ticket: None,
            incident: None,
            duration_secs: 0,
            starts_at: None,
            break_glass: false,
            state: if pending {
                RequestState::Pending
            } else {
                RequestState::Approved
            },
            created_at: self.now,
            updated_at: self.now,
            lapses_at: pending.then(|| self.now + std_delta(policy.settings.pending_ttl)),
            approvals_required,
            reviews: Vec::new(),
            claim: None,
            grant_id: None,
            reason: None,
            acknowledgement: None,
            tier: role.shown_tier(),
            approvers: Vec::new(),
            signed_in_at: None,
        }
    }

    /// Stores a new request and audits it as requested, with `details`.
    pub(super) fn file(
        &mut self,
        request: &AccessRequest,
        details: serde_json::Value,
    ) -> Result<()> {
        self.tx.insert_request(request)?;
        let mut requested = event(AuditKind::Requested, &request.requester, self.now, request);
        requested.reason = Some(request.justification.clone());
        requested.details = details;
        self.audit(requested)?;
        Ok(())
    }

    /// Audits the approval of a request whose role needs none.
    pub(super) fn approve_by_policy(&mut self, request: &AccessRequest) -> Result<()> {
        let mut approved = event(AuditKind::Approved, SYSTEM_ACTOR, self.now, request);
        approved.reason = Some("the role needs no approval".into());
        self.audit(approved)?;
        Ok(())
    }
}

/// Refuses a filing by `user` for `role` while they have an open request
/// for it, or hold a live grant of it (break glass goes past a request
/// still open): what filing checks under its transaction, and a preview
/// ahead of it, each settling what it reads at `now`.
fn refuse_if_open(
    tx: &dyn crate::store::Tx,
    user: &str,
    role: &str,
    break_glass: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let open = tx.requests(&RequestQuery {
        requester: Some(user.to_string()),
        roles: vec![role.to_string()],
        states: vec![
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Active,
        ],
        ..RequestQuery::default()
    })?;
    for mut existing in open {
        settle_request(&mut existing, now);
        let blocking = match existing.state {
            RequestState::Active => existing
                .grant_id
                .as_deref()
                .map(|id| tx.grant(id))
                .transpose()?
                .flatten()
                .is_some_and(|mut g| {
                    super::settle_grant(&mut g, now);
                    g.state == GrantState::Active
                }),
            RequestState::Pending | RequestState::Approved => !break_glass,
            _ => false,
        };
        if blocking && existing.kind == RequestKind::Access {
            let what = if existing.state == RequestState::Active {
                "already hold an active grant for"
            } else {
                "already have an open request for"
            };
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!("you {what} role `{role}` ({})", existing.id),
            ));
        }
    }
    Ok(())
}

impl Broker {
    /// What filing `input` would do, with nothing written: the same checks
    /// as filing, the caller's sign-in (a role's `step_up`) and their open
    /// requests and live grants for the role included, so that a preview
    /// that passes is a filing that passes.
    pub fn preview_as(
        &self,
        caller: &Authenticated,
        input: &CreateRequest,
    ) -> Result<RequestPreview> {
        self.check_step_up(caller, &input.role)?;
        self.preview(&caller.user, input)
    }

    fn preview(&self, user: &str, input: &CreateRequest) -> Result<RequestPreview> {
        let policy = self.policy();
        let read = self.store.read()?;
        // As filing does: the caller's groups may be newer on another
        // instance than in the token that reached this one.
        super::recall_user(&policy, read.as_ref(), user)?;
        let role = self.eligible_role(&policy, user, &input.role)?;
        if !policy.oidc.is_empty() {
            super::recall_approvers(&policy, read.as_ref(), &[role])?;
        }
        let now = now();
        let plan = domain::plan(&policy, role, user, input, now)?;
        refuse_if_open(read.as_ref(), user, &role.id, plan.break_glass, now)?;
        drop(read);
        Ok(RequestPreview {
            role: role.id.clone(),
            approvals_required: plan.approvals_required,
            approver_groups: if plan.approvals_required == 0 {
                Vec::new()
            } else {
                role.approver_groups.clone()
            },
            approvers: if plan.approvals_required == 0 {
                Vec::new()
            } else {
                plan.approvers.clone()
            },
            duration_secs: plan.duration_secs,
            activates_immediately: plan.activates_immediately(),
            break_glass: plan.break_glass,
            lapses_at: (plan.approvals_required > 0).then(|| {
                let lapses = now + std_delta(policy.settings.pending_ttl);
                // As filed: a scheduled request lapses at its window's end.
                plan.starts_at.map_or(lapses, |start| {
                    lapses.min(start + super::delta(plan.duration_secs))
                })
            }),
        })
    }

    /// Files a request. With an idempotency key, a retry of the same body
    /// returns the first request (`true` = replayed) instead of filing again.
    pub fn create_request(
        &self,
        user: &str,
        input: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(AccessRequest, bool)> {
        self.filing(user, None, input, idempotency_key)
    }

    /// [`Broker::create_request`] for `caller` as they signed in: a role
    /// that wants a recent sign-in ([`Broker::check_step_up`]) is held to
    /// it for a new filing, but a retry of one already made is answered
    /// with it, however old the sign-in has grown since (its answer may
    /// have been lost).
    pub fn create_request_as(
        &self,
        caller: &Authenticated,
        input: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(AccessRequest, bool)> {
        self.filing(&caller.user, Some(caller), input, idempotency_key)
    }

    fn filing(
        &self,
        user: &str,
        caller: Option<&Authenticated>,
        input: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(AccessRequest, bool)> {
        self.limit(Act::File, user)?;
        let (request, replayed) = self
            .optimistically(|work| self.file_request(work, user, caller, input, idempotency_key))?;
        if replayed {
            // The filing a retry is answered with may be visible before it
            // is durable (its commit, on another connection or instance,
            // still waiting for its flush or a replica): the answer waits
            // for that too, so it never confirms a filing a crash loses.
            self.store.barrier()?;
        }
        Ok((request, replayed))
    }

    /// [`Broker::create_request`] in `work`'s transaction.
    fn file_request(
        &self,
        mut work: Work<'_>,
        user: &str,
        caller: Option<&Authenticated>,
        input: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(AccessRequest, bool)> {
        let policy = Arc::clone(&work.policy);
        let body_hash = hex::encode(Sha256::digest(
            serde_json::to_vec(input).unwrap_or_default(),
        ));
        if let Some(request) = work.replayed(user, idempotency_key, &body_hash)? {
            return Ok((request, true));
        }
        if let Some(caller) = caller {
            self.check_step_up(caller, &input.role)?;
        }

        // The caller's token may be older than one another instance saw;
        // a role that needs no approval, or break-glass, is granted here.
        work.recall(user)?;
        let role = self.eligible_role(&policy, user, &input.role)?;
        let plan = domain::plan(&policy, role, user, input, work.now)?;
        refuse_if_open(work.tx.as_ref(), user, &role.id, plan.break_glass, work.now)?;

        let mut request = AccessRequest {
            justification: plan.justification.clone(),
            ticket: plan.ticket.clone(),
            incident: plan.incident.clone(),
            duration_secs: plan.duration_secs,
            starts_at: plan.starts_at,
            break_glass: plan.break_glass,
            signed_in_at: caller.and_then(Authenticated::signed_in_at),
            ..work.new_request(
                RequestKind::Access,
                role,
                user,
                plan.approvals_required,
                &policy,
            )
        };
        // A scheduled request undecided at its window's end could never
        // start: it times out then, and leaves the queue, rather than wait
        // out the pending time and hold the role's filings back.
        if let (Some(lapses), Some(end)) = (request.lapses_at, super::window_end(&request)) {
            request.lapses_at = Some(lapses.min(end));
        }
        let pending = request.state == RequestState::Pending;
        // Read before the first write (see Work::holding).
        let holding = (plan.break_glass || (!pending && request.starts_at.is_none()))
            .then(|| work.holding(&request))
            .transpose()?;
        work.file(
            &request,
            json!({
                "kind": "access",
                "duration_secs": request.duration_secs,
                "ticket": request.ticket,
                "starts_at": request.starts_at,
                "break_glass": request.break_glass,
                "approvals_required": request.approvals_required,
            }),
        )?;
        if let Some(key) = idempotency_key {
            work.tx
                .insert_idempotency_key(user, key, &body_hash, &request.id, work.now)?;
        }

        match holding {
            Some(holding) if plan.break_glass => {
                work.audit(event(AuditKind::BreakGlass, user, work.now, &request))?;
                work.activate(&mut request, user, holding)?;
            }
            Some(holding) => {
                work.approve_by_policy(&request)?;
                work.activate(&mut request, SYSTEM_ACTOR, holding)?;
            }
            None => {
                if !pending {
                    work.approve_by_policy(&request)?;
                }
                work.changes.push(Change::Request(request.clone()));
            }
        }
        self.finish(work)?;
        Ok((request, false))
    }

    pub fn request(&self, user: &str, id: &str) -> Result<AccessRequest> {
        let policy = self.policy();
        let tx = self.store.read()?;
        let mut request = tx
            .request(id)?
            .filter(|r| self.visible_request(&policy, user, r))
            .ok_or_else(|| Error::not_found("request", id))?;
        self.settle_views(tx.as_ref(), std::slice::from_mut(&mut request), now())?;
        Ok(request)
    }

    pub fn my_requests(
        &self,
        user: &str,
        states: Vec<RequestState>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>> {
        let tx = self.store.read()?;
        // Filtered by the state each is in now, settled: a pending request
        // whose time ran out is timed out, an active one past its grant's
        // end expired, though the reaper may not have recorded it yet.
        let mut stored = states.clone();
        for state in &states {
            let settles_from: &[RequestState] = match state {
                RequestState::TimedOut => &[RequestState::Pending],
                RequestState::Expired => &[RequestState::Approved, RequestState::Active],
                _ => &[],
            };
            stored.extend(settles_from.iter().filter(|s| !states.contains(s)));
        }
        // Those left out after settling may leave a page short: read more
        // until it is full or there is no more.
        let now = now();
        let mut reading = limit;
        loop {
            let mut requests = tx.requests(&RequestQuery {
                requester: Some(user.to_string()),
                states: stored.clone(),
                newest_first: true,
                limit: Some(reading),
                ..RequestQuery::default()
            })?;
            let read_all = requests.len() < reading;
            self.settle_views(tx.as_ref(), &mut requests, now)?;
            if !states.is_empty() {
                requests.retain(|r| states.contains(&r.state));
            }
            if requests.len() >= limit || read_all {
                requests.truncate(limit);
                return Ok(requests);
            }
            reading = reading.saturating_mul(2);
        }
    }

    pub fn request_history(&self, user: &str, id: &str) -> Result<RequestHistory> {
        let policy = self.policy();
        let tx = self.store.read()?;
        let request = tx
            .request(id)?
            .filter(|r| self.visible_request(&policy, user, r))
            .ok_or_else(|| Error::not_found("request", id))?;
        let mut recent: Vec<AccessRequest> = tx
            .requests(&RequestQuery {
                requester: Some(request.requester.clone()),
                roles: vec![request.role.clone()],
                newest_first: true,
                limit: Some(HISTORY_LEN + 1),
                ..RequestQuery::default()
            })?
            .into_iter()
            .filter(|r| r.id != request.id)
            .take(HISTORY_LEN)
            .collect();
        self.settle_views(tx.as_ref(), &mut recent, now())?;
        Ok(RequestHistory {
            requester: request.requester,
            role: request.role,
            recent,
        })
    }

    pub fn cancel_request(
        &self,
        user: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<AccessRequest> {
        self.limit(Act::End, user)?;
        let mut work = self.begin()?;
        let mut request = self.load_request(&work, id)?;
        if request.requester != user {
            return Err(Error::not_found("request", id));
        }
        if !matches!(
            request.state,
            RequestState::Pending | RequestState::Approved
        ) {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "request {id} is {}; only pending or scheduled requests can be cancelled",
                    request.state
                ),
            ));
        }
        request.state = RequestState::Cancelled;
        request.reason = domain::comment("reason", reason)?;
        request.lapses_at = None;
        request.claim = None;
        work.save_request(&mut request)?;
        let mut cancelled = event(AuditKind::Cancelled, user, work.now, &request);
        cancelled.reason = request.reason.clone();
        work.audit(cancelled)?;
        self.finish(work)?;
        Ok(request)
    }
}
