//! `hoist exec ROLE -- CMD`: access that lasts exactly as long as the task.
//! Reuses an active grant or requests one and waits; withdraws that request
//! if it gives up waiting (time out, a signal, a failure), so no approval
//! can later grant access nothing uses; waits for the access at the role's
//! target to be live; runs CMD with the credential, the access's variables
//! (PG* for PostgreSQL) and a command line that prints a fresh credential
//! for as long as the grant lives;
//! forwards signals; revokes the grant it created when CMD ends, however it
//! ends, unless another exec here still runs a command with it (then the
//! last of them does: see `uses`); exits with CMD's status.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use clap::Args;
use hoist_api::{AccessRequest, RequestState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::request::{
    active_grant_patiently, file_keyed, grant_of_role, maybe_filed, wait_for_final,
};
use super::revoking::{self, Failed, Revoked};
use super::signals::{Signals, status_of};
use super::{Ended, duration, uses};
use crate::backend::Backend;
use crate::config::Target;
use crate::text::shell_word;

/// Environment variables CMD receives.
pub const ENV_CREDENTIAL: &str = "HOIST_CREDENTIAL";
pub const ENV_CREDENTIAL_EXPIRES_AT: &str = "HOIST_CREDENTIAL_EXPIRES_AT";
/// A command line (for `sh -c` or `eval`) that prints a fresh credential
/// for the grant, signed in with the same stored session.
pub const ENV_CREDENTIAL_COMMAND: &str = "HOIST_CREDENTIAL_COMMAND";
pub const ENV_ROLE: &str = "HOIST_ROLE";
pub const ENV_GRANT_ID: &str = "HOIST_GRANT_ID";
pub const ENV_GRANT_EXPIRES_AT: &str = "HOIST_GRANT_EXPIRES_AT";

/// How to ask for a grant when there is none to reuse: `hoist exec` and
/// `hoist ssh` take the same flags.
#[derive(Debug, Clone, Default, Args)]
pub struct Asking {
    /// Why (used if a new request must be filed; a workload's request says
    /// who it is instead).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub ticket: Option<String>,
    #[arg(long)]
    pub incident: Option<String>,
    /// How long to ask for, e.g. 30m (default: the role's default).
    #[arg(long)]
    pub duration: Option<String>,
    /// Give up after this long, from the start: waiting for approval (the
    /// request is then cancelled) and for the access at the target together.
    #[arg(long)]
    pub timeout: Option<String>,
}

impl Asking {
    /// `--timeout`, read.
    pub(super) fn timeout(&self) -> Result<Option<Duration>, Ended> {
        super::timeout(self.timeout.as_deref())
    }

    /// When `--timeout` ends, counted from now: one deadline for every wait.
    pub(super) fn deadline(&self) -> Result<Option<Instant>, Ended> {
        Ok(self.timeout()?.map(|wait| Instant::now() + wait))
    }
}

impl Asking {
    /// A grant held already, about to be used as it is: refused when
    /// `--duration` asks for longer than it has left, since the command
    /// would be cut off at its end; otherwise when it ends, and which of
    /// these flags go unused (they are for a new request), for the line that
    /// says it is used.
    pub(super) fn reusing(&self, grant: &hoist_api::Grant) -> Result<String, Ended> {
        let now = chrono::Utc::now();
        let left = grant.expires_at - now;
        let ends = format!(
            "ends {} ({})",
            crate::text::local_time(grant.expires_at),
            crate::text::ago(grant.expires_at, now)
        );
        if let Some(asked) = self.duration.as_deref().map(duration).transpose()?
            && left < chrono::TimeDelta::seconds(i64::try_from(asked).unwrap_or(i64::MAX))
        {
            return Err(Ended::Usage(format!(
                "{} ({}) is active already and {ends}, sooner than --duration {} asks; nothing \
                 was asked for or run. Extend it (e in the TUI) or revoke it (hoist revoke {}) \
                 first, or leave out --duration to use it as it is",
                grant.id,
                grant.role,
                crate::text::format_duration(asked),
                grant.id
            )));
        }
        let unused: Vec<&str> = [
            ("--reason", &self.reason),
            ("--ticket", &self.ticket),
            ("--incident", &self.incident),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.as_ref().map(|_| flag))
        .collect();
        Ok(match unused.as_slice() {
            [] => ends,
            flags => format!(
                "{ends}; {} unused, being for a new request",
                flags.join(", ")
            ),
        })
    }
}

/// What is left of a wait until `deadline`.
pub(super) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|at| at.saturating_duration_since(Instant::now()))
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The role CMD needs.
    pub role: String,
    #[command(flatten)]
    pub asking: Asking,
    /// Run as a workload: exchange the identity token in this file (a CI
    /// job's ID token, a Kubernetes service-account token) for the task's
    /// credential instead of using a person's session. `HOIST_WORKLOAD_TOKEN`
    /// may hold the token instead.
    #[arg(long, value_name = "PATH")]
    pub workload_token_file: Option<std::path::PathBuf>,
    /// Run as a workload with an ID token for this audience from the CI
    /// system's token service (ACTIONS_ID_TOKEN_REQUEST_URL and
    /// ACTIONS_ID_TOKEN_REQUEST_TOKEN).
    #[arg(long, value_name = "AUDIENCE", conflicts_with = "workload_token_file")]
    pub workload_audience: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What CMD's status means as our exit code: its code, or 128 + the signal.
