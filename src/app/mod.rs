//! The TUI's logic, without a terminal: state, actions, the keymap, and the
//! one `update` function that changes state and asks for side effects.

pub mod access;
pub mod action;
pub mod capabilities;
pub mod command;
pub mod failure;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod form;
pub mod keymap;
pub mod roles;
pub mod state;
pub mod update;

pub use action::{Action, Operation};
pub use capabilities::Capabilities;
pub use command::Command;
pub use failure::{Failure, FailureKind};
pub use state::{Screen, State, WARN_AT};
pub use update::update;
