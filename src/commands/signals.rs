//! The signals that end a wait or a command: SIGINT, SIGQUIT, SIGTERM and
//! SIGHUP. Once listened for they no longer end hoist by themselves, so a
//! command that listens decides what each means (withdraw a request,
//! forward it to a child) and nothing is left half done.
//!
//! Each comes with who sent it (signal-hook reads the signal's `siginfo`):
//! a terminal (Ctrl-C, Ctrl-\ typed at it, which the kernel sends to the
//! terminal's whole foreground group) or a process (`kill`).

use futures::FutureExt;
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;
use tokio::sync::mpsc;

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
    pub fn listen() -> std::io::Result<Signals> {
        let mut waiting = SignalsInfo::<WithOrigin>::new([SIGINT, SIGQUIT, SIGTERM, SIGHUP])?;
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
pub fn status_of(signal: Signal) -> u8 {
    u8::try_from(128 + signal as i32).unwrap_or(255)
}
