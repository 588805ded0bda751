//! Wire objects for the core's tests: a role, a grant and a request with
//! plain defaults, for a test to change what it is about.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessRequest, ApprovalRule, Grant, GrantState, RequestKind, RequestState, Role, TicketRule,
};

pub(crate) fn role(id: &str) -> Role {
    Role {
        id: id.into(),
        name: id.to_uppercase(),
        description: String::new(),
        scope: String::new(),
        default_duration_secs: 1800,
        max_duration_secs: 7200,
        approval: ApprovalRule {
            approvals: 1,
            approver_groups: vec!["dba".into()],
            approvers: vec!["bob".into()],
        },
        break_glass: false,
        ticket: TicketRule {
            required: false,
            pattern: None,
        },
        min_justification: 5,
        target: None,
        tier: None,
    }
}

pub(crate) fn grant(id: &str, role: &str, holder: &str, expires_at: DateTime<Utc>) -> Grant {
    Grant {
        id: id.into(),
        request_id: format!("req_{id}"),
        role: role.into(),
        role_name: role.to_uppercase(),
        holder: holder.into(),
        starts_at: expires_at - TimeDelta::minutes(30),
        expires_at,
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
        break_glass: false,
        ticket: None,
        incident: None,
        justification: "rotate the keys".into(),
        access: None,
    }
}

pub(crate) fn request(id: &str, role: &str, requester: &str, now: DateTime<Utc>) -> AccessRequest {
    AccessRequest {
        id: id.into(),
        kind: RequestKind::Access,
        role: role.into(),
        role_name: role.to_uppercase(),
        requester: requester.into(),
        justification: "rotate the keys".into(),
        ticket: None,
        incident: None,
        duration_secs: 1800,
        starts_at: None,
        break_glass: false,
        state: RequestState::Pending,
        created_at: now,
        updated_at: now,
        lapses_at: Some(now + TimeDelta::hours(1)),
        approvals_required: 1,
        reviews: vec![],
        claim: None,
        grant_id: None,
        reason: None,
        acknowledgement: None,
        tier: None,
        approvers: Vec::new(),
        signed_in_at: None,
    }
}
