//! Sessions in an OS keyring through `keyring_core`: one entry per broker
//! and user, the session as its JSON, and keyring errors reduced to words
//! without the stored bytes.

use keyring_core::{CredentialStore, Entry, Error as KeyringError};

use super::choice::SessionStore;
use super::error::{LOCKED, NO_SESSION_KEYRING, SecretsError};
use super::{SERVICE, Session, account};

fn entry(
    store: &CredentialStore,
    backend: SessionStore,
    broker: &str,
    user: &str,
) -> Result<Entry, SecretsError> {
    let account = account(broker, user);
    let label = format!("hoist session for {user} at {broker}");
    // Only the Secret Service knows labels; other stores refuse modifiers
    // they do not know.
    let modifiers = std::collections::HashMap::from([("label", label.as_str())]);
    let modifiers = (backend == SessionStore::SecretService).then_some(&modifiers);
    store
        .build(SERVICE, &account, modifiers)
        .map_err(|err| failure(backend, &err))
}

pub(super) fn load_in(
    store: &CredentialStore,
    backend: SessionStore,
    broker: &str,
    user: &str,
) -> Result<Option<Session>, SecretsError> {
    let entry = entry(store, backend, broker, user)?;
    let secret = match entry.get_secret() {
        Ok(secret) => secret,
        Err(KeyringError::NoEntry) => return Ok(None),
        Err(err) => return Err(failure(backend, &err)),
    };
    // serde_json's message could quote the stored text, so it is dropped.
    serde_json::from_slice(&secret)
        .map(Some)
        .map_err(|_| SecretsError::Corrupt {
            account: account(broker, user),
        })
}

pub(super) fn save_in(
    store: &CredentialStore,
    backend: SessionStore,
    broker: &str,
    user: &str,
    session: &Session,
) -> Result<(), SecretsError> {
    let entry = entry(store, backend, broker, user)?;
    let secret = serde_json::to_vec(session).map_err(|_| SecretsError::Failed {
        backend,
        reason: "cannot encode the session".to_string(),
    })?;
    entry
        .set_secret(&secret)
        .map_err(|err| failure(backend, &err))
}

pub(super) fn delete_in(
    store: &CredentialStore,
    backend: SessionStore,
    broker: &str,
    user: &str,
) -> Result<bool, SecretsError> {
    let entry = entry(store, backend, broker, user)?;
    match entry.delete_credential() {
        Ok(()) => Ok(true),
        Err(KeyringError::NoEntry) => Ok(false),
        Err(err) => Err(failure(backend, &err)),
    }
}

/// A keyring error as a [`SecretsError`], with the user's way out.
fn failure(backend: SessionStore, err: &KeyringError) -> SecretsError {
    match (backend, err) {
        (SessionStore::SecretService, KeyringError::NoStorageAccess(_)) => {
            SecretsError::Locked { backend }
        }
        (SessionStore::Keyutils, KeyringError::NoStorageAccess(inner))
            if denied(inner.as_ref()) =>
        {
            SecretsError::Failed {
                backend,
                reason: KEY_DENIED.to_string(),
            }
        }
        (SessionStore::Keyutils, KeyringError::NoStorageAccess(_)) => SecretsError::Unavailable {
            backend,
            reason: NO_SESSION_KEYRING.to_string(),
        },
        _ => SecretsError::Failed {
            backend,
            reason: describe(backend, err),
        },
    }
}

/// The kernel keyring refused a read or write of an entry in the session
/// keyring that was chosen because it worked (the permissions of the entry
/// or of the keyring changed since), as opposed to there being no session
/// keyring: the choice's own probe keeps [`NO_SESSION_KEYRING`].
const KEY_DENIED: &str = "the kernel keyring refused access (permission denied; `keyctl show @s` \
     lists the session keyring and hoist's entries with their permissions)";

