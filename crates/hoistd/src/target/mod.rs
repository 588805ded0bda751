//! Target systems: where a grant's access is created and removed for real
//! (a PostgreSQL login role, an operator's webhook, an SSH certificate),
//! behind one trait so the lifecycle never names a target's client.
//!
//! - [`TargetKind`] is what a kind implements: each operation idempotent,
//!   each failure a [`TargetError`] that says whether to try again.
//! - [`KINDS`] registers the kinds, one line each; a kind is one file
//!   (`postgres.rs`, `webhook.rs`, `ssh.rs`) with the same shape: its settings, the
//!   access a role grants there, the operations, its errors.
//! - [`outbox`] runs the persisted effects (provision, deprovision) the
//!   lifecycle writes in the same transaction as the grant change, retrying
//!   with backoff until confirmed; [`reconcile`] compares what the target
//!   holds with the live grants, at start-up and periodically.
//!
//! Both loops drive the broker through [`Ledger`], so this module imports
//! nothing above it.

pub mod openbao;
pub mod outbox;
pub mod postgres;
pub mod reconcile;
pub mod ssh;
pub mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hoist_api::AccessCredential;
use serde::Serialize;

use crate::store::{Delivery, Effect, Store};

pub use crate::clock::now;

/// The kinds a `[[targets]]` entry may name: its `kind`, and how to build
/// one from its settings. Adding a kind is its file and one line here.
pub const KINDS: &[(&str, Configure)] = &[
    ("postgres", postgres::Postgres::configure),
    ("webhook", webhook::Webhook::configure),
    (ssh::KIND, ssh::Ssh::configure),
    (openbao::KIND, openbao::OpenBao::configure),
];

/// Builds a target of one kind from its name and the rest of its
/// `[[targets]]` table (secrets already refused inline, read from where the
/// table points); the error is a sentence for `file:line: ...`.
pub type Configure = fn(name: &str, settings: toml::Table) -> Result<Arc<dyn TargetKind>, String>;

/// Why an operation at a target did not succeed. Either way the lifecycle
/// retries with backoff; the distinction words the reason people see, and
/// the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target could not be reached or did not answer in time: the same
    /// call may well succeed later.
    #[error("{0} unreachable: {1}")]
    Unreachable(String, String),
    /// The target answered and said no (a missing role, a 4xx, an answer
    /// that is not the contract's): someone must fix something first.
    #[error("{0} refused: {1}")]
    Refused(String, String),
}

impl TargetError {
    pub fn unreachable(target: &str, why: impl fmt::Display) -> Self {
        TargetError::Unreachable(target.to_string(), shown(why))
    }

    pub fn refused(target: &str, why: impl fmt::Display) -> Self {
        TargetError::Refused(target.to_string(), shown(why))
    }

    /// Whether the target could not be reached (rather than refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TargetError::Unreachable(..))
    }
}

/// Why a target failed, as people read it in the grant's access, the audit
/// log and notices: the target's own words (an OpenBao error, a PostgreSQL
/// message) are not hoist's to trust, so on one line, with nothing a
/// reader cannot see.
fn shown(why: impl fmt::Display) -> String {
    let text = why.to_string();
    let one_line = text.chars().map(|c| match c {
        '\u{2028}' | '\u{2029}' => ' ',
        c if c.is_control() => ' ',
        c => c,
    });
    hoist_api::text::visible_chars(one_line).collect()
}

/// What a target is told about a grant: its facts as hoist holds them, and
/// what the role grants there (its `[roles.access]`, checked by the kind
/// when the policy loaded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantFacts {
    pub id: String,
    pub role: String,
    pub holder: String,
    pub starts_at: DateTime<Utc>,
    /// The grant's end as it stands: set when it was approved, moved by
    /// an approved extension, and, for a credential, cut to the access's
    /// `live_until` while the target has not taken a new end.
    pub expires_at: DateTime<Utc>,
    pub access: serde_json::Value,
    pub justification: String,
    pub ticket: Option<String>,
    pub incident: Option<String>,
}

