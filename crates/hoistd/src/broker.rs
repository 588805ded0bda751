//! The access lifecycle: filing, reviewing, activating, extending, revoking
//! and expiring, each as one transaction that also writes its audit events.
//!
//! Every call takes the caller's user name and re-reads the current policy,
//! so a policy reload takes effect on the next call. Calls block on the
//! store; the HTTP layer runs them on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessRequest, Acknowledgement, AuditEvent, AuditKind, Claim, CreateRequest, Credential,
    CredentialClaims, Decision, ErrorCode, Grant, GrantState, Introspection, Me, RequestHistory,
    RequestKind, RequestPreview, RequestState, Review, Role,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, broadcast};

use crate::audit::{self, NewAuditEvent};
use crate::credential::{Signer, SignerError};
use crate::domain;
use crate::policy::{Policy, RoleDef};
use crate::store::{AuditQuery, GrantQuery, RequestQuery, Store, StoreError, Tx};

/// The actor name of the broker's own acts (expiry, time-outs, reloads).
pub const SYSTEM_ACTOR: &str = "hoistd";
/// How many of a requester's past requests an approver sees.
const HISTORY_LEN: usize = 10;
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signer(#[from] SignerError),
}

impl Error {
    pub fn refuse(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Refused {
            code,
            message: message.into(),
        }
    }

    fn not_found(what: &str, id: &str) -> Self {
        Error::refuse(ErrorCode::NotFound, format!("no {what} `{id}`"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something that changed, sent to live subscribers after it was committed.
#[derive(Debug, Clone)]
pub enum Change {
    Request(AccessRequest),
    Grant(Grant),
}

pub struct Broker {
    store: Arc<dyn Store>,
    verifier: crate::oidc::Verifier,
    policy: ArcSwap<Policy>,
    signer: Signer,
    changes: broadcast::Sender<Change>,
    /// Wakes the reaper when something new may fall due sooner.
    reaper: Notify,
}

/// The current time, at the millisecond precision the store keeps.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let bytes: [u8; 12] = rand::random();
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}_{tail}")
}

fn delta(secs: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

fn std_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// The state a request is really in at `now`, whatever the store last recorded.
fn settle_request(request: &mut AccessRequest, now: DateTime<Utc>) {
    if request.state == RequestState::Pending && request.lapses_at.is_some_and(|at| at <= now) {
        request.state = RequestState::TimedOut;
    }
    if request
        .claim
        .as_ref()
        .is_some_and(|claim| claim.until <= now)
        || request.state != RequestState::Pending
    {
        request.claim = None;
    }
}

/// A grant is never reported active at or after its end.
fn settle_grant(grant: &mut Grant, now: DateTime<Utc>) {
    if grant.state == GrantState::Active && grant.expires_at <= now {
        grant.state = GrantState::Expired;
        grant.ended_at = Some(grant.expires_at);
    }
}

fn event(
    kind: AuditKind,
    actor: &str,
    at: DateTime<Utc>,
    request: &AccessRequest,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        kind,
        actor: actor.to_string(),
        subject: Some(request.requester.clone()),
        role: Some(request.role.clone()),
        request_id: Some(request.id.clone()),
        grant_id: request.grant_id.clone(),
        incident: request.incident.clone(),
        reason: None,
        details: json!({}),
    }
}

fn grant_event(kind: AuditKind, actor: &str, at: DateTime<Utc>, grant: &Grant) -> NewAuditEvent {
    NewAuditEvent {
        at,
        kind,
        actor: actor.to_string(),
        subject: Some(grant.holder.clone()),
        role: Some(grant.role.clone()),
        request_id: Some(grant.request_id.clone()),
        grant_id: Some(grant.id.clone()),
        incident: grant.incident.clone(),
        reason: None,
        details: json!({}),
    }
}

/// One transaction's work, with the changes to announce once it commits.
struct Work<'a> {
    tx: Box<dyn Tx + 'a>,
    changes: Vec<Change>,
    now: DateTime<Utc>,
}

impl Work<'_> {
    fn audit(&mut self, event: NewAuditEvent) -> Result<AuditEvent> {
        Ok(audit::append(self.tx.as_mut(), event)?)
    }

    fn save_request(&mut self, request: &mut AccessRequest) -> Result<()> {
        request.updated_at = self.now;
        self.tx.update_request(request)?;
        self.changes.push(Change::Request(request.clone()));
        Ok(())
    }

