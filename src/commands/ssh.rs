//! `hoist ssh ROLE [user@]host [-- args]`: log in to a host with an OpenSSH
//! user certificate the broker signs for the grant's window. Reuses an
//! active grant or requests one (the path `hoist exec` takes), waits for it
//! to be live, has a public key certified and runs the real `ssh` with it.
//!
//! Which key (`crate::sshkey` finds the first three, as `hoist credential`
//! does): `--key FILE.pub`; else the first key in the ssh-agent; else
//! `~/.ssh/id_ed25519.pub` with its private key; else an ephemeral Ed25519
//! key pair made in memory and handed to an agent on stdin (`ssh-add -t
//! <grant's remaining time> -`): the user's agent if there is one, or a
//! private `ssh-agent` this command starts and stops. The private key is never written to a file or
//! put in argv. The certificate and public key (nothing secret) go to a
//! private temporary folder (0700) removed when ssh ends, and ssh gets them
//! as `-i` and `-o CertificateFile=`. The login shares no connection: no
//! master outlives it (`-o ControlMaster=no -o ControlPath=none`), whatever
//! the user's ssh config says. Sessions it opened end when the user ends
//! them: sshd checks the certificate, and the KRL, at login only.
//!
//! The grant is kept when ssh ends (unlike exec's): a responder opens more
//! than one session in a break-glass, and the certificate ends with the
//! grant anyway. `hoist revoke` ends it early.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use hoist_api::Grant;
use tokio::io::AsyncWriteExt;

use super::exec::{Asking, obtain_grant, remaining, run_command_started};
use super::request::grant_of_role;
use super::signals::{Signals, status_of};
use super::{Ended, say};
use crate::backend::{Backend, BackendError};
use crate::sshkey;

#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// The role whose ssh target the host trusts.
    pub role: String,
    /// Where to log in: `[user@]host`, as ssh takes it.
    pub destination: String,
    #[command(flatten)]
    pub asking: Asking,
    /// The public key to certify (its private key beside it, without
    /// `.pub`, or in the agent).
    #[arg(long, value_name = "FILE.pub")]
    pub key: Option<PathBuf>,
    /// More for ssh after `--`: its options and a remote command.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// The key whose certificate ssh presents.
enum Identity {
    /// A key pair on disk: `-i` its private key.
    File { private: PathBuf, public: String },
    /// A key in an agent (the user's, or ours at `socket`): `-i` its public
    /// key selects it there.
    Agent {
        public: String,
        socket: Option<PathBuf>,
    },
}

impl Identity {
    fn public(&self) -> &str {
        match self {
            Identity::File { public, .. } | Identity::Agent { public, .. } => public,
        }
    }
}

/// An `ssh-agent` this command started for an ephemeral key: stopped, and
/// the key with it, when dropped.
struct OwnAgent {
    child: tokio::process::Child,
}

impl Drop for OwnAgent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub async fn ssh(backend: &dyn Backend, args: &SshArgs) -> anyhow::Result<u8> {
    if args.destination.starts_with('-') {
        return Err(Ended::Usage(format!(
            "`{}` is not a [user@]host; ssh options go after `--`",
            args.destination
        ))
        .into());
    }
    if !backend.capabilities().credential {
        return Err(BackendError::Unsupported("credentials, which `hoist ssh` needs").into());
    }
    let mut signals = Signals::listen()?;
    let deadline = args.asking.deadline()?;
    let (grant, created) = match grant_of_role(backend, &args.role).await? {
        Some(grant) => {
            let ends = args.asking.reusing(&grant)?;
            say(&format!(
                "using {} ({}), active already, {ends}: this command did not ask for it",
                grant.id, grant.role
            ));
            (grant, false)
        }
        None => {
            if args.asking.reason.is_none() {
                return Err(Ended::Usage(
                    "no active grant for this role: --reason is required to request one".into(),
                )
                .into());
            }
            match obtain_grant(backend, &args.role, &args.asking, deadline, &mut signals).await? {
                Ok(grant) => (grant, true),
                Err(signal) => return Ok(status_of(signal)),
            }
        }
    };
    super::remember_grants(backend).await;
    let mut ran = false;
    let outcome = async {
        let live = tokio::select! {
            live = super::access::wait_live(backend, grant.clone(), remaining(deadline)) => live?,
            signal = signals.next() => {
                say(&format!(
                    "{} arrived while waiting for the access; ssh was not started",
                    signal.as_str()
                ));
                return Ok(status_of(signal));
            }
        };
        login(backend, args, &live, &mut signals, &mut ran).await
    }
    .await;
    // A grant this asked for that ssh never used (a signal, the timeout, a
    // key or certificate that failed) is ended, as exec ends what it asked
    // for; once ssh ran, it stays for the next login until it ends.
    if created && !ran {
        let revoked = super::exec::revoke_after(
            backend,
            &grant.id,
            "hoist ssh: ssh was not started",
            Some(&mut signals),
        )
        .await;
        if revoked == super::revoking::Revoked::Yes {
            say(&format!(
                "{} revoked: ssh was not started with it",
                grant.id
            ));
            super::remember_grants(backend).await;
        }
    }
    outcome
}

