//! PostgreSQL: a login role of its own per grant, `hoist_<user>_<grant>`,
//! `VALID UNTIL` the grant's end, member of the roles the hoist role names,
//! with a connection limit; its password set when the holder fetches the
//! credential (as a SCRAM verifier) and never kept; on the grant's end no
//! more logins, its sessions terminated, what it owns reassigned or dropped,
//! the role dropped.
//!
//! No SQL is built from request text. Identifiers are quoted with
//! [`quote_ident`]; the only literals are values hoistd made itself (the
//! grant's end, its id, the SCRAM verifier), quoted with [`quote_literal`];
//! everything else is a bound parameter.
//!
//! Shape (as every kind): settings, access, the operations, errors.
//!
//! Over 600 lines with its unit tests, on purpose: a target kind is one file
//! (see ARCHITECTURE.md, *Adding a target kind*).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use chrono::{DateTime, Utc};
use hoist_api::AccessCredential;
use regex::Regex;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::{
    GrantFacts, Journal, Managed, TargetError, TargetKind, duration_setting, secret, settings,
};

/// Every role this kind creates starts with this.
pub const ROLE_PREFIX: &str = "hoist_";
/// The comment on each role, before the grant's id: the label the
/// reconciler recognises besides the name. After the id, ` of ` and the
/// deployment's issuer (`settings.issuer`), then ` at ` and the target's
/// name: deployments sharing a cluster leave each other's roles alone, and
/// of one deployment's targets sharing it, only the target that made a
/// role removes it (with its own settings: where to reassign what it owns).
const LABEL: &str = "hoist grant ";
/// Between the grant's id and the issuer in a role's label.
const LABEL_ISSUER: &str = " of ";
/// Between the issuer and the target's name in a role's label.
const LABEL_TARGET: &str = " at ";

/// A role's label, read for one deployment: the grant's id, whose label it
/// is, and the target that made the role, where it says.
struct Label<'a> {
    grant_id: &'a str,
    owner: Owner,
    target: Option<&'a str>,
}

/// Whose a role's label says it is.
#[derive(Debug, PartialEq)]
enum Owner {
    /// Written before labels named the deployment: any deployment's.
    Unnamed,
    /// The deployment reading it.
    Ours,
    /// Another deployment sharing the cluster.
    Theirs,
}

impl<'a> Label<'a> {
    /// `comment` as deployment `issuer` reads it. The issuer is matched
    /// whole, so an issuer with ` at ` in it is never taken for a target.
    fn read(comment: &'a str, issuer: &str) -> Option<Label<'a>> {
        let label = comment.strip_prefix(LABEL)?;
        let Some((grant_id, rest)) = label.split_once(LABEL_ISSUER) else {
            return Some(Label {
                grant_id: label,
                owner: Owner::Unnamed,
                target: None,
            });
        };
        let (owner, target) = if rest == issuer {
            (Owner::Ours, None)
        } else {
            // A target's name has no space: a tail with one is the rest of
            // a longer issuer (ours `Acme`, theirs `Acme at Prod`).
            match rest
                .strip_prefix(issuer)
                .and_then(|tail| tail.strip_prefix(LABEL_TARGET))
                .filter(|target| !target.contains(' '))
            {
                Some(target) => (Owner::Ours, Some(target)),
                None => (Owner::Theirs, None),
            }
        };
        Some(Label {
            grant_id,
            owner,
            target,
        })
    }

    fn write(grant_id: &str, issuer: &str, target: &str) -> String {
        format!("{LABEL}{grant_id}{LABEL_ISSUER}{issuer}{LABEL_TARGET}{target}")
    }
}

/// The handle a grant holds while a narrowing of its role owes the ending
/// of its holders' sessions ([`Postgres::take_away`]).
const SESSIONS_OWED: &str = "sessions owed";

/// Longest identifier PostgreSQL keeps whole (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

// ---- settings ------------------------------------------------------------

/// A `[[targets]]` entry of kind `postgres`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `postgres://ADMIN@HOST:PORT/DATABASE`, without a password.
    url: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// `disable`, `require`, `verify-ca` or `verify-full`. With anything
    /// but `disable`, hoistd verifies the server's certificate and name.
    /// Unset, `disable`, with a caution where the host is not loopback.
    sslmode: Option<String>,
    /// PEM file of the CA that signed the server's certificate (default:
    /// the system's roots).
    ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    statement_timeout: String,
    #[serde(default = "default_timeout")]
    connect_timeout: String,
    /// Who gets what a grant's role owns when it is dropped, a quarantine
    /// role with no privileges ([`Postgres::quarantine_problem`]); without
    /// it, what it owns is dropped with it.
    reassign_owned_to: Option<String>,
    /// Each grant's role's connection limit, unless the role says.
    #[serde(default = "default_connection_limit")]
    connection_limit: i32,
    /// Databases to reassign or drop owned objects in, besides `database`
    /// (default: the URL's).
    databases: Option<Vec<String>>,
    /// The database holders connect to (default: the URL's).
    database: Option<String>,
}

fn default_timeout() -> String {
    "5s".into()
}

fn default_connection_limit() -> i32 {
    5
}

/// One row of `pg_auth_members`: `member` was made a member of `granted`
/// by `grantor` (`None` for a grantor since dropped).
struct Membership {
    granted: String,
    member: String,
    grantor: Option<String>,
}

impl Membership {
    /// The statement that ends it. The names come from the catalog,
    /// quoted; a grantor since dropped is named by nobody.
    fn revoke(&self) -> String {
        let by = self
            .grantor
            .as_ref()
            .map(|grantor| format!(" GRANTED BY {}", quote_ident(grantor)))
            .unwrap_or_default();
        format!(
            "REVOKE {} FROM {}{by} CASCADE",
            quote_ident(&self.granted),
            quote_ident(&self.member),
        )
    }
}

/// A role's `[roles.access]` at a PostgreSQL target.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Access {
    /// PostgreSQL roles the grant's role is a member of.
    #[serde(default)]
    member_of: Vec<String>,
    connection_limit: Option<i32>,
}

impl Access {
    /// This access, as given at activation, narrowed to the role's access
    /// `now`: the memberships both name, and the lower connection limit
    /// (`default` where one sets none). Never an error: a grant left a
    /// member of nothing may still log in, with PUBLIC's privileges.
    fn narrowed(&self, now: &Access, default: i32) -> Access {
        let limit = |access: &Access| access.connection_limit.unwrap_or(default);
        // What was given stands, unless the role now allows fewer.
        let connection_limit = if limit(now) < limit(self) {
            Some(limit(now))
        } else {
            self.connection_limit
        };
        Access {
            member_of: self
                .member_of
                .iter()
                .filter(|role| now.member_of.contains(role))
                .cloned()
                .collect(),
            connection_limit,
        }
    }
}

pub struct Postgres {
    name: String,
    host: String,
    port: u16,
    admin: String,
    password: String,
    admin_database: String,
    database: String,
    databases: Vec<String>,
    sslmode: String,
    /// Plain text to a host that is not loopback because nobody chose it:
    /// said at every load (see [`TargetKind::cautions`]).
    unchosen_plaintext: bool,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    statement_timeout: Duration,
    connect_timeout: Duration,
    reassign_owned_to: Option<String>,
    connection_limit: i32,
    /// One admin connection per database and leadership term, opened on
    /// first use and again whenever it closed, with its server session.
    clients: Mutex<HashMap<(String, Option<Term>), Opened>>,
}

/// An open admin connection and its server session.
type Opened = (Arc<Client>, Session);

