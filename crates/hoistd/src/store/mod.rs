//! Persistence behind a trait, so nothing above it names a database.
//!
//! Every operation of the broker runs inside one [`Tx`]. The broker decides
//! and the store keeps: it applies no rule of the lifecycle, and the one
//! hash it computes is an audit entry's link to the head ([`link`]), but
//! it must honour these transaction rules, on which the broker's checks
//! rest (the conformance suite, `store::conformance` with
//! the `testing` feature, checks each of them):
//!
//! 1. A transaction that writes is serialisable against every other: its
//!    reads see no other transaction's uncommitted writes, and no other
//!    transaction's writes land between its reads and its commit. The
//!    broker reads a request or grant, checks its state and writes the
//!    change in one transaction and counts on nothing changing in between.
//!    SQLite: one connection, and `BEGIN IMMEDIATE` takes the write lock
//!    before the first read. A server database, with several brokers on
//!    it, takes an equivalent lock when the transaction starts (e.g. a
//!    transaction-scoped advisory lock), or runs at SERIALIZABLE and
//!    reports a serialisation failure as [`StoreError::Unavailable`] with
//!    nothing written (the broker does not retry by itself).
//!    An optimistic transaction ([`Store::optimistic`]) keeps the same
//!    promise another way: it reads without taking the turn, and takes it
//!    at its commit, where it checks that every read it made still reads
//!    the same; if one does not, it writes nothing and fails with
//!    [`StoreError::Contended`], and the broker does its work again. Until
//!    its commit it may only read and hold back the writes of rule 6: any
//!    other write, a read after a held write, [`Tx::audit_head`] or
//!    [`Tx::flush`] take the turn at once (checking the reads made so far).
//!    A store whose transactions wait their turn anyway (SQLite) gives a
//!    plain transaction.
//! 2. The audit chain cannot fork: [`Tx::append_audit`] links an entry to
//!    the head as it stands when the entry is written, in the same
//!    transaction (by default it reads [`Tx::audit_head`] and inserts; a
//!    server database may link it in the database, under the turn of rule
//!    1, so the head need not travel to the broker and back), and
//!    [`Tx::insert_audit`] refuses an entry at a sequence number already
//!    taken ([`StoreError::Conflict`]). Entries are never changed or
//!    removed once written.
//! 3. [`Tx::insert_review`] refuses a second review of a request by the
//!    same reviewer ([`StoreError::Conflict`]). With the pending-state check
//!    in the same transaction (rule 1), this is what makes a decision count
//!    once.
//! 4. Idempotency keys are unique per requester: a second
//!    [`Tx::insert_idempotency_key`] with the same requester and key is a
//!    [`StoreError::Conflict`]; the same key from another requester is not.
//! 5. Ids are unique: inserting a request, grant or signing key under an id
//!    already taken is a [`StoreError::Conflict`]; updating a request or grant
//!    that does not exist is [`StoreError::NotFound`]. A provider identity
//!    binds to one user and a user to one provider identity: a second
//!    [`Tx::insert_identity`] for either is a [`StoreError::Conflict`].
//! 6. Dropping a transaction without [`Tx::commit`] rolls back everything
//!    it wrote. A transaction that met an error is dropped, never used
//!    again: a server database may already have aborted it. A backend may
//!    hold back the writes of rules 2 to 5 (requests, reviews, grants,
//!    idempotency keys, audit entries) and new target effects, and send
//!    them with the transaction's next call that reads, or with the
//!    commit, to save their round trips: a refusal is then the error of
//!    that call or of [`Tx::commit`], which then commits nothing.
//!    [`Tx::flush`] sends them at once. The other writes report a refusal
//!    at the call.
//! 7. What is written is read back as it was, every field, with times at
//!    millisecond precision; lists come in the order their query documents.
//!    A grant's `access` is part of the grant: written by
//!    [`Tx::insert_grant`] and [`Tx::update_grant`] when present, read back
//!    with it (absent when never written), and never removed.
//! 8. A [`Snapshot`] reads the audit log as it stood when the snapshot was
//!    taken, and holds no lock writers wait for: transactions begin, write
//!    and commit while it is open, and it does not see them. Verifying a
//!    long log reads from one, so the broker goes on writing meanwhile.
//!    SQLite: a read transaction on a connection of its own, in WAL mode.
//! 9. Target effects (the outbox) are kept until done and never removed:
//!    [`Tx::due_effects`] lists only those not done whose next attempt is
//!    at or before the moment asked, soonest first, leaving out the targets
//!    the caller names; an effect id is unique
//!    (a second insert is a [`StoreError::Conflict`]). The broker writes an
//!    effect in the same transaction as the grant change that calls for it,
//!    so with rule 6 no committed change is without its effect.
//! 10. A workload task is exchanged once: [`Tx::insert_exchange`] refuses a
//!     task key already stored ([`StoreError::Conflict`]), and exchanges are
//!     never removed. The broker reads [`Tx::exchange`] and inserts in the
//!     same transaction (rule 1), so of two racing exchanges of one token
//!     exactly one files a request; a server database's unique key makes
//!     the same true across brokers.
//! 11. A broker key is kept for good under its purpose: a second
//!     [`Tx::insert_broker_key`] for a purpose already stored is a
//!     [`StoreError::Conflict`], so of two brokers starting at once on one
//!     database exactly one key is made, and the other reads it.
//! 12. A notification is written once per event and channel: a second
//!     [`Tx::insert_notification`] under an id or a dedup key already
//!     stored is a [`StoreError::Conflict`] that leaves the transaction
//!     usable (the router meets one whenever an event was routed before),
//!     and notifications are never removed. [`Tx::due_notifications`] lists
//!     only those not done whose next attempt is due, leaving out the
//!     channels the caller names, as rule 9 for effects. The routing cursor ([`Tx::notification_cursor`]) starts at
//!     the audit head the schema met, and is read and moved in the same
//!     transaction as the notifications it covers (rule 1).
//! 13. A Slack post is taken once: a second [`Tx::insert_slack_replay`] of
//!     a signature still kept is a [`StoreError::Conflict`], so of two
//!     instances given the same post exactly one acts on it;
//!     [`Tx::purge_slack_replays`] removes only signatures whose post could
//!     no longer pass the timestamp check.
//! 14. A transaction given a moment with [`Tx::commit_before`] commits its
//!     writes only if that moment has not come when it commits, by the
//!     broker's clock ([`crate::clock::now`]) as it stands then; if it has,
//!     nothing is written and the commit fails with
//!     [`StoreError::Contended`]. A server database checks it under the
//!     turn of rule 1, by its own clock moved by how far the broker's is
//!     from it ([`Store::clock_offset`]), once that was read: the broker
//!     decides at a moment read before its transaction's first statement
//!     waits for the turn, and a grant may reach its end during that wait.
//!
//! A backend is chosen by [`open`] from a location: `sqlite:PATH` or a bare
//! path is the embedded [`SqliteStore`] (its schema in
//! `migrations/sqlite/`); `postgres://...` is [`PostgresStore`], for several
//! instances on one database (its schema in `migrations/postgres/`). Another backend implements [`Store`] and [`Tx`],
//! keeps its own migrations, passes the conformance suite, and gets a
//! scheme in [`Location`]; nothing above this module changes.

