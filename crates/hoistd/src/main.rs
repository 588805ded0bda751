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
use hoistd::http::serve::{Limits, StreamLimits};
use hoistd::http::tls::Tls;
use hoistd::store::{Location, Migrations, SqliteStore, StoreError};
use hoistd::target::ssh;
use hoistd::{Checkpointing, Options, Policy, Server};
use hoistd::{checkpoint, keys, slack};
use sha2::{Digest, Sha256};

/// The hoist access broker: policy, approvals, bounded grants, short-lived
/// credentials and a tamper-evident audit log, over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to standard error: `text` for people, or
    /// `json`, one object per line (with a line per request) for a log
    /// pipeline.
    #[arg(long, global = true, env = "HOISTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API. SIGHUP reloads the policy and the TLS
    /// certificate; SIGTERM or Ctrl-C stops.
    Serve(ServeArgs),
    /// Check everything `serve` would be given, without serving or writing
    /// anything: the policy, the store's location, the keys, the TLS files,
    /// the limits and the roles' access at their targets (errors, exit 1;
    /// a target that does not answer is a warning). Takes the same options
    /// and environment as `serve`.
    CheckConfig(ServeArgs),
    /// The SSH user CA: its public key, and the revocation list for hosts.
    Ssh {
        #[command(subcommand)]
        command: SshCommand,
    },
    /// Bring the database's schema up to date and exit, for a deploy
    /// pipeline to run before new instances start. `serve` does the same at
    /// start-up; migrations run under a lock, so instances starting
    /// together apply each once.
    Migrate {
        /// The store: a SQLite database file (or sqlite:PATH), or
        /// postgres://USER:PASSWORD@HOST:PORT/DB.
        #[arg(
            long,
            env = "HOISTD_DB",
            default_value = "hoistd.db",
            hide_env_values = true
        )]
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOISTD_LISTEN", default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// On SIGTERM or Ctrl-C, fail `/readyz` for this long while still
    /// serving, then stop: time for a load balancer to take the instance
    /// out of rotation (its health checks' interval times the failures it
    /// counts). A second signal stops at once.
    #[arg(long, env = "HOISTD_DRAIN_FOR", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_for: Duration,
    /// The store: a SQLite database file (or sqlite:PATH), created if
    /// missing; or postgres://USER:PASSWORD@HOST:PORT/DB, shared by
    /// several instances. Migrations are applied at start-up.
    // Parsed after clap, which would echo a refused value, password and all.
    #[arg(
        long,
        env = "HOISTD_DB",
        default_value = "hoistd.db",
        hide_env_values = true
    )]
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
    /// Sign SSH user certificates with this Ed25519 key (PKCS#8 PEM,
    /// mode 0600) instead of the CA key kept in the database; or the
    /// PEM itself in HOISTD_SSH_CA_KEY.
    #[arg(long, env = "HOISTD_SSH_CA_KEY_FILE")]
    ssh_ca_key: Option<PathBuf>,
    /// Take presses of hoist's Approve and Deny buttons from Slack at
    /// /v1/slack/actions, checked with the Slack app's signing secret in
    /// this file (mode 0600); or the secret itself in
    /// HOISTD_SLACK_SIGNING_SECRET. Without either, the route does not
    /// exist.
    #[arg(
        long = "slack-signing-secret-file",
        env = "HOISTD_SLACK_SIGNING_SECRET_FILE"
    )]
    slack_signing_secret: Option<PathBuf>,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

/// The Slack signing secret, when no file is given.
const SLACK_SIGNING_SECRET_ENV: &str = "HOISTD_SLACK_SIGNING_SECRET";

