//! The session secret, kept in the OS keyring and never in a file.
//!
//! One keyring entry per broker and user: service `hoist`, account
//! `{user}@{broker}` (the broker as normalised by
//! [`crate::config::normalise_broker`]). The secret is the JSON of a
//! [`Session`]. Every keyring has a name for these two parts: the Secret
//! Service stores them as the `service` and `username` attributes, the
//! kernel keyring as the key description `keyring:{user}@{broker}@hoist`.
//!
//! On Linux the Secret Service (GNOME Keyring, KeePassXC, KWallet) comes
//! first; the kernel keyring (keyutils) is the fallback, with a warning,
//! because its entries end at reboot. With neither, hoist refuses to work
//! rather than write a token to disk. `HOIST_KEYRING` forces one.
//!
//! Every function here blocks (a Secret Service call is a D-Bus round trip):
//! async callers use `tokio::task::spawn_blocking`. No error message built
//! here ever contains a secret: keyring errors that carry the stored bytes
//! are reduced to their kind.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use serde::{Deserialize, Serialize};

/// The keyring service every hoist entry is filed under.
pub const SERVICE: &str = "hoist";
/// Environment variable that forces a backend: `secret-service` or `keyutils`
/// on Linux, `keychain` on macOS, `windows` on Windows.
pub const BACKEND_ENV: &str = "HOIST_KEYRING";

const KEYUTILS_WARNING: &str = "no Secret Service: the session is kept in the kernel keyring \
     and ends at reboot (or after 3 days unused); you will need to sign in again then";
const NO_SESSION_KEYRING: &str =
    "no session keyring; run inside a login session or `keyctl session -`";
const LOCKED: &str = "the keyring is locked";

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

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The freedesktop Secret Service over D-Bus (Linux).
    SecretService,
    /// The Linux kernel keyring; entries end at reboot.
    Keyutils,
    /// The macOS login keychain.
    #[cfg(target_os = "macos")]
    Keychain,
    /// The Windows Credential Manager.
    #[cfg(target_os = "windows")]
    CredentialManager,
}

impl Backend {
    /// Every backend this build knows, by name, for `HOIST_KEYRING`.
    pub const ALL: &[Backend] = &[
        Backend::SecretService,
        Backend::Keyutils,
        #[cfg(target_os = "macos")]
        Backend::Keychain,
        #[cfg(target_os = "windows")]
        Backend::CredentialManager,
    ];

    /// The order tried when none is forced: the safest first.
    const AUTOMATIC: &[Backend] = &[
        #[cfg(target_os = "linux")]
        Backend::SecretService,
        #[cfg(target_os = "linux")]
        Backend::Keyutils,
        #[cfg(target_os = "macos")]
        Backend::Keychain,
        #[cfg(target_os = "windows")]
        Backend::CredentialManager,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::SecretService => "secret-service",
            Backend::Keyutils => "keyutils",
            #[cfg(target_os = "macos")]
            Backend::Keychain => "keychain",
            #[cfg(target_os = "windows")]
            Backend::CredentialManager => "windows",
        }
    }

    pub fn from_name(name: &str) -> Option<Backend> {
        let name = name.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|backend| backend.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "no usable keyring ({}); hoist keeps sessions only in the OS keyring and refuses to store tokens in a file",
        describe_tried(.tried)
    )]
    NoBackend { tried: Vec<(Backend, String)> },
    #[error(
        "{BACKEND_ENV}=`{value}` is not a keyring hoist knows; use one of: {}",
        backend_names()
    )]
    UnknownBackend { value: String },
    #[error(
        "{backend}: {LOCKED}; unlock it (log in to the desktop, or open your keyring app) and try again"
    )]
    Locked { backend: Backend },
    #[error("{backend}: {reason}")]
    Unavailable { backend: Backend, reason: String },
    #[error(
        "the session stored for {account} cannot be read; run `hoist logout` and sign in again"
    )]
    Corrupt { account: String },
    #[error("{backend}: {reason}")]
    Failed { backend: Backend, reason: String },
}