    fn save_grant(&mut self, grant: &Grant) -> Result<()> {
        self.tx.update_grant(grant)?;
        self.changes.push(Change::Grant(grant.clone()));
        Ok(())
    }

    /// Starts the grant for an approved access request.
    fn activate(&mut self, request: &mut AccessRequest, actor: &str) -> Result<Grant> {
        let grant = Grant {
            id: new_id("gr"),
            request_id: request.id.clone(),
            role: request.role.clone(),
            role_name: request.role_name.clone(),
            holder: request.requester.clone(),
            starts_at: self.now,
            expires_at: self.now + delta(request.duration_secs),
            state: GrantState::Active,
            ended_at: None,
            revoked_by: None,
            revoke_reason: None,
            break_glass: request.break_glass,
            ticket: request.ticket.clone(),
            incident: request.incident.clone(),
            justification: request.justification.clone(),
        };
        self.tx.insert_grant(&grant)?;
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
        self.changes.push(Change::Grant(grant.clone()));
        Ok(grant)
    }

    /// Moves an active grant's end for an approved extension; never earlier,
    /// and never more than the role's maximum from now.
    fn extend(&mut self, request: &mut AccessRequest, max: Duration, actor: &str) -> Result<()> {
        let grant_id = request.grant_id.clone().unwrap_or_default();
        let Some(mut grant) = self.tx.grant(&grant_id)? else {
            return Err(Error::not_found("grant", &grant_id));
        };
        settle_grant(&mut grant, self.now);
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
    fn end_grant(
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
        self.save_grant(grant)?;
        let attached = self.tx.requests(&RequestQuery {
            grant_id: Some(grant.id.clone()),
            states: vec![RequestState::Active, RequestState::Pending],
            ..RequestQuery::default()
        })?;
        for mut request in attached {
            if request.state == RequestState::Pending {
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
    pub fn new(store: Arc<dyn Store>, policy: Policy) -> Result<Self> {
        let signer = Signer::load_or_create(store.as_ref())?;
        let (changes, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Broker {
            store,
            verifier: crate::oidc::Verifier::new(),
            policy: ArcSwap::from_pointee(policy),
            signer,
            changes,
            reaper: Notify::new(),
        })
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Who a bearer token belongs to: a static token from the policy, or an
    /// ID token from one of its OpenID providers (whose groups are recorded).
    pub async fn authenticate(&self, token: &str) -> Result<String> {
        let policy = self.policy();
        if let Some(user) = policy.user_for_token(token) {
            return Ok(user.id.clone());
        }
        if policy.oidc.is_empty() || token.split('.').count() != 3 {
            return Err(Error::refuse(
                ErrorCode::Unauthenticated,
                "unknown or expired token",
            ));
        }
        match self.verifier.verify(&policy, token).await {
            Ok(identity) => {
                policy.vouch(&identity.user, &identity.display_name, identity.groups);
                Ok(identity.user)
            }
            Err(err) => Err(Error::refuse(ErrorCode::Unauthenticated, err.to_string())),
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    pub fn reaper_wakeup(&self) -> &Notify {
        &self.reaper
    }

    fn begin(&self) -> Result<Work<'_>> {
        Ok(Work {
            tx: self.store.transaction()?,
            changes: Vec::new(),
            now: now(),
        })
    }

    fn finish(&self, work: Work<'_>) -> Result<()> {
        let Work { tx, changes, .. } = work;
        tx.commit()?;
        let wake = !changes.is_empty();
        for change in changes {
            // No subscribers is not an error.
            let _ = self.changes.send(change);
        }
        if wake {
            self.reaper.notify_one();
        }
        Ok(())
    }

    /// Whether a change concerns `user`, under the current policy.
    pub fn concerns(&self, user: &str, change: &Change) -> bool {
        let policy = self.policy.load();
        let approver = |role: &str| {
            policy
                .role(role)
                .is_some_and(|r| policy.is_approver(user, r))
        };
        match change {
            Change::Request(r) => r.requester == user || approver(&r.role),
            Change::Grant(g) => g.holder == user || approver(&g.role),
        }
    }

    fn role<'p>(&self, policy: &'p Policy, id: &str) -> Result<&'p RoleDef> {
        policy
            .role(id)
            .ok_or_else(|| Error::refuse(ErrorCode::UnknownRole, format!("no role `{id}`")))
    }

    fn eligible_role<'p>(&self, policy: &'p Policy, user: &str, id: &str) -> Result<&'p RoleDef> {
        let role = self.role(policy, id)?;
        if !policy.is_eligible(user, role) {
            return Err(Error::refuse(
                ErrorCode::NotEligible,
                format!("you are not eligible for role `{id}`"),
            ));
        }
        Ok(role)
    }

    pub fn me(&self, user: &str) -> Result<Me> {
        let policy = self.policy();
        let display_name = policy
            .display_name(user)
            .ok_or_else(|| Error::refuse(ErrorCode::Unauthenticated, "unknown user"))?;
        Ok(Me {
            user: user.to_string(),
            display_name,
            groups: policy.groups_of(user),
            approver_for: policy
                .roles()
                .filter(|role| policy.is_approver(user, role))
                .map(|role| role.id.clone())
                .collect(),
            auditor: policy.is_auditor(user),
        })
    }

    pub fn roles(&self, user: &str) -> Vec<Role> {
        let policy = self.policy();
        policy
            .roles()
            .filter(|role| policy.is_eligible(user, role))
            .map(|role| policy.role_view(role, user))
            .collect()
    }

    pub fn preview(&self, user: &str, input: &CreateRequest) -> Result<RequestPreview> {
        let policy = self.policy();
        let role = self.eligible_role(&policy, user, &input.role)?;
        let now = now();
        let plan = domain::plan(&policy, role, user, input, now)?;
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
            lapses_at: (plan.approvals_required > 0)
                .then(|| now + std_delta(policy.settings.pending_ttl)),
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
        let policy = self.policy();
        let mut work = self.begin()?;
        let body_hash = hex::encode(Sha256::digest(
            serde_json::to_vec(input).unwrap_or_default(),
        ));
        if let Some(key) = idempotency_key
            && let Some((hash, request_id)) = work.tx.idempotency_key(user, key)?
        {
            if hash != body_hash {
                return Err(Error::refuse(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was already used with a different request body",
                ));
            }
            let mut request = work
                .tx
                .request(&request_id)?
                .ok_or_else(|| Error::not_found("request", &request_id))?;
            settle_request(&mut request, work.now);
            return Ok((request, true));
        }

        let role = self.eligible_role(&policy, user, &input.role)?;
        let plan = domain::plan(&policy, role, user, input, work.now)?;
        let open = work.tx.requests(&RequestQuery {
            requester: Some(user.to_string()),
            roles: vec![role.id.clone()],
            states: vec![
                RequestState::Pending,
                RequestState::Approved,
                RequestState::Active,
            ],
            ..RequestQuery::default()
        })?;
        for mut existing in open {
            settle_request(&mut existing, work.now);
            let blocking = match existing.state {
                RequestState::Active => existing
                    .grant_id
                    .as_deref()
                    .map(|id| work.tx.grant(id))
                    .transpose()?
                    .flatten()
                    .is_some_and(|mut g| {
                        settle_grant(&mut g, work.now);
                        g.state == GrantState::Active
                    }),
                RequestState::Pending | RequestState::Approved => !plan.break_glass,
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
                    format!("you {what} role `{}` ({})", role.id, existing.id),
                ));
            }
        }

        let pending = plan.approvals_required > 0;
        let mut request = AccessRequest {
            id: new_id("req"),
            kind: RequestKind::Access,
            role: role.id.clone(),
            role_name: role.name.clone(),
            requester: user.to_string(),
            justification: plan.justification.clone(),
            ticket: plan.ticket.clone(),
            incident: plan.incident.clone(),
            duration_secs: plan.duration_secs,
            starts_at: plan.starts_at,
            break_glass: plan.break_glass,
            state: if pending {
                RequestState::Pending
            } else {
                RequestState::Approved
            },
            created_at: work.now,
            updated_at: work.now,
            lapses_at: pending.then(|| work.now + std_delta(policy.settings.pending_ttl)),
            approvals_required: plan.approvals_required,
            reviews: Vec::new(),
            claim: None,
            grant_id: None,
            reason: None,
            acknowledgement: None,
        };
        work.tx.insert_request(&request)?;
        let mut requested = event(AuditKind::Requested, user, work.now, &request);
        requested.reason = Some(request.justification.clone());
        requested.details = json!({
            "kind": "access",
            "duration_secs": request.duration_secs,
            "ticket": request.ticket,
            "starts_at": request.starts_at,
            "break_glass": request.break_glass,
            "approvals_required": request.approvals_required,
        });
        work.audit(requested)?;
        if let Some(key) = idempotency_key {
            work.tx
                .insert_idempotency_key(user, key, &body_hash, &request.id, work.now)?;
        }

        if plan.break_glass {
            work.audit(event(AuditKind::BreakGlass, user, work.now, &request))?;
            work.activate(&mut request, user)?;
        } else if !pending {
            let mut approved = event(AuditKind::Approved, SYSTEM_ACTOR, work.now, &request);
            approved.reason = Some("the role needs no approval".into());
            work.audit(approved)?;
            if request.starts_at.is_none() {
                work.activate(&mut request, SYSTEM_ACTOR)?;
            } else {
                work.changes.push(Change::Request(request.clone()));
            }
        } else {
            work.changes.push(Change::Request(request.clone()));
        }
        self.finish(work)?;
        Ok((request, false))
    }

