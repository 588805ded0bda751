//! What every store backend must pass (feature `testing`): each check takes
//! a fresh, empty store and panics, naming what went wrong, where the
//! backend breaks the contract of [`Store`] and [`Tx`] or one of the
//! transaction rules in the [`store`](crate::store) docs.
//!
//! A backend's tests get one `#[test]` per check from
//! [`store_conformance!`](crate::store_conformance), given a function that
//! opens a fresh store and runs a check on it:
//!
//! ```no_run
//! use hoistd::store::{SqliteStore, Store};
//!
//! fn with_fresh_sqlite(check: fn(&dyn Store)) {
//!     let dir = tempfile::tempdir().unwrap();
//!     check(&SqliteStore::open(&dir.path().join("hoistd.db")).unwrap());
//! }
//!
//! hoistd::store_conformance!(with_fresh_sqlite);
//! ```
//!
//! The checks write whatever values they like: the store keeps what it is
//! given (the audit hashes here link nothing, and no lifecycle rule is
//! applied), so they need nothing above the store.

// Test support: a broken contract is a failed test, so these panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod notifications;
mod records;
mod rules;
mod targets;

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessRequest, Acknowledgement, AuditEvent, AuditKind, Claim, Grant, GrantState, RequestKind,
    RequestState,
};

pub use audit::{
    audit_filters, audit_round_trip_and_head, audit_scan_order_and_stored_text,
    snapshots_see_one_moment_and_hold_up_no_writer,
};
pub use notifications::{
    notification_deliveries, notifications_outbox, notifications_skipped_by_channel,
};
pub use records::{
    broker_keys, due_work_and_next_due, grant_queries, grants_round_trip, idempotency_keys,
    identities, purges_forget_only_what_is_old, request_queries, request_with_holding,
    requests_round_trip, signing_keys, slack_replays, ssh_authorities, ssh_authority_targets,
    uncollected_exchanges, workload_exchanges,
};
pub use rules::{
    appends_and_inserts_keep_their_order, conflicts_and_missing_rows, connections_in_use,
    dropping_a_transaction_rolls_everything_back, fenced_transactions_write_only_under_their_lease,
    optimistic_commits_check_their_reads, racing_appends_link_to_the_head,
    racing_appends_take_turns, racing_optimistic_reviews_decide_once,
    racing_reviews_let_exactly_one_decide, racing_writers_end_a_grant_and_its_effect_once,
    reads_see_what_was_committed, transactions_commit_only_before_their_moment,
    transactions_read_their_own_writes,
};
pub use targets::{
    drift_removals, effects_outbox, effects_skipped_by_target, grant_access_round_trip_and_queries,
    target_handles, webhook_deliveries,
};

use super::{Store, Tx};

/// One `#[test]` per conformance check, each on a fresh store from
/// `$with_fresh_store`, a `fn(fn(&dyn Store))` that opens one and runs the
/// check on it. The list of checks is kept here, once: a new check is a
/// function in this module and a name below.
#[macro_export]
macro_rules! store_conformance {
    ($with_fresh_store:path) => {
        $crate::store_conformance!(@each $with_fresh_store;
            requests_round_trip,
            request_queries,
            grants_round_trip,
            grant_queries,
            request_with_holding,
            due_work_and_next_due,
            idempotency_keys,
            purges_forget_only_what_is_old,
            signing_keys,
            broker_keys,
            ssh_authorities,
            ssh_authority_targets,
            identities,
            audit_round_trip_and_head,
            audit_filters,
            audit_scan_order_and_stored_text,
            snapshots_see_one_moment_and_hold_up_no_writer,
            conflicts_and_missing_rows,
            dropping_a_transaction_rolls_everything_back,
            reads_see_what_was_committed,
            racing_reviews_let_exactly_one_decide,
            racing_writers_end_a_grant_and_its_effect_once,
            transactions_read_their_own_writes,
            racing_appends_take_turns,
            racing_optimistic_reviews_decide_once,
            racing_appends_link_to_the_head,
            appends_and_inserts_keep_their_order,
            grant_access_round_trip_and_queries,
            drift_removals,
            effects_outbox,
            effects_skipped_by_target,
            webhook_deliveries,
            target_handles,
            workload_exchanges,
            uncollected_exchanges,
            connections_in_use,
            fenced_transactions_write_only_under_their_lease,
            transactions_commit_only_before_their_moment,
            notifications_outbox,
            notifications_skipped_by_channel,
            notification_deliveries,
            slack_replays,
        );
    };
    (@each $with_fresh_store:path; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $with_fresh_store($crate::store::conformance::$check);
            }
        )*
    };
}

/// A moment at millisecond precision, `ms` after a fixed start.
pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_767_225_600_123).unwrap() + TimeDelta::milliseconds(ms)
}