#[cfg(feature = "testing")]
pub mod conformance;
mod postgres;
mod sqlite;

use std::fmt;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hoist_api::{AccessRequest, AccessState, AuditEvent, Grant, GrantState, RequestState, Review};

pub use postgres::{CA_FILE_ENV, KEPT_STATEMENTS, Migrations, PostgresStore, tls_connector};
pub use sqlite::SqliteStore;

/// Why the store could not do what it was asked, in words that name no
/// database driver. The driver's own message rides along where it helps.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not in the store: {0}")]
    NotFound(String),
    /// A write the stored data refuses: a second row under a unique key
    /// (rules 2 to 5) or another of the schema's constraints.
    #[error("refused by the store: {0}")]
    Conflict(String),
    /// The database cannot be reached or is busy past waiting for; nothing
    /// was written, and the same call may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database stopped answering once a transaction that wrote had
    /// sent its commit, before it said how that went: the writes may have
    /// been committed (and made durable), or not. Work done again may find
    /// them done.
    #[error("database stopped answering at a commit, whose outcome is unknown: {0}")]
    Uncertain(String),
    /// An optimistic transaction read something another transaction
    /// changed before it could commit (rule 1), or the policy it decided
    /// under was reloaded meanwhile (`Broker::finish`); nothing was
    /// written, and the same work done again sees the change.
    #[error("changed meanwhile: {0}")]
    Contended(String),
    #[error("database holds a value the broker cannot read: {0}")]
    Corrupt(String),
    /// An audit entry holds a value of the wrong type for its column,
    /// which only an edit of the database outside hoistd makes.
    #[error("audit entry {seq} {reason}")]
    AlteredAudit { seq: i64, reason: String },
    #[error("database schema version {found} is newer than this hoistd knows ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("the database schema is at version {found}; {known} is expected: run `hoistd migrate`")]
    MigrationsPending { found: i64, known: i64 },
    #[error("no store for `{0}`: give a file path, sqlite:PATH or postgres://...")]
    UnknownLocation(String),
    #[error("database error: {0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What [`StoreError::Contended`] says when a transaction's moment passed
/// before it could commit (rule 14).
pub(crate) const PASSED: &str =
    "what this was decided on ended by time before it could be written; nothing was written";

