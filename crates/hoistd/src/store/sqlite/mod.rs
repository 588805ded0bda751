//! The embedded SQLite store: one file, migrations applied at open, one
//! connection so that every transaction takes its turn (rule 1 of the
//! store's transaction rules).

mod rows;
mod tx;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{AuditHead, Connections, Result, Snapshot, Store, StoreError, StoredAudit, Tx};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_reaper_indexes.sql"),
    include_str!("../../../migrations/sqlite/0003_identities.sql"),
    include_str!("../../../migrations/sqlite/0004_targets.sql"),
    include_str!("../../../migrations/sqlite/0005_workload_exchanges.sql"),
    include_str!("../../../migrations/sqlite/0006_request_tiers.sql"),
    include_str!("../../../migrations/sqlite/0007_broker_keys.sql"),
    include_str!("../../../migrations/sqlite/0008_notifications.sql"),
    include_str!("../../../migrations/sqlite/0009_slack_replays.sql"),
    include_str!("../../../migrations/sqlite/0010_identity_groups.sql"),
    include_str!("../../../migrations/sqlite/0011_effect_access.sql"),
    include_str!("../../../migrations/sqlite/0012_history_indexes.sql"),
    include_str!("../../../migrations/sqlite/0013_purge_indexes.sql"),
    include_str!("../../../migrations/sqlite/0014_target_handles.sql"),
    include_str!("../../../migrations/sqlite/0015_exchange_claims.sql"),
    include_str!("../../../migrations/sqlite/0016_lease_epoch.sql"),
    include_str!("../../../migrations/sqlite/0017_identity_seen_at.sql"),
    include_str!("../../../migrations/sqlite/0018_ssh_authorities.sql"),
    include_str!("../../../migrations/sqlite/0019_drift_removals.sql"),
    include_str!("../../../migrations/sqlite/0020_notifications_given_up.sql"),
    include_str!("../../../migrations/sqlite/0021_audit_no_replace.sql"),
    include_str!("../../../migrations/sqlite/0022_effect_system.sql"),
    include_str!("../../../migrations/sqlite/0023_exchange_collect_by.sql"),
    include_str!("../../../migrations/sqlite/0024_access_live_until.sql"),
    include_str!("../../../migrations/sqlite/0025_request_signed_in_at.sql"),
    include_str!("../../../migrations/sqlite/0026_ssh_authority_target.sql"),
];

/// Prepared statements kept per connection. The queries built from filters
/// come in a few dozen shapes; with SQLite's default of 16 they evicted one
/// another and were parsed again on most calls.
const STATEMENT_CACHE: usize = 128;

/// How often the background checkpointer copies the write-ahead log into
/// the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    durability: Durability,
    /// This process's leader epoch, taken at its first [`Store::lead`].
    epoch: std::sync::OnceLock<i64>,
    /// Declared after `conn`, so it closes last and leaves no log behind.
    _checkpointer: Option<Checkpointer>,
}

/// Copies the write-ahead log into the database file from a connection of
/// its own. SQLite otherwise does this inside whichever commit crosses 1,000
/// pages of log, with an fsync of each file, while that commit holds the
/// store's lock: every call waited behind it (tens of milliseconds when the
/// disk is busy). A passive checkpoint runs alongside writers.
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.busy_timeout(Duration::from_secs(5)).ok()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hoistd-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(error = %err, "checkpoint failed; retrying");
                    }
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    /// Whether the database file at `path` has this hoistd's schema
    /// (see [`Store::ready`]), read without opening it for writing.
    pub fn schema_of(path: &Path) -> Result<()> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        super::schema_ready(found, MIGRATIONS.len() as i64)
    }

    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, super::Migrations::Apply)
    }

    /// A [`Snapshot`] of the database file at `path`, read on a read-only
    /// connection of its own, without opening the store: nothing in the
    /// database is written or locked for writing (SQLite may make its
    /// `-wal` and `-shm` files beside it again, empty, as a reader of a
    /// WAL database does).
    pub fn snapshot_of(path: &Path) -> Result<Box<dyn Snapshot>> {
        Ok(Box::new(SqliteSnapshot::take(path)?))
    }

    /// [`SqliteStore::open`]; with [`Migrations::Leave`](super::Migrations)
    /// the schema is left as it is, and [`Store::ready`] says what is
    /// pending.
    pub fn open_with(path: &Path, migrations: super::Migrations) -> Result<Self> {
        owner_only(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Other(format!(
                "{}: SQLite keeps its journal in mode {mode}, not WAL (a file system without \
                 shared memory?); hoistd needs WAL",
                path.display()
            )));
        }
        // The file SQLite opened, links resolved: its log is named after it.
        let opened = conn
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| path.to_path_buf());
        // A commit must be on disk before the call that made it answers: a
        // power loss must not drop an answered revocation, which would bring
        // a revoked grant back until it expired. FULL syncs inside COMMIT,
        // while this connection's lock is held, and halved create/approve
        // cycles (1,700 to 830 a second). So SQLite runs at NORMAL (the log
        // synced at checkpoints, which keeps the file consistent) and each
        // commit syncs the log itself after the lock is released
        // (`Durability::sync`): as durable as FULL once the call returns,
        // and concurrent commits share their syncs.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans must not depend on the values bound: otherwise SQLite plans a
        // statement again each time a value it compared with a partial
        // index's condition is bound (a third of the store's time, measured).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        if matches!(migrations, super::Migrations::Apply) {
            migrate(&conn)?;
        }
        let checkpointer = Checkpointer::start(&opened);
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        } else {
            tracing::warn!("could not start the checkpointer; commits will checkpoint the log");
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            durability: Durability::new(&opened),
            epoch: std::sync::OnceLock::new(),
            _checkpointer: checkpointer,
        })
    }
}

