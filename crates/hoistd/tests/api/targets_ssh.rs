//! SSH certificates against a real sshd (OpenSSH) on a loopback port whose
//! `TrustedUserCAKeys` and `RevokedKeys` come from the broker: a login works
//! during the grant, and is refused after its end, after a revoke once the
//! KRL is written, and for a certificate naming another principal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessState, AuditKind, CreateRequest, Credential, CredentialInput, ErrorCode, Grant,
    GrantState,
};
use reqwest::{Method, StatusCode};

use crate::helpers::*;

const LONG: Duration = Duration::from_secs(30);

/// The user the tests run as: sshd, run as this user, logs in only as it,
/// and the certificate's principal must name it.
fn me() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The test policy with an ssh target `hosts`: role `shell` for this user,
/// role `elsewhere` for a principal no host account has.
fn policy() -> String {
    format!(
        "{}\n[[targets]]\nname = \"hosts\"\nkind = \"ssh\"\n{}{}",
        policy_text(""),
        target_role(
            "shell",
            "hosts",
            &format!("principals = [\"{}\"]\nextensions = [\"permit-pty\"]", me()),
        ),
        target_role("elsewhere", "hosts", "principals = [\"hoist-nobody\"]"),
    )
}

/// The test policy with role `shell`'s access written `shell`.
fn policy_with(shell: &str) -> String {
    format!(
        "{}\n[[targets]]\nname = \"hosts\"\nkind = \"ssh\"\n{}",
        policy_text(""),
        target_role("shell", "hosts", shell),
    )
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An sshd on a free loopback port, trusting the broker's CA and reading
/// the KRL at `dir/revoked.krl`.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    async fn start(broker: &TestBroker) -> Sshd {
        Sshd::start_with(broker, 0, "").await
    }

    /// An sshd whose clock is `ahead_secs` ahead of this host's (behind if
    /// negative).
    async fn start_with_clock(broker: &TestBroker, ahead_secs: i64) -> Sshd {
        Sshd::start_with(broker, ahead_secs, "").await
    }

    /// An sshd that trusts the CA `GET /v1/ssh/ca{query}` gives (`query`
    /// empty, or `?target=` a target's).
    async fn start_with(broker: &TestBroker, ahead_secs: i64, query: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let ca = reqwest::get(format!("{}/v1/ssh/ca{query}", broker.url()))
            .await
            .unwrap();
        assert_eq!(ca.status(), StatusCode::OK);
        let ca = ca.text().await.unwrap();
        assert!(ca.starts_with("ssh-ed25519 "), "{ca}");
        std::fs::write(dir.path().join("ca.pub"), &ca).unwrap();
        let sshd = Sshd::write_krl(dir.path(), broker).await;
        assert!(sshd.len() >= 44, "a KRL header even with nothing revoked");
        let host_key = dir.path().join("host_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile none\nUsePAM no\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 TrustedUserCAKeys {d}/ca.pub\nRevokedKeys {d}/revoked.krl\nLogLevel VERBOSE\n",
                host = host_key.display(),
                d = dir.path().display(),
            ),
        )
        .unwrap();
        // Privilege separation wants its empty directory when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut command = Command::new(sshd_binary());
        if ahead_secs != 0 {
            command.envs(hoistd::testing::clock_env(ahead_secs));
        }
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("sshd.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let host = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {host}"),
        )
        .unwrap();
        let sshd = Sshd { child, port, dir };
        eventually(LONG, || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        sshd
    }

    /// Fetches `GET /v1/ssh/krl` into the file sshd reads.
    async fn write_krl(dir: &Path, broker: &TestBroker) -> Vec<u8> {
        let answer = reqwest::get(format!("{}/v1/ssh/krl", broker.url()))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let krl = answer.bytes().await.unwrap().to_vec();
        assert_eq!(&krl[..8], b"SSHKRL\n\0");
        std::fs::write(dir.join("revoked.krl"), &krl).unwrap();
        krl
    }

    /// Logs in with `key` and its certificate and runs `echo`; the output
    /// and sshd's log on failure.
    fn login(&self, key: &Path, cert: &Path) -> Result<String, String> {
        let out = Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ))
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .arg("-i")
            .arg(key)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", me()))
            .arg("echo hoist-login-ok")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "{}\n--- sshd:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
            ))
        }
    }
}

