//! The audit log's hash chain: how an entry's hash is computed, and how the
//! whole chain is checked.

use std::ops::ControlFlow;

use hoist_api::AuditEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry's hash covers, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
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
    details: &'a serde_json::Value,
}

/// Hex SHA-256 over the previous hash and the entry's fields.
pub fn entry_hash(prev_hash: &str, event: &AuditEvent) -> String {
    let fields = Hashed {
        seq: event.seq,
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
    };
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    // Serialising plain fields to JSON cannot fail.
    hasher.update(serde_json::to_vec(&fields).unwrap_or_default());
    hex::encode(hasher.finalize())
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

pub fn verify(store: &dyn Store) -> Result<Verdict, StoreError> {
    let tx = store.transaction()?;
    let mut prev_hash = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut entries = 0;
    let mut broken = None;
    tx.scan_audit(&mut |event| {
        let reason = if event.seq != expected_seq {
            Some(format!("expected entry {expected_seq} here, found entry {} (an entry was removed or inserted)", event.seq))
        } else if event.prev_hash != prev_hash {
            Some("its prev_hash does not match the entry before it".to_string())
        } else if entry_hash(&prev_hash, &event) != event.hash {
            Some("its contents do not match its hash (the entry was altered)".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            broken = Some(Verdict::Broken {
                seq: event.seq,
                reason,
            });
            return ControlFlow::Break(());
        }
        prev_hash = event.hash;
        expected_seq += 1;
        entries += 1;
        ControlFlow::Continue(())
    })?;
    Ok(broken.unwrap_or(Verdict::Intact { entries }))
}
