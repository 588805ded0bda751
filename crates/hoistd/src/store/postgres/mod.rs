//! The PostgreSQL store, for several hoistd instances on one database:
//! tokio-postgres connections in a deadpool pool behind the synchronous
//! [`Store`] and [`Tx`].
//!
//! The broker calls the store from the blocking pool (and a few places
//! from async code), one call at a time, and the conformance suite from
//! plain threads. A call takes its connection from the pool and drives it
//! on the calling thread, socket and all (see `drive`): no runtime is
//! entered and no other thread woken for a round trip. The calling thread
//! blocks for the round trip, as it does on SQLite's lock, and for no
//! longer than [`ANSWER_WAIT`]. The store's own small runtime runs the
//! listener's connection and the pool's timers.
//!
//! Rule 1 (serialisable writes): every writing transaction takes one
//! transaction-scoped advisory lock, so transactions take turns across
//! every instance, as they do on SQLite's one connection. A plain one takes
//! it before its first read (with it, in one round trip); an optimistic one
//! reads without it and takes it in its commit's pipeline, then checks its
//! reads (see `tx::PgTx`). The lock is let go at the commit, before the
//! commit's flush to disk, which the caller waits for after (see
//! [`BEGIN_LOCKED`] and [`COMMIT_LOCKED`]).
//! Measured against SERIALIZABLE with retries in BENCHMARKS.md: the broker's
//! transactions all touch the audit head, so under SERIALIZABLE nearly every
//! concurrent pair conflicts and one is retried anyway. An advisory lock of
//! the transaction works through transaction-mode poolers.

mod drive;
mod listen;
mod tx;

pub use drive::KEPT_STATEMENTS;

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Object, Pool, Timeouts};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{AuditHead, Connections, Result, Snapshot, Store, StoreError, StoredAudit, Tx};

/// Schema migrations, applied in order; `hoistd_schema` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_request_tiers.sql"),
    include_str!("../../../migrations/postgres/0003_broker_keys.sql"),
    include_str!("../../../migrations/postgres/0004_notifications.sql"),
    include_str!("../../../migrations/postgres/0005_slack_replays.sql"),
    include_str!("../../../migrations/postgres/0006_identity_groups.sql"),
    include_str!("../../../migrations/postgres/0007_effect_access.sql"),
    include_str!("../../../migrations/postgres/0008_history_indexes.sql"),
    include_str!("../../../migrations/postgres/0009_purge_indexes.sql"),
    include_str!("../../../migrations/postgres/0010_target_handles.sql"),
    include_str!("../../../migrations/postgres/0011_exchange_claims.sql"),
    include_str!("../../../migrations/postgres/0012_identity_seen_at.sql"),
    include_str!("../../../migrations/postgres/0013_ssh_authorities.sql"),
    include_str!("../../../migrations/postgres/0014_drift_removals.sql"),
    include_str!("../../../migrations/postgres/0015_notifications_given_up.sql"),
    include_str!("../../../migrations/postgres/0016_effect_system.sql"),
    include_str!("../../../migrations/postgres/0017_exchange_collect_by.sql"),
    include_str!("../../../migrations/postgres/0018_access_live_until.sql"),
    include_str!("../../../migrations/postgres/0019_request_signed_in_at.sql"),
    include_str!("../../../migrations/postgres/0020_ssh_authority_target.sql"),
];

/// Starts a transaction and takes the transaction lock (rule 1): one
/// advisory lock of the transaction, held to its end, which every writing
/// transaction takes before it reads (or, optimistic, before it writes).
/// One simple query, nothing in it but constants, sent with the
/// transaction's first statements in one round trip (see `tx::PgTx`).
/// Every round trip after it is part of the critical section the instances
/// take turns at. Any lock number will do as long as nothing else on the
/// database uses it: "hoistd tx" (see the test below).
///
/// The transaction commits without waiting for its log to reach the disk
/// (`synchronous_commit` off for it alone), so the lock is let go as soon
/// as the commit is in the log, not after the flush: the next transaction
/// need not wait for this one's disk write, and the flushes of several
/// transactions can be one. [`COMMIT_LOCKED`] then waits for the flush
/// before anyone hears of the commit.
///
/// The wait for any lock is bounded by the server, at 10 s (`lock_timeout`,
/// for this transaction alone, set before the lock is asked for): under
/// [`ANSWER_WAIT`], so a transaction queued too long is given up by the
/// server (`55P03`, nothing written) before the store stops waiting for its
/// answers. Otherwise the store would report it unavailable, having written
/// nothing, while the server, which does not look at the socket while it
/// waits for a lock, went on to take the lock and run what it was sent.
///
/// A holder that stops sending (its instance paused, frozen or cut off
/// between two round trips) is ended by the server once it has been idle
/// for 5 s (`idle_in_transaction_session_timeout`, for this transaction
/// alone): its transaction rolls back and the lock goes to the next, well
/// within their 10 s. Without it, the lock, and with it every instance's
/// writes (revocations, expiries, the lease row a fenced job holds), would
/// wait for the server to notice the lost connection, hours on a dead host.
/// Between its round trips a holder only runs hoistd's own code, never a
/// call to a target.
///
/// Read committed whatever the server's default: each statement after the
/// lock must read what the last holder committed (the audit log's head, the
/// rows an optimistic transaction read). Under repeatable read or
/// serializable the snapshot would be taken by the lock's statement, before
/// its wait, and every contended write would then fail or read stale rows.
pub(super) const BEGIN_LOCKED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
                                       SET LOCAL lock_timeout = '10s'; \
                                       SELECT pg_advisory_xact_lock(7525349446954284152), \
                                       set_config('synchronous_commit', 'off', true), \
                                       set_config('idle_in_transaction_session_timeout', \
                                                  '5s', true)";