    fn visible_request(&self, policy: &Policy, user: &str, request: &AccessRequest) -> bool {
        request.requester == user
            || policy.is_auditor(user)
            || policy
                .role(&request.role)
                .is_some_and(|role| policy.is_approver(user, role))
    }

    pub fn request(&self, user: &str, id: &str) -> Result<AccessRequest> {
        let policy = self.policy();
        let tx = self.store.transaction()?;
        let mut request = tx
            .request(id)?
            .filter(|r| self.visible_request(&policy, user, r))
            .ok_or_else(|| Error::not_found("request", id))?;
        self.settle_views(tx.as_ref(), std::slice::from_mut(&mut request), now())?;
        Ok(request)
    }

    /// Brings requests to their state at `now`, including those whose grant ended.
    fn settle_views(
        &self,
        tx: &dyn Tx,
        requests: &mut [AccessRequest],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for request in requests {
            settle_request(request, now);
            if request.state == RequestState::Active
                && let Some(mut grant) = request
                    .grant_id
                    .as_deref()
                    .map(|id| tx.grant(id))
                    .transpose()?
                    .flatten()
            {
                settle_grant(&mut grant, now);
                if grant.state == GrantState::Expired {
                    request.state = RequestState::Expired;
                }
            }
        }
        Ok(())
    }