/// The database file and its logs readable by their owner only: they hold
/// the broker's private keys (unless kept in files of their own) and who
/// asked for what. A new file is made so (SQLite gives its logs the file's
/// mode); one that others can read is made so, with a warning.
fn owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let refused = |err: std::io::Error| {
        StoreError::Other(format!(
            "{}: cannot make it readable by its owner only: {err}",
            path.display()
        ))
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(refused)?;
    // SQLite names its logs after the file a link leads to.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    for suffix in ["", "-wal", "-shm"] {
        let mut file = real.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(refused)?;
            tracing::warn!(
                file = %file.display(),
                "the database could be read by others (mode {mode:o}); now by its owner only"
            );
        }
    }
    Ok(())
}

/// Applies the migrations not yet applied, under the write lock: the
/// version is read inside the transaction that applies them, so two
/// processes opening one file at once apply each once.
fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let applied = (|| -> Result<()> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for sql in MIGRATIONS.iter().skip(version as usize) {
            conn.execute_batch(sql)?;
        }
        if version < known {
            conn.pragma_update(None, "user_version", known)?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

impl Store for SqliteStore {
    /// This process leads for as long as it runs, under one epoch: above
    /// the last process's, and at least the milliseconds since 1970, taken
    /// and synced at the first call.
    fn lead(&self, holder: &str, term: Duration, renewing: bool) -> Result<Option<i64>> {
        let _ = (holder, term, renewing);
        if let Some(epoch) = self.epoch.get() {
            return Ok(Some(*epoch));
        }
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let epoch: i64 = conn
            .prepare_cached(
                "INSERT INTO lease_epoch (id, epoch) VALUES (1, ?1) \
                 ON CONFLICT (id) DO UPDATE SET epoch = max(epoch + 1, excluded.epoch) \
                 RETURNING epoch",
            )?
            .query_row([crate::clock::now().timestamp_millis()], |row| row.get(0))?;
        drop(conn);
        self.durability.sync()?;
        Ok(Some(*self.epoch.get_or_init(|| epoch)))
    }

    fn connections(&self) -> Connections {
        // The one writing connection; snapshots and the checkpointer open
        // short-lived ones of their own, outside this count.
        let in_use = usize::from(matches!(
            self.conn.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        ));
        Connections {
            open: 1,
            in_use,
            max: 1,
        }
    }

    fn transaction(&self) -> Result<Box<dyn Tx + '_>> {
        // A poisoned lock only means another thread panicked mid-transaction;
        // SQLite rolled that transaction back when its guard dropped.
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(Box::new(tx::SqliteTx::begin(conn, &self.durability)?))
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(SqliteSnapshot::take(&self.path)?))
    }

    /// Syncs the log: every commit, this process's or another's, is in it.
    fn barrier(&self) -> Result<()> {
        self.durability.sync()
    }

    /// Reads the schema version on a connection of its own, so a probe
    /// never waits behind a transaction holding the store's connection.
    fn ready(&self) -> Result<()> {
        SqliteStore::schema_of(&self.path)
    }
}

