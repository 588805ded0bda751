//! The audit log's hash chain: each entry linked to the head the store
//! reports and hashed here, and the whole chain checked. The store only
//! reads the head and saves what it is given.

use std::collections::HashMap;
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use hoist_api::{AuditEvent, AuditKind};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::checkpoint::Checkpoint;
use crate::store::{Snapshot, Store, StoreError, StoredAudit, Tx};

pub use crate::store::GENESIS;

/// An audit event before it has its place in the chain.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    pub actor: String,
    pub subject: Option<String>,
    pub role: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub incident: Option<String>,
    pub reason: Option<String>,
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    /// An event by `actor` about nothing yet: no subject, role, request,
    /// grant, incident or reason, and empty details, for the caller to fill.
    pub fn new(kind: AuditKind, actor: impl Into<String>, at: DateTime<Utc>) -> Self {
        NewAuditEvent {
            at,
            kind,
            actor: actor.into(),
            subject: None,
            role: None,
            request_id: None,
            grant_id: None,
            incident: None,
            reason: None,
            details: serde_json::json!({}),
        }
    }
}

/// Appends an event to the chain inside `tx`: the store gives it the next
/// sequence number after the head and links it to the head's hash, in the
/// one transaction, and refuses a taken sequence number, so the chain
/// cannot fork. The entry is hashed as [`entry_hash`] says; the store
/// completes the hash from the head (see [`crate::store::link`]), since it
/// may learn the head only when the entry is written.
pub fn append(tx: &mut dyn Tx, event: NewAuditEvent) -> Result<AuditEvent, StoreError> {
    // Millisecond precision is what is stored, so hash exactly that.
    let at = DateTime::from_timestamp_millis(event.at.timestamp_millis()).unwrap_or(event.at);
    let mut entry = AuditEvent {
        seq: 0,
        at,
        kind: event.kind,
        actor: event.actor,
        subject: event.subject,
        role: event.role,
        request_id: event.request_id,
        grant_id: event.grant_id,
        incident: event.incident,
        reason: event.reason,
        details: event.details,
        prev_hash: String::new(),
        hash: String::new(),
    };
    let tail = tail(&entry);
    tx.append_audit(&mut entry, &tail)?;
    Ok(entry)
}

/// What [`crate::store::link`] hashes after `{"seq":N`: the serialised
/// fields of [`entry_hash`] that follow the sequence number.
fn tail(event: &AuditEvent) -> Vec<u8> {
    const SEQ_ZERO: &[u8] = br#"{"seq":0"#;
    let mut buf = Vec::new();
    // Serialising plain fields to JSON cannot fail.
    let _ = serde_json::to_writer(&mut buf, &hashed(0, event));
    buf.split_off(SEQ_ZERO.len())
}

/// The fields an entry's hash covers, in a fixed order, serialised as
/// compact JSON. `details` is the JSON text the store keeps.
#[derive(Serialize)]
struct Hashed<'a, D: Serialize + ?Sized> {
    seq: i64,
    at_ms: i64,
    kind: &'a str,
    actor: &'a str,
    subject: Option<&'a str>,
    role: Option<&'a str>,
    request_id: Option<&'a str>,
    grant_id: Option<&'a str>,
    incident: Option<&'a str>,
    reason: Option<&'a str>,
    details: &'a D,
}

/// Hex SHA-256 over the previous hash and the entry's fields.
pub fn entry_hash(prev_hash: &str, event: &AuditEvent) -> String {
    hex::encode(digest(
        &mut Vec::new(),
        prev_hash,
        &hashed(event.seq, event),
    ))
}

/// The fields of `event` its hash covers, at sequence number `seq`.
fn hashed(seq: i64, event: &AuditEvent) -> Hashed<'_, serde_json::Value> {
    Hashed {
        seq,
        at_ms: event.at.timestamp_millis(),
        kind: event.kind.as_str(),
        actor: &event.actor,
        subject: event.subject.as_deref(),
        role: event.role.as_deref(),
        request_id: event.request_id.as_deref(),
        grant_id: event.grant_id.as_deref(),
        incident: event.incident.as_deref(),
        reason: event.reason.as_deref(),
        details: &event.details,
    }
}

/// SHA-256 over the previous hash and the fields, serialised into `buf`
/// (reused across entries, so verifying allocates nothing per entry).
fn digest<D: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    prev_hash: &str,
    fields: &Hashed<'_, D>,
) -> [u8; 32] {
    buf.clear();
    // Serialising plain fields to JSON cannot fail.
    let _ = serde_json::to_writer(&mut *buf, fields);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(&buf[..]);
    hasher.finalize().into()
}

