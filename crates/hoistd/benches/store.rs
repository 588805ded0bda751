//! Criterion benchmarks of the broker below HTTP, for comparing a change to
//! the store or the audit chain against a baseline
//! (`cargo bench -p hoistd --bench store -- --save-baseline before`).
//! The figures in BENCHMARKS.md come from `load` (over HTTP) and from timing
//! `hoistd audit verify`.
//!
//! - `broker/create_approve_revoke`: one request's life, each step its own
//!   transaction with its audit events, on a real SQLite file.
//! - `audit/append`: one hash-chained audit event in its own transaction.
//! - `audit/verify_20k`: the chain check over 20,000 events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use hoist_api::{AuditKind, CreateRequest, Decision};
use hoistd::audit::{self, NewAuditEvent};
use hoistd::store::{SqliteStore, Store};
use hoistd::{Broker, Policy};
use serde_json::json;

const POLICY: &str = r#"
[settings]
pending_ttl = "2h"
claim_ttl = "10m"
credential_ttl = "5m"
auditor_groups = []
issuer = "hoistd-bench"

[users.alice]
name = "Alice"
[users.bob]
name = "Bob"

[groups]
engineers = ["alice"]
reviewers = ["bob"]

[[roles]]
id = "prod-db-admin"
name = "Production database admin"
scope = "postgres://db-prod-1"
eligible_groups = ["engineers"]
default_duration = "1h"
max_duration = "4h"
approvals = 1
approver_groups = ["reviewers"]
min_justification = 10
"#;

fn event(i: i64) -> NewAuditEvent {
    NewAuditEvent {
        at: Utc::now(),
        kind: AuditKind::Requested,
        actor: "alice".into(),
        subject: Some("alice".into()),
        role: Some("prod-db-admin".into()),
        request_id: Some(format!("req_{i:012}")),
        grant_id: None,
        incident: None,
        reason: Some("Rotate the replication slot after the failover drill".into()),
        details: json!({ "kind": "access", "duration_secs": 3600, "approvals_required": 1 }),
    }
}

fn broker(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hoistd.db")).unwrap();
    let policy = Policy::parse("bench", POLICY).unwrap();
    let broker = Broker::new(Arc::new(store), policy).unwrap();
    let input = CreateRequest {
        role: "prod-db-admin".into(),
        justification: "A routine request for the benchmark".into(),
        ticket: None,
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    };
    c.bench_function("broker/create_approve_revoke", |b| {
        b.iter(|| {
            let (request, _) = broker.create_request("alice", &input, None).unwrap();
            let approved = broker
                .review_request("bob", &request.id, Decision::Approve, None)
                .unwrap();
            let grant = approved.grant_id.unwrap();
            black_box(broker.revoke_grant("alice", &grant, None).unwrap());
        })
    });
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hoistd.db")).unwrap();
    let mut i = 0;
    c.bench_function("audit/append", |b| {
        b.iter(|| {
            i += 1;
            let mut tx = store.transaction().unwrap();
            black_box(audit::append(tx.as_mut(), event(i)).unwrap());
            tx.commit().unwrap();
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hoistd.db")).unwrap();
    let mut tx = store.transaction().unwrap();
    for i in 0..20_000 {
        audit::append(tx.as_mut(), event(i)).unwrap();
    }
    tx.commit().unwrap();
    c.bench_function("audit/verify_20k", |b| {
        b.iter(|| {
            let verdict = audit::verify(&store).unwrap();
            assert_eq!(verdict, audit::Verdict::Intact { entries: 20_000 });
        })
    });
}

criterion_group!(benches, broker, audit);
criterion_main!(benches);
