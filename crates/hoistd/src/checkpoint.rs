//! Signed audit checkpoints. The hash chain alone proves nothing to someone
//! who can rewrite the whole database: they can cut entries off the end,
//! empty the log, or recompute every hash after an edit. A checkpoint is the
//! chain's head (sequence number and hash) signed with a key that is not in
//! the database, and kept elsewhere too; a log that no longer holds a
//! checkpointed entry with its hash was truncated or rewritten.
//!
//! A checkpoint file holds one JSON checkpoint a line, appended to.

use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::keys::key_id;
use crate::store::{AuditHead, Store, StoreError};

/// The chain's head at a moment, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// Which key signed it (see [`key_id`]).
    pub key_id: String,
    /// Ed25519 over [`Checkpoint::signed_text`], base64url without padding.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the checkpoints in {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the checkpoint to {path}: {source}")]
    Unwritable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a checkpoint: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}:{line}: the checkpoint of entry {seq} {reason}")]
    Forged {
        path: String,
        line: usize,
        seq: i64,
        reason: String,
    },
    #[error("the audit log is empty: there is nothing to checkpoint")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Checkpoint {
    /// What is signed: every field, in a fixed order, with a purpose line so
    /// the signature means nothing anywhere else.
    fn signed_text(seq: i64, hash: &str, at: DateTime<Utc>, key_id: &str) -> String {
        format!(
            "hoistd audit checkpoint v1\nseq {seq}\nhash {hash}\nat {}\nkey {key_id}\n",
            at.timestamp_millis()
        )
    }

    /// Signs `head` as of `at`.
    pub fn sign(key: &SigningKey, head: &AuditHead, at: DateTime<Utc>) -> Checkpoint {
        let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
        let key_id = key_id(&key.verifying_key());
        let signature = key.sign(Self::signed_text(head.seq, &head.hash, at, &key_id).as_bytes());
        Checkpoint {
            seq: head.seq,
            hash: head.hash.clone(),
            at,
            key_id,
            signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        }
    }

    /// Why the signature does not hold under `key`, if it does not.
    pub fn check(&self, key: &VerifyingKey) -> Result<(), String> {
        if self.key_id != key_id(key) {
            return Err(format!(
                "was signed by key {}, not by the key given ({})",
                self.key_id,
                key_id(key)
            ));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| "has a signature that is not base64url".to_string())?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|_| "has a signature of the wrong length".to_string())?;
        key.verify_strict(
            Self::signed_text(self.seq, &self.hash, self.at, &self.key_id).as_bytes(),
            &signature,
        )
        .map_err(|_| "does not match its signature (it was altered or forged)".to_string())
    }

    /// The checkpoint as it is written to a file or the log: one line.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Signs the current head of `store`'s log, read from a snapshot, once it
/// is durable: a commit is visible before it is on disk, and a head a crash
/// then lost would make the checkpoint read as tampering for good.
pub fn take(store: &dyn Store, key: &SigningKey) -> Result<Checkpoint, CheckpointError> {
    let head = store
        .snapshot()?
        .audit_head()?
        .ok_or(CheckpointError::Empty)?;
    store.barrier()?;
    Ok(Checkpoint::sign(key, &head, crate::broker::now()))
}