fn sshd_binary() -> PathBuf {
    for candidate in ["/usr/sbin/sshd", "/usr/bin/sshd"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no sshd: install openssh-server (scripts/test does)");
}

/// A fresh key pair in `dir`, named `name`.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
        .arg(&key));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public)
}

async fn granted(broker: &TestBroker, role: &str, secs: Option<u64>) -> Grant {
    let filed = broker
        .as_user("alice")
        .file(&CreateRequest {
            duration_secs: secs,
            ..request(role, "restart the stuck worker")
        })
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let id = approved.grant_id.unwrap();
    eventually(LONG, || async {
        let grant = broker.as_user("alice").grant(&id).await.unwrap();
        grant.access.unwrap().state == AccessState::Live
    })
    .await;
    broker.as_user("alice").grant(&id).await.unwrap()
}

async fn certify(
    broker: &TestBroker,
    user: &str,
    grant_id: &str,
    public_key: &str,
) -> Answer<Credential> {
    let client = broker.as_user(user);
    client
        .call(
            client
                .raw(Method::POST, &format!("/v1/grants/{grant_id}/credential"))
                .json(&CredentialInput {
                    public_key: public_key.to_string(),
                }),
        )
        .await
}

/// Writes the certificate beside the key, as `ssh-keygen -s` would.
fn save_cert(key: &Path, credential: &Credential) -> PathBuf {
    let cert = credential
        .access
        .as_ref()
        .unwrap()
        .certificate
        .as_ref()
        .unwrap();
    let path = PathBuf::from(format!("{}-cert.pub", key.display()));
    std::fs::write(&path, format!("{}\n", cert.certificate)).unwrap();
    path
}

/// `ssh-keygen -L`'s account of a certificate.
fn listed(cert: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(cert));
    String::from_utf8(out.stdout).unwrap()
}

/// Whether `ssh-keygen -Q` finds the certificate in the KRL.
fn krl_revokes(krl: &Path, cert: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(cert)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("REVOKED") || said.contains(": ok"),
        "ssh-keygen -Q read the KRL: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    said.contains("REVOKED")
}

fn local(at: DateTime<Utc>) -> String {
    // ssh-keygen -L prints validity in local time, to the second.
    chrono::DateTime::<chrono::Local>::from(at)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

#[tokio::test]
async fn a_certificate_logs_in_during_the_grant_and_is_refused_once_revoked() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let sshd = Sshd::start(&broker).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");

    let grant = granted(&broker, "shell", None).await;
    let credential = certify(&broker, "alice", &grant.id, &public).await.unwrap();
    let cert = save_cert(&key, &credential);
    let issued = credential.access.as_ref().unwrap();
    let shown = issued.certificate.as_ref().unwrap();
    assert_eq!(shown.principals, vec![me()]);
    assert!(shown.valid_before <= grant.expires_at);
    assert!(shown.valid_after <= grant.starts_at);
    assert_eq!(shown.valid_before.timestamp(), grant.expires_at.timestamp());
    // Backdated a minute, for hosts whose clock is behind.
    let valid_after = grant.starts_at - hoistd::target::ssh::VALID_AFTER_ALLOWANCE;
    assert_eq!(shown.valid_after.timestamp(), valid_after.timestamp());
    assert!(issued.expires_at <= grant.expires_at);

    // What OpenSSH itself reads from it.
    let text = listed(&cert);
    assert!(
        text.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Key ID: \"hoist grant={} holder=alice\"",
            grant.id
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Valid: from {} to {}",
            local(valid_after),
            local(grant.expires_at)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("Principals: \n                {}", me())),
        "{text}"
    );
    assert!(text.contains("permit-pty"), "{text}");
    assert!(!text.contains("permit-port-forwarding"), "{text}");
    assert!(text.contains(&shown.fingerprint), "{text}");

    assert_eq!(sshd.login(&key, &cert).as_deref(), Ok("hoist-login-ok"));

    // The issuance is audited with the key's fingerprint, never the key.
    let log = broker.as_user("erin").audit().await;
    let issued = log
        .iter()
        .rev()
        .find(|e| e.kind == AuditKind::CredentialIssued && e.grant_id.as_deref() == Some(&grant.id))
        .unwrap();
    assert_eq!(
        issued.details["key_fingerprint"],
        shown.fingerprint.as_str()
    );
    // With the certificate's end, the grant's, beside the token's.
    assert_eq!(
        issued.details["certificate_valid_before"],
        serde_json::json!(shown.valid_before)
    );
    assert_ne!(
        issued.details["certificate_valid_before"],
        issued.details["expires_at"]
    );
    let key_body = public.split_whitespace().nth(1).unwrap();
    assert!(!serde_json::to_string(&log).unwrap().contains(key_body));

    // Revoked: refused once the host has the new KRL, even with a
    // recorded CA beside it that does not read (left out, not a failure
    // of the whole list).
    broker
        .as_user("alice")
        .revoke(&grant.id, "done early")
        .await
        .unwrap();
    rusqlite::Connection::open(broker.db())
        .unwrap()
        .execute(
            "INSERT INTO ssh_authorities (public_key, first_at, last_at) \
             VALUES ('ssh-ed25519 not-a-key', 0, 0)",
            [],
        )
        .unwrap();
    let krl = Sshd::write_krl(sshd.dir.path(), &broker).await;
    assert!(krl.len() > 44, "the KRL now revokes something");
    assert!(krl_revokes(&sshd.dir.path().join("revoked.krl"), &cert));
    // Hosts fetch it without a token: by serial, it names no grant or person.
    let said = String::from_utf8_lossy(&krl);
    assert!(
        !said.contains(&grant.id) && !said.contains("alice"),
        "{said}"
    );
    let refused_login = sshd.login(&key, &cert).unwrap_err();
    assert!(
        refused_login.contains("Permission denied"),
        "{refused_login}"
    );

    // And the ended grant issues no new certificate.
    refused(
        certify(&broker, "alice", &grant.id, &public).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
}

