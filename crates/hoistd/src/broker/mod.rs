//! The access lifecycle: filing, reviewing, activating, extending, revoking
//! and expiring, each as one transaction that also writes its audit events.
//!
//! Every call takes the caller's user name and re-reads the current policy,
//! so a policy reload takes effect on the next call. Calls block on the
//! store; the HTTP layer runs them on the blocking pool.
//!
//! One module per resource, as in `http/`; this one holds what they share:
//! the [`Broker`], one transaction's [`Work`], and the settle functions that
//! bring a stored request or grant to its state at a given moment.

mod credentials;
mod gate;
mod grants;
mod identities;
mod limits;
mod meta;
mod notifications;
mod purge;
mod reaper;
mod reload;
mod requests;
mod reviews;
mod slack;
mod targets;
mod unread;
mod workloads;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessRequest, AuditEvent, AuditKind, ErrorCode, Grant, GrantState, RequestKind, RequestState,
};
use tokio::sync::{Notify, broadcast, watch};

use crate::audit::{self, NewAuditEvent};
use crate::credential::Signer;
use crate::error::{Error, Result};
use crate::policy::{Policy, RoleDef};
use crate::store::{Lease, Store, StoreError, Tx};
use crate::target::ssh::{Authorities as SshAuthorities, Authority as SshAuthority};

pub use hoist_api::SYSTEM_ACTOR;
const EVENT_BUFFER: usize = 4096;
/// How many times [`again_while_contended`] tries work whose reads (or
/// policy) keep being changed under it before it gives the error. Each
/// change that fails a try is another's committed work or a reload, so
/// this is reached only by a crowd acting on one request at once.
const CONTENDED_TRIES: usize = 16;

/// Runs `attempt` again, up to [`CONTENDED_TRIES`] times in all, while it
/// fails because something it read changed before it could commit
/// (`StoreError::Contended`): nothing of such a try was written.
fn again_while_contended<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(Error::Store(StoreError::Contended(_))) if tries < CONTENDED_TRIES => tries += 1,
            done => return done,
        }
    }
}

/// Something that changed, sent to live subscribers after it was committed.
#[derive(Debug, Clone)]
pub enum Change {
    Request(AccessRequest),
    Grant(Grant),
    /// Changes may have been missed (another instance's, while listening
    /// for them was interrupted): every stream tells its client to fetch
    /// everything again.
    Resync,
}

impl Change {
    /// When the reaper has something to record about what changed: a
    /// pending request's time-out, an approved request's start, an active
    /// grant's end (what the store's `due_*` queries find).
    fn falls_due(&self) -> Option<DateTime<Utc>> {
        match self {
            Change::Request(request) => match request.state {
                RequestState::Pending => request.lapses_at,
                RequestState::Approved => {
                    Some(request.starts_at.unwrap_or(DateTime::<Utc>::MIN_UTC))
                }
                _ => None,
            },
            Change::Grant(grant) => (grant.state == GrantState::Active).then_some(grant.expires_at),
            Change::Resync => None,
        }
    }
}

/// How long a KRL served answers every ask while nothing changes here (a
/// change made on another instance is heard, and counts, as well).
pub const KRL_KEPT: Duration = Duration::from_secs(1);

/// The KRL last read: when, as of which change, and what it was (`None`:
/// the read failed).
type KeptKrl = (std::time::Instant, u64, Option<Vec<u8>>);

/// The KRL could not be read (a moment ago): nothing was done, try again.
fn krl_unavailable() -> Error {
    Error::Store(StoreError::Unavailable(
        "the KRL could not be read from the database".into(),
    ))
}

/// `Broker::reaper_at` while the reaper looks.
const LOOKING: i64 = i64::MAX;
/// `Broker::reaper_missed` when no change came while the reaper looked.
const NONE_MISSED: i64 = i64::MAX;

