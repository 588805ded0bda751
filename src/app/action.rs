//! Everything that can happen to the TUI: keys (through the keymap), ticks,
//! and answers from the broker.

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessRequest, AuditEvent, Credential, Grant, LiveEvent, Me, RequestHistory, Role,
};

use super::failure::Failure;
use super::state::{Screen, SignInPrompt};

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
    /// On Activity: everyone's events, then people's only, then workloads'.
    CycleActors,
    /// Open the list of the config's profiles, to switch to another.
    PickProfile,
    /// Revoke every grant of mine under the selected incident.
    RevokeIncident,
    NewRequest,
    Cancel,
    Revoke,
    Extend,
    ShowCredential,
    CopyCredential,
    /// Show again the sign-in pop-up closed while its sign-in goes on.
    ShowSignIn,
    /// In the credential of access at a target: copy its URI.
    CopyUri,
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
    /// A row of the current screen's list picked directly (a mouse click).
    SelectRow(usize),
    /// The mouse wheel.
    ScrollUp,
    ScrollDown,
    Resize(u16, u16),
    /// Once a second, with the broker's clock.
    Tick(DateTime<Utc>),

    // Answers from the broker.
    Loaded(Box<Snapshot>),
    LoadFailed(Failure),
    ActivityLoaded(Vec<AuditEvent>),
    HistoryLoaded(RequestHistory),
    /// The grant of a request under review (`Command::LoadGrant`).
    ReviewedGrantLoaded(Box<Grant>),
    Live(Box<LiveEvent>),
    /// The wall clock jumped: everything is loaded again, whatever is open
    /// on screen, so that the answers set the broker's time afresh.
    ClockJumped,
    StreamUp,
    StreamDown(String),
    /// The session ended and could not be renewed; nothing else changes.
    SessionExpired(String),
    SessionRenewed,
    Filed(Box<AccessRequest>),
    /// The broker's answer to extending `grant_id`.
    Extended {
        grant_id: String,
        request: Box<AccessRequest>,
    },
    RequestChanged(Box<AccessRequest>),
    GrantChanged(Box<Grant>),
    CredentialLoaded {
        credential: Box<Credential>,
        copy: bool,
    },
    IncidentLoaded(Box<hoist_api::IncidentView>),
    /// The broker refused a revocation for good (denied, not found, in
    /// conflict): it is no longer retried, and the grant is marked as still
    /// active after a revoke until it ends or is revoked again.
    RevokeRefused {
        grant_id: String,
        failure: Failure,
    },
    /// A revocation could not reach the broker; it is being retried.
    RevokePending(String),
    /// A device sign-in waits for the person (see [`SignInPrompt`]).
    SignInPrompt(SignInPrompt),
    /// Signing in again (`Command::SignInAgain`) failed, or was another
    /// person's: what it was for is not done.
    SignInAgainFailed(String),
    /// Switching to another profile failed; the one on screen stays.
    SwitchFailed {
        profile: String,
        reason: String,
    },
    /// An operation failed.
    Failed {
        operation: Operation,
        failure: Failure,
    },
    /// A decision on a request (a review, or a break-glass
    /// acknowledgement) failed: as `Failed`, letting go of that request's
    /// decision only, while others sent since are still under way.
    DecisionFailed {
        request_id: String,
        operation: Operation,
        failure: Failure,
    },
    /// A grant's extension failed: as `Failed`, and its grant may be
    /// extended again.
    ExtendFailed {
        grant_id: String,
        failure: Failure,
    },
}

/// What the worker was doing for a command, named in failure messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Loading,
    LoadingActivity,
    LoadingIncident,
    LoadingHistory,
    Filing,
    Cancelling,
    Revoking,
    Extending,
    Reviewing,
    Claiming,
    Acknowledging,
    FetchingCredential,
    OpeningBrowser,
    SavingFavourites,
}

impl Operation {
    /// As the banner names it: "Refused: ... (filing)".
    pub fn label(self) -> &'static str {
        match self {
            Operation::Loading => "loading",
            Operation::LoadingActivity => "loading activity",
            Operation::LoadingIncident => "loading the incident",
            Operation::LoadingHistory => "loading history",
            Operation::Filing => "filing",
            Operation::Cancelling => "cancelling",
            Operation::Revoking => "revoking",
            Operation::Extending => "extending",
            Operation::Reviewing => "reviewing",
            Operation::Claiming => "claiming",
            Operation::Acknowledging => "acknowledging",
            Operation::FetchingCredential => "fetching the credential",
            Operation::OpeningBrowser => "opening the browser",
            Operation::SavingFavourites => "saving favourites",
        }
    }
}

/// Everything fetched at once on start and after a reconnect.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The broker's time when the load was answered (the local clock less
    /// the offset its answers set): the first load, answered before any
    /// tick had that offset, places grants by it rather than by the local
    /// clock, which may be minutes off.
    pub now: chrono::DateTime<chrono::Utc>,
    pub me: Me,
    pub roles: Vec<Role>,
    pub requests: Vec<AccessRequest>,
    pub grants: Vec<Grant>,
    pub queue: Vec<AccessRequest>,
    pub break_glass: Vec<AccessRequest>,
    /// Active grants workloads hold that I approve or audit (empty if none,
    /// or if the backend has no workloads).
    pub workload_grants: Vec<Grant>,
}
