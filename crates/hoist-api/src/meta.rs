//! Health, identity, sign-in configuration and the roles a caller may request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::RoleTarget;

/// `GET /v1/health`: liveness and the broker's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub time: DateTime<Utc>,
}

/// `GET /v1/auth/config` (no authentication): how a client signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthConfig {
    /// OpenID providers whose ID tokens the broker accepts as bearer tokens.
    pub issuers: Vec<AuthIssuer>,
    /// Whether static tokens from the policy file are accepted (`hoist login --with-token`).
    pub static_tokens: bool,
}

/// One OpenID provider a client may sign in through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthIssuer {
    pub issuer: String,
    /// The public client id to sign in as; ID tokens must carry it (or
    /// another accepted audience) in `aud`.
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `device` (RFC 8628) and/or `browser` (authorization code + PKCE with a
    /// loopback redirect).
    pub flows: Vec<String>,
}

/// `GET /v1/me`: who the bearer token belongs to, under the current policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user: String,
    pub display_name: String,
    pub groups: Vec<String>,
    /// Roles whose approval rule names a group the caller is in.
    pub approver_for: Vec<String>,
    /// Whether the caller may read the whole audit log.
    pub auditor: bool,
}

/// Who must agree before a role is granted. `approvals == 0` means the
/// request is approved as soon as it is filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRule {
    pub approvals: u32,
    pub approver_groups: Vec<String>,
    /// Everyone in those groups, as the policy stands now.
    pub approvers: Vec<String>,
}

/// Whether a role wants a ticket reference, and its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TicketRule {
    pub required: bool,
    /// A regular expression the whole reference must match.
    pub pattern: Option<String>,
}

/// `GET /v1/roles`: a role the caller is eligible for, with its policy terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The target system or scope the role grants access to.
    pub scope: String,
    pub default_duration_secs: u64,
    pub max_duration_secs: u64,
    pub approval: ApprovalRule,
    /// Whether the caller may use break-glass on this role.
    pub break_glass: bool,
    pub ticket: TicketRule,
    pub min_justification: u32,
    /// The target system a grant of this role creates access at; absent for
    /// a role whose grant is only a signed credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RoleTarget>,
    /// The role's risk tier, 0 (most critical) to 3; absent where the broker
    /// has no tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 3)]
    pub tier: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{round_trip, t};

    #[test]
    fn every_type_round_trips() {
        round_trip(Health {
            status: "ok".into(),
            version: "0.1.0".into(),
            time: t("2026-01-01T00:00:00Z"),
        });
        round_trip(AuthConfig {
            issuers: vec![AuthIssuer {
                issuer: "https://idp.example".into(),
                client_id: "hoist".into(),
                scopes: vec!["openid".into()],
                flows: vec!["device".into()],
            }],
            static_tokens: true,
        });
        round_trip(Me {
            user: "bob".into(),
            display_name: "Bob".into(),
            groups: vec!["db-approvers".into()],
            approver_for: vec!["prod-db-admin".into()],
            auditor: false,
        });
        round_trip(Role {
            id: "r".into(),
            name: "R".into(),
            description: "d".into(),
            scope: "s".into(),
            default_duration_secs: 60,
            max_duration_secs: 120,
            approval: ApprovalRule {
                approvals: 1,
                approver_groups: vec!["g".into()],
                approvers: vec!["bob".into()],
            },
            break_glass: true,
            ticket: TicketRule {
                required: true,
                pattern: Some("^INC-[0-9]+$".into()),
            },
            min_justification: 10,
            target: Some(RoleTarget {
                name: "db-prod-1".into(),
                kind: "postgres".into(),
                principals: Vec::new(),
            }),
            tier: Some(0),
        });
    }
}
