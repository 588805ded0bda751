//! Sign-in, sessions and the keyring, against a real broker on loopback and
//! a real keyring: the kernel keyring (keyutils) for the everyday tests,
//! and a real Secret Service when `secret-service.sh` provides one; and the
//! plain-file store a user must opt into.
//!
//! Each test must run in its own process (cargo-nextest does that): the
//! keyring backend is chosen once per process, and the kernel session
//! keyring is joined per process before any thread starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod file_store;
mod keyutils;
mod secret_service;