pub trait Store: Send + Sync + 'static {
    /// Starts a transaction; concurrent transactions wait their turn (rule 1).
    fn transaction(&self) -> Result<Box<dyn Tx + '_>>;
    /// Starts a transaction only read through, for answers that decide
    /// nothing by themselves (a list of work whose every result is recorded
    /// in a transaction that reads its row again is one): its reads see
    /// what was committed when its first one ran. A store may let it skip
    /// the turn writers take (rule 1) and refuse writes through it; by
    /// default it is [`Store::transaction`]. Nothing that reads, decides
    /// and writes uses it: that is a transaction's job.
    fn read(&self) -> Result<Box<dyn Tx + '_>> {
        self.transaction()
    }
    /// Starts an optimistic transaction (rule 1): it takes the writers'
    /// turn only at its commit, so work that reads and then writes holds
    /// the others up only while its writes are made; its commit fails with
    /// [`StoreError::Contended`] if what it read changed meanwhile. By
    /// default it is [`Store::transaction`].
    fn optimistic(&self) -> Result<Box<dyn Tx + '_>> {
        self.transaction()
    }
    /// Takes a consistent read of the audit log that blocks no writer (rule 8).
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>>;
    /// Returns once every commit visible now, to any reader, is durable. A
    /// commit is visible before its sync (SQLite) or flush (PostgreSQL)
    /// ends; a reader that signs what it saw (an audit checkpoint) waits
    /// for this first, or a crash could lose what it signed.
    fn barrier(&self) -> Result<()>;
    /// Whether the store can serve: the database answers and its schema is
    /// the one this hoistd knows. [`StoreError::Unavailable`] while the
    /// database cannot be reached, [`StoreError::MigrationsPending`] while a
    /// migration is still to be applied, [`StoreError::TooNew`] once another
    /// hoistd applied one this one does not know. For readiness checks: it
    /// takes no lock that writers wait for.
    fn ready(&self) -> Result<()>;
    /// Takes or renews the lease that makes `holder` the one instance that
    /// runs the reaper, the outbox worker and the reconciler, for `term`
    /// from now by the database's clock. `Some(epoch)` while `holder`
    /// leads: the epoch grows each time the lease changes hands, so a
    /// leader paused past its term sees that it was replaced, and each
    /// time a holder that stopped leading by its own clock asks again
    /// (`renewing` false), so that what its jobs left under way when they
    /// halted (a target call already sent) carries a lower epoch than what
    /// its new jobs do. `renewing` is true only while `holder` leads
    /// without a break. `None` while another holds a lease that has not
    /// lapsed. An epoch is never below the milliseconds since 1970 when it
    /// began, so a database restored from a backup, whose lease row is
    /// older, still starts a higher one than any target has seen. A store
    /// only one process uses (SQLite) answers one epoch for the process,
    /// above the last process's. The jobs' transactions are fenced with
    /// the lease it answers ([`Tx::fence`]).
    fn lead(&self, holder: &str, term: std::time::Duration, renewing: bool) -> Result<Option<i64>>;
    /// Whether other processes may use the same database (PostgreSQL):
    /// then which of them leads is worth telling operators.
    fn shared(&self) -> bool {
        false
    }
    /// What other instances on the same database commit, as they commit it
    /// (see [`Announcement`]); `None` for a store only one process uses.
    /// Each call starts a listener of its own, which says
    /// [`Announcement::Missed`] each time it starts listening, the first
    /// time included.
    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Announcement>> {
        None
    }
    /// The database server's clock minus this process's, as last read
    /// quickly enough to tell (after each [`Store::lead`], and by
    /// [`Store::measure_clock`]); `None` before it was, and for a store
    /// whose clock is this process's (SQLite). Reads nothing from the
    /// database.
    fn clock_offset(&self) -> Option<chrono::TimeDelta> {
        None
    }
    /// How far [`Store::clock_offset`] may be off: half the round trip of
    /// the reading it came from.
    fn clock_doubt(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::zero()
    }
    /// Reads the database server's clock now and answers
    /// [`Store::clock_offset`]: for an instance starting, before anything
    /// is timed.
    fn measure_clock(&self) -> Result<Option<chrono::TimeDelta>> {
        Ok(None)
    }
    /// Gives the lease up at once, if `holder` has it, so another instance
    /// takes over without waiting for it to lapse (a clean stop).
    fn resign(&self, holder: &str) -> Result<()> {
        let _ = holder;
        Ok(())
    }
    /// The connections this instance holds to the database, for metrics.
    /// Read without waiting for any of them.
    fn connections(&self) -> Connections;
}

/// The lease an instance took with [`Store::lead`]: whose, and at which
/// epoch. The jobs only a leader runs fence their transactions with it
/// ([`Tx::fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: i64,
}

/// What a provider last said of a user bound to one of its identities, as
/// of their latest token: what the broker weighs for them when they are
/// not the caller (an approval of their request, a policy reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The provider of the identity the user is bound to (read only: the
    /// binding is what says it).
    pub issuer: String,
    pub display_name: String,
    pub groups: Vec<String>,
    /// When the provider said it, by its own clock: the token's `iat`.
    /// What two instances saw is ordered by it, the later word winning.
    /// None when not known (written before it was kept, recorded without a
    /// token, or a token without `iat`): older than any date.
    pub as_of: Option<DateTime<Utc>>,
}

impl Remembered {
    /// From the identity row's columns: none until both were written.
    fn from_columns(
        user: &str,
        issuer: String,
        display_name: Option<String>,
        groups: Option<String>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<Remembered>> {
        let (Some(display_name), Some(groups)) = (display_name, groups) else {
            return Ok(None);
        };
        let groups = serde_json::from_str(&groups)
            .map_err(|err| StoreError::Corrupt(format!("groups of {user}: {err}")))?;
        Ok(Some(Remembered {
            issuer,
            display_name,
            groups,
            as_of,
        }))
    }

    /// The groups column: a JSON array.
    fn groups_column(&self) -> Result<String> {
        serde_json::to_string(&self.groups).map_err(|err| StoreError::Other(err.to_string()))
    }
}

/// A store's connections to its database at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connections {
    /// Connections open now.
    pub open: usize,
    /// Of those, connections a transaction or snapshot is using.
    pub in_use: usize,
    /// The most the store opens.
    pub max: usize,
}