/// Access found at a target that this layer created: its name there and
/// the grant it was made for, if its label says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// The name at the target (a PostgreSQL role name).
    pub name: String,
    pub grant_id: Option<String>,
}

/// Where a kind records what it did, for operators (the webhook's delivery
/// log), and what it must find again (the handles of what it made: an
/// OpenBao token's accessor), and the broker's keys a kind signs with (the
/// SSH user CA). Reads and writes go through the store on the blocking pool.
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn Store>,
    ssh_cas: Arc<ssh::Authorities>,
    signer: Arc<crate::credential::Signer>,
    issuer: String,
    leader_epoch: Option<i64>,
    /// The names of the policy's targets, for a reconciler pass (see
    /// [`Journal::lists_its_own`]); empty outside one.
    policy_targets: Arc<[String]>,
}

impl Journal {
    pub fn new(
        store: Arc<dyn Store>,
        ssh_cas: Arc<ssh::Authorities>,
        signer: Arc<crate::credential::Signer>,
        issuer: String,
    ) -> Self {
        Journal {
            store,
            ssh_cas,
            signer,
            issuer,
            leader_epoch: None,
            policy_targets: Arc::from([]),
        }
    }

    /// The same, for a reconciler pass under a policy whose targets are
    /// `names`.
    pub fn among(mut self, names: Arc<[String]>) -> Self {
        self.policy_targets = names;
        self
    }

    /// Whether target `name`, named in a label, lists that access itself:
    /// the policy still has it (or no pass's targets are known). Access
    /// labelled with a target the policy no longer has is listed by those
    /// at its system, so that it is not left to nobody.
    pub fn lists_its_own(&self, name: &str) -> bool {
        self.policy_targets.is_empty() || self.policy_targets.iter().any(|known| known == name)
    }

    /// The same, acting under the leadership lease of this epoch (see
    /// [`Journal::leader_epoch`]).
    pub fn under_lease(mut self, epoch: Option<i64>) -> Self {
        self.leader_epoch = epoch;
        self
    }

    /// The epoch of the leadership lease this instance acts under, if it
    /// leads: a fencing token for targets that keep the highest they have
    /// seen and refuse calls from an instance that no longer leads (a
    /// webhook's `leader_epoch`). Another instance that took the lease since
    /// has a higher one.
    pub fn leader_epoch(&self) -> Option<i64> {
        self.leader_epoch
    }

    /// A short-lived JWT in which hoistd vouches for itself (`sub` hoistd,
    /// this `aud`), signed with the credential key its JWKS publishes: what
    /// a target verifies to let hoistd sign in (OpenBao's JWT auth).
    pub fn identity_token(
        &self,
        audience: &str,
        ttl: std::time::Duration,
    ) -> Result<String, String> {
        let now = now().timestamp();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": "hoistd",
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs() as i64,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        self.signer.sign(&claims).map_err(|err| err.to_string())
    }

    /// The broker's own URL (`settings.issuer`), which names this
    /// deployment to a target: epochs count within one.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The SSH user CA that signs for ssh target `target` as `signer`
    /// says; none for a target whose own CA is not loaded.
    pub fn ssh_ca_of(&self, target: &str, signer: ssh::Signer) -> Option<&ssh::Authority> {
        self.ssh_cas.of(target, signer)
    }

    /// Records one delivery; a failure to record is logged, never the
    /// reason an operation fails.
    pub async fn delivered(&self, delivery: Delivery) {
        let store = Arc::clone(&self.store);
        let written = tokio::task::spawn_blocking(move || {
            let mut tx = store.transaction()?;
            tx.insert_delivery(&delivery)?;
            tx.commit()
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "delivery not recorded"),
            Err(err) => tracing::warn!(error = %err, "delivery not recorded"),
        }
    }

