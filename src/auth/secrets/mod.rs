//! The session secret, kept in the OS keyring, and in a plain file only when
//! the user explicitly asks for one.
//!
//! One keyring entry per broker and user: service `hoist`, account
//! `{user}@{broker}` (the broker as normalised by
//! [`crate::endpoint::normalise`]). The secret is the JSON of a
//! [`Session`]. Every keyring has a name for these two parts: the Secret
//! Service stores them as the `service` and `username` attributes, the
//! kernel keyring as the key description `keyring:{user}@{broker}@hoist`.
//!
//! On Linux the Secret Service (GNOME Keyring, KeePassXC, KWallet) comes
//! first; the kernel keyring (keyutils) is the fallback, with a warning,
//! because its entries end at reboot. With neither, hoist refuses to work
//! rather than write a token to disk. `HOIST_KEYRING` forces one.
//!
//! The one way to a file is [`init_file_store`], which the caller reaches
//! only from an explicit opt-in (`hoist login --insecure-file-store`, or a
//! profile saved with it), never from `HOIST_KEYRING` or as a fallback.
//! Each session is then a JSON file of mode 0600 in a 0700 directory, named
//! by a hash of its account so that no URL ever becomes a path.
//!
//! Every function here blocks (a Secret Service call is a D-Bus round trip):
//! async callers use `tokio::task::spawn_blocking`. No error message built
//! here ever contains a secret: keyring errors that carry the stored bytes
//! are reduced to their kind.

mod choice;
mod error;
mod file_store;
mod keyring;
#[cfg(target_os = "linux")]
mod linux;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use choice::{SessionStore, chosen, init, init_file_store, init_with, warning};
use choice::{Store, selected};
pub use error::SecretsError;

/// The keyring service every hoist entry is filed under.
pub const SERVICE: &str = "hoist";
/// Environment variable that forces a backend: `secret-service` or `keyutils`
/// on Linux, `keychain` on macOS, `windows` on Windows. It cannot name the
/// file store: a token in a file has to be asked for in so many words.
pub const BACKEND_ENV: &str = "HOIST_KEYRING";

/// What the user must hear whenever the file store is in use.
pub const FILE_STORE_WARNING: &str = "the session is stored in a plain file, not in a keyring: \
     anyone with access to this account or its backups can read the token and act as you \
     with it; run `hoist logout` to delete it";

/// A signed-in session: what the keyring entry holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// For single sign-on sessions: the provider and client to refresh with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Session {
    /// A session for a static token, which does not expire by itself.
    pub fn with_token(token: &str) -> Self {
        Session {
            access_token: token.to_string(),
            refresh_token: None,
            expires_at: None,
            issuer: None,
            client_id: None,
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens must never reach a log or a panic message.
        f.debug_struct("Session")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Joins a session keyring for this process if it has none, so that the
/// kernel keyring works in shells that PAM did not set up (CI, containers,
/// `su`). Credentials are per thread and inherited by threads created
/// later, so this must run first in `main()`, before the tokio runtime or
/// any other thread starts. Failure is ignored: `init` reports it.
pub fn prepare() {
    #[cfg(target_os = "linux")]
    {
        // With `create`, the kernel keeps a session keyring the process
        // already has, and replaces the shared per-user fallback one (whose
        // keys we could add but not read back) with a fresh one of our own.
        let _ = linux_keyutils::KeyRing::from_special_id(
            linux_keyutils::KeyRingIdentifier::Session,
            true,
        );
    }
}

/// Keeps this process's memory, which holds the session's tokens, out of
/// core dumps: `Ctrl-\` (SIGQUIT) or a crash must not write a token to a
/// file that outlives the process. On Linux the process is made not
/// dumpable, which also keeps other processes of the same user from
/// reading its memory (ptrace); a program it runs (`exec`'s command, ssh)
/// is dumpable again, as the kernel resets the flag at execve. Elsewhere
/// the soft core size limit goes to zero, which a program it runs
/// inherits (and may raise again). Failure is ignored: nothing stops
/// working for it.
pub fn keep_out_of_core_dumps() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_dumpable(false);
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_CORE) {
            let _ = setrlimit(Resource::RLIMIT_CORE, 0, hard);
        }
    }
}

/// The keyring account for a user at a broker.
pub fn account(broker: &str, user: &str) -> String {
    format!("{user}@{broker}")
}

/// The session stored for `user` at `broker`, if any.
pub fn load(broker: &str, user: &str) -> Result<Option<Session>, SecretsError> {
    let selected = selected()?;
    match &selected.store {
        Store::Keyring(store) => keyring::load_in(&**store, selected.backend, broker, user),
        Store::File(files) => files.load(broker, user),
    }
}

/// Stores the session for `user` at `broker`, replacing any earlier one.
pub fn save(broker: &str, user: &str, session: &Session) -> Result<(), SecretsError> {
    let selected = selected()?;
    match &selected.store {
        Store::Keyring(store) => {
            keyring::save_in(&**store, selected.backend, broker, user, session)
        }
        Store::File(files) => files.save(broker, user, session),
    }
}

/// Deletes the session for `user` at `broker`; false if there was none.
pub fn delete(broker: &str, user: &str) -> Result<bool, SecretsError> {
    let selected = selected()?;
    match &selected.store {
        Store::Keyring(store) => keyring::delete_in(&**store, selected.backend, broker, user),
        Store::File(files) => files.delete(broker, user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_tokens() {
        let session = Session {
            access_token: "s3cret-access".into(),
            refresh_token: Some("s3cret-refresh".into()),
            ..Session::with_token("s3cret-access")
        };
        let shown = format!("{session:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn session_json_round_trips_and_omits_what_is_unset() {
        let session = Session::with_token("t");
        let json = serde_json::to_string(&session).unwrap();
        assert_eq!(json, r#"{"access_token":"t"}"#);
        let full = Session {
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            expires_at: Some("2026-01-02T03:04:05Z".parse().unwrap()),
            issuer: Some("https://idp.example".into()),
            client_id: Some("hoist".into()),
        };
        let back: Session = serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(back, full);
    }

    #[test]
    fn the_file_store_warning_says_who_can_read_the_token() {
        assert!(FILE_STORE_WARNING.contains("plain file"));
        assert!(FILE_STORE_WARNING.contains("anyone with access to this account or its backups"));
    }
}
