//! The audit log: the head, entries back as written, the filters, and the
//! scan that verifying the chain reads.

use std::ops::ControlFlow;

use hoist_api::AuditEvent;

use super::append_entries;
use crate::store::{AuditHead, AuditQuery, Store};

fn seqs(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

/// The head is the newest entry; entries come back as written, every
/// field, across transactions.
pub fn audit_round_trip_and_head(store: &dyn Store) {
    let tx = store.transaction().unwrap();
    assert_eq!(tx.audit_head().unwrap(), None);
    assert!(tx.audit(&AuditQuery::default()).unwrap().is_empty());
    drop(tx);

    let mut written = append_entries(store, 3);
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.audit_head().unwrap(),
        Some(AuditHead {
            seq: 3,
            hash: "h3".into()
        })
    );
    drop(tx);
    written.extend(append_entries(store, 2));
    assert_eq!(
        written[3].prev_hash, "h3",
        "a later transaction links to the head"
    );

    let tx = store.transaction().unwrap();
    assert_eq!(tx.audit(&AuditQuery::default()).unwrap(), written);
    assert_eq!(
        tx.audit_head().unwrap(),
        Some(AuditHead {
            seq: 5,
            hash: "h5".into()
        })
    );
}

/// Audit lists filter by sequence, person, incident and request, oldest
/// first, up to the limit: the oldest that match, or the newest.
pub fn audit_filters(store: &dyn Store) {
    let all = append_entries(store, 20);
    let tx = store.transaction().unwrap();
    let expect = |query: AuditQuery, keep: &dyn Fn(&AuditEvent) -> bool| {
        let wanted: Vec<i64> = all.iter().filter(|e| keep(e)).map(|e| e.seq).collect();
        let found = tx.audit(&query).unwrap();
        assert_eq!(seqs(&found), wanted, "{query:?}");
        let limited = tx
            .audit(&AuditQuery {
                limit: Some(2),
                ..query.clone()
            })
            .unwrap();
        assert_eq!(
            seqs(&limited),
            wanted[..wanted.len().min(2)],
            "{query:?} limit 2"
        );
        let newest = tx
            .audit(&AuditQuery {
                limit: Some(2),
                newest: true,
                ..query.clone()
            })
            .unwrap();
        assert_eq!(
            seqs(&newest),
            wanted[wanted.len().saturating_sub(2)..],
            "{query:?} newest 2, oldest first"
        );
    };
    let involves =
        |e: &AuditEvent, user: &str| e.actor == user || e.subject.as_deref() == Some(user);
    expect(AuditQuery::default(), &|_| true);
    expect(
        AuditQuery {
            after_seq: 15,
            ..AuditQuery::default()
        },
        &|e| e.seq > 15,
    );
    expect(
        AuditQuery {
            involving: Some("user1".into()),
            ..AuditQuery::default()
        },
        &|e| involves(e, "user1"),
    );
    expect(
        AuditQuery {
            incident: Some("INC-5".into()),
            ..AuditQuery::default()
        },
        &|e| e.incident.as_deref() == Some("INC-5"),
    );
    expect(
        AuditQuery {
            request_id: Some("req_1".into()),
            ..AuditQuery::default()
        },
        &|e| e.request_id.as_deref() == Some("req_1"),
    );
    expect(
        AuditQuery {
            after_seq: 4,
            involving: Some("user2".into()),
            incident: Some("INC-5".into()),
            ..AuditQuery::default()
        },
        &|e| e.seq > 4 && involves(e, "user2") && e.incident.as_deref() == Some("INC-5"),
    );
}

/// The scan visits every entry in sequence order as stored: times in
/// milliseconds, kinds by their wire names, details as compact JSON text,
/// and stops when told to.
pub fn audit_scan_order_and_stored_text(store: &dyn Store) {
    let all = append_entries(store, 30);
    let tx = store.transaction().unwrap();
    let mut seen = Vec::new();
    tx.scan_audit(&mut |stored| {
        let written = &all[seen.len()];
        assert_eq!(stored.seq, written.seq);
        assert_eq!(stored.at_ms, written.at.timestamp_millis());
        assert_eq!(stored.kind, written.kind.as_str());
        assert_eq!(stored.actor, written.actor);
        assert_eq!(stored.subject, written.subject.as_deref());
        assert_eq!(stored.role, written.role.as_deref());
        assert_eq!(stored.request_id, written.request_id.as_deref());
        assert_eq!(stored.grant_id, written.grant_id.as_deref());
        assert_eq!(stored.incident, written.incident.as_deref());
        assert_eq!(stored.reason, written.reason.as_deref());
        assert_eq!(stored.details, written.details.to_string());
        assert_eq!(stored.prev_hash, written.prev_hash);
        assert_eq!(stored.hash, written.hash);
        seen.push(stored.seq);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, seqs(&all));

    let mut visited = 0;
    tx.scan_audit(&mut |_| {
        visited += 1;
        if visited == 10 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(visited, 10, "the scan stops when the visitor breaks");
}

/// A snapshot reads the log as it stood when it was taken, and writers
/// begin and commit while it is open, even in the middle of its scan
/// (rule 8). The writes run on this same thread: were the snapshot holding
/// the write lock, they would never return.
pub fn snapshots_see_one_moment_and_hold_up_no_writer(store: &dyn Store) {
    let empty = store.snapshot().unwrap();
    assert_eq!(empty.audit_head().unwrap(), None);
    drop(empty);

    append_entries(store, 3);
    let snapshot = store.snapshot().unwrap();
    append_entries(store, 2);
    assert_eq!(
        snapshot.audit_head().unwrap(),
        Some(AuditHead {
            seq: 3,
            hash: "h3".into()
        }),
        "a snapshot sees no write committed after it was taken"
    );
    let mut seen = Vec::new();
    snapshot
        .scan_audit(&mut |entry| {
            if entry.seq == 2 {
                append_entries(store, 1);
            }
            seen.push((entry.seq, entry.hash.to_string()));
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        seen,
        [(1, "h1".into()), (2, "h2".into()), (3, "h3".into())],
        "the scan reads the snapshot's moment, with writes committed during it"
    );
    drop(snapshot);

    let tx = store.transaction().unwrap();
    assert_eq!(tx.audit_head().unwrap().map(|head| head.seq), Some(6));
    drop(tx);
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .audit_head()
            .unwrap()
            .map(|head| head.seq),
        Some(6),
        "a new snapshot sees every commit before it"
    );
}