    /// Records a handle of what `target` made for grant `grant_id` (see
    /// [`crate::store::Tx::insert_handle`]): committed before the call
    /// that made it answers, so its removal can find it.
    pub async fn remember_handle(
        &self,
        target: &str,
        grant_id: &str,
        handle: &str,
    ) -> Result<(), TargetError> {
        let (t, g, h) = (target.to_string(), grant_id.to_string(), handle.to_string());
        self.on_store(target, false, move |tx| tx.insert_handle(&t, &g, &h, now()))
            .await
    }

    /// The handles recorded at `target`: of grant `grant_id`, or of all.
    pub async fn handles(
        &self,
        target: &str,
        grant_id: Option<&str>,
    ) -> Result<Vec<(String, String)>, TargetError> {
        let (t, g) = (target.to_string(), grant_id.map(str::to_string));
        self.on_store(target, true, move |tx| tx.handles(&t, g.as_deref()))
            .await
    }

    /// Whether grant `grant_id`'s access is removed (or it has none, or
    /// is unknown): nothing made for it may be still to come.
    pub async fn access_removed(&self, target: &str, grant_id: &str) -> Result<bool, TargetError> {
        let g = grant_id.to_string();
        self.on_store(target, true, move |tx| {
            Ok(tx.grant(&g)?.is_none_or(|grant| {
                grant
                    .access
                    .is_none_or(|access| access.state == hoist_api::AccessState::Removed)
            }))
        })
        .await
    }

    /// Forgets a handle whose access is gone.
    pub async fn forget_handle(
        &self,
        target: &str,
        grant_id: &str,
        handle: &str,
    ) -> Result<(), TargetError> {
        let (t, g, h) = (target.to_string(), grant_id.to_string(), handle.to_string());
        self.on_store(target, false, move |tx| tx.delete_handle(&t, &g, &h))
            .await
    }

    /// One committed transaction on the blocking pool (read only, or
    /// not); a failure is the target's operation failing, retried as any
    /// other. Handles are facts about the target, so their writes are not
    /// fenced with the lease: a deposed leader's forgetting a handle
    /// follows its own revocation.
    async fn on_store<T: Send + 'static>(
        &self,
        target: &str,
        read_only: bool,
        work: impl FnOnce(&mut dyn crate::store::Tx) -> crate::store::Result<T> + Send + 'static,
    ) -> Result<T, TargetError> {
        let store = Arc::clone(&self.store);
        let done = tokio::task::spawn_blocking(move || {
            let mut tx = if read_only {
                store.read()?
            } else {
                store.transaction()?
            };
            let value = work(&mut *tx)?;
            tx.commit()?;
            Ok::<_, crate::store::StoreError>(value)
        })
        .await;
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(TargetError::unreachable(
                target,
                format!("hoistd's store: {err}"),
            )),
            Err(_) => Err(TargetError::unreachable(
                target,
                "hoistd's store: the task failed",
            )),
        }
    }
}