/// A host whose clock is behind the broker's takes a certificate made at
/// the grant's start: `valid-after` is backdated a minute.
#[tokio::test]
async fn a_host_whose_clock_is_behind_takes_a_certificate_made_at_once() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let sshd = Sshd::start_with_clock(&broker, -30).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let grant = granted(&broker, "shell", None).await;
    let credential = certify(&broker, "alice", &grant.id, &public).await.unwrap();
    let cert = save_cert(&key, &credential);
    // On a refusal, the error carries sshd's log ("not yet valid").
    sshd.login(&key, &cert).unwrap();
}

#[tokio::test]
async fn a_certificate_is_refused_after_the_grant_ends() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let sshd = Sshd::start(&broker).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let grant = granted(&broker, "shell", Some(3)).await;
    let credential = certify(&broker, "alice", &grant.id, &public).await;
    // The grant may be short enough to end before it goes live; then
    // there is nothing to test the expiry of, and that is a failure here.
    let cert = save_cert(&key, &credential.unwrap());
    let before = sshd.login(&key, &cert);
    // Past the grant's end, by the clock sshd shares: refused as expired,
    // with nothing written to the KRL (an expiry is not a revocation).
    let left = (grant.expires_at - Utc::now()).num_milliseconds() + 1100;
    tokio::time::sleep(Duration::from_millis(left.max(0) as u64)).await;
    let after = sshd.login(&key, &cert).unwrap_err();
    assert!(after.contains("Permission denied"), "{after}");
    assert!(
        std::fs::read_to_string(sshd.dir.path().join("sshd.log"))
            .unwrap()
            .contains("expired"),
        "sshd says why"
    );
    assert!(!krl_revokes(&sshd.dir.path().join("revoked.krl"), &cert));
    assert!(
        before.is_ok() || Utc::now() >= grant.expires_at,
        "it worked while the grant lasted: {before:?}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_principal_is_refused() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let sshd = Sshd::start(&broker).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let grant = granted(&broker, "elsewhere", None).await;
    let credential = certify(&broker, "alice", &grant.id, &public).await.unwrap();
    let cert = save_cert(&key, &credential);
    assert!(listed(&cert).contains("hoist-nobody"));
    let refused_login = sshd.login(&key, &cert).unwrap_err();
    assert!(
        refused_login.contains("Permission denied"),
        "{refused_login}"
    );
}