/// Whether a keyutils `NoStorageAccess` is the kernel's EACCES, which the
/// store reports as it does a missing session keyring.
fn denied(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    #[cfg(target_os = "linux")]
    {
        matches!(
            inner.downcast_ref::<linux_keyutils::KeyError>(),
            Some(linux_keyutils::KeyError::AccessDenied)
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = inner;
        false
    }
}

/// A keyring error in words, without the secret: `BadEncoding` and
/// `BadDataFormat` carry the stored bytes, and `Ambiguous` the entries.
pub(super) fn describe(backend: SessionStore, err: &KeyringError) -> String {
    match err {
        KeyringError::NoStorageAccess(_) if backend == SessionStore::Keyutils => {
            NO_SESSION_KEYRING.to_string()
        }
        KeyringError::NoStorageAccess(_) if backend == SessionStore::SecretService => {
            LOCKED.to_string()
        }
        KeyringError::NoStorageAccess(inner) => format!("no access to the keyring: {inner}"),
        KeyringError::PlatformFailure(inner) => inner.to_string(),
        KeyringError::NoEntry => "no such entry".to_string(),
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => {
            "the stored data is malformed".to_string()
        }
        KeyringError::BadStoreFormat(reason) => format!("the keyring is malformed: {reason}"),
        KeyringError::TooLong(name, limit) => {
            format!("the {name} is longer than the keyring's limit of {limit}")
        }
        KeyringError::Invalid(name, reason) => format!("invalid {name}: {reason}"),
        KeyringError::Ambiguous(entries) => {
            format!("{} entries match; remove the extra ones", entries.len())
        }
        KeyringError::NoDefaultStore => "no keyring selected".to_string(),
        KeyringError::NotSupportedByStore(what) => format!("not supported: {what}"),
        _ => "unexpected keyring error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn mock() -> Arc<CredentialStore> {
        keyring_core::mock::Store::new().unwrap()
    }

    #[test]
    fn entries_are_per_broker_and_user() {
        let store = mock();
        let backend = SessionStore::Keyutils;
        let a = Session::with_token("token-a");
        let b = Session::with_token("token-b");
        save_in(&*store, backend, "https://one.example", "alice", &a).unwrap();
        save_in(&*store, backend, "https://two.example", "alice", &b).unwrap();
        assert_eq!(
            load_in(&*store, backend, "https://one.example", "alice").unwrap(),
            Some(a.clone())
        );
        assert_eq!(
            load_in(&*store, backend, "https://two.example", "alice").unwrap(),
            Some(b)
        );
        assert_eq!(
            load_in(&*store, backend, "https://one.example", "bob").unwrap(),
            None
        );
        assert!(delete_in(&*store, backend, "https://one.example", "alice").unwrap());
        assert!(!delete_in(&*store, backend, "https://one.example", "alice").unwrap());
        assert_eq!(
            load_in(&*store, backend, "https://one.example", "alice").unwrap(),
            None
        );
    }

    #[test]
    fn a_garbled_entry_is_reported_without_its_content() {
        let store = mock();
        let entry = store
            .build(SERVICE, &account("https://g.example", "alice"), None)
            .unwrap();
        entry.set_secret(b"not json s3cret").unwrap();
        let err = load_in(
            &*store,
            SessionStore::Keyutils,
            "https://g.example",
            "alice",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("alice@https://g.example"), "{message}");
        assert!(message.contains("hoist logout"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn keyring_errors_become_plain_words_without_secrets() {
        let denied = || KeyringError::NoStorageAccess("access denied".into());
        assert_eq!(
            failure(SessionStore::Keyutils, &denied()).to_string(),
            format!("keyutils: {NO_SESSION_KEYRING}")
        );
        #[cfg(target_os = "linux")]
        {
            // The kernel's EACCES on the entry is not a missing keyring.
            let refused =
                KeyringError::NoStorageAccess(Box::new(linux_keyutils::KeyError::AccessDenied));
            let said = failure(SessionStore::Keyutils, &refused).to_string();
            assert!(said.contains("refused access (permission denied"), "{said}");
            assert!(!said.contains(NO_SESSION_KEYRING), "{said}");
        }
        let locked = failure(SessionStore::SecretService, &denied()).to_string();
        assert!(
            locked.starts_with("secret-service: the keyring is locked"),
            "{locked}"
        );
        let bad = KeyringError::BadEncoding(b"s3cret".to_vec());
        assert!(
            !failure(SessionStore::Keyutils, &bad)
                .to_string()
                .contains("s3cret")
        );
        let bad = KeyringError::BadDataFormat(b"s3cret".to_vec(), "x".into());
        assert!(
            !failure(SessionStore::Keyutils, &bad)
                .to_string()
                .contains("s3cret")
        );
    }
}