/// The leadership term an admin connection acts under, named in its
/// `application_name` ([`Term::application_name`]): the deployment (a
/// digest of its issuer, since epochs count within one) and the lease's
/// epoch. A leader's first connection of a term ends the sessions of
/// earlier terms ([`Postgres::end_earlier_terms`]): a leader stopped or
/// killed mid-call may have left a statement queued on one (a
/// `CREATE ROLE` behind a slow statement), which would otherwise run after
/// this term's removal found nothing to remove. Calls made off the lease
/// (a credential on an instance that does not lead, a load's checks) act
/// under none, and are never ended this way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Term {
    deployment: String,
    epoch: i64,
}

impl Term {
    fn of(journal: &Journal) -> Option<Term> {
        let epoch = journal.leader_epoch()?;
        Some(Term {
            deployment: deployment(journal.issuer()),
            epoch,
        })
    }

    fn application_name(&self) -> String {
        term_application_name_of(&self.deployment, self.epoch)
    }
}

/// A deployment's name in an `application_name`: short, and plain ASCII
/// whatever its issuer is.
fn deployment(issuer: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(issuer.as_bytes())[..6])
}

fn term_application_name_of(deployment: &str, epoch: i64) -> String {
    format!("hoistd {deployment} {epoch}")
}

/// The `application_name` of the admin connections a leader of the
/// deployment named by `issuer` opens in the term of `epoch`.
pub fn term_application_name(issuer: &str, epoch: i64) -> String {
    term_application_name_of(&deployment(issuer), epoch)
}

/// Sessions of admin connections given up on at a deadline
/// ([`Postgres::bounded`]), by server and admin ([`Postgres::abandoned_key`]):
/// statements sent on them, or queued, may still run, so they are ended on
/// the server before any other operation there runs
/// ([`Postgres::end_abandoned`]). Kept for the process, not the target: a
/// reload builds new targets, and the old one's sessions live on.
static ABANDONED: LazyLock<std::sync::Mutex<HashMap<String, Vec<Session>>>> =
    LazyLock::new(Default::default);

/// An admin connection's server process: its pid, and when it started (a
/// pid alone may be another's by the time it is looked for).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Session {
    pid: i32,
    started_micros: i64,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("Postgres")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin", &self.admin)
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