pub struct Broker {
    store: Arc<dyn Store>,
    verifier: crate::oidc::Verifier,
    policy: ArcSwap<Policy>,
    signer: Arc<Signer>,
    /// The SSH user CAs ssh targets sign certificates with: the broker's,
    /// and those of the targets with their own, made as policies name them.
    ssh_cas: ArcSwap<SshAuthorities>,
    changes: broadcast::Sender<Change>,
    /// Wakes the reaper when something new may fall due sooner.
    reaper: Notify,
    /// When the reaper looks next, in Unix milliseconds; [`LOOKING`] while
    /// it is looking (see [`Broker::reaper_looks`]).
    reaper_at: AtomicI64,
    /// The soonest that a change committed while the reaper looked falls
    /// due, in Unix milliseconds ([`NONE_MISSED`]: none).
    reaper_missed: AtomicI64,
    /// Holds the reaper back while true, so tests can read past an end that
    /// nothing has recorded yet (`testing` feature).
    reaper_held: watch::Sender<bool>,
    /// Provider identities (issuer, subject) already bound to a user, as
    /// the store has them; a binding never changes once made.
    bindings: RwLock<HashMap<(String, String), String>>,
    /// Provider identities the policy links to a user the store already
    /// binds another identity to, with that user and the reload count they
    /// were found under: not bound, and not looked for again until the
    /// policy changes (see [`Broker::keep_link`]).
    unbound_links: RwLock<HashMap<(String, String), (String, u64)>>,
    /// What fell due and could not be recorded at the reaper's last look,
    /// already logged (see [`Broker::reap`]).
    reaper_stuck: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Target effects the outbox's last look could not read (the effect
    /// or its grant).
    effects_unread: unread::Unread,
    /// Notifications the worker's last look could not read.
    notifications_unread: unread::Unread,
    /// Counts policy reloads, so live streams can check their caller again.
    reloads: watch::Sender<u64>,
    /// Commits under way, which a reload's sweep waits for (see `gate`).
    gate: gate::Gate,
    /// Bumped at every change this instance commits or hears of.
    changed: std::sync::atomic::AtomicU64,
    /// The SSH KRL last served, with when and as of which change: anyone
    /// may ask for it, so a flood of asks costs one store read at a time,
    /// and at most one a [`KRL_KEPT`] while nothing changes.
    krl: tokio::sync::Mutex<Option<KeptKrl>>,
    limits: ArcSwap<limits::Limits>,
    uses: limits::Uses,
    /// Wakes the outbox worker when an effect was written.
    outbox: Arc<Notify>,
    /// Wakes the reconciler for a pass now.
    reconciler: Arc<Notify>,
    /// Counts the reconciler's passes over every target on this instance.
    reconciled: watch::Sender<u64>,
    /// Wakes the notification worker when something was audited.
    notifier: Arc<Notify>,
    /// The reminders (dedup keys) this instance wrote and that are still
    /// due, so a pass does not write them again.
    reminded: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The lease this instance last took ([`leadership`](crate::leadership)
    /// keeps it), which fences the jobs' transactions; never cleared, so a
    /// job still running when the lease is lost writes nothing once
    /// another instance holds it.
    lease: watch::Sender<Option<Lease>>,
    /// Until when this instance leads by its own clock (`None`: it does
    /// not), as [`leadership`](crate::leadership) keeps it: the outbox asks
    /// just before each call to a target.
    term: watch::Sender<Option<tokio::time::Instant>>,
}

pub use identities::{Authenticated, SignIn};
pub use limits::REPEAT_WINDOW;
pub use purge::{DELIVERIES_KEPT, EXCHANGES_KEPT, IDEMPOTENCY_KEPT, PURGE_BATCH, Purged};
pub use reviews::FromSlack;
pub use slack::{SLACK_UNKNOWN, slack_actor};
pub use workloads::{Exchanged, LAPSE_MARGIN_SECS, POLL_INTERVAL_SECS, Refusal, UNVERIFIED_ACTOR};

pub use crate::clock::now;

/// The `updated_at` of a request or an access changed at `now` that was
/// last changed at `previous`: strictly later, whatever the clocks of the
/// instances that made the two changes, so that a client told of both in
/// either order keeps the newer (`AccessRequest::is_older_than`).
fn next_change(now: DateTime<Utc>, previous: DateTime<Utc>) -> DateTime<Utc> {
    now.max(previous + chrono::TimeDelta::milliseconds(1))
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

/// `secs` as a span to add to a time, never past the longest grant there is
/// ([`hoist_api::MAX_DURATION_SECS`], which input is held to already): a
/// larger stored value cannot make the addition overflow and panic.
fn delta(secs: u64) -> TimeDelta {
    let secs = secs.min(hoist_api::MAX_DURATION_SECS);
    TimeDelta::seconds(i64::try_from(secs).unwrap_or(0))
}

fn std_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// The state a request is really in at `now`, whatever the store last recorded.
fn settle_request(request: &mut AccessRequest, now: DateTime<Utc>) {
    if request.state == RequestState::Pending && request.lapses_at.is_some_and(|at| at <= now) {
        request.state = RequestState::TimedOut;
    }
    // Approved and waiting for its start, but its window is over: it will
    // never start.
    if request.state == RequestState::Approved && window_end(request).is_some_and(|end| end <= now)
    {
        request.state = RequestState::Expired;
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

/// When a scheduled request's access must end: its start plus its duration.
fn window_end(request: &AccessRequest) -> Option<DateTime<Utc>> {
    match request.kind {
        RequestKind::Access => request
            .starts_at
            .map(|at| at + delta(request.duration_secs)),
        RequestKind::Extension => None,
    }
}

/// A grant as it stands at `now`: never reported active at or after its
/// end, nor its access live past the end its target took
/// (`TargetAccess::live_until`). Every read settles what it shows, events
/// and metrics too: nothing records either moment as it passes.
pub(crate) fn settle_grant(grant: &mut Grant, now: DateTime<Utc>) {
    if grant.state == GrantState::Active && grant.expires_at <= now {
        grant.state = GrantState::Expired;
        grant.ended_at = Some(grant.expires_at);
    }
    // Live access whose extension has not reached its target is live there
    // only until the end the target took.
    if grant.state == GrantState::Active
        && let Some(access) = grant.access.as_mut()
        && access.state == hoist_api::AccessState::Live
        && let Some(until) = access.live_until.filter(|until| *until <= now)
    {
        access.state = hoist_api::AccessState::Failed;
        access.reason = Some(format!(
            "the extension has not reached {}, where the access ended at {}",
            access.target,
            until.to_rfc3339()
        ));
    }
}

fn event(
    kind: AuditKind,
    actor: &str,
    at: DateTime<Utc>,
    request: &AccessRequest,
) -> NewAuditEvent {
    NewAuditEvent {
        subject: Some(request.requester.clone()),
        role: Some(request.role.clone()),
        request_id: Some(request.id.clone()),
        grant_id: request.grant_id.clone(),
        incident: request.incident.clone(),
        ..NewAuditEvent::new(kind, actor, at)
    }
}

fn grant_event(kind: AuditKind, actor: &str, at: DateTime<Utc>, grant: &Grant) -> NewAuditEvent {
    NewAuditEvent {
        subject: Some(grant.holder.clone()),
        role: Some(grant.role.clone()),
        request_id: Some(grant.request_id.clone()),
        grant_id: Some(grant.id.clone()),
        incident: grant.incident.clone(),
        ..NewAuditEvent::new(kind, actor, at)
    }
}

/// One transaction's work, with the changes to announce once it commits.
struct Work<'a> {
    tx: Box<dyn Tx + 'a>,
    changes: Vec<Change>,
    now: DateTime<Utc>,
    /// The policy as it stood when the transaction began (see [`Broker::begin`]).
    policy: Arc<Policy>,
    /// Whether an effect went into the outbox, to wake its worker.
    effects: bool,
    /// Windows of repeated uses this transaction audited the first use of,
    /// opened once it commits.
    uses: Vec<(limits::WindowKey, limits::Window)>,
    /// Ended windows whose counts this transaction summarises, put back if
    /// it does not commit, however it ends.
    ended_uses: limits::Ended<'a>,
    /// The claims a workload request was filed with, by request, once read
    /// (or written) in this transaction: eligibility is asked more than once
    /// on the way to a grant, and on PostgreSQL a read after held writes
    /// would take the writers' lock for a round trip.
    workload_claims: std::collections::HashMap<String, Option<serde_json::Value>>,
    /// The first moment at which something this work relies on as it
    /// stood at `now` ends by time alone: it commits only before it
    /// ([`Tx::commit_before`], [`Work::relies_on_grant`]).
    settled_until: std::cell::Cell<Option<DateTime<Utc>>>,
    /// Whether the work is done again when it meets a change
    /// ([`Broker::optimistically`]).
    again: bool,
}

impl Work<'_> {
    /// What a call sent again with `user`'s idempotency `key` answers: the
    /// request the first call made, settled, if the key was used with the
    /// same body (its `body_hash`); refused if with another; `None` if the
    /// key is new.
    fn replayed(
        &self,
        user: &str,
        key: Option<&str>,
        body_hash: &str,
    ) -> Result<Option<AccessRequest>> {
        let Some(key) = key else {
            return Ok(None);
        };
        let Some((hash, request_id)) = self.tx.idempotency_key(user, key)? else {
            return Ok(None);
        };
        if hash != body_hash {
            return Err(Error::refuse(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was already used with a different request body",
            ));
        }
        let mut request = self
            .tx
            .request(&request_id)?
            .ok_or_else(|| Error::not_found("request", &request_id))?;
        settle_request(&mut request, self.now);
        Ok(Some(request))
    }

    /// Makes the work commit only while `grant` (settled at its moment)
    /// is still active: what gives or keeps access on it (an extension, a
    /// credential, access set up again at its target) must not be
    /// recorded once it ended. What ends or reads a grant relies on
    /// nothing: recorded after the end, it changes nothing.
    fn relies_on_grant(&self, grant: &Grant) {
        if grant.state == GrantState::Active {
            self.relies_until(grant.expires_at);
        }
    }

    /// Makes the work commit only while `request` (settled at its moment)
    /// is still open: a review must not approve a request that lapsed, nor
    /// start one whose window closed, while it waited for its turn.
    fn relies_on_open(&self, request: &AccessRequest) {
        let ends = match request.state {
            RequestState::Pending => request.lapses_at,
            RequestState::Approved => window_end(request),
            _ => None,
        };
        if let Some(at) = ends {
            self.relies_until(at);
        }
    }

    fn relies_until(&self, at: DateTime<Utc>) {
        let until = self.settled_until.get().map_or(at, |until| until.min(at));
        self.settled_until.set(Some(until));
    }

    fn audit(&mut self, mut event: NewAuditEvent) -> Result<AuditEvent> {
        // The broker's own entries say so in the hashed data, not only by
        // the actor's name. A key added to new entries leaves every older
        // entry's hash as it was, so existing logs still verify.
        if event.actor == SYSTEM_ACTOR
            && let Some(details) = event.details.as_object_mut()
        {
            details.insert("system".into(), serde_json::Value::Bool(true));
        }
        Ok(audit::append(self.tx.as_mut(), event)?)
    }

    fn save_request(&mut self, request: &mut AccessRequest) -> Result<()> {
        request.updated_at = next_change(self.now, request.updated_at);
        self.tx.update_request(request)?;
        self.changes.push(Change::Request(request.clone()));
        Ok(())
    }

    fn save_grant(&mut self, grant: &Grant) -> Result<()> {
        self.tx.update_grant(grant)?;
        self.changes.push(Change::Grant(grant.clone()));
        Ok(())
    }

    /// Brings in what a provider last said of `user` when the store knows
    /// a later word than this instance does (see [`Policy::recall`]):
    /// before anything weighs a user who may not be the caller. Another
    /// instance may have seen the provider take them out of a group; an
    /// instance that saw only their earlier token must not count them in
    /// it. A read for each provider user weighed; none for the policy's
    /// own users, whose groups are the policy's.
    pub(super) fn recall(&self, user: &str) -> Result<()> {
        Ok(recall_user(&self.policy, self.tx.as_ref(), user)?)
    }

    /// Why the request's requester may not have its access under the
    /// current policy, if they may not: checked at every step that grants
    /// or prolongs access, inside the transaction that would do it.
    fn ineligible(&mut self, request: &AccessRequest) -> Result<Option<String>> {
        self.recall(&request.requester)?;
        // An incident reference stands for a ticket where it did at filing:
        // on break-glass, and so on an extension of a break-glass grant
        // (which carries the grant's references, filed as a plain request).
        let extension = request.kind == RequestKind::Extension;
        let incident_stands = request.incident.is_some()
            && if extension {
                let grant_id = request.grant_id.as_deref().unwrap_or_default();
                self.tx
                    .grant(grant_id)?
                    .is_some_and(|grant| grant.break_glass)
            } else {
                request.break_glass
            };
        let policy = &self.policy;
        let break_glass = request.break_glass && request.kind == RequestKind::Access;
        let Some(role) = policy
            .role(&request.role)
            .filter(|role| policy.may_hold(&request.requester, role, break_glass))
        else {
            return Ok(Some(format!(
                "{} is no longer eligible for role `{}`",
                request.requester, request.role
            )));
        };
        // The role's ticket rule as it is now, not as it was at filing. A
        // workload files by its rule and its token, never with a ticket.
        if !hoist_api::is_workload(&request.requester)
            && let Err(refused) =
                crate::domain::ticket_terms(role, request.ticket.as_deref(), incident_stands)
        {
            let again = match &request.grant_id {
                Some(grant) if extension => format!(
                    "grant {grant} is not extended without one: once it ends (revoke it to end \
                     it now), file a new request with a ticket"
                ),
                _ => "file it again".to_string(),
            };
            return Ok(Some(format!("{refused} now; {again}")));
        }
        // The role's step-up as it is now: the sign-in the request was
        // filed with, weighed at its filing, as a filing is weighed.
        if let (Some(limit), Some(at)) = (role.step_up, request.signed_in_at) {
            let age = (request.created_at - at).to_std().unwrap_or_default();
            if age > limit {
                return Ok(Some(format!(
                    "role `{}` now needs a sign-in within {} of filing; {} signed in {} \
                     before filing it: sign in again and {}",
                    role.id,
                    humantime::format_duration(limit),
                    request.requester,
                    humantime::format_duration(std::time::Duration::from_secs(age.as_secs())),
                    if extension {
                        "ask for the extension again"
                    } else {
                        "file it again"
                    }
                )));
            }
        }
        Ok(self
            .workload_refusal(&request.requester, &request.id)?
            .map(|what| {
                format!(
                    "the token {} filed with no longer matches its rule's {what}",
                    request.requester
                )
            }))
    }

    /// For a workload's request (and its grant), what of the claims its
    /// token was verified with the rule in force no longer admits (the
    /// principal names only its subject, which eligibility checks): pinned
    /// claims, issuer and audience. A request whose exchange is not kept
    /// (made before claims were) is judged by its subject alone.
    fn workload_refusal(&mut self, holder: &str, request_id: &str) -> Result<Option<String>> {
        if !hoist_api::is_workload(holder) {
            return Ok(None);
        }
        let policy = Arc::clone(&self.policy);
        let Some(rule) = policy.workload_rule_of(holder) else {
            return Ok(None);
        };
        if !self.workload_claims.contains_key(request_id) {
            let claims = self.tx.workload_claims(request_id)?;
            self.workload_claims.insert(request_id.to_string(), claims);
        }
        Ok(self.workload_claims[request_id]
            .as_ref()
            .and_then(|claims| rule.refusal(claims)))
    }

    /// Ends a request that will not be granted, with the reason its
    /// requester sees, audited as the broker's act.
    fn cancel(&mut self, request: &mut AccessRequest, reason: String) -> Result<()> {
        request.state = RequestState::Cancelled;
        request.reason = Some(reason);
        request.lapses_at = None;
        request.claim = None;
        self.save_request(request)?;
        let mut cancelled = event(AuditKind::Cancelled, SYSTEM_ACTOR, self.now, request);
        cancelled.reason = request.reason.clone();
        self.audit(cancelled)?;
        Ok(())
    }
}

/// What a holder wants their grant for; it words the refusals.
#[derive(Debug, Clone, Copy)]
enum HolderAct {
    Extend,
    FetchCredential,
}

impl HolderAct {
    fn not_holder(self) -> &'static str {
        match self {
            HolderAct::Extend => "only the holder may extend a grant",
            HolderAct::FetchCredential => "only the holder may fetch a grant's credential",
        }
    }

    fn not_active(self, id: &str, state: GrantState) -> String {
        let state = state.as_str();
        match self {
            HolderAct::Extend => {
                format!("grant {id} is {state}; only active grants can be extended")
            }
            HolderAct::FetchCredential => {
                format!("grant {id} is {state}; credentials are issued only for active grants")
            }
        }
    }
}

impl Broker {
    pub fn new(store: Arc<dyn Store>, policy: Policy) -> Result<Self> {
        let signer = Signer::load_or_create(store.as_ref())?;
        let ssh_ca = SshAuthority::load_or_create(store.as_ref())?;
        Self::with_keys(store, policy, signer, ssh_ca)
    }