/// Appends `checkpoint` to the file at `path` (created if missing) and
/// syncs it to disk before returning. On a line of its own even after a
/// write a crash cut short, which stays on its own line (and is reported
/// by [`read_verified`]) rather than swallow this one.
pub fn append(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    use std::io::{Read, Seek, SeekFrom};
    let unwritable = |source| CheckpointError::Unwritable {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(unwritable)?;
    let mut last = [b'\n'];
    if file.metadata().map_err(unwritable)?.len() > 0 {
        file.seek(SeekFrom::End(-1)).map_err(unwritable)?;
        file.read_exact(&mut last).map_err(unwritable)?;
    }
    let start = if last[0] == b'\n' { "" } else { "\n" };
    file.write_all(format!("{start}{}\n", checkpoint.line()).as_bytes())
        .map_err(unwritable)?;
    file.sync_data().map_err(unwritable)
}

/// What a checkpoint file holds: its checkpoints, and the lines that are
/// the start of one a crash cut short.
#[derive(Debug)]
pub struct Read {
    pub checkpoints: Vec<Checkpoint>,
    /// Line numbers of checkpoints cut short (the JSON ends early): a write
    /// a crash interrupted, which [`append`] leaves on a line of its own.
    /// They check nothing, and are not held against the file: whoever can
    /// cut a line can as well delete it, which copies of the file kept
    /// elsewhere are for.
    pub cut: Vec<usize>,
}

/// Every checkpoint in the file at `path`, each one's signature checked
/// against the one of `keys` that signed it, by key id: after the key is
/// changed, the old public key and the new one, each for its own lines.
/// A line that is not a checkpoint (other than one cut short), or whose
/// signature does not hold under any key given, is an error naming its
/// line.
pub fn read_verified(path: &Path, keys: &[VerifyingKey]) -> Result<Read, CheckpointError> {
    let name = path.display().to_string();
    let unreadable = |source| CheckpointError::Unreadable {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut read = Read {
        checkpoints: Vec::new(),
        cut: Vec::new(),
    };
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(unreadable)?;
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint: Checkpoint = match serde_json::from_str(&line) {
            Ok(checkpoint) => checkpoint,
            Err(err) if err.is_eof() && line.starts_with('{') => {
                read.cut.push(index + 1);
                continue;
            }
            Err(err) => {
                return Err(CheckpointError::Malformed {
                    path: name.clone(),
                    line: index + 1,
                    reason: printable(&err.to_string()),
                });
            }
        };
        let forged = |reason| CheckpointError::Forged {
            path: name.clone(),
            line: index + 1,
            seq: checkpoint.seq,
            reason,
        };
        let Some(key) = keys.iter().find(|key| key_id(key) == checkpoint.key_id) else {
            let given: Vec<String> = keys.iter().map(key_id).collect();
            return Err(forged(format!(
                "was signed by key {}, not by a key given ({})",
                printable(&checkpoint.key_id),
                given.join(", ")
            )));
        };
        checkpoint.check(key).map_err(forged)?;
        read.checkpoints.push(checkpoint);
    }
    Ok(read)
}

/// Text from the checkpoint file (a key id, or a field name serde's error
/// quotes), on one line with nothing a reader cannot see: it is printed to
/// the operator's terminal, and the file is what someone may have edited.
fn printable(text: &str) -> String {
    let one_line = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    hoist_api::text::visible_chars(one_line).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A line a crash cut short does not swallow the next checkpoint: that
    /// one goes on a line of its own, and the cut line is named, not held
    /// against the file. A line that is not the start of a checkpoint is.
    #[test]
    fn an_append_after_a_cut_line_starts_a_new_one() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.jsonl");
        std::fs::write(&path, "{\"seq\":1").unwrap();
        let head = AuditHead {
            seq: 2,
            hash: "ab".repeat(32),
        };
        append(&path, &Checkpoint::sign(&key, &head, Utc::now())).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 2, "{written}");
        let kept: Checkpoint = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(kept.seq, 2);
        let read = read_verified(&path, &[key.verifying_key()]).unwrap();
        assert_eq!(read.cut, [1]);
        assert_eq!(read.checkpoints, [kept]);

        std::fs::write(&path, format!("{{\"seq\":1}} trailing\n{}\n", lines[1])).unwrap();
        match read_verified(&path, &[key.verifying_key()]) {
            Err(CheckpointError::Malformed { line: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// After the key is changed, one file holds lines of both keys: each
    /// verifies under its own, and a line under a key not given is refused.
    #[test]
    fn a_file_of_two_keys_verifies_with_both_keys_given() {
        let (old, new) = (
            SigningKey::from_bytes(&[7; 32]),
            SigningKey::from_bytes(&[9; 32]),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.jsonl");
        let head = |seq| AuditHead {
            seq,
            hash: "ab".repeat(32),
        };
        append(&path, &Checkpoint::sign(&old, &head(1), Utc::now())).unwrap();
        append(&path, &Checkpoint::sign(&new, &head(2), Utc::now())).unwrap();
        let read = read_verified(&path, &[old.verifying_key(), new.verifying_key()]).unwrap();
        assert_eq!(read.checkpoints.len(), 2);
        match read_verified(&path, &[new.verifying_key()]) {
            Err(CheckpointError::Forged {
                line: 1, reason, ..
            }) => {
                assert!(reason.contains("not by a key given"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed_and_with_its_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let head = AuditHead {
            seq: 42,
            hash: "ab".repeat(32),
        };
        let checkpoint = Checkpoint::sign(&key, &head, Utc::now());
        assert_eq!(checkpoint.check(&key.verifying_key()), Ok(()));
        let again: Checkpoint = serde_json::from_str(&checkpoint.line()).unwrap();
        assert_eq!(again, checkpoint);

        for altered in [
            Checkpoint {
                seq: 41,
                ..checkpoint.clone()
            },
            Checkpoint {
                hash: "cd".repeat(32),
                ..checkpoint.clone()
            },
            Checkpoint {
                at: checkpoint.at + chrono::TimeDelta::seconds(1),
                ..checkpoint.clone()
            },
        ] {
            let reason = altered.check(&key.verifying_key()).unwrap_err();
            assert!(reason.contains("altered or forged"), "{reason}");
        }
        let other = SigningKey::from_bytes(&[8; 32]);
        let reason = checkpoint.check(&other.verifying_key()).unwrap_err();
        assert!(reason.contains("not by the key given"), "{reason}");
        // Another key that claims the right id still fails.
        let forged = Checkpoint {
            key_id: checkpoint.key_id.clone(),
            ..Checkpoint::sign(&other, &head, checkpoint.at)
        };
        assert!(forged.check(&key.verifying_key()).is_err());
    }
}