fn describe_tried(tried: &[(Backend, String)]) -> String {
    tried
        .iter()
        .map(|(backend, reason)| format!("{backend}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn backend_names() -> String {
    Backend::ALL
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
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

struct Selected {
    backend: Backend,
    store: Arc<CredentialStore>,
}

static SELECTED: OnceLock<Result<Selected, SecretsError>> = OnceLock::new();

/// Picks the keyring: the one `HOIST_KEYRING` names, else the first that
/// works. Only the first call in a process chooses; later calls return its
/// answer. Makes it keyring_core's default store too.
pub fn init() -> Result<Backend, SecretsError> {
    let forced = match std::env::var(BACKEND_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            Some(Backend::from_name(&value).ok_or(SecretsError::UnknownBackend { value })?)
        }
        _ => None,
    };
    init_with(forced)
}

/// Like [`init`], with the backend given instead of read from the environment.
pub fn init_with(forced: Option<Backend>) -> Result<Backend, SecretsError> {
    match SELECTED.get_or_init(|| select(forced)) {
        Ok(selected) => Ok(selected.backend),
        Err(err) => Err(err.clone()),
    }
}

/// What the user should know about where sessions are kept, if anything:
/// set when the kernel keyring is in use, whose entries end at reboot.
pub fn warning() -> Option<&'static str> {
    match SELECTED.get() {
        Some(Ok(selected)) if selected.backend == Backend::Keyutils => Some(KEYUTILS_WARNING),
        _ => None,
    }
}

fn select(forced: Option<Backend>) -> Result<Selected, SecretsError> {
    let candidates = match forced {
        Some(backend) => vec![backend],
        None => Backend::AUTOMATIC.to_vec(),
    };
    let mut tried = Vec::new();
    for backend in candidates {
        match open(backend) {
            Ok(store) => {
                keyring_core::set_default_store(Arc::clone(&store));
                return Ok(Selected { backend, store });
            }
            Err(reason) => tried.push((backend, reason)),
        }
    }
    Err(SecretsError::NoBackend { tried })
}

/// Opens a backend and checks that it can really keep a secret.
fn open(backend: Backend) -> Result<Arc<CredentialStore>, String> {
    match backend {
        #[cfg(target_os = "linux")]
        Backend::SecretService => linux::open_secret_service(),
        #[cfg(target_os = "linux")]
        Backend::Keyutils => linux::open_keyutils(),
        #[cfg(not(target_os = "linux"))]
        Backend::SecretService | Backend::Keyutils => Err("only available on Linux".to_string()),
        #[cfg(target_os = "macos")]
        Backend::Keychain => match apple_native_keyring_store::keychain::Store::new() {
            Ok(store) => Ok(store),
            Err(err) => Err(describe(backend, &err)),
        },
        #[cfg(target_os = "windows")]
        Backend::CredentialManager => match windows_native_keyring_store::Store::new() {
            Ok(store) => Ok(store),
            Err(err) => Err(describe(backend, &err)),
        },
    }
}

/// The keyring account for a user at a broker.
pub fn account(broker: &str, user: &str) -> String {
    format!("{user}@{broker}")
}

fn selected() -> Result<&'static Selected, SecretsError> {
    init()?;
    match SELECTED.get() {
        Some(Ok(selected)) => Ok(selected),
        Some(Err(err)) => Err(err.clone()),
        // `init` either set it or returned the error above.
        None => Err(SecretsError::NoBackend { tried: Vec::new() }),
    }
}

/// The session stored for `user` at `broker`, if any.
pub fn load(broker: &str, user: &str) -> Result<Option<Session>, SecretsError> {
    let selected = selected()?;
    load_in(&*selected.store, selected.backend, broker, user)
}

/// Stores the session for `user` at `broker`, replacing any earlier one.
pub fn save(broker: &str, user: &str, session: &Session) -> Result<(), SecretsError> {
    let selected = selected()?;
    save_in(&*selected.store, selected.backend, broker, user, session)
}

/// Deletes the session for `user` at `broker`; false if there was none.
pub fn delete(broker: &str, user: &str) -> Result<bool, SecretsError> {
    let selected = selected()?;
    delete_in(&*selected.store, selected.backend, broker, user)
}