/// The statement of [`COMMIT_LOCKED`]'s second transaction and of
/// [`Store::barrier`]'s: one record in the log, committed with the
/// session's `synchronous_commit` unless that is `off`. The setting is read
/// at the commit, so the order of the two calls does not matter.
macro_rules! durable {
    () => {
        "SELECT pg_logical_emit_message(true, 'hoistd', ''), \
         set_config('synchronous_commit', \
                    CASE current_setting('synchronous_commit') \
                    WHEN 'off' THEN 'on' \
                    ELSE current_setting('synchronous_commit') END, true)"
    };
}
/// Commits a transaction [`BEGIN_LOCKED`] began, then makes it durable
/// before answering: a second transaction, with the session's own
/// `synchronous_commit` (see below), writes one record to the log (an empty logical
/// message, "hoistd", which no table keeps) and so commits after the first
/// and waits for the log to be flushed (or replicated, as the server is
/// configured) up to its own commit, and so past the first's. A
/// transaction that only took an id would write nothing before its commit,
/// and PostgreSQL would not wait for that commit's flush. The caller hears
/// of the commit only once it is durable, as it would with the commit
/// waiting for its flush; what changes is that another transaction may
/// read this one's writes for the time of the flush before they are
/// durable. A crash in that time loses both when the reader wrote: its
/// commit is later in the log. A reader that acts outside the database
/// does not have that cover: another instance's listener hears the
/// notice at the first commit and its streams may show a change the crash
/// then loses (they resynchronise when the stream reconnects), and the
/// outbox may read a new target effect and make the call before the crash
/// loses the grant (the reconciler removes access no live grant explains,
/// at the targets it inspects; a webhook receiver keeps it). One simple
/// query, in the same round trip as the
/// commit. If the first transaction failed, `COMMIT` rolls it back and the
/// second writes only its message.
///
/// A session whose `synchronous_commit` is `off` (set for hoistd's role or
/// database, or the server's default) has it `on` for that second
/// transaction: the caller is told its write is durable, and a checkpoint
/// signs a head ([`Store::barrier`]) only once it is. Any other setting
/// (`local`, `remote_write`, `remote_apply`) is kept as configured.
pub(super) const COMMIT_LOCKED: &str = concat!("COMMIT; BEGIN; ", durable!(), "; COMMIT");
/// Starts a transaction that only reads ([`Store::read`]): its snapshot is
/// taken at its first statement, sent with this.
pub(super) const BEGIN_READING: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
/// The advisory lock migrations are applied under: "hoistd mg".
const MIGRATION_LOCK: i64 = 0x686f_6973_7464_6d67;

/// Connections kept open at most, per instance, for its calls (besides
/// the lease's one, the readiness check's one and the listener's one).
const POOL_SIZE: usize = 16;
/// How long a call waits for a connection from the pool, or to connect,
/// before the database counts as unavailable.
const WAIT: Duration = Duration::from_secs(5);
/// How long a call waits for the answers to what it sent (a transaction's
/// statements, with any wait for the store's lock): past it the connection
/// counts as dead, as one left by a failover or a frozen server is, and is
/// closed. Generous, since the lock may be queued for under load; a
/// migration that could run longer must be applied some other way.
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// Audit rows read per round trip while scanning the log.
const SCAN_PAGE: i64 = 2_000;

/// A value bound to a statement's parameter, owned so it can travel to the
/// store's runtime.
type Param = Arc<dyn ToSql + Send + Sync>;

/// Whether opening the store brings the schema up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending migrations under the migration lock (`hoistd serve`,
    /// `hoistd migrate`).
    Apply,
    /// Leave the schema as it is; [`Store::ready`] reports what is pending.
    Leave,
}

/// The CA certificates (PEM) that a database's TLS certificate must chain
/// to; without it, the system's roots.
pub const CA_FILE_ENV: &str = "HOISTD_DB_CA_FILE";

/// A reading of the server's clock answered later than this says too
/// little of when the server read it. Within it, the reading is off by at
/// most half its round trip ([`Store::clock_doubt`]), which the clock
/// followed allows for ([`crate::clock::follow`]).
const CLOCK_READ_WITHIN: Duration = Duration::from_millis(250);
/// How long a reading of the server's clock is waited for before its
/// connection is given up: one later than [`CLOCK_READ_WITHIN`] is not
/// kept anyway, and a reading that hangs must not hold the lease ask it
/// follows past the ask's own deadline (the lease renewed, but the
/// instance no longer leading for want of an answer).
const CLOCK_READ_GIVE_UP: Duration = Duration::from_millis(500);
/// A lease ask reads the clock only if it has taken no longer than this
/// so far: with [`CLOCK_READ_GIVE_UP`], well within the wait for its answer
/// (the leadership term less its margin, 4 s).
const CLOCK_READ_AFTER: Duration = Duration::from_secs(1);
/// The reading: the server's clock in Unix microseconds.
const CLOCK_SQL: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

