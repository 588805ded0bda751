//! One PostgreSQL transaction: the [`Tx`] operations as SQL, and rows to
//! wire types and back.
//!
//! Long because it is the whole [`Tx`] in SQL, one method per operation,
//! kept together (as `sqlite/tx.rs` is) so the transaction rules in
//! `store/mod.rs` can be checked against one file.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessRequest, AccessState, Acknowledgement, AuditEvent, AuditKind, Claim, Decision, Grant,
    GrantState, RequestKind, RequestState, Review, TargetAccess,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;

use super::{
    BEGIN_LOCKED, BEGIN_READING, COMMIT_LOCKED, Failed, Param, PgConn, SCAN_PAGE, Statement,
};
use crate::store::{
    AuditHead, AuditQuery, Delivery, Effect, EffectAction, Exchange, GENESIS, GrantQuery, Lease,
    Notification, NotificationDelivery, Remembered, RequestQuery, Result, StoreError, StoredAudit,
    Tx, access_column, access_from_column,
};

/// One transaction. A locked one holds the transaction lock (rule 1) from
/// its first round trip to its commit, so it spends as few round trips as
/// it can: `BEGIN` and the lock go with its first statement, and writes
/// whose answer the broker does not wait for are held back and sent with
/// the next statement or the commit (see [`Tx::flush`]). An optimistic one
/// ([`Store::optimistic`](crate::store::Store::optimistic)) reads without
/// the lock and takes it in its commit's pipeline, before checking its
/// reads and making its writes: filing a request or approving one holds
/// the lock only while the server runs the writes and the commit, and no
/// round trip to hoistd is made under it. Its reads are made outside any
/// transaction, each its own statement at READ COMMITTED, and the commit's
/// pipeline begins one with the lock: one simple query, as a locked one
/// begins.
pub(super) struct PgTx {
    conn: PgConn,
    origin: String,
    /// What `announce` was given, sent with the commit.
    notices: Vec<String>,
    /// Writes not sent yet, in order.
    held: RefCell<Vec<Held>>,
    /// What starts it (`BEGIN_LOCKED`, or `BEGIN_READING` for a reader),
    /// and whether that was sent.
    begin: &'static str,
    begun: Cell<bool>,
    /// While an optimistic transaction does not hold the lock: each read
    /// it made, with its fingerprint as one more parameter, to check that
    /// it would answer the same (see [`check`]). `None` once it holds the
    /// lock, or if it never was optimistic.
    checks: RefCell<Option<Vec<Statement>>>,
    /// Whether a write was sent, or taken to be sent with the commit: a
    /// commit whose answer is lost is in doubt only then.
    wrote: Cell<bool>,
    /// The check of the lease ([`Tx::fence`]), sent last before the
    /// commit, and the epoch it checks.
    fence: Option<(Statement, i64)>,
    /// The moment its writes must commit before ([`Tx::commit_before`]),
    /// by the broker's clock.
    before: Option<DateTime<Utc>>,
    /// How far the server's clock is ahead of the broker's, as last read:
    /// `before` is checked by the server's clock, moved by it. Not read
    /// yet (the broker then times by its host's clock), nothing is checked:
    /// a server clock ahead would refuse work the broker rightly did.
    skew: Option<chrono::TimeDelta>,
}

/// A write held back.
enum Held {
    /// A statement, and what its failure means.
    Write(Statement, Refusal),
    /// An audit entry to link to the head ([`Tx::append_audit`]): its
    /// fields and the tail of its hashed text. Appends held together go
    /// out as one statement (see [`appends`]).
    Append(Vec<Param>),
    /// An audit entry written as given ([`Tx::insert_audit`]): the appends
    /// held before it are sent before it.
    Audit(Statement),
}

/// At most this many appends, or notices, go in one statement: each count
/// is a statement of its own that the connection prepares and keeps.
const APPENDS_PER_STATEMENT: usize = 8;
const NOTICES_PER_STATEMENT: usize = 2;

/// What a statement's failure with division by zero means: the store's
/// held updates and checks are written to fail that way (see
/// [`PgTx::hold_update`] and [`check`]).
#[derive(Clone)]
enum Refusal {
    /// Nothing of the kind: the error as the driver gives it.
    None,
    /// A held update changed no row: [`StoreError::NotFound`] naming it.
    Missing(String),
    /// A check of a read failed: [`StoreError::Contended`].
    Changed,
    /// The fence failed, another instance holds the lease now:
    /// [`StoreError::Contended`] naming the epoch this one held.
    Deposed(i64),
    /// The moment of [`Tx::commit_before`] had come: [`StoreError::Contended`].
    Passed,
}

/// The fingerprint of an answer with no rows: [`fingerprinted`] and
/// [`check`] hash the rows' text, and no rows hash as the empty text.
const NO_ROWS: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The fingerprint of the rows of `r`: the SHA-256 of their text, in sorted
/// order. SHA-256, not MD5, which a server in FIPS mode refuses to compute.
const FINGERPRINT: &str = "encode(sha256(convert_to(coalesce(string_agg(r::text, ',' \
                           ORDER BY r::text), ''), 'UTF8')), 'hex')";

/// `sql` answering as it does, with one more column: a fingerprint of the
/// whole answer ([`FINGERPRINT`] of its rows), computed in
/// the same statement and so of the same moment. Its rows come in the
/// order `sql` gives them: a materialised CTE is read back in order.
fn fingerprinted(sql: &str) -> String {
    format!("WITH q AS MATERIALIZED ({sql}) SELECT q.*, (SELECT {FINGERPRINT} FROM q r) FROM q")
}

/// One statement that fails (division by zero) unless every one of
/// `reads` still answers with its fingerprint, given as its last
/// parameter: the checks of an optimistic transaction's reads, in one
/// statement however many there are.
fn check(reads: Vec<Statement>) -> Statement {
    let mut params = Vec::new();
    let mut tests = Vec::with_capacity(reads.len());
    for read in reads {
        let sql = renumber(&read.sql, params.len());
        params.extend(read.params);
        tests.push(format!(
            "(SELECT {FINGERPRINT} FROM ({sql}) r) = ${}",
            params.len()
        ));
    }
    Statement::new(format!("SELECT 1 / ({})::int", tests.join(" AND ")), params)
}

/// `sql` with each parameter `$n` as `$(n + by)`, outside quoted text: the
/// store's own statements, whose quoted text is only ever in single quotes.
fn renumber(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '$' || quoted {
            out.push(c);
            continue;
        }
        let mut end = at + 1;
        while let Some((next, digit)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            end = next + digit.len_utf8();
            chars.next();
        }
        match sql[at + 1..end].parse::<usize>() {
            Ok(n) => out.push_str(&format!("${}", n + by)),
            Err(_) => out.push_str(&sql[at..end]),
        }
    }
    out
}

impl PgTx {
    pub(super) fn new(conn: PgConn, origin: String, begin: &'static str) -> Self {
        PgTx {
            conn,
            origin,
            notices: Vec::new(),
            held: RefCell::new(Vec::new()),
            begin,
            begun: Cell::new(false),
            checks: RefCell::new(None),
            wrote: Cell::new(false),
            fence: None,
            before: None,
            skew: None,
        }
    }

    /// Checks [`Tx::commit_before`] with the server's clock taken to be
    /// `skew` ahead of the broker's.
    pub(super) fn with_skew(mut self, skew: Option<chrono::TimeDelta>) -> Self {
        self.skew = skew;
        self
    }

    /// An optimistic transaction (see [`PgTx`]).
    pub(super) fn optimistic(conn: PgConn, origin: String) -> Self {
        let tx = PgTx::new(conn, origin, BEGIN_LOCKED);
        *tx.checks.borrow_mut() = Some(Vec::new());
        tx
    }

    /// Sends `statements`, after `BEGIN` if the transaction has not begun
    /// (an optimistic one begins when it takes the lock), and the commit
    /// after them when `commit` (a locked transaction's waits for the flush
    /// after it lets the lock go, [`COMMIT_LOCKED`]): one round trip. The
    /// rows of each statement.
    fn send(
        &self,
        statements: &[Statement],
        refusals: &[Refusal],
        commit: bool,
    ) -> Result<Vec<Vec<Row>>> {
        let begins = self.checks.borrow().is_none() && !self.begun.replace(true);
        let begin = begins.then_some(self.begin);
        let commit = commit.then_some(match self.begin {
            BEGIN_LOCKED => COMMIT_LOCKED,
            _ => "COMMIT",
        });
        match self.conn.send(begin, statements, commit)? {
            Ok(piped) => Ok(piped.rows),
            Err(failed) => Err(self.refused(failed, refusals)),
        }
    }

    /// For an optimistic transaction that does not hold the lock yet: the
    /// checks of its reads, to go first in the pipeline that takes it
    /// (which begins with the lock, see [`PgTx::send`]).
    fn take_lock(&self, statements: &mut Vec<Statement>, refusals: &mut Vec<Refusal>) {
        let Some(reads) = self.checks.borrow_mut().take() else {
            return;
        };
        if !reads.is_empty() {
            statements.push(check(reads));
            refusals.push(Refusal::Changed);
        }
    }

