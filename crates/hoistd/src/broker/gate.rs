//! The commits decided under a policy, counted, so that a reload's sweep
//! waits for every one decided under the policy it replaces.
//!
//! A transaction checks, just before its commit, that the policy it decided
//! under is still the one in force (`Broker::finish`). On SQLite nothing can
//! come between the check and the commit: the transaction holds the store's
//! one writer from its start. On PostgreSQL an optimistic transaction takes
//! the store's lock only with its commit, so a reload could swap the policy
//! and sweep between the two: the sweep would not see the grant about to be
//! committed under the old policy, and nothing would revoke it. With the
//! gate, the reload waits, after the swap and before its sweep, until every
//! commit that may have checked the old policy has ended; later ones see
//! the new policy at their check. Commits never wait for the gate, so it
//! cannot hold up one that holds the store's lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Gate {
    /// Bumped by each reload after it swapped the policy.
    generation: AtomicU64,
    /// Commits under way, by the parity of the generation they entered in.
    deciding: [AtomicUsize; 2],
    #[cfg(feature = "testing")]
    held: Held,
}

/// A commit under way, counted until dropped.
pub(super) struct Deciding<'a> {
    gate: &'a Gate,
    slot: usize,
}

impl Drop for Deciding<'_> {
    fn drop(&mut self) {
        self.gate.deciding[self.slot].fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// Counts a commit from before its check of the policy to its end.
    pub(super) fn enter(&self) -> Deciding<'_> {
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let slot = (generation % 2) as usize;
            self.deciding[slot].fetch_add(1, Ordering::SeqCst);
            if self.generation.load(Ordering::SeqCst) == generation {
                return Deciding { gate: self, slot };
            }
            // A reload turned meanwhile: counted in the next generation.
            self.deciding[slot].fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Called once the new policy is stored: waits until every commit that
    /// entered before (and so may have checked the old policy) has ended.
    /// Each is bounded by the store's wait for its answers.
    pub(super) fn turn(&self) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let slot = (generation % 2) as usize;
        while self.deciding[slot].load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Commits held after their check of the policy, for a test to reload in
/// between (`testing` feature).
#[cfg(feature = "testing")]
#[derive(Default)]
struct Held {
    on: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    waiting: AtomicUsize,
}

#[cfg(feature = "testing")]
impl Gate {
    pub(super) fn hold(&self, on: bool) {
        *self.held.on.lock().unwrap_or_else(|p| p.into_inner()) = on;
        self.held.changed.notify_all();
    }

    /// How many commits wait at the hold now.
    pub(super) fn holding(&self) -> usize {
        self.held.waiting.load(Ordering::SeqCst)
    }

    /// Waits here while commits are held.
    pub(super) fn pause(&self) {
        let mut on = self.held.on.lock().unwrap_or_else(|p| p.into_inner());
        if !*on {
            return;
        }
        self.held.waiting.fetch_add(1, Ordering::SeqCst);
        while *on {
            on = self
                .held
                .changed
                .wait(on)
                .unwrap_or_else(|p| p.into_inner());
        }
        self.held.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
