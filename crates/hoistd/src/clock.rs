//! The one clock hoistd settles times by: this process's, moved by how far
//! it is from the database server's when instances share one.
//!
//! Instances on one PostgreSQL database must agree on when a grant ends:
//! one whose clock is behind would take a grant for live after it ended,
//! and as leader record its expiry late. The store reads the server's
//! clock after each lease ask, and once as an instance starts, before its
//! start-up reap ([`crate::store::Store::clock_offset`],
//! [`crate::store::Store::measure_clock`]); the offset is handed to
//! [`follow`], so every instance times grants, sessions and credentials
//! by the server's clock, to within half a reading's round trip.
//! The SQLite store has one process and no offset: this clock is then the
//! process's own.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// How far a reading must be from the clock followed, beyond what the
/// readings may be off by, before the clock is moved: under it, a new
/// reading would only add its own error and step the time back and forth.
pub const STEP: TimeDelta = TimeDelta::milliseconds(100);

/// What this process adds to its clock.
static CORRECTION: Correction = Correction::new();

/// The current time, at the millisecond precision the store keeps.
pub fn now() -> DateTime<Utc> {
    let raw = Utc::now() + correction();
    DateTime::from_timestamp_millis(raw.timestamp_millis()).unwrap_or(raw)
}

/// What is added to the process's clock.
pub fn correction() -> TimeDelta {
    CORRECTION.get()
}

/// Follows a clock `offset` ahead of the process's (behind if negative),
/// read to within `doubt` either way: moves to it if it is [`STEP`] and
/// twice `doubt` or more from the one followed now (each reading may be
/// off by about as much), and says whether it moved.
pub fn follow(offset: TimeDelta, doubt: TimeDelta) -> bool {
    CORRECTION.follow(offset, doubt)
}

/// Microseconds to add to a clock.
struct Correction(AtomicI64);

impl Correction {
    const fn new() -> Self {
        Correction(AtomicI64::new(0))
    }

    fn get(&self) -> TimeDelta {
        TimeDelta::microseconds(self.0.load(Ordering::Relaxed))
    }

    fn follow(&self, offset: TimeDelta, doubt: TimeDelta) -> bool {
        let Some(micros) = offset.num_microseconds() else {
            return false;
        };
        if (offset - self.get()).abs() < STEP + doubt.abs() * 2 {
            return false;
        }
        self.0.store(micros, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings within a step of the clock followed leave it alone; one
    /// further moves it all the way.
    #[test]
    fn the_clock_moves_only_by_a_step_or_more() {
        let correction = Correction::new();
        let sure = TimeDelta::zero();
        assert!(!correction.follow(TimeDelta::milliseconds(60), sure));
        assert!(!correction.follow(TimeDelta::milliseconds(-99), sure));
        assert_eq!(correction.get(), TimeDelta::zero());

        assert!(correction.follow(TimeDelta::seconds(30), sure));
        assert_eq!(correction.get(), TimeDelta::seconds(30));
        assert!(!correction.follow(TimeDelta::milliseconds(30_050), sure));
        assert_eq!(correction.get(), TimeDelta::seconds(30));

        assert!(correction.follow(TimeDelta::milliseconds(-400), sure));
        assert_eq!(correction.get(), TimeDelta::milliseconds(-400));
        assert!(correction.follow(TimeDelta::zero(), sure));
        assert_eq!(correction.get(), TimeDelta::zero());

        // A reading from far away (a 240 ms round trip) moves it only past
        // what it may be off by.
        let far = TimeDelta::milliseconds(120);
        assert!(!correction.follow(TimeDelta::milliseconds(300), far));
        assert!(correction.follow(TimeDelta::milliseconds(400), far));
    }
}