/// A CMD a signal hoist stands in for ended (SIGINT, SIGQUIT, SIGTERM,
/// SIGHUP) ends hoist by it too.
fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(known @ (Signal::SIGINT | Signal::SIGQUIT | Signal::SIGTERM | Signal::SIGHUP)) => {
                status_of(known)
            }
            _ => u8::try_from(128 + signal).unwrap_or(255),
        },
        _ => 1,
    }
}

pub async fn exec(backend: &dyn Backend, args: &ExecArgs, target: &Target) -> anyhow::Result<u8> {
    if args.command.is_empty() {
        return Err(Ended::Usage("no command after `--`".into()).into());
    }
    // Without credentials there is nothing to give CMD: say so before
    // anything is requested.
    if !backend.capabilities().credential {
        return Err(crate::backend::BackendError::Unsupported(
            "credentials, which `hoist exec` gives the command",
        )
        .into());
    }
    // From here on a signal is ours to act on: while waiting it withdraws
    // the request, before CMD starts it starts nothing, after it is CMD's.
    let mut signals = Signals::listen()?;
    let deadline = args.asking.deadline()?;
    // A grant held already is used as it is; only asking for one takes a
    // reason. A broker that cannot say is not asked for a second grant.
    let held = tokio::select! {
        held = grant_of_role(backend, &args.role) => held?,
        // Nothing asked for yet: nothing to undo.
        signal = signals.next() => {
            super::say(&format!("{} arrived; nothing was asked for or run", signal.as_str()));
            return Ok(status_of(signal));
        }
    };
    // Another exec here using the grant counts as a use of it, so that it
    // is revoked when the last command with it ends, not under this one; a
    // grant whose last use here is revoking it is waited out, and looked
    // for again.
    let mut this_use = None;
    let mut held = held;
    for look in 1..=3 {
        let Some(grant) = &held else { break };
        match uses::begin(&target.broker, &grant.id, false).await {
            Ok(found) => {
                this_use = found;
                break;
            }
            Err(uses::BeingRevoked) if look == 3 => {
                anyhow::bail!(
                    "a grant of {} keeps being revoked by other hoist execs here as this one \
                     starts; nothing was asked for or run: try again",
                    args.role
                );
            }
            Err(uses::BeingRevoked) => {
                super::say(&format!(
                    "{} ({}) is being revoked as the last command here using it ended; \
                     waiting for that",
                    grant.id, grant.role
                ));
                let id = grant.id.clone();
                held = tokio::select! {
                    found = async {
                        uses::revoked(&target.broker, &id).await;
                        grant_of_role(backend, &args.role).await
                    } => found?,
                    () = until(deadline) => {
                        return Err(Ended::TimedOut(format!(
                            "timed out waiting for {id} to be revoked; nothing was asked for \
                             or run"
                        ))
                        .into());
                    }
                    signal = signals.next() => {
                        super::say(&format!(
                            "{} arrived; nothing was asked for or run",
                            signal.as_str()
                        ));
                        return Ok(status_of(signal));
                    }
                };
            }
        }
    }
    let (grant, created) = match held {
        Some(grant) => {
            let ends = args.asking.reusing(&grant)?;
            // Whoever asked for it may still end it while CMD runs (from
            // the TUI, or an exec on another machine).
            super::say(&format!(
                "using {} ({}), active already, {ends}: this command did not ask for it{}",
                grant.id,
                grant.role,
                if this_use.is_some() {
                    ". A hoist exec here that did leaves its revoke to the last command using \
                     it; one asked for otherwise (the TUI, another machine) may end sooner"
                } else {
                    ", so it is not revoked when the command ends, and whoever did may end it \
                     sooner"
                }
            ));
            (grant, false)
        }
        None if args.asking.reason.is_none() => {
            return Err(Ended::Usage(format!(
                "no active grant of {}: --reason is required to request one (or run as a \
                 workload: --workload-token-file, HOIST_WORKLOAD_TOKEN or --workload-audience)",
                args.role
            ))
            .into());
        }
        None => match obtain(backend, &args.role, &args.asking, deadline, &mut signals).await? {
            Obtained::Grant(grant) => (*grant, true),
            Obtained::Interrupted(signal) => return Ok(status_of(signal)),
        },
    };
    if created {
        // A grant just made is nobody else's, so never being revoked.
        this_use = uses::begin(&target.broker, &grant.id, true)
            .await
            .unwrap_or(None);
    }
    super::remember_grants(backend).await;
    let outcome = match signals.pending() {
        // Asked to stop before CMD existed: it never starts.
        Some(signal) => {
            super::say(&format!(
                "{} arrived before the command started; it was not run",
                signal.as_str()
            ));
            Ok(status_of(signal))
        }
        None => {
            tokio::select! {
                live = super::access::wait_live(backend, grant.clone(), remaining(deadline)) => match live {
                    Ok(live) => run(backend, &live, !created, &args.command, target, &mut signals).await,
                    Err(err) => Err(err),
                },
                // Stopped while the access was on its way: CMD never starts.
                signal = signals.next() => {
                    super::say(&format!(
                        "{} arrived while waiting for the access; the command was not run",
                        signal.as_str()
                    ));
                    Ok(status_of(signal))
                }
            }
        }
    };
    let ending = match this_use {
        Some(this_use) => uses::end(this_use).await,
        None => None,
    };
    let (revokes, revoking) = match ending {
        Some(uses::Ending::Revoke(revoking)) => (true, Some(revoking)),
        Some(uses::Ending::LeftToOthers) => {
            super::say(&format!(
                "{} is still used by another hoist exec here: it is revoked when the last of \
                 them ends",
                grant.id
            ));
            (false, None)
        }
        Some(uses::Ending::Nothing) => (false, None),
        // Uses cannot be counted here: the exec that asked revokes.
        None => (created, None),
    };
    if revokes {
        // The command may have outlived a single sign-on token; the revoke
        // must not fail for that, so it waits for the refresh (a signal
        // meanwhile, such as the Ctrl-C that ended the command, must not
        // send it with a token that ended).
        if let Ok(session) = crate::auth::session::current(target).await {
            backend.set_token(&session.access_token);
        }
        let revoked = revoke_after(
            backend,
            &grant.id,
            "hoist exec: the command finished",
            Some(&mut signals),
        )
        .await;
        if let Some(revoking) = revoking {
            uses::done(revoking, revoked == Revoked::Yes).await;
        }
        if revoked == Revoked::Yes {
            super::remember_grants(backend).await;
        }
        return match (outcome, revoked) {
            // A signal stopped the revoke: ended by it, whatever the
            // command's fate (said first, when it failed to run).
            (Err(err), Revoked::Stopped(signal)) => {
                super::say(&format!("{err:#}"));
                Ok(status_of(signal))
            }
            (outcome, revoked) => outcome.map(|status| revoked.status(status)),
        };
    }
    outcome
}