    pub fn my_requests(
        &self,
        user: &str,
        states: Vec<RequestState>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>> {
        let tx = self.store.transaction()?;
        let mut requests = tx.requests(&RequestQuery {
            requester: Some(user.to_string()),
            states,
            newest_first: true,
            limit: Some(limit),
            ..RequestQuery::default()
        })?;
        self.settle_views(tx.as_ref(), &mut requests, now())?;
        Ok(requests)
    }

    fn approver_roles(&self, policy: &Policy, user: &str) -> Vec<String> {
        policy
            .roles()
            .filter(|role| policy.is_approver(user, role))
            .map(|role| role.id.clone())
            .collect()
    }

    /// Pending requests the caller may decide, the soonest to lapse first.
    pub fn review_queue(&self, user: &str) -> Result<Vec<AccessRequest>> {
        let policy = self.policy();
        let roles = self.approver_roles(&policy, user);
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.store.transaction()?;
        let now = now();
        let mut queue: Vec<AccessRequest> = tx
            .requests(&RequestQuery {
                roles,
                states: vec![RequestState::Pending],
                ..RequestQuery::default()
            })?
            .into_iter()
            .filter(|r| r.requester != user)
            .collect();
        queue.iter_mut().for_each(|r| settle_request(r, now));
        queue.retain(|r| r.state == RequestState::Pending);
        queue.sort_by_key(|r| r.lapses_at);
        Ok(queue)
    }

    /// Break-glass activations on the caller's roles that nobody acknowledged yet.
    pub fn break_glass_queue(&self, user: &str) -> Result<Vec<AccessRequest>> {
        let policy = self.policy();
        let roles = self.approver_roles(&policy, user);
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.store.transaction()?;
        let mut queue: Vec<AccessRequest> = tx
            .requests(&RequestQuery {
                roles,
                unacknowledged_break_glass: true,
                ..RequestQuery::default()
            })?
            .into_iter()
            .filter(|r| r.requester != user)
            .collect();
        self.settle_views(tx.as_ref(), &mut queue, now())?;
        Ok(queue)
    }

    pub fn request_history(&self, user: &str, id: &str) -> Result<RequestHistory> {
        let policy = self.policy();
        let tx = self.store.transaction()?;
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

    /// Loads a request for a change, settled to now.
    fn load_request(&self, work: &Work<'_>, id: &str) -> Result<AccessRequest> {
        let mut request = work
            .tx
            .request(id)?
            .ok_or_else(|| Error::not_found("request", id))?;
        settle_request(&mut request, work.now);
        Ok(request)
    }

    /// Checks that `user` may act as an approver on this request.
    fn check_reviewer(&self, policy: &Policy, user: &str, request: &AccessRequest) -> Result<()> {
        if request.requester == user {
            return Err(Error::refuse(
                ErrorCode::SelfReview,
                "you cannot review your own request",
            ));
        }
        let approver = policy
            .role(&request.role)
            .is_some_and(|role| policy.is_approver(user, role));
        if !approver {
            return Err(Error::refuse(
                ErrorCode::Forbidden,
                format!("you are not an approver of role `{}`", request.role),
            ));
        }
        Ok(())
    }

    pub fn review_request(
        &self,
        user: &str,
        id: &str,
        decision: Decision,
        comment: Option<&str>,
    ) -> Result<AccessRequest> {
        let policy = self.policy();
        let mut work = self.begin()?;
        let mut request = self.load_request(&work, id)?;
        if !self.visible_request(&policy, user, &request) {
            return Err(Error::not_found("request", id));
        }
        self.check_reviewer(&policy, user, &request)?;
        if request.state != RequestState::Pending {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "request {id} is {}; only pending requests can be reviewed",
                    request.state
                ),
            ));
        }
        if request.reviews.iter().any(|r| r.reviewer == user) {
            return Err(Error::refuse(
                ErrorCode::AlreadyReviewed,
                format!("you already reviewed request {id}"),
            ));
        }
        let comment = domain::comment("comment", comment)?;
        if decision == Decision::Deny && comment.is_none() {
            return Err(Error::refuse(
                ErrorCode::CommentRequired,
                "a denial needs a comment: it is the reason the requester sees",
            ));
        }
        let role = self.role(&policy, &request.role)?;
        let review = Review {
            reviewer: user.to_string(),
            decision,
            comment: comment.clone(),
            at: work.now,
        };
        work.tx.insert_review(&request.id, &review)?;
        request.reviews.push(review);
        let mut reviewed = event(AuditKind::Reviewed, user, work.now, &request);
        reviewed.reason = comment.clone();
        reviewed.details = json!({ "decision": decision });
        work.audit(reviewed)?;