    /// A broker that signs credentials with `signer` and SSH certificates
    /// with `ssh_ca` (either a key kept outside the store, or the store's).
    pub fn with_keys(
        store: Arc<dyn Store>,
        policy: Policy,
        signer: Signer,
        ssh_ca: SshAuthority,
    ) -> Result<Self> {
        let (changes, _) = broadcast::channel(EVENT_BUFFER);
        let broker = Broker {
            store,
            verifier: crate::oidc::Verifier::new(),
            limits: ArcSwap::from_pointee(limits::Limits::new(&policy.settings)),
            policy: ArcSwap::from_pointee(policy),
            signer: Arc::new(signer),
            ssh_cas: ArcSwap::from_pointee(SshAuthorities::new(Arc::new(ssh_ca))),
            changes,
            reaper: Notify::new(),
            reaper_at: AtomicI64::new(LOOKING),
            reaper_missed: AtomicI64::new(NONE_MISSED),
            reaper_held: watch::Sender::new(false),
            bindings: RwLock::default(),
            unbound_links: RwLock::default(),
            reaper_stuck: std::sync::Mutex::default(),
            effects_unread: unread::Unread::default(),
            notifications_unread: unread::Unread::default(),
            reloads: watch::Sender::new(0),
            gate: gate::Gate::default(),
            changed: std::sync::atomic::AtomicU64::new(0),
            krl: tokio::sync::Mutex::new(None),
            uses: limits::Uses::default(),
            outbox: Arc::new(Notify::new()),
            reconciler: Arc::new(Notify::new()),
            reconciled: watch::Sender::new(0),
            notifier: Arc::new(Notify::new()),
            reminded: Default::default(),
            lease: watch::Sender::new(None),
            term: watch::Sender::new(None),
        };
        broker.keep_ssh_cas(&broker.policy())?;
        Ok(broker)
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The SSH user CAs: the broker's, and the ssh targets' own.
    pub fn ssh_cas(&self) -> Arc<SshAuthorities> {
        self.ssh_cas.load_full()
    }

    /// Readies the SSH CAs of `policy`'s ssh targets before it is in
    /// force. The broker's CA is bound to the one target it signs for, the
    /// first time a policy gives it one, and a policy that gives it another
    /// is refused: the first target's hosts still trust it, and would let
    /// in the other's certificates (a target dropped and another added, or
    /// another instance's policy). Each target with a CA of its own
    /// (`ca = "own"`) gets it loaded, made and kept in the store the first
    /// time, so its hosts can trust the CA before any certificate is signed
    /// with it. Once loaded, a CA stays for the life of the process,
    /// whatever later policies say.
    pub fn keep_ssh_cas(&self, policy: &Policy) -> Result<()> {
        let brokers = crate::target::ssh::brokers_target(&policy.targets);
        let refuse = |name: &str, bound: &str| {
            Error::refuse(
                ErrorCode::InvalidState,
                crate::target::ssh::brokers_ca_bound_elsewhere(name, bound),
            )
        };
        // Looked at before anything is made, so that a policy refused for
        // it makes no own CA; bound at the end, where two instances racing
        // take turns.
        if let Some(name) = brokers {
            let snapshot = self.store.snapshot()?;
            let bound = self
                .ssh_cas
                .load()
                .broker()
                .bound_target(snapshot.as_ref())?;
            if let Some(bound) = bound.filter(|bound| bound != name) {
                return Err(refuse(name, &bound));
            }
        }
        for target in policy.targets.iter().filter(|t| t.own_ssh_ca()) {
            let name = target.name();
            if self.ssh_cas.load().own(name).is_some() {
                continue;
            }
            let ca = Arc::new(SshAuthority::load_or_create_target(
                self.store.as_ref(),
                name,
            )?);
            tracing::info!(
                target = name,
                "the ssh target's own CA: {}",
                ca.public_key()
            );
            self.ssh_cas.rcu(|cas| cas.with(name, Arc::clone(&ca)));
        }
        // Last: a policy whose own CAs cannot be loaded binds nothing.
        if let Some(name) = brokers {
            let bound = self
                .ssh_cas
                .load()
                .broker()
                .bind(self.store.as_ref(), name)?;
            if bound != name {
                return Err(refuse(name, &bound));
            }
        }
        Ok(())
    }

    /// The SSH KRL as served: kept for [`KRL_KEPT`] while nothing changes,
    /// and read by one caller at a time, the others waiting for its answer.
    /// The read runs to its end in a task of its own, so a caller that goes
    /// away lets no second read start beside it; one that failed answers
    /// the callers of the next [`KRL_KEPT`] at once, as unavailable.
    pub async fn ssh_krl_served(self: &Arc<Self>) -> Result<Vec<u8>> {
        let broker = Arc::clone(self);
        let served = tokio::spawn(async move {
            let mut kept = broker.krl.lock().await;
            let changed = broker.changed.load(Ordering::SeqCst);
            if let Some((at, seen, krl)) = kept.as_ref()
                && *seen == changed
                && at.elapsed() < KRL_KEPT
            {
                return krl.clone().ok_or_else(krl_unavailable);
            }
            let reading = Arc::clone(&broker);
            let krl = tokio::task::spawn_blocking(move || reading.ssh_krl()).await;
            let krl = match krl {
                Ok(krl) => krl,
                Err(err) => {
                    tracing::error!(error = %err, "the KRL task failed");
                    Err(krl_unavailable())
                }
            };
            *kept = Some((
                std::time::Instant::now(),
                changed,
                krl.as_ref().ok().cloned(),
            ));
            krl
        });
        served.await.map_err(|err| {
            tracing::error!(error = %err, "the KRL task failed");
            krl_unavailable()
        })?
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Passes what another instance committed to this one's live streams,
    /// read as it is stored now, and wakes the reaper, the notification
    /// worker and, when the sender queued target effects (or did not say),
    /// the outbox worker: a grant filed there may end or need a target
    /// here, on the leader. With no stream open here, it reads nothing when
    /// the sender said when the changes fall due: that is all the reaper
    /// needs.
    pub fn relay(&self, announcement: crate::store::Announcement) -> Result<()> {
        use crate::store::Announcement;
        let effects = match &announcement {
            Announcement::Missed => true,
            Announcement::Changed { effects, .. } => *effects,
        };
        let changes = match announcement {
            Announcement::Missed => vec![Change::Resync],
            Announcement::Changed { due: Some(due), .. } if self.changes.receiver_count() == 0 => {
                self.wake_reaper_by(due);
                Vec::new()
            }
            Announcement::Changed {
                requests, grants, ..
            } => {
                let tx = self.store.read()?;
                let mut changes = Vec::new();
                for id in &requests {
                    if let Some(request) = tx.request(id)? {
                        changes.push(Change::Request(request));
                    }
                }
                for id in &grants {
                    if let Some(grant) = tx.grant(id)? {
                        changes.push(Change::Grant(grant));
                    }
                }
                drop(tx);
                changes
            }
        };
        self.wake_reaper_for(&changes);
        if !changes.is_empty() {
            self.changed.fetch_add(1, Ordering::SeqCst);
        }
        for change in changes {
            let _ = self.changes.send(change);
        }
        if effects {
            self.outbox.notify_one();
        }
        self.notifier.notify_one();
        Ok(())
    }

    /// Wakes the notification worker (something new may need telling).
    pub fn notifier_wakeup(&self) -> &Arc<Notify> {
        &self.notifier
    }

    pub fn reaper_wakeup(&self) -> &Notify {
        &self.reaper
    }

    /// The reaper starts to look. A change committed from now on may come
    /// after its reads; [`Broker::reaper_looked`] takes those into account.
    pub fn reaper_looks(&self) {
        self.reaper_at.store(LOOKING, Ordering::SeqCst);
        self.reaper_missed.store(NONE_MISSED, Ordering::SeqCst);
    }

    /// The reaper looked and would look next at `next` (at the latest:
    /// past `latest` it looks anyway). Returns when it looks next: earlier
    /// than that if a change committed while it looked falls due sooner.
    /// Until then, a change wakes it only if it falls due sooner: most
    /// changes fall due long after (a grant's end, a request's time-out),
    /// and each look is a transaction of its own that takes the store's
    /// lock. Changes committed while it looks do not wake it at once
    /// either: under a steady load some always are, and each would start
    /// another look as soon as one ends.
    pub fn reaper_looked(
        &self,
        next: Option<DateTime<Utc>>,
        latest: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let next = next.map_or(latest, |next| next.min(latest));
        // In this order, against `wake_reaper_by`'s: a change either is
        // among the missed ones read here, or sees when the reaper looks
        // next and wakes it if it falls due sooner.
        self.reaper_at
            .store(next.timestamp_millis(), Ordering::SeqCst);
        let missed = self.reaper_missed.swap(NONE_MISSED, Ordering::SeqCst);
        match DateTime::from_timestamp_millis(missed) {
            Some(missed) if missed < next => {
                self.reaper_at
                    .store(missed.timestamp_millis(), Ordering::SeqCst);
                missed
            }
            _ => next,
        }
    }

    /// Wakes the reaper if one of `changes` falls due before it looks next,
    /// or they say anything may have changed.
    fn wake_reaper_for(&self, changes: &[Change]) {
        if changes
            .iter()
            .any(|change| matches!(change, Change::Resync))
        {
            self.reaper.notify_one();
        } else {
            self.wake_reaper_by(changes.iter().filter_map(Change::falls_due).min());
        }
    }

    /// Wakes the reaper if `due` comes before it looks next; while it looks,
    /// keeps `due` for [`Broker::reaper_looked`].
    fn wake_reaper_by(&self, due: Option<DateTime<Utc>>) {
        let Some(due) = due.map(|due| due.timestamp_millis()) else {
            return;
        };
        self.reaper_missed.fetch_min(due, Ordering::SeqCst);
        let at = self.reaper_at.load(Ordering::SeqCst);
        if at != LOOKING && due < at {
            self.reaper.notify_one();
        }
    }

    /// Changes at every policy reload (after the new policy is in force).
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Whether the reaper is held back (see [`Broker::hold_reaper`]).
    pub fn reaper_held(&self) -> watch::Receiver<bool> {
        self.reaper_held.subscribe()
    }

    /// Holds the reaper back (or lets it go), so that a test reads past an
    /// end before anything records it: reads must settle by themselves.
    #[cfg(feature = "testing")]
    pub fn hold_reaper(&self, held: bool) {
        self.reaper_held.send_replace(held);
    }

    /// Holds every commit that changes something just after its check of
    /// the policy (or lets them go), so that a test reloads in between.
    #[cfg(feature = "testing")]
    pub fn hold_commits(&self, held: bool) {
        self.gate.hold(held);
    }

    /// How many commits are held now (see [`Broker::hold_commits`]).
    #[cfg(feature = "testing")]
    pub fn commits_held(&self) -> usize {
        self.gate.holding()
    }

    /// Starts a transaction, then reads the policy. A reload swaps the
    /// policy before its own transaction revokes what the new one no longer
    /// allows, so a transaction that grants access must either commit
    /// before that sweep (which then sees its grant) or read the new
    /// policy. A store may take its lock only with the transaction's first
    /// statement (PostgreSQL does), so [`Broker::finish`] checks the policy
    /// is still the one read here.
    fn begin(&self) -> Result<Work<'_>> {
        self.begin_with(self.store.transaction()?)
    }

    /// Does `work` in an optimistic transaction ([`Store::optimistic`]),
    /// which holds the other writers up only while it commits, and does it
    /// again, from the start, while another transaction changed what it
    /// read before it could commit: nothing of a try that met a change was
    /// written, and the next try reads the change.
    fn optimistically<T>(&self, mut work: impl FnMut(Work<'_>) -> Result<T>) -> Result<T> {
        again_while_contended(|| {
            let mut begun = self.begin_with(self.store.optimistic()?)?;
            begun.again = true;
            work(begun)
        })
    }

    /// A transaction for a job only the leader runs (the reaper, the
    /// outbox and notification workers, the reconciler), fenced with the
    /// lease this instance last took ([`Tx::fence`]): once another
    /// instance holds the lease, it writes nothing. Before this instance
    /// took any (start-up's reap, or a broker no leadership loop runs), it
    /// is an ordinary transaction.
    fn job_transaction(&self) -> Result<Box<dyn Tx + '_>> {
        let lease = self.lease.borrow().clone();
        let mut tx = self.store.transaction()?;
        if let Some(lease) = lease {
            tx.fence(&lease)?;
        }
        Ok(tx)
    }

    /// [`Broker::begin`] with [`Broker::job_transaction`].
    fn begin_job(&self) -> Result<Work<'_>> {
        self.begin_with(self.job_transaction()?)
    }