enum Obtained {
    Grant(Box<hoist_api::Grant>),
    Interrupted(Signal),
}

/// How long exec keeps asking a broker that is away to file its request.
pub(super) const FILING_PATIENCE: Duration = Duration::from_secs(60);

/// Files a request as exec would and waits for its grant (`hoist ssh`
/// shares this): the grant, or the signal that stopped the wait.
pub(super) async fn obtain_grant(
    backend: &dyn Backend,
    role: &str,
    asking: &Asking,
    deadline: Option<Instant>,
    signals: &mut Signals,
) -> anyhow::Result<Result<hoist_api::Grant, Signal>> {
    Ok(
        match obtain(backend, role, asking, deadline, signals).await? {
            Obtained::Grant(grant) => Ok(*grant),
            Obtained::Interrupted(signal) => Err(signal),
        },
    )
}

/// Files a request for the role and waits for it to become active. Giving
/// up in any way withdraws it: a pending request left behind would become a
/// grant, for hours, the moment someone approved it.
async fn obtain(
    backend: &dyn Backend,
    role: &str,
    asking: &Asking,
    deadline: Option<Instant>,
    signals: &mut Signals,
) -> anyhow::Result<Obtained> {
    let body = hoist_api::CreateRequest {
        role: role.to_string(),
        justification: asking.reason.clone().unwrap_or_default(),
        ticket: asking.ticket.clone(),
        incident: asking.incident.clone(),
        duration_secs: asking.duration.as_deref().map(duration).transpose()?,
        starts_at: None,
        break_glass: false,
    };
    // Stopped before anything was filed: nothing to withdraw.
    if let Some(signal) = signals.pending() {
        super::say(&format!(
            "{} arrived; nothing was requested",
            signal.as_str()
        ));
        return Ok(Obtained::Interrupted(signal));
    }
    // A filing whose answer was lost may have been made: it is asked for
    // again under the same key (answered with the request it made, never
    // made twice) while the broker is away, and withdrawn if a signal or
    // `--timeout` stops the asking (the deadline cuts an attempt short);
    // given up on, it is said how to find it.
    let key = uuid::Uuid::new_v4().to_string();
    let patience = remaining(deadline).map_or(FILING_PATIENCE, |left| left.min(FILING_PATIENCE));
    let filing = tokio::select! {
        biased;
        filed = file_keyed(backend, &body, &key, patience) => filed,
        signal = signals.next() => {
            super::say(&format!(
                "{} while filing; checking whether the request was filed",
                signal.as_str()
            ));
            let why = format!("interrupted by {}", signal.as_str());
            let (fate, _) = check_and_withdraw(backend, &body, &key, &why, signals).await;
            super::say(&fate);
            return Ok(Obtained::Interrupted(signal));
        }
        () = until(deadline) => {
            let (fate, stopped) = check_and_withdraw(backend, &body, &key, "timed out", signals).await;
            // Stopped by a signal on the way: ended by it, as a signal ends
            // exec anywhere else, not "timed out, try again".
            if let Some(signal) = stopped {
                super::say(&format!("gave up filing at the timeout; {fate}"));
                return Ok(Obtained::Interrupted(signal));
            }
            return Err(
                Ended::TimedOut(format!("gave up filing at the timeout; {fate}")).into(),
            );
        }
    };
    let filed = match filing {
        Ok(filed) => filed,
        Err(failed) => return Err(failed.into_error()),
    };
    let id = filed.id.clone();
    let waited = tokio::select! {
        waited = wait_for_final(backend, filed, remaining(deadline)) => waited,
        signal = signals.next() => {
            let why = format!("interrupted by {}", signal.as_str());
            let (fate, _) = withdraw(backend, &id, &why, signals).await;
            super::say(&format!(
                "{} while waiting for approval; {fate}",
                signal.as_str()
            ));
            return Ok(Obtained::Interrupted(signal));
        }
    };
    let request = match waited {
        Ok(request) => request,
        Err(err) => {
            let timed_out = super::exit_code(&err) == super::exit::TIMED_OUT;
            let why = if timed_out {
                "timed out".to_string()
            } else {
                // A reason is short; the whole error is printed below.
                let cause: String = format!("{err:#}").chars().take(200).collect();
                format!("failed while waiting: {cause}")
            };
            let (fate, stopped) = withdraw(backend, &id, &why, signals).await;
            // Stopped by a signal on the way: ended by it, as a signal ends
            // exec anywhere else.
            if let Some(signal) = stopped {
                super::say(&format!("gave up waiting for approval ({why}); {fate}"));
                return Ok(Obtained::Interrupted(signal));
            }
            if timed_out {
                return Err(
                    Ended::TimedOut(format!("gave up waiting for approval; {fate}")).into(),
                );
            }
            return Err(err.context(fate));
        }
    };
    if request.state != RequestState::Active {
        let reason = request.reason.clone().unwrap_or_default();
        // Exit 4 ("timed out": try again later) only for a request that
        // lapsed; one cancelled, or a grant revoked or expired meanwhile,
        // is an ordinary failure, as `hoist request --wait` says it.
        let ended = format!("{} ended {}: {reason}", request.id, request.state);
        return Err(match request.state {
            RequestState::Denied => {
                Ended::Denied(format!("{} was denied: {reason}", request.id)).into()
            }
            RequestState::TimedOut => Ended::TimedOut(ended).into(),
            _ => anyhow::anyhow!(ended),
        });
    }
    let grant_id = request.grant_id.clone().unwrap_or_default();
    // A broker away for a moment (restarting, failing over) as the grant
    // is made does not cost the grant: it is read again meanwhile.
    let read = tokio::select! {
        read = active_grant_patiently(backend, &grant_id, deadline) => read,
        signal = signals.next() => {
            let why = format!("hoist exec: interrupted by {}", signal.as_str());
            let fate = match revoke_after(backend, &grant_id, &why, Some(signals)).await {
                Revoked::Yes => "is revoked",
                Revoked::No | Revoked::Stopped(_) => "is not revoked",
            };
            super::say(&format!(
                "{} arrived as the grant was made; {grant_id} {fate}",
                signal.as_str()
            ));
            return Ok(Obtained::Interrupted(signal));
        }
    };
    match read {
        Ok(Some(grant)) => Ok(Obtained::Grant(Box::new(grant))),
        Ok(None) => Err(anyhow::anyhow!(
            "{grant_id} ended before the command could start"
        )),
        // Granted, but not readable: nothing runs, and nothing is left
        // behind if the broker lets it be revoked.
        Err(err) => {
            let fate = match revoke_after(
                backend,
                &grant_id,
                "hoist exec: the grant could not be read",
                Some(signals),
            )
            .await
            {
                Revoked::Yes => "and is revoked",
                Revoked::No => "and is not revoked",
                Revoked::Stopped(signal) => return Ok(Obtained::Interrupted(signal)),
            };
            Err(anyhow::Error::from(err).context(format!("{grant_id} could not be read, {fate}")))
        }
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long the check of a filing stopped before its answer came waits
/// for the broker's answer.
const CHECK_WAIT: Duration = Duration::from_secs(10);

/// After a filing stopped before its answer came: asks once more under
/// the same key (once, for at most [`CHECK_WAIT`]: a person who stopped
/// exec is not kept waiting long) and withdraws what that names, saying
/// what became of it, and the signal that stopped the check, if one did.
/// A signal stops the check at once, as it stops the withdrawal after it;
/// it is not left to stop that withdrawal before it began.
async fn check_and_withdraw(
    backend: &dyn Backend,
    body: &hoist_api::CreateRequest,
    key: &str,
    why: &str,
    signals: &mut Signals,
) -> (String, Option<Signal>) {
    tokio::select! {
        checked = tokio::time::timeout(CHECK_WAIT, backend.file(body, key)) => match checked {
            Ok(Ok(filed)) => withdraw(backend, &filed.id, why, signals).await,
            Ok(Err(_)) | Err(_) => (maybe_filed(), None),
        },
        signal = signals.next() => (
            format!("{} stopped the check; {}", signal.as_str(), maybe_filed()),
            Some(signal),
        ),
    }
}

/// Cancels the request exec filed and says what became of it, with the
/// signal that stopped it, if one did. A second signal stops the
/// cancelling, and the answer says how to finish the job by hand. A
/// request the broker will not cancel may have been approved in the
/// meantime: its grant is revoked instead, as the grant of a finished
/// command is (once the broker answered, a second signal stops that only
/// when an attempt failed and hoist said how to revoke it).
async fn withdraw(
    backend: &dyn Backend,
    id: &str,
    why: &str,
    signals: &mut Signals,
) -> (String, Option<Signal>) {
    let by_hand = format!(
        "{id} may still be pending: cancel it with `{}` (if it was approved meanwhile, `{}` \
         names its grant: `{}` it)",
        super::hoist(&["cancel", id]),
        super::hoist(&["status", id]),
        super::hoist(&["revoke", "GRANT"]),
    );
    let reason = format!("hoist exec: {why}");
    let refused = tokio::select! {
        cancelled = cancel(backend, id, &reason) => match cancelled {
            Ok(()) => return (format!("{id} is cancelled"), None),
            Err(err) => err,
        },
        signal = signals.next() => {
            return (
                format!("{} stopped the cancelling; {by_hand}", signal.as_str()),
                Some(signal),
            );
        }
    };
    // Decided meanwhile? An approval made a grant; anything else final left
    // nothing to withdraw.
    let current: AccessRequest = tokio::select! {
        read = backend.request(id) => match read {
            Ok(current) => current,
            Err(_) => return (format!("{by_hand} (cancelling failed: {refused})"), None),
        },
        signal = signals.next() => {
            return (
                format!("{} stopped the withdrawal; {by_hand}", signal.as_str()),
                Some(signal),
            );
        }
    };
    match (current.state, current.grant_id) {
        (RequestState::Active | RequestState::Approved, Some(grant_id)) => {
            let approved = format!("{id} was approved meanwhile; its grant {grant_id}");
            match revoke_after(backend, &grant_id, &reason, Some(signals)).await {
                Revoked::Yes => (format!("{approved} is revoked"), None),
                // How to revoke it by hand has been said.
                Revoked::No => (format!("{approved} is not revoked"), None),
                Revoked::Stopped(signal) => (format!("{approved} is not revoked"), Some(signal)),
            }
        }
        (state, _) if state.is_final() => (format!("{id} is {state}"), None),
        _ => (format!("{by_hand} (cancelling failed: {refused})"), None),
    }
}

/// Cancels request `id`, trying again a few times while the broker is
/// briefly away.
async fn cancel(
    backend: &dyn Backend,
    id: &str,
    reason: &str,
) -> Result<(), crate::backend::BackendError> {
    let mut attempt = 0;
    loop {
        match backend.cancel(id, Some(reason.to_string())).await {
            Ok(_) => return Ok(()),
            Err(err) if err.is_transient() && attempt < 4 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn run(
    backend: &dyn Backend,
    grant: &hoist_api::Grant,
    reused: bool,
    command: &[String],
    target: &Target,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let credential = backend.credential(&grant.id).await?;
    if reused && let Some(access) = &credential.access {
        super::credential::say_if_password_replaced(access);
    }
    let mut env = task_env(
        &credential.token,
        credential.expires_at,
        (&grant.role, &grant.id, grant.expires_at),
        credential.access.as_ref(),
    );
    match std::env::current_exe() {
        Ok(exe) => match credential_command(&exe, target, &grant.id) {
            Some(line) => env.push((ENV_CREDENTIAL_COMMAND.to_string(), line)),
            None => super::say(&format!(
                "warning: {} is not UTF-8; {ENV_CREDENTIAL_COMMAND} is not set",
                exe.display()
            )),
        },
        Err(err) => super::say(&format!(
            "warning: cannot find hoist itself ({err}); {ENV_CREDENTIAL_COMMAND} is not set"
        )),
    }
    run_command(command, &env, &[], signals).await
}

/// What a command run under a grant finds in its environment: the
/// credential, the grant, and the access at the role's target (e.g. PGHOST,
/// PGPORT, PGDATABASE, PGUSER, PGPASSWORD and PGSSLMODE, so `psql` runs as
/// it is). A person's exec and a workload's share it.
pub(super) fn task_env(
    token: &str,
    token_expires_at: chrono::DateTime<chrono::Utc>,
    (role, grant_id, grant_expires_at): (&str, &str, chrono::DateTime<chrono::Utc>),
    access: Option<&hoist_api::AccessCredential>,
) -> Vec<(String, String)> {
    let mut env = vec![
        (ENV_CREDENTIAL.to_string(), token.to_string()),
        (
            ENV_CREDENTIAL_EXPIRES_AT.to_string(),
            token_expires_at.to_rfc3339(),
        ),
        (ENV_ROLE.to_string(), role.to_string()),
        (ENV_GRANT_ID.to_string(), grant_id.to_string()),
        (
            ENV_GRANT_EXPIRES_AT.to_string(),
            grant_expires_at.to_rfc3339(),
        ),
    ];
    env.extend(super::access::access_env(access));
    env
}

/// Runs CMD with `env` added to its environment, forwarding the signals
/// that reach us; CMD's status as our exit code.
pub(super) async fn run_command(
    command: &[String],
    env: &[(String, String)],
    withheld: &[&str],
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    run_command_started(command, env, withheld, signals, &mut false).await
}

/// [`run_command`], setting `started` once the command is running (a
/// signal already there, or a program that cannot run, start nothing).
pub(super) async fn run_command_started(
    command: &[String],
    env: &[(String, String)],
    withheld: &[&str],
    signals: &mut Signals,
    started: &mut bool,
) -> anyhow::Result<u8> {
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| Ended::Usage("no command after `--`".into()))?;
    // A signal that came while the credential was fetched: the command
    // never starts (forwarded after its start, it would be the command's
    // to ignore).
    if let Some(signal) = signals.pending() {
        super::say(&format!(
            "{} arrived before the command started; it was not run",
            signal.as_str()
        ));
        return Ok(status_of(signal));
    }
    let mut child = tokio::process::Command::new(program);
    // A job's identity token proved who asked; the command gets the
    // grant's credential, not what could ask for more (`withheld`: for a
    // workload, also what mints another token).
    child.args(rest).env_remove(super::ENV_WORKLOAD_TOKEN);
    for name in withheld {
        child.env_remove(name);
    }
    child.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = child
        .spawn()
        .map_err(|err| anyhow::anyhow!("cannot run `{program}`: {err}"))?;
    *started = true;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    // A Ctrl-C or Ctrl-\ typed at a terminal goes to its whole foreground
    // group, CMD included, and so does the SIGHUP of a terminal that hung
    // up: forwarding it as well would deliver it twice. Whatever a process
    // sent (`kill -INT`, a supervisor's SIGTERM) reaches hoist alone, and
    // is forwarded.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            arrived = signals.next_arrived() => {
                let typed = arrived.from_terminal
                    && matches!(arrived.signal, Signal::SIGINT | Signal::SIGQUIT | Signal::SIGHUP);
                if let (Some(pid), false) = (pid, typed) {
                    let _ = kill(pid, arrived.signal);
                }
            }
        }
    };
    Ok(code_of(status))
}

/// The exact command line, quoted for a POSIX shell, that prints a fresh
/// credential for `grant_id`: this same hoist, broker and profile, so the
/// same stored session. Nothing in it is a secret. `None` if the path of
/// hoist cannot be written as text.
fn credential_command(exe: &Path, target: &Target, grant_id: &str) -> Option<String> {
    let exe = exe.to_str()?;
    let words = [
        exe,
        "--broker",
        &target.broker,
        "--profile",
        &target.profile,
        "credential",
        grant_id,
        // A JWT, as HOIST_CREDENTIAL is, whatever the grant's target kind
        // (an ssh grant's credential is a certificate by default).
        "--format",
        "token",
    ];
    Some(words.map(shell_word).join(" "))
}

/// Revokes the grant `exec` created, waiting for a broker briefly away
/// ([`revoking::keep_trying`]); says so loudly if it could not.
pub(super) async fn revoke_after(
    backend: &dyn Backend,
    grant_id: &str,
    reason: &str,
    signals: Option<&mut Signals>,
) -> Revoked {
    let left = format!(
        "it stays active until its expiry: revoke it with `{}`",
        super::hoist(&["revoke", grant_id])
    );
    let answered = std::sync::Mutex::new(None);
    let revoked = revoking::keep_trying(grant_id, &left, signals, || async {
        match backend.revoke(grant_id, Some(reason.to_string())).await {
            Ok(grant) => {
                *answered.lock().unwrap_or_else(|p| p.into_inner()) = Some(grant);
                Ok(())
            }
            Err(err) if err.is_transient() => Err(Failed::Transient(err.to_string())),
            Err(err) => Err(Failed::Lasting(err.to_string())),
        }
    })
    .await;
    // A grant that ended under the command (revoked by someone, or past
    // its end) is answered as it ended: said, so that a command that
    // failed for it is not taken for one that failed by itself.
    let grant = answered.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = grant.as_ref().and_then(|g| ended_before(g, reason)) {
        super::say(&why);
    }
    revoked
}

/// Why `grant`, answered to a revoke with `reason`, had ended before it:
/// it expired, or someone else (or another reason) revoked it.
fn ended_before(grant: &hoist_api::Grant, reason: &str) -> Option<String> {
    let clean = |text: &str| crate::text::sanitize::line(text).into_owned();
    let at = |at: Option<chrono::DateTime<chrono::Utc>>| {
        crate::text::local_timestamp(at.unwrap_or(grant.expires_at))
    };
    let role = clean(&grant.role);
    match grant.state {
        hoist_api::GrantState::Expired => Some(format!(
            "grant {} ({role}) had already ended: it expired at {}",
            clean(&grant.id),
            at(grant.ended_at)
        )),
        hoist_api::GrantState::Revoked if grant.revoke_reason.as_deref() != Some(reason) => {
            Some(format!(
                "grant {} ({role}) had already ended: revoked at {} by {}{}",
                clean(&grant.id),
                at(grant.ended_at),
                clean(grant.revoked_by.as_deref().unwrap_or("someone")),
                grant
                    .revoke_reason
                    .as_deref()
                    .map(|why| format!(" ({})", clean(why)))
                    .unwrap_or_default()
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal that came while the credential was fetched stops the
    /// command from starting at all, rather than reaching it once started.
    #[tokio::test]
    async fn a_signal_before_the_command_starts_means_it_never_runs() {
        let mut signals = Signals::listen().unwrap();
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        // The listening thread hands it over shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A program that cannot start: trying to would fail, so a status
        // means no start was tried.
        let command = ["/nonexistent/hoist-test-command".to_string()];
        let status = run_command(&command, &[], &[], &mut signals).await.unwrap();
        assert_eq!(status, status_of(Signal::SIGTERM));
    }

    #[test]
    fn the_credential_command_is_one_exact_shell_line() {
        let target = Target {
            profile: "on call's".into(),
            broker: "https://hoist.example:8443".into(),
            user: Some("alice".into()),
            insecure_file_store: false,
            backend: crate::config::Backend::Hoistd,
            chosen_by: Vec::new(),
        };
        let line = credential_command(Path::new("/opt/my tools/hoist"), &target, "gr_abc").unwrap();
        assert_eq!(
            line,
            r"'/opt/my tools/hoist' --broker https://hoist.example:8443 --profile 'on call'\''s' credential gr_abc --format token"
        );
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a;rm -rf ~"), "'a;rm -rf ~'");
        assert_eq!(shell_word("$(x)`y`"), "'$(x)`y`'");
    }
}
