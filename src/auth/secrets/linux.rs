//! Opening and checking the two Linux backends.

use std::sync::Arc;

use keyring_core::{CredentialStore, Error as KeyringError};

use super::error::LOCKED;
use super::keyring::describe;
use super::{SERVICE, SessionStore};

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
        .map_err(|err| describe(SessionStore::SecretService, &err))?;
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
        .map_err(|err| describe(SessionStore::Keyutils, &err))?;
    let probe = format!("probe-{}", std::process::id());
    let entry = store
        .build(SERVICE, &probe, None)
        .map_err(|err| describe(SessionStore::Keyutils, &err))?;
    let written = b"probe";
    let round_trip = entry.set_secret(written).and_then(|()| entry.get_secret());
    let cleanup = entry.delete_credential();
    match round_trip {
        Ok(read) if read == written => {}
        Ok(_) => return Err("the kernel keyring returned something else".to_string()),
        Err(err) => return Err(describe(SessionStore::Keyutils, &err)),
    }
    match cleanup {
        Ok(()) | Err(KeyringError::NoEntry) => Ok(store),
        Err(err) => Err(describe(SessionStore::Keyutils, &err)),
    }
}
