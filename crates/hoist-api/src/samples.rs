//! Values of the wire types for the round-trip tests of each module.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{AccessRequest, Claim, Decision, Grant, GrantState, RequestKind, RequestState, Review};

/// Asserts that `value` comes back from its JSON unchanged.
pub fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
    let json = serde_json::to_string(&value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(value, back, "{json}");
}

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub fn request() -> AccessRequest {
    AccessRequest {
        id: "req_1".into(),
        kind: RequestKind::Access,
        role: "prod-db-admin".into(),
        role_name: "Prod DB admin".into(),
        requester: "alice".into(),
        justification: "investigate INC-1".into(),
        ticket: Some("INC-1".into()),
        incident: None,
        duration_secs: 1800,
        starts_at: None,
        break_glass: false,
        state: RequestState::Pending,
        created_at: t("2026-01-01T00:00:00Z"),
        updated_at: t("2026-01-01T00:00:00Z"),
        lapses_at: Some(t("2026-01-01T01:00:00Z")),
        approvals_required: 2,
        reviews: vec![Review {
            reviewer: "bob".into(),
            decision: Decision::Approve,
            comment: None,
            at: t("2026-01-01T00:01:00Z"),
        }],
        claim: Some(Claim {
            by: "dave".into(),
            until: t("2026-01-01T00:05:00Z"),
        }),
        grant_id: None,
        reason: None,
        acknowledgement: None,
        tier: None,
        approvers: Vec::new(),
        signed_in_at: None,
    }
}

pub fn grant() -> Grant {
    Grant {
        id: "gr_1".into(),
        request_id: "req_1".into(),
        role: "prod-db-admin".into(),
        role_name: "Prod DB admin".into(),
        holder: "alice".into(),
        starts_at: t("2026-01-01T00:00:00Z"),
        expires_at: t("2026-01-01T00:30:00Z"),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
        break_glass: false,
        ticket: None,
        incident: Some("INC-1".into()),
        justification: "x".into(),
        access: None,
    }
}