/// Makes commits durable: syncs the write-ahead log, where every commit's
/// pages are, to disk.
pub(super) struct Durability {
    wal: PathBuf,
    /// Log syncs so far, for tests.
    syncs: AtomicU64,
}

impl Durability {
    fn new(path: &Path) -> Self {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Durability {
            wal: PathBuf::from(wal),
            syncs: AtomicU64::new(0),
        }
    }

    /// Syncs everything written to the log so far, this commit and any
    /// before it. Opened each time, so a log SQLite replaced is never
    /// missed.
    pub(super) fn sync(&self) -> Result<()> {
        let synced = std::fs::File::open(&self.wal).and_then(|log| log.sync_data());
        if let Err(err) = synced {
            // Not `Unavailable`, which says nothing was written: the commit
            // is in, and whether it is on disk is unknown.
            return Err(StoreError::Other(format!(
                "committed, but the write-ahead log {} could not be synced to disk: {err}",
                self.wal.display()
            )));
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// [`Durability::sync`] after a commit that wrote: a failure leaves the
    /// commit's outcome unknown to the caller (it is in, and may not
    /// survive a crash), which the broker must treat as it treats a
    /// commit whose answer was lost.
    pub(super) fn sync_commit(&self) -> Result<()> {
        self.sync().map_err(|err| match err {
            StoreError::Other(said) => StoreError::Uncertain(said),
            other => other,
        })
    }
}

/// A read transaction on a read-only connection of its own. In WAL mode a
/// reader sees the database as of its first read and never blocks the
/// writer, which appends to the log past the reader's mark.
struct SqliteSnapshot {
    conn: Connection,
}

impl SqliteSnapshot {
    fn take(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // The read transaction starts at its first read, not at BEGIN: read
        // now, so the snapshot is of this moment.
        conn.execute_batch("BEGIN DEFERRED")?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        Ok(SqliteSnapshot { conn })
    }
}

impl Snapshot for SqliteSnapshot {
    fn audit_head(&self) -> Result<Option<AuditHead>> {
        tx::audit_head(&self.conn)
    }

    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()> {
        tx::scan_audit(&self.conn, visit)
    }

    fn broker_key(&self, purpose: &str) -> Result<Option<(String, Vec<u8>)>> {
        tx::broker_key(&self.conn, purpose)
    }

    fn ssh_authority_target(&self, public_key: &str) -> Result<Option<String>> {
        tx::ssh_authority_target(&self.conn, public_key)
    }
}

/// The driver's errors in the store's words: a broken constraint is a
/// conflict with what is stored, a busy or unreachable file is unavailable,
/// a value that does not decode is corrupt.
impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        let message = err.to_string();
        match &err {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::ConstraintViolation => StoreError::Conflict(message),
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::FileLockingProtocolFailed => StoreError::Unavailable(message),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    StoreError::Corrupt(message)
                }
                _ => StoreError::Other(message),
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(message),
            _ => StoreError::Other(message),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Utc;
    use hoist_api::{AuditEvent, AuditKind};

    use super::*;

    /// A commit whose log cannot be synced is in, and whether it survives
    /// a crash is unknown: it is said to be uncertain, as a commit whose
    /// answer was lost, never a plain failure.
    #[test]
    fn a_commit_whose_log_cannot_be_synced_is_uncertain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let store = SqliteStore::open(&path).unwrap();
        let mut tx = store.transaction().unwrap();
        tx.insert_signing_key("k1", b"key", Utc::now()).unwrap();
        tx.commit().unwrap();
        // SQLite keeps writing to the log it holds open; the sync, which
        // opens it by name, finds none.
        std::fs::remove_file(dir.path().join("hoistd.db-wal")).unwrap();
        let mut tx = store.transaction().unwrap();
        tx.insert_broker_key("p", "k2", b"key", Utc::now()).unwrap();
        let committed = tx.commit();
        assert!(
            matches!(committed, Err(StoreError::Uncertain(ref said)) if said.contains("committed")),
            "{committed:?}"
        );
        assert!(store.read().unwrap().broker_key("p").unwrap().is_some());
    }

