//! hoist: just-in-time privileged access from the terminal.
//!
//! The layers, from the bottom: `text` (pure formatting) and `app` (the
//! TUI's pure core); `ui` (drawing); `endpoint`, `backend` (the brokers),
//! `auth` (sessions), `config`, `fs`, `prompt` and `sshkey` (I/O); `tui` and
//! `commands` on top, wired up by `cli`. ARCHITECTURE.md lists the arrows
//! that must never exist between them.

pub mod app;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod desktop;
pub mod endpoint;
pub mod fs;
pub mod prompt;
pub mod sshkey;
pub mod text;
pub mod tui;
pub mod ui;
