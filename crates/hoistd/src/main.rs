//! The `hoistd` command: serve the broker, check its audit log, check a policy.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hoistd::audit::{self, Verdict};
use hoistd::http::serve::Limits;
use hoistd::store::{Location, Migrations, StoreError};
use hoistd::{Checkpointing, Options, Policy, Server};
use hoistd::{checkpoint, keys};
use sha2::{Digest, Sha256};

/// The hoist access broker: policy, approvals, bounded grants, short-lived
/// credentials and a tamper-evident audit log, over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API. SIGHUP reloads the policy; SIGTERM or Ctrl-C stops.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "HOISTD_LISTEN", default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// The store: a SQLite database file (or sqlite:PATH), created if
        /// missing; or postgres://USER:PASSWORD@HOST:PORT/DB, shared by
        /// several instances. Migrations are applied at start-up.
        // Parsed after clap, which would echo a refused value, password and all.
        #[arg(long, env = "HOISTD_DB", default_value = "hoistd.db")]
        db: String,
        /// Policy file (TOML); see assets/policy.example.toml.
        #[arg(long, env = "HOISTD_POLICY", default_value = "policy.toml")]
        policy: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
        /// Sign credentials with this Ed25519 key (PKCS#8 PEM, mode 0600)
        /// instead of one kept in the database; or the PEM itself in
        /// HOISTD_SIGNING_KEY.
        #[arg(long, env = "HOISTD_SIGNING_KEY_FILE")]
        signing_key: Option<PathBuf>,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// Bring the database's schema up to date and exit, for a deploy
    /// pipeline to run before new instances start. `serve` does the same at
    /// start-up; migrations run under a lock, so instances starting
    /// together apply each once.
    Migrate {
        /// The store: a SQLite database file (or sqlite:PATH), or
        /// postgres://USER:PASSWORD@HOST:PORT/DB.
        #[arg(long, env = "HOISTD_DB", default_value = "hoistd.db")]
        db: String,
    },
    /// Write a new Ed25519 key (PKCS#8 PEM, mode 0600) for --checkpoint-key or
    /// --signing-key, and print its public key.
    Keygen {
        /// The key file to create; an existing file is never replaced.
        #[arg(long)]
        out: PathBuf,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check a policy file and exit: 0 if valid, 1 with file:line: reason if not. Each
    /// role's access is checked against its target where the target answers.
    CheckPolicy { policy: PathBuf },
    /// Read a token from standard input and print the token_sha256 line for the policy.
    HashToken,
    /// Print the OpenAPI document.
    Openapi,
}

/// How patient the broker is with clients, and how many it serves at once.
#[derive(clap::Args)]
struct LimitArgs {
    /// Most connections open at once; when all are taken, a new one closes
    /// the oldest connection with no request in flight.
    #[arg(long, env = "HOISTD_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// A connection must deliver its request headers within this.
    #[arg(long, env = "HOISTD_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// A request body must arrive whole within this.
    #[arg(long, env = "HOISTD_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// A connection with no request in flight closes after this (event
    /// streams are never cut).
    #[arg(long, env = "HOISTD_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        for (flag, value) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                anyhow::bail!("{flag} must be longer than zero");
            }
        }
        Ok(Limits {
            max_connections: self.max_connections as usize,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
        })
    }
}

/// Signed audit checkpoints while serving.
#[derive(clap::Args)]
struct CheckpointArgs {
    /// Append a signed checkpoint of the audit log here at start, every
    /// --checkpoint-every while the log grows, and at stop (each is logged
    /// too). Keep it, or a copy, away from the database.
    #[arg(long, env = "HOISTD_CHECKPOINTS")]
    checkpoints: Option<PathBuf>,
    /// The checkpoint key: an Ed25519 key file (PKCS#8 PEM, mode 0600), or
    /// the PEM itself in HOISTD_CHECKPOINT_KEY. Never kept in the database.
    #[arg(long, env = "HOISTD_CHECKPOINT_KEY_FILE")]
    checkpoint_key: Option<PathBuf>,
    /// How often to checkpoint while the log grows.
    #[arg(long, env = "HOISTD_CHECKPOINT_EVERY", default_value = "5m", value_parser = humantime::parse_duration)]
    checkpoint_every: Duration,
}

