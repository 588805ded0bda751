//! `hoist credential ROLE|GRANT`: the secret of an active grant, for `$(...)`
//! and `eval`. For a grant at an ssh target the secret is the holder's own
//! key, so what it hands over is an OpenSSH user certificate for that key:
//! the key given with `--public-key`, else the ssh-agent's first key, else
//! `~/.ssh/id_ed25519.pub` (`crate::sshkey`), certified by the broker for
//! the grant's window; `--write-certificate` also writes it beside the key
//! as `<key>-cert.pub`, where ssh finds it by itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_api::{Credential, Grant, SshCertificate};

use super::request::find_grant;
use super::{Ended, Format, print, say};
use crate::backend::{Backend, BackendError};
use crate::sshkey::{self, HolderKey, KeyError};
use crate::text::local_timestamp as local;

/// The target kind whose grants hand over certificates.
const SSH: &str = "ssh";

/// What `hoist credential` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialFormat {
    /// The signed credential alone (for `$(...)`); the default but for ssh grants.
    Token,
    /// `export NAME='value'` lines: HOIST_CREDENTIAL, HOIST_CREDENTIAL_EXPIRES_AT
    /// and the access's own variables (PG* for PostgreSQL), for `eval`.
    Env,
    /// The URI of the access at the role's target (`postgresql://...`).
    Uri,
    /// An ssh grant's OpenSSH certificate for your key, one line as in a
    /// `*-cert.pub` file (the default for ssh grants).
    Certificate,
    /// Everything, as the broker's API has it (for an ssh grant, with the
    /// certificate's principals, key id and validity).
    Json,
}

/// `hoist credential ROLE [--format F] [--wait [--timeout T]]
/// [--public-key FILE.pub] [--write-certificate]`.
pub struct CredentialArgs<'a> {
    pub role: &'a str,
    /// `None`: the certificate for an ssh grant, the token for any other.
    pub format: Option<CredentialFormat>,
    /// `--output`: `json`/`yaml` still print everything, as before `--format`.
    pub output: Format,
    /// Wait this long (or for ever) for the access to become live.
    pub wait: Option<Option<Duration>>,
    /// The public key to certify, for an ssh grant.
    pub public_key: Option<&'a Path>,
    /// Write the certificate as `<key>-cert.pub` beside the key.
    pub write_certificate: bool,
}

/// What is printed, once the flags are read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Format(CredentialFormat),
    /// The whole credential as `--output` says (`table`: the token alone).
    Whole(Format),
}

pub async fn credential(backend: &dyn Backend, args: CredentialArgs<'_>) -> anyhow::Result<()> {
    let shown = match (args.format, args.output) {
        (format, Format::Table) => format.map(Shown::Format),
        (Some(CredentialFormat::Json), Format::Json) => Some(Shown::Format(CredentialFormat::Json)),
        (None | Some(CredentialFormat::Token), output) => Some(Shown::Whole(output)),
        (Some(_), _) => {
            return Err(Ended::Usage("give either --format or --output, not both".into()).into());
        }
    };
    let grant = find_grant(backend, args.role).await?;
    let grant = match args.wait {
        Some(timeout) => super::access::wait_live(backend, grant, timeout).await?,
        None => match super::access::not_live(&grant) {
            Some(not_live) => return Err(not_live.into()),
            None => grant,
        },
    };
    let ssh = grant
        .access
        .as_ref()
        .is_some_and(|access| access.kind == SSH);
    let shown = shown.unwrap_or(Shown::Format(if ssh {
        CredentialFormat::Certificate
    } else {
        CredentialFormat::Token
    }));
    let wants_certificate = args.public_key.is_some()
        || args.write_certificate
        || matches!(
            shown,
            Shown::Format(CredentialFormat::Certificate | CredentialFormat::Json)
                | Shown::Whole(Format::Json | Format::Yaml)
        ) && ssh;
    let credential = if wants_certificate {
        if !ssh {
            return Err(Ended::Usage(no_certificates(&grant)).into());
        }
        certified(backend, &grant, &args).await?
    } else {
        backend.credential(&grant.id).await?
    };
    if let Some(access) = &credential.access {
        say_if_password_replaced(access);
    }
    match shown {
        Shown::Format(CredentialFormat::Token) | Shown::Whole(Format::Table) => {
            print_token(&credential.token)?
        }
        Shown::Format(CredentialFormat::Json) => print(Format::Json, &credential, no_table)?,
        Shown::Whole(format) => print(format, &credential, no_table)?,
        // Only an ssh grant's certificate was fetched through `certified`,
        // which checks it before it is printed.
        Shown::Format(CredentialFormat::Certificate) => {
            match certificate_of(&credential).filter(|_| ssh) {
                Some(certificate) => super::out(&format!("{}\n", certificate.certificate))?,
                None => return Err(Ended::Usage(no_certificates(&grant)).into()),
            }
        }
        Shown::Format(CredentialFormat::Env) => {
            let mut env = vec![
                (
                    super::exec::ENV_CREDENTIAL.to_string(),
                    credential.token.clone(),
                ),
                (
                    super::exec::ENV_CREDENTIAL_EXPIRES_AT.to_string(),
                    credential.expires_at.to_rfc3339(),
                ),
            ];
            env.extend(super::access::access_env(credential.access.as_ref()));
            // Quoted for the shell, but printed as they are so `eval` reads
            // them exactly: an escape or a reordering character in one
            // would be acted on by the terminal, so none is allowed.
            if let Some((name, _)) = env
                .iter()
                .find(|(_, value)| crate::text::sanitize::hides_anything(value))
            {
                return Err(BackendError::Protocol(format!(
                    "the credential's {name} holds control or invisible characters; not printed"
                ))
                .into());
            }
            super::out(&super::access::export_lines(&env))?;
        }
        Shown::Format(CredentialFormat::Uri) => {
            match credential.access.as_ref().and_then(|a| a.uri.as_ref()) {
                // Printed as it is, for `DATABASE_URL="$(...)"`: a line feed, an escape
                // or a reordering character in it would be acted on, so none
                // is allowed.
                Some(uri) if !crate::text::sanitize::hides_anything(uri) => {
                    super::out(&format!("{uri}\n"))?
                }
                Some(_) => {
                    return Err(BackendError::Protocol(
                        "the URI holds control or invisible characters; not printed".into(),
                    )
                    .into());
                }
                None => {
                    let why = match &credential.access {
                        Some(access) => format!("its target {} gives no URI", access.target),
                        None => "its role has no target".to_string(),
                    };
                    return Err(Ended::Usage(format!("{} has no URI: {why}", grant.role)).into());
                }
            }
        }
    }
    Ok(())
}