/// Whether `host` is this machine: a loopback address, `localhost`, or a
/// Unix socket's directory.
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Postgres {
    /// Builds the target from its `[[targets]]` settings.
    pub fn configure(name: &str, table: toml::Table) -> Result<Arc<dyn TargetKind>, String> {
        let raw: Settings = settings(name, table)?;
        let url =
            url::Url::parse(&raw.url).map_err(|err| format!("target `{name}`: url: {err}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "target `{name}`: url must start with postgres:// (got {}://)",
                url.scheme()
            ));
        }
        if url.password().is_some() {
            return Err(format!(
                "target `{name}`: url holds a password; use password_env or password_file"
            ));
        }
        // libpq would read these; hoistd would not, and would connect
        // otherwise than written (`?sslmode=verify-full` as plain text).
        if url.query().is_some_and(|query| !query.is_empty()) {
            let keys: Vec<String> = url
                .query_pairs()
                .map(|(key, _)| {
                    let key: String = key.chars().filter(|c| !c.is_control()).take(40).collect();
                    format!("`{key}`")
                })
                .collect();
            return Err(format!(
                "target `{name}`: url: settings in its query ({}) are not read; use the \
                 target's own keys (sslmode, ca_file, connect_timeout) and a socket's \
                 directory as the host (postgres://USER@%2Frun%2Fpostgresql/DB)",
                keys.join(", ")
            ));
        }
        // A Unix socket's directory is written percent-encoded.
        let host = percent_decode(
            url.host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("target `{name}`: url names no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']'),
        );
        let admin = match url.username() {
            "" => {
                return Err(format!(
                    "target `{name}`: url names no user (postgres://USER@HOST/DB)"
                ));
            }
            user => percent_decode(user),
        };
        let admin_database = match url.path().trim_start_matches('/') {
            "" => "postgres".to_string(),
            db => percent_decode(db),
        };
        let password = secret(
            name,
            "password",
            raw.password_env.as_deref(),
            raw.password_file.as_deref(),
        )?;
        let unchosen_plaintext = raw.sslmode.is_none() && !loopback(&host);
        let sslmode = raw.sslmode.unwrap_or_else(|| "disable".into());
        let tls = match sslmode.as_str() {
            "disable" => {
                if raw.ca_file.is_some() {
                    return Err(format!(
                        "target `{name}`: ca_file is set but sslmode is disable"
                    ));
                }
                None
            }
            "require" | "verify-ca" | "verify-full" => Some(
                crate::store::tls_connector(raw.ca_file.as_deref())
                    .map_err(|why| format!("target `{name}`: {why}"))?,
            ),
            other => {
                return Err(format!(
                    "target `{name}`: sslmode `{other}` is not disable, require, verify-ca or verify-full"
                ));
            }
        };
        if let Some(owner) = &raw.reassign_owned_to {
            identifier(owner)
                .map_err(|why| format!("target `{name}`: reassign_owned_to: {why}"))?;
        }
        if raw.connection_limit < 1 {
            return Err(format!(
                "target `{name}`: connection_limit must be at least 1"
            ));
        }
        let database = raw.database.unwrap_or_else(|| admin_database.clone());
        // What holders create is where they connect first: that database
        // is always cleaned, with those listed (or the URL's).
        let mut databases = vec![database.clone()];
        for db in raw
            .databases
            .unwrap_or_else(|| vec![admin_database.clone()])
        {
            if !databases.contains(&db) {
                databases.push(db);
            }
        }
        for db in &databases {
            identifier(db).map_err(|why| format!("target `{name}`: databases: {why}"))?;
        }
        Ok(Arc::new(Postgres {
            name: name.to_string(),
            host,
            port: url.port().unwrap_or(5432),
            admin,
            password,
            admin_database,
            database,
            databases,
            sslmode,
            unchosen_plaintext,
            tls,
            statement_timeout: duration_setting(name, "statement_timeout", &raw.statement_timeout)?,
            connect_timeout: duration_setting(name, "connect_timeout", &raw.connect_timeout)?,
            reassign_owned_to: raw.reassign_owned_to,
            connection_limit: raw.connection_limit,
            clients: Mutex::new(HashMap::new()),
        }))
    }

    /// The longest one operation may take, connecting included: a server
    /// that accepts a connection and then says nothing cannot hold the
    /// outbox.
    fn deadline(&self) -> Duration {
        self.connect_timeout + self.statement_timeout * 4
    }

    fn unreachable(&self, why: impl fmt::Display) -> TargetError {
        TargetError::unreachable(&self.name, why)
    }

    fn refused(&self, why: impl fmt::Display) -> TargetError {
        TargetError::refused(&self.name, why)
    }

    /// A driver error in the target's words: the server said no, or could
    /// not be reached (a cancelled statement is a timeout: try again).
    fn fault(&self, err: tokio_postgres::Error) -> TargetError {
        match err.as_db_error() {
            Some(db) => {
                let code = db.code();
                if *code == SqlState::QUERY_CANCELED
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS
                    || *code == SqlState::LOCK_NOT_AVAILABLE
                {
                    self.unreachable(db.message())
                } else {
                    self.refused(db.message())
                }
            }
            // The driver's own words leave out why (a TLS handshake's
            // "invalid peer certificate: UnknownIssuer"): add each cause once.
            None => {
                let mut text = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !text.contains(&cause_text) {
                        text = format!("{text}: {cause_text}");
                    }
                    source = cause.source();
                }
                self.unreachable(text)
            }
        }
    }

    /// The admin connection to `database` for calls made under `term`,
    /// opened if needed.
    async fn admin(&self, database: &str, term: Option<&Term>) -> Result<Arc<Client>, TargetError> {
        let mut clients = self.clients.lock().await;
        let key = (database.to_string(), term.cloned());
        if let Some((client, _)) = clients.get(&key)
            && !client.is_closed()
        {
            return Ok(Arc::clone(client));
        }
        // This instance's own connections of an earlier term are ended on
        // the server with everyone else's, below.
        if let Some(term) = term {
            clients
                .retain(|(_, earlier), _| earlier.as_ref().is_none_or(|e| e.epoch >= term.epoch));
        }
        let application_name = term.map_or_else(|| "hoistd".to_string(), Term::application_name);
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.admin)
            .password(&self.password)
            .dbname(database)
            .application_name(&application_name)
            .connect_timeout(self.connect_timeout)
            // A server gone without closing the socket is noticed in
            // seconds, as the store's own connections notice it.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(self.deadline())
            // The server stops any statement of ours that hangs (a lock held
            // by someone else) instead of holding the outbox.
            // `quote_literal` doubles quotes only, as standard strings
            // want: a server configured otherwise is not trusted to be.
            .options(format!(
                "-c statement_timeout={ms} -c lock_timeout={ms} -c standard_conforming_strings=on",
                ms = self.statement_timeout.as_millis()
            ));
        let connecting = async {
            match &self.tls {
                None => {
                    config.ssl_mode(SslMode::Disable);
                    let (client, connection) = config.connect(NoTls).await?;
                    tokio::spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::debug!(error = %err, "postgres admin connection closed");
                        }
                    });
                    Ok(client)
                }
                Some(tls) => {
                    config.ssl_mode(SslMode::Require);
                    let (client, connection) = config.connect(tls.clone()).await?;
                    tokio::spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::debug!(error = %err, "postgres admin connection closed");
                        }
                    });
                    Ok(client)
                }
            }
        };
        let client = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(client)) => Arc::new(client),
            Ok(Err(err)) => return Err(self.fault(err)),
            Err(_) => {
                return Err(self.unreachable(format!(
                    "no connection within {}",
                    humantime::format_duration(self.connect_timeout)
                )));
            }
        };
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), (extract(epoch FROM backend_start) * 1000000)::bigint \
                 FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|err| self.fault(err))?;
        let session = Session {
            pid: row.get(0),
            started_micros: row.get(1),
        };
        self.end_abandoned(&client).await?;
        if let Some(term) = term {
            self.end_earlier_terms(&client, term).await?;
        }
        clients.insert(key, (Arc::clone(&client), session));
        Ok(client)
    }

    /// Ends the sessions this admin opened under the deployment's earlier
    /// terms (see [`Term`]), and waits until the server shows them gone.
    /// Until they are, every operation fails, to be tried again.
    async fn end_earlier_terms(&self, client: &Client, term: &Term) -> Result<(), TargetError> {
        let until = tokio::time::Instant::now() + self.statement_timeout;
        loop {
            let left: i64 = client
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE usename = current_user AND pid <> pg_backend_pid() \
                     AND split_part(application_name, ' ', 1) = 'hoistd' \
                     AND split_part(application_name, ' ', 2) = $1 \
                     AND CASE WHEN split_part(application_name, ' ', 3) ~ '^[0-9]{1,18}$' \
                     THEN split_part(application_name, ' ', 3)::bigint END < $2",
                    &[&term.deployment, &term.epoch],
                )
                .await
                .map_err(|err| self.fault(err))?
                .get(0);
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(self.unreachable(format!(
                    "{left} session(s) of an earlier leader are not gone yet; their \
                     statements might still run"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the sessions of connections given up on, and waits until the
    /// server shows them gone: a statement one of them still had queued (a
    /// `CREATE ROLE` held up behind a slow one past its deadline) would
    /// otherwise run after a removal that found nothing, and give back
    /// what the removal took away. Ending a session rolls back what it has
    /// under way. Until they are gone, every operation fails, to be tried
    /// again.
    async fn end_abandoned(&self, client: &Client) -> Result<(), TargetError> {
        let key = self.abandoned_key();
        let abandoned: Vec<Session> = ABANDONED
            .lock()
            .map(|all| all.get(&key).cloned().unwrap_or_default())
            .unwrap_or_default();
        if abandoned.is_empty() {
            return Ok(());
        }
        let pids: Vec<i32> = abandoned.iter().map(|s| s.pid).collect();
        let starts: Vec<i64> = abandoned.iter().map(|s| s.started_micros).collect();
        let until = tokio::time::Instant::now() + self.statement_timeout;
        loop {
            let left: i64 = client
                .query_one(
                    "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a \
                     JOIN unnest($1::int[], $2::bigint[]) AS given(pid, started) \
                     ON a.pid = given.pid \
                     AND (extract(epoch FROM a.backend_start) * 1000000)::bigint = given.started",
                    &[&pids, &starts],
                )
                .await
                .map_err(|err| self.fault(err))?
                .get(0);
            if left == 0 {
                break;
            }
            if tokio::time::Instant::now() >= until {
                return Err(self.unreachable(format!(
                    "{left} session(s) given up on at a deadline are not gone yet; their \
                     statements might still run"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok(mut all) = ABANDONED.lock()
            && let Some(held) = all.get_mut(&key)
        {
            held.retain(|session| !abandoned.contains(session));
        }
        Ok(())
    }

    /// Whose sessions these are: the server, and the admin that may end them.
    fn abandoned_key(&self) -> String {
        format!("{} as {}", self.system(), self.admin)
    }

    /// Runs `operation` within [`Postgres::deadline`].
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, TargetError>>,
    ) -> Result<T, TargetError> {
        match tokio::time::timeout(self.deadline(), operation).await {
            Ok(result) => result,
            Err(_) => {
                // A server or proxy that stopped answering without closing
                // the socket, or statements queued behind slow ones: the
                // next operation connects afresh rather than queue behind
                // a connection that may never answer, and first ends these
                // sessions, whose statements may yet run.
                let given_up: Vec<Session> = self
                    .clients
                    .lock()
                    .await
                    .drain()
                    .map(|(_, (_, session))| session)
                    .collect();
                if let Ok(mut all) = ABANDONED.lock() {
                    all.entry(self.abandoned_key())
                        .or_default()
                        .extend(given_up);
                }
                Err(self.unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(self.deadline())
                )))
            }
        }
    }

    fn access_of(&self, grant: &GrantFacts) -> Result<Access, TargetError> {
        if grant.access.is_null() {
            return Ok(Access {
                member_of: Vec::new(),
                connection_limit: None,
            });
        }
        serde_json::from_value(grant.access.clone())
            .map_err(|err| self.refused(format!("the role's access is not PostgreSQL's: {err}")))
    }

    async fn role_exists(&self, client: &Client, role: &str) -> Result<Option<bool>, TargetError> {
        let row = client
            .query_opt(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .map_err(|err| self.fault(err))?;
        Ok(row.map(|row| row.get::<_, bool>(0)))
    }

    async fn create_or_update(
        &self,
        grant: &GrantFacts,
        journal: &Journal,
    ) -> Result<(), TargetError> {
        let issuer = journal.issuer();
        let access = self.access_of(grant)?;
        let role = role_name(&grant.holder, &grant.id);
        let client = self
            .admin(&self.admin_database, Term::of(journal).as_ref())
            .await?;
        let limit = access.connection_limit.unwrap_or(self.connection_limit);
        let until = quote_literal(&valid_until(grant.expires_at));
        let quoted = quote_ident(&role);
        let members: Vec<String> = access.member_of.iter().map(|r| quote_ident(r)).collect();
        // One simple query with no BEGIN or COMMIT of its own: PostgreSQL
        // runs it as one transaction and, if a statement fails, rolls it
        // back and ends it. With an explicit BEGIN, a failure would leave
        // the admin connection inside the failed transaction, and every
        // later call on it (other grants' removals too) refused.
        let mut sql = String::new();
        let exists = self.role_exists(&client, &role).await?.is_some();
        if !exists {
            sql.push_str(&format!(
                "CREATE ROLE {quoted} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE \
                 NOREPLICATION CONNECTION LIMIT {limit} VALID UNTIL {until}"
            ));
            if !members.is_empty() {
                sql.push_str(&format!(" IN ROLE {}", members.join(", ")));
            }
            sql.push_str(";\n");
        } else {
            // Again after a crash, or an extension moved the end: the same
            // statements bring an existing role to what the grant says.
            sql.push_str(&format!(
                "ALTER ROLE {quoted} WITH LOGIN CONNECTION LIMIT {limit} VALID UNTIL {until};\n"
            ));
            if !members.is_empty() {
                sql.push_str(&format!("GRANT {} TO {quoted};\n", members.join(", ")));
            }
        }
        sql.push_str(&format!(
            "COMMENT ON ROLE {quoted} IS {};",
            quote_literal(&Label::write(&grant.id, issuer, &self.name))
        ));
        // What it no longer names goes first: a membership it keeps that
        // fails to be granted (its role dropped since) must not hold that up.
        // A limit lowered counts from here: PostgreSQL weighs it only as a
        // session starts.
        let lowered = exists && self.limit_lowered(&client, &role, limit).await?;
        if lowered {
            client
                .batch_execute(&format!("ALTER ROLE {quoted} CONNECTION LIMIT {limit}"))
                .await
                .map_err(|err| self.fault(err))?;
        }
        if exists {
            self.take_away(&client, &role, &access.member_of, &grant.id, journal)
                .await?;
        }
        client
            .batch_execute(&sql)
            .await
            .map_err(|err| self.fault(err))?;
        // More open than the limit only if it was lowered: now, or by an
        // attempt that failed after it.
        if exists {
            self.end_sessions_beyond(&client, &role, limit).await?;
        }
        Ok(())
    }

    /// Whether `role` may now open more sessions than `limit`.
    async fn limit_lowered(
        &self,
        client: &Client,
        role: &str,
        limit: i32,
    ) -> Result<bool, TargetError> {
        let row = client
            .query_opt(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .map_err(|err| self.fault(err))?;
        Ok(row.is_some_and(|row| {
            let now: i32 = row.get(0);
            now < 0 || now > limit
        }))
    }

    /// Ends the sessions of `role` if it has more than `limit` open: which
    /// of them to keep is not hoist's to choose, and its holder opens again
    /// as many as the limit lets them. Client sessions only (not a query's
    /// parallel workers), and only those open now: one opened since is
    /// within the limit.
    async fn end_sessions_beyond(
        &self,
        client: &Client,
        role: &str,
        limit: i32,
    ) -> Result<(), TargetError> {
        // Each known by its process id and the moment it began: a process
        // id the server hands to a new session meanwhile is not ended. An
        // admin that is not a superuser sees neither when a session began
        // nor what kind it is (that needs `pg_read_all_stats`): then a
        // query's parallel workers count too, and a session is known by
        // its process id alone.
        let open: Vec<(i32, Option<SystemTime>)> = client
            .query(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE usename = $1 \
                 AND coalesce(backend_type, 'client backend') = 'client backend' \
                 AND pid <> pg_backend_pid()",
                &[&role],
            )
            .await
            .map_err(|err| self.fault(err))?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if open.len() <= usize::try_from(limit).unwrap_or(0) {
            return Ok(());
        }
        let (pids, starts): (Vec<i32>, Vec<Option<SystemTime>>) = open.into_iter().unzip();
        let mut left = 0;
        for _ in 0..100 {
            left = client
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(a.pid) \
                     FROM pg_stat_activity a \
                     JOIN unnest($1::int4[], $2::timestamptz[]) AS o(pid, backend_start) \
                     ON o.pid = a.pid AND o.backend_start IS NOT DISTINCT FROM a.backend_start) \
                     AS terminated",
                    &[&pids, &starts],
                )
                .await
                .map_err(|err| self.fault(err))?
                .get::<_, i64>(0);
            if left == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(self.unreachable(format!(
            "{left} session(s) of {role} beyond its lowered connection limit still open after \
             being terminated"
        )))
    }

    /// Takes from an existing grant's role the memberships its access no
    /// longer names: a reload narrowed its role. Its sessions, and those of
    /// roles made members of it, are ended before and after, since one
    /// that switched to such a role (SET ROLE) keeps it until it ends. Each
    /// revoke on its own, as at removal: one refused (a grant someone else
    /// made) is retried at the next attempt, and keeps none of the others.
    ///
    /// Once the revokes run, nothing at the target says which sessions are
    /// still to end: the grant holds the handle [`SESSIONS_OWED`] from
    /// before them until they are ended, so that an attempt that fails
    /// between the two leaves the next one the sessions to end.
    async fn take_away(
        &self,
        client: &Client,
        role: &str,
        kept: &[String],
        grant_id: &str,
        journal: &Journal,
    ) -> Result<(), TargetError> {
        let memberships = self.memberships(client, role).await?;
        let taken: Vec<&Membership> = memberships
            .iter()
            .filter(|m| m.member == role && !kept.contains(&m.granted))
            .collect();
        let owed = journal
            .handles(&self.name, Some(grant_id))
            .await?
            .iter()
            .any(|(_, handle)| handle == SESSIONS_OWED);
        if taken.is_empty() && !owed {
            return Ok(());
        }
        if !owed {
            journal
                .remember_handle(&self.name, grant_id, SESSIONS_OWED)
                .await?;
        }
        let holders = self.holders(client, role).await?;
        if let Some(refused) = self
            .revoke_memberships(client, role, &holders, &taken)
            .await?
        {
            return Err(refused);
        }
        journal
            .forget_handle(&self.name, grant_id, SESSIONS_OWED)
            .await
    }

    /// Whose sessions may hold `role`'s privileges: its own, and those of
    /// every role made a member of it, directly or through other roles
    /// (a member of a group it was granted to), which may have switched
    /// to it, or to a role it is a member of, with SET ROLE. Not the
    /// admin's, nor those of roles that are members of the admin.
    async fn holders(&self, client: &Client, role: &str) -> Result<Vec<String>, TargetError> {
        let rows = client
            .query(
                "WITH RECURSIVE held(oid) AS ( \
                     SELECT oid FROM pg_roles WHERE rolname = $1 \
                     UNION \
                     SELECT a.member FROM pg_auth_members a JOIN held h ON a.roleid = h.oid \
                     JOIN pg_roles m ON m.oid = a.member AND m.rolname <> current_user) \
                 SELECT r.rolname::text FROM pg_roles r JOIN held h ON h.oid = r.oid",
                &[&role],
            )
            .await
            .map_err(|err| self.fault(err))?;
        let mut holders: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        if !holders.iter().any(|h| h == role) {
            holders.push(role.to_string());
        }
        Ok(holders)
    }

    /// Every membership `role` is in, both ways: the roles it was made a
    /// member of, and any role made a member of it (by an admin, or by its
    /// holder: before PostgreSQL 15 a role logged in as itself may grant
    /// itself to others). Not the admin's own hold on it: from PostgreSQL
    /// 16 a CREATEROLE admin is made an admin of each role it creates, by a
    /// grant it may not revoke and needs to drop the role.
    async fn memberships(
        &self,
        client: &Client,
        role: &str,
    ) -> Result<Vec<Membership>, TargetError> {
        let rows = client
            .query(
                "SELECT r.rolname, m.rolname, g.rolname FROM pg_auth_members a \
                 JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
                 LEFT JOIN pg_roles g ON g.oid = a.grantor \
                 WHERE (r.rolname = $1 OR m.rolname = $1) \
                 AND NOT (r.rolname = $1 AND m.rolname = current_user)",
                &[&role],
            )
            .await
            .map_err(|err| self.fault(err))?;
        Ok(rows
            .iter()
            .map(|row| Membership {
                granted: row.get(0),
                member: row.get(1),
                grantor: row.get(2),
            })
            .collect())
    }

    /// Why `reassign_owned_to` may not take what a grant's role leaves, or
    /// `None` when it may. It must be a quarantine: a role with no
    /// privileges of its own (no login, no attributes, a member of no role,
    /// and, with `grants`, named in no grant), since what it takes runs as
    /// it afterwards: a holder's `SECURITY DEFINER` function, or a view,
    /// granted to PUBLIC would otherwise be a way back in with the owner's
    /// privileges.
    ///
    /// Grants are checked at removal only, and privileges on objects a
    /// grant's role owns (named as hoist names them) do not count: those
    /// end or come to the quarantine with their owner. A holder can thus
    /// hold up removals only by granting it what a `member_of` role holds,
    /// and cannot keep hoistd from loading its policy.
    async fn quarantine_problem(
        &self,
        client: &Client,
        owner: &str,
        grants: bool,
    ) -> Result<Option<String>, TargetError> {
        let row = client
            .query_opt(
                "SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication \
                 OR r.rolbypassrls, r.rolcanlogin, \
                 ARRAY(SELECT g.rolname::text FROM pg_auth_members a \
                       JOIN pg_roles g ON g.oid = a.roleid WHERE a.member = r.oid ORDER BY 1), \
                 $2 AND EXISTS (SELECT 1 FROM pg_shdepend s WHERE s.refobjid = r.oid \
                         AND s.refclassid = 'pg_authid'::regclass AND s.deptype = 'a' \
                         AND NOT EXISTS (SELECT 1 FROM pg_shdepend o \
                             JOIN pg_roles l ON l.oid = o.refobjid AND l.rolname ~ $3 \
                             WHERE o.dbid = s.dbid AND o.classid = s.classid \
                             AND o.objid = s.objid AND o.deptype = 'o')) \
                 FROM pg_roles r WHERE r.rolname = $1",
                &[&owner, &grants, &ROLE_NAME.as_str()],
            )
            .await
            .map_err(|err| self.fault(err))?;
        let Some(row) = row else {
            return Ok(Some(format!(
                "reassign_owned_to: no PostgreSQL role `{owner}` at {}:{}",
                self.host, self.port
            )));
        };
        let (attributes, login, member_of, granted): (bool, bool, Vec<String>, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let why = if attributes {
            "has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS".to_string()
        } else if login {
            "can log in".to_string()
        } else if !member_of.is_empty() {
            format!("is a member of {}", member_of.join(", "))
        } else if granted {
            "is granted privileges on objects (GRANT ... TO it)".to_string()
        } else {
            return Ok(None);
        };
        Ok(Some(format!(
            "reassign_owned_to `{owner}` {why}; it must be a quarantine role with no privileges \
             of its own (CREATE ROLE {} NOLOGIN), since what holders leave runs as it",
            quote_ident(owner)
        )))
    }

    /// Ends every session of `members` (the role, and roles made members
    /// of it, which may have switched to it with SET ROLE) among `open`:
    /// VALID UNTIL and NOLOGIN only stop new logins, and a session opened
    /// before keeps running until it is terminated. A terminated backend
    /// takes a moment to leave pg_stat_activity; waited for, briefly.
    ///
    /// `open` is the sessions open just after the revokes ([`Postgres::open`]):
    /// a session a member opens after them cannot take what the role held,
    /// so a member that keeps reconnecting does not hold the removal up.
    /// They are known by process id, which an admin that is not a superuser
    /// sees of any session (not when it began: that needs
    /// `pg_read_all_stats`); one a new session took over meanwhile is one of
    /// the same members', and ending it does no harm.
    async fn end_sessions(
        &self,
        client: &tokio_postgres::Client,
        role: &str,
        members: &[String],
        open: &[i32],
    ) -> Result<(), TargetError> {
        let mut left = 0;
        for _ in 0..100 {
            left = self.terminate(client, role, members, Some(open)).await?;
            if left == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(self.unreachable(format!(
            "{left} session(s) of {role} still open after being terminated"
        )))
    }

    /// The process ids of the sessions of `members` open now.
    async fn open(
        &self,
        client: &tokio_postgres::Client,
        members: &[String],
    ) -> Result<Vec<i32>, TargetError> {
        Ok(client
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
                &[&members],
            )
            .await
            .map_err(|err| self.fault(err))?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    /// Terminates the sessions [`Postgres::end_sessions`] ends (with
    /// `among`, only those), without waiting for them to go: how many there
    /// were, ended now or before and not gone yet. A superuser member's
    /// sessions are left: a superuser gains nothing from the role, and an
    /// admin that is not one may not end them.
    async fn terminate(
        &self,
        client: &tokio_postgres::Client,
        role: &str,
        members: &[String],
        among: Option<&[i32]>,
    ) -> Result<i64, TargetError> {
        Ok(client
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(a.pid) \
                 FROM pg_stat_activity a \
                 WHERE a.usename = ANY($1) AND a.pid <> pg_backend_pid() \
                 AND ($2::int4[] IS NULL OR a.pid = ANY($2)) \
                 AND (a.usename = $3 OR NOT EXISTS (SELECT 1 FROM pg_roles r \
                      WHERE r.rolname = a.usename AND r.rolsuper))) AS terminated",
                &[&members, &among, &role],
            )
            .await
            .map_err(|err| self.fault(err))?
            .get(0))
    }

    /// Revokes `taken` of `role`'s memberships, each on its own (one
    /// refused, a grant someone else made, keeps none of the others and is
    /// tried again at the next attempt), and ends the sessions of `members`
    /// around them. Before, terminated once and not waited for: a session
    /// holding a lock on a membership (an open transaction of its holder's)
    /// would hold each revoke up to its timeout, and it lets the lock go as
    /// it exits; a wait for the sessions to go could not end while a member
    /// keeps reconnecting. After, every session open once the revokes ran,
    /// which must end, and is waited for.
    ///
    /// `Err` if the sessions could not be ended; `Ok(Some)` with the first
    /// refused revoke once they were.
    async fn revoke_memberships(
        &self,
        client: &tokio_postgres::Client,
        role: &str,
        members: &[String],
        taken: &[&Membership],
    ) -> Result<Option<TargetError>, TargetError> {
        if let Err(err) = self.terminate(client, role, members, None).await {
            tracing::debug!(target = %self.name, role, error = %err, "sessions before the revokes");
        }
        let refused = self.revoke_each(client, taken).await;
        let open = self.open(client, members).await?;
        self.end_sessions(client, role, members, &open).await?;
        Ok(refused)
    }

    /// Revokes each of `memberships` on its own: the first refusal, if any.
    async fn revoke_each(
        &self,
        client: &tokio_postgres::Client,
        memberships: &[&Membership],
    ) -> Option<TargetError> {
        let mut refused = None;
        for membership in memberships {
            if let Err(err) = client.batch_execute(&membership.revoke()).await {
                refused.get_or_insert(self.fault(err));
            }
        }
        refused
    }

    /// No more logins, its sessions ended, what it owns handed over or
    /// dropped, then the role itself; each step harmless to repeat.
    async fn tear_down(&self, role: &str, journal: &Journal) -> Result<(), TargetError> {
        let term = Term::of(journal);
        let client = self.admin(&self.admin_database, term.as_ref()).await?;
        if self.role_exists(&client, role).await?.is_none() {
            return Ok(());
        }
        let quoted = quote_ident(role);
        client
            .batch_execute(&format!("ALTER ROLE {quoted} WITH NOLOGIN"))
            .await
            .map_err(|err| self.fault(err))?;
        // Every membership goes, both ways ([`Postgres::memberships`]).
        // Should the role outlive this attempt, it holds no one's
        // privileges and lends its own to no one. Each revoke on its own,
        // and the sessions are ended whatever they do: one refused (a grant
        // someone else made) must not keep the others, or the sessions, in
        // place. The role's own memberships first, with the sessions of
        // everyone who could have switched through it ended after; only
        // then what makes them holders: an attempt that fails between the
        // two still finds them at the next, and ends those sessions then.
        let memberships = self.memberships(&client, role).await?;
        let holders = self.holders(&client, role).await?;
        let (own, lent): (Vec<&Membership>, Vec<&Membership>) =
            memberships.iter().partition(|m| m.member == role);
        // A refused revoke of its own (a grant another made) keeps none of
        // those it lends to others: they go once the sessions are ended,
        // and the first refusal fails the attempt after.
        let refused = self
            .revoke_memberships(&client, role, &holders, &own)
            .await?;
        // A member's session opened meanwhile may have switched to the
        // role itself (what it owns, what was granted to it): ended too,
        // once no member can switch to it any more. With no member, there
        // is none.
        let refused = match lent.is_empty() {
            true => refused,
            false => refused.or(self
                .revoke_memberships(&client, role, &holders, &lent)
                .await?),
        };
        if let Some(refused) = refused {
            return Err(refused);
        }
        // What it owns or was granted anywhere in the cluster: the
        // databases listed, and any other its holder reached. A listed one
        // dropped since, or taking no connections, holds nothing of the
        // role's it could drop: left out, and said, rather than fail every
        // removal at the target for good.
        let present: Vec<String> = client
            .query(
                "SELECT datname::text FROM pg_database \
                 WHERE datallowconn AND datname::text = ANY($1::text[])",
                &[&self.databases],
            )
            .await
            .map_err(|err| self.fault(err))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for gone in self.databases.iter().filter(|db| !present.contains(db)) {
            tracing::warn!(
                target_name = %self.name, database = %gone,
                "a database `databases` lists is gone or takes no connections: left out of removals"
            );
        }
        let mut databases: Vec<String> = self
            .databases
            .iter()
            .filter(|db| present.contains(db))
            .cloned()
            .collect();
        let elsewhere = client
            .query(
                "SELECT DISTINCT d.datname FROM pg_shdepend s \
                 JOIN pg_database d ON d.oid = s.dbid \
                 JOIN pg_roles r ON r.oid = s.refobjid \
                 WHERE s.refclassid = 'pg_authid'::regclass AND r.rolname = $1 \
                 AND d.datallowconn ORDER BY 1",
                &[&role],
            )
            .await
            .map_err(|err| self.fault(err))?;
        for row in elsewhere {
            let database: String = row.get(0);
            if !databases.contains(&database) {
                databases.push(database);
            }
        }
        // Checked again at each removal: a role that was a quarantine at
        // load may have been granted something since. The role already
        // holds nothing and logs in nowhere; its removal waits, failing
        // with why, until the quarantine is one again.
        if let Some(owner) = &self.reassign_owned_to
            && let Some(why) = self.quarantine_problem(&client, owner, true).await?
        {
            return Err(self.refused(why));
        }
        // REASSIGN OWNED and DROP OWNED need the role's privileges, which a
        // superuser has and a CREATEROLE admin takes: the role holds nothing
        // now, so the admin gains nothing, and the membership goes with the
        // role (and is never one of its memberships above).
        let superuser: bool = client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|err| self.fault(err))?
            .get(0);
        if !superuser {
            client
                .batch_execute(&format!("GRANT {quoted} TO CURRENT_USER"))
                .await
                .map_err(|err| self.fault(err))?;
        }
        for database in &databases {
            let db = self.admin(database, term.as_ref()).await?;
            let mut sql = String::new();
            if let Some(owner) = &self.reassign_owned_to {
                sql.push_str(&format!(
                    "REASSIGN OWNED BY {quoted} TO {};\n",
                    quote_ident(owner)
                ));
            }
            sql.push_str(&format!("DROP OWNED BY {quoted};"));
            db.batch_execute(&sql)
                .await
                .map_err(|err| self.fault(err))?;
        }
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {quoted}"))
            .await
            .map_err(|err| self.fault(err))
    }
}

#[async_trait::async_trait]
impl TargetKind for Postgres {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// The cluster: roles are the whole cluster's.
    fn system(&self) -> String {
        format!(
            "postgres {}:{}",
            crate::outbound::host_key(&self.host),
            self.port
        )
    }

    fn cautions(&self) -> Vec<String> {
        if !self.unchosen_plaintext {
            return Vec::new();
        }
        vec![format!(
            "target `{}`: sslmode is not set, so hoistd's admin session and every grant's \
             password go to {} in plain text; set sslmode = \"verify-full\" (with ca_file for a \
             private CA), or sslmode = \"disable\" where the network is trusted. A later \
             release will default to verify-full",
            self.name, self.host
        )]
    }

    /// Memberships are made at activation: a reload that narrows the role
    /// takes them away from live grants' roles, all of them from a role
    /// that no longer gives access here.
    fn narrowed_at_target(
        &self,
        given: &serde_json::Value,
        now: Option<&serde_json::Value>,
    ) -> Option<Result<serde_json::Value, String>> {
        let nothing = serde_json::json!({ "member_of": [] });
        Some(self.narrow(given, now.unwrap_or(&nothing)))
    }

    fn narrow(
        &self,
        given: &serde_json::Value,
        now: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        super::narrow_as(given, now, |given: &Access, now| {
            Ok(given.narrowed(now, self.connection_limit))
        })
    }

    fn access(&self, table: toml::Table) -> Result<serde_json::Value, String> {
        let access: Access = toml::Value::Table(table)
            .try_into()
            .map_err(|err: toml::de::Error| format!("access: {}", err.message().trim()))?;
        for role in &access.member_of {
            identifier(role).map_err(|why| format!("access.member_of: {why}"))?;
            // The reconciler takes a role so named for a grant's, left
            // behind, and removes it: with it, what every holder has.
            if ROLE_NAME.is_match(role) {
                return Err(format!(
                    "access.member_of: `{role}` is named as hoist names the roles it makes for \
                     grants (hoist_<name>_<12 letters or digits>), which it removes when no \
                     grant holds them; rename the role"
                ));
            }
        }
        if access.connection_limit.is_some_and(|n| n < 1) {
            return Err("access.connection_limit must be at least 1".into());
        }
        serde_json::to_value(&access).map_err(|err| err.to_string())
    }

    async fn validate(&self, access: &serde_json::Value) -> Result<(), TargetError> {
        let access: Access = serde_json::from_value(access.clone())
            .map_err(|err| self.refused(format!("access: {err}")))?;
        self.bounded(async {
            let client = self.admin(&self.admin_database, None).await?;
            if let Some(owner) = &self.reassign_owned_to {
                if let Some(why) = self.quarantine_problem(&client, owner, false).await? {
                    return Err(self.refused(why));
                }
                // Granted something: said now, though only removals wait
                // for it (a holder's grant must not stop a load).
                if let Some(why) = self.quarantine_problem(&client, owner, true).await? {
                    tracing::warn!(target_name = %self.name, "{why}; removals will wait for it");
                }
            }
            let wanted = access.member_of.clone();
            let found: Vec<String> = client
                .query(
                    "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
                    &[&wanted],
                )
                .await
                .map_err(|err| self.fault(err))?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let missing: Vec<&String> = wanted.iter().filter(|r| !found.contains(r)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                let names: Vec<String> = missing.iter().map(|r| format!("`{r}`")).collect();
                Err(self.refused(format!(
                    "no PostgreSQL role {} at {}:{}",
                    names.join(", "),
                    self.host,
                    self.port
                )))
            }
        })
        .await
    }

    async fn provision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError> {
        self.bounded(self.create_or_update(grant, journal)).await
    }

    async fn deprovision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError> {
        let role = role_name(&grant.holder, &grant.id);
        self.bounded(self.tear_down(&role, journal)).await
    }

    /// Whether the grant's role is there and may log in. A role labelled
    /// before labels named the deployment is labelled anew: every
    /// deployment takes such a role for its own, so another sharing the
    /// cluster would remove it as drift.
    async fn inspect(&self, grant: &GrantFacts, journal: &Journal) -> Result<bool, TargetError> {
        let role = role_name(&grant.holder, &grant.id);
        self.bounded(async {
            let client = self
                .admin(&self.admin_database, Term::of(journal).as_ref())
                .await?;
            let row = client
                .query_opt(
                    "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles \
                     WHERE rolname = $1",
                    &[&role],
                )
                .await
                .map_err(|err| self.fault(err))?;
            let Some(row) = row else {
                return Ok(false);
            };
            let (login, comment): (bool, Option<String>) = (row.get(0), row.get(1));
            // Only a label with no deployment in it (or none at all), or
            // this deployment's without a target: one that names another
            // deployment is that deployment's to keep.
            let unnamed = match comment.as_deref().map(|c| Label::read(c, journal.issuer())) {
                None => true,
                Some(None) => false,
                Some(Some(label)) => match label.owner {
                    Owner::Unnamed => true,
                    Owner::Ours => label.target.is_none(),
                    Owner::Theirs => false,
                },
            };
            if unnamed {
                let label = Label::write(&grant.id, journal.issuer(), &self.name);
                let written = client
                    .batch_execute(&format!(
                        "COMMENT ON ROLE {} IS {}",
                        quote_ident(&role),
                        quote_literal(&label)
                    ))
                    .await;
                if let Err(err) = written {
                    tracing::warn!(role = %role, error = %self.fault(err), "role not labelled");
                }
            }
            Ok(login)
        })
        .await
    }

    /// Roles named as this kind names them (a label alone is not enough),
    /// but not those another deployment's label claims, nor those labelled
    /// as another target's of this deployment on the same cluster.
    async fn managed(&self, journal: &Journal) -> Result<Option<Vec<Managed>>, TargetError> {
        self.bounded(async {
            let client = self
                .admin(&self.admin_database, Term::of(journal).as_ref())
                .await?;
            let rows = client
                .query(
                    "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
                     WHERE starts_with(rolname, $1) \
                     OR starts_with(shobj_description(oid, 'pg_authid'), $2)",
                    &[&ROLE_PREFIX, &LABEL],
                )
                .await
                .map_err(|err| self.fault(err))?;
            let mut found = Vec::new();
            for row in rows {
                let name: String = row.get(0);
                let comment: Option<String> = row.get(1);
                if name == self.admin || Some(&name) == self.reassign_owned_to.as_ref() {
                    continue;
                }
                let label = comment
                    .as_deref()
                    .and_then(|c| Label::read(c, journal.issuer()));
                // Another target's, if the policy still has it to list
                // it; one the policy no longer has is this one's too.
                if let Some(label) = &label
                    && (label.owner == Owner::Theirs
                        || label.target.is_some_and(|target| {
                            target != self.name && journal.lists_its_own(target)
                        }))
                {
                    continue;
                }
                let labelled = label
                    .map(|label| label.grant_id)
                    .filter(|id| GRANT_ID.is_match(id))
                    .map(str::to_string);
                // Named as hoist names them, whatever the label says: a
                // comment is all it takes to label a role, and anyone who
                // may comment on one (CREATEROLE, or ADMIN on it) could
                // otherwise have hoist drop an application's role and all it
                // owns. A role of hoist's renamed is left, and said.
                if !ROLE_NAME.is_match(&name) {
                    if labelled.is_some() {
                        tracing::warn!(
                            target_name = %self.name, role = %super::shown(&name),
                            "a role labelled as hoist's is not named as hoist names them: \
                             left as it is; drop it by hand if it was hoist's"
                        );
                    }
                    continue;
                }
                let grant_id =
                    labelled.or_else(|| name.rsplit('_').next().map(|tail| format!("gr_{tail}")));
                found.push(Managed { name, grant_id });
            }
            Ok(Some(found))
        })
        .await
    }

    async fn remove(&self, found: &Managed, journal: &Journal) -> Result<(), TargetError> {
        self.bounded(self.tear_down(&found.name, journal)).await
    }

    async fn credential(
        &self,
        grant: &GrantFacts,
        journal: &Journal,
        _key: Option<&super::ssh::HolderKey>,
    ) -> Result<Option<AccessCredential>, TargetError> {
        let role = role_name(&grant.holder, &grant.id);
        let password = new_password();
        // The server is sent a SCRAM verifier, so the password itself
        // reaches no server log; hoistd keeps neither.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        self.bounded(async {
            let client = self
                .admin(&self.admin_database, Term::of(journal).as_ref())
                .await?;
            if self.role_exists(&client, &role).await? != Some(true) {
                return Err(self.refused(format!("the grant's role {role} is not there")));
            }
            client
                .batch_execute(&format!(
                    "ALTER ROLE {} WITH PASSWORD {}",
                    quote_ident(&role),
                    quote_literal(&verifier)
                ))
                .await
                .map_err(|err| self.fault(err))
        })
        .await?;
        Ok(Some(self.handover(&role, &password, grant.expires_at)))
    }
}

impl Postgres {
    /// What the holder gets: libpq's environment, a URI and a `psql` line.
    /// The line gives psql the password in its environment, not in the URI
    /// it is passed: a command's arguments are in the process list, for
    /// every user of the machine to read.
    fn handover(&self, role: &str, password: &str, expires_at: DateTime<Utc>) -> AccessCredential {
        // hoistd checks the server's certificate and name whenever it
        // speaks TLS; libpq's `require` checks neither, and `verify-ca` not
        // the name: the holder is held to what hoistd checked.
        let sslmode = match self.sslmode.as_str() {
            "disable" => "disable".to_string(),
            _ => "verify-full".to_string(),
        };
        let env: BTreeMap<String, String> = [
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGDATABASE", self.database.clone()),
            ("PGUSER", role.to_string()),
            ("PGPASSWORD", password.to_string()),
            ("PGSSLMODE", sslmode.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        let host = if self.host.starts_with('/') {
            // A socket's directory, as libpq reads it in a URI's host.
            percent_encoding::utf8_percent_encode(&self.host, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let unlocked = url::Url::parse(&format!("postgresql://{host}:{}/", self.port))
            .ok()
            .map(|mut uri| {
                let _ = uri.set_username(role);
                uri.set_path(&self.database);
                uri.query_pairs_mut().append_pair("sslmode", &sslmode);
                uri
            });
        let command = unlocked.as_ref().map(|uri| {
            format!(
                "PGPASSWORD={} psql {}",
                shell_word(password),
                shell_word(uri.as_str())
            )
        });
        let uri = unlocked.map(|mut uri| {
            let _ = uri.set_password(Some(password));
            uri.to_string()
        });
        AccessCredential {
            target: self.name.clone(),
            kind: "postgres".into(),
            env,
            uri,
            command,
            expires_at,
            certificate: None,
        }
    }
}

// ---- names, quoting, TLS ---------------------------------------------------

static GRANT_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^gr_[0-9a-z]{12}$").unwrap_or_else(|_| unreachable!()));
static ROLE_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("^hoist_[a-z0-9_]*_[0-9a-z]{12}$").unwrap_or_else(|_| unreachable!())
});

/// The role a grant gets: `hoist_<user>_<grant>`, lowercase `[a-z0-9_]`
/// only, within PostgreSQL's 63 bytes (the user's part is shortened; the
/// grant's part, which makes it unique, never is).
pub fn role_name(holder: &str, grant_id: &str) -> String {
    let grant: String = grant_id
        .strip_prefix("gr_")
        .unwrap_or(grant_id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut user: String = holder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let room = MAX_IDENTIFIER.saturating_sub(ROLE_PREFIX.len() + 1 + grant.len());
    user.truncate(room);
    format!("{ROLE_PREFIX}{user}_{grant}")
}

/// An identifier as SQL: in double quotes, a double quote inside doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal as SQL, for values hoistd produced itself: in single
/// quotes, a single quote inside doubled (with standard_conforming_strings,
/// on since PostgreSQL 9.1, a backslash is an ordinary character).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A name from the policy that must be a valid PostgreSQL identifier.
fn identifier(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER || name.contains('\0') {
        return Err(format!(
            "`{name}` is not a PostgreSQL name (1 to {MAX_IDENTIFIER} bytes, no NUL)"
        ));
    }
    Ok(())
}

fn valid_until(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string()
}

/// 24 random bytes, URL-safe base64: 32 characters that need no escaping
/// in a URI or a shell.
fn new_password() -> String {
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `text` as one word for a POSIX shell: as it is when nothing in it is
/// special, single-quoted otherwise.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@'));
    match plain {
        true => text.to_string(),
        false => format!("'{}'", text.replace('\'', "'\\''")),
    }
}

/// `text` from a URL as libpq reads it: `%XX` decoded, `+` left a plus.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_lowercase_safe_and_short() {
        assert_eq!(
            role_name("alice", "gr_0123456789ab"),
            "hoist_alice_0123456789ab"
        );
        assert_eq!(
            role_name("Jane.Doe@Example.com", "gr_0123456789ab"),
            "hoist_jane_doe_example_com_0123456789ab"
        );
        let long = role_name(&"x".repeat(200), "gr_0123456789ab");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("_0123456789ab"));
        assert!(ROLE_NAME.is_match(&long));
        let hostile = role_name("a\"; DROP ROLE postgres; --", "gr_0123456789ab");
        assert!(
            hostile
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{hostile}"
        );
    }

    /// One server written two ways is one system: its targets take turns
    /// in the reconciler, and a reload moving a target between the two
    /// names is no move.
    #[test]
    fn one_server_named_two_ways_is_one_system() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "secret").unwrap();
        let system = |url: &str| {
            let table: toml::Table = toml::from_str(&format!(
                "url = \"{url}\"\npassword_file = {password:?}\nsslmode = \"disable\""
            ))
            .unwrap();
            Postgres::configure("db", table)
                .unwrap_or_else(|err| panic!("{err}"))
                .system()
        };
        assert_eq!(
            system("postgres://hoist@localhost:5432/postgres"),
            system("postgres://hoist@127.0.0.1:5432/postgres")
        );
        assert_ne!(
            system("postgres://hoist@127.0.0.1:5432/postgres"),
            system("postgres://hoist@127.0.0.1:5433/postgres")
        );
    }

    /// A URL is read as libpq reads it: a `+` is a plus, a socket's
    /// directory is decoded; settings in its query, which hoistd would not
    /// follow, are refused.
    #[test]
    fn a_url_is_read_as_libpq_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "secret").unwrap();
        let configure = |url: &str| {
            let table: toml::Table =
                toml::from_str(&format!("url = \"{url}\"\npassword_file = {password:?}")).unwrap();
            Postgres::configure("db", table)
        };
        assert_eq!(percent_decode("svc+hoist%40corp"), "svc+hoist@corp");
        let target = configure("postgres://svc+hoist@%2Frun%2Fpostgresql/my+db").unwrap();
        assert!(target.cautions().is_empty(), "a socket is this machine");
        assert_eq!(target.system(), "postgres /run/postgresql:5432");
        let refused = configure("postgres://hoist@db.example.com/orders?sslmode=verify-full")
            .err()
            .unwrap();
        assert!(
            refused.contains("`sslmode`") && refused.contains("not read"),
            "{refused}"
        );
    }

    /// A label names its deployment whole: an issuer with ` at ` in it is
    /// never read as another issuer and a target, either way round.
    #[test]
    fn a_label_is_read_for_one_deployment() {
        let read = |comment: &'static str, issuer: &str| {
            let label = Label::read(comment, issuer).unwrap();
            (label.grant_id, label.owner, label.target)
        };
        let issuer = "Acme at Prod";
        assert_eq!(
            read("hoist grant gr_x of Acme at Prod", issuer),
            ("gr_x", Owner::Ours, None)
        );
        assert_eq!(
            read("hoist grant gr_x of Acme at Prod at db1", issuer),
            ("gr_x", Owner::Ours, Some("db1"))
        );
        assert_eq!(
            read(
                "hoist grant gr_x of Acme at Prod at db1",
                "https://hoist.example.com"
            ),
            ("gr_x", Owner::Theirs, None)
        );
        // Read by a deployment whose issuer begins theirs.
        assert_eq!(
            read("hoist grant gr_x of Acme at Prod at db1", "Acme"),
            ("gr_x", Owner::Theirs, None)
        );
        assert_eq!(
            read("hoist grant gr_x of Acme at db1", "Acme"),
            ("gr_x", Owner::Ours, Some("db1"))
        );
        assert_eq!(
            read("hoist grant gr_x", issuer),
            ("gr_x", Owner::Unnamed, None)
        );
        assert!(Label::read("someone's role", issuer).is_none());
    }

    #[test]
    fn quoting_doubles_the_quote_and_nothing_else() {
        assert_eq!(quote_ident("app_admin"), "\"app_admin\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "'a\\b'");
    }

    #[test]
    fn passwords_are_fresh_and_need_no_escaping() {
        let (a, b) = (new_password(), new_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
