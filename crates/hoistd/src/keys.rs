//! Ed25519 keys kept outside the database: the audit checkpoint key, and
//! optionally the credential signing key. A key is PKCS#8 PEM (what
//! `hoistd keygen` and `openssl genpkey -algorithm ed25519` write), read
//! from a file only its owner can read, or from an environment variable.
//! Shared secrets (the Slack signing secret) are read the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} can be read by others (mode {mode:o}); make it readable by its owner only: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{origin} is not an Ed25519 key in PEM (PKCS#8 private or SPKI public key)")]
    Malformed { origin: String },
    #[error("{origin} is empty")]
    Empty { origin: String },
    #[error("cannot write the key file {path}: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a key comes from, for messages; never the key itself.
fn origin_of(path: Option<&Path>, variable: &str) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => format!("${variable}"),
    }
}

/// A short id of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The PEM text of the key file at `path`, refused if anyone but its owner
/// may read it.
fn read_private_file(path: &Path) -> Result<String, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |source| KeyError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

/// A private key from `path` (0600 or stricter) or, without a path, from
/// the environment variable `variable`; `None` if neither is given.
pub fn signing_key(path: Option<&Path>, variable: &str) -> Result<Option<SigningKey>, KeyError> {
    let pem = match path {
        Some(path) => read_private_file(path)?,
        None => match std::env::var(variable) {
            Ok(pem) if !pem.trim().is_empty() => pem,
            _ => return Ok(None),
        },
    };
    SigningKey::from_pkcs8_pem(pem.trim())
        .map(Some)
        .map_err(|_| KeyError::Malformed {
            origin: origin_of(path, variable),
        })
}

/// A shared secret from `path` (0600 or stricter) or, without a path, from
/// the environment variable `variable`, without surrounding white space;
/// `None` if neither is given. An empty file is refused.
pub fn secret_text(path: Option<&Path>, variable: &str) -> Result<Option<String>, KeyError> {
    let text = match path {
        Some(path) => read_private_file(path)?,
        None => match std::env::var(variable) {
            Ok(text) if !text.trim().is_empty() => text,
            _ => return Ok(None),
        },
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Empty {
            origin: origin_of(path, variable),
        });
    }
    Ok(Some(text.to_string()))
}

/// A public key to check signatures with: a public key file, or the public
/// half of a private key (file or environment, as [`signing_key`]).
pub fn verifying_key(
    path: Option<&Path>,
    variable: &str,
) -> Result<Option<VerifyingKey>, KeyError> {
    if let Some(path) = path {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(public) = VerifyingKey::from_public_key_pem(pem.trim()) {
            return Ok(Some(public));
        }
    }
    Ok(signing_key(path, variable)?.map(|key| key.verifying_key()))
}

/// Writes a new private key to `path`, readable by its owner only, and
/// returns it. Refuses to replace a file that exists.
pub fn generate(path: &Path) -> Result<SigningKey, KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let unwritable = |source| KeyError::Unwritable {
        path: path.to_path_buf(),
        source,
    };
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| unwritable(std::io::Error::other(err.to_string())))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(unwritable)?;
    file.write_all(pem.as_bytes()).map_err(unwritable)?;
    file.sync_all().map_err(unwritable)?;
    Ok(key)
}

/// The public half as SPKI PEM, to hand to whoever verifies.
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.pem");
        let key = generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = signing_key(Some(&path), "HOISTD_TEST_UNSET")
            .unwrap()
            .unwrap();
        assert_eq!(loaded.verifying_key(), key.verifying_key());
        assert!(
            generate(&path).is_err(),
            "an existing key is never replaced"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = signing_key(Some(&path), "HOISTD_TEST_UNSET").unwrap_err();
        assert!(
            matches!(refused, KeyError::Exposed { mode: 0o644, .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }

    #[test]
    fn a_public_key_file_verifies_without_the_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate(&dir.path().join("key.pem")).unwrap();
        let public = dir.path().join("key.pub.pem");
        std::fs::write(&public, public_pem(&key.verifying_key())).unwrap();
        let loaded = verifying_key(Some(&public), "HOISTD_TEST_UNSET")
            .unwrap()
            .unwrap();
        assert_eq!(loaded, key.verifying_key());

        std::fs::write(&public, "not a key").unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o600)).unwrap();
        let refused = verifying_key(Some(&public), "HOISTD_TEST_UNSET").unwrap_err();
        assert!(
            refused.to_string().contains("not an Ed25519 key"),
            "{refused}"
        );
        assert!(
            !refused.to_string().contains("not a key"),
            "no key text in errors"
        );
    }

    #[test]
    fn a_secret_file_is_read_trimmed_and_only_if_private() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slack-signing-secret");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(b"8f742231b10e8888abcd99yyyzzz85a5\n")
            .unwrap();
        drop(file);
        assert_eq!(
            secret_text(Some(&path), "HOISTD_TEST_UNSET").unwrap(),
            Some("8f742231b10e8888abcd99yyyzzz85a5".to_string())
        );
        assert_eq!(secret_text(None, "HOISTD_TEST_UNSET").unwrap(), None);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = secret_text(Some(&path), "HOISTD_TEST_UNSET").unwrap_err();
        assert!(matches!(refused, KeyError::Exposed { mode: 0o640, .. }));
        assert!(!refused.to_string().contains("8f742231"), "{refused}");

        std::fs::write(&path, " \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let refused = secret_text(Some(&path), "HOISTD_TEST_UNSET").unwrap_err();
        assert!(refused.to_string().ends_with("is empty"), "{refused}");
    }
}