    /// The held writes, taken out to be sent after `statements`, and the
    /// `pg_notify` of each of `notices`. Appends held together go as one
    /// statement, after the writes held with them: nothing refers to an
    /// audit entry, and the transaction commits all or nothing. So do the
    /// last appends and a commit's first notices.
    fn take_held(
        &self,
        statements: &mut Vec<Statement>,
        refusals: &mut Vec<Refusal>,
        notices: &[String],
    ) {
        let mut linked = Vec::new();
        let held = self.held.take();
        if !held.is_empty() {
            self.wrote.set(true);
        }
        for held in held {
            match held {
                Held::Write(statement, refusal) => {
                    statements.push(statement);
                    refusals.push(refusal);
                }
                Held::Append(fields) => linked.push(fields),
                Held::Audit(statement) => {
                    push_appends(statements, refusals, &mut linked, &[]);
                    statements.push(statement);
                    refusals.push(Refusal::None);
                }
            }
        }
        let (with_appends, others) = notices.split_at(notices.len().min(NOTICES_PER_STATEMENT));
        push_appends(statements, refusals, &mut linked, with_appends);
        for notice in others {
            statements.push(appends(&[], std::slice::from_ref(notice)));
            refusals.push(Refusal::None);
        }
    }

    /// A failed pipeline in the store's words: a held update that changed
    /// nothing is [`StoreError::NotFound`], a failed check
    /// [`StoreError::Contended`].
    fn refused(&self, failed: Failed, refusals: &[Refusal]) -> StoreError {
        if failed.error.code() == Some(&SqlState::DIVISION_BY_ZERO) {
            match failed.at.and_then(|at| refusals.get(at)) {
                Some(Refusal::Missing(what)) => return StoreError::NotFound(what.clone()),
                Some(Refusal::Changed) => {
                    return StoreError::Contended(
                        "another transaction changed what this one read before it could \
                         commit; nothing was written"
                            .into(),
                    );
                }
                Some(Refusal::Passed) => {
                    return StoreError::Contended(crate::store::PASSED.into());
                }
                Some(Refusal::Deposed(epoch)) => {
                    return StoreError::Contended(format!(
                        "this instance no longer leads: another took the lease it held at \
                         epoch {epoch}; nothing was written"
                    ));
                }
                _ => {}
            }
        }
        // A reader's transaction is read-only: a write through it is the
        // caller's mistake, not a server that turned read-only.
        if self.begin == BEGIN_READING
            && failed.error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
        {
            return StoreError::Other(
                "a write was made through a transaction opened to read (Store::read); \
                 nothing was written"
                    .into(),
            );
        }
        self.conn.failed(failed.error)
    }

    /// Runs one statement that only reads and returns its rows (see
    /// [`PgTx::queries`]).
    fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        Ok(self
            .queries(vec![Statement::new(sql, params)])?
            .pop()
            .unwrap_or_default())
    }

    /// Runs statements that only read, in one round trip, and returns the
    /// rows of each. An optimistic transaction without the lock and with
    /// nothing held reads them as they stand, fingerprinted, and keeps a
    /// check of each for its commit; otherwise they go after the lock if it
    /// must be taken and the held writes.
    fn queries(&self, reads: Vec<Statement>) -> Result<Vec<Vec<Row>>> {
        let unlocked = self.checks.borrow().is_some() && self.held.borrow().is_empty();
        if !unlocked {
            return self.run_all(reads);
        }
        let statements: Vec<Statement> = reads
            .iter()
            .map(|read| Statement::new(fingerprinted(&read.sql), read.params.clone()))
            .collect();
        let refusals = vec![Refusal::None; statements.len()];
        let answers = self.send(&statements, &refusals, false)?;
        for (read, rows) in reads.into_iter().zip(&answers) {
            let fingerprint: String = match rows.first() {
                Some(row) => get(row, row.len() - 1)?,
                None => NO_ROWS.to_string(),
            };
            let mut checked = read.params;
            checked.push(text(&fingerprint));
            if let Some(checks) = self.checks.borrow_mut().as_mut() {
                checks.push(Statement::new(read.sql, checked));
            }
        }
        // The fingerprint column is left on each row: every reader takes
        // its columns by place, and the fingerprint comes after them.
        Ok(answers)
    }

    /// Runs `statement` after the lock (for an optimistic transaction that
    /// does not hold it yet) and the held writes, in one round trip, and
    /// returns its rows.
    fn run(&self, statement: Statement) -> Result<Vec<Row>> {
        Ok(self.run_all(vec![statement])?.pop().unwrap_or_default())
    }

    /// [`PgTx::run`] of several statements: the rows of each.
    fn run_all(&self, run: Vec<Statement>) -> Result<Vec<Vec<Row>>> {
        let mut statements = Vec::new();
        let mut refusals = Vec::new();
        self.take_lock(&mut statements, &mut refusals);
        self.take_held(&mut statements, &mut refusals, &[]);
        let first = statements.len();
        refusals.extend(run.iter().map(|_| Refusal::None));
        statements.extend(run);
        let mut answers = self.send(&statements, &refusals, false)?;
        Ok(answers.split_off(first.min(answers.len())))
    }

    /// Holds an insert back. One under a key already taken fails at the
    /// server, aborting the transaction, and is reported as a conflict by
    /// the call that sends it.
    fn hold_insert(&mut self, sql: &str, params: Vec<Param>) {
        self.held
            .get_mut()
            .push(Held::Write(Statement::new(sql, params), Refusal::None));
    }

    /// Holds an update of `what` back. `update` changes at most one row;
    /// wrapped so that the server fails it (division by zero) when it
    /// changes none, which the call that sends it reports as
    /// [`StoreError::NotFound`] naming `what`.
    fn hold_update(&mut self, what: String, update: &str, params: Vec<Param>) {
        self.held.get_mut().push(Held::Write(
            Statement::new(
                format!("WITH changed AS ({update} RETURNING 1) SELECT 1 / count(*) FROM changed"),
                params,
            ),
            Refusal::Missing(what),
        ));
    }

    /// Deletes at most `limit` rows of `table` whose `age` column is
    /// before `before`, the oldest first; how many. The rows are found by
    /// the index on `age` and deleted by their address (`ctid`) in the
    /// same statement: a join on the table's key was planned as a scan of
    /// the whole table (15 ms a batch at 200,000 keys, against 1 ms). The
    /// names are the store's own.
    fn purge_oldest(
        &self,
        table: &'static str,
        age: &'static str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64> {
        let purged = self.write(
            &format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
                 WHERE {age} < $1 ORDER BY {age} LIMIT $2)) RETURNING 1"
            ),
            vec![p(ms(before)), p(big(limit as u64, "limit")?)],
        )?;
        Ok(purged as u64)
    }

    /// Runs a write now (after the lock and the held writes) and returns
    /// how many rows it changed: it ends in `RETURNING 1`.
    fn write(&self, sql: &str, params: Vec<Param>) -> Result<usize> {
        self.wrote.set(true);
        Ok(self.run(Statement::new(sql, params))?.len())
    }
}

/// An exchange's claims column, as stored (JSON).
fn parse_claims(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|err| StoreError::Corrupt(format!("exchange claims: {err}")))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn p<T: tokio_postgres::types::ToSql + Send + Sync + 'static>(value: T) -> Param {
    std::sync::Arc::new(value)
}

fn text(value: &str) -> Param {
    std::sync::Arc::new(value.to_owned())
}

fn opt_text(value: Option<&String>) -> Param {
    std::sync::Arc::new(value.cloned())
}

/// A column's value; one that does not decode is corrupt.
fn get<'r, T: FromSql<'r>>(row: &'r Row, column: usize) -> Result<T> {
    row.try_get(column)
        .map_err(|err| StoreError::Corrupt(format!("column {column}: {err}")))
}

fn time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(time).transpose()
}

fn count<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn big(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Conflict(format!("{what} {value} is too large")))
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} `{value}`"))
}

/// An update that matched no row was of something never stored (rule 5).
fn updated(rows: usize, what: &str, id: &str) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("{what} {id}")));
    }
    Ok(())
}

const REQUEST_COLUMNS: &str = "id, kind, role, role_name, requester, justification, ticket, \
    incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, \
    approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, \
    signed_in_at";

/// A request's reviews, oldest first (by time, then reviewer), as one JSON
/// column after [`REQUEST_COLUMNS`]: read with the request, in the same
/// round trip.
const REVIEWS: &str = "(SELECT json_agg(json_build_array(reviewer, decision, comment, at) \
    ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews";

/// Where [`REVIEWS`] comes in a row.
const REQUEST_COLUMN_COUNT: usize = 25;

/// The reviews column's JSON: `[reviewer, decision, comment, at]` each.
type ReviewRow = (String, String, Option<String>, i64);

