//! Everything that can happen to the TUI: keys (through the keymap), ticks,
//! and answers from the broker.

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessRequest, AuditEvent, Credential, Grant, LiveEvent, Me, RequestHistory, Role,
};

use super::state::Screen;
use crate::client::ClientError;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    // Navigation and keys.
    Quit,
    GoTo(Screen),
    NextScreen,
    PrevScreen,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Enter: open the form on a role, or the details of a row.
    Select,
    /// Esc: close whatever is open.
    Back,
    Help,
    Refresh,
    StartFilter,
    ToggleFavourite,
    /// Space on Roles: mark a role for a bundle.
    Mark,
    /// Mark the roles of the next named bundle from the config.
    NextBundle,
    /// Revoke every grant of mine under the selected incident.
    RevokeIncident,
    NewRequest,
    Cancel,
    Revoke,
    Extend,
    ShowCredential,
    CopyCredential,
    Approve,
    Deny,
    Claim,
    Acknowledge,
    OpenTicket,
    Confirm,
    Decline,
    /// Typed text in whatever has the focus (filter, form field, prompt).
    Input(char),
    Backspace,
    Newline,
    NextField,
    PrevField,
    Left,
    Right,
    ToggleBreakGlass,
    Submit,
    /// Mouse: a click at a cell, or the wheel.
    Click {
        column: u16,
        row: u16,
    },
    ScrollUp,
    ScrollDown,
    Resize(u16, u16),
    /// Once a second, with the broker's clock.
    Tick(DateTime<Utc>),

    // Answers from the broker.
    Loaded(Box<Snapshot>),
    LoadFailed(ClientError),
    ActivityLoaded(Vec<AuditEvent>),
    HistoryLoaded(RequestHistory),
    Live(Box<LiveEvent>),
    StreamUp,
    StreamDown(String),
    /// The session ended and could not be renewed; nothing else changes.
    SessionExpired(String),
    SessionRenewed,
    Filed(Box<AccessRequest>),
    RequestChanged(Box<AccessRequest>),
    GrantChanged(Box<Grant>),
    CredentialLoaded {
        credential: Box<Credential>,
        copy: bool,
    },
    IncidentLoaded(Box<hoist_api::IncidentView>),
    /// A revocation could not reach the broker; it is being retried.
    RevokePending(String),
    /// An operation failed; `what` names it for the message.
    Failed {
        what: String,
        error: ClientError,
    },
}

/// Everything fetched at once on start and after a reconnect.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub me: Me,
    pub roles: Vec<Role>,
    pub requests: Vec<AccessRequest>,
    pub grants: Vec<Grant>,
    pub queue: Vec<AccessRequest>,
    pub break_glass: Vec<AccessRequest>,
}
