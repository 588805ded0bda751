//! hoist: just-in-time privileged access from the terminal.

pub mod app;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod endpoint;
pub mod prompt;
pub mod secrets;
pub mod session;
pub mod sso;
pub mod text;
pub mod theme;
pub mod tui;
pub mod ui;
pub mod worker;
