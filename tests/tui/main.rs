//! The TUI against a real broker on loopback: every screen as a snapshot,
//! the whole story driven by keys, and hostile text proven harmless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod flows;
mod hostile;
mod snapshots;
mod targets;