/// Whether a stored entry's hash is the hash of its contents as stored (the
/// store writes `details` as the compact JSON the hash was computed over, so
/// it is hashed as it is, not parsed and written again). Text around the
/// JSON value, which the parser would skip and the hash not cover, is an
/// alteration too.
fn hash_holds(buf: &mut Vec<u8>, entry: &StoredAudit<'_>) -> bool {
    let Ok(details) = serde_json::from_str::<&RawValue>(entry.details) else {
        return false;
    };
    if details.get().len() != entry.details.len() {
        return false;
    }
    let fields = Hashed {
        seq: entry.seq,
        at_ms: entry.at_ms,
        kind: entry.kind,
        actor: entry.actor,
        subject: entry.subject,
        role: entry.role,
        request_id: entry.request_id,
        grant_id: entry.grant_id,
        incident: entry.incident,
        reason: entry.reason,
        details,
    };
    let mut hex = [0_u8; 64];
    hex::encode_to_slice(digest(buf, entry.prev_hash, &fields), &mut hex).is_ok()
        && hex == entry.hash.as_bytes()
}

/// What `hoistd audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        entries: u64,
    },
    /// The first entry that does not fit the chain, and why.
    Broken {
        seq: i64,
        reason: String,
    },
}

/// Checks the whole chain: every entry in sequence, linked to the one before
/// it, and hashing to its stored hash. Names the first entry that fails.
///
/// The chain alone cannot show that entries were cut off the end, or that
/// the whole log was recomputed: see [`verify_against`].
pub fn verify(store: &dyn Store) -> Result<Verdict, StoreError> {
    verify_against(store, &[])
}

/// [`verify`], and also that the log still holds every checkpointed entry
/// with the hash that was signed (the checkpoints' signatures are checked
/// where they are read, by [`crate::checkpoint::read_verified`]). A log cut
/// short, emptied, or rewritten and rehashed from some entry on then fails.
pub fn verify_against(
    store: &dyn Store,
    checkpoints: &[Checkpoint],
) -> Result<Verdict, StoreError> {
    // A snapshot, not a transaction: a transaction would hold the write lock
    // for the whole scan (about a second per million entries).
    verify_snapshot(store.snapshot()?.as_ref(), checkpoints)
}

