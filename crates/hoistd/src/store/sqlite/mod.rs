//! The embedded SQLite store: one file, migrations applied at open, one
//! connection so that every transaction takes its turn (rule 1 of the
//! store's transaction rules).

mod rows;
mod tx;

use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode};

use super::{Result, Store, StoreError, Tx};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_reaper_indexes.sql"),
    include_str!("../../../migrations/sqlite/0003_identities.sql"),
    include_str!("../../../migrations/sqlite/0004_targets.sql"),
];

/// Prepared statements kept per connection. The queries built from filters
/// come in a few dozen shapes; with SQLite's default of 16 they evicted one
/// another and were parsed again on most calls.
const STATEMENT_CACHE: usize = 128;

/// How often the background checkpointer copies the write-ahead log into
/// the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

pub struct SqliteStore {
    conn: Mutex<Connection>,
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
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans must not depend on the values bound: otherwise SQLite plans a
        // statement again each time a value it compared with a partial
        // index's condition is bound (a third of the store's time, measured).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        migrate(&conn)?;
        let checkpointer = Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        } else {
            tracing::warn!("could not start the checkpointer; commits will checkpoint the log");
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            _checkpointer: checkpointer,
        })
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let batch = format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            index + 1
        );
        if let Err(err) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(err.into());
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn transaction(&self) -> Result<Box<dyn Tx + '_>> {
        // A poisoned lock only means another thread panicked mid-transaction;
        // SQLite rolled that transaction back when its guard dropped.
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(Box::new(tx::SqliteTx::begin(conn)?))
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
}