/// One kind of target system, configured: a `[[targets]]` entry. Every
/// operation is idempotent, so the outbox may run it again after a crash or
/// a timeout without harm.
#[async_trait::async_trait]
pub trait TargetKind: Send + Sync + fmt::Debug {
    /// The `[[targets]]` name.
    fn name(&self) -> &str;
    /// The kind, as the policy writes it (`postgres`, `webhook`).
    fn kind(&self) -> &'static str;
    /// The system its access lives on, to tell whether a reload points the
    /// same name at another (a target holding access may not move: its
    /// removals would run where the access is not). Shown in errors, so
    /// nothing secret: a kind and a host and port, or an origin.
    fn system(&self) -> String {
        self.kind().to_string()
    }
    /// What in its settings the operator should hear of at every load,
    /// though the policy loads (a default that is unsafe off this machine).
    fn cautions(&self) -> Vec<String> {
        Vec::new()
    }
    /// The audience of the token hoistd signs to sign in at this system
    /// (OpenBao's JWT auth), if it signs one. Two systems may not share
    /// one: either could sign in at the other with the token it was sent.
    fn sign_in_audience(&self) -> Option<&str> {
        None
    }
    /// Whether the broker keeps a CA of this target's own to sign its
    /// access with (an ssh target's `ca = "own"`), made when a policy
    /// first names it.
    fn own_ssh_ca(&self) -> bool {
        false
    }
    /// Checks a role's `[roles.access]` table offline, at policy load, and
    /// returns it as the JSON the operations get in [`GrantFacts::access`].
    fn access(&self, table: toml::Table) -> Result<serde_json::Value, String>;
    /// What a grant may have now: what it was `given` at activation,
    /// narrowed to what its role's access says `now` (after a reload),
    /// never more than either. A credential fetched now carries it, and an
    /// extension gives it. The default keeps what was given, for kinds
    /// whose access hoist cannot read (a webhook's). An `Err` says why
    /// nothing is left.
    fn narrow(
        &self,
        given: &serde_json::Value,
        now: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let _ = now;
        Ok(given.clone())
    }
    /// What credentials made with `given` (each certificate, each token)
    /// carry that `narrowed`, what [`TargetKind::narrow`] left of it after
    /// a reload, does not: in words, for the revocation's reason, or
    /// `None` when nothing was taken away. A credential cannot be narrowed
    /// once made, so for a kind with no `narrowed_at_target` this ends a
    /// live grant and takes back what was made for it. By default, any
    /// change.
    fn taken_back(
        &self,
        given: &serde_json::Value,
        narrowed: &serde_json::Value,
    ) -> Option<String> {
        (given != narrowed).then(|| "some of what it was given".to_string())
    }
    /// What to make at the target for a live grant `given` access there,
    /// once a reload leaves its role giving `now` there (`None`: nothing
    /// there any more), for a kind whose access is made once, at
    /// activation (a PostgreSQL role's memberships). `None` for kinds that
    /// make something at each credential fetch (an SSH certificate, an
    /// OpenBao token) and narrow that instead ([`TargetKind::narrow`]).
    fn narrowed_at_target(
        &self,
        given: &serde_json::Value,
        now: Option<&serde_json::Value>,
    ) -> Option<Result<serde_json::Value, String>> {
        let _ = (given, now);
        None
    }
    /// Checks a role's access against the live system (e.g. that every
    /// PostgreSQL role it names exists); run at load where the target
    /// answers.
    async fn validate(&self, access: &serde_json::Value) -> Result<(), TargetError>;
    /// Creates the grant's access, or confirms it is there as it should be.
    async fn provision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError>;
    /// Removes the grant's access, or confirms it is gone.
    async fn deprovision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError>;
    /// Whether the grant's access is there now.
    async fn inspect(&self, grant: &GrantFacts, journal: &Journal) -> Result<bool, TargetError>;
    /// Everything this layer created at the target, for the reconciler; `None`
    /// for a kind that cannot list it (the webhook).
    async fn managed(&self, journal: &Journal) -> Result<Option<Vec<Managed>>, TargetError>;
    /// Removes access found by [`TargetKind::managed`] that no live grant
    /// stands behind.
    async fn remove(&self, found: &Managed, journal: &Journal) -> Result<(), TargetError>;
    /// How the holder uses the access, handed over at the credential fetch
    /// and never kept (a PostgreSQL password is set at this moment); `key`
    /// is a public key the holder sent, for kinds that certify one (SSH),
    /// and ignored by the others.
    async fn credential(
        &self,
        grant: &GrantFacts,
        journal: &Journal,
        key: Option<&ssh::HolderKey>,
    ) -> Result<Option<AccessCredential>, TargetError>;
}

/// [`TargetKind::narrow`] for a kind whose access reads as `A`: both read,
/// cut by `narrowed` (what was given, and the role's access now), and
/// written back.
pub(crate) fn narrow_as<A: serde::de::DeserializeOwned + serde::Serialize>(
    given: &serde_json::Value,
    now: &serde_json::Value,
    narrowed: impl FnOnce(&A, &A) -> Result<A, String>,
) -> Result<serde_json::Value, String> {
    let read = |access: &serde_json::Value| {
        serde_json::from_value::<A>(access.clone()).map_err(|err| err.to_string())
    };
    let narrowed = narrowed(&read(given)?, &read(now)?)?;
    serde_json::to_value(narrowed).map_err(|err| err.to_string())
}