    /// Where [`leadership::lead_forever`](crate::leadership::lead_forever)
    /// says which lease this instance took.
    pub fn lease(&self) -> &watch::Sender<Option<Lease>> {
        &self.lease
    }

    /// Where [`leadership::lead_forever`](crate::leadership::lead_forever)
    /// says until when this instance leads.
    pub fn term(&self) -> &watch::Sender<Option<tokio::time::Instant>> {
        &self.term
    }

    fn begin_with<'s>(&'s self, tx: Box<dyn Tx + 's>) -> Result<Work<'s>> {
        Ok(Work {
            tx,
            changes: Vec::new(),
            now: now(),
            policy: self.policy(),
            effects: false,
            uses: Vec::new(),
            ended_uses: limits::Ended::new(&self.uses),
            workload_claims: std::collections::HashMap::new(),
            settled_until: std::cell::Cell::new(None),
            again: false,
        })
    }

    fn finish(&self, work: Work<'_>) -> Result<()> {
        let Work {
            mut tx,
            changes,
            effects,
            policy,
            uses,
            mut ended_uses,
            settled_until,
            again,
            ..
        } = work;
        // Counted from the check to the commit's end: a reload's sweep waits.
        let _deciding = (!changes.is_empty()).then(|| self.gate.enter());
        let committed = (|| -> Result<()> {
            if !changes.is_empty() && !Arc::ptr_eq(&policy, &self.policy.load()) {
                // Reloaded since `begin`: the reload's sweep may have gone
                // before this transaction's first statement, and would not
                // see what it writes. Nothing is written; done again, the
                // work reads the new policy.
                return Err(StoreError::Contended(
                    "the policy was reloaded while this was decided; nothing was written".into(),
                )
                .into());
            }
            #[cfg(feature = "testing")]
            if !changes.is_empty() {
                self.gate.pause();
            }
            if !changes.is_empty() {
                // Other instances sharing the database hear of it at commit.
                let (requests, grants): (Vec<&str>, Vec<&str>) = (
                    changes
                        .iter()
                        .filter_map(|c| match c {
                            Change::Request(r) => Some(r.id.as_str()),
                            _ => None,
                        })
                        .collect(),
                    changes
                        .iter()
                        .filter_map(|c| match c {
                            Change::Grant(g) => Some(g.id.as_str()),
                            _ => None,
                        })
                        .collect(),
                );
                let due = changes.iter().filter_map(Change::falls_due).min();
                tx.announce(&requests, &grants, due, effects)?;
            }
            if let Some(at) = settled_until.get() {
                tx.commit_before(at);
            }
            Ok(tx.commit()?)
        })();
        let settled_until = settled_until.get();
        let committed = committed.map_err(|err| match err {
            // What was settled ended by time while the turn was waited
            // for. Work done again sees it ended; other work says so.
            Error::Store(StoreError::Contended(_))
                if !again && settled_until.is_some_and(|at| now() >= at) =>
            {
                Error::refuse(
                    ErrorCode::InvalidState,
                    "the grant or request this acts on reached its end while this was being \
                     done; nothing was done: look at it again",
                )
            }
            other => other,
        });
        if let Err(Error::Store(StoreError::Uncertain(_))) = &committed {
            // Perhaps committed: this instance's streams read everything
            // again rather than miss it (other instances heard of it at
            // commit, if there was one), and its workers look.
            self.changed.fetch_add(1, Ordering::SeqCst);
            let _ = self.changes.send(Change::Resync);
            self.reaper.notify_one();
            self.notifier.notify_one();
            self.outbox.notify_one();
        }
        // Not committed: `ended_uses` puts its windows back as it goes.
        committed?;
        ended_uses.summarised();
        self.uses.open(uses);
        if effects {
            self.outbox.notify_one();
        }
        let wake = !changes.is_empty();
        if wake {
            self.changed.fetch_add(1, Ordering::SeqCst);
        }
        self.wake_reaper_for(&changes);
        for change in changes {
            // No subscribers is not an error.
            let _ = self.changes.send(change);
        }
        if wake {
            self.notifier.notify_one();
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
            Change::Resync => true,
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

    fn visible_request(&self, policy: &Policy, user: &str, request: &AccessRequest) -> bool {
        request.requester == user
            || policy.is_auditor(user)
            || policy
                .role(&request.role)
                .is_some_and(|role| policy.is_approver(user, role))
    }

    fn visible_grant(&self, policy: &Policy, user: &str, grant: &Grant) -> bool {
        grant.holder == user
            || policy.is_auditor(user)
            || policy
                .role(&grant.role)
                .is_some_and(|role| policy.is_approver(user, role))
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

    /// Loads a request for a change, settled to now.
    fn load_request(&self, work: &Work<'_>, id: &str) -> Result<AccessRequest> {
        let mut request = work
            .tx
            .request(id)?
            .ok_or_else(|| Error::not_found("request", id))?;
        settle_request(&mut request, work.now);
        Ok(request)
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

    /// The grant `id`, which `user` must hold, active, on a role they are
    /// still eligible for (a break-glass grant: may still break glass for):
    /// with that role, settled to the work's moment.
    fn held_active_grant<'p>(
        &self,
        work: &Work<'_>,
        policy: &'p Policy,
        user: &str,
        id: &str,
        act: HolderAct,
    ) -> Result<(Grant, &'p RoleDef)> {
        work.recall(user)?;
        let grant = self.load_grant(work, policy, user, id)?;
        if grant.holder != user {
            return Err(Error::refuse(ErrorCode::Forbidden, act.not_holder()));
        }
        if grant.state != GrantState::Active {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                act.not_active(id, grant.state),
            ));
        }
        let role = self.eligible_role(policy, user, &grant.role)?;
        if !policy.may_hold(user, role, grant.break_glass) {
            return Err(Error::refuse(
                ErrorCode::NotEligible,
                format!(
                    "you may no longer break glass for role `{}`: grant {id} stood on it",
                    grant.role
                ),
            ));
        }
        // An extension or a credential of it is given only while it lasts.
        work.relies_on_grant(&grant);
        Ok((grant, role))
    }
}

/// Takes in what the database remembers of `user`'s groups (the latest
/// token any instance saw from them; see [`Policy::recall`]), for a person
/// the policy does not define.
pub(crate) fn recall_user(policy: &Policy, tx: &dyn Tx, user: &str) -> crate::store::Result<()> {
    if hoist_api::is_workload(user) || policy.defines(user) {
        return Ok(());
    }
    if let Some(seen) = tx.remembered(user)? {
        policy.recall(user, &seen);
    }
    Ok(())
}

/// Takes in the store's latest word of every provider user who is, or who
/// this instance heard was, an approver of one of `roles`: another
/// instance may have heard a later token, or this one none (an approver
/// who never called it). Policy users are as the policy says; without a
/// provider there is nothing to read.
pub(crate) fn recall_approvers(
    policy: &Policy,
    tx: &dyn Tx,
    roles: &[&RoleDef],
) -> crate::store::Result<()> {
    if policy.oidc.is_empty() || roles.is_empty() {
        return Ok(());
    }
    let mut groups: Vec<String> = roles
        .iter()
        .flat_map(|role| role.approver_groups.iter().cloned())
        .collect();
    groups.sort();
    groups.dedup();
    let mut recalled = std::collections::HashSet::new();
    for (user, kept) in tx.remembered_in(&groups)? {
        policy.recall(&user, &kept);
        recalled.insert(user);
    }
    // Heard here as approvers, but not so in the store (any more).
    let mut heard: Vec<String> = roles
        .iter()
        .flat_map(|role| policy.approvers_of(role))
        .filter(|user| !policy.defines(user) && !recalled.contains(user))
        .collect();
    heard.sort();
    heard.dedup();
    for user in heard {
        if let Some(kept) = tx.remembered(&user)? {
            policy.recall(&user, &kept);
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    /// A removal queued again while the first ran (a credential handed
    /// over as its grant ended) keeps the access `removing` when the first
    /// is done: it is `removed`, and audited so, once the second is.
    #[test]
    fn access_is_removed_once_every_removal_queued_is_done() {
        use crate::target::Ledger;
        use hoist_api::{AccessState, Decision};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
        let text = format!(
            "{}\n[[targets]]\nname = \"hook\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:9/hook\"\nsecret_file = \"{}\"\n{}",
            crate::testing::policy_text(""),
            dir.path().join("secret").display(),
            crate::testing::target_role("k8s-admin", "hook", "cluster = \"prod\"")
        );
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let broker = Broker::new(store, Policy::parse("p", &text).unwrap()).unwrap();
        let (filed, _) = broker
            .create_request(
                "alice",
                &crate::testing::request("k8s-admin", "drain the node pool"),
                None,
            )
            .unwrap();
        let approved = broker
            .review_request("bob", &filed.id, Decision::Approve, None)
            .unwrap();
        let id = approved.grant_id.unwrap();
        let record_all = |broker: &Broker| {
            let due = broker.due_effects(now(), 10, &[]).unwrap();
            assert!(!due.is_empty());
            broker.record_effect(&due[0], Ok(())).unwrap();
        };
        record_all(&broker);
        broker.revoke_grant("alice", &id, Some("done")).unwrap();
        let mut work = broker.begin().unwrap();
        let mut grant = work.tx.grant(&id).unwrap().unwrap();
        work.end_access(&mut grant).unwrap();
        work.save_grant(&grant).unwrap();
        broker.finish(work).unwrap();
        let state = |broker: &Broker| {
            broker
                .store
                .read()
                .unwrap()
                .grant(&id)
                .unwrap()
                .unwrap()
                .access
                .unwrap()
                .state
        };
        record_all(&broker);
        assert_eq!(
            state(&broker),
            AccessState::Removing,
            "the second is still due"
        );
        record_all(&broker);
        assert_eq!(state(&broker), AccessState::Removed);
    }

    /// Of two changes, the second is later, even in the same millisecond or
    /// on an instance whose clock is behind the first's.
    #[test]
    fn each_change_is_later_than_the_one_before() {
        let at = |ms| DateTime::from_timestamp_millis(ms).unwrap();
        assert_eq!(next_change(at(5_000), at(1_000)), at(5_000));
        assert_eq!(next_change(at(5_000), at(5_000)), at(5_001));
        assert_eq!(next_change(at(4_990), at(5_000)), at(5_001));
    }

    /// No stored duration can make a grant's end overflow: it is held to
    /// the longest grant there is.
    #[test]
    fn a_duration_too_long_to_add_is_held_to_the_longest_grant() {
        let now = Utc::now();
        for secs in [u64::MAX, i64::MAX as u64, i64::MAX as u64 / 1000 + 1] {
            assert_eq!(
                now + delta(secs),
                now + TimeDelta::seconds(hoist_api::MAX_DURATION_SECS as i64)
            );
        }
        assert_eq!(delta(90), TimeDelta::seconds(90));
    }

    fn broker(dir: &tempfile::TempDir) -> std::result::Result<Broker, Box<dyn std::error::Error>> {
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("db"))?);
        let policy = Policy::parse("p", &crate::testing::policy_text(""))?;
        Ok(Broker::new(store, policy)?)
    }

    /// A change committed while the reaper looks (after its reads, before
    /// it says when it looks next) brings its next look forward to when
    /// the change falls due, without starting another look at once.
    #[tokio::test]
    async fn a_change_committed_while_the_reaper_looks_brings_its_next_look_forward() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(&dir).unwrap();
        let start = now();
        broker.reaper_looks();
        broker.wake_reaper_by(Some(start + TimeDelta::seconds(1)));
        broker.wake_reaper_by(Some(start + TimeDelta::seconds(30)));
        let next = broker.reaper_looked(
            Some(start + TimeDelta::seconds(60)),
            start + TimeDelta::seconds(5),
        );
        assert_eq!(
            next.timestamp_millis(),
            (start + TimeDelta::seconds(1)).timestamp_millis()
        );
        let woken = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            broker.reaper_wakeup().notified(),
        )
        .await;
        assert!(
            woken.is_err(),
            "a change made while it looked woke it at once"
        );

        // The next look forgets it.
        broker.reaper_looks();
        let next = broker.reaper_looked(None, start + TimeDelta::seconds(5));
        assert_eq!(next, start + TimeDelta::seconds(5));
    }

    /// While it sleeps, a change wakes it only if it falls due before the
    /// reaper looks next.
    #[tokio::test]
    async fn a_change_wakes_the_sleeping_reaper_only_if_it_falls_due_sooner() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(&dir).unwrap();
        let start = now();
        broker.reaper_looks();
        broker.reaper_looked(
            Some(start + TimeDelta::seconds(3)),
            start + TimeDelta::seconds(5),
        );
        let wait = || {
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                broker.reaper_wakeup().notified(),
            )
        };
        broker.wake_reaper_by(Some(start + TimeDelta::seconds(10)));
        assert!(wait().await.is_err(), "a later change woke it");
        broker.wake_reaper_by(Some(start + TimeDelta::seconds(2)));
        assert!(wait().await.is_ok(), "a sooner change did not wake it");
    }
}