pub struct PostgresStore {
    pool: Pool<drive::Manager>,
    /// One connection for the leadership lease alone ([`Store::lead`],
    /// [`Store::resign`]), so that a renewal never queues for a connection
    /// behind the API's calls: a burst that keeps the pool busy for longer
    /// than the lease's margin would otherwise take leadership away from an
    /// instance nobody else needs to replace, halting its jobs.
    lease_pool: Pool<drive::Manager>,
    /// The server's clock minus this process's, in microseconds, as last
    /// read within [`CLOCK_READ_WITHIN`] (after each lease ask, and once as
    /// the store is measured at start); `i64::MIN` before one was.
    clock_offset: std::sync::atomic::AtomicI64,
    /// Half the round trip of that reading, in microseconds: how far off
    /// it may be.
    clock_doubt: std::sync::atomic::AtomicI64,
    /// One connection for readiness checks ([`Store::ready`]): a burst of
    /// calls that keeps the pool busy is not a database that does not
    /// answer, and must not take every instance out of a load balancer.
    ready_pool: Pool<drive::Manager>,
    /// For connections outside the pool (the listener).
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// This store's name in the notifications it sends.
    origin: String,
    /// Taken out by `Drop`, which shuts it down without waiting: a store may
    /// be dropped inside another runtime, where waiting is not allowed.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.pool.close();
        self.lease_pool.close();
        self.ready_pool.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db?...`, as
    /// libpq reads it) and, with [`Migrations::Apply`], brings the schema up
    /// to date under the migration lock.
    ///
    /// TLS is as the URL's `sslmode` says (`disable`, `prefer` by default,
    /// `require`); whenever it is used, the server's certificate and name
    /// are checked, against the CA file in `HOISTD_DB_CA_FILE` or the
    /// system's roots (libpq's `verify-full`). Over a Unix socket (`host`
    /// a directory) there is no TLS, as with libpq.
    pub fn open(url: &str, migrations: Migrations) -> Result<Self> {
        let ca_file = std::env::var_os(CA_FILE_ENV).map(std::path::PathBuf::from);
        Self::open_with_ca(url, migrations, ca_file.as_deref())
    }

    /// [`PostgresStore::open`] with the CA file given.
    pub fn open_with_ca(
        url: &str,
        migrations: Migrations,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self> {
        let tls = tls_connector(ca_file)
            .map_err(|why| StoreError::Other(format!("TLS to the database: {why}")))?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| StoreError::UnknownLocation(format!("a PostgreSQL URL: {err}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(WAIT);
        }
        // A server gone without closing its sockets (a failover, a cut
        // network) is noticed within seconds, not at the kernel's hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        // And one whose data goes unacknowledged, at the kernel's level.
        config.tcp_user_timeout(ANSWER_WAIT);
        if config.get_application_name().is_none() {
            config.application_name("hoistd");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hoistd-postgres")
            .enable_all()
            .build()
            .map_err(|err| StoreError::Other(format!("cannot start the store's runtime: {err}")))?;
        let handle = runtime.handle().clone();
        // Recycling checks only that a connection is not closed: one
        // broken by a failover fails its next statement, and the store
        // throws it away then (see `PgConn::failed`).
        let manager = drive::Manager {
            config: config.clone(),
            tls: tls.clone(),
        };
        let pool_of = |size: usize| {
            Pool::builder(manager.clone())
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .timeouts(Timeouts {
                    wait: Some(WAIT),
                    create: Some(WAIT),
                    recycle: Some(WAIT),
                })
                .build()
                .map_err(|err| StoreError::Other(format!("cannot make the connection pool: {err}")))
        };
        let store = PostgresStore {
            pool: pool_of(POOL_SIZE)?,
            lease_pool: pool_of(1)?,
            clock_offset: std::sync::atomic::AtomicI64::new(i64::MIN),
            clock_doubt: std::sync::atomic::AtomicI64::new(0),
            ready_pool: pool_of(1)?,
            config,
            tls,
            origin: uuid::Uuid::new_v4().to_string(),
            runtime: Some(runtime),
            handle,
        };
        if migrations == Migrations::Apply {
            store.migrate()?;
        }
        Ok(store)
    }

    /// A connection from the pool, taken on the calling thread: a free one
    /// is handed over without waking the store's runtime, a new one made on
    /// this thread. Inside the runtime's context, for the pool's timeouts.
    fn connection(&self) -> Result<PgConn> {
        self.connection_from(&self.pool)
    }

    fn connection_from(&self, pool: &Pool<drive::Manager>) -> Result<PgConn> {
        let _runtime = self.handle.enter();
        let object = futures::executor::block_on(pool.get()).map_err(pool_error)?;
        Ok(PgConn::new(object))
    }

    /// How many statements one pooled connection keeps prepared, and how
    /// many the server holds prepared for it, counted on it.
    #[cfg(feature = "testing")]
    pub fn kept_statements(&self) -> Result<(usize, i64)> {
        let conn = self.connection()?;
        let counted = conn.query("SELECT count(*) FROM pg_prepared_statements", Vec::new())?;
        let on_server = counted
            .first()
            .map(|row| row.get::<_, i64>(0))
            .unwrap_or_default();
        Ok((conn.object()?.kept_statements(), on_server))
    }

    /// Applies the pending migrations in one transaction under the
    /// migration lock: of several instances starting at once, one applies
    /// them and the others then find nothing to do. A transaction-scoped
    /// lock, so it also holds through a transaction-mode pooler.
    pub fn migrate(&self) -> Result<i64> {
        let conn = self.connection()?;
        // Read committed, so the schema's version is read after the lock's
        // wait (see `BEGIN_LOCKED`). The server gives up on a lock or a
        // statement before hoistd gives up on its answer: a migration
        // queued behind a long reader must not stay queued at the server,
        // holding every other session's access to the table up behind it,
        // once this instance has gone.
        conn.begin(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '14s'; \
             SET LOCAL statement_timeout = '14s'",
        )?;
        conn.query(
            "SELECT pg_advisory_xact_lock($1)",
            vec![Arc::new(MIGRATION_LOCK)],
        )?;
        // hoistd's tables are found by the search path. One that now puts
        // another schema first (a schema named for the role, made since)
        // would have this start an empty one there, every grant and the
        // audit log left behind in the old: refused, naming both.
        let elsewhere = conn.query(
            "SELECT n.nspname::text, current_schema()::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'hoistd_schema' AND c.relkind = 'r' \
             AND n.nspname = ANY(current_schemas(false)) \
             AND n.nspname IS DISTINCT FROM current_schema()",
            Vec::new(),
        )?;
        if let Some(row) = elsewhere.first() {
            let found: String = row.try_get(0).map_err(StoreError::from)?;
            let first: Option<String> = row.try_get(1).map_err(StoreError::from)?;
            return Err(StoreError::Other(format!(
                "hoistd's tables are in schema `{found}`, but the search path now puts `{}` \
                 first, where hoistd would start an empty database: put `{found}` first \
                 (ALTER ROLE ... SET search_path) or drop the schema made since",
                first.unwrap_or_default()
            )));
        }
        conn.batch(
            "CREATE TABLE IF NOT EXISTS hoistd_schema (version BIGINT NOT NULL); \
             INSERT INTO hoistd_schema (version) SELECT 0 \
             WHERE NOT EXISTS (SELECT 1 FROM hoistd_schema)",
        )?;
        let found: i64 = conn
            .query("SELECT version FROM hoistd_schema", Vec::new())?
            .first()
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(StoreError::from)?
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for sql in MIGRATIONS.iter().skip(found as usize) {
            conn.batch(sql)?;
        }
        conn.query(
            "UPDATE hoistd_schema SET version = $1",
            vec![Arc::new(known)],
        )?;
        conn.commit()?;
        Ok(known)
    }

    /// The schema version the database is at (0: never migrated).
    pub fn schema_version(&self) -> Result<i64> {
        Self::schema_version_on(&self.connection()?)
    }

    fn schema_version_on(conn: &PgConn) -> Result<i64> {
        let exists = conn.query(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'hoistd_schema' \
             AND schemaname = current_schema()",
            Vec::new(),
        )?;
        if exists.is_empty() {
            return Ok(0);
        }
        let rows = conn.query("SELECT version FROM hoistd_schema", Vec::new())?;
        Ok(match rows.first() {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }

    /// The schema version this hoistd brings.
    pub fn known_version() -> i64 {
        MIGRATIONS.len() as i64
    }
}

impl Store for PostgresStore {
    fn connections(&self) -> Connections {
        let status = self.pool.status();
        Connections {
            open: status.size,
            in_use: status.size.saturating_sub(status.available),
            max: status.max_size,
        }
    }

    /// Takes a connection; the transaction itself begins, and takes its
    /// lock, with the first statement sent (see `tx::PgTx`).
    fn transaction(&self) -> Result<Box<dyn Tx + '_>> {
        let conn = self.connection()?;
        Ok(Box::new(
            tx::PgTx::new(conn, self.origin.clone(), BEGIN_LOCKED).with_skew(self.skew()),
        ))
    }

    /// Reads at READ COMMITTED without the lock, outside any transaction,
    /// and begins one, taking the lock, in the commit's pipeline before
    /// checking its reads and writing (see `tx::PgTx`).
    fn optimistic(&self) -> Result<Box<dyn Tx + '_>> {
        let conn = self.connection()?;
        Ok(Box::new(
            tx::PgTx::optimistic(conn, self.origin.clone()).with_skew(self.skew()),
        ))
    }

    /// A repeatable-read, read-only transaction without the lock: it waits
    /// for no writer, and its reads are of one moment, its first
    /// statement's. Writes through it are refused.
    fn read(&self) -> Result<Box<dyn Tx + '_>> {
        let conn = self.connection()?;
        Ok(Box::new(tx::PgTx::new(
            conn,
            self.origin.clone(),
            BEGIN_READING,
        )))
    }

    /// A commit of its own that waits for its flush (or its synchronous
    /// standbys), as [`COMMIT_LOCKED`]'s second does: the log is flushed
    /// in order, so every commit before it is flushed with it.
    fn barrier(&self) -> Result<()> {
        let conn = self.connection()?;
        // Open until it answers: a statement refused mid-way leaves the
        // block aborted, and dropping the connection then rolls it back.
        conn.open.store(true, Ordering::Relaxed);
        conn.batch(concat!("BEGIN; ", durable!(), "; COMMIT"))?;
        conn.open.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// A repeatable-read, read-only transaction: it sees the database as of
    /// its first statement, and PostgreSQL's snapshots hold no lock any
    /// writer waits for.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        let conn = self.connection()?;
        // The snapshot is taken at the first statement, not at BEGIN.
        conn.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")?;
        Ok(Box::new(PgSnapshot { conn }))
    }

    /// One statement, outside the transaction lock, on the database's
    /// clock so the instances' clocks need not agree. The row lock of the
    /// upsert makes two instances asking at once take turns. On the
    /// lease's own connection.
    fn lead(&self, holder: &str, term: Duration, renewing: bool) -> Result<Option<i64>> {
        // The term is counted from the call, not from when the statement
        // runs: a wait for the lease's connection (a slow reconnection)
        // comes off it (a wait for the lease row's lock does not add to
        // it: the row's end is reckoned before the statement waits), so an
        // ask its instance gave up on never holds the lease past the term
        // it asked for.
        let asked = std::time::Instant::now();
        let _runtime = self.handle.enter();
        let wait = Timeouts {
            wait: Some(term),
            create: Some(term.min(WAIT)),
            recycle: Some(term.min(WAIT)),
        };
        let object =
            futures::executor::block_on(self.lease_pool.timeout_get(&wait)).map_err(pool_error)?;
        let term = term.saturating_sub(asked.elapsed());
        if term.is_zero() {
            return Err(StoreError::Unavailable(
                "the lease was not asked for: its connection came after its term".into(),
            ));
        }
        // An answer later than the term is one its instance gave up on:
        // the connection is closed then (a dead socket, say, after a
        // failover), not waited on for `ANSWER_WAIT` by this ask and the
        // next ones queued for it.
        let conn = PgConn::new(object).answering_within(term);
        let rows = lease_statement(
            &conn,
            "INSERT INTO leadership (name, holder, epoch, expires_at) \
             VALUES ('hoistd', $1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, \
                     clock_timestamp() + $2 * interval '1 millisecond') \
             ON CONFLICT (name) DO UPDATE SET \
             epoch = CASE WHEN leadership.holder = EXCLUDED.holder AND $3 \
                     THEN leadership.epoch \
                     ELSE greatest(leadership.epoch + 1, EXCLUDED.epoch) END, \
             holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE leadership.holder = EXCLUDED.holder \
             OR leadership.expires_at < clock_timestamp() \
             RETURNING epoch",
            vec![
                Arc::new(holder.to_owned()),
                Arc::new(term.as_millis() as f64),
                Arc::new(renewing),
            ],
        )?;
        // The clock is worth less than the lease: a reading that fails is
        // the next ask's to make, and one is made only while the ask has
        // time to spare (a slow ask, reading too, could answer past the
        // instance's wait for it).
        if asked.elapsed() <= CLOCK_READ_AFTER
            && let Err(err) = self.read_clock(&conn)
        {
            tracing::debug!(error = %err, "could not read the database server's clock");
        }
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        row.try_get(0).map_err(StoreError::from)
    }

    fn shared(&self) -> bool {
        true
    }

    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::Announcement>> {
        let (out, announcements) = tokio::sync::mpsc::unbounded_channel();
        self.handle.spawn(listen::listen(
            self.config.clone(),
            self.tls.clone(),
            self.origin.clone(),
            out,
        ));
        Some(announcements)
    }

    fn measure_clock(&self) -> Result<Option<chrono::TimeDelta>> {
        let _runtime = self.handle.enter();
        let conn = self.connection_from(&self.lease_pool)?;
        // Twice: the first on a new connection also prepares the statement.
        self.read_clock(&conn)?;
        self.read_clock(&conn)?;
        Ok(self.clock_offset())
    }

    fn clock_doubt(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::microseconds(self.clock_doubt.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn clock_offset(&self) -> Option<chrono::TimeDelta> {
        match self.clock_offset.load(std::sync::atomic::Ordering::Relaxed) {
            i64::MIN => None,
            micros => Some(chrono::TimeDelta::microseconds(micros)),
        }
    }

    fn resign(&self, holder: &str) -> Result<()> {
        let conn = self.connection_from(&self.lease_pool)?;
        lease_statement(
            &conn,
            "UPDATE leadership SET expires_at = clock_timestamp() - interval '1 second' \
             WHERE name = 'hoistd' AND holder = $1",
            vec![Arc::new(holder.to_owned())],
        )?;
        Ok(())
    }

    fn ready(&self) -> Result<()> {
        let conn = self.connection_from(&self.ready_pool)?;
        super::schema_ready(Self::schema_version_on(&conn)?, Self::known_version())
    }
}

impl PostgresStore {
    /// How far the server's clock is ahead of the broker's
    /// ([`crate::clock::now`]), as last read (the broker follows the
    /// server's clock only to within [`crate::clock::STEP`]); `None`
    /// before it was read.
    fn skew(&self) -> Option<chrono::TimeDelta> {
        self.clock_offset()
            .map(|offset| offset - crate::clock::correction())
    }

    /// Reads the server's clock in a round trip of its own (no transaction,
    /// no commit to wait for) and keeps it as [`Store::clock_offset`] if it
    /// came back within [`CLOCK_READ_WITHIN`]: the server read it about
    /// halfway through.
    fn read_clock(&self, conn: &PgConn) -> Result<()> {
        let object = conn.object()?;
        let sent = chrono::Utc::now();
        let started = std::time::Instant::now();
        // A simple query: one round trip, even on a fresh connection.
        let answer = object
            .drive(object.client.simple_query(CLOCK_SQL), CLOCK_READ_GIVE_UP)
            .map_err(|stalled| {
                let _ = conn.stalled(stalled);
                StoreError::Unavailable(format!(
                    "the database server's clock was not read within {} ms",
                    CLOCK_READ_GIVE_UP.as_millis()
                ))
            })?
            .map_err(|err| conn.failed(err))?;
        let took = started.elapsed();
        let read = answer.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        let Some(server) = read.and_then(|text| text.parse::<i64>().ok()) else {
            return Err(StoreError::Other(
                "the database server's clock came back as no number".into(),
            ));
        };
        if took <= CLOCK_READ_WITHIN {
            let here = sent + chrono::TimeDelta::from_std(took / 2).unwrap_or_default();
            if let Some(offset) = server.checked_sub(here.timestamp_micros()) {
                let doubt = i64::try_from((took / 2).as_micros()).unwrap_or(i64::MAX);
                self.clock_doubt
                    .store(doubt, std::sync::atomic::Ordering::Relaxed);
                self.clock_offset
                    .store(offset, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Runs one statement on the lease's row in a transaction of its own that
/// waits at most 2 s for a lock and 3 s in all, so an answer comes within
/// the leader's renewal wait ([`crate::leadership::TERM`] less its margin):
/// a transaction holding the row (a fenced job of an instance that stopped
/// answering, until the server ends it) makes the ask fail in time, rather
/// than leave it queued at the server after hoistd gave up on it.
fn lease_statement(conn: &PgConn, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
    match conn.send(
        Some(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '2s'; \
             SET LOCAL statement_timeout = '3s'",
        ),
        &[Statement::new(sql, params)],
        Some("COMMIT"),
    )? {
        Ok(mut piped) => Ok(piped.rows.pop().unwrap_or_default()),
        Err(failed) => Err(conn.failed(failed.error)),
    }
}

/// One pooled connection, driven on the calling thread (see `drive`).
/// Dropped, it goes back to the pool, rolled back first if a transaction
/// was left open, or is closed if it broke.
pub(super) struct PgConn {
    object: Option<Object<drive::Manager>>,
    /// Inside `BEGIN` and not yet committed or rolled back.
    open: AtomicBool,
    /// Met an error that leaves it unusable: it is not handed out again.
    broken: AtomicBool,
    /// The most it waits for an answer ([`ANSWER_WAIT`], or less for an
    /// ask for the lease, which counts against its term).
    answer_wait: Duration,
}

/// One statement of a [`PgConn::pipeline`], with its parameters.
pub(super) struct Statement {
    pub(super) sql: String,
    pub(super) params: Vec<Param>,
}

impl Statement {
    pub(super) fn new(sql: impl Into<String>, params: Vec<Param>) -> Self {
        Statement {
            sql: sql.into(),
            params,
        }
    }
}

/// The first step of a pipeline that failed, and the driver's error:
/// `at` is the statement's place, `None` for the `BEGIN` or the `COMMIT`.
/// PostgreSQL refused every statement after it.
pub(super) struct Failed {
    pub(super) at: Option<usize>,
    pub(super) error: tokio_postgres::Error,
}

/// What a pipeline gave back: the rows of its `BEGIN` statements (as text)
/// and of each statement, in order.
#[derive(Default)]
pub(super) struct Piped {
    pub(super) begun: Vec<tokio_postgres::SimpleQueryRow>,
    pub(super) rows: Vec<Vec<Row>>,
}

/// What one step of a pipeline gave back, or the driver's error.
type Answer = std::result::Result<Step, tokio_postgres::Error>;

/// What one step of a pipeline gave back.
enum Step {
    Begun(Vec<tokio_postgres::SimpleQueryMessage>),
    Rows(Vec<Row>),
    Committed,
    /// The `COMMIT`, not sent: a statement before it failed unsent.
    Unsent,
}

impl PgConn {
    fn new(object: Object<drive::Manager>) -> Self {
        PgConn {
            object: Some(object),
            open: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            answer_wait: ANSWER_WAIT,
        }
    }

    /// The same, waiting at most `wait` for each answer.
    fn answering_within(mut self, wait: Duration) -> Self {
        self.answer_wait = wait.min(ANSWER_WAIT);
        self
    }

    /// Waits on the calling thread for `answers`, at most [`ANSWER_WAIT`]
    /// (or the connection's own bound):
    /// a connection that stops answering fails the call and is closed,
    /// rather than holding its caller (the reaper, a lease renewal) for as
    /// long as the kernel keeps a dead socket.
    fn wait<T>(&self, answers: impl Future<Output = T>) -> Result<T> {
        self.object()?
            .drive(answers, self.answer_wait)
            .map_err(|stalled| self.stalled(stalled))
    }

    /// A connection that stopped answering, or ended, is closed.
    fn stalled(&self, stalled: drive::Stalled) -> StoreError {
        self.broken.store(true, Ordering::Relaxed);
        StoreError::Unavailable(match stalled {
            drive::Stalled::TimedOut => format!(
                "the database did not answer within {} ms",
                self.answer_wait.as_millis()
            ),
            drive::Stalled::Lost => "the database connection was lost".into(),
        })
    }

    fn object(&self) -> Result<&Object<drive::Manager>> {
        self.object.as_ref().ok_or_else(|| {
            StoreError::Unavailable("the connection was lost earlier in this transaction".into())
        })
    }

    /// Sends `begin` (statements with no parameters, as one simple query)
    /// when given, `statements`, and `commit` (`COMMIT`, or
    /// [`COMMIT_LOCKED`]) when given, back to back on the connection, and
    /// waits for all of their answers: one round trip however many there
    /// are. The server runs them in order; once one fails, it refuses the
    /// rest of the transaction (and takes the `COMMIT` as a rollback), so
    /// the first failure is the one that counts.
    pub(super) fn pipeline(
        &self,
        begin: Option<&str>,
        statements: &[Statement],
        commit: Option<&str>,
    ) -> Result<std::result::Result<Piped, Failed>> {
        let object = self.object()?;
        // Prepared first, one at a time: a statement met for the first time
        // on this connection costs one round trip, once.
        let mut prepared = Vec::with_capacity(statements.len());
        for (at, statement) in statements.iter().enumerate() {
            match object
                .prepared(&statement.sql, self.answer_wait)
                .map_err(|stalled| self.stalled(stalled))?
            {
                Ok(done) => prepared.push(done),
                Err(error) => {
                    return Ok(Err(Failed {
                        at: Some(at),
                        error,
                    }));
                }
            }
        }
        let client = &object.client;
        // Set by a statement that fails before it is sent (a parameter that
        // does not convert): the `COMMIT`, polled after it in the same
        // pass, is then not sent, and the connection is closed with the
        // transaction open (rolled back), rather than commit the
        // statements before it without it.
        let unsent = std::cell::Cell::new(false);
        let unsent = &unsent;
        // Whether the `COMMIT` went out: only then can its outcome be in
        // doubt.
        let committing = std::cell::Cell::new(false);
        let committing = &committing;
        // Whether the server refused a statement before the `COMMIT`, which
        // makes the `COMMIT` a rollback: then a wait given up on before
        // the `COMMIT`'s answer leaves nothing in doubt.
        let refused = std::cell::Cell::new(false);
        let refused = &refused;
        let refusal = |error: Option<&tokio_postgres::Error>| {
            if error.is_some_and(|error| error.as_db_error().is_some()) {
                refused.set(true);
            }
        };
        let answers = self.wait(async {
            type Send<'a> = Pin<Box<dyn Future<Output = Answer> + 'a>>;
            let mut sends: Vec<Send<'_>> = Vec::with_capacity(statements.len() + 2);
            if let Some(begin) = begin {
                sends.push(Box::pin(async move {
                    let answer = client.simple_query(begin).await;
                    refusal(answer.as_ref().err());
                    answer.map(Step::Begun)
                }));
            }
            for (statement, prepared) in statements.iter().zip(&prepared) {
                sends.push(Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> = statement
                        .params
                        .iter()
                        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    let sent = std::cell::Cell::new(false);
                    let rows = sending(client.query(prepared, &params), &sent).await;
                    if !sent.get() {
                        unsent.set(true);
                    }
                    refusal(rows.as_ref().err());
                    rows.map(Step::Rows)
                }));
            }
            if let Some(commit) = commit {
                sends.push(Box::pin(async move {
                    if unsent.get() {
                        return Ok(Step::Unsent);
                    }
                    // Set as soon as it goes out, not when its answer
                    // comes: a commit whose answer never comes (the wait
                    // for it timed out) is as much in doubt as one whose
                    // connection was lost.
                    sending(client.batch_execute(commit), committing)
                        .await
                        .map(|()| Step::Committed)
                }));
            }
            let first = usize::from(begin.is_some());
            let count = sends.len();
            let mut piped = Piped::default();
            for (step, answer) in in_order(sends).await.into_iter().enumerate() {
                match answer {
                    Ok(Step::Begun(messages)) => {
                        piped.begun = messages
                            .into_iter()
                            .filter_map(|message| match message {
                                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                                _ => None,
                            })
                            .collect();
                    }
                    Ok(Step::Rows(rows)) => piped.rows.push(rows),
                    Ok(Step::Committed | Step::Unsent) => {}
                    Err(error) => {
                        let at = step.checked_sub(first).filter(|at| *at < statements.len());
                        if committing.get() && outcome_unknown(&error, step + 1 == count) {
                            return Ok(Err(error));
                        }
                        return Err(Failed { at, error });
                    }
                }
            }
            Ok(Ok(piped))
        });
        match answers {
            Ok(Ok(Ok(piped))) => Ok(Ok(piped)),
            Ok(Ok(Err(lost))) => Err(self.uncertain(StoreError::from(lost))),
            Ok(Err(failed)) => Ok(Err(failed)),
            Err(stalled) if committing.get() && !refused.get() => Err(self.uncertain(stalled)),
            Err(stalled) => Err(stalled),
        }
    }

    /// The connection failed once the `COMMIT` was sent, before its answer
    /// said how it went: the transaction may have been committed, and made
    /// durable, or not. The connection is closed.
    fn uncertain(&self, err: StoreError) -> StoreError {
        self.broken.store(true, Ordering::Relaxed);
        StoreError::Uncertain(match err {
            StoreError::Unavailable(said) => said,
            other => other.to_string(),
        })
    }

    /// Runs one statement and returns its rows.
    pub(super) fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        match self.pipeline(None, &[Statement::new(sql, params)], None)? {
            Ok(mut piped) => Ok(piped.rows.pop().unwrap_or_default()),
            Err(failed) => Err(self.failed(failed.error)),
        }
    }

    /// Runs statements with no parameters (`BEGIN`, a migration).
    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        let object = self.object()?;
        self.wait(object.client.batch_execute(sql))?
            .map_err(|err| self.failed(err))
    }

    /// [`PgConn::pipeline`], keeping track of the transaction: open from
    /// `begin` (so that if anything fails on the way, dropping the
    /// connection rolls back, or closes it), over at `commit` whatever the
    /// answer, and a connection whose commit failed is not used again.
    pub(super) fn send(
        &self,
        begin: Option<&str>,
        statements: &[Statement],
        commit: Option<&str>,
    ) -> Result<std::result::Result<Piped, Failed>> {
        if begin.is_some() {
            self.open.store(true, Ordering::Relaxed);
        }
        let done = self.pipeline(begin, statements, commit);
        if commit.is_some() {
            self.open.store(false, Ordering::Relaxed);
            let kept = match &done {
                Ok(Ok(_)) => true,
                // Refused by the server (a check of a read, the fence, a
                // constraint), every answer in: the transaction is over,
                // or is ended here (the commit's second transaction may
                // have stopped inside its BEGIN; a ROLLBACK outside one
                // is only a warning). A connection that answers it is
                // kept: connecting afresh would cost the next
                // transaction a connection, and its statements prepared
                // again, under the lock.
                Ok(Err(failed)) if failed.error.as_db_error().is_some() => self.rolled_back(),
                _ => false,
            };
            if !kept {
                self.broken.store(true, Ordering::Relaxed);
            }
        }
        done
    }

    /// Ends whatever transaction is open (none: a warning); whether the
    /// server answered.
    fn rolled_back(&self) -> bool {
        self.object()
            .and_then(|object| {
                self.wait(object.client.batch_execute("ROLLBACK"))
                    .map(|answer| answer.is_ok())
            })
            .unwrap_or(false)
    }

    /// Starts a transaction with `begin` (statements with no parameters).
    pub(super) fn begin(&self, begin: &str) -> Result<()> {
        match self.send(Some(begin), &[], None)? {
            Ok(_) => Ok(()),
            Err(failed) => Err(self.failed(failed.error)),
        }
    }

    /// Commits (waiting for the flush, as the session is configured);
    /// whatever the answer, the transaction is over.
    pub(super) fn commit(&self) -> Result<()> {
        match self.send(None, &[], Some("COMMIT"))? {
            Ok(_) => Ok(()),
            Err(failed) => Err(self.failed(failed.error)),
        }
    }

    /// An error that may leave the connection unusable (lost, or the server
    /// turned read-only in a failover) keeps it from the pool, so the next
    /// transaction connects afresh, to whichever server is primary by then.
    pub(super) fn failed(&self, err: tokio_postgres::Error) -> StoreError {
        let store_error = StoreError::from(err);
        if matches!(store_error, StoreError::Unavailable(_)) {
            self.broken.store(true, Ordering::Relaxed);
        }
        store_error
    }
}

/// Runs a request's future, setting `sent` once it is on its way (before
/// its answer): a request that fails at its first poll (a parameter that
/// does not convert, a connection already closed) never left.
async fn sending<T, E>(
    request: impl Future<Output = std::result::Result<T, E>>,
    sent: &std::cell::Cell<bool>,
) -> std::result::Result<T, E> {
    let mut request = std::pin::pin!(request);
    let first = std::future::poll_fn(|cx| match request.as_mut().poll(cx) {
        std::task::Poll::Ready(answer) => std::task::Poll::Ready(Some(answer)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    match first {
        Some(Err(error)) => Err(error),
        Some(done) => {
            sent.set(true);
            done
        }
        None => {
            sent.set(true);
            request.await
        }
    }
}

/// Whether `error`, met by a pipeline that sent its `COMMIT` (at the
/// `COMMIT` itself when `committing`), leaves it unknown whether the
/// transaction committed. The server refusing a statement before the
/// `COMMIT` makes that a rollback, and so does its refusing the `COMMIT`
/// itself for a constraint (class 23) or a conflict (class 40). Any other
/// refusal of the `COMMIT` step (the server shutting down between its
/// commit and the flush that follows it, say) and a connection lost or
/// timed out with answers still to come (the server may have run all of
/// it, the answers lost on the way) leave it open. A parameter that does
/// not convert is no outcome of the server's.
fn outcome_unknown(error: &tokio_postgres::Error, committing: bool) -> bool {
    match error.as_db_error() {
        Some(db) => committing && !matches!(&db.code().code()[..2], "23" | "40"),
        None => matches!(StoreError::from_driver(error), StoreError::Unavailable(_)),
    }
}

/// Polls every future in order, each time, until all are done: each
/// statement's request is sent at its first poll, so they go out in the
/// order given.
async fn in_order<T>(mut futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, done) in futures.iter_mut().zip(done.iter_mut()) {
            if done.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(answer) => *done = Some(answer),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        match waiting {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Rolls back whatever was left open (rule 6): a connection goes back
        // to the pool outside any transaction, or not at all.
        if self.open.load(Ordering::Relaxed)
            && !self.broken.load(Ordering::Relaxed)
            && self.batch("ROLLBACK").is_err()
        {
            self.broken.store(true, Ordering::Relaxed);
        }
        if self.broken.load(Ordering::Relaxed)
            && let Some(object) = self.object.take()
        {
            // Closed rather than handed to the next transaction.
            drop(Object::take(object));
        }
    }
}

/// A repeatable-read transaction of its own (rule 8).
struct PgSnapshot {
    conn: PgConn,
}

impl Snapshot for PgSnapshot {
    fn audit_head(&self) -> Result<Option<AuditHead>> {
        tx::audit_head(&self.conn)
    }

    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()> {
        tx::scan_audit(&|sql, params| self.conn.query(sql, params), visit)
    }

    fn broker_key(&self, purpose: &str) -> Result<Option<(String, Vec<u8>)>> {
        tx::broker_key(&|sql, params| self.conn.query(sql, params), purpose)
    }

    fn ssh_authority_target(&self, public_key: &str) -> Result<Option<String>> {
        tx::ssh_authority_target(&|sql, params| self.conn.query(sql, params), public_key)
    }
}

fn pool_error(err: deadpool::managed::PoolError<StoreError>) -> StoreError {
    match err {
        deadpool::managed::PoolError::Backend(err) => err,
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

/// The driver's errors in the store's words. A failed serialisation, a
/// deadlock, a server shutting down or turned read-only, and a lost
/// connection may all succeed when tried again: unavailable. A broken
/// unique, check or foreign key constraint is a conflict.
impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::from_driver(&err)
    }
}

impl StoreError {
    fn from_driver(err: &tokio_postgres::Error) -> Self {
        let message = match err.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => err.to_string(),
        };
        let Some(code) = err.code() else {
            // A value that does not convert, to or from the server's type,
            // or a statement and its rows that do not fit what the code
            // reads (the driver's words for each, below), is a fault here
            // that trying again cannot mend; anything else without a
            // server's code is the connection's (closed, broken, timed out,
            // an answer out of turn).
            const FAULTS: [&str; 6] = [
                "error serializing parameter",
                "error deserializing column",
                "invalid column",
                "query returned an unexpected number of",
                "expected ",
                "invalid configuration",
            ];
            if FAULTS.iter().any(|fault| message.starts_with(fault)) {
                return StoreError::Other(message);
            }
            return StoreError::Unavailable(message);
        };
        let class = &code.code()[..2];
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            // The server ended a session left idle (in a transaction, or
            // out of one): the transaction was rolled back.
            || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
            || *code == SqlState::IDLE_SESSION_TIMEOUT
            || class == "08"
            || class == "53"
        {
            return StoreError::Unavailable(message);
        }
        if class == "23" {
            return StoreError::Conflict(message);
        }
        if class == "22" {
            return StoreError::Corrupt(message);
        }
        StoreError::Other(message)
    }
}

/// `postgres://user:password@host/db` without its password, for logs and
/// messages. Read by the driver's rule, not a URL parser's: tokio-postgres
/// takes everything before the first `@` as the user and password, so a
/// password with an unencoded `#`, `?` or `/` (which a URL parser reads as
/// the start of a fragment, query or path) is still the password, and is
/// still hidden. More than one `@` (one left unencoded in the user name or
/// password, or in the query) leaves where the password ends unsure: then
/// nothing after the scheme is shown, since the driver may read what
/// follows the password's first `@` as a host, a port or a database. A
/// `password` parameter in the query is hidden.
pub(super) fn redact(url: &str) -> String {
    const HIDDEN: &str = "********";
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://(unreadable URL)".to_string();
    };
    if rest.matches('@').count() > 1 {
        return format!("{scheme}://{HIDDEN} (hidden whole: more than one `@`)");
    }
    let mut shown = format!("{scheme}://");
    let rest = match rest.split_once('@') {
        Some((credentials, rest)) => {
            match credentials.split_once(':') {
                Some((user, _)) => shown.push_str(&format!("{user}:{HIDDEN}")),
                None => shown.push_str(credentials),
            }
            shown.push('@');
            rest
        }
        None => rest,
    };
    shown.push_str(rest);
    // Every `password` parameter, wherever it is: an `@` in the query (an
    // Azure-style `user=name@server`) is taken above for the end of the
    // credentials, and the query after it is shown as it stands.
    let mut hidden = String::with_capacity(shown.len());
    for (at, segment) in shown.split_inclusive(['?', '&']).enumerate() {
        let (body, separator) = match segment.strip_suffix(['?', '&']) {
            Some(body) => (body, &segment[body.len()..]),
            None => (segment, ""),
        };
        let key = body.split_once('=').map(|(key, _)| key);
        let named_password = at > 0
            && key.is_some_and(|key| {
                url::form_urlencoded::parse(key.as_bytes())
                    .next()
                    .is_some_and(|(name, _)| name.eq_ignore_ascii_case("password"))
            });
        match (named_password, key) {
            (true, Some(key)) => hidden.push_str(&format!("{key}={HIDDEN}{separator}")),
            _ => hidden.push_str(segment),
        }
    }
    hidden
}