/// [`verify_against`] on a snapshot taken by the caller (of a SQLite file
/// read on a read-only connection, say).
pub fn verify_snapshot(
    tx: &dyn Snapshot,
    checkpoints: &[Checkpoint],
) -> Result<Verdict, StoreError> {
    let signed: HashMap<i64, Vec<&Checkpoint>> =
        checkpoints
            .iter()
            .fold(HashMap::new(), |mut signed, checkpoint| {
                signed.entry(checkpoint.seq).or_default().push(checkpoint);
                signed
            });
    let mut prev_hash = String::from(GENESIS);
    let mut expected_seq = 1;
    let mut entries = 0;
    let mut broken = None;
    let mut buf = Vec::with_capacity(1024);
    let scanned = tx.scan_audit(&mut |entry| {
        let reason = if entry.seq != expected_seq {
            Some(format!("expected entry {expected_seq} here, found entry {} (an entry was removed or inserted)", entry.seq))
        } else if entry.prev_hash != prev_hash {
            Some("its prev_hash does not match the entry before it".to_string())
        } else if !hash_holds(&mut buf, entry) {
            Some("its contents do not match its hash (the entry was altered)".to_string())
        } else {
            signed
                .get(&entry.seq)
                .and_then(|signed| signed.iter().find(|checkpoint| checkpoint.hash != entry.hash))
                .map(|checkpoint| {
                    format!(
                        "its hash is not the one signed in the checkpoint of {} (the log was rewritten and rehashed up to here)",
                        checkpoint.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    )
                })
        };
        if let Some(reason) = reason {
            broken = Some(Verdict::Broken {
                seq: entry.seq,
                reason,
            });
            return ControlFlow::Break(());
        }
        prev_hash.clear();
        prev_hash.push_str(entry.hash);
        expected_seq += 1;
        entries += 1;
        ControlFlow::Continue(())
    });
    match scanned {
        Err(StoreError::AlteredAudit { seq, reason }) if broken.is_none() => {
            return Ok(Verdict::Broken { seq, reason });
        }
        scanned => scanned?,
    }
    if let Some(broken) = broken {
        return Ok(broken);
    }
    let last = expected_seq - 1;
    if let Some(beyond) = checkpoints
        .iter()
        .filter(|checkpoint| checkpoint.seq > last)
        .max_by_key(|checkpoint| checkpoint.seq)
    {
        return Ok(Verdict::Broken {
            seq: last + 1,
            reason: format!(
                "the log ends at entry {last}, but the checkpoint of {} holds entry {} (entries were removed from the end: the log was truncated or emptied)",
                beyond
                    .at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                beyond.seq
            ),
        });
    }
    Ok(Verdict::Intact { entries })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{TimeDelta, Utc};
    use hoist_api::AuditKind;

    use super::*;
    use crate::store::SqliteStore;

    /// A log of `entries` entries, and a raw connection to tamper with it.
    fn log(entries: i64) -> (tempfile::TempDir, SqliteStore, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.db");
        let store = SqliteStore::open(&path).unwrap();
        let mut tx = store.transaction().unwrap();
        let start = Utc::now();
        for i in 0..entries {
            append(
                tx.as_mut(),
                NewAuditEvent {
                    at: start + TimeDelta::milliseconds(i),
                    kind: AuditKind::Requested,
                    actor: format!("user{}", i % 7),
                    subject: Some("alice".into()),
                    role: Some("prod-db-admin".into()),
                    request_id: Some(format!("req_{i}")),
                    grant_id: None,
                    incident: None,
                    reason: Some("needs \"quotes\", \\ and ünïcode".into()),
                    details: serde_json::json!({ "n": i, "nested": { "ok": true } }),
                },
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
        (dir, store, raw)
    }

    fn broken_at(store: &SqliteStore) -> Option<(i64, String)> {
        match verify(store).unwrap() {
            Verdict::Intact { .. } => None,
            Verdict::Broken { seq, reason } => Some((seq, reason)),
        }
    }

    #[test]
    fn the_first_bad_entry_is_named_wherever_it_falls() {
        let entries = 2_000;
        let (altered, unlinked, later) = (1_500, 1_800, 1_900);
        let (_dir, store, raw) = log(entries);
        assert_eq!(
            verify(&store).unwrap(),
            Verdict::Intact {
                entries: entries as u64
            }
        );

        // An altered entry late in the log, and a broken link after it.
        let actor: String = raw
            .query_row("SELECT actor FROM audit WHERE seq = ?1", [altered], |row| {
                row.get(0)
            })
            .unwrap();
        raw.execute(
            "UPDATE audit SET actor = 'mallory' WHERE seq = ?1",
            [altered],
        )
        .unwrap();
        raw.execute(
            "UPDATE audit SET prev_hash = 'x' WHERE seq = ?1",
            [unlinked],
        )
        .unwrap();
        let (seq, reason) = broken_at(&store).unwrap();
        assert_eq!(seq, altered);
        assert!(reason.contains("altered"), "{reason}");

        // With the alteration undone, the broken link is the first failure.
        raw.execute(
            "UPDATE audit SET actor = ?1 WHERE seq = ?2",
            rusqlite::params![actor, altered],
        )
        .unwrap();
        let (seq, reason) = broken_at(&store).unwrap();
        assert_eq!(seq, unlinked);
        assert!(reason.contains("prev_hash"), "{reason}");

        // A link broken before an alteration is named, not the alteration.
        raw.execute("UPDATE audit SET actor = 'mallory' WHERE seq = ?1", [later])
            .unwrap();
        assert_eq!(broken_at(&store).unwrap().0, unlinked);

        // Details are hashed as stored: a changed value, or text that is not
        // JSON at all, is an alteration.
        let (_dir, store, raw) = log(entries);
        raw.execute(
            "UPDATE audit SET details = '{\"n\":7,\"nested\":{\"ok\":false}}' WHERE seq = 8",
            [],
        )
        .unwrap();
        assert_eq!(broken_at(&store).unwrap().0, 8);
        raw.execute("UPDATE audit SET details = 'not json' WHERE seq = 8", [])
            .unwrap();
        let (seq, reason) = broken_at(&store).unwrap();
        assert_eq!(seq, 8);
        assert!(reason.contains("altered"), "{reason}");

        // So is whitespace added around the stored JSON.
        for padded in [" ", "\n", "\t "] {
            let (_dir, store, raw) = log(entries);
            raw.execute(
                "UPDATE audit SET details = ?1 || details || ?1 WHERE seq = 8",
                [padded],
            )
            .unwrap();
            let (seq, reason) = broken_at(&store).unwrap();
            assert_eq!(seq, 8, "{padded:?}");
            assert!(reason.contains("altered"), "{reason}");
        }

        // A removed entry, near the start.
        let (_dir, store, raw) = log(entries);
        raw.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        let (seq, reason) = broken_at(&store).unwrap();
        assert_eq!(seq, 3);
        assert!(reason.contains("removed"), "{reason}");
    }
}
