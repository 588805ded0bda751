//! Which SSH public key a broker certifies for a grant, and where the
//! certificate goes: the key named, else the first plain key in the
//! ssh-agent, else `~/.ssh/id_ed25519.pub`; a certificate is written as
//! `<key>-cert.pub` beside its key, where ssh looks for it. `hoist
//! credential`, the TUI's credential view and `hoist ssh` (which also makes
//! ephemeral keys) share this.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ssh_key::{Certificate, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Callers add what to do, in their own terms.
    #[error("no SSH public key to certify: none in the ssh-agent{agent}, no ~/.ssh/id_ed25519.pub")]
    NoKey { agent: &'static str },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is not an OpenSSH public key (the one line of a .pub file)")]
    NotAKey { path: String },
    #[error(
        "the ssh-agent's key {fingerprint} has no .pub file in ~/.ssh to write a \
         certificate beside; give its file with --public-key"
    )]
    NoKeyFile { fingerprint: String },
    #[error("{path} exists and is not an OpenSSH certificate; it was left as it is")]
    NotACertificate { path: String },
    #[error("cannot write {path}: {reason}")]
    Unwritable { path: String, reason: String },
    /// What the broker sent is not the certificate asked for.
    #[error("{0}")]
    BadCertificate(&'static str),
}

/// A public key to certify, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderKey {
    /// One OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub line: String,
    /// Its `.pub` file, when it came from one.
    pub file: Option<PathBuf>,
}

impl HolderKey {
    /// The key's SHA-256 fingerprint (`SHA256:...`), as ssh prints it.
    pub fn fingerprint(&self) -> String {
        PublicKey::from_openssh(&self.line)
            .map(|key| key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
            .unwrap_or_default()
    }
}

/// `~/.ssh/id_ed25519.pub`, where the person has one.
pub fn default_key_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".ssh/id_ed25519.pub"))
}

/// The key to certify: `named`, else the agent's first plain key, else
/// `~/.ssh/id_ed25519.pub`.
pub async fn find(named: Option<&Path>) -> Result<HolderKey, KeyError> {
    if let Some(path) = named {
        return Ok(HolderKey {
            line: read_public(path)?,
            file: Some(path.to_path_buf()),
        });
    }
    let has_agent = std::env::var_os("SSH_AUTH_SOCK").is_some();
    if has_agent && let Some(line) = agent_key().await {
        return Ok(HolderKey { line, file: None });
    }
    if let Some(path) = default_key_file().filter(|path| path.exists()) {
        return Ok(HolderKey {
            line: read_public(&path)?,
            file: Some(path),
        });
    }
    Err(KeyError::NoKey {
        agent: if has_agent {
            ""
        } else {
            " (SSH_AUTH_SOCK is not set)"
        },
    })
}

/// The one public key line in the file at `path`, checked.
pub fn read_public(path: &Path) -> Result<String, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|err| KeyError::Unreadable {
        path: path.display().to_string(),
        reason: err.to_string(),
    })?;
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if PublicKey::from_openssh(&line).is_err() {
        return Err(KeyError::NotAKey {
            path: path.display().to_string(),
        });
    }
    Ok(line)
}

/// The first plain key (not a certificate) the ssh-agent holds.
pub async fn agent_key() -> Option<String> {
    let out = tokio::process::Command::new("ssh-add")
        .arg("-L")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|line| !line.contains("-cert-v01@openssh.com") && !line.trim().is_empty())
        .map(str::to_string)
}

/// The `.pub` file of `key`: its own, or for an agent's key the file in
/// `~/.ssh` that holds the same key.
pub fn key_file(key: &HolderKey) -> Result<PathBuf, KeyError> {
    if let Some(file) = &key.file {
        return Ok(file.clone());
    }
    let no_file = || KeyError::NoKeyFile {
        fingerprint: key.fingerprint(),
    };
    let wanted = PublicKey::from_openssh(&key.line).map_err(|_| no_file())?;
    let dir = default_key_file()
        .and_then(|file| file.parent().map(Path::to_path_buf))
        .ok_or_else(no_file)?;
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|_| no_file())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| n.ends_with(".pub") && !n.ends_with("-cert.pub"))
        })
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .find(|path| {
            read_public(path)
                .ok()
                .and_then(|line| PublicKey::from_openssh(&line).ok())
                .is_some_and(|found| found.key_data() == wanted.key_data())
        })
        .ok_or_else(no_file)
}

/// Where ssh looks for the certificate of the key in `public`:
/// `id_ed25519.pub` -> `id_ed25519-cert.pub`.
pub fn certificate_path(public: &Path) -> PathBuf {
    let name = public
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pub").unwrap_or(&name);
    public.with_file_name(format!("{stem}-cert.pub"))
}

/// Checks what the broker sent as the certificate of `key`: one OpenSSH
/// certificate line, of printable ASCII only (it is printed and written as
/// it is), for that very key.
pub fn check_certificate(line: &str, key: &HolderKey) -> Result<Certificate, KeyError> {
    if line.is_empty() || !line.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(KeyError::BadCertificate(
            "a certificate with characters no certificate has; not used",
        ));
    }
    let certificate = Certificate::from_openssh(line).map_err(|_| {
        KeyError::BadCertificate("a certificate that is not an OpenSSH certificate")
    })?;
    let certified = PublicKey::from_openssh(&key.line)
        .map_err(|_| KeyError::BadCertificate("a certificate for a key it was not sent"))?;
    if certificate.public_key() != certified.key_data() {
        return Err(KeyError::BadCertificate(
            "a certificate for a key it was not sent",
        ));
    }
    Ok(certificate)
}

/// Whether a certificate may be written at `path`: nothing is there, or a
/// certificate is (which a new one replaces).
pub fn may_write_certificate(path: &Path) -> Result<(), KeyError> {
    let refused = || KeyError::NotACertificate {
        path: path.display().to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(old) => {
            let first = old.lines().next().unwrap_or_default().trim();
            Certificate::from_openssh(first)
                .map(|_| ())
                .map_err(|_| refused())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Unreadable, a directory, not text: not a certificate either.
        Err(_) => Err(refused()),
    }
}

/// Writes `line` (a checked certificate) to `path`, whole, mode 0644; a
/// file already there is replaced only if it is a certificate itself.
pub fn write_certificate(path: &Path, line: &str) -> Result<(), KeyError> {
    may_write_certificate(path)?;
    crate::fs::write_public(path, format!("{line}\n").as_bytes()).map_err(|err| {
        KeyError::Unwritable {
            path: path.display().to_string(),
            reason: err.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_goes_beside_its_key() {
        assert_eq!(
            certificate_path(Path::new("/home/a/.ssh/id_ed25519.pub")),
            Path::new("/home/a/.ssh/id_ed25519-cert.pub")
        );
        assert_eq!(
            certificate_path(Path::new("keys/deploy")),
            Path::new("keys/deploy-cert.pub")
        );
    }

    #[test]
    fn only_a_certificate_is_ever_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("id_ed25519-cert.pub");
        std::fs::write(&path, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG my key\n").unwrap();
        let err = write_certificate(&path, "anything").unwrap_err();
        assert!(matches!(err, KeyError::NotACertificate { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG my key\n"
        );
        let dir = tmp.path().join("dir-cert.pub");
        std::fs::create_dir(&dir).unwrap();
        assert!(matches!(
            write_certificate(&dir, "anything"),
            Err(KeyError::NotACertificate { .. })
        ));
    }
}