/// The store frozen at one moment, read without holding up writers (rule
/// 8): the audit log, a broker key, and whom an SSH CA is bound to.
/// Dropping it ends the read.
pub trait Snapshot {
    /// The newest entry when the snapshot was taken, if any.
    fn audit_head(&self) -> Result<Option<AuditHead>>;
    /// Streams the log as of the snapshot, like [`Tx::scan_audit`].
    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()>;
    /// Like [`Tx::broker_key`].
    fn broker_key(&self, purpose: &str) -> Result<Option<(String, Vec<u8>)>>;
    /// Like [`Tx::ssh_authority_target`].
    fn ssh_authority_target(&self, public_key: &str) -> Result<Option<String>>;
}

/// What another instance committed, for this one's live streams: the ids
/// of the requests and grants it changed (each instance reads the rows
/// itself), or word that some may have been missed (the listener lost its
/// connection), after which every stream is told to resync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    Changed {
        requests: Vec<String>,
        grants: Vec<String>,
        /// When the first of them falls due for the reaper, as the sender
        /// said: `Some(None)` when none does, `None` when it did not say.
        due: Option<Option<DateTime<Utc>>>,
        /// Whether the outbox may hold new target effects: false only when
        /// the sender said it queued none.
        effects: bool,
    },
    Missed,
}

/// Where a store lives, as `hoistd serve --db` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sqlite:PATH`, or a path with no scheme.
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, as libpq reads it. Shown
    /// without its password.
    Postgres(String),
}

impl Location {
    /// Reads a location: `postgres://...`, `sqlite:PATH`, or a bare path.
    /// Anything else that
    /// looks like a URL (`scheme://...`) is refused, naming only its scheme
    /// so no password in it reaches a log.
    pub fn parse(location: &str) -> Result<Location> {
        if let Some(path) = location.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            // Checked now, so a typo is refused before anything starts; the
            // driver's message never repeats the URL.
            let config = location.parse::<tokio_postgres::Config>().map_err(|err| {
                StoreError::UnknownLocation(format!("{}: {err}", postgres::redact(location)))
            })?;
            // The driver ends the user and password at the first `@`: one
            // more, unencoded in either, ends up in the host or the
            // database, and the rest of the password with it, sent to the
            // server and named in messages.
            let at_in_host = config.get_hosts().iter().any(|host| {
                matches!(host, tokio_postgres::config::Host::Tcp(name) if name.contains('@'))
            });
            if at_in_host || config.get_dbname().is_some_and(|db| db.contains('@')) {
                return Err(StoreError::UnknownLocation(format!(
                    "{}: an `@` in the user name or password must be written %40",
                    postgres::redact(location)
                )));
            }
            return Ok(Location::Postgres(location.to_string()));
        }
        if let Some((scheme, _)) = location.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(StoreError::UnknownLocation(format!("{scheme}://")));
        }
        Ok(Location::Sqlite(PathBuf::from(location)))
    }

    /// Opens the store, creating it and bringing its schema up to date.
    pub fn open(&self) -> Result<Arc<dyn Store>> {
        self.open_with(Migrations::Apply)
    }

    /// Opens the store; with [`Migrations::Leave`] its schema is left as it
    /// is (a reader's: `audit verify` on an older copy must not change it).
    pub fn open_with(&self, migrations: Migrations) -> Result<Arc<dyn Store>> {
        match self {
            Location::Sqlite(path) => Ok(Arc::new(SqliteStore::open_with(path, migrations)?)),
            Location::Postgres(url) => Ok(Arc::new(PostgresStore::open(url, migrations)?)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{}", postgres::redact(url)),
        }
    }
}

/// A schema at `found` against the `known` migrations of this hoistd.
fn schema_ready(found: i64, known: i64) -> Result<()> {
    match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(StoreError::MigrationsPending { found, known }),
        std::cmp::Ordering::Greater => Err(StoreError::TooNew { found, known }),
    }
}

/// Opens the store at `location` (see [`Location::parse`]).
pub fn open(location: &str) -> Result<Arc<dyn Store>> {
    Location::parse(location)?.open()
}

/// Which requests to list. Empty lists mean "any". Oldest first by
/// `created_at` (newest first with `newest_first`), requests created in the
/// same millisecond in the order they were inserted (the reverse when
/// newest first).
#[derive(Debug, Default, Clone)]
pub struct RequestQuery {
    pub requester: Option<String>,
    pub roles: Vec<String>,
    pub states: Vec<RequestState>,
    pub incident: Option<String>,
    pub grant_id: Option<String>,
    /// Only break-glass requests nobody has acknowledged yet.
    pub unacknowledged_break_glass: bool,
    pub newest_first: bool,
    pub limit: Option<usize>,
}

/// Which grants to list. Empty lists mean "any". Newest first by
/// `starts_at`, then by id, greatest first.
#[derive(Debug, Default, Clone)]
pub struct GrantQuery {
    pub holder: Option<String>,
    pub role: Option<String>,
    pub states: Vec<GrantState>,
    pub incident: Option<String>,
    /// Only grants whose access is at this target.
    pub target: Option<String>,
    /// Only grants whose access is in one of these states (none: any grant,
    /// with or without a target).
    pub access_states: Vec<AccessState>,
    /// Only grants whose end (`expires_at`) is after this.
    pub ends_after: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
}