    /// Every commit that wrote is synced to disk before it returns, after
    /// the store's lock is released; one that wrote nothing syncs nothing.
    #[test]
    fn commits_are_durable_once_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hoistd.db")).unwrap();
        let syncs = || store.durability.syncs.load(Ordering::Relaxed);
        let before = syncs();
        let mut tx = store.transaction().unwrap();
        tx.insert_signing_key("k1", b"key", Utc::now()).unwrap();
        tx.commit().unwrap();
        assert_eq!(syncs(), before + 1);
        let tx = store.transaction().unwrap();
        assert!(tx.signing_key().unwrap().is_some());
        tx.commit().unwrap();
        assert_eq!(syncs(), before + 1, "a read-only transaction syncs nothing");
        // The lock is free while the log syncs: nothing is held on return.
        assert!(store.conn.try_lock().is_ok());
        let journal: String = store
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
    }

    /// Ready once migrated, even while a transaction holds the store; a
    /// schema behind or ahead of this hoistd is not ready, and says why.
    #[test]
    fn ready_answers_beside_a_transaction_and_names_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let store = SqliteStore::open(&path).unwrap();
        let tx = store.transaction().unwrap();
        store.ready().unwrap();
        drop(tx);
        let known = MIGRATIONS.len() as i64;
        let other = Connection::open(&path).unwrap();
        other
            .pragma_update(None, "user_version", known - 1)
            .unwrap();
        assert!(matches!(
            store.ready(),
            Err(StoreError::MigrationsPending { found, .. }) if found == known - 1
        ));
        other
            .pragma_update(None, "user_version", known + 1)
            .unwrap();
        assert!(matches!(store.ready(), Err(StoreError::TooNew { .. })));
    }

    /// A database that already has an audit log starts routing
    /// notifications after its head: an upgrade announces nothing of the
    /// past.
    #[test]
    fn the_notification_cursor_starts_at_the_audit_head_of_an_upgraded_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let before_notifications = 7;
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..before_notifications] {
                conn.execute_batch(sql).unwrap();
            }
            for seq in 1..=3 {
                conn.execute(
                    &format!(
                        "INSERT INTO audit ({}) VALUES (?1, 0, 'requested', 'alice', NULL, \
                     NULL, NULL, NULL, NULL, NULL, '{{}}', 'p', 'h')",
                        rows::AUDIT_COLUMNS
                    ),
                    [seq],
                )
                .unwrap();
            }
            conn.pragma_update(None, "user_version", before_notifications as i64)
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.transaction().unwrap().notification_cursor().unwrap(),
            3
        );
    }

    /// Each process that opens the database leads under an epoch above
    /// the last one's, even with the clock set back; within a process it
    /// stays the same.
    #[test]
    fn each_process_leads_under_a_higher_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let term = Duration::from_secs(5);
        let store = SqliteStore::open(&path).unwrap();
        let first = store.lead("a", term, false).unwrap().unwrap();
        assert!(first >= Utc::now().timestamp_millis() - 60_000, "{first}");
        assert_eq!(store.lead("a", term, true).unwrap(), Some(first));
        assert_eq!(store.lead("b", term, false).unwrap(), Some(first));
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        let second = store.lead("a", term, false).unwrap().unwrap();
        assert!(second > first);
        // The last process ran with a clock far ahead of this one's.
        let ahead = second + 86_400_000;
        store
            .conn
            .lock()
            .unwrap()
            .execute("UPDATE lease_epoch SET epoch = ?1", [ahead])
            .unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.lead("a", term, false).unwrap(), Some(ahead + 1));
    }

    /// An upgrade marks the grants at OpenBao targets that may hold tokens
    /// minted before their accessors were recorded, and no other: their
    /// removal searches for them.
    #[test]
    fn an_upgrade_marks_openbao_grants_whose_tokens_were_not_recorded() {
        use crate::store::conformance::{at, grant};
        use hoist_api::AccessState;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        // The database as version 13 left it, with requests in its columns.
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..13] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 13).unwrap();
            for (id, requester, created) in [
                ("req_a", "alice", 1),
                ("req_b", "bob", 2),
                ("req_c", "carol", 3),
            ] {
                conn.execute(
                    "INSERT INTO requests (id, kind, role, role_name, requester, justification, \
                     duration_secs, break_glass, state, created_at, updated_at, \
                     approvals_required) VALUES (?1, 'access', 'db', 'db', ?2, 'j', 3600, 0, \
                     'active', ?3, ?3, 1)",
                    rusqlite::params![id, requester, at(created).timestamp_millis()],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open_with(&path, super::super::Migrations::Leave).unwrap();
        let held = [
            ("gr_live", "req_a", "openbao", AccessState::Live),
            ("gr_gone", "req_b", "openbao", AccessState::Removed),
            ("gr_pg", "req_c", "postgres", AccessState::Live),
        ];
        let mut tx = store.transaction().unwrap();
        for (id, request, _, _) in held {
            tx.insert_grant(&grant(id, request, "alice", 10)).unwrap();
        }
        tx.commit().unwrap();
        drop(store);
        // Their access, in version 13's columns.
        let conn = Connection::open(&path).unwrap();
        for (id, _, kind, state) in held {
            conn.execute(
                "INSERT INTO grant_access (grant_id, target, kind, access_state, access_reason, \
                 attempts, next_attempt_at, access_updated) VALUES (?1, 'bao', ?2, ?3, NULL, 0, \
                 NULL, ?4)",
                rusqlite::params![id, kind, state.as_str(), at(20).timestamp_millis()],
            )
            .unwrap();
        }
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.transaction().unwrap().handles("bao", None).unwrap(),
            vec![("gr_live".to_string(), "*".to_string())]
        );
    }

    /// Commits never copy the write-ahead log into the database file
    /// themselves; the checkpointer does, from its own connection.
    #[test]
    fn the_checkpointer_moves_the_log_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let store = SqliteStore::open(&path).unwrap();
        let autocheckpoint: i64 = store
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, 0);

        let before = std::fs::metadata(&path).unwrap().len();
        let mut tx = store.transaction().unwrap();
        for seq in 1..=2_000 {
            // The store keeps what it is given; these hashes link nothing.
            tx.insert_audit(&AuditEvent {
                seq,
                at: Utc::now(),
                kind: AuditKind::Requested,
                actor: "alice".into(),
                subject: None,
                role: Some("prod-db-admin".into()),
                request_id: Some(format!("req_{seq}")),
                grant_id: None,
                incident: None,
                reason: Some("x".repeat(400)),
                details: serde_json::json!({}),
                prev_hash: "0".repeat(64),
                hash: "1".repeat(64),
            })
            .unwrap();
        }
        tx.commit().unwrap();

        // About a megabyte went into the log; within a few checkpoint
        // periods it is in the database file.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&path).unwrap().len() < before + 500_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes",
                std::fs::metadata(&path).unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The file and its logs are readable by their owner only, whatever
    /// the umask: they hold the broker's private keys. A file others could
    /// read is made owner-only at open.
    #[test]
    fn the_database_and_its_logs_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let mode = |suffix: &str| {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            std::fs::metadata(PathBuf::from(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        let store = SqliteStore::open(&path).unwrap();
        let mut tx = store.transaction().unwrap();
        tx.insert_signing_key("k1", b"key", Utc::now()).unwrap();
        tx.commit().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(suffix), 0o600, "hoistd.db{suffix}");
        }
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = SqliteStore::open(&path).unwrap();
        assert_eq!(mode(""), 0o600);
        drop(_store);

        // Opened through a link, the logs left beside the file it leads to
        // (named after it) are made owner-only too.
        let real_wal = dir.path().join("hoistd.db-wal");
        std::fs::write(&real_wal, b"").unwrap();
        std::fs::set_permissions(&real_wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        owner_only(&link).unwrap();
        assert_eq!(mode("-wal"), 0o600, "the real file's log");
    }

    /// The barrier a checkpoint waits on syncs the log: a commit is seen
    /// by readers before its own sync has ended.
    #[test]
    fn the_barrier_syncs_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hoistd.db")).unwrap();
        let before = store.durability.syncs.load(Ordering::Relaxed);
        store.barrier().unwrap();
        assert_eq!(store.durability.syncs.load(Ordering::Relaxed), before + 1);
    }

    /// Opened through a symbolic link, commits sync the log SQLite writes,
    /// which is named after the file the link leads to.
    #[test]
    fn a_database_opened_through_a_link_syncs_its_real_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/hoistd.db");
        SqliteStore::open(&real).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let store = SqliteStore::open(&link).unwrap();
        let mut tx = store.transaction().unwrap();
        tx.insert_signing_key("k1", b"key", Utc::now()).unwrap();
        tx.commit().unwrap();
    }

    /// Two processes opening one file at once (a server and a cron job
    /// after an upgrade) apply each migration once, and both open.
    #[test]
    fn openers_at_once_apply_each_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("PRAGMA journal_mode = WAL; BEGIN IMMEDIATE")
            .unwrap();
        let openers: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        holder.execute_batch("COMMIT").unwrap();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
    }
}