        let approvals = request
            .reviews
            .iter()
            .filter(|r| r.decision == Decision::Approve)
            .count();
        if decision == Decision::Deny {
            request.state = RequestState::Denied;
            request.reason = comment;
            request.lapses_at = None;
            request.claim = None;
            work.save_request(&mut request)?;
            let mut denied = event(AuditKind::Denied, user, work.now, &request);
            denied.reason = request.reason.clone();
            work.audit(denied)?;
        } else if approvals >= request.approvals_required as usize {
            request.state = RequestState::Approved;
            request.claim = None;
            let mut approved = event(AuditKind::Approved, user, work.now, &request);
            approved.details = json!({
                "approvers": request.reviews.iter().filter(|r| r.decision == Decision::Approve)
                    .map(|r| r.reviewer.clone()).collect::<Vec<_>>(),
            });
            work.audit(approved)?;
            match request.kind {
                RequestKind::Extension => work.extend(&mut request, role.max_duration, user)?,
                RequestKind::Access if request.starts_at.is_none_or(|at| at <= work.now) => {
                    work.activate(&mut request, user)?;
                }
                RequestKind::Access => {
                    request.lapses_at = None;
                    work.save_request(&mut request)?;
                }
            }
        } else {
            work.save_request(&mut request)?;
        }
        self.finish(work)?;
        Ok(request)
    }

    pub fn cancel_request(
        &self,
        user: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<AccessRequest> {
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

    /// Marks a pending request as being looked at by the caller for a while.
    pub fn claim_request(&self, user: &str, id: &str, release: bool) -> Result<AccessRequest> {
        let policy = self.policy();
        let mut work = self.begin()?;
        let mut request = self.load_request(&work, id)?;
        if !self.visible_request(&policy, user, &request) {
            return Err(Error::not_found("request", id));
        }
        self.check_reviewer(&policy, user, &request)?;
        if request.state != RequestState::Pending {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "request {id} is {}; only pending requests can be claimed",
                    request.state
                ),
            ));
        }
        match (&request.claim, release) {
            (Some(claim), _) if claim.by != user => {
                return Err(Error::refuse(
                    ErrorCode::InvalidState,
                    format!(
                        "{} is looking at request {id} until {}",
                        claim.by,
                        claim.until.to_rfc3339()
                    ),
                ));
            }
            (_, true) => request.claim = None,
            (_, false) => {
                request.claim = Some(Claim {
                    by: user.to_string(),
                    until: work.now + std_delta(policy.settings.claim_ttl),
                });
            }
        }
        work.save_request(&mut request)?;
        let mut claimed = event(AuditKind::Claimed, user, work.now, &request);
        claimed.details =
            json!({ "released": release, "until": request.claim.as_ref().map(|c| c.until) });
        work.audit(claimed)?;
        self.finish(work)?;
        Ok(request)
    }

    pub fn acknowledge_break_glass(
        &self,
        user: &str,
        id: &str,
        comment: Option<&str>,
    ) -> Result<AccessRequest> {
        let policy = self.policy();
        let mut work = self.begin()?;
        let mut request = self.load_request(&work, id)?;
        if !self.visible_request(&policy, user, &request) {
            return Err(Error::not_found("request", id));
        }
        self.check_reviewer(&policy, user, &request)?;
        if !request.break_glass {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!("request {id} is not a break-glass request"),
            ));
        }
        if let Some(ack) = &request.acknowledgement {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!("{} already acknowledged request {id}", ack.by),
            ));
        }
        let comment = domain::comment("comment", comment)?;
        request.acknowledgement = Some(Acknowledgement {
            by: user.to_string(),
            comment: comment.clone(),
            at: work.now,
        });
        // Keep the recorded state: acknowledging says nothing about the grant.
        request.updated_at = work.now;
        work.tx.update_request(&request)?;
        work.changes.push(Change::Request(request.clone()));
        let mut acknowledged = event(AuditKind::BreakGlassAcknowledged, user, work.now, &request);
        acknowledged.reason = comment;
        work.audit(acknowledged)?;
        self.finish(work)?;
        self.request(user, id)
    }

    fn visible_grant(&self, policy: &Policy, user: &str, grant: &Grant) -> bool {
        grant.holder == user
            || policy.is_auditor(user)
            || policy
                .role(&grant.role)
                .is_some_and(|role| policy.is_approver(user, role))
    }

    pub fn grants(&self, user: &str, include_ended: bool, limit: usize) -> Result<Vec<Grant>> {
        let tx = self.store.transaction()?;
        let now = now();
        let mut grants = tx.grants(&GrantQuery {
            holder: Some(user.to_string()),
            states: if include_ended {
                Vec::new()
            } else {
                vec![GrantState::Active]
            },
            limit: Some(limit),
            ..GrantQuery::default()
        })?;
        grants.iter_mut().for_each(|g| settle_grant(g, now));
        if !include_ended {
            grants.retain(|g| g.state == GrantState::Active);
        }
        Ok(grants)
    }

    /// Everything under one incident reference the caller may see.
    pub fn incident(&self, user: &str, incident: &str) -> Result<hoist_api::IncidentView> {
        let policy = self.policy();
        let tx = self.store.transaction()?;
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
        let tx = self.store.transaction()?;
        let mut grant = tx
            .grant(id)?
            .filter(|g| self.visible_grant(&policy, user, g))
            .ok_or_else(|| Error::not_found("grant", id))?;
        settle_grant(&mut grant, now());
        Ok(grant)
    }

    fn load_grant(&self, work: &Work<'_>, policy: &Policy, user: &str, id: &str) -> Result<Grant> {
        let mut grant = work
            .tx
            .grant(id)?
            .filter(|g| self.visible_grant(policy, user, g))
            .ok_or_else(|| Error::not_found("grant", id))?;
        settle_grant(&mut grant, work.now);
        Ok(grant)
    }

    /// Ends a grant early. Revoking an ended grant changes nothing.
    pub fn revoke_grant(&self, user: &str, id: &str, reason: Option<&str>) -> Result<Grant> {
        let policy = self.policy();
        let mut work = self.begin()?;
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
        if grant.state != GrantState::Active {
            return Ok(grant);
        }
        let reason = domain::comment("reason", reason)?;
        work.end_grant(&mut grant, GrantState::Revoked, user, reason)?;
        self.finish(work)?;
        Ok(grant)
    }

    /// Files an extension request for an active grant, under the role's rule.
    pub fn extend_grant(
        &self,
        user: &str,
        id: &str,
        duration_secs: u64,
        justification: Option<&str>,
    ) -> Result<AccessRequest> {
        let policy = self.policy();
        let mut work = self.begin()?;
        let grant = self.load_grant(&work, &policy, user, id)?;
        if grant.holder != user {
            return Err(Error::refuse(
                ErrorCode::Forbidden,
                "only the holder may extend a grant",
            ));
        }
        if grant.state != GrantState::Active {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "grant {id} is {}; only active grants can be extended",
                    grant.state.as_str()
                ),
            ));
        }
        let role = self.eligible_role(&policy, user, &grant.role)?;
        let duration_secs = domain::duration(role, Some(duration_secs))?;
        let justification =
            domain::justification(role, justification.unwrap_or(&grant.justification))?;
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
        let approvers = policy
            .approvers_of(role)
            .into_iter()
            .filter(|a| a != user)
            .count();
        if role.approvals as usize > approvers && policy.oidc.is_empty() {
            return Err(Error::refuse(
                ErrorCode::NoApprovers,
                format!(
                    "role `{}` needs {} approvals but only {approvers} approver(s) other than you exist",
                    role.id, role.approvals
                ),
            ));
        }
        let pending = role.approvals > 0;
        let mut request = AccessRequest {
            id: new_id("req"),
            kind: RequestKind::Extension,
            role: role.id.clone(),
            role_name: role.name.clone(),
            requester: user.to_string(),
            justification,
            ticket: grant.ticket.clone(),
            incident: grant.incident.clone(),
            duration_secs,
            starts_at: None,
            break_glass: false,
            state: if pending {
                RequestState::Pending
            } else {
                RequestState::Approved
            },
            created_at: work.now,
            updated_at: work.now,
            lapses_at: pending.then(|| work.now + std_delta(policy.settings.pending_ttl)),
            approvals_required: role.approvals,
            reviews: Vec::new(),
            claim: None,
            grant_id: Some(grant.id.clone()),
            reason: None,
            acknowledgement: None,
        };
        work.tx.insert_request(&request)?;
        let mut requested = event(AuditKind::Requested, user, work.now, &request);
        requested.reason = Some(request.justification.clone());
        requested.details = json!({ "kind": "extension", "duration_secs": duration_secs, "approvals_required": role.approvals });
        work.audit(requested)?;
        if pending {
            work.changes.push(Change::Request(request.clone()));
        } else {
            let mut approved = event(AuditKind::Approved, SYSTEM_ACTOR, work.now, &request);
            approved.reason = Some("the role needs no approval".into());
            work.audit(approved)?;
            work.extend(&mut request, role.max_duration, SYSTEM_ACTOR)?;
        }
        self.finish(work)?;
        Ok(request)
    }

    /// Issues a short-lived credential for an active grant the caller holds.
    pub fn grant_credential(&self, user: &str, id: &str) -> Result<Credential> {
        let policy = self.policy();
        let mut work = self.begin()?;
        let grant = self.load_grant(&work, &policy, user, id)?;
        if grant.holder != user {
            return Err(Error::refuse(
                ErrorCode::Forbidden,
                "only the holder may fetch a grant's credential",
            ));
        }
        if grant.state != GrantState::Active {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!(
                    "grant {id} is {}; credentials are issued only for active grants",
                    grant.state.as_str()
                ),
            ));
        }
        let role = self.eligible_role(&policy, user, &grant.role)?;
        let expires_at = grant
            .expires_at
            .min(work.now + std_delta(policy.settings.credential_ttl));
        let jti = new_id("cred");
        let claims = CredentialClaims {
            iss: policy.settings.issuer.clone(),
            sub: user.to_string(),
            aud: role.scope.clone(),
            iat: work.now.timestamp(),
            exp: expires_at.timestamp(),
            jti: jti.clone(),
            role: role.id.clone(),
            grant_id: grant.id.clone(),
            scope: role.scope.clone(),
        };
        let token = self.signer.issue(&claims)?;
        let mut issued = grant_event(AuditKind::CredentialIssued, user, work.now, &grant);
        issued.details = json!({ "jti": jti, "expires_at": expires_at });
        work.audit(issued)?;
        self.finish(work)?;
        Ok(Credential {
            grant_id: grant.id,
            role: role.id.clone(),
            token_type: "Bearer".into(),
            token,
            issued_at: from_unix(claims.iat),
            expires_at: from_unix(claims.exp),
        })
    }

    /// RFC 7662: a credential is active only while its grant is.
    pub fn introspect(&self, user: &str, token: &str) -> Result<Introspection> {
        let policy = self.policy();
        let inactive = Introspection {
            active: false,
            sub: None,
            scope: None,
            grant_id: None,
            iss: None,
            aud: None,
            exp: None,
            iat: None,
            token_type: None,
        };
        let Some(claims) = self.signer.verify(token, &policy.settings.issuer) else {
            return Ok(inactive);
        };
        let mut work = self.begin()?;
        let Some(mut grant) = work.tx.grant(&claims.grant_id)? else {
            return Ok(inactive);
        };
        settle_grant(&mut grant, work.now);
        let still_eligible = policy
            .role(&grant.role)
            .is_some_and(|role| policy.is_eligible(&grant.holder, role));
        if grant.state != GrantState::Active || grant.holder != claims.sub || !still_eligible {
            return Ok(inactive);
        }
        let mut used = grant_event(AuditKind::CredentialUsed, user, work.now, &grant);
        used.details = json!({ "jti": claims.jti });
        work.audit(used)?;
        self.finish(work)?;
        Ok(Introspection {
            active: true,
            sub: Some(claims.sub),
            scope: Some(claims.scope),
            grant_id: Some(claims.grant_id),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            token_type: Some("Bearer".into()),
        })
    }

    pub fn audit(&self, user: &str, mut query: AuditQuery) -> Result<Vec<AuditEvent>> {
        if !self.policy().is_auditor(user) {
            query.involving = Some(user.to_string());
        }
        let tx = self.store.transaction()?;
        Ok(tx.audit(&query)?)
    }

    /// Records everything that fell due: lapsed requests, scheduled starts,
    /// expired grants. Returns when the next thing falls due.
    pub fn reap(&self) -> Result<Option<DateTime<Utc>>> {
        let policy = self.policy();
        let mut work = self.begin()?;
        for mut request in work.tx.due_requests(work.now)? {
            match request.state {
                RequestState::Pending => {
                    let lapsed = request.lapses_at.unwrap_or(work.now);
                    request.state = RequestState::TimedOut;
                    request.reason = Some(format!("no decision before {}", lapsed.to_rfc3339()));
                    request.claim = None;
                    work.save_request(&mut request)?;
                    let mut timed_out =
                        event(AuditKind::TimedOut, SYSTEM_ACTOR, work.now, &request);
                    timed_out.reason = request.reason.clone();
                    timed_out.details = json!({ "lapses_at": lapsed });
                    work.audit(timed_out)?;
                }
                RequestState::Approved => match policy.role(&request.role) {
                    Some(role) if policy.is_eligible(&request.requester, role) => {
                        work.activate(&mut request, SYSTEM_ACTOR)?;
                    }
                    _ => {
                        request.state = RequestState::Cancelled;
                        request.reason =
                            Some("the requester is no longer eligible for the role".into());
                        work.save_request(&mut request)?;
                        let mut cancelled =
                            event(AuditKind::Cancelled, SYSTEM_ACTOR, work.now, &request);
                        cancelled.reason = request.reason.clone();
                        work.audit(cancelled)?;
                    }
                },
                _ => {}
            }
        }
        for mut grant in work.tx.due_grants(work.now)? {
            work.end_grant(&mut grant, GrantState::Expired, SYSTEM_ACTOR, None)?;
        }
        let next = work.tx.next_due()?;
        self.finish(work)?;
        Ok(next)
    }

    /// Swaps in a new policy and revokes every grant its holder may no longer have.
    pub fn reload(&self, mut policy: Policy) -> Result<usize> {
        policy.adopt_directory(&self.policy.load());
        self.policy.store(Arc::new(policy));
        let policy = self.policy();
        let mut work = self.begin()?;
        let mut revoked = 0;
        let active = work.tx.grants(&GrantQuery {
            states: vec![GrantState::Active],
            ..GrantQuery::default()
        })?;
        for mut grant in active {
            let eligible = policy
                .role(&grant.role)
                .is_some_and(|role| policy.is_eligible(&grant.holder, role));
            if !eligible {
                let reason = format!(
                    "policy reload: {} is no longer eligible for role `{}`",
                    grant.holder, grant.role
                );
                work.end_grant(&mut grant, GrantState::Revoked, SYSTEM_ACTOR, Some(reason))?;
                revoked += 1;
            }
        }
        work.audit(NewAuditEvent {
            at: work.now,
            kind: AuditKind::PolicyReloaded,
            actor: SYSTEM_ACTOR.into(),
            subject: None,
            role: None,
            request_id: None,
            grant_id: None,
            incident: None,
            reason: None,
            details: json!({ "roles": policy.roles().count(), "grants_revoked": revoked }),
        })?;
        self.finish(work)?;
        Ok(revoked)
    }
}

fn from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}