impl GrantQuery {
    /// The active grants of a request's role that its requester holds.
    pub fn held_for(request: &AccessRequest) -> Self {
        GrantQuery {
            holder: Some(request.requester.clone()),
            role: Some(request.role.clone()),
            states: vec![GrantState::Active],
            ..GrantQuery::default()
        }
    }

    /// Grants that hold access at a target (at `target`, if named): being
    /// provisioned, live, failed, or being removed; all but removed.
    pub fn holding_access(target: Option<String>) -> Self {
        GrantQuery {
            target,
            access_states: vec![
                AccessState::Provisioning,
                AccessState::Live,
                AccessState::Failed,
                AccessState::Removing,
            ],
            ..GrantQuery::default()
        }
    }
}

/// What the outbox must make true at a target for a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EffectAction {
    Provision,
    Deprovision,
}

impl EffectAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectAction::Provision => "provision",
            EffectAction::Deprovision => "deprovision",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [EffectAction::Provision, EffectAction::Deprovision]
            .into_iter()
            .find(|action| action.as_str() == s)
    }
}

/// One entry of the outbox: an effect at a target, tried until confirmed
/// (a provision until its grant ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub id: String,
    pub grant_id: String,
    pub target: String,
    pub action: EffectAction,
    /// Attempts that failed so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the target confirmed it, or it was superseded; `None` while
    /// it is still to be done.
    pub done_at: Option<DateTime<Utc>>,
    /// What it gives or takes at the target: the role's `[roles.access]` as
    /// the grant was activated with it. `None` for an effect queued before
    /// hoistd kept it (schema version 11 on SQLite, 7 on PostgreSQL).
    pub access: Option<serde_json::Value>,
    /// The system it is for (see [`crate::target::TargetKind::system`]): a
    /// provision's is its target's when it was queued, a deprovision's the
    /// system its grant's access was given at. `None` for an effect queued
    /// before hoistd kept it (schema version 22 on SQLite, 16 on
    /// PostgreSQL).
    pub system: Option<String>,
}

/// An effect's access column: JSON text.
fn access_column(access: Option<&serde_json::Value>) -> Option<String> {
    access.map(serde_json::Value::to_string)
}

/// An effect's access, read back from its column.
fn access_from_column(
    column: Option<String>,
) -> std::result::Result<Option<serde_json::Value>, serde_json::Error> {
    column.map(|text| serde_json::from_str(&text)).transpose()
}

/// One call to a webhook target, as its delivery log keeps it: never its
/// secret, its signature or its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `X-Hoist-Delivery` id.
    pub id: String,
    pub target: String,
    pub action: String,
    pub grant_id: Option<String>,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// One notification to a channel (rule 12): what it says, as JSON the
/// channel's format renders at each attempt, and how its delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The `X-Hoist-Delivery` id, the same at every attempt, so a receiver
    /// can tell a retry from a new notification.
    pub id: String,
    /// Which event on which channel: unique (rule 12).
    pub dedup_key: String,
    pub channel: String,
    pub event: String,
    /// The notice's facts, as JSON text.
    pub notice: String,
    /// Attempts that failed so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up; `None` while it is still to be sent.
    pub done_at: Option<DateTime<Utc>>,
    pub delivered: bool,
}

/// One attempt to deliver a notification, as the delivery log keeps it:
/// never the channel's URL, the secret, the signature or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationDelivery {
    pub notification_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub channel: String,
    pub event: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// One workload token exchanged (rule 10): the task it names, the request
/// it filed, and when its credential was handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The issuer and the token's task id (`jti` or the rule's task claim).
    pub task_key: String,
    pub principal: String,
    pub request_id: String,
    /// When the token ends; polls after that are refused by the token check.
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When the credential was handed over; `None` while the exchange waits
    /// for an approver or for the target.
    pub redeemed_at: Option<DateTime<Utc>>,
    /// The claims of the token the task was filed with, as verified: what
    /// a reload checks the rule against again. Written once; `None` for an
    /// exchange made before they were kept.
    pub claims: Option<serde_json::Value>,
    /// When a task keyed by its token can no longer be collected: its
    /// newest token's end with its rule's leeway (after which no poll is
    /// let in) and an exchange's wait for its target; for any task, the
    /// moment its job withdrew while its credential was being handed over.
    /// `None` once the reaper settled it ([`Tx::uncollected`]), and for a
    /// task keyed by its run that was not withdrawn.
    pub collect_by: Option<DateTime<Utc>>,
}

/// Which audit events to list, oldest first.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub after_seq: i64,
    /// Only events this user did or that are about them.
    pub involving: Option<String>,
    pub incident: Option<String>,
    pub request_id: Option<String>,
    pub limit: Option<usize>,
    /// The newest `limit` entries that match, rather than the oldest; still
    /// listed oldest first.
    pub newest: bool,
}