fn request_from_row(row: &Row) -> Result<AccessRequest> {
    let kind: String = get(row, 1)?;
    let state: String = get(row, 11)?;
    let claim_by: Option<String> = get(row, 18)?;
    let claim_until = opt_time(get(row, 19)?)?;
    let ack_by: Option<String> = get(row, 20)?;
    let ack_at = opt_time(get(row, 22)?)?;
    let tier: Option<i16> = get(row, 23)?;
    let tier = tier
        .map(|tier| u8::try_from(tier).map_err(|_| corrupt("tier", &tier.to_string())))
        .transpose()?;
    Ok(AccessRequest {
        id: get(row, 0)?,
        kind: match kind.as_str() {
            "access" => RequestKind::Access,
            "extension" => RequestKind::Extension,
            other => return Err(corrupt("request kind", other)),
        },
        role: get(row, 2)?,
        role_name: get(row, 3)?,
        requester: get(row, 4)?,
        justification: get(row, 5)?,
        ticket: get(row, 6)?,
        incident: get(row, 7)?,
        duration_secs: count(get(row, 8)?, "duration")?,
        starts_at: opt_time(get(row, 9)?)?,
        break_glass: get(row, 10)?,
        state: RequestState::parse(&state).ok_or_else(|| corrupt("request state", &state))?,
        created_at: time(get(row, 12)?)?,
        updated_at: time(get(row, 13)?)?,
        lapses_at: opt_time(get(row, 14)?)?,
        approvals_required: count(get(row, 15)?, "approvals required")?,
        reviews: Vec::new(),
        claim: claim_by
            .zip(claim_until)
            .map(|(by, until)| Claim { by, until }),
        grant_id: get(row, 16)?,
        reason: get(row, 17)?,
        acknowledgement: match (ack_by, ack_at) {
            (Some(by), Some(at)) => Some(Acknowledgement {
                by,
                comment: get(row, 21)?,
                at,
            }),
            _ => None,
        },
        tier,
        approvers: Vec::new(),
        signed_in_at: opt_time(get(row, 24)?)?,
    })
}

const GRANT_COLUMNS: &str = "id, request_id, role, role_name, holder, starts_at, expires_at, \
    state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification";

/// A grant with its access at a target, if it has one: select these from
/// [`GRANT_SOURCE`].
const GRANT_SELECT: &str = "id, request_id, role, role_name, holder, starts_at, expires_at, \
    state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification, \
    target, kind, access_state, access_reason, attempts, next_attempt_at, access_updated, \
    CASE WHEN live_until_updated = access_updated THEN live_until END";

const GRANT_SOURCE: &str = "grants LEFT JOIN grant_access ON grant_access.grant_id = grants.id";

fn grant_from_row(row: &Row) -> Result<Grant> {
    let state: String = get(row, 7)?;
    let access = match get::<Option<String>>(row, 15)? {
        None => None,
        Some(target) => {
            let access_state: String = get(row, 17)?;
            Some(TargetAccess {
                target,
                kind: get(row, 16)?,
                state: AccessState::parse(&access_state)
                    .ok_or_else(|| corrupt("access state", &access_state))?,
                reason: get(row, 18)?,
                attempts: count(get(row, 19)?, "attempts")?,
                next_attempt_at: opt_time(get(row, 20)?)?,
                updated_at: time(get(row, 21)?)?,
                live_until: opt_time(get(row, 22)?)?,
            })
        }
    };
    Ok(Grant {
        id: get(row, 0)?,
        request_id: get(row, 1)?,
        role: get(row, 2)?,
        role_name: get(row, 3)?,
        holder: get(row, 4)?,
        starts_at: time(get(row, 5)?)?,
        expires_at: time(get(row, 6)?)?,
        state: GrantState::parse(&state).ok_or_else(|| corrupt("grant state", &state))?,
        ended_at: opt_time(get(row, 8)?)?,
        revoked_by: get(row, 9)?,
        revoke_reason: get(row, 10)?,
        break_glass: get(row, 11)?,
        ticket: get(row, 12)?,
        incident: get(row, 13)?,
        justification: get(row, 14)?,
        access,
    })
}

const EFFECT_COLUMNS: &str = "id, grant_id, target, action, attempts, next_attempt_at, \
    last_error, created_at, done_at, access, system";

fn effect_from_row(row: &Row) -> Result<Effect> {
    let action: String = get(row, 3)?;
    Ok(Effect {
        id: get(row, 0)?,
        grant_id: get(row, 1)?,
        target: get(row, 2)?,
        action: EffectAction::parse(&action).ok_or_else(|| corrupt("effect action", &action))?,
        attempts: count(get(row, 4)?, "attempts")?,
        next_attempt_at: time(get(row, 5)?)?,
        last_error: get(row, 6)?,
        created_at: time(get(row, 7)?)?,
        done_at: opt_time(get(row, 8)?)?,
        access: access_from_column(get(row, 9)?)
            .map_err(|err| StoreError::Corrupt(format!("access of an effect: {err}")))?,
        system: get(row, 10)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, target, action, grant_id, status, duration_ms, error, at";

const NOTIFICATION_COLUMNS: &str = "id, dedup_key, channel, event, notice, attempts, \
    next_attempt_at, last_error, created_at, done_at, delivered";

fn notification_from_row(row: &Row) -> Result<Notification> {
    Ok(Notification {
        id: get(row, 0)?,
        dedup_key: get(row, 1)?,
        channel: get(row, 2)?,
        event: get(row, 3)?,
        notice: get(row, 4)?,
        attempts: count(get(row, 5)?, "attempts")?,
        next_attempt_at: time(get(row, 6)?)?,
        last_error: get(row, 7)?,
        created_at: time(get(row, 8)?)?,
        done_at: opt_time(get(row, 9)?)?,
        delivered: get(row, 10)?,
    })
}

const NOTIFICATION_DELIVERY_COLUMNS: &str =
    "notification_id, attempt, channel, event, status, duration_ms, error, at";

fn notification_delivery_from_row(row: &Row) -> Result<NotificationDelivery> {
    Ok(NotificationDelivery {
        notification_id: get(row, 0)?,
        attempt: count(get(row, 1)?, "attempt")?,
        channel: get(row, 2)?,
        event: get(row, 3)?,
        status: get::<Option<i32>>(row, 4)?
            .map(|status| count(i64::from(status), "status"))
            .transpose()?,
        duration_ms: count(get(row, 5)?, "duration")?,
        error: get(row, 6)?,
        at: time(get(row, 7)?)?,
    })
}

fn delivery_from_row(row: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: get(row, 0)?,
        target: get(row, 1)?,
        action: get(row, 2)?,
        grant_id: get(row, 3)?,
        status: get::<Option<i32>>(row, 4)?
            .map(|status| count(i64::from(status), "status"))
            .transpose()?,
        duration_ms: count(get(row, 5)?, "duration")?,
        error: get(row, 6)?,
        at: time(get(row, 7)?)?,
    })
}

const AUDIT_COLUMNS: &str = "seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash";

fn audit_from_row(row: &Row) -> Result<AuditEvent> {
    let kind: &str = get(row, 2)?;
    let details: &str = get(row, 10)?;
    Ok(AuditEvent {
        seq: get(row, 0)?,
        at: time(get(row, 1)?)?,
        kind: AuditKind::parse(kind),
        actor: get(row, 3)?,
        subject: get(row, 4)?,
        role: get(row, 5)?,
        request_id: get(row, 6)?,
        grant_id: get(row, 7)?,
        incident: get(row, 8)?,
        reason: get(row, 9)?,
        details: serde_json::from_str(details)
            .map_err(|err| StoreError::Corrupt(format!("audit details: {err}")))?,
        prev_hash: get(row, 11)?,
        hash: get(row, 12)?,
    })
}

/// Builds `WHERE ...` from optional filters, keeping values as bound
/// parameters (`$1`, `$2`, ...).
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    values: Vec<Param>,
}

impl Filter {
    fn bind(&mut self, value: Param) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn eq(&mut self, column: &str, value: Option<&String>) {
        if let Some(value) = value {
            let mark = self.bind(text(value));
            self.clauses.push(format!("{column} = {mark}"));
        }
    }

    /// `column` is one of `values` (none: any). One value binds as `=`: the
    /// plan PostgreSQL caches for `= ANY($n)` must guess the array's length,
    /// guesses long, and so loses to planning the statement afresh on every
    /// call, which costs more than running it.
    fn within(&mut self, column: &str, mut values: Vec<String>) {
        match values.len() {
            0 => {}
            1 => {
                let mark = self.bind(text(&values.remove(0)));
                self.clauses.push(format!("{column} = {mark}"));
            }
            _ => {
                let mark = self.bind(p(values));
                self.clauses.push(format!("{column} = ANY({mark})"));
            }
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

impl PgTx {
    /// Inserts a row now; one under a key already taken is a conflict
    /// (identities, signing keys, webhook deliveries and rules 10 to 13;
    /// new target effects, of rule 9, are held instead). `ON CONFLICT DO
    /// NOTHING` rather than the unique violation: a failed statement aborts
    /// a PostgreSQL transaction, and the broker goes on after these
    /// refusals (rule 12).
    fn insert(&self, table: &str, sql: &str, values: Vec<Param>) -> Result<()> {
        let inserted = self.write(&format!("{sql} ON CONFLICT DO NOTHING RETURNING 1"), values)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "{table}: a row with the same key is already stored"
            )));
        }
        Ok(())
    }

    /// A grant's access, as part of the grant (rule 7): written when present.
    fn write_access(&mut self, g: &Grant) -> Result<()> {
        let Some(access) = &g.access else {
            return Ok(());
        };
        self.hold_insert(
            "INSERT INTO grant_access (grant_id, target, kind, access_state, access_reason, \
             attempts, next_attempt_at, access_updated, live_until, live_until_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8) \
             ON CONFLICT (grant_id) DO UPDATE SET target = $2, kind = $3, access_state = $4, \
             access_reason = $5, attempts = $6, next_attempt_at = $7, access_updated = $8, \
             live_until = $9, live_until_updated = $8",
            vec![
                text(&g.id),
                text(&access.target),
                text(&access.kind),
                text(access.state.as_str()),
                opt_text(access.reason.as_ref()),
                p(i64::from(access.attempts)),
                p(access.next_attempt_at.map(ms)),
                p(ms(access.updated_at)),
                p(access.live_until.map(ms)),
            ],
        );
        Ok(())
    }

    /// The requests the query finds (their columns, then [`REVIEWS`]).
    fn query_requests(&self, sql: &str, values: Vec<Param>) -> Result<Vec<AccessRequest>> {
        requests_from_rows(&self.query(sql, values)?)
    }

    /// Grants, read as every read of the transaction is (see
    /// [`PgTx::query`]): after its own writes, under its lock or checked
    /// at its commit.
    fn query_grants(&self, sql: &str, values: Vec<Param>) -> Result<Vec<Grant>> {
        self.query(sql, values)?
            .iter()
            .map(grant_from_row)
            .collect()
    }
}

