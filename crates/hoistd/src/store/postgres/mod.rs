//! The PostgreSQL store, for several hoistd instances on one database:
//! tokio-postgres connections in a deadpool pool, driven by a small runtime
//! of the store's own behind the synchronous [`Store`] and [`Tx`].
//!
//! Why a runtime of its own: the broker calls the store from the blocking
//! pool (and a few places from async code), one call at a time, and the
//! conformance suite from plain threads. Each call is spawned onto the
//! store's runtime and its answer waited for on a channel, which works from
//! any thread and never starts or enters a runtime inside another. The
//! calling thread blocks for the round trip, as it does on SQLite's lock.
//!
//! Rule 1 (serialisable writes): every transaction takes one
//! transaction-scoped advisory lock before its first read, so transactions
//! take turns across every instance, as they do on SQLite's one connection.
//! Measured against SERIALIZABLE with retries in BENCHMARKS.md: the broker's
//! transactions all touch the audit head, so under SERIALIZABLE nearly every
//! concurrent pair conflicts and one is retried anyway. An advisory lock of
//! the transaction works through transaction-mode poolers.

mod listen;
mod tx;

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts};
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
];

/// Starts a transaction and takes the advisory lock every transaction
/// takes first (rule 1) in one round trip: one simple query, two
/// statements, nothing in it but constants. Any lock number will do as
/// long as nothing else on the database uses it: "hoistd tx" (see the
/// test below). The lock is held to the end, so each round trip is part of
/// the critical section the instances take turns at; this saves one.
const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(7525349446954284152)";
/// The advisory lock migrations are applied under: "hoistd mg".
const MIGRATION_LOCK: i64 = 0x686f_6973_7464_6d67;

/// What a transaction announces at its commit (see `PgConn::commit_announcing`).
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Connections kept open at most, per instance.
const POOL_SIZE: usize = 16;
/// How long a call waits for a connection from the pool, to connect, or
/// for a statement before the database counts as unavailable.
const WAIT: Duration = Duration::from_secs(5);
/// Audit rows read per round trip while scanning the log.
const SCAN_PAGE: i64 = 2_000;

/// A value bound to a statement's parameter, owned so it can travel to the
/// store's runtime.
type Param = Box<dyn ToSql + Send + Sync>;

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

