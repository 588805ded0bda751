//! Grants: bounded access that a request activated, and asking for more time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::TargetAccess;

/// State of a grant. A grant exists only once access was activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Active,
    Expired,
    Revoked,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Expired, Self::Revoked]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// `GET /v1/grants` and `GET /v1/grants/{id}`: bounded access to a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: String,
    /// The request that created the grant.
    pub request_id: String,
    pub role: String,
    pub role_name: String,
    pub holder: String,
    pub starts_at: DateTime<Utc>,
    /// Never absent, never beyond the role's maximum, in broker time.
    pub expires_at: DateTime<Utc>,
    pub state: GrantState,
    pub ended_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub break_glass: bool,
    pub ticket: Option<String>,
    pub incident: Option<String>,
    pub justification: String,
    /// Where the access lives at the role's target and whether it is there
    /// yet; absent for a role with no target. A grant with a target is
    /// usable only once this is `live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<TargetAccess>,
}

impl Grant {
    /// Whether this copy of the grant was overtaken by `other`, a later
    /// change of the same grant (events relayed by several broker instances
    /// can arrive out of order). Its end only moves later (an extension;
    /// an early end keeps `expires_at` and sets `ended_at`), a grant that
    /// ended at an end never becomes active at that end again, and its
    /// access's `updated_at` is strictly later at each change. The start
    /// comes first, for a broker whose ids name a role's activations
    /// rather than one grant.
    pub fn is_older_than(&self, other: &Grant) -> bool {
        self.version() < other.version()
    }

    fn version(&self) -> (DateTime<Utc>, DateTime<Utc>, bool, Option<DateTime<Utc>>) {
        (
            self.starts_at,
            self.expires_at,
            self.state != GrantState::Active,
            self.access.as_ref().map(|access| access.updated_at),
        )
    }
}

/// `POST /v1/grants/{id}/extend`: ask for more time on an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    /// More time, at most the role's maximum.
    #[serde(deserialize_with = "crate::numbers::whole")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub duration_secs: u64,
    /// Defaults to the justification of the request that created the grant.
    #[serde(default)]
    #[schema(
        max_length = 4096,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub justification: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{grant, round_trip};

    #[test]
    fn of_two_copies_of_a_grant_the_later_change_is_newer() {
        let active = grant();
        let mut extended = grant();
        extended.expires_at += chrono::TimeDelta::minutes(30);
        let mut revoked = grant();
        revoked.state = GrantState::Revoked;
        revoked.ended_at = Some(active.starts_at);
        assert!(active.is_older_than(&extended));
        assert!(active.is_older_than(&revoked), "an end is never undone");
        assert!(!revoked.is_older_than(&active));
        // An extension saved while another instance's clock already read
        // the grant as expired at its old end is the later word.
        let mut expired = grant();
        expired.state = GrantState::Expired;
        expired.ended_at = Some(active.expires_at);
        assert!(expired.is_older_than(&extended));
        assert!(active.is_older_than(&expired));
        // A later activation under the same id is newer than any copy of
        // an earlier one.
        let mut again = grant();
        again.starts_at += chrono::TimeDelta::hours(2);
        again.expires_at += chrono::TimeDelta::hours(2);
        assert!(revoked.is_older_than(&again));
        assert!(!active.is_older_than(&active.clone()), "the same copy");
        // With the same end, the access's later change is the newer.
        let access = |at: &str| crate::TargetAccess {
            target: "db-prod-1".into(),
            kind: "postgres".into(),
            state: crate::AccessState::Removing,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
            updated_at: crate::samples::t(at),
            live_until: None,
        };
        let (mut removing, mut removed) = (revoked.clone(), revoked);
        removing.access = Some(access("2026-01-01T00:10:00.001Z"));
        removed.access = Some(crate::TargetAccess {
            state: crate::AccessState::Removed,
            ..access("2026-01-01T00:10:00.002Z")
        });
        assert!(removing.is_older_than(&removed));
        assert!(!removed.is_older_than(&removing));
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(grant());
        round_trip(ExtendInput {
            duration_secs: 600,
            justification: None,
        });
    }
}