/// A reload that leaves a role giving all a live grant was given keeps the
/// grant, and its certificates carry no more than it was given. One that
/// takes a principal or an extension away revokes the grant, saying what
/// was taken: a certificate cannot be narrowed once made, so the KRL
/// refuses the ones made before.
#[tokio::test]
async fn a_role_narrowed_by_a_reload_takes_back_the_certificates_of_live_grants() {
    let wide = format!(
        "principals = [\"{}\", \"hoist-nobody\"]\n\
         extensions = [\"permit-pty\", \"permit-port-forwarding\"]",
        me()
    );
    let broker = TestBroker::builder()
        .policy(&policy_with(&wide))
        .start()
        .await;
    let sshd = Sshd::start(&broker).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let grant = granted(&broker, "shell", None).await;
    let before = certify(&broker, "alice", &grant.id, &public).await.unwrap();
    let first = keys.path().join("first-cert.pub");
    std::fs::copy(save_cert(&key, &before), &first).unwrap();
    sshd.login(&key, &first).unwrap();

    // The same again, and more: nothing is taken, nothing ends, and a
    // certificate made now carries what the grant was given, no more.
    let wider = format!(
        "principals = [\"hoist-other\", \"{}\", \"hoist-nobody\"]\n\
         extensions = [\"permit-port-forwarding\", \"permit-pty\", \"permit-agent-forwarding\"]",
        me()
    );
    std::fs::write(broker.policy_path(), policy_with(&wider)).unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        0,
        "nothing revoked"
    );
    let again = certify(&broker, "alice", &grant.id, &public).await.unwrap();
    let shown = again.access.as_ref().unwrap().certificate.as_ref().unwrap();
    assert_eq!(shown.principals, vec![me(), "hoist-nobody".to_string()]);
    let listing = listed(&save_cert(&key, &again));
    assert!(listing.contains("permit-port-forwarding"), "{listing}");
    assert!(!listing.contains("permit-agent-forwarding"), "{listing}");
    assert!(!listing.contains("hoist-other"), "{listing}");

    // This user's account and port forwarding taken away: the first
    // certificate still names them, so the grant ends and it goes into
    // the KRL.
    let narrow = "principals = [\"hoist-nobody\", \"hoist-other\"]\n\
                  extensions = [\"permit-pty\", \"permit-agent-forwarding\"]";
    std::fs::write(broker.policy_path(), policy_with(narrow)).unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1,
        "one grant revoked"
    );
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "no longer gives principal {}, extension permit-port-forwarding",
            me()
        )),
        "{reason}"
    );
    refused(
        certify(&broker, "alice", &grant.id, &public).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    Sshd::write_krl(sshd.dir.path(), &broker).await;
    assert!(krl_revokes(&sshd.dir.path().join("revoked.krl"), &first));
    let refused_login = sshd.login(&key, &first).unwrap_err();
    assert!(
        refused_login.contains("Permission denied"),
        "{refused_login}"
    );
}

/// A reload after which a role gives none of a live grant's principals
/// revokes it, saying so.
#[tokio::test]
async fn a_role_left_with_none_of_a_grants_principals_revokes_it() {
    let broker = TestBroker::builder()
        .policy(&policy_with(&format!("principals = [\"{}\"]", me())))
        .start()
        .await;
    let grant = granted(&broker, "shell", None).await;
    std::fs::write(
        broker.policy_path(),
        policy_with("principals = [\"hoist-other\"]"),
    )
    .unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1,
        "one grant revoked"
    );
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains("no longer names any of the principals it gave"),
        "{reason}"
    );
}

/// A grant from before access was kept (its effects keep none) is judged
/// by its role alone: a reload after which the role gives no access at the
/// grant's target revokes it, saying why.
#[tokio::test]
async fn a_reload_revokes_a_grant_from_before_access_was_kept_once_its_role_leaves() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let old = granted(&broker, "elsewhere", None).await;
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    let changed = db
        .execute(
            "UPDATE target_effects SET access = NULL WHERE grant_id = ?1",
            [&old.id],
        )
        .unwrap();
    assert!(changed >= 1);
    // `elsewhere` is now a role with no target.
    std::fs::write(
        broker.policy_path(),
        format!(
            "{}\n[[targets]]\nname = \"hosts\"\nkind = \"ssh\"\n{}\n\
             [[roles]]\nid = \"elsewhere\"\nname = \"Elsewhere\"\nscope = \"hosts\"\n\
             eligible_groups = [\"eng\"]\ndefault_duration = \"30m\"\nmax_duration = \"1h\"\n",
            policy_text(""),
            target_role("shell", "hosts", "principals = [\"hoist-other\"]"),
        ),
    )
    .unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1
    );
    let ended = broker.as_user("alice").grant(&old.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains("its role elsewhere no longer gives access at hosts"),
        "{reason}"
    );
}