/// A request with every optional field filled in.
fn full_request(id: &str) -> AccessRequest {
    AccessRequest {
        id: id.into(),
        kind: RequestKind::Extension,
        role: "prod-db".into(),
        role_name: "Base de données « prod »".into(),
        requester: "alice".into(),
        justification: "Rotate the slot: \"quotes\", back\\slash, ünïcödé, 🦀\nand a second line"
            .into(),
        ticket: Some("INC-42".into()),
        incident: Some("INC-7".into()),
        duration_secs: 5_400,
        starts_at: Some(at(60_000)),
        break_glass: true,
        state: RequestState::Pending,
        created_at: at(1),
        updated_at: at(2),
        lapses_at: Some(at(3_600_000)),
        approvals_required: 3,
        reviews: Vec::new(),
        claim: Some(Claim {
            by: "dave".into(),
            until: at(600_000),
        }),
        grant_id: Some("gr_extended".into()),
        reason: Some("a reason".into()),
        acknowledgement: Some(Acknowledgement {
            by: "bob".into(),
            comment: Some("seen".into()),
            at: at(5),
        }),
        // Kept as filed (migration 6), so every backend must store it.
        tier: Some(0),
        approvers: Vec::new(),
        // Weighed against the role's step-up at each decision (migration 25).
        signed_in_at: Some(at(-90_000)),
    }
}

/// A request with every optional field empty.
pub fn bare_request(id: &str, requester: &str, role: &str, created_ms: i64) -> AccessRequest {
    AccessRequest {
        id: id.into(),
        kind: RequestKind::Access,
        role: role.into(),
        role_name: role.into(),
        requester: requester.into(),
        justification: "j".into(),
        ticket: None,
        incident: None,
        duration_secs: 60,
        starts_at: None,
        break_glass: false,
        state: RequestState::Approved,
        created_at: at(created_ms),
        updated_at: at(created_ms),
        lapses_at: None,
        approvals_required: 0,
        reviews: Vec::new(),
        claim: None,
        grant_id: None,
        reason: None,
        acknowledgement: None,
        tier: None,
        approvers: Vec::new(),
        signed_in_at: None,
    }
}

pub(crate) fn grant(id: &str, request_id: &str, holder: &str, starts_ms: i64) -> Grant {
    Grant {
        id: id.into(),
        request_id: request_id.into(),
        role: "prod-db".into(),
        role_name: "Prod DB".into(),
        holder: holder.into(),
        starts_at: at(starts_ms),
        expires_at: at(starts_ms + 1_800_000),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
        break_glass: false,
        ticket: None,
        incident: None,
        justification: "j".into(),
        access: None,
    }
}

/// The audit entry at `seq`, linked to `prev_hash`; its own hash is
/// `h<seq>`, which the store keeps as it is. Every fourth is of a kind
/// this build does not know, as a newer broker on the same database writes.
fn entry(seq: i64, prev_hash: &str) -> AuditEvent {
    let kind = if seq % 4 == 3 {
        AuditKind::parse("written_by_a_newer_broker")
    } else {
        AuditKind::ALL[seq as usize % AuditKind::ALL.len()].clone()
    };
    AuditEvent {
        seq,
        at: at(seq),
        kind,
        actor: format!("user{}", seq % 3),
        subject: Some(format!("user{}", (seq + 1) % 3)),
        role: Some("prod-db".into()),
        request_id: Some(format!("req_{}", seq % 4)),
        grant_id: (seq % 2 == 0).then(|| format!("gr_{seq}")),
        incident: (seq % 5 == 0).then(|| "INC-5".to_string()),
        reason: Some("why: \"quoted\", ünïcödé".into()),
        details: serde_json::json!({ "n": seq, "nested": { "list": [1, 2, 3], "text": "é" } }),
        prev_hash: prev_hash.into(),
        hash: format!("h{seq}"),
    }
}

/// Appends `count` entries in one committed transaction, each linked to
/// the store's head; returns them.
fn append_entries(store: &dyn Store, count: i64) -> Vec<AuditEvent> {
    let mut tx = store.transaction().unwrap();
    let mut written = Vec::new();
    for _ in 0..count {
        let next = next_entry(tx.as_ref());
        tx.insert_audit(&next).unwrap();
        written.push(next);
    }
    tx.commit().unwrap();
    written
}

/// The entry that follows the store's head.
fn next_entry(tx: &dyn Tx) -> AuditEvent {
    match tx.audit_head().unwrap() {
        Some(head) => entry(head.seq + 1, &head.hash),
        None => entry(1, "genesis"),
    }
}

pub(crate) fn insert_requests(store: &dyn Store, requests: &[AccessRequest]) {
    let mut tx = store.transaction().unwrap();
    for request in requests {
        tx.insert_request(request).unwrap();
    }
    tx.commit().unwrap();
}

fn ids<'a>(items: impl IntoIterator<Item = &'a AccessRequest>) -> Vec<&'a str> {
    items.into_iter().map(|r| r.id.as_str()).collect()
}
