//! What can go wrong keeping a session, in words that say what to do and
//! never contain a secret.

use std::path::PathBuf;

use super::BACKEND_ENV;
use super::choice::SessionStore;

pub(super) const NO_SESSION_KEYRING: &str =
    "no session keyring; run inside a login session or `keyctl session -`";
pub(super) const LOCKED: &str = "the keyring is locked";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "no usable keyring ({}); hoist keeps sessions in the OS keyring and refuses to store tokens \
         in a file unless you explicitly ask with `hoist login --insecure-file-store` \
         (anyone with access to this account or its backups could then read the token)",
        describe_tried(.tried)
    )]
    NoBackend { tried: Vec<(SessionStore, String)> },
    #[error(
        "{BACKEND_ENV}=`{value}` is not a keyring hoist knows; use one of: {}{}",
        backend_names(),
        file_hint(.value)
    )]
    UnknownBackend { value: String },
    #[error(
        "the session store was already chosen in this process ({}); \
         the file store must be chosen before anything else touches sessions",
        chosen_name(.chosen)
    )]
    AlreadyChosen { chosen: Option<SessionStore> },
    #[error(
        "{} is open to other users (mode {mode:03o}); hoist refuses to use a session file \
         others can read: run `chmod 600 {}`, or delete it and sign in again if someone \
         else may have read it",
        .path.display(),
        .path.display()
    )]
    ExposedFile { path: PathBuf, mode: u32 },
    #[error(
        "{} is open to other users (mode {mode:03o}); hoist keeps session files only in a \
         private directory: run `chmod 700 {}`",
        .path.display(),
        .path.display()
    )]
    ExposedDir { path: PathBuf, mode: u32 },
    #[error(
        "{backend}: {LOCKED}; unlock it (log in to the desktop, or open your keyring app) and try again"
    )]
    Locked { backend: SessionStore },
    #[error("{backend}: {reason}")]
    Unavailable {
        backend: SessionStore,
        reason: String,
    },
    #[error(
        "the session stored for {account} cannot be read; run `hoist logout` and sign in again"
    )]
    Corrupt { account: String },
    #[error("{backend}: {reason}")]
    Failed {
        backend: SessionStore,
        reason: String,
    },
}

fn describe_tried(tried: &[(SessionStore, String)]) -> String {
    tried
        .iter()
        .map(|(backend, reason)| format!("{backend}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn file_hint(value: &str) -> &'static str {
    if value.trim().eq_ignore_ascii_case(SessionStore::File.name()) {
        " (a plain-file store is never chosen this way: it takes `hoist login --insecure-file-store`)"
    } else {
        ""
    }
}

fn chosen_name(chosen: &Option<SessionStore>) -> String {
    match chosen {
        Some(backend) => backend.to_string(),
        None => "no keyring worked".to_string(),
    }
}

fn backend_names() -> String {
    SessionStore::ALL
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_backend_refuses_files_and_names_every_reason() {
        let err = SecretsError::NoBackend {
            tried: vec![
                (
                    SessionStore::SecretService,
                    "no Secret Service (no D-Bus session bus)".into(),
                ),
                (SessionStore::Keyutils, NO_SESSION_KEYRING.into()),
            ],
        };
        let message = err.to_string();
        assert!(message.contains("secret-service: no Secret Service (no D-Bus session bus)"));
        assert!(message.contains("keyutils: no session keyring"));
        assert!(
            message.contains("refuses to store tokens in a file"),
            "{message}"
        );
        // The one way out is named, with its cost.
        assert!(
            message.contains("explicitly ask with `hoist login --insecure-file-store`"),
            "{message}"
        );
        assert!(message.contains("backups"), "{message}");
    }
}