/// [`TargetKind::taken_back`] for a kind whose access reads as `A`: what
/// `lost` names of `given` that `narrowed` no longer has; any change when
/// either does not read.
pub(crate) fn taken_back_as<A: serde::de::DeserializeOwned>(
    given: &serde_json::Value,
    narrowed: &serde_json::Value,
    lost: impl FnOnce(&A, &A) -> Vec<String>,
) -> Option<String> {
    let read = |access: &serde_json::Value| serde_json::from_value::<A>(access.clone()).ok();
    match (read(given), read(narrowed)) {
        (Some(given), Some(narrowed)) => {
            let lost = lost(&given, &narrowed);
            (!lost.is_empty()).then(|| lost.join(", "))
        }
        _ => (given != narrowed).then(|| "some of what it was given".to_string()),
    }
}

/// The policy's targets by name.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    by_name: BTreeMap<String, Arc<dyn TargetKind>>,
    /// Target name -> the systems its `formerly` says it was known as.
    formerly: BTreeMap<String, Vec<String>>,
}

impl Targets {
    /// Whether target `name` is `system`: what its kind says it is now, or
    /// one of the systems its `formerly` names (the same server under
    /// another host name, a receiver whose URL's token was rotated).
    pub fn is(&self, name: &str, system: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|target| target.system() == system)
            || self
                .formerly
                .get(name)
                .is_some_and(|was| was.iter().any(|was| was == system))
    }

    /// Why nothing may be done at target `name` for a grant whose access
    /// was given at `given_at`, when the target now names another system
    /// (the policy was changed while hoistd was down, or instances run
    /// different policies): its removal would run where the access is not,
    /// and leave it. `None` when it is that system, when the grant's is not
    /// known (effects queued before hoistd kept it), or when there is no
    /// such target (the caller says so).
    pub fn moved(&self, name: &str, given_at: Option<&str>) -> Option<String> {
        let now = self.by_name.get(name)?.system();
        given_at.filter(|was| !self.is(name, was)).map(|was| {
            format!(
                "target `{name}` now names {now}, but this grant's access was given at {was}; \
                 nothing is done for it until the target names {was} again (or, if both are \
                 one system, lists it in `formerly`)"
            )
        })
    }

    /// Whether target `name` is here every system it is in `before`: the
    /// same system now, and each its `formerly` listed there still listed.
    /// Then access given at it in `before`'s time is where it names here,
    /// whatever any grant's effects recorded.
    pub fn keeps(&self, before: &Targets, name: &str) -> bool {
        match (self.by_name.get(name), before.by_name.get(name)) {
            (Some(now), Some(was)) => {
                now.system() == was.system()
                    && before
                        .formerly
                        .get(name)
                        .is_none_or(|systems| systems.iter().all(|system| self.is(name, system)))
            }
            _ => false,
        }
    }

    /// Every system target `name` is: the one it names, then those its
    /// `formerly` lists.
    pub fn systems_of(&self, name: &str) -> Vec<String> {
        self.by_name
            .get(name)
            .map(|target| target.system())
            .into_iter()
            .chain(self.formerly.get(name).into_iter().flatten().cloned())
            .collect()
    }

    /// Records that target `name` was known as these systems before.
    pub fn set_formerly(&mut self, name: &str, systems: Vec<String>) {
        if !systems.is_empty() {
            self.formerly.insert(name.to_string(), systems);
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn TargetKind>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn TargetKind>> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// These targets, and those of `other` under names none of these has
    /// (with what their `formerly` lists), but never a second ssh target
    /// signed by the broker's CA (see `policy/targets.rs`): an ssh target
    /// removes nothing at its hosts, so leaving one out strands no access.
    pub fn with_added(&self, other: &Targets) -> Targets {
        let mut all = self.clone();
        for (name, target) in &other.by_name {
            if ssh::brokers_target(other) == Some(name.as_str())
                && ssh::brokers_target(&all).is_some()
            {
                continue;
            }
            if all.insert(Arc::clone(target))
                && let Some(systems) = other.formerly.get(name)
            {
                all.set_formerly(name, systems.clone());
            }
        }
        all
    }

    /// Adds a target; false if the name is taken.
    pub fn insert(&mut self, target: Arc<dyn TargetKind>) -> bool {
        let name = target.name().to_string();
        if self.by_name.contains_key(&name) {
            return false;
        }
        self.by_name.insert(name, target);
        true
    }
}

/// Builds the target a `[[targets]]` table describes, by its `kind`.
pub fn configure(
    name: &str,
    kind: &str,
    settings: toml::Table,
) -> Result<Arc<dyn TargetKind>, String> {
    match KINDS.iter().find(|(known, _)| *known == kind) {
        Some((_, configure)) => configure(name, settings),
        None => {
            let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            Err(format!(
                "target `{name}` has kind `{kind}`; known kinds: {}",
                known.join(", ")
            ))
        }
    }
}

/// A secret a target's settings point at: an environment variable or a
/// file, never the policy itself (`<what>_env` / `<what>_file`).
pub fn secret(
    target: &str,
    what: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<String, String> {
    secret_of(&format!("target `{target}`"), what, env, file)
}

/// A secret `owner` (e.g. "target `db1`", "notify channel `ops`") points
/// at: an environment variable or a file, never the policy itself. The
/// error names where it was looked for, never the value.
pub fn secret_of(
    owner: &str,
    what: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<String, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err(format!("{owner}: give {what}_env or {what}_file, not both")),
        (None, None) => Err(format!(
            "{owner} needs {what}_env or {what}_file (secrets are never written in the policy)"
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(value),
            _ => Err(format!(
                "{owner}: environment variable {var} ({what}_env) is not set"
            )),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) => {
                let value = value.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    Err(format!(
                        "{owner}: {} ({what}_file) is empty",
                        path.display()
                    ))
                } else {
                    Ok(value)
                }
            }
            Err(err) => Err(format!(
                "{owner}: cannot read {} ({what}_file): {err}",
                path.display()
            )),
        },
    }
}

