//! The `hoistd` command: serve the broker, check its audit log, check a policy.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hoistd::audit::{self, Verdict};
use hoistd::store::Location;
use hoistd::{Policy, Server};
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
        /// The store: a SQLite database file (or sqlite:PATH), created if missing.
        // Parsed after clap, which would echo a refused value, password and all.
        #[arg(long, env = "HOISTD_DB", default_value = "hoistd.db")]
        db: String,
        /// Policy file (TOML); see assets/policy.example.toml.
        #[arg(long, env = "HOISTD_POLICY", default_value = "policy.toml")]
        policy: PathBuf,
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names the first bad entry.
    Verify {
        /// The store: a SQLite database file, or sqlite:PATH.
        #[arg(long, env = "HOISTD_DB", default_value = "hoistd.db")]
        db: String,
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
        Command::Serve { listen, db, policy } => {
            let loaded = Policy::load(&policy)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve(listen, Location::parse(&db)?, policy, loaded))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { db },
        } => {
            let db = Location::parse(&db)?;
            // Verifying must not create an empty database and call it intact.
            match &db {
                Location::Sqlite(path) if !path.exists() => {
                    anyhow::bail!("no database at {}", path.display())
                }
                Location::Sqlite(_) => {}
            }
            let store = db.open().with_context(|| format!("cannot open {db}"))?;
            match audit::verify(store.as_ref())? {
                Verdict::Intact { entries } => {
                    println!("audit log intact: {entries} entries");
                    Ok(ExitCode::SUCCESS)
                }
                Verdict::Broken { seq, reason } => {
                    println!("audit log broken at entry {seq}: {reason}");
                    Ok(ExitCode::from(2))
                }
            }
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

async fn serve(
    listen: SocketAddr,
    db: Location,
    policy_path: PathBuf,
    policy: Policy,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let store = db
        .open()
        .with_context(|| format!("cannot open database {db}"))?;
    let server = Arc::new(Server::start(listener, store, policy).await?);
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