/// Requests from rows of their columns, then [`REVIEWS`].
fn requests_from_rows(rows: &[Row]) -> Result<Vec<AccessRequest>> {
    rows.iter()
        .map(|row| {
            let mut request = request_from_row(row)?;
            let reviews: Option<&str> = get(row, REQUEST_COLUMN_COUNT)?;
            if let Some(reviews) = reviews {
                let reviews: Vec<ReviewRow> = serde_json::from_str(reviews)
                    .map_err(|err| StoreError::Corrupt(format!("reviews: {err}")))?;
                request.reviews = reviews
                    .into_iter()
                    .map(|(reviewer, decision, comment, at)| {
                        Ok(Review {
                            reviewer,
                            decision: match decision.as_str() {
                                "approve" => Decision::Approve,
                                "deny" => Decision::Deny,
                                other => return Err(corrupt("decision", other)),
                            },
                            comment,
                            at: time(at)?,
                        })
                    })
                    .collect::<Result<_>>()?;
            }
            Ok(request)
        })
        .collect()
}

impl Tx for PgTx {
    fn request(&self, id: &str) -> Result<Option<AccessRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS}, {REVIEWS} FROM requests WHERE id = $1");
        Ok(self.query_requests(&sql, vec![text(id)])?.pop())
    }

    /// Both reads in one round trip: the grants' by the request's
    /// requester and role, read in the same statement.
    fn request_with_holding(&self, id: &str) -> Result<Option<(AccessRequest, Vec<Grant>)>> {
        let request = format!("SELECT {REQUEST_COLUMNS}, {REVIEWS} FROM requests WHERE id = $1");
        let holding = format!(
            "SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} \
             WHERE holder = (SELECT requester FROM requests WHERE id = $1) \
             AND role = (SELECT role FROM requests WHERE id = $1) AND state = $2 \
             ORDER BY starts_at DESC, id DESC"
        );
        let mut answers = self
            .queries(vec![
                Statement::new(request, vec![text(id)]),
                Statement::new(holding, vec![text(id), text(GrantState::Active.as_str())]),
            ])?
            .into_iter();
        let request = requests_from_rows(&answers.next().unwrap_or_default())?.pop();
        let held = answers
            .next()
            .unwrap_or_default()
            .iter()
            .map(grant_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(request.map(|request| (request, held)))
    }

    fn requests(&self, query: &RequestQuery) -> Result<Vec<AccessRequest>> {
        let mut filter = Filter::default();
        filter.eq("requester", query.requester.as_ref());
        filter.within("role", query.roles.clone());
        filter.within(
            "state",
            query
                .states
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
        );
        filter.eq("incident", query.incident.as_ref());
        filter.eq("grant_id", query.grant_id.as_ref());
        if query.unacknowledged_break_glass {
            filter.raw("break_glass AND ack_at IS NULL");
        }
        let order = if query.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {REQUEST_COLUMNS}, {REVIEWS} FROM requests {} \
             ORDER BY created_at {order}, ord {order}{}",
            filter.sql(),
            limit(query.limit)
        );
        self.query_requests(&sql, filter.values)
    }

    fn insert_request(&mut self, r: &AccessRequest) -> Result<()> {
        let kind = match r.kind {
            RequestKind::Access => "access",
            RequestKind::Extension => "extension",
        };
        self.hold_insert(
            &format!(
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
            ),
            vec![
                text(&r.id),
                text(kind),
                text(&r.role),
                text(&r.role_name),
                text(&r.requester),
                text(&r.justification),
                opt_text(r.ticket.as_ref()),
                opt_text(r.incident.as_ref()),
                p(big(r.duration_secs, "duration")?),
                p(r.starts_at.map(ms)),
                p(r.break_glass),
                text(r.state.as_str()),
                p(ms(r.created_at)),
                p(ms(r.updated_at)),
                p(r.lapses_at.map(ms)),
                p(i64::from(r.approvals_required)),
                opt_text(r.grant_id.as_ref()),
                opt_text(r.reason.as_ref()),
                opt_text(r.claim.as_ref().map(|c| &c.by)),
                p(r.claim.as_ref().map(|c| ms(c.until))),
                opt_text(r.acknowledgement.as_ref().map(|a| &a.by)),
                opt_text(r.acknowledgement.as_ref().and_then(|a| a.comment.as_ref())),
                p(r.acknowledgement.as_ref().map(|a| ms(a.at))),
                p(r.tier.map(i16::from)),
                p(r.signed_in_at.map(ms)),
            ],
        );
        Ok(())
    }

    fn update_request(&mut self, r: &AccessRequest) -> Result<()> {
        self.hold_update(
            format!("request {}", r.id),
            "UPDATE requests SET state = $2, updated_at = $3, lapses_at = $4, grant_id = $5, \
             reason = $6, claim_by = $7, claim_until = $8, ack_by = $9, ack_comment = $10, \
             ack_at = $11, approvals_required = $12 WHERE id = $1",
            vec![
                text(&r.id),
                text(r.state.as_str()),
                p(ms(r.updated_at)),
                p(r.lapses_at.map(ms)),
                opt_text(r.grant_id.as_ref()),
                opt_text(r.reason.as_ref()),
                opt_text(r.claim.as_ref().map(|c| &c.by)),
                p(r.claim.as_ref().map(|c| ms(c.until))),
                opt_text(r.acknowledgement.as_ref().map(|a| &a.by)),
                opt_text(r.acknowledgement.as_ref().and_then(|a| a.comment.as_ref())),
                p(r.acknowledgement.as_ref().map(|a| ms(a.at))),
                p(i64::from(r.approvals_required)),
            ],
        );
        Ok(())
    }

    fn insert_review(&mut self, request_id: &str, review: &Review) -> Result<()> {
        let decision = match review.decision {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        };
        self.hold_insert(
            "INSERT INTO reviews (request_id, reviewer, decision, comment, at) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                text(request_id),
                text(&review.reviewer),
                text(decision),
                opt_text(review.comment.as_ref()),
                p(ms(review.at)),
            ],
        );
        Ok(())
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let sql = format!("SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} WHERE id = $1");
        Ok(self.query_grants(&sql, vec![text(id)])?.pop())
    }

    fn grants(&self, query: &GrantQuery) -> Result<Vec<Grant>> {
        let mut filter = Filter::default();
        filter.eq("holder", query.holder.as_ref());
        filter.eq("role", query.role.as_ref());
        filter.within(
            "state",
            query
                .states
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
        );
        filter.eq("incident", query.incident.as_ref());
        filter.eq("target", query.target.as_ref());
        filter.within(
            "access_state",
            query
                .access_states
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
        );
        if let Some(after) = query.ends_after {
            let mark = filter.bind(p(ms(after)));
            filter.raw(&format!("grants.expires_at > {mark}"));
        }
        let sql = format!(
            "SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} {} ORDER BY starts_at DESC, id DESC{}",
            filter.sql(),
            limit(query.limit)
        );
        self.query_grants(&sql, filter.values)
    }

    fn insert_grant(&mut self, g: &Grant) -> Result<()> {
        self.hold_insert(
            &format!(
                "INSERT INTO grants ({GRANT_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            vec![
                text(&g.id),
                text(&g.request_id),
                text(&g.role),
                text(&g.role_name),
                text(&g.holder),
                p(ms(g.starts_at)),
                p(ms(g.expires_at)),
                text(g.state.as_str()),
                p(g.ended_at.map(ms)),
                opt_text(g.revoked_by.as_ref()),
                opt_text(g.revoke_reason.as_ref()),
                p(g.break_glass),
                opt_text(g.ticket.as_ref()),
                opt_text(g.incident.as_ref()),
                text(&g.justification),
            ],
        );
        self.write_access(g)
    }

    fn update_grant(&mut self, g: &Grant) -> Result<()> {
        self.hold_update(
            format!("grant {}", g.id),
            "UPDATE grants SET expires_at = $2, state = $3, ended_at = $4, revoked_by = $5, \
             revoke_reason = $6 WHERE id = $1",
            vec![
                text(&g.id),
                p(ms(g.expires_at)),
                text(g.state.as_str()),
                p(g.ended_at.map(ms)),
                opt_text(g.revoked_by.as_ref()),
                opt_text(g.revoke_reason.as_ref()),
            ],
        );
        self.write_access(g)
    }

    fn due_requests(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<AccessRequest>> {
        let sql = format!(
            "SELECT * FROM ( \
             SELECT {REQUEST_COLUMNS}, {REVIEWS}, ord FROM requests \
             WHERE state = 'pending' AND lapses_at <= $1 \
             UNION ALL \
             SELECT {REQUEST_COLUMNS}, {REVIEWS}, ord FROM requests WHERE state = 'approved' \
             AND coalesce(starts_at, 0) <= $1) due ORDER BY created_at, ord LIMIT $2"
        );
        self.query_requests(&sql, vec![p(ms(now)), p(big(limit as u64, "limit")?)])
    }

    fn due_grants(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} WHERE state = 'active' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2"
        );
        self.query_grants(&sql, vec![p(ms(now)), p(big(limit as u64, "limit")?)])
    }

    fn due_ids(&self, now: DateTime<Utc>, limit: usize) -> Result<(Vec<String>, Vec<String>)> {
        let limit = big(limit as u64, "limit")?;
        let ids = |sql: &str| -> Result<Vec<String>> {
            self.query(sql, vec![p(ms(now)), p(limit)])?
                .iter()
                .map(|row| get(row, 0))
                .collect()
        };
        Ok((
            ids("SELECT id FROM ( \
                 SELECT id, created_at, ord FROM requests \
                 WHERE state = 'pending' AND lapses_at <= $1 \
                 UNION ALL \
                 SELECT id, created_at, ord FROM requests WHERE state = 'approved' \
                 AND coalesce(starts_at, 0) <= $1) due ORDER BY created_at, ord LIMIT $2")?,
            ids(
                "SELECT id FROM grants WHERE state = 'active' AND expires_at <= $1 \
                 ORDER BY expires_at LIMIT $2",
            )?,
        ))
    }

    fn uncollected(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Exchange>> {
        let rows = self.query(
            &format!(
                "SELECT {EXCHANGE_COLUMNS} FROM workload_exchanges \
                 WHERE redeemed_at IS NULL AND collect_by IS NOT NULL AND collect_by <= $1 \
                 ORDER BY collect_by, task_key LIMIT $2"
            ),
            vec![p(ms(now)), p(big(limit as u64, "limit")?)],
        )?;
        rows.iter().map(exchange_from_row).collect()
    }

    fn uncollected_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
        self.query(
            "SELECT task_key FROM workload_exchanges \
             WHERE redeemed_at IS NULL AND collect_by IS NOT NULL AND collect_by <= $1 \
             ORDER BY collect_by, task_key LIMIT $2",
            vec![p(ms(now)), p(big(limit as u64, "limit")?)],
        )?
        .iter()
        .map(|row| get(row, 0))
        .collect()
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let rows = self.query(
            "SELECT min(t) FROM ( \
             SELECT min(expires_at) AS t FROM grants WHERE state = 'active' \
             UNION ALL SELECT min(lapses_at) FROM requests WHERE state = 'pending' \
             UNION ALL SELECT min(coalesce(starts_at, 0)) FROM requests WHERE state = 'approved' \
             UNION ALL SELECT min(collect_by) FROM workload_exchanges \
             WHERE redeemed_at IS NULL AND collect_by IS NOT NULL) due",
            Vec::new(),
        )?;
        match rows.first() {
            Some(row) => opt_time(get(row, 0)?),
            None => Ok(None),
        }
    }

    fn idempotency_key(&self, requester: &str, key: &str) -> Result<Option<(String, String)>> {
        let rows = self.query(
            "SELECT body_hash, request_id FROM idempotency_keys WHERE requester = $1 AND key = $2",
            vec![text(requester), text(key)],
        )?;
        rows.first()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .transpose()
    }

    fn insert_idempotency_key(
        &mut self,
        requester: &str,
        key: &str,
        body_hash: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.hold_insert(
            "INSERT INTO idempotency_keys (requester, key, body_hash, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                text(requester),
                text(key),
                text(body_hash),
                text(request_id),
                p(ms(at)),
            ],
        );
        Ok(())
    }

    fn purge_idempotency_keys(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        self.purge_oldest("idempotency_keys", "created_at", before, limit)
    }

    /// Read under the lock (an optimistic transaction takes it here), so
    /// it stays the head until this transaction appends.
    fn audit_head(&self) -> Result<Option<AuditHead>> {
        let rows = self.run(Statement::new(AUDIT_HEAD, Vec::new()))?;
        rows.first().map(audit_head_from_row).transpose()
    }

    fn insert_audit(&mut self, entry: &AuditEvent) -> Result<()> {
        self.held.get_mut().push(Held::Audit(Statement::new(
            format!(
                "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            [
                vec![p(entry.seq)],
                audit_fields(entry),
                vec![text(&entry.prev_hash), text(&entry.hash)],
            ]
            .concat(),
        )));
        Ok(())
    }

    /// Linked in the database: the insert reads the head itself, and
    /// computes the hash as [`crate::store::link`] does (see [`appends`]).
    /// It is held, so it runs under the lock (an optimistic transaction
    /// sends its held writes only after taking it), where the head it reads
    /// stays the head until this transaction commits.
    fn append_audit(&mut self, entry: &mut AuditEvent, tail: &[u8]) -> Result<()> {
        self.held.get_mut().push(Held::Append(
            [audit_fields(entry), vec![p(tail.to_vec())]].concat(),
        ));
        Ok(())
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut filter = Filter::default();
        let after = filter.bind(p(query.after_seq));
        filter.clauses.push(format!("seq > {after}"));
        if let Some(user) = &query.involving {
            let mark = filter.bind(text(user));
            filter
                .clauses
                .push(format!("(subject = {mark} OR actor = {mark})"));
        }
        filter.eq("incident", query.incident.as_ref());
        filter.eq("request_id", query.request_id.as_ref());
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit {} ORDER BY seq{}{}",
            filter.sql(),
            if query.newest { " DESC" } else { "" },
            limit(query.limit)
        );
        let mut events = self
            .query(&sql, filter.values)?
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        if query.newest {
            events.reverse();
        }
        Ok(events)
    }

    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()> {
        scan_audit(&|sql, params| self.query(sql, params), visit)
    }

    fn identity_user(&self, issuer: &str, subject: &str) -> Result<Option<String>> {
        let rows = self.query(
            "SELECT \"user\" FROM identities WHERE issuer = $1 AND subject = $2",
            vec![text(issuer), text(subject)],
        )?;
        rows.first().map(|row| get(row, 0)).transpose()
    }

    fn user_identity(&self, user: &str) -> Result<Option<(String, String)>> {
        let rows = self.query(
            "SELECT issuer, subject FROM identities WHERE \"user\" = $1",
            vec![text(user)],
        )?;
        rows.first()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .transpose()
    }

    fn insert_identity(
        &mut self,
        issuer: &str,
        subject: &str,
        user: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.insert("identities", 
            "INSERT INTO identities (issuer, subject, \"user\", created_at) VALUES ($1, $2, $3, $4)",
            vec![text(issuer), text(subject), text(user), p(ms(at))],
        )?;
        Ok(())
    }

    fn remembered(&self, user: &str) -> Result<Option<Remembered>> {
        let rows = self.query(
            "SELECT issuer, display_name, groups, seen_at FROM identities WHERE \"user\" = $1",
            vec![text(user)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Remembered::from_columns(
            user,
            get(row, 0)?,
            get(row, 1)?,
            get(row, 2)?,
            opt_time(get(row, 3)?)?,
        )
    }

    fn remembered_in(&self, groups: &[String]) -> Result<Vec<(String, Remembered)>> {
        let wanted =
            serde_json::to_string(groups).map_err(|err| StoreError::Other(err.to_string()))?;
        let rows = self.query(
            "SELECT \"user\", issuer, display_name, groups, seen_at FROM identities \
             WHERE groups IS NOT NULL \
             AND groups::jsonb ?| ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)) \
             ORDER BY \"user\"",
            vec![text(&wanted)],
        )?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let user: String = get(row, 0)?;
            let kept = Remembered::from_columns(
                &user,
                get(row, 1)?,
                get(row, 2)?,
                get(row, 3)?,
                opt_time(get(row, 4)?)?,
            )?;
            if let Some(kept) = kept {
                found.push((user, kept));
            }
        }
        Ok(found)
    }

    fn remember(&mut self, user: &str, seen: &Remembered) -> Result<()> {
        let groups = seen.groups_column()?;
        let changed = self.write(
            "UPDATE identities SET display_name = $2, groups = $3, seen_at = $4 \
             WHERE \"user\" = $1 RETURNING 1",
            vec![
                text(user),
                text(&seen.display_name),
                text(&groups),
                p(seen.as_of.map(ms)),
            ],
        )?;
        updated(changed, "identity of", user)
    }

    fn insert_effect(&mut self, e: &Effect) -> Result<()> {
        // Held, as the grant it belongs to is: a new effect's id is new.
        self.hold_insert(
            &format!(
                "INSERT INTO target_effects ({EFFECT_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            vec![
                text(&e.id),
                text(&e.grant_id),
                text(&e.target),
                text(e.action.as_str()),
                p(i64::from(e.attempts)),
                p(ms(e.next_attempt_at)),
                opt_text(e.last_error.as_ref()),
                p(ms(e.created_at)),
                p(e.done_at.map(ms)),
                p(access_column(e.access.as_ref())),
                opt_text(e.system.as_ref()),
            ],
        );
        Ok(())
    }

    fn update_effect(&mut self, e: &Effect) -> Result<()> {
        let changed = self.write(
            "UPDATE target_effects SET attempts = $2, next_attempt_at = $3, last_error = $4, \
             done_at = $5 WHERE id = $1 RETURNING 1",
            vec![
                text(&e.id),
                p(i64::from(e.attempts)),
                p(ms(e.next_attempt_at)),
                opt_text(e.last_error.as_ref()),
                p(e.done_at.map(ms)),
            ],
        )?;
        updated(changed, "effect", &e.id)
    }

    fn grant_effects(&self, grant_id: &str) -> Result<Vec<Effect>> {
        self.query(
            &format!(
                "SELECT {EFFECT_COLUMNS} FROM target_effects WHERE grant_id = $1 \
                 ORDER BY created_at, ord"
            ),
            vec![text(grant_id)],
        )?
        .iter()
        .map(effect_from_row)
        .collect()
    }

    fn due_effects(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Effect>> {
        self.query(
            &format!(
                "SELECT {EFFECT_COLUMNS} FROM target_effects WHERE done_at IS NULL \
                 AND next_attempt_at <= $1 AND target <> ALL($3) \
                 ORDER BY next_attempt_at, created_at, ord LIMIT $2"
            ),
            vec![p(ms(now)), p(limit as i64), p(skip.to_vec())],
        )?
        .iter()
        .map(effect_from_row)
        .collect()
    }

    fn effect(&self, id: &str) -> Result<Option<Effect>> {
        self.query(
            &format!("SELECT {EFFECT_COLUMNS} FROM target_effects WHERE id = $1"),
            vec![text(id)],
        )?
        .first()
        .map(effect_from_row)
        .transpose()
    }

    fn due_effect_ids(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<(String, String)>> {
        self.query(
            "SELECT id, grant_id FROM target_effects WHERE done_at IS NULL \
             AND next_attempt_at <= $1 AND target <> ALL($3) \
             ORDER BY next_attempt_at, created_at, ord LIMIT $2",
            vec![p(ms(now)), p(limit as i64), p(skip.to_vec())],
        )?
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect()
    }

    fn next_effect_due(&self) -> Result<Option<DateTime<Utc>>> {
        let rows = self.query(
            "SELECT min(next_attempt_at) FROM target_effects WHERE done_at IS NULL",
            Vec::new(),
        )?;
        match rows.first() {
            Some(row) => opt_time(get(row, 0)?),
            None => Ok(None),
        }
    }

    fn insert_delivery(&mut self, d: &Delivery) -> Result<()> {
        self.insert(
            "webhook_deliveries",
            &format!(
                "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            vec![
                text(&d.id),
                text(&d.target),
                text(&d.action),
                opt_text(d.grant_id.as_ref()),
                p(d.status.map(i32::from)),
                p(big(d.duration_ms, "duration")?),
                opt_text(d.error.as_ref()),
                p(ms(d.at)),
            ],
        )?;
        Ok(())
    }

    fn deliveries(&self, limit: usize) -> Result<Vec<Delivery>> {
        self.query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                 ORDER BY at DESC, ord DESC LIMIT $1"
            ),
            vec![p(limit as i64)],
        )?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    fn purge_deliveries(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        self.purge_oldest("webhook_deliveries", "at", before, limit)
    }

    fn insert_handle(
        &mut self,
        target: &str,
        grant_id: &str,
        handle: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.write(
            "INSERT INTO target_handles (target, grant_id, handle, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING RETURNING 1",
            vec![text(target), text(grant_id), text(handle), p(ms(at))],
        )?;
        Ok(())
    }

    fn handles(&self, target: &str, grant_id: Option<&str>) -> Result<Vec<(String, String)>> {
        // Two statements, so that one grant's are found by the key.
        match grant_id {
            Some(grant_id) => self.query(
                "SELECT grant_id, handle FROM target_handles \
                 WHERE target = $1 AND grant_id = $2 ORDER BY handle",
                vec![text(target), text(grant_id)],
            ),
            None => self.query(
                "SELECT grant_id, handle FROM target_handles \
                 WHERE target = $1 ORDER BY grant_id, handle",
                vec![text(target)],
            ),
        }?
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect()
    }

    fn delete_handle(&mut self, target: &str, grant_id: &str, handle: &str) -> Result<()> {
        self.write(
            "DELETE FROM target_handles WHERE target = $1 AND grant_id = $2 AND handle = $3 \
             RETURNING 1",
            vec![text(target), text(grant_id), text(handle)],
        )?;
        Ok(())
    }

    fn insert_drift_removal(
        &mut self,
        target: &str,
        name: &str,
        grant_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.write(
            "INSERT INTO drift_removals (target, name, grant_id, found_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            vec![
                text(target),
                text(name),
                p(grant_id.map(str::to_owned)),
                p(ms(at)),
            ],
        )?;
        Ok(())
    }

    fn drift_removals(&self, target: &str) -> Result<Vec<(String, Option<String>)>> {
        let rows = self.query(
            "SELECT name, grant_id FROM drift_removals WHERE target = $1 ORDER BY name",
            vec![text(target)],
        )?;
        rows.iter()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .collect()
    }

    fn delete_drift_removal(&mut self, target: &str, name: &str) -> Result<()> {
        self.write(
            "DELETE FROM drift_removals WHERE target = $1 AND name = $2 RETURNING 1",
            vec![text(target), text(name)],
        )?;
        Ok(())
    }

    fn notification_cursor(&self) -> Result<i64> {
        let rows = self.query(
            "SELECT seq FROM notification_cursor WHERE id = 1",
            Vec::new(),
        )?;
        match rows.first() {
            Some(row) => get(row, 0),
            None => Ok(0),
        }
    }

    fn set_notification_cursor(&mut self, seq: i64) -> Result<()> {
        self.hold_insert(
            "INSERT INTO notification_cursor (id, seq) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET seq = $1",
            vec![p(seq)],
        );
        Ok(())
    }

    fn insert_notification(&mut self, n: &Notification) -> Result<()> {
        // ON CONFLICT DO NOTHING: a refused row does not abort the
        // transaction (rule 12).
        self.insert(
            "notifications",
            &format!(
                "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            vec![
                text(&n.id),
                text(&n.dedup_key),
                text(&n.channel),
                text(&n.event),
                text(&n.notice),
                p(i64::from(n.attempts)),
                p(ms(n.next_attempt_at)),
                opt_text(n.last_error.as_ref()),
                p(ms(n.created_at)),
                p(n.done_at.map(ms)),
                p(n.delivered),
            ],
        )
    }

    fn notification(&self, id: &str) -> Result<Option<Notification>> {
        let rows = self.query(
            &format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"),
            vec![text(id)],
        )?;
        rows.first().map(notification_from_row).transpose()
    }

    fn update_notification(&mut self, n: &Notification) -> Result<()> {
        let changed = self.write(
            "UPDATE notifications SET attempts = $2, next_attempt_at = $3, last_error = $4, \
             done_at = $5, delivered = $6 WHERE id = $1 RETURNING 1",
            vec![
                text(&n.id),
                p(i64::from(n.attempts)),
                p(ms(n.next_attempt_at)),
                opt_text(n.last_error.as_ref()),
                p(n.done_at.map(ms)),
                p(n.delivered),
            ],
        )?;
        updated(changed, "notification", &n.id)
    }

    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Notification>> {
        self.query(
            &format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE done_at IS NULL \
                 AND next_attempt_at <= $1 AND channel <> ALL($3) \
                 ORDER BY next_attempt_at, created_at, ord LIMIT $2"
            ),
            vec![p(ms(now)), p(limit as i64), p(skip.to_vec())],
        )?
        .iter()
        .map(notification_from_row)
        .collect()
    }

    fn due_notification_ids(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<String>> {
        self.query(
            "SELECT id FROM notifications WHERE done_at IS NULL \
             AND next_attempt_at <= $1 AND channel <> ALL($3) \
             ORDER BY next_attempt_at, created_at, ord LIMIT $2",
            vec![p(ms(now)), p(limit as i64), p(skip.to_vec())],
        )?
        .iter()
        .map(|row| get(row, 0))
        .collect()
    }

    fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>> {
        let rows = self.query(
            "SELECT min(next_attempt_at) FROM notifications WHERE done_at IS NULL",
            Vec::new(),
        )?;
        match rows.first() {
            Some(row) => opt_time(get(row, 0)?),
            None => Ok(None),
        }
    }

    fn notifications_given_up(&self) -> Result<u64> {
        let rows = self.query(
            "SELECT count(*) FROM notifications WHERE done_at IS NOT NULL AND NOT delivered",
            Vec::new(),
        )?;
        let given_up: i64 = match rows.first() {
            Some(row) => get(row, 0)?,
            None => 0,
        };
        Ok(u64::try_from(given_up).unwrap_or_default())
    }

    fn insert_notification_delivery(&mut self, d: &NotificationDelivery) -> Result<()> {
        self.hold_insert(
            &format!(
                "INSERT INTO notification_deliveries ({NOTIFICATION_DELIVERY_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            vec![
                text(&d.notification_id),
                p(i64::from(d.attempt)),
                text(&d.channel),
                text(&d.event),
                p(d.status.map(i32::from)),
                p(big(d.duration_ms, "duration")?),
                opt_text(d.error.as_ref()),
                p(ms(d.at)),
            ],
        );
        Ok(())
    }

    fn notification_deliveries(&self, limit: usize) -> Result<Vec<NotificationDelivery>> {
        self.query(
            &format!(
                "SELECT {NOTIFICATION_DELIVERY_COLUMNS} FROM notification_deliveries \
                 ORDER BY at DESC, ord DESC LIMIT $1"
            ),
            vec![p(limit as i64)],
        )?
        .iter()
        .map(notification_delivery_from_row)
        .collect()
    }

    fn purge_notification_deliveries(
        &mut self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64> {
        self.purge_oldest("notification_deliveries", "at", before, limit)
    }

    fn exchange(&self, task_key: &str) -> Result<Option<Exchange>> {
        let rows = self.query(
            &format!("SELECT {EXCHANGE_COLUMNS} FROM workload_exchanges WHERE task_key = $1"),
            vec![text(task_key)],
        )?;
        rows.first().map(exchange_from_row).transpose()
    }

    fn workload_claims(&self, request_id: &str) -> Result<Option<serde_json::Value>> {
        let rows = self.query(
            "SELECT claims FROM workload_exchanges WHERE request_id = $1",
            vec![text(request_id)],
        )?;
        match rows.first() {
            Some(row) => parse_claims(get(row, 0)?),
            None => Ok(None),
        }
    }

    fn insert_exchange(&mut self, e: &Exchange) -> Result<()> {
        self.insert(
            "workload_exchanges",
            "INSERT INTO workload_exchanges (task_key, principal, request_id, expires_at, \
             created_at, redeemed_at, claims, collect_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(&e.task_key),
                text(&e.principal),
                text(&e.request_id),
                p(ms(e.expires_at)),
                p(ms(e.created_at)),
                p(e.redeemed_at.map(ms)),
                p(e.claims.as_ref().map(|c| c.to_string())),
                p(e.collect_by.map(ms)),
            ],
        )?;
        Ok(())
    }

    fn update_exchange(&mut self, e: &Exchange) -> Result<()> {
        let changed = self.write(
            "UPDATE workload_exchanges SET redeemed_at = $2, expires_at = $3, collect_by = $4 \
             WHERE task_key = $1 RETURNING 1",
            vec![
                text(&e.task_key),
                p(e.redeemed_at.map(ms)),
                p(ms(e.expires_at)),
                p(e.collect_by.map(ms)),
            ],
        )?;
        updated(changed, "exchange", &e.task_key)
    }

    fn purge_exchanges(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        self.purge_oldest("workload_exchanges", "expires_at", before, limit)
    }

    fn signing_key(&self) -> Result<Option<(String, Vec<u8>)>> {
        let rows = self.query(
            "SELECT kid, pkcs8 FROM signing_keys ORDER BY created_at DESC LIMIT 1",
            Vec::new(),
        )?;
        rows.first()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .transpose()
    }

    fn insert_signing_key(&mut self, kid: &str, pkcs8: &[u8], at: DateTime<Utc>) -> Result<()> {
        self.insert(
            "signing_keys",
            "INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3)",
            vec![text(kid), p(pkcs8.to_vec()), p(ms(at))],
        )?;
        Ok(())
    }

    fn broker_key(&self, purpose: &str) -> Result<Option<(String, Vec<u8>)>> {
        broker_key(&|sql, params| self.query(sql, params), purpose)
    }

    fn broker_keys_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = self.query(
            "SELECT purpose, pkcs8 FROM broker_keys \
             WHERE substr(purpose, 1, length($1)) = $1 ORDER BY purpose",
            vec![text(prefix)],
        )?;
        rows.iter()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .collect()
    }

    fn insert_broker_key(
        &mut self,
        purpose: &str,
        kid: &str,
        pkcs8: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.insert(
            "broker_keys",
            "INSERT INTO broker_keys (purpose, kid, pkcs8, created_at) VALUES ($1, $2, $3, $4)",
            vec![text(purpose), text(kid), p(pkcs8.to_vec()), p(ms(at))],
        )?;
        Ok(())
    }

    fn note_ssh_authority(&mut self, public_key: &str, at: DateTime<Utc>) -> Result<()> {
        self.write(
            "INSERT INTO ssh_authorities (public_key, first_at, last_at) VALUES ($1, $2, $2) \
             ON CONFLICT (public_key) DO UPDATE \
             SET last_at = greatest(ssh_authorities.last_at, $2) RETURNING 1",
            vec![text(public_key), p(ms(at))],
        )?;
        Ok(())
    }

    fn ssh_authorities(&self) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT public_key FROM ssh_authorities ORDER BY last_at DESC, public_key",
            Vec::new(),
        )?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    fn ssh_authority_target(&self, public_key: &str) -> Result<Option<String>> {
        ssh_authority_target(&|sql, params| self.query(sql, params), public_key)
    }

    fn bind_ssh_authority(
        &mut self,
        public_key: &str,
        target: &str,
        at: DateTime<Utc>,
    ) -> Result<String> {
        self.wrote.set(true);
        let rows = self.run(Statement::new(
            "INSERT INTO ssh_authorities (public_key, first_at, last_at, target) \
             VALUES ($1, $2, $2, $3) \
             ON CONFLICT (public_key) DO UPDATE \
             SET target = coalesce(ssh_authorities.target, $3) RETURNING target",
            vec![text(public_key), p(ms(at)), text(target)],
        ))?;
        match rows.first() {
            Some(row) => get(row, 0),
            None => Err(StoreError::Corrupt(
                "an ssh CA's binding returned no row".into(),
            )),
        }
    }

    fn insert_slack_replay(&mut self, signature: &str, kept_until: DateTime<Utc>) -> Result<()> {
        self.insert(
            "slack_replays",
            "INSERT INTO slack_replays (signature, kept_until) VALUES ($1, $2)",
            vec![text(signature), p(ms(kept_until))],
        )
    }

    fn purge_slack_replays(&mut self, now: DateTime<Utc>) -> Result<u64> {
        // A write, as every write, so that the transaction takes its lock
        // and fence and is not checked as a read.
        let purged = self.write(
            "DELETE FROM slack_replays WHERE kept_until <= $1 RETURNING 1",
            vec![p(ms(now))],
        )?;
        Ok(purged as u64)
    }

    /// Sent with the commit, last before it, under the lock: it fails the
    /// transaction by division by zero unless the lease row is still
    /// `lease`. It locks the row for share, so the lease cannot change
    /// hands between the check and the commit: the next holder's upsert,
    /// and this holder's own renewal ([`Store::lead`](crate::store::Store::lead)),
    /// wait for the commit's round trip, never for the job's whole
    /// transaction (a long reaper batch on a slow database would hold the
    /// leader's renewal past its wait, and the leader would step down).
    fn fence(&mut self, lease: &Lease) -> Result<()> {
        let check = Statement::new(
            "WITH held AS (SELECT 1 FROM leadership \
             WHERE name = 'hoistd' AND holder = $1 AND epoch = $2 FOR SHARE) \
             SELECT 1 / count(*) FROM held",
            vec![text(&lease.holder), p(lease.epoch)],
        );
        self.fence = Some((check, lease.epoch));
        Ok(())
    }

    fn commit_before(&mut self, at: DateTime<Utc>) {
        self.before = Some(self.before.map_or(at, |before| before.min(at)));
    }

    /// `pg_notify` inside the transaction, sent with the commit.
    fn announce(
        &mut self,
        requests: &[&str],
        grants: &[&str],
        due: Option<DateTime<Utc>>,
        effects: bool,
    ) -> Result<()> {
        let ids = requests
            .iter()
            .map(|id| (true, *id))
            .chain(grants.iter().map(|id| (false, *id)))
            .collect::<Vec<_>>();
        for chunk in ids.chunks(super::listen::IDS_PER_NOTICE) {
            let notice = super::listen::Notice {
                origin: self.origin.clone(),
                requests: chunk
                    .iter()
                    .filter(|(request, _)| *request)
                    .map(|(_, id)| id.to_string())
                    .collect(),
                grants: chunk
                    .iter()
                    .filter(|(request, _)| !*request)
                    .map(|(_, id)| id.to_string())
                    .collect(),
                timed: true,
                due: due.map(ms),
                effects: Some(effects),
            };
            let payload = serde_json::to_string(&notice)
                .map_err(|err| StoreError::Other(format!("notification: {err}")))?;
            self.notices.push(payload);
        }
        Ok(())
    }

    /// Sends the held writes now.
    fn flush(&mut self) -> Result<()> {
        if self.held.get_mut().is_empty() {
            return Ok(());
        }
        let mut statements = Vec::new();
        let mut refusals = Vec::new();
        self.take_lock(&mut statements, &mut refusals);
        self.take_held(&mut statements, &mut refusals, &[]);
        self.send(&statements, &refusals, false)?;
        Ok(())
    }

    /// The held writes, the `pg_notify` of each notice, and `COMMIT`, in
    /// one round trip: all of it commits or none (PostgreSQL delivers the
    /// notices at commit, and drops them with a rollback). An optimistic
    /// transaction that writes takes the lock and checks its reads first,
    /// in the same round trip; one that wrote nothing has nothing to check,
    /// and one that only read sends nothing.
    fn commit(mut self: Box<Self>) -> Result<()> {
        let mut statements = Vec::new();
        let mut refusals = Vec::new();
        if self.held.borrow().is_empty() && self.notices.is_empty() {
            self.checks.take();
        }
        self.take_lock(&mut statements, &mut refusals);
        self.take_held(&mut statements, &mut refusals, &self.notices);
        if statements.is_empty() && !self.begun.get() {
            // Nothing was sent, written or announced: nothing to commit.
            return Ok(());
        }
        let writes = self.wrote.get() || !self.notices.is_empty();
        if let Some((check, epoch)) = self.fence.take()
            && writes
        {
            statements.push(check);
            refusals.push(Refusal::Deposed(epoch));
        }
        if let (Some(before), Some(skew)) = (self.before, self.skew)
            && writes
        {
            // Under the lock, taken at the latest with this pipeline:
            // nothing commits between this look at the clock and COMMIT.
            statements.push(Statement::new(
                "SELECT 1 / ((extract(epoch FROM clock_timestamp()) * 1000)::bigint < $1)::int",
                vec![p(ms(before + skew))],
            ));
            refusals.push(Refusal::Passed);
        }
        match self.send(&statements, &refusals, true) {
            Ok(_) => Ok(()),
            // A transaction that only read has nothing left in doubt.
            Err(StoreError::Uncertain(lost)) if !writes => Err(StoreError::Unavailable(lost)),
            Err(err) => Err(err),
        }
    }
}

