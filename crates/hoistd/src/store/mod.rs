//! Persistence behind a trait, so the lifecycle code never names a database.
//!
//! Every operation of the broker runs inside one [`Tx`]: it commits on
//! [`Tx::commit`] and rolls back when dropped, so nothing is half-written.
//! The SQLite store is the default; another store implements the same two
//! traits and the handlers do not change.

mod sqlite;

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use hoist_api::{AccessRequest, AuditEvent, AuditKind, Grant, GrantState, RequestState, Review};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database holds a value the broker cannot read: {0}")]
    Corrupt(String),
    #[error("database schema version {found} is newer than this hoistd knows ({known})")]
    TooNew { found: i64, known: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub trait Store: Send + Sync + 'static {
    /// Starts a transaction; concurrent transactions wait their turn.
    fn transaction(&self) -> Result<Box<dyn Tx + '_>>;
}

/// Which requests to list. Empty lists mean "any".
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

/// Which grants to list. Empty lists mean "any".
#[derive(Debug, Default, Clone)]
pub struct GrantQuery {
    pub holder: Option<String>,
    pub states: Vec<GrantState>,
    pub incident: Option<String>,
    pub limit: Option<usize>,
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
    /// JSON text.
    pub details: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// An audit event before the store gives it its place in the chain.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    pub actor: String,
    pub subject: Option<String>,
    pub role: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub incident: Option<String>,
    pub reason: Option<String>,
    pub details: serde_json::Value,
}

pub trait Tx {
    fn request(&self, id: &str) -> Result<Option<AccessRequest>>;
    fn requests(&self, query: &RequestQuery) -> Result<Vec<AccessRequest>>;
    fn insert_request(&mut self, request: &AccessRequest) -> Result<()>;
    /// Writes every field that can change after filing.
    fn update_request(&mut self, request: &AccessRequest) -> Result<()>;
    /// Fails with a constraint error if the reviewer already reviewed it.
    fn insert_review(&mut self, request_id: &str, review: &Review) -> Result<()>;

    fn grant(&self, id: &str) -> Result<Option<Grant>>;
    fn grants(&self, query: &GrantQuery) -> Result<Vec<Grant>>;
    fn insert_grant(&mut self, grant: &Grant) -> Result<()>;
    /// Writes every field that can change after activation.
    fn update_grant(&mut self, grant: &Grant) -> Result<()>;

    /// Pending requests past their lapse time and approved ones due to start.
    fn due_requests(&self, now: DateTime<Utc>) -> Result<Vec<AccessRequest>>;
    /// Active grants at or past their end.
    fn due_grants(&self, now: DateTime<Utc>) -> Result<Vec<Grant>>;
    /// The earliest moment anything above falls due.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>>;

    /// The body hash and request filed under an idempotency key.
    fn idempotency_key(&self, requester: &str, key: &str) -> Result<Option<(String, String)>>;
    fn insert_idempotency_key(
        &mut self,
        requester: &str,
        key: &str,
        body_hash: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;

    /// Appends to the hash chain.
    fn append_audit(&mut self, event: NewAuditEvent) -> Result<AuditEvent>;
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
    /// Streams the whole log in order, as stored, without loading it into
    /// memory or decoding it.
    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()>;

    /// The credential signing key: its id and PKCS#8 document.
    fn signing_key(&self) -> Result<Option<(String, Vec<u8>)>>;
    fn insert_signing_key(&mut self, kid: &str, pkcs8: &[u8], at: DateTime<Utc>) -> Result<()>;

    fn commit(self: Box<Self>) -> Result<()>;
}