/// The newest entry of the audit chain: where the next one links.
/// `prev_hash` of the first audit entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry's hash (rule 2): hex SHA-256 over the previous entry's
/// hash, then `{"seq":` and the sequence number in decimal, then `tail`,
/// the rest of the entry's hashed fields as compact JSON (see
/// `crate::audit`). A server database that links entries itself computes
/// exactly this.
pub fn link(prev_hash: &str, seq: i64, tail: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(br#"{"seq":"#);
    hasher.update(seq.to_string().as_bytes());
    hasher.update(tail);
    hex::encode(hasher.finalize())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// An audit entry exactly as stored, borrowed from the store: the text the
/// chain's hashes cover, not decoded (a million of them are read to verify
/// the chain).
#[derive(Debug, Clone, Copy)]
pub struct StoredAudit<'a> {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub subject: Option<&'a str>,
    pub role: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub incident: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// JSON text: the compact form of the entry's `details`, as hashed.
    pub details: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

pub trait Tx {
    fn request(&self, id: &str) -> Result<Option<AccessRequest>>;
    /// The request `id`, and the active grants its requester holds of its
    /// role, the newest first: what an approval reads. A store may read
    /// both in one round trip.
    fn request_with_holding(&self, id: &str) -> Result<Option<(AccessRequest, Vec<Grant>)>> {
        let Some(request) = self.request(id)? else {
            return Ok(None);
        };
        let held = self.grants(&GrantQuery::held_for(&request))?;
        Ok(Some((request, held)))
    }
    /// With each request's reviews, oldest first (by time, then reviewer).
    fn requests(&self, query: &RequestQuery) -> Result<Vec<AccessRequest>>;
    /// Stores the request without its reviews (rule 5).
    fn insert_request(&mut self, request: &AccessRequest) -> Result<()>;
    /// Writes every field that can change after filing (rule 5): its
    /// state and what goes with it, and the approvals it needs (raised
    /// when its role needs more since).
    fn update_request(&mut self, request: &AccessRequest) -> Result<()>;
    /// Refuses a second review by the same reviewer (rule 3).
    fn insert_review(&mut self, request_id: &str, review: &Review) -> Result<()>;

    fn grant(&self, id: &str) -> Result<Option<Grant>>;
    fn grants(&self, query: &GrantQuery) -> Result<Vec<Grant>>;
    fn insert_grant(&mut self, grant: &Grant) -> Result<()>;
    /// Writes every field that can change after activation (rule 5).
    fn update_grant(&mut self, grant: &Grant) -> Result<()>;

    /// Pending requests whose lapse time is at or before `now`, then
    /// approved ones whose start is (none: at once); oldest first, at most
    /// `limit` (a backlog is read a turn's worth at a time).
    fn due_requests(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<AccessRequest>>;
    /// Active grants at or past their end, the soonest ended first, at
    /// most `limit`.
    fn due_grants(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Grant>>;
    /// The ids of what [`Tx::due_requests`] and [`Tx::due_grants`] list,
    /// in their order, at most `limit` of each, read without reading the
    /// rows: what the reaper takes one at a time when a batch of them
    /// cannot be recorded.
    fn due_ids(&self, now: DateTime<Utc>, limit: usize) -> Result<(Vec<String>, Vec<String>)>;
    /// Exchanges not redeemed whose `collect_by` is at or before `now`,
    /// the soonest first, at most `limit`: tasks nobody can collect any
    /// more.
    fn uncollected(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Exchange>>;
    /// The task keys of [`Tx::uncollected`]'s exchanges, in its order:
    /// what the reaper reads when one of them cannot be, to settle each on
    /// its own.
    fn uncollected_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<String>>;
    /// The earliest moment anything above falls due.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>>;

    /// The body hash and request filed under an idempotency key.
    fn idempotency_key(&self, requester: &str, key: &str) -> Result<Option<(String, String)>>;
    /// Refuses a key the requester already used (rule 4).
    fn insert_idempotency_key(
        &mut self,
        requester: &str,
        key: &str,
        body_hash: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets at most `limit` idempotency keys filed before `before`, the
    /// oldest first; how many.
    fn purge_idempotency_keys(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64>;

    /// The newest audit entry, if any (rule 2).
    fn audit_head(&self) -> Result<Option<AuditHead>>;
    /// Saves an entry as given, hash and all; refuses a sequence number
    /// already taken (rule 2). `details` is kept as its compact JSON text.
    fn insert_audit(&mut self, entry: &AuditEvent) -> Result<()>;
    /// Appends `entry` to the chain at the head as it stands when the entry
    /// is written (rule 2), whatever its `seq`, `prev_hash` and `hash` say:
    /// the next sequence number (1 for the first), the head's hash as
    /// `prev_hash` ([`GENESIS`] for the first), and as `hash` the
    /// [`link`] of the two with `tail`, the entry's hashed fields as the
    /// broker serialised them after the sequence number. What is stored is
    /// what [`Tx::insert_audit`] would store of the entry so completed; the
    /// entry passed in may be left as it was (a database that links it
    /// learns its place only when it is written).
    fn append_audit(&mut self, entry: &mut AuditEvent, tail: &[u8]) -> Result<()> {
        let (seq, prev_hash) = match self.audit_head()? {
            Some(head) => (head.seq + 1, head.hash),
            None => (1, GENESIS.to_string()),
        };
        entry.hash = link(&prev_hash, seq, tail);
        entry.seq = seq;
        entry.prev_hash = prev_hash;
        self.insert_audit(entry)
    }
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
    /// Streams the whole log in sequence order, as stored, without loading
    /// it into memory or decoding it.
    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()>;

    /// The user a provider identity (issuer, subject) is bound to.
    fn identity_user(&self, issuer: &str, subject: &str) -> Result<Option<String>>;
    /// The provider identity (issuer, subject) a user is bound to.
    fn user_identity(&self, user: &str) -> Result<Option<(String, String)>>;
    /// Binds a provider identity to a user; refuses an identity or a user
    /// already bound (rule 5).
    fn insert_identity(
        &mut self,
        issuer: &str,
        subject: &str,
        user: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// What a provider last said of `user`: none before their first sign-in
    /// since it was first recorded.
    fn remembered(&self, user: &str) -> Result<Option<Remembered>>;
    /// Every user whose provider last said they are in any of `groups`,
    /// with what it said, by user name.
    fn remembered_in(&self, groups: &[String]) -> Result<Vec<(String, Remembered)>>;
    /// Records what a provider says of `user` now (rule 5: a user bound to
    /// no identity is not found).
    fn remember(&mut self, user: &str, seen: &Remembered) -> Result<()>;

    /// Writes an effect to the outbox (rule 9).
    fn insert_effect(&mut self, effect: &Effect) -> Result<()>;
    /// Writes an effect's attempts, next attempt, last error and done time
    /// (rule 5: one never stored is not found).
    fn update_effect(&mut self, effect: &Effect) -> Result<()>;
    /// A grant's effects, done or not, oldest first.
    fn grant_effects(&self, grant_id: &str) -> Result<Vec<Effect>>;
    /// Effects not done whose next attempt is at or before `now`, soonest
    /// first, then oldest first; at most `limit`, and none at a target in
    /// `skip` (the outbox's targets that are running all they may).
    fn due_effects(&self, now: DateTime<Utc>, limit: usize, skip: &[String])
    -> Result<Vec<Effect>>;
    /// One effect, done or not.
    fn effect(&self, id: &str) -> Result<Option<Effect>>;
    /// The ids of the effects [`Tx::due_effects`] lists, each with its
    /// grant's, in its order: what the outbox reads when one of those
    /// effects, or its grant, cannot be read, to read each on its own
    /// ([`Tx::effect`]).
    fn due_effect_ids(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<(String, String)>>;
    /// When the soonest effect not done is next due.
    fn next_effect_due(&self) -> Result<Option<DateTime<Utc>>>;

    /// Adds an entry to the webhook delivery log.
    fn insert_delivery(&mut self, delivery: &Delivery) -> Result<()>;
    /// The newest deliveries first, at most `limit`.
    fn deliveries(&self, limit: usize) -> Result<Vec<Delivery>>;
    /// Forgets at most `limit` deliveries made before `before`, the oldest
    /// first; how many.
    fn purge_deliveries(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64>;

    /// Records a handle of what `target` made for grant `grant_id` that it
    /// cannot find again by itself without reading all it holds (an
    /// OpenBao token's accessor); one already recorded is kept.
    fn insert_handle(
        &mut self,
        target: &str,
        grant_id: &str,
        handle: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The handles recorded at `target`, of grant `grant_id` or of every
    /// grant: (grant, handle), by grant then handle.
    fn handles(&self, target: &str, grant_id: Option<&str>) -> Result<Vec<(String, String)>>;
    /// Forgets a handle (what it names is gone); one not recorded is no
    /// error.
    fn delete_handle(&mut self, target: &str, grant_id: &str, handle: &str) -> Result<()>;

    /// Records that the reconciler is removing `name` at `target` (made for
    /// `grant_id`, if its label said), before the call; one already
    /// recorded is kept as it was.
    fn insert_drift_removal(
        &mut self,
        target: &str,
        name: &str,
        grant_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The removals recorded at `target` and not yet audited: (name,
    /// grant), by name.
    fn drift_removals(&self, target: &str) -> Result<Vec<(String, Option<String>)>>;
    /// Forgets a removal (audited, or found explained); one not recorded is
    /// no error.
    fn delete_drift_removal(&mut self, target: &str, name: &str) -> Result<()>;

    /// The last audit sequence number routed to notification channels
    /// (rule 12).
    fn notification_cursor(&self) -> Result<i64>;
    fn set_notification_cursor(&mut self, seq: i64) -> Result<()>;
    /// Writes a notification; refuses an id or dedup key already stored,
    /// leaving the transaction usable (rule 12).
    fn insert_notification(&mut self, notification: &Notification) -> Result<()>;
    fn notification(&self, id: &str) -> Result<Option<Notification>>;
    /// Writes a notification's attempts, next attempt, last error, done
    /// time and outcome (rule 5: one never stored is not found).
    fn update_notification(&mut self, notification: &Notification) -> Result<()>;
    /// Notifications not done whose next attempt is at or before `now`,
    /// soonest first, then oldest first; at most `limit`, and none to a
    /// channel in `skip` (the worker's channels sending all they may).
    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Notification>>;
    /// The ids of the notifications [`Tx::due_notifications`] lists, in
    /// its order: what the worker reads when one of them cannot be, to
    /// read each on its own ([`Tx::notification`]).
    fn due_notification_ids(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<String>>;
    /// When the soonest notification not done is next due.
    fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>>;
    /// How many notifications were given up (done, not delivered), ever.
    fn notifications_given_up(&self) -> Result<u64>;
    /// Adds an attempt to the notification delivery log.
    fn insert_notification_delivery(&mut self, delivery: &NotificationDelivery) -> Result<()>;
    /// The newest attempts first, at most `limit`.
    fn notification_deliveries(&self, limit: usize) -> Result<Vec<NotificationDelivery>>;
    /// Forgets at most `limit` attempts made before `before`, the oldest
    /// first; how many.
    fn purge_notification_deliveries(&mut self, before: DateTime<Utc>, limit: usize)
    -> Result<u64>;

    /// The exchange of a workload task, if it was exchanged (rule 10).
    fn exchange(&self, task_key: &str) -> Result<Option<Exchange>>;
    /// The claims kept with the exchange that filed request `request_id`;
    /// none if no exchange filed it or it kept none. Only that column is
    /// read: a later token's poll changes the rest of the row.
    fn workload_claims(&self, request_id: &str) -> Result<Option<serde_json::Value>>;
    /// Records a task's exchange; refuses a task key already stored (rule 10).
    fn insert_exchange(&mut self, exchange: &Exchange) -> Result<()>;
    /// Writes when the credential was handed over, until when the task is
    /// kept (a later token of the same task expires later), and until when
    /// it can be collected (rule 5: one never stored is not found).
    fn update_exchange(&mut self, exchange: &Exchange) -> Result<()>;
    /// Forgets at most `limit` exchanges whose token expired before
    /// `before`, the soonest expired first; how many.
    fn purge_exchanges(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64>;

    /// The newest credential signing key: its id and PKCS#8 document.
    fn signing_key(&self) -> Result<Option<(String, Vec<u8>)>>;
    fn insert_signing_key(&mut self, kid: &str, pkcs8: &[u8], at: DateTime<Utc>) -> Result<()>;
    /// The key kept for `purpose` (e.g. `ssh-user-ca`): its id and PKCS#8
    /// document (rule 11).
    fn broker_key(&self, purpose: &str) -> Result<Option<(String, Vec<u8>)>>;
    /// Every key kept under a purpose that begins with `prefix` (e.g.
    /// `ssh-user-ca:`): its purpose and PKCS#8 document, by purpose.
    fn broker_keys_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Keeps a key for `purpose`; refuses a purpose already stored (rule 11).
    fn insert_broker_key(
        &mut self,
        purpose: &str,
        kid: &str,
        pkcs8: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()>;

    /// Records that `hoistd serve` signs SSH certificates with the CA
    /// whose public key (an OpenSSH line) is `public_key`, as of `at`: the
    /// first time kept, a later one moving only when it was last seen.
    fn note_ssh_authority(&mut self, public_key: &str, at: DateTime<Utc>) -> Result<()>;
    /// Every SSH CA public key recorded, the last seen first.
    fn ssh_authorities(&self) -> Result<Vec<String>>;
    /// The ssh target the SSH CA whose public key is `public_key` is bound
    /// to, if any.
    fn ssh_authority_target(&self, public_key: &str) -> Result<Option<String>>;
    /// Binds the SSH CA whose public key is `public_key` to ssh target
    /// `target` unless it is bound already (recording the CA, as of `at`,
    /// if it was not), and returns the target it is bound to: the first
    /// one bound, kept for good (rule 11's, for the CA's hosts).
    fn bind_ssh_authority(
        &mut self,
        public_key: &str,
        target: &str,
        at: DateTime<Utc>,
    ) -> Result<String>;

    /// Keeps the signature of a Slack post until `kept_until`; refuses one
    /// already kept (rule 13).
    fn insert_slack_replay(&mut self, signature: &str, kept_until: DateTime<Utc>) -> Result<()>;
    /// Forgets the signatures kept until `now` or earlier; how many.
    fn purge_slack_replays(&mut self, now: DateTime<Utc>) -> Result<u64>;

    /// Tells the other instances on the database, once this transaction
    /// commits and not before, that it changed these requests and grants,
    /// the first of which falls due for the reaper at `due`, and whether it
    /// queued target effects (see [`Store::listen`]). Nothing to do for a
    /// store only one process uses.
    fn announce(
        &mut self,
        requests: &[&str],
        grants: &[&str],
        due: Option<DateTime<Utc>>,
        effects: bool,
    ) -> Result<()> {
        let _ = (requests, grants, due, effects);
        Ok(())
    }

    /// Makes the transaction commit only if `lease` is still the lease on
    /// the database when it does: the same holder at the same epoch. Once
    /// another instance took the lease over, the transaction writes
    /// nothing and fails with [`StoreError::Contended`] (at its commit, or
    /// at the call that sends it), so a leader that was paused or cut off
    /// past its term cannot write behind its successor's back. Checked
    /// under the lock that orders writers (rule 1). Nothing to check for a
    /// store only one process uses.
    fn fence(&mut self, lease: &Lease) -> Result<()> {
        let _ = lease;
        Ok(())
    }

    /// Makes the transaction commit its writes only before `at` (rule 14):
    /// the broker decided on something that time alone ends at `at` (a
    /// grant's end, a request's lapse), and a commit after it would record
    /// the decision once it no longer held. Of several calls, the earliest
    /// moment holds. A transaction that wrote nothing commits whenever.
    fn commit_before(&mut self, at: DateTime<Utc>);

    /// Sends the writes held back (rule 6), reporting their refusal if one
    /// is refused. Nothing to do for a backend that holds none back.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Makes every write of the transaction durable at once (rule 6).
    fn commit(self: Box<Self>) -> Result<()>;
}
