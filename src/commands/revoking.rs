//! The revoke at the end of `hoist exec`, a person's or a workload's: the
//! promise is that the grant exec made ends when its command does, so a
//! broker briefly away (restarting, failing over) is waited for, and a
//! revoke that could not be made is said loudly and shows in the exit
//! status.

use std::future::Future;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::signals::Signals;

/// How long a revoke keeps trying a broker that does not answer, or
/// answers that it cannot now.
pub const PATIENCE: Duration = Duration::from_secs(120);
/// The longest wait between two attempts.
const MOST_BETWEEN: Duration = Duration::from_secs(5);

/// How one attempt went, when it did not revoke.
pub enum Failed {
    /// Worth trying again: the broker away, busy, or failing.
    Transient(String),
    /// Trying again would not help (refused, signed out).
    Lasting(String),
}

/// How the revoke ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    Yes,
    No,
    /// A signal stopped the trying, once it had been said.
    Stopped(Signal),
}

impl Revoked {
    /// The exit status: the command's, unless the revoke was not made,
    /// which a caller must hear of even when the command succeeded (6, as
    /// for a broker away), or a signal stopped it.
    pub fn status(&self, command: u8) -> u8 {
        match self {
            Revoked::Yes => command,
            Revoked::No if command == 0 => 6,
            Revoked::No => command,
            Revoked::Stopped(signal) => super::signals::status_of(*signal),
        }
    }
}

/// Tries `attempt` until it revokes, fails for good, or [`PATIENCE`] runs
/// out; `left` says what becomes of the grant if it is not revoked. Once
/// an attempt failed (and that was said), a signal stops the trying.
pub async fn keep_trying<F, Fut>(
    grant_id: &str,
    left: &str,
    mut signals: Option<&mut Signals>,
    mut attempt: F,
) -> Revoked
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failed>>,
{
    // What arrived before the revoke began was for the command, which is
    // over (a typed Ctrl-C that ended it may be read only now).
    if let Some(signals) = signals.as_deref_mut() {
        while signals.pending().is_some() {}
    }
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    let mut said = false;
    loop {
        let tried = match (said, signals.as_deref_mut()) {
            (true, Some(signals)) => tokio::select! {
                tried = attempt() => tried,
                signal = signals.next() => return stopped(grant_id, left, signal),
            },
            _ => attempt().await,
        };
        let why = match tried {
            Ok(()) => {
                if said {
                    super::say(&format!("revoked {grant_id}"));
                }
                return Revoked::Yes;
            }
            Err(Failed::Lasting(why)) => {
                super::say(&format!("could not revoke {grant_id} ({why}); {left}"));
                return Revoked::No;
            }
            Err(Failed::Transient(why)) => why,
        };
        if started.elapsed() + wait > PATIENCE {
            super::say(&format!(
                "could not revoke {grant_id} within {}s ({why}); {left}",
                PATIENCE.as_secs()
            ));
            return Revoked::No;
        }
        if !said {
            super::say(&format!(
                "could not revoke {grant_id} yet ({why}); trying again for up to {}s \
                 (a signal stops trying)",
                PATIENCE.as_secs()
            ));
            said = true;
        }
        match signals.as_deref_mut() {
            Some(signals) => tokio::select! {
                () = tokio::time::sleep(wait) => {}
                signal = signals.next() => return stopped(grant_id, left, signal),
            },
            None => tokio::time::sleep(wait).await,
        }
        wait = (wait * 2).min(MOST_BETWEEN);
    }
}

fn stopped(grant_id: &str, left: &str, signal: Signal) -> Revoked {
    super::say(&format!(
        "{} stopped the revoke of {grant_id}; {left}",
        signal.as_str()
    ));
    Revoked::Stopped(signal)
}
