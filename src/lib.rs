//! hoist: just-in-time privileged access from the terminal.

pub mod demo;
