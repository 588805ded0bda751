//! The embedded SQLite store: one file, migrations applied at open.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessRequest, Acknowledgement, AuditEvent, AuditKind, Claim, Decision, Grant, GrantState,
    RequestKind, RequestState, Review,
};
use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::{
    AuditQuery, GrantQuery, NewAuditEvent, RequestQuery, Result, Store, StoreError, StoredAudit, Tx,
};
use crate::audit;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_reaper_indexes.sql"),
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
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Box::new(SqliteTx {
            conn,
            finished: false,
        }))
    }
}

struct SqliteTx<'a> {
    conn: MutexGuard<'a, Connection>,
    finished: bool,
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("timestamp {ms} out of range").into(),
        )
    })
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, rusqlite::Error> {
    ms.map(time).transpose()
}

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{value}`").into(),
    )
}

const REQUEST_COLUMNS: &str = "id, kind, role, role_name, requester, justification, ticket, \
    incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, \
    approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at";

fn request_from_row(row: &Row) -> Result<AccessRequest, rusqlite::Error> {
    let kind: String = row.get(1)?;
    let state: String = row.get(11)?;
    let claim_by: Option<String> = row.get(18)?;
    let claim_until = opt_time(row.get(19)?)?;
    let ack_by: Option<String> = row.get(20)?;
    let ack_at = opt_time(row.get(22)?)?;
    Ok(AccessRequest {
        id: row.get(0)?,
        kind: match kind.as_str() {
            "access" => RequestKind::Access,
            "extension" => RequestKind::Extension,
            other => return Err(corrupt("request kind", other)),
        },
        role: row.get(2)?,
        role_name: row.get(3)?,
        requester: row.get(4)?,
        justification: row.get(5)?,
        ticket: row.get(6)?,
        incident: row.get(7)?,
        duration_secs: row.get(8)?,
        starts_at: opt_time(row.get(9)?)?,
        break_glass: row.get(10)?,
        state: RequestState::parse(&state).ok_or_else(|| corrupt("request state", &state))?,
        created_at: time(row.get(12)?)?,
        updated_at: time(row.get(13)?)?,
        lapses_at: opt_time(row.get(14)?)?,
        approvals_required: row.get(15)?,
        reviews: Vec::new(),
        claim: claim_by
            .zip(claim_until)
            .map(|(by, until)| Claim { by, until }),
        grant_id: row.get(16)?,
        reason: row.get(17)?,
        acknowledgement: match (ack_by, ack_at) {
            (Some(by), Some(at)) => Some(Acknowledgement {
                by,
                comment: row.get(21)?,
                at,
            }),
            _ => None,
        },
    })
}

const GRANT_COLUMNS: &str = "id, request_id, role, role_name, holder, starts_at, expires_at, \
    state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification";

fn grant_from_row(row: &Row) -> Result<Grant, rusqlite::Error> {
    let state: String = row.get(7)?;
    Ok(Grant {
        id: row.get(0)?,
        request_id: row.get(1)?,
        role: row.get(2)?,
        role_name: row.get(3)?,
        holder: row.get(4)?,
        starts_at: time(row.get(5)?)?,
        expires_at: time(row.get(6)?)?,
        state: GrantState::parse(&state).ok_or_else(|| corrupt("grant state", &state))?,
        ended_at: opt_time(row.get(8)?)?,
        revoked_by: row.get(9)?,
        revoke_reason: row.get(10)?,
        break_glass: row.get(11)?,
        ticket: row.get(12)?,
        incident: row.get(13)?,
        justification: row.get(14)?,
    })
}

const AUDIT_COLUMNS: &str = "seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash";

/// A text column, borrowed from the row.
fn text<'r>(row: &'r Row, column: usize) -> Result<&'r str, rusqlite::Error> {
    Ok(row.get_ref(column)?.as_str()?)
}

fn maybe<'r>(row: &'r Row, column: usize) -> Result<Option<&'r str>, rusqlite::Error> {
    Ok(row.get_ref(column)?.as_str_or_null()?)
}

fn audit_from_row(row: &Row) -> Result<AuditEvent, rusqlite::Error> {
    let kind = text(row, 2)?;
    let details = row.get_ref(10)?.as_bytes()?;
    Ok(AuditEvent {
        seq: row.get(0)?,
        at: time(row.get(1)?)?,
        kind: AuditKind::parse(kind).ok_or_else(|| corrupt("audit kind", kind))?,
        actor: row.get(3)?,
        subject: row.get(4)?,
        role: row.get(5)?,
        request_id: row.get(6)?,
        grant_id: row.get(7)?,
        incident: row.get(8)?,
        reason: row.get(9)?,
        details: serde_json::from_slice(details).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, err.into())
        })?,
        prev_hash: row.get(11)?,
        hash: row.get(12)?,
    })
}

/// Builds `WHERE ...` from optional filters, keeping values as bound parameters.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    fn eq(&mut self, column: &str, value: Option<&String>) {
        if let Some(value) = value {
            self.values.push(Value::Text(value.clone()));
            self.clauses
                .push(format!("{column} = ?{}", self.values.len()));
        }
    }

    fn within(&mut self, column: &str, values: impl IntoIterator<Item = String>) {
        let mut marks = Vec::new();
        for value in values {
            self.values.push(Value::Text(value));
            marks.push(format!("?{}", self.values.len()));
        }
        if !marks.is_empty() {
            self.clauses
                .push(format!("{column} IN ({})", marks.join(", ")));
        }
    }

    /// `column IN ('a', 'b')` with the values written into the SQL. Only for
    /// the fixed vocabulary of states: SQLite matches literals against the
    /// partial indexes when it plans the statement, whereas a bound value
    /// there makes it plan the statement again every time it is bound.
    fn within_states(&mut self, column: &str, states: impl IntoIterator<Item = &'static str>) {
        let literals: Vec<String> = states.into_iter().map(|s| format!("'{s}'")).collect();
        if !literals.is_empty() {
            self.clauses
                .push(format!("{column} IN ({})", literals.join(", ")));
        }
    }

    fn raw(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn limit(limit: Option<usize>) -> String {
    limit.map_or(String::new(), |n| format!(" LIMIT {n}"))
}

impl SqliteTx<'_> {
    fn load_reviews(&self, request: &mut AccessRequest) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT reviewer, decision, comment, at FROM reviews WHERE request_id = ?1 ORDER BY at, reviewer",
        )?;
        let rows = stmt.query_map([&request.id], |row| {
            let decision: String = row.get(1)?;
            Ok(Review {
                reviewer: row.get(0)?,
                decision: match decision.as_str() {
                    "approve" => Decision::Approve,
                    "deny" => Decision::Deny,
                    other => return Err(corrupt("decision", other)),
                },
                comment: row.get(2)?,
                at: time(row.get(3)?)?,
            })
        })?;
        request.reviews = rows.collect::<Result<_, _>>()?;
        Ok(())
    }

    fn query_requests(&self, sql: &str, values: &[Value]) -> Result<Vec<AccessRequest>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut requests = stmt
            .query_map(params_from_iter(values), request_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        for request in &mut requests {
            self.load_reviews(request)?;
        }
        Ok(requests)
    }

    fn query_grants(&self, sql: &str, values: &[Value]) -> Result<Vec<Grant>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let grants = stmt
            .query_map(params_from_iter(values), grant_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(grants)
    }
}

impl Tx for SqliteTx<'_> {
    fn request(&self, id: &str) -> Result<Option<AccessRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1");
        Ok(self
            .query_requests(&sql, &[Value::Text(id.to_string())])?
            .pop())
    }

    fn requests(&self, query: &RequestQuery) -> Result<Vec<AccessRequest>> {
        let mut filter = Filter::default();
        filter.eq("requester", query.requester.as_ref());
        filter.within("role", query.roles.iter().cloned());
        filter.within_states("state", query.states.iter().map(|s| s.as_str()));
        filter.eq("incident", query.incident.as_ref());
        filter.eq("grant_id", query.grant_id.as_ref());
        if query.unacknowledged_break_glass {
            filter.raw("break_glass = 1 AND ack_at IS NULL");
        }
        let order = if query.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests {} ORDER BY created_at {order}, rowid {order}{}",
            filter.sql(),
            limit(query.limit)
        );
        self.query_requests(&sql, &filter.values)
    }

    fn insert_request(&mut self, r: &AccessRequest) -> Result<()> {
        let kind = match r.kind {
            RequestKind::Access => "access",
            RequestKind::Extension => "extension",
        };
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
            ))?
            .execute(params![
                r.id,
                kind,
                r.role,
                r.role_name,
                r.requester,
                r.justification,
                r.ticket,
                r.incident,
                r.duration_secs,
                r.starts_at.map(ms),
                r.break_glass,
                r.state.as_str(),
                ms(r.created_at),
                ms(r.updated_at),
                r.lapses_at.map(ms),
                r.approvals_required,
                r.grant_id,
                r.reason,
                r.claim.as_ref().map(|c| &c.by),
                r.claim.as_ref().map(|c| ms(c.until)),
                r.acknowledgement.as_ref().map(|a| &a.by),
                r.acknowledgement.as_ref().and_then(|a| a.comment.as_ref()),
                r.acknowledgement.as_ref().map(|a| ms(a.at)),
            ])?;
        Ok(())
    }

    fn update_request(&mut self, r: &AccessRequest) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE requests SET state = ?2, updated_at = ?3, lapses_at = ?4, grant_id = ?5, \
                 reason = ?6, claim_by = ?7, claim_until = ?8, ack_by = ?9, ack_comment = ?10, \
                 ack_at = ?11 WHERE id = ?1",
            )?
            .execute(params![
                r.id,
                r.state.as_str(),
                ms(r.updated_at),
                r.lapses_at.map(ms),
                r.grant_id,
                r.reason,
                r.claim.as_ref().map(|c| &c.by),
                r.claim.as_ref().map(|c| ms(c.until)),
                r.acknowledgement.as_ref().map(|a| &a.by),
                r.acknowledgement.as_ref().and_then(|a| a.comment.as_ref()),
                r.acknowledgement.as_ref().map(|a| ms(a.at)),
            ])?;
        Ok(())
    }

    fn insert_review(&mut self, request_id: &str, review: &Review) -> Result<()> {
        let decision = match review.decision {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        };
        self.conn
            .prepare_cached(
                "INSERT INTO reviews (request_id, reviewer, decision, comment, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![request_id, review.reviewer, decision, review.comment, ms(review.at)])?;
        Ok(())
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1");
        Ok(self
            .query_grants(&sql, &[Value::Text(id.to_string())])?
            .pop())
    }

    fn grants(&self, query: &GrantQuery) -> Result<Vec<Grant>> {
        let mut filter = Filter::default();
        filter.eq("holder", query.holder.as_ref());
        filter.within_states("state", query.states.iter().map(|s| s.as_str()));
        filter.eq("incident", query.incident.as_ref());
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants {} ORDER BY starts_at DESC, id DESC{}",
            filter.sql(),
            limit(query.limit)
        );
        self.query_grants(&sql, &filter.values)
    }

    fn insert_grant(&mut self, g: &Grant) -> Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO grants ({GRANT_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?
            .execute(params![
                g.id,
                g.request_id,
                g.role,
                g.role_name,
                g.holder,
                ms(g.starts_at),
                ms(g.expires_at),
                g.state.as_str(),
                g.ended_at.map(ms),
                g.revoked_by,
                g.revoke_reason,
                g.break_glass,
                g.ticket,
                g.incident,
                g.justification,
            ])?;
        Ok(())
    }

    fn update_grant(&mut self, g: &Grant) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE grants SET expires_at = ?2, state = ?3, ended_at = ?4, revoked_by = ?5, \
                 revoke_reason = ?6 WHERE id = ?1",
            )?
            .execute(params![
                g.id,
                ms(g.expires_at),
                g.state.as_str(),
                g.ended_at.map(ms),
                g.revoked_by,
                g.revoke_reason,
            ])?;
        Ok(())
    }

    fn due_requests(&self, now: DateTime<Utc>) -> Result<Vec<AccessRequest>> {
        // Two indexed reads: with `OR` SQLite scanned the whole table.
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'pending' AND lapses_at <= ?1 \
             UNION ALL \
             SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'approved' \
             AND coalesce(starts_at, 0) <= ?1 ORDER BY created_at"
        );
        self.query_requests(&sql, &[Value::Integer(ms(now))])
    }

    fn due_grants(&self, now: DateTime<Utc>) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE state = 'active' AND expires_at <= ?1 ORDER BY expires_at"
        );
        self.query_grants(&sql, &[Value::Integer(ms(now))])
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT min(t) FROM ( \
                 SELECT min(expires_at) AS t FROM grants WHERE state = 'active' \
                 UNION ALL SELECT min(lapses_at) FROM requests WHERE state = 'pending' \
                 UNION ALL SELECT min(coalesce(starts_at, 0)) FROM requests WHERE state = 'approved')",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(opt_time(next)?)
    }

    fn idempotency_key(&self, requester: &str, key: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT body_hash, request_id FROM idempotency_keys WHERE requester = ?1 AND key = ?2",
            )?
            .query_row([requester, key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn insert_idempotency_key(
        &mut self,
        requester: &str,
        key: &str,
        body_hash: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (requester, key, body_hash, request_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![requester, key, body_hash, request_id, ms(at)])?;
        Ok(())
    }

    fn append_audit(&mut self, e: NewAuditEvent) -> Result<AuditEvent> {
        let last: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, audit::GENESIS.to_string()),
        };
        // Millisecond precision is what is stored, so hash exactly that.
        let at = time(ms(e.at))?;
        let mut event = AuditEvent {
            seq,
            at,
            kind: e.kind,
            actor: e.actor,
            subject: e.subject,
            role: e.role,
            request_id: e.request_id,
            grant_id: e.grant_id,
            incident: e.incident,
            reason: e.reason,
            details: e.details,
            prev_hash,
            hash: String::new(),
        };
        event.hash = audit::entry_hash(&event.prev_hash, &event);
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                event.seq,
                ms(event.at),
                event.kind.as_str(),
                event.actor,
                event.subject,
                event.role,
                event.request_id,
                event.grant_id,
                event.incident,
                event.reason,
                event.details.to_string(),
                event.prev_hash,
                event.hash,
            ])?;
        Ok(event)
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut filter = Filter::default();
        filter.values.push(Value::Integer(query.after_seq));
        filter.clauses.push("seq > ?1".to_string());
        if let Some(user) = &query.involving {
            filter.values.push(Value::Text(user.clone()));
            let n = filter.values.len();
            filter
                .clauses
                .push(format!("(subject = ?{n} OR actor = ?{n})"));
        }
        filter.eq("incident", query.incident.as_ref());
        filter.eq("request_id", query.request_id.as_ref());
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit {} ORDER BY seq{}",
            filter.sql(),
            limit(query.limit)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let events = stmt
            .query_map(params_from_iter(&filter.values), audit_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(events)
    }

    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let entry = StoredAudit {
                seq: row.get(0)?,
                at_ms: row.get(1)?,
                kind: text(row, 2)?,
                actor: text(row, 3)?,
                subject: maybe(row, 4)?,
                role: maybe(row, 5)?,
                request_id: maybe(row, 6)?,
                grant_id: maybe(row, 7)?,
                incident: maybe(row, 8)?,
                reason: maybe(row, 9)?,
                details: text(row, 10)?,
                prev_hash: text(row, 11)?,
                hash: text(row, 12)?,
            };
            if visit(&entry).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn signing_key(&self) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT kid, pkcs8 FROM signing_keys ORDER BY created_at DESC LIMIT 1")?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn insert_signing_key(&mut self, kid: &str, pkcs8: &[u8], at: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![kid, pkcs8, ms(at)])?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.finished = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hoist_api::AuditKind;

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
        for i in 0..2_000 {
            tx.append_audit(NewAuditEvent {
                at: Utc::now(),
                kind: AuditKind::Requested,
                actor: "alice".into(),
                subject: None,
                role: Some("prod-db-admin".into()),
                request_id: Some(format!("req_{i}")),
                grant_id: None,
                incident: None,
                reason: Some("x".repeat(400)),
                details: serde_json::json!({}),
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
