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

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use serde::{Deserialize, Serialize};

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
    /// Plain files, only after an explicit opt-in ([`init_file_store`]).
    File,
}

impl Backend {
    /// Every keyring this build knows, by name, for `HOIST_KEYRING`. The
    /// file store is left out on purpose, so that no environment variable
    /// can choose it.
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
            Backend::File => "file",
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
        "no usable keyring ({}); hoist keeps sessions in the OS keyring and refuses to store tokens \
         in a file unless you explicitly ask with `hoist login --insecure-file-store` \
         (anyone with access to this account or its backups could then read the token)",
        describe_tried(.tried)
    )]
    NoBackend { tried: Vec<(Backend, String)> },
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
    AlreadyChosen { chosen: Option<Backend> },
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

fn file_hint(value: &str) -> &'static str {
    if value.trim().eq_ignore_ascii_case(Backend::File.name()) {
        " (a plain-file store is never chosen this way: it takes `hoist login --insecure-file-store`)"
    } else {
        ""
    }
}

fn chosen_name(chosen: &Option<Backend>) -> String {
    match chosen {
        Some(backend) => backend.to_string(),
        None => "no keyring worked".to_string(),
    }
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
    store: Store,
}

enum Store {
    Keyring(Arc<CredentialStore>),
    File(file_store::FileStore),
}

static SELECTED: OnceLock<Result<Selected, SecretsError>> = OnceLock::new();

/// Picks the keyring: the one `HOIST_KEYRING` names, else the first that
/// works. Only the first call in a process chooses; later calls return its
/// answer (without reading `HOIST_KEYRING` again). Makes it keyring_core's
/// default store too.
pub fn init() -> Result<Backend, SecretsError> {
    if let Some(chosen) = SELECTED.get() {
        return answer(chosen);
    }
    let forced = match std::env::var(BACKEND_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            Some(Backend::from_name(&value).ok_or(SecretsError::UnknownBackend { value })?)
        }
        _ => None,
    };
    init_with(forced)
}

/// Like [`init`], with the backend given instead of read from the environment.
/// [`Backend::File`] cannot be chosen here: see [`init_file_store`].
pub fn init_with(forced: Option<Backend>) -> Result<Backend, SecretsError> {
    answer(SELECTED.get_or_init(|| select(forced)))
}

/// Keeps sessions in files under `dir` for the rest of the process, instead
/// of any keyring. Only for an explicit opt-in by the user, who must then be
/// shown [`FILE_STORE_WARNING`] (as [`warning`] returns). Must come before
/// any other call here: once a keyring has been chosen (or found missing)
/// this refuses rather than switch stores under the caller. Creates `dir`
/// with mode 0700 and refuses one that other users can enter.
pub fn init_file_store(dir: &Path) -> Result<Backend, SecretsError> {
    let mut chose_here = false;
    let chosen = SELECTED.get_or_init(|| {
        chose_here = true;
        file_store::FileStore::open(dir).map(|files| Selected {
            backend: Backend::File,
            store: Store::File(files),
        })
    });
    match chosen {
        Ok(Selected {
            store: Store::File(files),
            ..
        }) if files.dir() == dir => Ok(Backend::File),
        Ok(selected) => Err(SecretsError::AlreadyChosen {
            chosen: Some(selected.backend),
        }),
        Err(err) if chose_here => Err(err.clone()),
        Err(_) => Err(SecretsError::AlreadyChosen { chosen: None }),
    }
}

fn answer(chosen: &Result<Selected, SecretsError>) -> Result<Backend, SecretsError> {
    match chosen {
        Ok(selected) => Ok(selected.backend),
        Err(err) => Err(err.clone()),
    }
}

/// What the user should know about where sessions are kept, if anything:
/// set when the kernel keyring is in use, whose entries end at reboot, and
/// when sessions are kept in plain files.
pub fn warning() -> Option<&'static str> {
    match SELECTED.get() {
        Some(Ok(selected)) => match selected.backend {
            Backend::Keyutils => Some(KEYUTILS_WARNING),
            Backend::File => Some(FILE_STORE_WARNING),
            _ => None,
        },
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
                return Ok(Selected {
                    backend,
                    store: Store::Keyring(store),
                });
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
        Backend::File => Err("not a keyring: only `--insecure-file-store` chooses it".to_string()),
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
    match &selected.store {
        Store::Keyring(store) => load_in(&**store, selected.backend, broker, user),
        Store::File(files) => files.load(broker, user),
    }
}