/// Environment variables holding a key's PEM text, when no file is given.
const CHECKPOINT_KEY_ENV: &str = "HOISTD_CHECKPOINT_KEY";
const SIGNING_KEY_ENV: &str = "HOISTD_SIGNING_KEY";

impl CheckpointArgs {
    fn plan(&self) -> anyhow::Result<Option<Checkpointing>> {
        let key = keys::signing_key(self.checkpoint_key.as_deref(), CHECKPOINT_KEY_ENV)?;
        match (key, &self.checkpoints) {
            (None, None) => Ok(None),
            (None, Some(_)) => anyhow::bail!(
                "--checkpoints needs the checkpoint key: --checkpoint-key FILE, or the PEM in {CHECKPOINT_KEY_ENV}"
            ),
            (Some(key), file) => {
                if self.checkpoint_every.is_zero() {
                    anyhow::bail!("--checkpoint-every must be longer than zero");
                }
                Ok(Some(Checkpointing {
                    key,
                    file: file.clone(),
                    every: self.checkpoint_every,
                }))
            }
        }
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, and that it still holds every signed
    /// checkpoint; names the first bad entry (exit 2).
    Verify {
        /// The store: a SQLite database file (or sqlite:PATH), or postgres://...
        #[arg(long, env = "HOISTD_DB", default_value = "hoistd.db")]
        db: String,
        /// A checkpoint file (`audit checkpoint --out`, `serve --checkpoints`):
        /// without one, a log cut short or recomputed as a whole still verifies.
        #[arg(long, env = "HOISTD_CHECKPOINTS")]
        checkpoints: Option<PathBuf>,
        /// The key the checkpoints were signed with: its public key file
        /// (printed by `hoistd keygen`), or the private key file, or the
        /// private key's PEM in HOISTD_CHECKPOINT_KEY.
        #[arg(long, env = "HOISTD_CHECKPOINT_KEY_FILE")]
        checkpoint_key: Option<PathBuf>,
    },
    /// Sign the log's head and append the checkpoint to a file (and print it).
    Checkpoint {
        /// The store: a SQLite database file (or sqlite:PATH), or postgres://...
        #[arg(long, env = "HOISTD_DB", default_value = "hoistd.db")]
        db: String,
        /// The checkpoint file to append to (created if missing).
        #[arg(long, env = "HOISTD_CHECKPOINTS")]
        out: PathBuf,
        /// The checkpoint key file (PKCS#8 PEM, mode 0600), or the PEM in
        /// HOISTD_CHECKPOINT_KEY.
        #[arg(long, env = "HOISTD_CHECKPOINT_KEY_FILE")]
        checkpoint_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOISTD_LOG")
                .unwrap_or_else(|_| "hoistd=info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hoistd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            db,
            policy,
            limits,
            signing_key,
            checkpoints,
        } => {
            let loaded = Policy::load(&policy)?;
            let options = Options {
                limits: limits.limits()?,
                signing_key: keys::signing_key(signing_key.as_deref(), SIGNING_KEY_ENV)?,
                checkpoints: checkpoints.plan()?,
            };
            raise_open_file_limit();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve(
                listen,
                Location::parse(&db)?,
                policy,
                loaded,
                options,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    db,
                    checkpoints,
                    checkpoint_key,
                },
        } => {
            let signed = match &checkpoints {
                Some(file) => {
                    let key = keys::verifying_key(checkpoint_key.as_deref(), CHECKPOINT_KEY_ENV)?
                        .with_context(|| format!("--checkpoints needs the key they were signed with: --checkpoint-key FILE, or the PEM in {CHECKPOINT_KEY_ENV}"))?;
                    match checkpoint::read_verified(file, &key) {
                        Ok(signed) => signed,
                        Err(err @ checkpoint::CheckpointError::Forged { .. }) => {
                            println!("checkpoint refused: {err}");
                            return Ok(ExitCode::from(2));
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                None => Vec::new(),
            };
            let store = existing_store(&db)?;
            match audit::verify_against(store.as_ref(), &signed)? {
                Verdict::Intact { entries } => {
                    match signed.iter().max_by_key(|checkpoint| checkpoint.seq) {
                        Some(latest) => println!(
                            "audit log intact: {entries} entries, holding all {} signed checkpoints (the latest at entry {}, {})",
                            signed.len(),
                            latest.seq,
                            latest
                                .at
                                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                        ),
                        None => println!("audit log intact: {entries} entries"),
                    }
                    if checkpoints.is_none() {
                        eprintln!(
                            "hoistd: no --checkpoints given: a log cut short, emptied or recomputed as a whole would also verify"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Verdict::Broken { seq, reason } => {
                    println!("audit log broken at entry {seq}: {reason}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Audit {
            command:
                AuditCommand::Checkpoint {
                    db,
                    out,
                    checkpoint_key,
                },
        } => {
            let key = keys::signing_key(checkpoint_key.as_deref(), CHECKPOINT_KEY_ENV)?
                .with_context(|| format!("no checkpoint key: give --checkpoint-key FILE, or the PEM in {CHECKPOINT_KEY_ENV}"))?;
            let store = existing_store(&db)?;
            let signed = checkpoint::take(store.as_ref(), &key)?;
            checkpoint::append(&out, &signed)?;
            println!("{}", signed.line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { db } => {
            let db = Location::parse(&db)?;
            let store = db.open().with_context(|| format!("cannot migrate {db}"))?;
            store.ready()?;
            println!("{db}: schema up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => {
            let key = keys::generate(&out)?;
            print!("{}", keys::public_pem(&key.verifying_key()));
            eprintln!(
                "hoistd: wrote {} (mode 0600; key id {}); the public key above verifies what it signs",
                out.display(),
                keys::key_id(&key.verifying_key())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckPolicy { policy } => {
            let loaded = Policy::load(&policy)?;
            tokio::runtime::Runtime::new()?.block_on(loaded.check_targets())?;
            println!(
                "{}: ok ({} roles)",
                policy.display(),
                loaded.roles().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            let token = token.trim_end_matches(['\n', '\r']);
            if token.is_empty() {
                anyhow::bail!("no token on standard input");
            }
            println!(
                "token_sha256 = \"{}\"",
                hex::encode(Sha256::digest(token.as_bytes()))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&hoistd::http::openapi())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens a store that must already exist: reading one must not create an
/// empty database and call it intact.
fn existing_store(db: &str) -> anyhow::Result<Arc<dyn hoistd::Store>> {
    let db = Location::parse(db)?;
    match &db {
        Location::Sqlite(path) if !path.exists() => {
            anyhow::bail!("no database at {}", path.display())
        }
        Location::Sqlite(_) => {}
        Location::Postgres(_) => {
            // Read as it is: a reader applies no migration, and a database
            // hoistd never migrated is not an empty log.
            let store = db
                .open_with(Migrations::Leave)
                .with_context(|| format!("cannot open {db}"))?;
            return match store.ready() {
                Err(StoreError::MigrationsPending { found: 0, .. }) => {
                    anyhow::bail!("no hoistd database at {db}")
                }
                Err(err @ StoreError::Unavailable(_)) => {
                    Err(anyhow::Error::new(err).context(format!("cannot open {db}")))
                }
                _ => Ok(store),
            };
        }
    }
    db.open().with_context(|| format!("cannot open {db}"))
}

/// Each connection is a file descriptor: the soft limit (often 1,024) would
/// stop accepts below the connection cap, so it is raised to the hard one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %err, soft, hard, "cannot raise the open-file limit");
    }
}

async fn serve(
    listen: SocketAddr,
    db: Location,
    policy_path: PathBuf,
    policy: Policy,
    options: Options,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let store = db
        .open()
        .with_context(|| format!("cannot open database {db}"))?;
    let server = Arc::new(Server::start_with(listener, store, policy, options).await?);
    tracing::info!(addr = %server.addr, db = %db, policy = %policy_path.display(), "hoistd serving");

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => match server.reload(&policy_path).await {
                Ok(revoked) => tracing::info!(revoked, "policy reloaded"),
                Err(err) => tracing::error!(error = %format!("{err:#}"), "policy not reloaded; the previous policy stays in force"),
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping");
    match Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => tracing::warn!("server still referenced; exiting without waiting"),
    }
    Ok(())
}