/// rustls for connections to PostgreSQL (the store's, and a target's admin
/// connection): the server's certificate checked against `ca_file`, or the
/// system's roots.
pub fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|err| format!("ca_file {}: {err}", path.display()))?
            {
                let cert = cert.map_err(|err| format!("ca_file {}: {err}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|err| format!("ca_file {}: {err}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {} holds no certificate", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|err| format!("the system's CA roots: {err}"))?
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conversion that fails is not "unavailable" (a 503 to try again):
    /// it fails the same way every time.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_value_that_does_not_convert_is_not_an_outage() {
        let pg = crate::testing::Postgres::start().await.unwrap();
        let client = pg.admin().await.unwrap();
        let row = client.query_one("SELECT 'text'::text", &[]).await.unwrap();
        let err = row.try_get::<_, i64>(0).unwrap_err();
        assert!(
            matches!(StoreError::from(err), StoreError::Other(_)),
            "a conversion is a fault"
        );
    }

    /// A statement that fails before it is sent (here a parameter of the
    /// wrong type) stops the pipeline's `COMMIT` from going out: the
    /// statements before it are rolled back, not committed without it.
    #[cfg(feature = "testing")]
    #[test]
    fn a_statement_that_fails_unsent_commits_nothing_before_it() {
        let pg = crate::testing::Postgres::start_now().unwrap();
        let url = pg.create_database("hoistd").unwrap();
        let store = PostgresStore::open(&url, Migrations::Apply).unwrap();
        let conn = store.connection().unwrap();
        conn.batch("CREATE TABLE kept (n int4)").unwrap();
        let insert = |n: Param| Statement::new("INSERT INTO kept (n) VALUES ($1)", vec![n]);
        let piped = conn
            .send(
                Some(BEGIN_LOCKED),
                &[insert(Arc::new(1_i32)), insert(Arc::new(2_i64))],
                Some(COMMIT_LOCKED),
            )
            .unwrap();
        let failed = piped.err().expect("an i64 is no int4");
        assert_eq!(failed.at, Some(1));
        drop(conn);
        let conn = store.connection().unwrap();
        let rows = conn.query("SELECT count(*) FROM kept", vec![]).unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 0, "nothing was committed");
    }

    #[test]
    fn transactions_take_the_transaction_lock() {
        const TX_LOCK: i64 = 0x686f_6973_7464_7478;
        assert_eq!(
            BEGIN_LOCKED,
            format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '10s'; \
                 SELECT pg_advisory_xact_lock({TX_LOCK}), \
                 set_config('synchronous_commit', 'off', true), \
                 set_config('idle_in_transaction_session_timeout', '5s', true)"
            )
        );
    }
}
