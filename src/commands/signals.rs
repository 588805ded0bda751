//! The signals that end a wait or a command: SIGINT, SIGQUIT, SIGTERM and
//! SIGHUP. Once listened for they no longer end hoist by themselves, so a
//! command that listens decides what each means (withdraw a request,
//! forward it to a child) and nothing is left half done.

use futures::FutureExt;
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening. A signal that arrives from now on is kept until
    /// [`Signals::next`] or [`Signals::pending`] takes it.
    pub fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal to arrive (or one that already has).
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => Signal::SIGINT,
            Some(()) = self.quit.recv() => Signal::SIGQUIT,
            Some(()) = self.terminate.recv() => Signal::SIGTERM,
            Some(()) = self.hangup.recv() => Signal::SIGHUP,
            // Only once the runtime is shutting down: no signal will come.
            else => std::future::pending().await,
        }
    }

    /// A signal that has arrived and not been taken yet, without waiting.
    pub fn pending(&mut self) -> Option<Signal> {
        self.next().now_or_never()
    }
}

/// The exit status of a process that a signal ended: 128 + its number.
pub fn status_of(signal: Signal) -> u8 {
    u8::try_from(128 + signal as i32).unwrap_or(255)
}
