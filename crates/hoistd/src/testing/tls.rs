//! A private certificate authority for TLS tests, made with `openssl` (as
//! [`super::Postgres::start_with_tls`] does): a CA certificate to trust, and
//! server certificates for `localhost` and `127.0.0.1` that it signs, each
//! issue with a fresh key, so a reload can be told from its predecessor.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA in a directory of its own, and where its server certificate is.
pub struct TestCa {
    dir: PathBuf,
    issued: u32,
}

impl TestCa {
    /// Makes the CA in `dir` and issues a first server certificate.
    pub fn new(dir: &Path) -> anyhow::Result<TestCa> {
        std::fs::create_dir_all(dir)?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=hoist test CA",
            ],
        )?;
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        let mut ca = TestCa {
            dir: dir.to_path_buf(),
            issued: 0,
        };
        ca.issue()?;
        Ok(ca)
    }

    /// Issues a new server certificate with a new key, over the files at
    /// [`Self::cert`] and [`Self::key`].
    pub fn issue(&mut self) -> anyhow::Result<()> {
        self.issued += 1;
        let subject = format!("/CN=hoistd test server {}", self.issued);
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key.new",
                "-out",
                "server.csr",
                "-subj",
                &subject,
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem.new",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        )?;
        let key = self.dir.join("server.key.new");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&key, self.key())?;
        std::fs::rename(self.dir.join("server.pem.new"), self.cert())?;
        Ok(())
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server's certificate (PEM), as issued last.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server's private key (PEM, mode 0600), as issued last.
    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The server certificate issued last, as DER: what a client sees.
    pub fn cert_der(&self) -> anyhow::Result<Vec<u8>> {
        Ok(CertificateDer::from_pem_file(self.cert())?.to_vec())
    }

    /// A client that trusts this CA alone.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca_file())?)?;
        Ok(reqwest::Client::builder()
            .tls_certs_only([ca])
            .tls_info(true)
            .build()?)
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|err| anyhow::anyhow!("cannot run openssl (is it installed?): {err}"))?;
    anyhow::ensure!(
        output.status.success(),
        "openssl {}: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