/// An answer's body, read as it comes, at most `max` bytes: `Ok(None)` if
/// it is longer (nothing more is read), an error if it broke off.
pub(crate) async fn body_within(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            return Ok(None);
        }
    }
    Ok(Some(body))
}

/// Reads a kind's settings into its own struct, refusing unknown fields,
/// with the target's name in the error.
pub fn settings<T: serde::de::DeserializeOwned>(
    target: &str,
    table: toml::Table,
) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|err: toml::de::Error| format!("target `{target}`: {}", err.message().trim()))
}

/// A duration setting such as `"5s"`.
pub fn duration_setting(target: &str, what: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|err| format!("target `{target}`: {what} \"{text}\": {err}"))
        .and_then(|d| {
            if d.is_zero() {
                Err(format!(
                    "target `{target}`: {what} must be longer than zero"
                ))
            } else {
                Ok(d)
            }
        })
}

/// What the outbox worker and the reconciler need from the lifecycle. The
/// broker implements it: each method is one transaction, and blocks.
pub trait Ledger: Send + Sync + 'static {
    /// The targets of the policy in force.
    fn targets(&self) -> Targets;
    /// Whether this instance still leads by its own clock: checked just
    /// before each call to a target, so a leader paused past its term (its
    /// jobs not yet told) calls none once it wakes.
    fn leads_now(&self) -> bool;
    /// Where kinds record what they did.
    fn journal(&self) -> Journal;
    /// Effects whose next attempt is due at `now`, soonest first, with the
    /// facts of their grant; none at a target in `skip`.
    fn due_effects(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> crate::error::Result<Vec<Due>>;
    /// When the next pending effect falls due.
    fn next_effect_due(&self) -> crate::error::Result<Option<DateTime<Utc>>>;
    /// Records an effect's outcome: its state, the grant's access, the audit
    /// event and the live change, in one transaction.
    fn record_effect(
        &self,
        due: &Due,
        outcome: Result<(), TargetError>,
    ) -> crate::error::Result<()>;
    /// The grants that may hold access at any target: active, or ended
    /// with their removal still pending.
    fn holding(&self) -> crate::error::Result<std::collections::HashSet<String>>;
    /// The grants the reconciler compares a target with.
    fn reconcile_view(&self, target: &str) -> crate::error::Result<reconcile::View>;
    /// Access found missing at the target for a live grant: provision again.
    fn access_missing(&self, grant_id: &str, target: &str) -> crate::error::Result<()>;
    /// Access about to be removed that no live grant stands behind:
    /// recorded before the call, so that its removal is audited even when
    /// the entry cannot be written right after it.
    fn drift_found(&self, target: &str, found: &Managed) -> crate::error::Result<()>;
    /// Access removed that no live grant stood behind: audited, and its
    /// record forgotten, in one transaction.
    fn drift_removed(&self, target: &str, found: &Managed) -> crate::error::Result<()>;
    /// The removals recorded at `target` and not yet audited.
    fn drift_removals(&self, target: &str) -> crate::error::Result<Vec<Managed>>;
    /// Forgets a recorded removal without an entry: the access is still
    /// there, and a grant now stands behind it.
    fn drift_explained(&self, target: &str, name: &str) -> crate::error::Result<()>;
    /// Every system's targets have been reconciled once more: each system
    /// ended a pass since the last time this was said.
    fn reconciled(&self) {}
}

