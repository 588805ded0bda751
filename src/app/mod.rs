//! The TUI's logic, without a terminal: state, actions, the keymap, and the
//! one `update` function that changes state and asks for side effects.

pub mod action;
pub mod command;
pub mod form;
pub mod keymap;
pub mod roles;
pub mod state;
pub mod update;

pub use action::Action;
pub use command::Command;
pub use state::{Screen, State};
pub use update::update;