/// Access a grant was given that this build cannot read (as one written by
/// a newer build mid-upgrade would be) is no reason for a reload to end the
/// grant: it is left as it is, while a grant whose access reads and has
/// nothing left is revoked by the same reload.
#[tokio::test]
async fn a_reload_leaves_a_grant_whose_access_it_cannot_read() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let unread = granted(&broker, "shell", None).await;
    let plain = granted(&broker, "elsewhere", None).await;
    let db = rusqlite::Connection::open(broker.db()).unwrap();
    let changed = db
        .execute(
            "UPDATE target_effects SET access = json_set(access, '$.from_a_newer_build', 1) \
             WHERE grant_id = ?1",
            [&unread.id],
        )
        .unwrap();
    assert!(changed >= 1);
    // Neither role keeps any principal either grant was given.
    std::fs::write(
        broker.policy_path(),
        format!(
            "{}\n[[targets]]\nname = \"hosts\"\nkind = \"ssh\"\n{}{}",
            policy_text(""),
            target_role("shell", "hosts", "principals = [\"hoist-other\"]"),
            target_role("elsewhere", "hosts", "principals = [\"hoist-other\"]"),
        ),
    )
    .unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1
    );
    let left = broker.as_user("alice").grant(&unread.id).await.unwrap();
    assert_eq!(left.state, GrantState::Active);
    let ended = broker.as_user("alice").grant(&plain.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Revoked);
}

