//! `hoist exec ROLE -- CMD`: access that lasts exactly as long as the task.
//! Reuses an active grant or requests one and waits; runs CMD with the
//! credential in its environment; forwards signals; revokes the grant it
//! created when CMD ends, however it ends; exits with CMD's status.

use std::process::ExitStatus;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use super::request::{file, find_grant, wait_for_final};
use super::{Ended, duration};
use crate::backend::Backend;

/// Environment variables CMD receives.
pub const ENV_CREDENTIAL: &str = "HOIST_CREDENTIAL";
pub const ENV_CREDENTIAL_EXPIRES_AT: &str = "HOIST_CREDENTIAL_EXPIRES_AT";
pub const ENV_ROLE: &str = "HOIST_ROLE";
pub const ENV_GRANT_ID: &str = "HOIST_GRANT_ID";
pub const ENV_GRANT_EXPIRES_AT: &str = "HOIST_GRANT_EXPIRES_AT";

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The role CMD needs.
    pub role: String,
    /// Why (used if a new request must be filed).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub ticket: Option<String>,
    #[arg(long)]
    pub incident: Option<String>,
    /// How long to ask for, e.g. 30m (default: the role's default).
    #[arg(long)]
    pub duration: Option<String>,
    /// Give up waiting for approval after this long.
    #[arg(long)]
    pub timeout: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What CMD's status means as our exit code: its code, or 128 + the signal.
fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        _ => 1,
    }
}

pub async fn exec(backend: &dyn Backend, args: &ExecArgs) -> anyhow::Result<u8> {
    let (grant, created) = match find_grant(backend, &args.role).await {
        Ok(grant) => (grant, false),
        Err(_) => {
            let body = hoist_api::CreateRequest {
                role: args.role.clone(),
                justification: args.reason.clone(),
                ticket: args.ticket.clone(),
                incident: args.incident.clone(),
                duration_secs: args.duration.as_deref().map(duration).transpose()?,
                starts_at: None,
                break_glass: false,
            };
            let timeout = args
                .timeout
                .as_deref()
                .map(duration)
                .transpose()?
                .map(Duration::from_secs);
            let filed = file(backend, &body).await?;
            let request = wait_for_final(backend, filed, timeout).await?;
            if request.state != hoist_api::RequestState::Active {
                let reason = request.reason.clone().unwrap_or_default();
                return Err(match request.state {
                    hoist_api::RequestState::Denied => {
                        Ended::Denied(format!("{} was denied: {reason}", request.id))
                    }
                    _ => {
                        Ended::TimedOut(format!("{} ended {}: {reason}", request.id, request.state))
                    }
                }
                .into());
            }
            let id = request.grant_id.clone().unwrap_or_default();
            (find_grant(backend, &id).await?, true)
        }
    };
    super::remember_grants(backend).await;
    let outcome = run(backend, &grant, &args.command).await;
    if created {
        revoke_after(backend, &grant.id).await;
        super::remember_grants(backend).await;
    }
    outcome
}

async fn run(
    backend: &dyn Backend,
    grant: &hoist_api::Grant,
    command: &[String],
) -> anyhow::Result<u8> {
    let credential = backend.credential(&grant.id).await?;
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| Ended::Usage("no command after `--`".into()))?;
    // Listen before CMD exists: a signal that arrives between the spawn and
    // the first wait must be forwarded, not end hoist with its default action.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .env(ENV_CREDENTIAL, &credential.token)
        .env(
            ENV_CREDENTIAL_EXPIRES_AT,
            credential.expires_at.to_rfc3339(),
        )
        .env(ENV_ROLE, &grant.role)
        .env(ENV_GRANT_ID, &grant.id)
        .env(ENV_GRANT_EXPIRES_AT, grant.expires_at.to_rfc3339())
        .spawn()
        .map_err(|err| anyhow::anyhow!("cannot run `{program}`: {err}"))?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    // At a terminal, Ctrl-C and Ctrl-\ already reach CMD (same process group):
    // forwarding them as well would deliver them twice.
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let forward = |signal: Signal| {
        if let Some(pid) = pid {
            let _ = kill(pid, signal);
        }
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = interrupt.recv() => if !interactive { forward(Signal::SIGINT) },
            _ = quit.recv() => if !interactive { forward(Signal::SIGQUIT) },
            _ = terminate.recv() => forward(Signal::SIGTERM),
            _ = hangup.recv() => forward(Signal::SIGHUP),
        }
    };
    Ok(code_of(status))
}

/// Revokes the grant `exec` created, retrying a little if the broker is
/// briefly away; says so loudly if it could not.
async fn revoke_after(backend: &dyn Backend, grant_id: &str) {
    for attempt in 0..5u64 {
        match backend
            .revoke(grant_id, Some("hoist exec: the command finished".into()))
            .await
        {
            Ok(_) => return,
            Err(err) if err.is_transient() && attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
            }
            Err(err) => {
                eprintln!(
                    "hoist: could not revoke {grant_id} ({err}); it ends at its expiry. Revoke it with `hoist revoke {grant_id}`."
                );
                return;
            }
        }
    }
}
