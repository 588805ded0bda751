//! Side effects `update` asks for; the worker runs them and reports back as
//! actions. `update` itself never does I/O.

use hoist_api::{CreateRequest, Decision};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Fetch everything again (start, reconnect, resync, refresh).
    LoadAll,
    /// Several commands at once (a bundle, a revoke-all); run side by side.
    Batch(Vec<Command>),
    LoadActivity,
    LoadHistory(String),
    /// The grant of a request under review, for where its access is.
    LoadGrant(String),
    LoadIncident(String),
    /// File a request; the key makes a retry return the same request.
    Submit {
        body: CreateRequest,
        idempotency_key: String,
    },
    Cancel(String),
    Revoke {
        grant_id: String,
        reason: Option<String>,
    },
    Extend {
        grant_id: String,
        duration_secs: u64,
        justification: Option<String>,
        /// The same for a retry of an extension whose answer was lost.
        idempotency_key: String,
    },
    Review {
        request_id: String,
        decision: Decision,
        comment: Option<String>,
    },
    Claim(String),
    Acknowledge {
        request_id: String,
        comment: Option<String>,
    },
    Credential {
        grant_id: String,
        copy: bool,
    },
    /// The credential of a grant at an ssh target: a certificate for the
    /// person's own SSH key.
    Certify {
        grant_id: String,
        copy: bool,
    },
    /// Sign the person in again, freshly (a role's step-up asks for a
    /// recent sign-in), then run `then`.
    SignInAgain {
        then: Box<Command>,
    },
    OpenUrl(String),
    /// Ring the terminal bell and, where the terminal supports it, raise a desktop notice.
    Notify(String),
    /// Put text on the clipboard (OSC 52).
    Copy(String),
    SaveFavourites(Vec<String>),
    /// Open this profile of the config, signing in if need be, and show it
    /// instead of the one on screen. The terminal loop does this, not the
    /// worker: the worker belongs to the backend being left.
    SwitchProfile(String),
}