/// Sends `linked` appends, and `notices` with the last of them (or alone),
/// in statements of [`APPENDS_PER_STATEMENT`] appends at most.
fn push_appends(
    statements: &mut Vec<Statement>,
    refusals: &mut Vec<Refusal>,
    linked: &mut Vec<Vec<Param>>,
    notices: &[String],
) {
    let mut chunks = linked.chunks(APPENDS_PER_STATEMENT).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        statements.push(appends(chunk, if last { notices } else { &[] }));
        refusals.push(Refusal::None);
    }
    if linked.is_empty() && !notices.is_empty() {
        statements.push(appends(&[], notices));
        refusals.push(Refusal::None);
    }
    linked.clear();
}

/// One statement that appends `linked` audit entries (each the fields of
/// [`audit_fields`] and the tail of its hashed text), each linked to the
/// one before, the first to the head, and sends `notices` with
/// `pg_notify`. Each link reads the previous row as the statement inserted
/// it (`RETURNING`), so one statement makes the chain; the hash is computed
/// as [`crate::store::link`] does.
fn appends(linked: &[Vec<Param>], notices: &[String]) -> Statement {
    let mut sql = String::new();
    let mut params: Vec<Param> = Vec::new();
    let mut previous = String::from("head");
    for (at, fields) in linked.iter().enumerate() {
        if at == 0 {
            sql.push_str(&format!(
                "WITH head AS ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) \
                 UNION ALL SELECT 0, '{GENESIS}' ORDER BY seq DESC LIMIT 1)"
            ));
        }
        let marks: Vec<String> = (params.len() + 1..=params.len() + fields.len())
            .map(|n| format!("${n}"))
            .collect();
        let Some((tail, values)) = marks.split_last() else {
            continue;
        };
        let this = format!("a{at}");
        sql.push_str(&format!(
            ", {this} AS (INSERT INTO audit ({AUDIT_COLUMNS}) \
             SELECT seq + 1, {values}, hash, \
             encode(sha256(convert_to(hash || '{{\"seq\":' || (seq + 1)::text, 'UTF8') \
             || {tail}::bytea), 'hex') FROM {previous} RETURNING seq, hash)",
            values = values.join(", ")
        ));
        params.extend(fields.iter().cloned());
        previous = this;
    }
    let mut calls = Vec::new();
    for notice in notices {
        params.push(text(super::listen::CHANNEL));
        params.push(text(notice));
        calls.push(format!(
            "pg_notify(${}, ${})",
            params.len() - 1,
            params.len()
        ));
    }
    if calls.is_empty() {
        calls.push("1".into());
    }
    sql.push_str(&format!(" SELECT {}", calls.join(", ")));
    Statement::new(sql.trim_start().to_string(), params)
}