async fn login(
    backend: &dyn Backend,
    args: &SshArgs,
    grant: &Grant,
    signals: &mut Signals,
    ran: &mut bool,
) -> anyhow::Result<u8> {
    let folder = tempfile::Builder::new().prefix("hoist-ssh-").tempdir()?;
    let remaining = (grant.expires_at - backend.clock().now())
        .num_seconds()
        .max(1);
    let (identity, _agent) = identity(args, folder.path(), remaining).await?;
    let credential = tokio::select! {
        certified = backend.certify(&grant.id, identity.public()) => certified?,
        signal = signals.next() => {
            say(&format!(
                "{} arrived while the key was certified; ssh was not started",
                signal.as_str()
            ));
            return Ok(status_of(signal));
        }
    };
    let Some(certificate) = credential
        .access
        .as_ref()
        .and_then(|access| access.certificate.as_ref())
    else {
        return Err(Ended::Usage(format!(
            "role {}'s target issues no SSH certificates (is it an ssh target?)",
            grant.role
        ))
        .into());
    };
    let key = sshkey::HolderKey {
        line: identity.public().to_string(),
        file: None,
    };
    sshkey::check_certificate(&certificate.certificate, &key)
        .map_err(|err| BackendError::Protocol(err.to_string()))?;
    let cert_path = folder.path().join("id-cert.pub");
    write_private(&cert_path, &format!("{}\n", certificate.certificate))?;
    say(&format!(
        "certificate for {} as {}, valid until {} (key {})",
        grant.id,
        certificate.principals.join(","),
        certificate.valid_before.to_rfc3339(),
        certificate.fingerprint
    ));
    let mut command = vec!["ssh".to_string()];
    let mut env = Vec::new();
    match &identity {
        Identity::File { private, .. } => {
            command.push("-i".into());
            command.push(private.display().to_string());
        }
        Identity::Agent { public, socket } => {
            let public_path = folder.path().join("id.pub");
            write_private(&public_path, &format!("{public}\n"))?;
            command.push("-i".into());
            command.push(public_path.display().to_string());
            if let Some(socket) = socket {
                env.push(("SSH_AUTH_SOCK".to_string(), socket.display().to_string()));
            }
        }
    }
    command.extend([
        "-o".into(),
        format!("CertificateFile={}", cert_path.display()),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        // The login is the grant's alone: it neither becomes a master
        // connection that outlives ssh (the user's `ControlMaster auto`
        // with `ControlPersist`), through which a later plain `ssh` would
        // open sessions after the grant is revoked or expired, unchecked
        // by the KRL, nor rides on one opened before.
        "-o".into(),
        "ControlMaster=no".into(),
        "-o".into(),
        "ControlPath=none".into(),
        args.destination.clone(),
    ]);
    command.extend(args.args.iter().cloned());
    run_command_started(&command, &env, &[], signals, ran).await
}

/// Picks the key to certify, in the order the module says.
async fn identity(
    args: &SshArgs,
    folder: &Path,
    remaining_secs: i64,
) -> anyhow::Result<(Identity, Option<OwnAgent>)> {
    if let Some(public_path) = &args.key {
        let public = sshkey::read_public(public_path).map_err(usage)?;
        let private = public_path.with_extension("");
        return Ok(if private.exists() && private != *public_path {
            (Identity::File { private, public }, None)
        } else {
            (
                Identity::Agent {
                    public,
                    socket: None,
                },
                None,
            )
        });
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some()
        && let Some(public) = sshkey::agent_key().await
    {
        return Ok((
            Identity::Agent {
                public,
                socket: None,
            },
            None,
        ));
    }
    if let Some(public_path) = sshkey::default_key_file() {
        let private = public_path.with_extension("");
        if public_path.exists() && private.exists() {
            let public = sshkey::read_public(&public_path).map_err(usage)?;
            return Ok((Identity::File { private, public }, None));
        }
    }
    ephemeral(folder, remaining_secs).await
}

/// A new Ed25519 key pair that exists only in memory and in an agent, for
/// the grant's remaining time at most.
async fn ephemeral(
    folder: &Path,
    remaining_secs: i64,
) -> anyhow::Result<(Identity, Option<OwnAgent>)> {
    let pair = ssh_key::private::Ed25519Keypair::random(&mut rand::rngs::OsRng);
    let mut private = ssh_key::PrivateKey::from(pair);
    private.set_comment("hoist ephemeral");
    let public = private.public_key().to_openssh()?;
    let pem = private.to_openssh(ssh_key::LineEnding::LF)?;
    let (socket, agent) = match std::env::var_os("SSH_AUTH_SOCK") {
        Some(_) if agent_reachable().await => (None, None),
        _ => {
            let socket = folder.join("agent.sock");
            let child = tokio::process::Command::new("ssh-agent")
                .arg("-D")
                .arg("-a")
                .arg(&socket)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|err| anyhow::anyhow!("cannot start ssh-agent: {err}"))?;
            let agent = OwnAgent { child };
            for _ in 0..100 {
                if socket.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (Some(socket), Some(agent))
        }
    };
    let mut add = tokio::process::Command::new("ssh-add");
    add.args(["-q", "-t", &remaining_secs.to_string(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(socket) = &socket {
        add.env("SSH_AUTH_SOCK", socket);
    }
    let mut child = add
        .spawn()
        .map_err(|err| anyhow::anyhow!("cannot run ssh-add: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(pem.as_bytes()).await?;
    }
    let added = child.wait_with_output().await?;
    if !added.status.success() {
        return Err(anyhow::anyhow!(
            "ssh-add refused the ephemeral key: {}",
            crate::text::sanitize::line(String::from_utf8_lossy(&added.stderr).trim())
        ));
    }
    say("no ssh key found: using an ephemeral key kept only in the ssh-agent");
    Ok((Identity::Agent { public, socket }, agent))
}

fn usage(err: sshkey::KeyError) -> anyhow::Error {
    Ended::Usage(err.to_string()).into()
}

async fn agent_reachable() -> bool {
    // 0: keys listed; 1: no keys, but the agent answered; 2: no agent.
    tokio::process::Command::new("ssh-add")
        .arg("-l")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| matches!(status.code(), Some(0 | 1)))
}

/// Writes a new file only its owner can read, as ssh wants its key files.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = crate::fs::create_private_file(path)
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
