//! The TUI against a real broker on loopback: every screen as a snapshot,
//! the whole story driven by keys, and hostile text proven harmless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
#[path = "../support/oidc.rs"]
mod oidc;

mod desktop;
mod flows;
mod hostile;
mod snapshots;
mod targets;
mod workloads;