/// An audit entry's columns between `seq` and `prev_hash`, as parameters.
fn audit_fields(entry: &AuditEvent) -> Vec<Param> {
    vec![
        p(ms(entry.at)),
        text(entry.kind.as_str()),
        text(&entry.actor),
        opt_text(entry.subject.as_ref()),
        opt_text(entry.role.as_ref()),
        opt_text(entry.request_id.as_ref()),
        opt_text(entry.grant_id.as_ref()),
        opt_text(entry.incident.as_ref()),
        opt_text(entry.reason.as_ref()),
        p(entry.details.to_string()),
    ]
}

/// An exchange's columns, as [`exchange_from_row`] reads them.
const EXCHANGE_COLUMNS: &str =
    "task_key, principal, request_id, expires_at, created_at, redeemed_at, claims, collect_by";

fn exchange_from_row(row: &Row) -> Result<Exchange> {
    let claims: Option<String> = get(row, 6)?;
    Ok(Exchange {
        task_key: get(row, 0)?,
        principal: get(row, 1)?,
        request_id: get(row, 2)?,
        expires_at: time(get(row, 3)?)?,
        created_at: time(get(row, 4)?)?,
        redeemed_at: opt_time(get(row, 5)?)?,
        claims: parse_claims(claims)?,
        collect_by: opt_time(get(row, 7)?)?,
    })
}