/// Stores the session for `user` at `broker`, replacing any earlier one.
pub fn save(broker: &str, user: &str, session: &Session) -> Result<(), SecretsError> {
    let selected = selected()?;
    match &selected.store {
        Store::Keyring(store) => save_in(&**store, selected.backend, broker, user, session),
        Store::File(files) => files.save(broker, user, session),
    }
}

/// Deletes the session for `user` at `broker`; false if there was none.
pub fn delete(broker: &str, user: &str) -> Result<bool, SecretsError> {
    let selected = selected()?;
    match &selected.store {
        Store::Keyring(store) => delete_in(&**store, selected.backend, broker, user),
        Store::File(files) => files.delete(broker, user),
    }
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

mod file_store {
    //! Sessions in plain files, for the user who has no keyring and says so.
    //!
    //! One file per account, `<hash>.json`, where the hash is FNV-1a (128
    //! bits) of [`account`]: stable across versions and platforms, and it
    //! keeps broker URLs out of paths. The file also records its account, so
    //! a file that is not this account's is refused rather than used.
    //!
    //! A file is born with mode 0600 (there is no moment at which it is
    //! readable by others, whatever the umask), written in full under a
    //! temporary name, flushed to disk and renamed over the old one, so a
    //! crash leaves the old session or the new one. A file others can read
    //! is refused: its token may already have leaked, and the user should
    //! know.

    use std::fs::{File, OpenOptions};
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};

    use super::{Backend, SecretsError, Session, account};

    /// Far beyond any session; a bigger file is not one of ours.
    const MAX_FILE_BYTES: u64 = 64 * 1024;

    /// What a session file holds.
    #[derive(Serialize, Deserialize)]
    struct SessionFile {
        account: String,
        session: Session,
    }

    pub(super) struct FileStore {
        dir: PathBuf,
    }

    impl FileStore {
        /// The store in `dir`, which is created with mode 0700 if missing
        /// and refused if other users can enter it.
        pub(super) fn open(dir: &Path) -> Result<FileStore, SecretsError> {
            create_private_dir(dir)
                .map_err(|err| failed(format!("cannot create {}: {err}", dir.display())))?;
            let metadata = std::fs::metadata(dir)
                .map_err(|err| failed(format!("cannot read {}: {err}", dir.display())))?;
            if !metadata.is_dir() {
                return Err(failed(format!("{} is not a directory", dir.display())));
            }
            if let Some(mode) = exposed(&metadata) {
                return Err(SecretsError::ExposedDir {
                    path: dir.to_path_buf(),
                    mode,
                });
            }
            Ok(FileStore {
                dir: dir.to_path_buf(),
            })
        }

        pub(super) fn dir(&self) -> &Path {
            &self.dir
        }

        /// The file that holds the session of `user` at `broker`.
        pub(super) fn path(&self, broker: &str, user: &str) -> PathBuf {
            self.dir.join(file_name(&account(broker, user)))
        }

        pub(super) fn load(
            &self,
            broker: &str,
            user: &str,
        ) -> Result<Option<Session>, SecretsError> {
            let path = self.path(broker, user);
            let cannot_read =
                |err: io::Error| failed(format!("cannot read {}: {err}", path.display()));
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(cannot_read(err)),
            };
            // The mode of the file actually opened, not of whatever the path
            // names a moment later.
            let metadata = file.metadata().map_err(cannot_read)?;
            if !metadata.is_file() {
                return Err(failed(format!("{} is not a file", path.display())));
            }
            if let Some(mode) = exposed(&metadata) {
                return Err(SecretsError::ExposedFile { path, mode });
            }
            let mut bytes = Vec::new();
            file.take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(cannot_read)?;
            let account = account(broker, user);
            let corrupt = || SecretsError::Corrupt {
                account: account.clone(),
            };
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(corrupt());
            }
            // As in the keyring, serde_json's message could quote the token.
            match serde_json::from_slice::<SessionFile>(&bytes) {
                Ok(stored) if stored.account == account => Ok(Some(stored.session)),
                _ => Err(corrupt()),
            }
        }

        pub(super) fn save(
            &self,
            broker: &str,
            user: &str,
            session: &Session,
        ) -> Result<(), SecretsError> {
            let path = self.path(broker, user);
            let cannot_write =
                |err: io::Error| failed(format!("cannot write {}: {err}", path.display()));
            let stored = SessionFile {
                account: account(broker, user),
                session: session.clone(),
            };
            let mut json = serde_json::to_vec_pretty(&stored)
                .map_err(|_| failed("cannot encode the session".to_string()))?;
            json.push(b'\n');
            // In case the directory went away since `open`.
            create_private_dir(&self.dir).map_err(cannot_write)?;
            let mut file = tempfile::Builder::new()
                .prefix(".session-")
                .suffix(".tmp")
                .make_in(&self.dir, create_private_file)
                .map_err(cannot_write)?;
            file.as_file_mut()
                .write_all(&json)
                .and_then(|()| file.as_file().sync_all())
                .map_err(cannot_write)?;
            // On error the temporary file is removed when it drops.
            file.persist(&path).map_err(|err| cannot_write(err.error))?;
            sync_dir(&self.dir).map_err(cannot_write)
        }

        pub(super) fn delete(&self, broker: &str, user: &str) -> Result<bool, SecretsError> {
            let path = self.path(broker, user);
            let cannot_delete =
                |err: io::Error| failed(format!("cannot delete {}: {err}", path.display()));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(err) => return Err(cannot_delete(err)),
            }
            sync_dir(&self.dir).map_err(cannot_delete)?;
            Ok(true)
        }
    }

    fn failed(reason: String) -> SecretsError {
        SecretsError::Failed {
            backend: Backend::File,
            reason,
        }
    }

    /// `<FNV-1a 128 of the account, in hex>.json`.
    pub(super) fn file_name(account: &str) -> String {
        format!("{:032x}.json", fnv1a_128(account.as_bytes()))
    }

    /// FNV-1a with the 128-bit parameters of the FNV specification
    /// (draft-eastlake-fnv). Not for secrecy: only a name that never changes.
    pub(super) fn fnv1a_128(bytes: &[u8]) -> u128 {
        const OFFSET_BASIS: u128 = 0x6c62272e07bb014262b821756295c58d;
        const PRIME: u128 = 0x0000000001000000000000000000013b;
        bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u128::from(byte)).wrapping_mul(PRIME)
        })
    }

    /// Creates a new file that only its owner can read or write, from the
    /// moment it exists; fails if something is already at `path`.
    pub(super) fn create_private_file(path: &Path) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path)
    }

    fn create_private_dir(dir: &Path) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)
    }

    /// The permission bits, if anyone but the owner has any.
    #[cfg(unix)]
    fn exposed(metadata: &std::fs::Metadata) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }

    /// Elsewhere the profile directory's access control list protects it.
    #[cfg(not(unix))]
    fn exposed(_metadata: &std::fs::Metadata) -> Option<u32> {
        None
    }

    /// Makes a rename or removal in `dir` survive a crash.
    #[cfg(unix)]
    fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    #[cfg(not(unix))]
    fn sync_dir(_dir: &Path) -> io::Result<()> {
        Ok(())
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
        // The one way out is named, with its cost.
        assert!(
            message.contains("explicitly ask with `hoist login --insecure-file-store`"),
            "{message}"
        );
        assert!(message.contains("backups"), "{message}");
    }

    #[test]
    fn backends_are_named_for_the_environment_variable() {
        assert_eq!(
            Backend::from_name("secret-service"),
            Some(Backend::SecretService)
        );
        assert_eq!(Backend::from_name(" KEYUTILS "), Some(Backend::Keyutils));
        // The file store has a name, but no environment variable can choose it.
        assert_eq!(Backend::File.name(), "file");
        assert_eq!(Backend::from_name("file"), None);
        assert!(!Backend::ALL.contains(&Backend::File));
        assert!(!Backend::AUTOMATIC.contains(&Backend::File));
        let err = SecretsError::UnknownBackend {
            value: "file".into(),
        }
        .to_string();
        assert!(err.contains("secret-service, keyutils"), "{err}");
        assert!(err.contains("hoist login --insecure-file-store"), "{err}");
        let err = SecretsError::UnknownBackend {
            value: "gnome".into(),
        }
        .to_string();
        assert!(!err.contains("insecure"), "{err}");
    }

    #[test]
    fn choosing_a_second_store_is_refused_in_words() {
        let err = SecretsError::AlreadyChosen {
            chosen: Some(Backend::Keyutils),
        }
        .to_string();
        assert!(
            err.contains("already chosen in this process (keyutils)"),
            "{err}"
        );
        let err = SecretsError::AlreadyChosen { chosen: None }.to_string();
        assert!(err.contains("(no keyring worked)"), "{err}");
        assert_eq!(
            open(Backend::File).err().as_deref(),
            Some("not a keyring: only `--insecure-file-store` chooses it")
        );
    }

    #[test]
    fn the_file_store_warning_says_who_can_read_the_token() {
        assert!(FILE_STORE_WARNING.contains("plain file"));
        assert!(FILE_STORE_WARNING.contains("anyone with access to this account or its backups"));
    }

    mod file_store_tests {
        //! The file store on a real file system, without choosing it for
        //! the process (that is the session tests' job).

        use std::path::{Path, PathBuf};

        use super::super::file_store::{FileStore, create_private_file, file_name, fnv1a_128};
        use super::super::{SecretsError, Session, account};

        const BROKER: &str = "https://hoist.corp.example";

        /// A store in a fresh private dir, and that dir.
        fn fresh_store() -> (tempfile::TempDir, FileStore, PathBuf) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("sessions");
            let store = FileStore::open(&dir).unwrap();
            (tmp, store, dir)
        }

        #[cfg(unix)]
        fn mode(path: &Path) -> u32 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777
        }

        #[cfg(unix)]
        fn set_mode(path: &Path, mode: u32) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }

        fn names(dir: &Path) -> Vec<String> {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        }

        #[test]
        fn file_names_are_a_stable_hash_of_the_account() {
            // Test vectors of the FNV specification.
            assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
            assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
            assert_eq!(fnv1a_128(b"foobar"), 0x343e1662793c64bf6f0d3597ba446f18);
            // A name written by one version must be found by the next.
            assert_eq!(
                file_name(&account(BROKER, "alice")),
                "8ef0f7ddf62ecb5b545c03f8f3abcf29.json"
            );
            let (_tmp, store, dir) = fresh_store();
            let odd = store.path("http://[::1]:8700/../..", "../alice");
            assert_eq!(odd.parent(), Some(dir.as_path()));
            assert_ne!(store.path(BROKER, "alice"), store.path(BROKER, "bob"));
        }

        #[cfg(unix)]
        #[test]
        fn files_are_0600_from_creation_in_a_0700_dir() {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("config/sessions");
            let store = FileStore::open(&dir).unwrap();
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&tmp.path().join("config")), 0o700);

            // Private before a single byte is written, not chmod-ed after.
            let fresh = tmp.path().join("fresh");
            let file = create_private_file(&fresh).unwrap();
            assert_eq!(mode(&fresh), 0o600);
            assert_eq!(file.metadata().unwrap().len(), 0);
            // And never over something already there.
            assert!(create_private_file(&fresh).is_err());

            store
                .save(BROKER, "alice", &Session::with_token("s3cret"))
                .unwrap();
            let path = store.path(BROKER, "alice");
            assert_eq!(mode(&path), 0o600);
            assert_eq!(names(&dir), [file_name(&account(BROKER, "alice"))]);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(&account(BROKER, "alice")), "{text}");
        }

        #[cfg(unix)]
        #[test]
        fn a_dir_others_can_enter_is_refused() {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("sessions");
            std::fs::create_dir(&dir).unwrap();
            set_mode(&dir, 0o755);
            let Err(err) = FileStore::open(&dir) else {
                panic!("a 0755 dir was accepted");
            };
            assert_eq!(
                err,
                SecretsError::ExposedDir {
                    path: dir.clone(),
                    mode: 0o755
                }
            );
            let message = err.to_string();
            assert!(message.contains("mode 755"), "{message}");
            assert!(
                message.contains(&format!("chmod 700 {}", dir.display())),
                "{message}"
            );
        }

        #[cfg(unix)]
        #[test]
        fn saving_replaces_the_file_atomically() {
            use std::io::Read;
            use std::os::unix::fs::MetadataExt;

            let (_tmp, store, dir) = fresh_store();
            let path = store.path(BROKER, "alice");
            store
                .save(BROKER, "alice", &Session::with_token("first"))
                .unwrap();
            let mut old = std::fs::File::open(&path).unwrap();
            let old_inode = old.metadata().unwrap().ino();

            let second = Session {
                refresh_token: Some("refresh".into()),
                expires_at: Some("2030-01-02T03:04:05Z".parse().unwrap()),
                ..Session::with_token("second")
            };
            store.save(BROKER, "alice", &second).unwrap();

            // A new file was renamed into place: a reader of the old one
            // still sees all of it, never a half-written mix.
            assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_inode);
            let mut seen = String::new();
            old.read_to_string(&mut seen).unwrap();
            assert!(seen.contains("\"first\""), "{seen}");
            assert!(!seen.contains("second"), "{seen}");
            assert_eq!(store.load(BROKER, "alice").unwrap(), Some(second));
            assert_eq!(mode(&path), 0o600);
            // No temporary file is left behind.
            assert_eq!(names(&dir), [file_name(&account(BROKER, "alice"))]);
        }

        #[cfg(unix)]
        #[test]
        fn a_file_others_can_read_is_refused_until_chmod_600() {
            let (_tmp, store, _dir) = fresh_store();
            let session = Session::with_token("s3cret");
            store.save(BROKER, "alice", &session).unwrap();
            let path = store.path(BROKER, "alice");

            for exposed in [0o644, 0o640, 0o604] {
                set_mode(&path, exposed);
                let err = store.load(BROKER, "alice").unwrap_err();
                assert_eq!(
                    err,
                    SecretsError::ExposedFile {
                        path: path.clone(),
                        mode: exposed
                    }
                );
                let message = err.to_string();
                assert!(
                    message.contains(&format!("{} is open to other users", path.display())),
                    "{message}"
                );
                assert!(
                    message.contains(&format!("chmod 600 {}", path.display())),
                    "{message}"
                );
                assert!(!message.contains("s3cret"), "{message}");
            }
            set_mode(&path, 0o600);
            assert_eq!(store.load(BROKER, "alice").unwrap(), Some(session));
        }

        #[test]
        fn load_save_and_delete_work_as_with_a_keyring() {
            let (_tmp, store, dir) = fresh_store();
            let a = Session::with_token("token-a");
            let b = Session::with_token("token-b");
            assert_eq!(store.load(BROKER, "alice").unwrap(), None);
            store.save(BROKER, "alice", &a).unwrap();
            store.save("https://two.example", "alice", &b).unwrap();
            assert_eq!(store.load(BROKER, "alice").unwrap(), Some(a));
            assert_eq!(
                store.load("https://two.example", "alice").unwrap(),
                Some(b.clone())
            );
            assert_eq!(store.load(BROKER, "bob").unwrap(), None);

            assert!(store.delete(BROKER, "alice").unwrap());
            assert!(!store.delete(BROKER, "alice").unwrap());
            assert_eq!(store.load(BROKER, "alice").unwrap(), None);
            assert!(!store.path(BROKER, "alice").exists());
            assert_eq!(
                names(&dir),
                [file_name(&account("https://two.example", "alice"))]
            );
            assert!(store.delete("https://two.example", "alice").unwrap());
            assert!(names(&dir).is_empty());
        }

        #[test]
        fn a_garbled_or_foreign_file_is_refused_without_its_content() {
            let (_tmp, store, _dir) = fresh_store();
            let garbled = store.path("https://g.example", "alice");
            {
                use std::io::Write;
                let mut file = create_private_file(&garbled).unwrap();
                file.write_all(b"not json s3cret").unwrap();
            }
            let err = store.load("https://g.example", "alice").unwrap_err();
            let message = err.to_string();
            assert!(message.contains("alice@https://g.example"), "{message}");
            assert!(message.contains("hoist logout"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");

            // Bob's file copied over Alice's is not Alice's session.
            store
                .save(BROKER, "bob", &Session::with_token("bobs"))
                .unwrap();
            std::fs::copy(store.path(BROKER, "bob"), store.path(BROKER, "alice")).unwrap();
            assert_eq!(
                store.load(BROKER, "alice").unwrap_err(),
                SecretsError::Corrupt {
                    account: account(BROKER, "alice")
                }
            );
        }
    }
}
