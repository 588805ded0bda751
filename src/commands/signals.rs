//! The signals that end a wait or a command: SIGINT, SIGQUIT, SIGTERM and
//! SIGHUP. Once listened for they no longer end hoist by themselves, so a
//! command that listens decides what each means (withdraw a request,
//! forward it to a child) and nothing is left half done.
//!
//! Each comes with who sent it (signal-hook reads the signal's `siginfo`):
//! a terminal (Ctrl-C, Ctrl-\ typed at it, which the kernel sends to the
//! terminal's whole foreground group) or a process (`kill`).

use std::sync::atomic::{AtomicI32, Ordering};

use futures::FutureExt;
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;
use tokio::sync::mpsc;

/// The signals this process started with ignored, read before any is
/// listened for (a handler, once set, hides it): on Linux from the
/// `SigIgn` mask of /proc/self/status; elsewhere none are known.
fn ignored_at_start() -> &'static [i32] {
    static IGNORED: std::sync::OnceLock<Vec<i32>> = std::sync::OnceLock::new();
    IGNORED.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|line| line.strip_prefix("SigIgn:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
    })
}

/// A signal that arrived, and whether a terminal sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    pub signal: Signal,
    /// Sent by the kernel for a terminal (a typed Ctrl-C or Ctrl-\), not by
    /// a process.
    pub from_terminal: bool,
}

pub struct Signals {
    arrived: mpsc::UnboundedReceiver<Arrived>,
    /// Ends the thread that waits for them.
    handle: signal_hook::iterator::Handle,
}

impl Signals {
    /// Starts listening. A signal that arrives from now on is kept until
    /// [`Signals::next`] or [`Signals::pending`] takes it.
    ///
    /// Not one hoist was started with ignored (`nohup`, `cmd &` in a
    /// script): caught, it would reach a child at its default, ending the
    /// command the caller meant to keep running; left alone, the child
    /// inherits it ignored, as asked.
    pub fn listen() -> std::io::Result<Signals> {
        let ignored = ignored_at_start();
        let wanted = [SIGINT, SIGQUIT, SIGTERM, SIGHUP]
            .into_iter()
            .filter(|signal| !ignored.contains(signal));
        let mut waiting = SignalsInfo::<WithOrigin>::new(wanted)?;
        let handle = waiting.handle();
        let (sender, arrived) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for origin in waiting.forever() {
                    let Ok(signal) = Signal::try_from(origin.signal) else {
                        continue;
                    };
                    let from_terminal = matches!(origin.cause, Cause::Kernel);
                    if sender
                        .send(Arrived {
                            signal,
                            from_terminal,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })?;
        Ok(Signals { arrived, handle })
    }

    /// The next signal to arrive (or one that already has).
    pub async fn next(&mut self) -> Signal {
        self.next_arrived().await.signal
    }

    /// The next signal to arrive, with who sent it.
    pub async fn next_arrived(&mut self) -> Arrived {
        match self.arrived.recv().await {
            Some(arrived) => arrived,
            // Only once listening ended: no signal will come.
            None => std::future::pending().await,
        }
    }

    /// A signal that has arrived and not been taken yet, without waiting.
    pub fn pending(&mut self) -> Option<Signal> {
        self.next().now_or_never()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// The exit status of a process that a signal ended: 128 + its number.
/// hoist itself then ends by that signal once its work is done
/// ([`end_as_signalled`]).
pub fn status_of(signal: Signal) -> u8 {
    ENDED_BY.store(signal as i32, Ordering::Relaxed);
    code_of(signal)
}

/// 128 + the signal's number, and nothing else: for an error's exit code,
/// which may be asked of an error that is not the last word.
pub fn code_of(signal: Signal) -> u8 {
    u8::try_from(128 + signal as i32).unwrap_or(255)
}

/// The signal that stopped what hoist did (or ended the command it ran),
/// if one did: 0 for none.
static ENDED_BY: AtomicI32 = AtomicI32::new(0);

/// Ends hoist by the signal that stopped it, once everything is cleaned
/// up, as a process without a handler would have ended: a shell running it
/// in a loop then stops at Ctrl-C, where an exit with 130 would have told
/// it the signal was handled, and run the next turn. Returns only when no
/// signal stopped hoist (or the default cannot be emulated).
///
/// Not SIGQUIT, whose default dumps core, and the core would hold the
/// session and the grant's credential: hoist exits 131 for it. Nor a signal
/// hoist was started with ignored: a process without a handler would have
/// carried on.
pub fn end_as_signalled() {
    let signal = ENDED_BY.load(Ordering::Relaxed);
    if [SIGINT, SIGTERM, SIGHUP].contains(&signal) && !ignored_at_start().contains(&signal) {
        let _ = signal_hook::low_level::emulate_default_handler(signal);
    }
}
