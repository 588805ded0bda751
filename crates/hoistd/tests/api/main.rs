//! Black-box tests of hoistd over real HTTP on loopback, each against a fresh
//! SQLite file, and the store conformance suite against SQLite. One binary,
//! one module per capability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod audit;
mod break_glass;
mod checkpoints;
mod errors;
mod events;
mod grants;
mod harness;
mod lifecycle;
mod openapi;
mod reload;
mod reviews;
mod serving;
mod store;