fn entry(
    store: &CredentialStore,
    backend: Backend,
    broker: &str,
    user: &str,
) -> Result<Entry, SecretsError> {
    let account = account(broker, user);
    let label = format!("hoist session for {user} at {broker}");
    // Only the Secret Service knows labels; other stores refuse modifiers
    // they do not know.
    let modifiers = std::collections::HashMap::from([("label", label.as_str())]);
    let modifiers = (backend == Backend::SecretService).then_some(&modifiers);
    store
        .build(SERVICE, &account, modifiers)
        .map_err(|err| failure(backend, &err))
}

fn load_in(
    store: &CredentialStore,
    backend: Backend,
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

fn save_in(
    store: &CredentialStore,
    backend: Backend,
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

fn delete_in(
    store: &CredentialStore,
    backend: Backend,
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
fn failure(backend: Backend, err: &KeyringError) -> SecretsError {
    match (backend, err) {
        (Backend::SecretService, KeyringError::NoStorageAccess(_)) => {
            SecretsError::Locked { backend }
        }
        (Backend::Keyutils, KeyringError::NoStorageAccess(_)) => SecretsError::Unavailable {
            backend,
            reason: NO_SESSION_KEYRING.to_string(),
        },
        _ => SecretsError::Failed {
            backend,
            reason: describe(backend, err),
        },
    }
}

/// A keyring error in words, without the secret: `BadEncoding` and
/// `BadDataFormat` carry the stored bytes, and `Ambiguous` the entries.
fn describe(backend: Backend, err: &KeyringError) -> String {
    match err {
        KeyringError::NoStorageAccess(_) if backend == Backend::Keyutils => {
            NO_SESSION_KEYRING.to_string()
        }
        KeyringError::NoStorageAccess(_) if backend == Backend::SecretService => LOCKED.to_string(),
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

#[cfg(target_os = "linux")]
mod linux {
    //! Opening and checking the two Linux backends.

    use std::sync::Arc;

    use keyring_core::{CredentialStore, Error as KeyringError};

    use super::{Backend, LOCKED, SERVICE, describe};

    const NO_BUS: &str = "no Secret Service (no D-Bus session bus)";

    /// The Secret Service, if a provider answers on the session bus and its
    /// default collection is unlocked. Checked with reads only, so that
    /// choosing a backend never writes to the user's keyring or pops up a
    /// prompt.
    pub(super) fn open_secret_service() -> Result<Arc<CredentialStore>, String> {
        use secret_service::EncryptionType;
        use secret_service::blocking::SecretService;

        let service = SecretService::connect(EncryptionType::Plain).map_err(|err| {
            // zbus words a missing socket in several ways; look for it instead.
            if session_bus_present() {
                why_not(&err)
            } else {
                NO_BUS.to_string()
            }
        })?;
        let collection = service
            .get_default_collection()
            .map_err(|err| why_not(&err))?;
        if collection.is_locked().map_err(|err| why_not(&err))? {
            return Err(LOCKED.to_string());
        }
        let store = zbus_secret_service_keyring_store::Store::new()
            .map_err(|err| describe(Backend::SecretService, &err))?;
        Ok(store)
    }

    fn why_not(err: &secret_service::Error) -> String {
        use secret_service::Error;
        match err {
            Error::Unavailable => no_provider(),
            // The bus is there but nothing owns org.freedesktop.secrets.
            Error::Zbus(inner) if inner.to_string().contains("ServiceUnknown") => no_provider(),
            Error::ZbusFdo(inner) if inner.to_string().contains("ServiceUnknown") => no_provider(),
            // No default collection: the keyring was never unlocked or set up.
            Error::NoResult | Error::Locked | Error::Prompt => LOCKED.to_string(),
            other => format!("Secret Service failed: {other}"),
        }
    }

    fn no_provider() -> String {
        "no Secret Service on the D-Bus session bus (is gnome-keyring, KeePassXC or KWallet running?)"
            .to_string()
    }

    /// Whether a session bus socket is there to connect to, to tell "no
    /// bus" from "no provider on the bus" (zbus reports both alike).
    fn session_bus_present() -> bool {
        use std::os::unix::fs::MetadataExt;
        use std::path::PathBuf;

        if let Some(address) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
            let address = address.to_string_lossy().into_owned();
            return address.split(';').any(|one| {
                match one
                    .strip_prefix("unix:")
                    .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix("path=")))
                {
                    Some(path) => std::path::Path::new(path).exists(),
                    // Abstract sockets and TCP cannot be checked without connecting.
                    None => !one.is_empty(),
                }
            });
        }
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                let uid = std::fs::metadata("/proc/self").ok()?.uid();
                Some(PathBuf::from(format!("/run/user/{uid}")))
            });
        runtime_dir.is_some_and(|dir| dir.join("bus").exists())
    }

    /// The kernel keyring, if this process can write, read back and delete
    /// a key there. Without a session keyring of its own the kernel lets a
    /// process add keys to a shared per-user keyring it cannot read, so
    /// only a full round trip proves anything. The probe key is named per
    /// process, so two hoist processes cannot trip over each other's.
    pub(super) fn open_keyutils() -> Result<Arc<CredentialStore>, String> {
        let store: Arc<CredentialStore> = linux_keyutils_keyring_store::Store::new()
            .map_err(|err| describe(Backend::Keyutils, &err))?;
        let probe = format!("probe-{}", std::process::id());
        let entry = store
            .build(SERVICE, &probe, None)
            .map_err(|err| describe(Backend::Keyutils, &err))?;
        let written = b"probe";
        let round_trip = entry.set_secret(written).and_then(|()| entry.get_secret());
        let cleanup = entry.delete_credential();
        match round_trip {
            Ok(read) if read == written => {}
            Ok(_) => return Err("the kernel keyring returned something else".to_string()),
            Err(err) => return Err(describe(Backend::Keyutils, &err)),
        }
        match cleanup {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(store),
            Err(err) => Err(describe(Backend::Keyutils, &err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> Arc<CredentialStore> {
        keyring_core::mock::Store::new().unwrap()
    }

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
    fn entries_are_per_broker_and_user() {
        let store = mock();
        let backend = Backend::Keyutils;
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
        let err = load_in(&*store, Backend::Keyutils, "https://g.example", "alice").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("alice@https://g.example"), "{message}");
        assert!(message.contains("hoist logout"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn keyring_errors_become_plain_words_without_secrets() {
        let denied = || KeyringError::NoStorageAccess("access denied".into());
        assert_eq!(
            failure(Backend::Keyutils, &denied()).to_string(),
            format!("keyutils: {NO_SESSION_KEYRING}")
        );
        let locked = failure(Backend::SecretService, &denied()).to_string();
        assert!(
            locked.starts_with("secret-service: the keyring is locked"),
            "{locked}"
        );
        let bad = KeyringError::BadEncoding(b"s3cret".to_vec());
        assert!(
            !failure(Backend::Keyutils, &bad)
                .to_string()
                .contains("s3cret")
        );
        let bad = KeyringError::BadDataFormat(b"s3cret".to_vec(), "x".into());
        assert!(
            !failure(Backend::Keyutils, &bad)
                .to_string()
                .contains("s3cret")
        );
    }

    #[test]
    fn no_backend_refuses_files_and_names_every_reason() {
        let err = SecretsError::NoBackend {
            tried: vec![
                (
                    Backend::SecretService,
                    "no Secret Service (no D-Bus session bus)".into(),
                ),
                (Backend::Keyutils, NO_SESSION_KEYRING.into()),
            ],
        };
        let message = err.to_string();
        assert!(message.contains("secret-service: no Secret Service (no D-Bus session bus)"));
        assert!(message.contains("keyutils: no session keyring"));
        assert!(
            message.contains("refuses to store tokens in a file"),
            "{message}"
        );
    }

    #[test]
    fn backends_are_named_for_the_environment_variable() {
        assert_eq!(
            Backend::from_name("secret-service"),
            Some(Backend::SecretService)
        );
        assert_eq!(Backend::from_name(" KEYUTILS "), Some(Backend::Keyutils));
        assert_eq!(Backend::from_name("file"), None);
        let err = SecretsError::UnknownBackend {
            value: "file".into(),
        }
        .to_string();
        assert!(err.contains("secret-service, keyutils"), "{err}");
    }
}