#[tokio::test]
async fn only_the_holder_gets_a_certificate_and_only_for_a_public_key() {
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let grant = granted(&broker, "shell", None).await;
    refused(
        certify(&broker, "carol", &grant.id, &public).await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let private = std::fs::read_to_string(&key).unwrap();
    let message = refused(
        certify(&broker, "alice", &grant.id, &private).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody,
    );
    assert!(message.contains("public_key"), "{message}");
    assert!(!message.contains("PRIVATE"), "never echoed: {message}");
    // A plain credential fetch on an ssh grant carries no certificate.
    let plain = broker.as_user("alice").credential(&grant.id).await.unwrap();
    assert!(plain.access.is_none());
}

#[tokio::test]
async fn hoistd_ssh_krl_writes_what_the_endpoint_serves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let grant = granted(&broker, "shell", None).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let cert = save_cert(
        &key,
        &certify(&broker, "alice", &grant.id, &public).await.unwrap(),
    );
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    // Run beside the live broker, on its database, as a host's timer would.
    let db = broker.db();
    let out = dir.path().join("revoked.krl");
    let written = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["ssh", "krl", "--db"])
        .arg(&db)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    assert!(krl_revokes(&out, &cert));
    let ca = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["ssh", "ca", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let served = reqwest::get(format!("{}/v1/ssh/ca", broker.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(String::from_utf8(ca.stdout).unwrap(), served);
}

/// A broker that once signed with the database's CA key and now signs
/// with one from a file (`--ssh-ca-key`): `hoistd ssh krl`, run without
/// that key as a host's timer would be, still revokes the certificates it
/// signs, and those the old key signed, as the endpoint does; `hoistd ssh
/// ca` prints the key in service.
#[tokio::test]
async fn hoistd_ssh_krl_revokes_under_the_ca_the_broker_serves_with() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::builder().policy(&policy()).start().await;
    let keys = tempfile::tempdir().unwrap();
    let (old_key, old_public) = key_pair(keys.path(), "old_ed25519");
    let old_grant = granted(&broker, "shell", None).await;
    let old_cert = save_cert(
        &old_key,
        &certify(&broker, "alice", &old_grant.id, &old_public)
            .await
            .unwrap(),
    );
    broker
        .as_user("alice")
        .revoke(&old_grant.id, "done")
        .await
        .unwrap();
    let from_file = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    broker.use_ssh_ca_key(Some(from_file.clone()));
    broker.restart().await;
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let grant = granted(&broker, "shell", None).await;
    let cert = save_cert(
        &key,
        &certify(&broker, "alice", &grant.id, &public).await.unwrap(),
    );
    let file_ca = hoistd::target::ssh::Authority::from_key(&from_file);
    let in_service = file_ca.public_key();
    let fingerprint = file_ca
        .public()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    assert!(
        listed(&cert).contains(&fingerprint),
        "signed by the file's CA"
    );
    assert!(!listed(&old_cert).contains(&fingerprint));
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    let served = dir.path().join("served.krl");
    let krl = reqwest::get(format!("{}/v1/ssh/krl", broker.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::write(&served, &krl).unwrap();
    let out = dir.path().join("revoked.krl");
    let written = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["ssh", "krl", "--db"])
        .arg(broker.db())
        .arg("--out")
        .arg(&out)
        .env_remove("HOISTD_SSH_CA_KEY")
        .env_remove("HOISTD_SSH_CA_KEY_FILE")
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    for krl in [&out, &served] {
        assert!(krl_revokes(krl, &cert), "{}: the file's CA", krl.display());
        assert!(
            krl_revokes(krl, &old_cert),
            "{}: the database's CA",
            krl.display()
        );
    }
    let ca = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["ssh", "ca", "--db"])
        .arg(broker.db())
        .env_remove("HOISTD_SSH_CA_KEY")
        .env_remove("HOISTD_SSH_CA_KEY_FILE")
        .output()
        .unwrap();
    assert!(ca.status.success());
    assert_eq!(
        String::from_utf8(ca.stdout).unwrap(),
        format!("{in_service}\n"),
        "the CA in service"
    );
}

/// On a database that holds no CA key (its broker signs with a key from a
/// file), `hoistd ssh krl` and `hoistd ssh ca` without that key fail,
/// saying so, and make no key of their own: a KRL for a CA no host trusts
/// would revoke nothing.
#[test]
fn hoistd_ssh_krl_and_ca_never_make_a_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hoistd.db");
    let migrated = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["migrate", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let out = dir.path().join("revoked.krl");
    for args in [
        vec!["ssh", "krl", "--out", out.to_str().unwrap()],
        vec!["ssh", "ca"],
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .args(&args)
            .arg("--db")
            .arg(&db)
            .env_remove("HOISTD_SSH_CA_KEY")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}: {said}");
        assert!(said.contains("holds no SSH CA key"), "{args:?}: {said}");
        assert!(run.stdout.is_empty(), "{args:?}");
    }
    assert!(!out.exists(), "no list written");
    let store = hoistd::store::SqliteStore::open(&db).unwrap();
    assert!(
        hoistd::target::ssh::Authority::load(&store)
            .unwrap()
            .is_none(),
        "no key made"
    );
}

