//! Which store keeps sessions in this process: the keyring `HOIST_KEYRING`
//! names, else the first that works (safest first), or the plain-file store
//! after an explicit opt-in. Chosen once per process.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use keyring_core::CredentialStore;

use super::error::SecretsError;
#[cfg(any(target_os = "macos", target_os = "windows"))]
use super::keyring::describe;
use super::{BACKEND_ENV, FILE_STORE_WARNING, file_store};

const KEYUTILS_WARNING: &str = "no Secret Service: the session is kept in the kernel keyring \
     and ends at reboot (or after 3 days unused); you will need to sign in again then";

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStore {
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

impl SessionStore {
    /// Every keyring this build knows, by name, for `HOIST_KEYRING`. The
    /// file store is left out on purpose, so that no environment variable
    /// can choose it.
    pub const ALL: &[SessionStore] = &[
        SessionStore::SecretService,
        SessionStore::Keyutils,
        #[cfg(target_os = "macos")]
        SessionStore::Keychain,
        #[cfg(target_os = "windows")]
        SessionStore::CredentialManager,
    ];

    /// The order tried when none is forced: the safest first.
    const AUTOMATIC: &[SessionStore] = &[
        #[cfg(target_os = "linux")]
        SessionStore::SecretService,
        #[cfg(target_os = "linux")]
        SessionStore::Keyutils,
        #[cfg(target_os = "macos")]
        SessionStore::Keychain,
        #[cfg(target_os = "windows")]
        SessionStore::CredentialManager,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SessionStore::SecretService => "secret-service",
            SessionStore::Keyutils => "keyutils",
            #[cfg(target_os = "macos")]
            SessionStore::Keychain => "keychain",
            #[cfg(target_os = "windows")]
            SessionStore::CredentialManager => "windows",
            SessionStore::File => "file",
        }
    }

    pub fn from_name(name: &str) -> Option<SessionStore> {
        let name = name.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|backend| backend.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub(super) struct Selected {
    pub(super) backend: SessionStore,
    pub(super) store: Store,
}

pub(super) enum Store {
    Keyring(Arc<CredentialStore>),
    File(file_store::FileStore),
}

static SELECTED: OnceLock<Result<Selected, SecretsError>> = OnceLock::new();

/// Picks the keyring: the one `HOIST_KEYRING` names, else the first that
/// works. Only the first call in a process chooses; later calls return its
/// answer (without reading `HOIST_KEYRING` again). Makes it keyring_core's
/// default store too.
pub fn init() -> Result<SessionStore, SecretsError> {
    if let Some(chosen) = SELECTED.get() {
        return answer(chosen);
    }
    let forced = match std::env::var(BACKEND_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            Some(SessionStore::from_name(&value).ok_or(SecretsError::UnknownBackend { value })?)
        }
        _ => None,
    };
    init_with(forced)
}

/// Like [`init`], with the backend given instead of read from the environment.
/// [`SessionStore::File`] cannot be chosen here: see [`init_file_store`].
pub fn init_with(forced: Option<SessionStore>) -> Result<SessionStore, SecretsError> {
    answer(SELECTED.get_or_init(|| select(forced)))
}

/// Keeps sessions in files under `dir` for the rest of the process, instead
/// of any keyring. Only for an explicit opt-in by the user, who must then be
/// shown [`FILE_STORE_WARNING`] (as [`warning`] returns). Must come before
/// any other call here: once a keyring has been chosen (or found missing)
/// this refuses rather than switch stores under the caller. Creates `dir`
/// with mode 0700 and refuses one that other users can enter.
pub fn init_file_store(dir: &Path) -> Result<SessionStore, SecretsError> {
    let mut chose_here = false;
    let chosen = SELECTED.get_or_init(|| {
        chose_here = true;
        file_store::FileStore::open(dir).map(|files| Selected {
            backend: SessionStore::File,
            store: Store::File(files),
        })
    });
    match chosen {
        Ok(Selected {
            store: Store::File(files),
            ..
        }) if files.dir() == dir => Ok(SessionStore::File),
        Ok(selected) => Err(SecretsError::AlreadyChosen {
            chosen: Some(selected.backend),
        }),
        Err(err) if chose_here => Err(err.clone()),
        Err(_) => Err(SecretsError::AlreadyChosen { chosen: None }),
    }
}

/// The store this process chose, if it has chosen one that works.
pub fn chosen() -> Option<SessionStore> {
    match SELECTED.get() {
        Some(Ok(selected)) => Some(selected.backend),
        _ => None,
    }
}

fn answer(chosen: &Result<Selected, SecretsError>) -> Result<SessionStore, SecretsError> {
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
            SessionStore::Keyutils => Some(KEYUTILS_WARNING),
            SessionStore::File => Some(FILE_STORE_WARNING),
            _ => None,
        },
        _ => None,
    }
}

fn select(forced: Option<SessionStore>) -> Result<Selected, SecretsError> {
    let candidates = match forced {
        Some(backend) => vec![backend],
        None => SessionStore::AUTOMATIC.to_vec(),
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
fn open(backend: SessionStore) -> Result<Arc<CredentialStore>, String> {
    match backend {
        #[cfg(target_os = "linux")]
        SessionStore::SecretService => super::linux::open_secret_service(),
        #[cfg(target_os = "linux")]
        SessionStore::Keyutils => super::linux::open_keyutils(),
        #[cfg(not(target_os = "linux"))]
        SessionStore::SecretService | SessionStore::Keyutils => {
            Err("only available on Linux".to_string())
        }
        #[cfg(target_os = "macos")]
        SessionStore::Keychain => match apple_native_keyring_store::keychain::Store::new() {
            Ok(store) => Ok(store),
            Err(err) => Err(describe(backend, &err)),
        },
        #[cfg(target_os = "windows")]
        SessionStore::CredentialManager => match windows_native_keyring_store::Store::new() {
            Ok(store) => Ok(store),
            Err(err) => Err(describe(backend, &err)),
        },
        SessionStore::File => {
            Err("not a keyring: only `--insecure-file-store` chooses it".to_string())
        }
    }
}

pub(super) fn selected() -> Result<&'static Selected, SecretsError> {
    init()?;
    match SELECTED.get() {
        Some(Ok(selected)) => Ok(selected),
        Some(Err(err)) => Err(err.clone()),
        // `init` either set it or returned the error above.
        None => Err(SecretsError::NoBackend { tried: Vec::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_named_for_the_environment_variable() {
        assert_eq!(
            SessionStore::from_name("secret-service"),
            Some(SessionStore::SecretService)
        );
        assert_eq!(
            SessionStore::from_name(" KEYUTILS "),
            Some(SessionStore::Keyutils)
        );
        // The file store has a name, but no environment variable can choose it.
        assert_eq!(SessionStore::File.name(), "file");
        assert_eq!(SessionStore::from_name("file"), None);
        assert!(!SessionStore::ALL.contains(&SessionStore::File));
        assert!(!SessionStore::AUTOMATIC.contains(&SessionStore::File));
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
            chosen: Some(SessionStore::Keyutils),
        }
        .to_string();
        assert!(
            err.contains("already chosen in this process (keyutils)"),
            "{err}"
        );
        let err = SecretsError::AlreadyChosen { chosen: None }.to_string();
        assert!(err.contains("(no keyring worked)"), "{err}");
        assert_eq!(
            open(SessionStore::File).err().as_deref(),
            Some("not a keyring: only `--insecure-file-store` chooses it")
        );
    }
}