/// Slack's settings from the secret file or the environment; `None` if
/// neither is given.
fn slack_settings(file: Option<&std::path::Path>) -> anyhow::Result<Option<slack::Settings>> {
    match keys::secret_text(file, SLACK_SIGNING_SECRET_ENV)? {
        Some(secret) => Ok(Some(
            slack::Settings::new(&secret).map_err(anyhow::Error::msg)?,
        )),
        None => Ok(None),
    }
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
    /// A connection with no request in flight closes after this (an event
    /// stream is cut only when its client reads none of it for this long,
    /// 30 s at least).
    #[arg(long, env = "HOISTD_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Most event streams open at once; more are refused with 429. Streams
    /// hold their connection, so this must be below --max-connections
    /// [default: half of --max-connections]
    #[arg(long, env = "HOISTD_MAX_STREAMS", value_parser = clap::value_parser!(u32).range(1..))]
    max_streams: Option<u32>,
    /// Most event streams one identity has open at once.
    #[arg(long, env = "HOISTD_MAX_STREAMS_PER_IDENTITY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_streams_per_identity: u32,
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

    fn streams(&self) -> anyhow::Result<StreamLimits> {
        // Unset, half the connection cap: calls always have room.
        let max_streams = self
            .max_streams
            .unwrap_or_else(|| (self.max_connections / 2).max(1));
        if self.max_streams.is_some() && max_streams >= self.max_connections {
            anyhow::bail!(
                "--max-streams ({}) must be below --max-connections ({}): event streams hold \
                 their connections, and calls need the rest",
                max_streams,
                self.max_connections
            );
        }
        Ok(StreamLimits {
            total: max_streams as usize,
            per_identity: self.max_streams_per_identity as usize,
        })
    }
}

/// HTTPS, with a certificate from files.
#[derive(clap::Args)]
struct TlsArgs {
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain,
    /// the server's certificate first. SIGHUP reads it again.
    #[arg(long, env = "HOISTD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1); not
    /// readable by others (mode 0600 or 0640).
    #[arg(long, env = "HOISTD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback: only behind a
    /// proxy that terminates TLS, on a network no one else reaches, since
    /// tokens and credentials cross it unencrypted. Without it, plain HTTP
    /// is refused anywhere but loopback. Ignored with --tls-cert.
    #[arg(
        long,
        env = "HOISTD_PLAIN_HTTP_BEHIND_PROXY",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    plain_http_behind_proxy: bool,
}

impl TlsArgs {
    fn load(&self) -> anyhow::Result<Option<Arc<Tls>>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(Arc::new(Tls::load(cert, key)?))),
            _ => Ok(None),
        }
    }

    /// Refuses plain HTTP on `listen` unless it is a loopback address or
    /// the operator said a TLS proxy is in front.
    fn check_listen(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if self.tls_cert.is_none() && !listen.ip().is_loopback() && !self.plain_http_behind_proxy {
            anyhow::bail!(
                "plain HTTP on {listen}, which is not a loopback address, would carry tokens \
                 and credentials unencrypted: give --tls-cert and --tls-key, listen on \
                 127.0.0.1 or ::1, or, behind a proxy that terminates TLS, pass \
                 --plain-http-behind-proxy"
            );
        }
        Ok(())
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
const SSH_CA_KEY_ENV: &str = "HOISTD_SSH_CA_KEY";

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
enum SshCommand {
    /// Write the KRL (certificates of grants ended early) for sshd's
    /// RevokedKeys; the file is replaced whole, so sshd never reads half.
    Krl {
        /// The store: a SQLite database file, or sqlite:PATH.
        #[arg(
            long,
            env = "HOISTD_DB",
            default_value = "hoistd.db",
            hide_env_values = true
        )]
        db: String,
        /// The file to write, e.g. /etc/ssh/hoist.krl.
        #[arg(long)]
        out: PathBuf,
        /// A CA key to revoke under as well: the one the broker serves
        /// with (--ssh-ca-key), for a database `hoistd serve` has not
        /// recorded it in (every CA it recorded, and the database's own, are
        /// revoked under anyway).
        #[arg(long, env = "HOISTD_SSH_CA_KEY_FILE")]
        ssh_ca_key: Option<PathBuf>,
    },
    /// Print the CA's public key, the line for sshd's TrustedUserCAKeys:
    /// the broker's, or with --target, that ssh target's own.
    Ca {
        /// The store: a SQLite database file, or sqlite:PATH.
        #[arg(
            long,
            env = "HOISTD_DB",
            default_value = "hoistd.db",
            hide_env_values = true
        )]
        db: String,
        /// The CA key the broker serves with (--ssh-ca-key); without it,
        /// the CA `hoistd serve` last recorded starting with, or else the
        /// database's.
        #[arg(long, env = "HOISTD_SSH_CA_KEY_FILE")]
        ssh_ca_key: Option<PathBuf>,
        /// An ssh target with a CA of its own (`ca = "own"`): print that
        /// CA, which `hoistd serve` made when a policy first named it, as
        /// the database keeps it under that name, whatever the policy in
        /// force says now (the broker's key, if given, is not read).
        #[arg(long)]
        target: Option<String>,
    },
}