fn no_table() -> super::table::Table {
    super::table::Table::new(&[])
}

fn no_certificates(grant: &Grant) -> String {
    let at = match &grant.access {
        Some(access) => format!("its target {} is a {} target", access.target, access.kind),
        None => "its role has no target".to_string(),
    };
    format!(
        "{} has no SSH certificate: {at}; --format certificate, --public-key and \
         --write-certificate are for grants at ssh targets",
        grant.role
    )
}

fn certificate_of(credential: &Credential) -> Option<&SshCertificate> {
    credential.access.as_ref()?.certificate.as_ref()
}

/// Has the broker certify the holder's key for `grant`, checks the answer,
/// and writes it beside the key if asked; says on stderr what it is.
async fn certified(
    backend: &dyn Backend,
    grant: &Grant,
    args: &CredentialArgs<'_>,
) -> anyhow::Result<Credential> {
    let key = sshkey::find(args.public_key).await.map_err(key_failure)?;
    // Where it goes is settled before anything is minted.
    let write_to: Option<PathBuf> = if args.write_certificate {
        let file = sshkey::key_file(&key).map_err(key_failure)?;
        let path = sshkey::certificate_path(&file);
        sshkey::may_write_certificate(&path).map_err(key_failure)?;
        Some(path)
    } else {
        None
    };
    let credential = backend
        .certify(&grant.id, &key.line)
        .await
        .map_err(|err| anyhow::Error::from(err).context(format!("certifying {}", source(&key))))?;
    let Some(certificate) = certificate_of(&credential) else {
        return Err(BackendError::Protocol(format!(
            "no certificate for {}, an ssh grant",
            grant.id
        ))
        .into());
    };
    sshkey::check_certificate(&certificate.certificate, &key).map_err(key_failure)?;
    say(&format!(
        "certificate for {} as {}, valid {} to {} (key {}, id \"{}\")",
        grant.id,
        certificate.principals.join(","),
        local(certificate.valid_after),
        local(certificate.valid_before),
        certificate.fingerprint,
        certificate.key_id
    ));
    if let Some(path) = write_to {
        sshkey::write_certificate(&path, &certificate.certificate).map_err(key_failure)?;
        say(&format!("written to {}", path.display()));
    }
    Ok(credential)
}

/// The key's origin in words, for messages.
fn source(key: &HolderKey) -> String {
    match &key.file {
        Some(file) => file.display().to_string(),
        None => format!("the ssh-agent's key {}", key.fingerprint()),
    }
}

/// A key problem as its exit code wants it: what the person can fix is a
/// usage error, a broker's odd answer a protocol error.
fn key_failure(err: KeyError) -> anyhow::Error {
    match err {
        KeyError::NoKey { .. } => Ended::Usage(format!(
            "{err}; give one with --public-key FILE.pub, or use `hoist ssh`, which makes \
             an ephemeral key"
        ))
        .into(),
        KeyError::BadCertificate(_) => BackendError::Protocol(err.to_string()).into(),
        KeyError::Unwritable { .. } => anyhow::Error::from(err),
        _ => Ended::Usage(err.to_string()).into(),
    }
}

/// Printed as it is, so it must be a token and nothing a terminal would act on.
fn print_token(token: &str) -> anyhow::Result<()> {
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(BackendError::Protocol(
            "the credential holds characters no token has; not printed".into(),
        )
        .into());
    }
    super::out(&format!("{token}\n"))
}

/// A PostgreSQL target sets a new password at each fetch: said on standard
/// error, since the one fetched before (another exec sharing the grant, the
/// TUI, an earlier `hoist credential`) then stops working for new logins,
/// and a pool or a `\c` of whoever holds it fails.
pub(super) fn say_if_password_replaced(access: &hoist_api::AccessCredential) {
    if access.kind == "postgres" {
        super::say(&format!(
            "a new password was set for {} at {}: one fetched before stops working for new \
             logins (sessions open stay open)",
            crate::text::sanitize::line(
                access
                    .env
                    .get("PGUSER")
                    .map_or("the grant's role", String::as_str)
            ),
            crate::text::sanitize::line(&access.target)
        ));
    }
}