/// The newest audit entry.
const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

fn audit_head_from_row(row: &Row) -> Result<AuditHead> {
    Ok(AuditHead {
        seq: get(row, 0)?,
        hash: get(row, 1)?,
    })
}

/// The newest audit entry, read on `conn` (a snapshot's).
pub(super) fn audit_head(conn: &PgConn) -> Result<Option<AuditHead>> {
    let rows = conn.query(AUDIT_HEAD, Vec::new())?;
    rows.first().map(audit_head_from_row).transpose()
}

/// Runs one statement and returns its rows: a transaction's or a
/// snapshot's.
pub(super) type Query<'a> = dyn Fn(&str, Vec<Param>) -> Result<Vec<Row>> + 'a;

pub(super) fn broker_key(query: &Query<'_>, purpose: &str) -> Result<Option<(String, Vec<u8>)>> {
    let rows = query(
        "SELECT kid, pkcs8 FROM broker_keys WHERE purpose = $1",
        vec![text(purpose)],
    )?;
    rows.first()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .transpose()
}

pub(super) fn ssh_authority_target(query: &Query<'_>, public_key: &str) -> Result<Option<String>> {
    let rows = query(
        "SELECT target FROM ssh_authorities WHERE public_key = $1",
        vec![text(public_key)],
    )?;
    match rows.first() {
        Some(row) => get(row, 0),
        None => Ok(None),
    }
}

