//! The broker's own TLS: a PEM certificate chain and private key read from
//! files, offered with ALPN for HTTP/2 and HTTP/1.1, and read again on
//! reload (SIGHUP) so a renewed certificate is served without a restart:
//! connections already open keep the one they started with.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// ALPN protocol ids, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {source}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("a certificate in {path} cannot be read, so the chain would be incomplete: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "{path} holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY-----)"
    )]
    NoKey { path: PathBuf },
    #[error(
        "the TLS key file {path} can be read by anyone (mode {mode:o}); make it readable by its owner (and group) only: chmod 640 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the TLS certificate {cert} and key {key} cannot be used together: {reason}")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The certificate files and the configuration made from them.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain and key; refuses files that are missing,
    /// hold no PEM of the right kind, a key anyone may read, or a key that
    /// is not the certificate's.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = configure(cert, key)?;
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = configure(&self.cert, &self.key)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The certificate file, for logs.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// An acceptor with the configuration in force now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

fn configure(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = read_chain(cert)?;
    let private = read_key(key)?;
    let rejected = |err: rustls::Error| TlsError::Rejected {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: err.to_string(),
    };
    // The provider named, not the process default, which another crate may
    // have installed differently.
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(rejected)?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(rejected)?;
    config.alpn_protocols = ALPN.iter().map(|id| id.to_vec()).collect();
    Ok(config)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::Unreadable {
        what: "certificate",
        path: path.to_path_buf(),
        source,
    })?;
    // Every block must read: a chain file caught half-written (a renewal
    // in progress) would otherwise serve its leaf without the rest.
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason: match err {
                pem::Error::MissingSectionEnd { .. } => {
                    "a block has no -----END line (is the file half-written?)".to_string()
                }
                pem::Error::IllegalSectionStart { .. } => {
                    "a -----BEGIN line is malformed".to_string()
                }
                pem::Error::Base64Decode(_) => "a block is not valid base64".to_string(),
                other => other.to_string(),
            },
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let unreadable = |source| TlsError::Unreadable {
        what: "key",
        path: path.to_path_buf(),
        source,
    };
    // Group-readable is common (Debian's ssl-cert group, a key shared with
    // a proxy); readable by anyone on the machine is a leaked key.
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        return Err(TlsError::Exposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let text = std::fs::read(path).map_err(unreadable)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|_| TlsError::NoKey {
        path: path.to_path_buf(),
    })
}