/// The SSH CAs whose certificates `hoistd ssh krl` revokes: every one
/// `hoistd serve` recorded signing with, the ssh targets' own, the key
/// given, and the one the store keeps. A serial is looked up under the CA that signed the
/// certificate, so a KRL that left out the CA in service would revoke
/// nothing, and say nothing of it; one more CA costs nothing.
fn ssh_authorities(
    store: &dyn hoistd::Store,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<ssh_key::PublicKey>> {
    let mut cas = {
        let tx = store.read()?;
        let mut cas = ssh::recorded_authorities(tx.as_ref())?;
        cas.extend(ssh::own_authorities(tx.as_ref())?);
        cas
    };
    if let Some(key) = keys::signing_key(key_file, SSH_CA_KEY_ENV)? {
        cas.push(ssh::Authority::from_key(&key).public());
    }
    if let Some(stored) = ssh::Authority::load(store)? {
        cas.push(stored.public());
    }
    if cas.is_empty() {
        anyhow::bail!(no_ssh_ca());
    }
    Ok(cas)
}

/// The SSH CA public key for the hosts' `TrustedUserCAKeys`: the key
/// given, or the one `hoistd serve` last recorded starting with, or the
/// one the store keeps. Never a new one.
fn ssh_ca_public_key(
    store: &dyn hoistd::Store,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    if let Some(key) = keys::signing_key(key_file, SSH_CA_KEY_ENV)? {
        return Ok(ssh::Authority::from_key(&key).public_key());
    }
    if let Some(last) = ssh::recorded_authorities(store.read()?.as_ref())?.first() {
        return Ok(last.to_openssh()?);
    }
    match ssh::Authority::load(store)? {
        Some(stored) => Ok(stored.public_key()),
        None => anyhow::bail!(no_ssh_ca()),
    }
}

fn no_ssh_ca() -> String {
    format!(
        "the database holds no SSH CA key and names none `hoistd serve` signed with: give the \
         key `hoistd serve` signs with (--ssh-ca-key FILE or {SSH_CA_KEY_ENV}), or start \
         `hoistd serve` once on this database"
    )
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// renamed over it: a reader sees the old file or the new one, never half.
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(err).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, and that it still holds every signed
    /// checkpoint; names the first bad entry (exit 2). Exit 3: intact, but
    /// the checkpoint file given holds no checkpoint.
    Verify {
        /// The store: a SQLite database file (or sqlite:PATH), or postgres://...
        #[arg(
            long,
            env = "HOISTD_DB",
            default_value = "hoistd.db",
            hide_env_values = true
        )]
        db: String,
        /// A checkpoint file (`audit checkpoint --out`, `serve --checkpoints`):
        /// without one, a log cut short or recomputed as a whole still verifies.
        #[arg(long, env = "HOISTD_CHECKPOINTS")]
        checkpoints: Option<PathBuf>,
        /// The key the checkpoints were signed with: its public key file
        /// (printed by `hoistd keygen`), or the private key file, or the
        /// private key's PEM in HOISTD_CHECKPOINT_KEY. Given again (or
        /// comma-separated) after the key was changed: each checkpoint is
        /// checked under the key that signed it.
        #[arg(long, env = "HOISTD_CHECKPOINT_KEY_FILE", value_delimiter = ',')]
        checkpoint_key: Vec<PathBuf>,
    },
    /// Sign the log's head and append the checkpoint to a file (and print it).
    Checkpoint {
        /// The store: a SQLite database file (or sqlite:PATH), or postgres://...
        #[arg(
            long,
            env = "HOISTD_DB",
            default_value = "hoistd.db",
            hide_env_values = true
        )]
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOISTD_LOG")
                .unwrap_or_else(|_| "hoistd=info,access_log=info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal only: a journal or a log
        // shipper would keep the escape sequences as text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        );
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // Fields at the top level, so a pipeline reads `status` rather than
        // `fields.status`.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
        Command::Serve(ServeArgs {
            listen,
            drain_for,
            db,
            policy,
            limits,
            signing_key,
            ssh_ca_key,
            slack_signing_secret,
            checkpoints,
            tls,
        }) => {
            tls.check_listen(listen)?;
            let loaded = Policy::load(&policy)?;
            let options = Options {
                limits: limits.limits()?,
                streams: limits.streams()?,
                signing_key: keys::signing_key(signing_key.as_deref(), SIGNING_KEY_ENV)?,
                ssh_ca_key: keys::signing_key(ssh_ca_key.as_deref(), SSH_CA_KEY_ENV)?,
                checkpoints: checkpoints.plan()?,
                tls: tls.load()?,
                slack: slack_settings(slack_signing_secret.as_deref())?,
            };
            raise_open_file_limit();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve(
                listen,
                Location::parse(&db)?,
                policy,
                loaded,
                options,
                drain_for,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => Ok(check_config(&args)),
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
                    let keys = if checkpoint_key.is_empty() {
                        keys::verifying_key(None, CHECKPOINT_KEY_ENV)?
                            .into_iter()
                            .collect()
                    } else {
                        let mut keys = Vec::new();
                        for path in &checkpoint_key {
                            keys.extend(keys::verifying_key(Some(path), CHECKPOINT_KEY_ENV)?);
                        }
                        keys
                    };
                    if keys.is_empty() {
                        anyhow::bail!(
                            "--checkpoints needs the key they were signed with: --checkpoint-key FILE, or the PEM in {CHECKPOINT_KEY_ENV}"
                        );
                    }
                    match checkpoint::read_verified(file, &keys) {
                        Ok(read) => {
                            for line in &read.cut {
                                eprintln!(
                                    "hoistd: {}:{line}: a checkpoint cut short (a write a crash interrupted?); it checks nothing",
                                    file.display()
                                );
                            }
                            read.checkpoints
                        }
                        Err(err @ checkpoint::CheckpointError::Forged { .. }) => {
                            println!("checkpoint refused: {err}");
                            return Ok(ExitCode::from(2));
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                None => Vec::new(),
            };
            match verify_log(&db, &signed)? {
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
                    } else if signed.is_empty() {
                        // Asked to check against checkpoints, and none to
                        // check: not a pass (`serve` writes one as it starts).
                        eprintln!(
                            "hoistd: the checkpoint file holds no checkpoint (never written, or emptied?): a log cut short, emptied or recomputed as a whole would also verify"
                        );
                        return Ok(ExitCode::from(3));
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
            let store = existing_store(&db, Migrations::Leave)?;
            let signed = checkpoint::take(store.as_ref(), &key)?;
            checkpoint::append(&out, &signed)?;
            println!("{}", signed.line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ssh {
            command:
                SshCommand::Krl {
                    db,
                    out,
                    ssh_ca_key,
                },
        } => {
            let store = existing_store(&db, Migrations::Apply)?;
            let cas = ssh_authorities(store.as_ref(), ssh_ca_key.as_deref())?;
            let now = hoistd::clock::now();
            let ids = {
                let tx = store.read()?;
                ssh::revoked_serials(tx.as_ref(), now)?
            };
            replace_file(&out, &ssh::krl(&cas, &ids, now))?;
            eprintln!(
                "hoistd: wrote {} ({} grants revoked early)",
                out.display(),
                ids.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ssh {
            command:
                SshCommand::Ca {
                    db,
                    ssh_ca_key,
                    target,
                },
        } => {
            let store = existing_store(&db, Migrations::Apply)?;
            let line = match target {
                Some(target) => match ssh::Authority::load_target(store.as_ref(), &target)? {
                    Some(ca) => ca.public_key(),
                    None => anyhow::bail!(
                        "the database keeps no CA of ssh target `{target}`: only a target \
                         with `ca = \"own\"` has one, made when `hoistd serve` first loads a \
                         policy naming it so; a target without it is signed by the broker's \
                         CA (`hoistd ssh ca` without --target)"
                    ),
                },
                None => ssh_ca_public_key(store.as_ref(), ssh_ca_key.as_deref())?,
            };
            println!("{line}");
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
            for caution in loaded.cautions() {
                println!("warning: {caution}");
            }
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

/// `hoistd check-config`: every check runs and says its verdict on a line
/// of its own, so a pipeline's log shows all that is wrong at once.
fn check_config(args: &ServeArgs) -> ExitCode {
    let mut errors = 0;
    let mut report = |what: &str, verdict: anyhow::Result<String>| match verdict {
        Ok(said) => println!("ok: {what}: {said}"),
        Err(err) => {
            errors += 1;
            println!("error: {what}: {err:#}");
        }
    };
    let policy = Policy::load(&args.policy);
    report(
        "policy",
        policy
            .as_ref()
            .map(|policy| {
                format!(
                    "{} ({} roles, digest {})",
                    args.policy.display(),
                    policy.roles().count(),
                    policy.digest()
                )
            })
            .map_err(|err| anyhow::anyhow!("{err:#}")),
    );
    for caution in policy.iter().flat_map(Policy::cautions) {
        println!("warning: {caution}");
    }
    report("store", check_store(&args.db));
    report(
        "limits",
        args.limits.limits().and_then(|limits| {
            let streams = args.limits.streams()?;
            Ok(format!(
                "at most {} connections, {} of them event streams",
                limits.max_connections, streams.total
            ))
        }),
    );
    report(
        "signing key",
        keys::signing_key(args.signing_key.as_deref(), SIGNING_KEY_ENV)
            .map(|key| match key {
                Some(key) => format!("key id {}", keys::key_id(&key.verifying_key())),
                None => "none given; credentials are signed with the store's key".into(),
            })
            .map_err(Into::into),
    );
    report(
        "SSH CA key",
        keys::signing_key(args.ssh_ca_key.as_deref(), SSH_CA_KEY_ENV)
            .map(|key| match key {
                Some(key) => format!("key id {}", keys::key_id(&key.verifying_key())),
                None => "none given; SSH certificates are signed with the store's key".into(),
            })
            .map_err(Into::into),
    );
    if let Some(target) = policy
        .as_ref()
        .ok()
        .and_then(|policy| ssh::brokers_target(&policy.targets))
    {
        report("SSH CA target", check_ssh_ca_target(args, target));
    }
    report(
        "Slack",
        slack_settings(args.slack_signing_secret.as_deref()).map(|slack| match slack {
            Some(_) => format!("button presses taken at {}", hoistd::http::slack::PATH),
            None => "off (no signing secret)".into(),
        }),
    );
    report(
        "checkpoints",
        args.checkpoints.plan().map(|plan| match plan {
            Some(plan) => format!(
                "key id {}, every {}",
                keys::key_id(&plan.key.verifying_key()),
                humantime::format_duration(plan.every)
            ),
            None => "off".into(),
        }),
    );
    report(
        "TLS",
        args.tls.check_listen(args.listen).and_then(|()| {
            args.tls.load().map(|tls| match tls {
                Some(tls) => format!("certificate {} and its key", tls.cert_path().display()),
                None if args.listen.ip().is_loopback() => {
                    format!("off (plain HTTP on loopback, {})", args.listen)
                }
                None => format!(
                    "off (plain HTTP on {}, behind a proxy that terminates TLS)",
                    args.listen
                ),
            })
        }),
    );
    // As at start: access a target refuses (a PostgreSQL role that does not
    // exist) is an error; a target that does not answer now is a warning,
    // logged by the check on standard error, since it may be back before
    // anyone asks for a grant there.
    if let Ok(policy) = &policy {
        let checked = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(policy.check_targets()).map_err(Into::into));
        report(
            "targets",
            checked.map(|()| "each role's access checked where its target answers".into()),
        );
    }
    if errors > 0 {
        println!(
            "{errors} problem{} found",
            if errors == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether the broker's SSH CA may sign for ssh target `target`, as
/// `serve` will check it at start (bound to the first target a policy gives
/// it, for good), read without writing anything.
fn check_ssh_ca_target(args: &ServeArgs, target: &str) -> anyhow::Result<String> {
    let unbound = || {
        Ok(format!(
            "`{target}`: the broker's CA is bound to it at start"
        ))
    };
    // A SQLite file is read on a read-only connection of its own; a server
    // database in a read-only transaction. Problems with either are the
    // store check's to report.
    let later = || Ok(format!("`{target}`: checked at start"));
    let Ok(db) = Location::parse(&args.db) else {
        return later();
    };
    let snapshot = match &db {
        Location::Sqlite(path) => {
            if !path.exists() {
                return unbound();
            }
            if SqliteStore::schema_of(path).is_err() {
                return later();
            }
            match SqliteStore::snapshot_of(path) {
                Ok(snapshot) => snapshot,
                Err(_) => return later(),
            }
        }
        Location::Postgres(_) => {
            let Ok(store) = db.open_with(Migrations::Leave) else {
                return later();
            };
            if store.ready().is_err() {
                return later();
            }
            let Ok(snapshot) = store.snapshot() else {
                return later();
            };
            // The snapshot borrows the store: read what is needed here.
            return bound_verdict(args, target, snapshot.as_ref());
        }
    };
    bound_verdict(args, target, snapshot.as_ref())
}

fn bound_verdict(
    args: &ServeArgs,
    target: &str,
    snapshot: &dyn hoistd::store::Snapshot,
) -> anyhow::Result<String> {
    let unbound = || {
        Ok(format!(
            "`{target}`: the broker's CA is bound to it at start"
        ))
    };
    let ca = match keys::signing_key(args.ssh_ca_key.as_deref(), SSH_CA_KEY_ENV) {
        Ok(Some(key)) => ssh::Authority::from_key(&key),
        // The key check reports it.
        Err(_) => return Ok(format!("`{target}`: checked at start")),
        Ok(None) => match ssh::Authority::load_from(snapshot)? {
            Some(ca) => ca,
            None => return unbound(),
        },
    };
    match ca.bound_target(snapshot)? {
        Some(bound) if bound != target => {
            anyhow::bail!(ssh::brokers_ca_bound_elsewhere(target, &bound))
        }
        Some(_) => Ok(format!("`{target}`, as the broker's CA is bound")),
        None => unbound(),
    }
}

/// Where the store is, checked without opening it: opening applies
/// migrations, which a check must not.
fn check_store(db: &str) -> anyhow::Result<String> {
    let db = Location::parse(db)?;
    match &db {
        Location::Sqlite(path) => {
            use nix::unistd::{AccessFlags, access};
            if path.is_dir() {
                anyhow::bail!("{} is a directory, not a database file", path.display());
            }
            // `serve` writes it (and its -wal and -shm beside it): a file or
            // directory this user cannot write, or a read-only mount (a
            // unit's ProtectSystem), fails there, so it fails here.
            let parent = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if path.exists() {
                for (place, what) in [(path.as_path(), "the database"), (parent, "its directory")] {
                    if let Err(err) = access(place, AccessFlags::W_OK) {
                        anyhow::bail!(
                            "{what} {} is not writable here ({}): serve writes it",
                            place.display(),
                            err.desc()
                        );
                    }
                }
                // Read only: the schema version, as /readyz reads it.
                return match SqliteStore::schema_of(path) {
                    Ok(()) => Ok(format!("{db} (schema up to date)")),
                    Err(StoreError::MigrationsPending { found, known }) => Ok(format!(
                        "{db} (schema at version {found} of {known}: migrated at start, or by `hoistd migrate`)"
                    )),
                    Err(err) => Err(anyhow::Error::new(err).context(format!("cannot use {db}"))),
                };
            }
            if !parent.is_dir() {
                anyhow::bail!(
                    "{} does not exist, so the database {} cannot be created",
                    parent.display(),
                    path.display()
                );
            }
            if let Err(err) = access(parent, AccessFlags::W_OK) {
                anyhow::bail!(
                    "{} is not writable here ({}), so the database {} cannot be created",
                    parent.display(),
                    err.desc(),
                    path.display()
                );
            }
            Ok(format!("{db} (created at the first start)"))
        }
        Location::Postgres(_) => {
            // Connected and read, never migrated: nothing is written here.
            let store = db
                .open_with(Migrations::Leave)
                .with_context(|| format!("cannot open {db}"))?;
            match store.ready() {
                Ok(()) => Ok(format!("{db} (schema up to date)")),
                Err(StoreError::MigrationsPending { found, known }) => Ok(format!(
                    "{db} (schema at version {found} of {known}: migrated at start, or by `hoistd migrate`)"
                )),
                Err(err) => Err(anyhow::Error::new(err).context(format!("cannot use {db}"))),
            }
        }
    }
}

/// Opens a store that must already exist: reading one must not create an
/// empty database and call it intact.
/// The store at `db`, which must exist. The audit commands read it as it
/// is (`Leave`: an older copy kept as evidence is not migrated, on either
/// backend); the others bring a SQLite file up to date, as `serve` would.
/// The audit log at `db` verified against `signed`. A SQLite file is read
/// on a read-only connection of its own: a copy kept as evidence is not
/// migrated, switched to write-ahead logging, made owner-only or written
/// to, and one on a read-only mount verifies too.
fn verify_log(db: &str, signed: &[checkpoint::Checkpoint]) -> anyhow::Result<Verdict> {
    let Location::Sqlite(path) = Location::parse(db)? else {
        let store = existing_store(db, Migrations::Leave)?;
        return Ok(audit::verify_against(store.as_ref(), signed)?);
    };
    if !path.exists() {
        anyhow::bail!("no database at {}", path.display())
    }
    match SqliteStore::schema_of(&path) {
        Err(StoreError::MigrationsPending { found: 0, .. }) => {
            anyhow::bail!("no hoistd database at {}", path.display())
        }
        Err(err @ StoreError::Unavailable(_)) => {
            return Err(anyhow::Error::new(err).context(format!("cannot open {}", path.display())));
        }
        // An older or newer schema's log is verified as it is.
        _ => {}
    }
    let snapshot = SqliteStore::snapshot_of(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(audit::verify_snapshot(snapshot.as_ref(), signed)?)
}

fn existing_store(db: &str, sqlite: Migrations) -> anyhow::Result<Arc<dyn hoistd::Store>> {
    let db = Location::parse(db)?;
    if let Location::Sqlite(path) = &db
        && !path.exists()
    {
        anyhow::bail!("no database at {}", path.display())
    }
    // A server database is read as it is (its instances migrate it), and a
    // database hoistd never migrated is not an empty log.
    let migrations = match &db {
        Location::Sqlite(_) => sqlite,
        Location::Postgres(_) => Migrations::Leave,
    };
    let store = db
        .open_with(migrations)
        .with_context(|| format!("cannot open {db}"))?;
    match store.ready() {
        Err(StoreError::MigrationsPending { found: 0, .. }) => {
            anyhow::bail!("no hoistd database at {db}")
        }
        Err(err @ StoreError::Unavailable(_)) => {
            Err(anyhow::Error::new(err).context(format!("cannot open {db}")))
        }
        _ => Ok(store),
    }
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

/// A stop asked for while the database was being opened: the open runs
/// on a thread of its own, which the runtime would wait for.
fn stop_while_opening() -> ! {
    tracing::warn!("stopped while opening the database");
    std::process::exit(0)
}

/// An exclusive lock on `<database>.lock` beside the SQLite file at
/// `path` (beside the file a link leads to), or why not: refused when
/// another process holds it.
fn only_server(path: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut name = real.clone().into_os_string();
    name.push(".lock");
    let lock = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .with_context(|| format!("cannot open {}", lock.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, err)| match err {
            nix::errno::Errno::EWOULDBLOCK => anyhow::anyhow!(
                "another hoistd serves {} (it holds {}): a SQLite database is for one process; \
                 several instances need PostgreSQL",
                real.display(),
                lock.display()
            ),
            err => anyhow::anyhow!("cannot lock {}: {err}", lock.display()),
        },
    )
}

async fn serve(
    listen: SocketAddr,
    db: Location,
    policy_path: PathBuf,
    policy: Policy,
    options: Options,
    drain_for: Duration,
) -> anyhow::Result<()> {
    // Taken over first: starting may take a while (the database, its
    // migration lock, each target's check), and until then SIGHUP would
    // end the process as a clean exit, which a service manager does not
    // restart. A hangup meanwhile reloads once serving; a stop ends the
    // start. Made once, not per turn of the loop below, so a signal that
    // comes during a reload is heard when the reload ends.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // A SQLite file is one process's: a second `serve` on it (a restart
    // begun before the last one ended, two services on one file) would
    // lead too, and nothing would fence the two. Held until this returns.
    let _only_server = match &db {
        Location::Sqlite(path) => Some(only_server(path)?),
        Location::Postgres(_) => None,
    };
    // Opening may wait on the database and its migration lock: a stop
    // meanwhile ends the process there and then (the open's connection
    // goes with it, and an unfinished migration rolls back).
    let opening = tokio::task::spawn_blocking({
        let db = db.clone();
        move || db.open()
    });
    let store = tokio::select! {
        opened = opening => opened?.with_context(|| format!("cannot open database {db}"))?,
        _ = terminate.recv() => stop_while_opening(),
        _ = interrupt.recv() => stop_while_opening(),
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = tokio::select! {
        server = Server::start_with(listener, store, policy, options) => Arc::new(server?),
        _ = terminate.recv() => {
            tracing::warn!("stopped while starting");
            return Ok(());
        }
        _ = interrupt.recv() => {
            tracing::warn!("stopped while starting");
            return Ok(());
        }
    };
    tracing::info!(addr = %server.addr, scheme, db = %db, policy = %policy_path.display(), policy_digest = server.broker.policy().digest(), "hoistd serving");

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                // The certificate first: reading two files never waits,
                // while checking the policy's targets may (one that does not
                // answer, up to its timeouts).
                match server.reload_tls() {
                    Ok(true) => tracing::info!("TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(err) => tracing::error!(error = %err, "TLS certificate not reloaded; the previous one stays in use"),
                }
                // A stop asked for meanwhile is not kept waiting for it.
                tokio::select! {
                    reloaded = server.reload(&policy_path) => match reloaded {
                        Ok(revoked) => tracing::info!(revoked, policy_digest = server.broker.policy().digest(), "policy reloaded"),
                        Err(err) => tracing::error!(error = %format!("{err:#}"), "policy not reloaded; the previous policy stays in force"),
                    },
                    _ = terminate.recv() => {
                        tracing::warn!("stopping during a policy reload, which may not have taken effect");
                        break;
                    }
                    _ = interrupt.recv() => {
                        tracing::warn!("stopping during a policy reload, which may not have taken effect");
                        break;
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    if !drain_for.is_zero() {
        server.drain();
        tracing::info!(
            drain_for = %humantime::format_duration(drain_for),
            "draining: /readyz fails, calls are served until the drain ends"
        );
        tokio::select! {
            () = tokio::time::sleep(drain_for) => {}
            _ = terminate.recv() => tracing::warn!("stopping now, without draining"),
            _ = interrupt.recv() => tracing::warn!("stopping now, without draining"),
        }
    }
    tracing::info!("stopping");
    match Arc::try_unwrap(server) {
        // A second signal while the calls in flight drain ends the wait.
        Ok(server) => tokio::select! {
            () = server.stop() => {}
            _ = terminate.recv() => tracing::warn!("stopping now, without waiting for calls in flight"),
            _ = interrupt.recv() => tracing::warn!("stopping now, without waiting for calls in flight"),
        },
        Err(_) => tracing::warn!("server still referenced; exiting without waiting"),
    }
    Ok(())
}