pub struct PostgresStore {
    pool: Pool,
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
    /// system's roots (libpq's `verify-full`).
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
        // Fast recycling checks only that a connection is not closed: one
        // broken by a failover fails its next statement, and the store
        // throws it away then (see `PgConn::forget`).
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(WAIT),
                create: Some(WAIT),
                recycle: Some(WAIT),
            })
            .build()
            .map_err(|err| StoreError::Other(format!("cannot make the connection pool: {err}")))?;
        let store = PostgresStore {
            pool,
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

    /// Runs `work` on the store's runtime and waits for its answer, from
    /// any thread (see the module's docs).
    fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = answer.send(work.await);
        });
        answered
            .recv()
            .map_err(|_| StoreError::Other("the store's runtime stopped mid-call".into()))
    }

    fn connection(&self) -> Result<PgConn> {
        let pool = self.pool.clone();
        let object = self
            .run(async move { pool.get().await })?
            .map_err(pool_error)?;
        Ok(PgConn::new(object, self.handle.clone()))
    }

    /// Applies the pending migrations in one transaction under the
    /// migration lock: of several instances starting at once, one applies
    /// them and the others then find nothing to do. A transaction-scoped
    /// lock, so it also holds through a transaction-mode pooler.
    pub fn migrate(&self) -> Result<i64> {
        let conn = self.connection()?;
        conn.begin("BEGIN")?;
        conn.execute(
            "SELECT pg_advisory_xact_lock($1)",
            vec![Box::new(MIGRATION_LOCK)],
        )?;
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
        conn.execute(
            "UPDATE hoistd_schema SET version = $1",
            vec![Box::new(known)],
        )?;
        conn.commit()?;
        Ok(known)
    }

    /// The schema version the database is at (0: never migrated).
    pub fn schema_version(&self) -> Result<i64> {
        let conn = self.connection()?;
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

    fn transaction(&self) -> Result<Box<dyn Tx + '_>> {
        let conn = self.connection()?;
        conn.begin(BEGIN_LOCKED)?;
        Ok(Box::new(tx::PgTx::new(conn, self.origin.clone())))
    }

    /// A repeatable-read, read-only transaction: it sees the database as of
    /// its first statement, and PostgreSQL's snapshots hold no lock any
    /// writer waits for.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        let conn = self.connection()?;
        conn.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        // The snapshot is taken at the first statement, not at BEGIN.
        conn.query("SELECT 1", Vec::new())?;
        Ok(Box::new(PgSnapshot { conn }))
    }

    /// One statement, outside the transaction lock, on the database's
    /// clock so the instances' clocks need not agree. The row lock of the
    /// upsert makes two instances asking at once take turns.
    fn lead(&self, holder: &str, term: Duration) -> Result<Option<i64>> {
        let conn = self.connection()?;
        let rows = conn.query(
            "INSERT INTO leadership (name, holder, epoch, expires_at) \
             VALUES ('hoistd', $1, 1, clock_timestamp() + $2 * interval '1 millisecond') \
             ON CONFLICT (name) DO UPDATE SET \
             epoch = CASE WHEN leadership.holder = EXCLUDED.holder \
                     THEN leadership.epoch ELSE leadership.epoch + 1 END, \
             holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE leadership.holder = EXCLUDED.holder \
             OR leadership.expires_at < clock_timestamp() \
             RETURNING epoch",
            vec![
                Box::new(holder.to_owned()),
                Box::new(term.as_millis() as f64),
            ],
        )?;
        rows.first()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .transpose()
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

    fn resign(&self, holder: &str) -> Result<()> {
        let conn = self.connection()?;
        conn.execute(
            "UPDATE leadership SET expires_at = clock_timestamp() - interval '1 second' \
             WHERE name = 'hoistd' AND holder = $1",
            vec![Box::new(holder.to_owned())],
        )?;
        Ok(())
    }

    fn ready(&self) -> Result<()> {
        super::schema_ready(self.schema_version()?, Self::known_version())
    }
}

/// One pooled connection, shared with the statement running on the
/// store's runtime. Dropped, it goes back to the pool, rolled back first if
/// a transaction was left open, or is closed if it broke.
pub(super) struct PgConn {
    object: Option<Arc<Object>>,
    handle: tokio::runtime::Handle,
    /// Inside `BEGIN` and not yet committed or rolled back.
    open: AtomicBool,
    /// Met an error that leaves it unusable: it is not handed out again.
    broken: AtomicBool,
}

impl PgConn {
    fn new(object: Object, handle: tokio::runtime::Handle) -> Self {
        PgConn {
            object: Some(Arc::new(object)),
            handle,
            open: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Object>) -> Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> Result<T> {
        let Some(object) = &self.object else {
            return Err(StoreError::Unavailable(
                "the connection was lost earlier in this transaction".into(),
            ));
        };
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let future = work(Arc::clone(object));
        self.handle.spawn(async move {
            let _ = answer.send(future.await);
        });
        answered
            .recv()
            .map_err(|_| StoreError::Other("the store's runtime stopped mid-call".into()))
    }

    /// Runs one statement and returns its rows.
    pub(super) fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        let sql = sql.to_owned();
        let rows = self.run(move |object| {
            Box::pin(async move {
                let rows = match object.prepare_cached(&sql).await {
                    Ok(statement) => {
                        let refs: Vec<&(dyn ToSql + Sync)> = params
                            .iter()
                            .map(|param| param.as_ref() as &(dyn ToSql + Sync))
                            .collect();
                        object.query(&statement, &refs).await
                    }
                    Err(err) => Err(err),
                };
                drop(object);
                rows
            })
        })?;
        rows.map_err(|err| self.failed(err))
    }