/// The whole log in sequence order, as stored, a page of rows at a time:
/// inside one transaction, the pages are of one moment.
pub(super) fn scan_audit(
    query: &Query<'_>,
    visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>,
) -> Result<()> {
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2");
    let mut after = i64::MIN;
    let mut read: i64 = 0;
    loop {
        let rows = query(&sql, vec![p(after), p(SCAN_PAGE)])?;
        for row in &rows {
            let entry = StoredAudit {
                seq: get(row, 0)?,
                at_ms: get(row, 1)?,
                kind: get(row, 2)?,
                actor: get(row, 3)?,
                subject: get(row, 4)?,
                role: get(row, 5)?,
                request_id: get(row, 6)?,
                grant_id: get(row, 7)?,
                incident: get(row, 8)?,
                reason: get(row, 9)?,
                details: get(row, 10)?,
                prev_hash: get(row, 11)?,
                hash: get(row, 12)?,
            };
            after = entry.seq;
            read += 1;
            if visit(&entry).is_break() {
                return Ok(());
            }
        }
        if (rows.len() as i64) < SCAN_PAGE {
            return all_read(query, read);
        }
    }
}

/// Whether the scan read every row: paging by `seq` skips a row that
/// shares its number with the last of a page, which only a table whose
/// key was dropped outside hoistd holds (an entry written in beside
/// another). Within one page both are read, and the chain is broken there.
fn all_read(query: &Query<'_>, read: i64) -> Result<()> {
    let rows = query("SELECT count(*) FROM audit", vec![])?;
    let held: i64 = rows
        .first()
        .map(|row| get(row, 0))
        .transpose()?
        .unwrap_or(0);
    if held == read {
        return Ok(());
    }
    let shared = query(
        "SELECT seq FROM audit GROUP BY seq HAVING count(*) > 1 ORDER BY seq LIMIT 1",
        vec![],
    )?;
    let seq = shared
        .first()
        .map(|row| get(row, 0))
        .transpose()?
        .unwrap_or(0);
    Err(StoreError::AlteredAudit {
        seq,
        reason: format!(
            "another entry has the same number (the log holds {held} entries, {read} of \
             them in order): an entry was written in beside it"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn renumbering_moves_parameters_outside_quoted_text() {
        assert_eq!(
            renumber(
                "a = $1 AND b = '$2' AND c = $10::text AND d = 'it''s $3' || $2",
                3
            ),
            "a = $4 AND b = '$2' AND c = $13::text AND d = 'it''s $3' || $5"
        );
        assert_eq!(renumber("a = $1", 0), "a = $1");
        assert_eq!(renumber("é = $1, $ alone", 1), "é = $2, $ alone");
    }
}