/// The served CA line for `query` (empty, or `?target=`).
async fn served_ca(broker: &TestBroker, query: &str) -> String {
    let answer = reqwest::get(format!("{}/v1/ssh/ca{query}", broker.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{query}");
    answer.text().await.unwrap()
}

/// Two ssh targets whose hosts share an account: `hosts`, signed by the
/// broker's CA, and `lab`, with a CA of its own (`ca = "own"`), added by a
/// reload. Each target's hosts let in its own grants' certificates and
/// not the other's, and the one KRL revokes under both; `hoistd ssh ca
/// --target` prints what the endpoint serves, from the database alone.
#[tokio::test]
async fn a_target_with_its_own_ca_lets_in_only_its_own_grants() {
    let shell = format!("principals = [\"{}\"]", me());
    let broker = TestBroker::builder().policy(&policy()).start().await;
    let hosts_sshd = Sshd::start(&broker).await;
    let brokers_ca = served_ca(&broker, "").await;
    assert_eq!(served_ca(&broker, "?target=hosts").await, brokers_ca);
    // Not a target yet: none of its CA, and none made for the asking.
    let answer = reqwest::get(format!("{}/v1/ssh/ca?target=lab", broker.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let answer = reqwest::get(format!("{}/v1/ssh/ca?target=a%20b", broker.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(
        hoistd::target::ssh::Authority::load_target(
            &hoistd::store::SqliteStore::open(&broker.db()).unwrap(),
            "lab"
        )
        .unwrap()
        .is_none()
    );

    std::fs::write(
        broker.policy_path(),
        format!(
            "{}\n[[targets]]\nname = \"lab\"\nkind = \"ssh\"\nca = \"own\"\n{}",
            policy(),
            target_role("lab-shell", "lab", &shell)
        ),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    let labs_ca = served_ca(&broker, "?target=lab").await;
    assert!(labs_ca.starts_with("ssh-ed25519 "), "{labs_ca}");
    assert!(
        labs_ca.trim_end().ends_with("hoist-user-ca lab"),
        "{labs_ca}"
    );
    assert_ne!(key_of(&labs_ca), key_of(&brokers_ca));
    assert_eq!(
        served_ca(&broker, "").await,
        brokers_ca,
        "the broker's stays"
    );
    let lab_sshd = Sshd::start_with(&broker, 0, "?target=lab").await;

    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "id_ed25519");
    let lab_grant = granted(&broker, "lab-shell", None).await;
    let lab_cert = save_cert(
        &key,
        &certify(&broker, "alice", &lab_grant.id, &public)
            .await
            .unwrap(),
    );
    let (other_key, other_public) = key_pair(keys.path(), "other_ed25519");
    let hosts_grant = granted(&broker, "shell", None).await;
    let hosts_cert = save_cert(
        &other_key,
        &certify(&broker, "alice", &hosts_grant.id, &other_public)
            .await
            .unwrap(),
    );
    assert_eq!(
        lab_sshd.login(&key, &lab_cert).as_deref(),
        Ok("hoist-login-ok")
    );
    assert_eq!(
        hosts_sshd.login(&other_key, &hosts_cert).as_deref(),
        Ok("hoist-login-ok")
    );
    // The same account on the other target's hosts: refused both ways.
    for (sshd, key, cert) in [
        (&lab_sshd, &other_key, &hosts_cert),
        (&hosts_sshd, &key, &lab_cert),
    ] {
        let refused = sshd.login(key, cert).unwrap_err();
        assert!(refused.contains("Permission denied"), "{refused}");
    }

    // One KRL, fetched by either target's hosts, revokes under both CAs.
    for grant in [&lab_grant, &hosts_grant] {
        broker
            .as_user("alice")
            .revoke(&grant.id, "done")
            .await
            .unwrap();
    }
    Sshd::write_krl(lab_sshd.dir.path(), &broker).await;
    Sshd::write_krl(hosts_sshd.dir.path(), &broker).await;
    let krl = lab_sshd.dir.path().join("revoked.krl");
    assert!(krl_revokes(&krl, &lab_cert) && krl_revokes(&krl, &hosts_cert));
    assert!(lab_sshd.login(&key, &lab_cert).is_err());
    assert!(hosts_sshd.login(&other_key, &hosts_cert).is_err());

    // From the database alone, as a host's provisioning would.
    let hoistd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .args(args)
            .arg("--db")
            .arg(broker.db())
            .env_remove("HOISTD_SSH_CA_KEY")
            .env_remove("HOISTD_SSH_CA_KEY_FILE")
            .output()
            .unwrap()
    };
    let printed = hoistd(&["ssh", "ca", "--target", "lab"]);
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), labs_ca);
    // On a host set up to serve, with the broker's key file named.
    let printed = Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["ssh", "ca", "--target", "lab", "--db"])
        .arg(broker.db())
        .env("HOISTD_SSH_CA_KEY_FILE", keys.path().join("no-such.pem"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap(),
        labs_ca,
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let printed = hoistd(&["ssh", "ca"]);
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), brokers_ca);
    let none = hoistd(&["ssh", "ca", "--target", "hosts"]);
    assert!(!none.status.success());
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("keeps no CA of ssh target `hosts`"), "{said}");
    let out = keys.path().join("written.krl");
    let written = hoistd(&["ssh", "krl", "--out", out.to_str().unwrap()]);
    assert!(written.status.success());
    assert!(krl_revokes(&out, &lab_cert) && krl_revokes(&out, &hosts_cert));

    // A target dropped from the policy: its CA is no longer served, and
    // its certificates stay in the KRL while they would be valid.
    eventually(LONG, || async {
        let grant = broker.as_user("alice").grant(&lab_grant.id).await.unwrap();
        grant.access.unwrap().state == AccessState::Removed
    })
    .await;
    std::fs::write(broker.policy_path(), policy()).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    let answer = reqwest::get(format!("{}/v1/ssh/ca?target=lab", broker.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    Sshd::write_krl(lab_sshd.dir.path(), &broker).await;
    assert!(krl_revokes(&krl, &lab_cert));
}

/// A CA line's key, without its comment.
fn key_of(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The broker's CA signs for the first ssh target a policy gives it, for
/// good: a reload, or a start, that gives it to another target (the first
/// dropped and another added with no `ca`, as another instance's policy
/// might) is refused, saying which, and nothing of that policy is in
/// force. The same target with a CA of its own is taken, at start too,
/// and keeps that CA across a restart.
#[tokio::test]
async fn the_brokers_ca_never_passes_to_another_targets_hosts() {
    let mut broker = TestBroker::builder().policy(&policy()).start().await;
    let brokers_ca = served_ca(&broker, "").await;
    let dev = |ca: &str| {
        format!(
            "{}\n[[targets]]\nname = \"dev\"\nkind = \"ssh\"\n{ca}{}",
            policy_text(""),
            target_role("dev-shell", "dev", &format!("principals = [\"{}\"]", me())),
        )
    };
    // With a target of its own CA beside it, which the refusal leaves unmade.
    let with_lab = format!(
        "{}\n[[targets]]\nname = \"lab\"\nkind = \"ssh\"\nca = \"own\"\n{}",
        dev(""),
        target_role("lab-shell", "lab", "principals = [\"hoist-nobody\"]"),
    );
    std::fs::write(broker.policy_path(), with_lab).unwrap();
    let refused = broker
        .server()
        .reload(&broker.policy_path())
        .await
        .unwrap_err();
    let said = format!("{refused:#}");
    assert!(
        said.contains("ssh target `dev` would be signed by the broker's SSH CA, which signs for ssh target `hosts`"),
        "{said}"
    );
    let answer = reqwest::get(format!("{}/v1/ssh/ca?target=dev", broker.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "not in force");
    assert_eq!(served_ca(&broker, "?target=hosts").await, brokers_ca);
    let stored = hoistd::store::SqliteStore::open(&broker.db()).unwrap();
    let lab = hoistd::target::ssh::Authority::load_target(&stored, "lab").unwrap();
    assert!(lab.is_none(), "no CA made for a refused policy");
    drop(stored);

    let refused = broker.try_restart().await.unwrap_err();
    let said = format!("{refused:#}");
    assert!(
        said.contains("which signs for ssh target `hosts`"),
        "{said}"
    );

    // `check-config` says so before a deploy, from the database alone,
    // and changes nothing in it (the broker is stopped, its log folded in).
    let db = std::fs::read(broker.db()).unwrap();
    let check = |policy: &str| {
        let file = broker.policy_path().with_file_name("checked.toml");
        std::fs::write(&file, policy).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .arg("check-config")
            .arg("--db")
            .arg(broker.db())
            .arg("--policy")
            .arg(&file)
            .env_remove("HOISTD_SSH_CA_KEY")
            .env_remove("HOISTD_SSH_CA_KEY_FILE")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (passed, said) = check(&dev(""));
    assert!(!passed, "{said}");
    assert!(
        said.contains("error: SSH CA target: ssh target `dev` would be signed by the broker's SSH CA, which signs for ssh target `hosts`"),
        "{said}"
    );
    let (passed, said) = check(&policy());
    assert!(passed, "{said}");
    assert!(
        said.contains("ok: SSH CA target: `hosts`, as the broker's CA is bound"),
        "{said}"
    );

    assert_eq!(std::fs::read(broker.db()).unwrap(), db, "written");

    std::fs::write(broker.policy_path(), dev("ca = \"own\"\n")).unwrap();
    broker.restart().await;
    let devs_ca = served_ca(&broker, "?target=dev").await;
    assert_ne!(key_of(&devs_ca), key_of(&brokers_ca));
    assert_eq!(
        served_ca(&broker, "").await,
        brokers_ca,
        "the broker's stays"
    );
    broker.restart().await;
    assert_eq!(
        served_ca(&broker, "?target=dev").await,
        devs_ca,
        "kept across a restart"
    );
}