    /// Runs one statement and returns how many rows it changed.
    pub(super) fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64> {
        let sql = sql.to_owned();
        let changed = self.run(move |object| {
            Box::pin(async move {
                let changed = match object.prepare_cached(&sql).await {
                    Ok(statement) => {
                        let refs: Vec<&(dyn ToSql + Sync)> = params
                            .iter()
                            .map(|param| param.as_ref() as &(dyn ToSql + Sync))
                            .collect();
                        object.execute(&statement, &refs).await
                    }
                    Err(err) => Err(err),
                };
                drop(object);
                changed
            })
        })?;
        changed.map_err(|err| self.failed(err))
    }

    /// Runs statements with no parameters (`BEGIN`, a migration).
    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        let done = self.run(move |object| {
            Box::pin(async move {
                let done = object.batch_execute(&sql).await;
                drop(object);
                done
            })
        })?;
        done.map_err(|err| self.failed(err))
    }

    /// Starts a transaction with `begin`.
    pub(super) fn begin(&self, begin: &str) -> Result<()> {
        self.batch(begin)?;
        self.open.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Commits; whatever the answer, the transaction is over.
    pub(super) fn commit(&self) -> Result<()> {
        self.commit_announcing(Vec::new())
    }

    /// Sends each `pg_notify(CHANNEL, notice)` and the `COMMIT` together,
    /// pipelined on the connection: one round trip, in order, so the
    /// notices are still part of the transaction (delivered at commit,
    /// dropped with a rollback). A notice refused aborts the transaction,
    /// and then the commit is an error too.
    pub(super) fn commit_announcing(&self, notices: Vec<String>) -> Result<()> {
        let done = self
            .run(move |object| {
                Box::pin(async move {
                    let done = async {
                        let notify = match notices.is_empty() {
                            true => None,
                            false => Some(object.prepare_cached(NOTIFY).await?),
                        };
                        // Each future sends its request when first polled,
                        // and `join` polls the notices before the commit.
                        let sent = notify.as_ref().map(|notify| {
                            futures::future::join_all(notices.iter().map(|notice| {
                                object.execute_raw(notify, [listen::CHANNEL, notice.as_str()])
                            }))
                        });
                        let (sent, committed) = futures::future::join(
                            async {
                                match sent {
                                    Some(sent) => sent.await,
                                    None => Vec::new(),
                                }
                            },
                            object.batch_execute("COMMIT"),
                        )
                        .await;
                        for notified in sent {
                            notified?;
                        }
                        committed
                    }
                    .await;
                    drop(object);
                    done
                })
            })
            .and_then(|done| done.map_err(|err| self.failed(err)));
        self.open.store(false, Ordering::Relaxed);
        if done.is_err() {
            self.broken.store(true, Ordering::Relaxed);
        }
        done
    }

    /// An error that may leave the connection unusable (lost, or the server
    /// turned read-only in a failover) keeps it from the pool, so the next
    /// transaction connects afresh, to whichever server is primary by then.
    fn failed(&self, err: tokio_postgres::Error) -> StoreError {
        let store_error = StoreError::from(err);
        if matches!(store_error, StoreError::Unavailable(_)) {
            self.broken.store(true, Ordering::Relaxed);
        }
        store_error
    }
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
            && let Some(object) = self.object.take().and_then(Arc::into_inner)
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
        tx::scan_audit(&self.conn, visit)
    }
}

fn pool_error(err: deadpool_postgres::PoolError) -> StoreError {
    match err {
        deadpool_postgres::PoolError::Backend(err) => StoreError::from(err),
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

/// The driver's errors in the store's words. A failed serialisation, a
/// deadlock, a server shutting down or turned read-only, and a lost
/// connection may all succeed when tried again: unavailable. A broken
/// unique, check or foreign key constraint is a conflict.
impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        let message = match err.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => err.to_string(),
        };
        let Some(code) = err.code() else {
            if err.is_closed() || err.as_db_error().is_none() {
                return StoreError::Unavailable(message);
            }
            return StoreError::Other(message);
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
/// messages.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("********"));
            }
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "********".to_string()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "postgres://(unreadable URL)".to_string(),
    }
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

    #[test]
    fn transactions_take_the_transaction_lock() {
        const TX_LOCK: i64 = 0x686f_6973_7464_7478;
        assert_eq!(
            BEGIN_LOCKED,
            format!("BEGIN; SELECT pg_advisory_xact_lock({TX_LOCK})")
        );
    }
}
