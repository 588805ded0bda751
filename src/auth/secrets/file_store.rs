//! Sessions in plain files, for the user who has no keyring and says so.
//!
//! One file per account, `<hash>.json`, where the hash is FNV-1a (128
//! bits) of [`account`]: stable across versions and platforms, and it
//! keeps broker URLs out of paths. The file also records its account, so
//! a file that is not this account's is refused rather than used.
//!
//! Files are written through [`crate::fs`]: born 0600 in a 0700
//! directory, replaced whole, flushed to disk. A file others can read is
//! refused: its token may already have leaked, and the user should know.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SecretsError, Session, SessionStore, account};
use crate::fs::{create_private_dir, sync_dir, write_private};

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

    pub(super) fn load(&self, broker: &str, user: &str) -> Result<Option<Session>, SecretsError> {
        let path = self.path(broker, user);
        let cannot_read = |err: io::Error| failed(format!("cannot read {}: {err}", path.display()));
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
        // Recreates the directory if it went away since `open`.
        write_private(&path, &json).map_err(cannot_write)
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
        backend: SessionStore::File,
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

#[cfg(test)]
mod tests {
    //! The file store on a real file system, without choosing it for
    //! the process (that is the session tests' job).

    use std::path::{Path, PathBuf};

    use super::super::{SecretsError, Session, account};
    use super::{FileStore, file_name, fnv1a_128};
    use crate::fs::create_private_file;
    #[cfg(unix)]
    use crate::fs::tests::mode;
    use crate::fs::tests::names;

    const BROKER: &str = "https://hoist.corp.example";

    /// A store in a fresh private dir, and that dir.
    fn fresh_store() -> (tempfile::TempDir, FileStore, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sessions");
        let store = FileStore::open(&dir).unwrap();
        (tmp, store, dir)
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
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