/// A pending effect, due now, and the grant it is for.
#[derive(Debug, Clone)]
pub struct Due {
    pub effect: Effect,
    pub grant: GrantFacts,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target's own words reach people on one line, without what they
    /// could not see.
    #[test]
    fn a_targets_words_are_shown_clean() {
        let refused = TargetError::refused("bao", "permission\u{202E} denied\nat\u{2028}x\u{FE0F}");
        assert_eq!(refused.to_string(), "bao refused: permission denied at x");
        let away = TargetError::unreachable("db", "\u{1b}[31mdown ⚠\u{FE0F}");
        assert_eq!(away.to_string(), "db unreachable:  [31mdown ⚠\u{FE0F}");
    }

    /// A target kept as it was, or with more `formerly`, keeps what was
    /// given at it; one pointed elsewhere, or dropping a `formerly` line,
    /// or gone, does not.
    #[test]
    fn a_target_keeps_what_it_was_only_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let targets = |url: &str, formerly: &[&str]| {
            let mut targets = Targets::default();
            assert!(targets.insert(webhook::test_hook(dir.path(), "hook", url)));
            targets.set_formerly("hook", formerly.iter().map(|s| s.to_string()).collect());
            targets
        };
        let a = targets("https://a.example/hook", &[]);
        let system_a = a.get("hook").unwrap().system();
        let b_formerly_a = targets("https://b.example/hook", &[&system_a]);
        assert!(a.keeps(&a, "hook"));
        assert!(!targets("https://b.example/hook", &[]).keeps(&a, "hook"));
        // Vouching for the old system is still a move: the reload decides.
        assert!(!b_formerly_a.keeps(&a, "hook"));
        assert!(b_formerly_a.keeps(&b_formerly_a, "hook"));
        assert!(!targets("https://b.example/hook", &[]).keeps(&b_formerly_a, "hook"));
        assert!(
            targets(
                "https://b.example/hook",
                &[&system_a, "webhook https://c.example"]
            )
            .keeps(&b_formerly_a, "hook")
        );
        assert!(!Targets::default().keeps(&a, "hook"));
        assert!(!a.keeps(&Targets::default(), "hook"));
    }
}
