//! What the broker behind the TUI can do beyond roles, requests and grants.
//! The keymap, the footer, the help and the tabs consult it, and `update`
//! ignores what it rules out, so what a backend cannot do is hidden rather
//! than offered and then refused.

use super::action::Action;
use super::state::Screen;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Approve and deny others' requests (the review queue).
    pub review: bool,
    /// Claim a request under review, so other approvers see who is on it.
    pub claim: bool,
    /// Acknowledge break-glass activations after the fact.
    pub acknowledge: bool,
    pub cancel: bool,
    pub revoke: bool,
    pub extend: bool,
    /// A short-lived credential for an active grant.
    pub credential: bool,
    /// A requester's earlier requests for the role, beside a review.
    pub history: bool,
    /// Everything filed under one incident reference.
    pub incidents: bool,
    /// The audit log: the Activity screen.
    pub audit: bool,
    /// Grants that workloads (CI jobs, bots) hold, shown to their approvers
    /// and to auditors on the Grants screen.
    pub workload_grants: bool,
    /// Role ids are names people know (`prod-db-admin`); where they are not
    /// (Entra's `dir:<guid>`), lists show the role's name instead.
    pub readable_role_ids: bool,
    /// The broker names the roles I approve (`Me::approver_for`). Where it
    /// does not (Entra), someone else's request that reaches me came from
    /// my review queue, so it waits for me.
    pub approver_roles: bool,
}

impl Capabilities {
    /// Everything hoistd offers.
    pub const ALL: Capabilities = Capabilities {
        review: true,
        claim: true,
        acknowledge: true,
        cancel: true,
        revoke: true,
        extend: true,
        credential: true,
        history: true,
        incidents: true,
        audit: true,
        workload_grants: true,
        readable_role_ids: true,
        approver_roles: true,
    };

    /// Whether the screen has anything to show with this backend.
    pub fn shows(self, screen: Screen) -> bool {
        match screen {
            Screen::Reviews => self.review || self.acknowledge,
            Screen::Activity => self.audit,
            Screen::Incidents => self.incidents,
            Screen::Roles | Screen::Requests | Screen::Grants => true,
        }
    }

    /// Whether the action can do anything with this backend.
    pub fn allows(self, action: &Action) -> bool {
        match action {
            Action::GoTo(screen) => self.shows(*screen),
            Action::Approve | Action::Deny => self.review,
            Action::Claim => self.claim,
            Action::Acknowledge => self.acknowledge,
            Action::Cancel => self.cancel,
            Action::Revoke => self.revoke,
            Action::RevokeIncident => self.revoke && self.incidents,
            Action::Extend => self.extend,
            Action::CycleActors => self.audit,
            Action::ShowCredential | Action::CopyCredential | Action::CopyUri => self.credential,
            _ => true,
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::ALL
    }
}
