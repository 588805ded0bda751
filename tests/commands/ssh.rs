//! `hoist ssh` and `hoist credential` on an ssh grant, the real binary
//! against a real broker and a real sshd on a loopback port that trusts the
//! broker's CA: with no key anywhere `hoist ssh` makes an ephemeral one,
//! kept only in an agent of its own, and logs in with it; `hoist credential`
//! certifies the person's own key and writes the certificate where plain
//! ssh finds it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::Timelike;
use hoist_api::AccessState;
use hoistd::testing::{TestBroker, eventually, policy_text, request, target_role};

use crate::{Hoist, code, stderr};

fn me() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

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

/// An sshd on a free loopback port trusting `ca` (one OpenSSH line).
async fn sshd(ca: &str) -> Sshd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pub"), ca).unwrap();
    let host_key = d.join("host_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .status()
        .unwrap();
    assert!(made.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}/sshd.pid\n\
             AuthorizedKeysFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             TrustedUserCAKeys {}/ca.pub\n",
            host_key.display(),
            d.display(),
            d.display()
        ),
    )
    .unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("no sshd: install openssh-server (scripts/test does)");
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(d.join("sshd.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let host = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    std::fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host}")).unwrap();
    eventually(Duration::from_secs(30), || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    Sshd { child, port, dir }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_logs_in_with_an_ephemeral_key_and_a_certificate_for_the_grant() {
    // A grant alice holds already: hoist ssh reuses it.
    let (broker, host, grant_id, alice) = shell_granted().await;
    // No agent and no key in HOME: the ephemeral path.
    let home = tempfile::tempdir().unwrap();
    let known_hosts = host.dir.path().join("known_hosts");
    // A config that shares connections, as many do: the grant's login must
    // not leave a master behind for later sessions to ride on once the
    // grant has ended.
    let sockets = tempfile::tempdir().unwrap();
    let config = sockets.path().join("config");
    std::fs::write(
        &config,
        format!(
            "ControlMaster auto\nControlPath {}/cm-%C\nControlPersist 60\n",
            sockets.path().display()
        ),
    )
    .unwrap();
    let out = alice
        .command(&[
            "ssh",
            "shell",
            &format!("{}@127.0.0.1", me()),
            "--",
            "-F",
            config.to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
            "-p",
            &host.port.to_string(),
            "echo",
            "hoist-ssh-ok",
        ])
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        0,
        "{}\n--- sshd:\n{}",
        stderr(&out),
        std::fs::read_to_string(host.dir.path().join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hoist-ssh-ok");
    let said = stderr(&out);
    assert!(said.contains("ephemeral key"), "{said}");
    assert!(
        said.contains(&format!("certificate for {grant_id} as {}", me())),
        "{said}"
    );
    // Nothing of the key was left behind in HOME.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
    // No master connection was left to share.
    let left: Vec<_> = std::fs::read_dir(sockets.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != "config")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The grant was reused, and is kept.
    let grants = broker.as_user("alice").grants().await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].id, grant_id);
}

/// A grant `hoist ssh` asked for that ssh never started with is revoked,
/// and said to be: here the role's target issues no certificates. (One
/// held already is left alone: it was not this command's to end.)
#[tokio::test(flavor = "multi_thread")]
async fn a_grant_hoist_ssh_asked_for_that_ssh_never_used_is_revoked() {
    let broker = TestBroker::builder().policy(&policy_text("")).start().await;
    let alice = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: broker.url(),
    };
    let login = alice.run_with_stdin(&["login", "--with-token"], "t-alice\n");
    assert!(login.status.success(), "{}", stderr(&login));
    let home = tempfile::tempdir().unwrap();
    let args = [
        "ssh",
        "logs",
        "nobody@127.0.0.1",
        "--reason",
        "reading the logs",
    ];
    let out = run_in(&alice, home.path(), None, &args);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("issues no SSH certificates"), "{said}");
    assert!(
        said.contains("revoked: ssh was not started with it"),
        "{said}"
    );
    assert!(broker.as_user("alice").grants().await.is_empty());

    let filed = broker
        .as_user("alice")
        .file(&request("logs", "reading the logs"))
        .await
        .unwrap();
    let out = run_in(&alice, home.path(), None, &args[..3]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let grants = broker.as_user("alice").grants().await;
    assert_eq!(grants.len(), 1, "{}", stderr(&out));
    assert_eq!(Some(&grants[0].id), filed.grant_id.as_ref());
}

/// A broker with an ssh target role `shell` whose certificates log in as
/// this machine's user, an sshd trusting its CA, and alice holding a live
/// grant on `shell` (signed in to hoist).
async fn shell_granted() -> (TestBroker, Sshd, String, Hoist) {
    let broker = TestBroker::builder()
        .policy(&format!(
            "{}\n[[targets]]\nname = \"hosts\"\nkind = \"ssh\"\n{}",
            policy_text(""),
            target_role("shell", "hosts", &format!("principals = [\"{}\"]", me()))
        ))
        .start()
        .await;
    let ca = reqwest::get(format!("{}/v1/ssh/ca", broker.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let host = sshd(&ca).await;
    let filed = broker
        .as_user("alice")
        .file(&request("shell", "restart the stuck worker"))
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let grant_id = approved.grant_id.unwrap();
    eventually(Duration::from_secs(30), || async {
        let grant = broker.as_user("alice").grant(&grant_id).await.unwrap();
        grant.access.unwrap().state == AccessState::Live
    })
    .await;
    let alice = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: broker.url(),
    };
    let login = alice.run_with_stdin(&["login", "--with-token"], "t-alice\n");
    assert!(login.status.success(), "{}", stderr(&login));
    (broker, host, grant_id, alice)
}

/// A key pair made by ssh-keygen at `dir/name` (and `.pub`).
fn keygen(dir: &Path, name: &str, kind: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    path
}

/// `hoist ARGS` as alice with `home` as HOME, and `agent` (or none) as
/// the ssh-agent.
fn run_in(alice: &Hoist, home: &Path, agent: Option<&Path>, args: &[&str]) -> Output {
    let mut command = alice.command(args);
    command.env("HOME", home).stdin(Stdio::null());
    match agent {
        Some(socket) => command.env("SSH_AUTH_SOCK", socket),
        None => command.env_remove("SSH_AUTH_SOCK"),
    };
    command.output().unwrap()
}

/// What `ssh-keygen -L` says of the certificate in `path`, in UTC.
fn inspect(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(path)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `ssh` to the host with the key pair at `private` and nothing else: ssh
/// finds `<private>-cert.pub` beside it by itself.
fn plain_ssh(host: &Sshd, private: &Path) -> Output {
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            host.dir.path().join("known_hosts").display()
        ))
        .arg("-i")
        .arg(private)
        .args(["-p", &host.port.to_string()])
        .arg(format!("{}@127.0.0.1", me()))
        .args(["echo", "plain-ssh-ok"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_hands_over_a_certificate_for_the_persons_key() {
    let (broker, host, grant_id, alice) = shell_granted().await;
    let grant = broker.as_user("alice").grant(&grant_id).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let ssh_dir = home.path().join(".ssh");
    let private = keygen(&ssh_dir, "id_ed25519", "ed25519");

    // ~/.ssh/id_ed25519.pub, with no agent: the certificate on stdout, and
    // what it is on stderr.
    let out = run_in(&alice, home.path(), None, &["credential", "shell"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        printed.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{printed}"
    );
    assert_eq!(printed.lines().count(), 1, "{printed}");
    let said = stderr(&out);
    assert!(
        said.contains(&format!("certificate for {grant_id} as {}", me())),
        "{said}"
    );
    // OpenSSH reads it back: the role's principals, the grant's window to
    // the second below, a key id naming the grant and the holder.
    let printed_path = home.path().join("printed-cert.pub");
    std::fs::write(&printed_path, &printed).unwrap();
    let details = inspect(&printed_path);
    assert!(
        details.contains(&format!("Key ID: \"hoist grant={grant_id} holder=alice\"")),
        "{details}"
    );
    let principals = details.split("Principals:").nth(1).unwrap();
    assert_eq!(
        principals.lines().nth(1).map(str::trim),
        Some(me().as_str()),
        "{details}"
    );
    // valid-after a minute before the grant's start, for hosts whose clock
    // is behind.
    let window = format!(
        "Valid: from {} to {}",
        (grant.starts_at - hoistd::target::ssh::VALID_AFTER_ALLOWANCE).format("%Y-%m-%dT%H:%M:%S"),
        grant.expires_at.format("%Y-%m-%dT%H:%M:%S")
    );
    assert!(details.contains(&window), "{window} in {details}");
    // Nothing was written beside the key without being asked.
    assert!(!ssh_dir.join("id_ed25519-cert.pub").exists());

    // --json: the certificate with its principals, key id and validity.
    let out = run_in(
        &alice,
        home.path(),
        None,
        &["credential", "shell", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let certificate = &json["access"]["certificate"];
    assert_eq!(certificate["principals"], serde_json::json!([me()]));
    assert_eq!(
        certificate["key_id"],
        format!("hoist grant={grant_id} holder=alice")
    );
    assert_eq!(
        certificate["valid_before"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        grant.expires_at.with_nanosecond(0).unwrap()
    );

    // --write-certificate: beside the key, 0644, where plain ssh finds it.
    let out = run_in(
        &alice,
        home.path(),
        None,
        &["credential", "shell", "--write-certificate"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let written = ssh_dir.join("id_ed25519-cert.pub");
    assert!(stderr(&out).contains(&format!("written to {}", written.display())));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let login = plain_ssh(&host, &private);
    assert_eq!(
        code(&login),
        0,
        "{}\n--- sshd:\n{}",
        stderr(&login),
        std::fs::read_to_string(host.dir.path().join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(
        String::from_utf8_lossy(&login.stdout).trim(),
        "plain-ssh-ok"
    );
    // Written again over its own certificate: fine.
    let out = run_in(
        &alice,
        home.path(),
        None,
        &["credential", "shell", "--write-certificate"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The agent's key comes first, and its certificate goes beside the
    // .pub file in ~/.ssh that holds the same key.
    let work = keygen(&ssh_dir, "work", "ecdsa");
    let agent_socket = home.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), || async { agent_socket.exists() }).await;
    let added = Command::new("ssh-add")
        .arg("-q")
        .arg(&work)
        .env("SSH_AUTH_SOCK", &agent_socket)
        .status()
        .unwrap();
    assert!(added.success());
    let out = run_in(
        &alice,
        home.path(),
        Some(&agent_socket),
        &["credential", "shell", "--write-certificate"],
    );
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let work_cert = ssh_dir.join("work-cert.pub");
    assert!(inspect(&work_cert).contains("ecdsa-sha2-nistp256-cert-v01@openssh.com"));

    // A file at the certificate's place that is not a certificate is left
    // alone, and nothing is minted.
    let other = keygen(&ssh_dir, "other", "ed25519");
    let squatted = ssh_dir.join("other-cert.pub");
    std::fs::write(&squatted, "my notes, not a certificate\n").unwrap();
    let other_pub = other.with_extension("pub");
    let out = run_in(
        &alice,
        home.path(),
        None,
        &[
            "credential",
            "shell",
            "--public-key",
            other_pub.to_str().unwrap(),
            "--write-certificate",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exists and is not an OpenSSH certificate"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&squatted).unwrap(),
        "my notes, not a certificate\n"
    );

    // A key type the CA refuses: the broker's reason, naming the file.
    let dsa = keygen(&home.path().join("old"), "id_dsa", "dsa");
    let out = run_in(
        &alice,
        home.path(),
        None,
        &[
            "credential",
            "shell",
            "--public-key",
            dsa.with_extension("pub").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("id_dsa.pub"), "{said}");
    assert!(said.contains("use Ed25519, ECDSA or RSA"), "{said}");
    assert!(out.stdout.is_empty());

    // No agent and no key file: said, with what to do.
    let bare = tempfile::tempdir().unwrap();
    let out = run_in(&alice, bare.path(), None, &["credential", "shell"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("no SSH public key to certify"), "{said}");
    assert!(said.contains("--public-key"), "{said}");
    // A file that is no public key.
    let not_a_key = bare.path().join("notes.pub");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let out = run_in(
        &alice,
        bare.path(),
        None,
        &[
            "credential",
            "shell",
            "--public-key",
            not_a_key.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not an OpenSSH public key"));

    // The token is still there for whoever asks for it.
    let out = run_in(
        &alice,
        bare.path(),
        None,
        &["credential", "shell", "--format", "token"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("eyJ"));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_options_are_refused_for_a_grant_that_is_not_at_an_ssh_target() {
    let (broker, _host, _grant_id, alice) = shell_granted().await;
    let filed = broker
        .as_user("alice")
        .file(&hoistd::testing::db_request())
        .await
        .unwrap();
    broker.as_user("bob").approve(&filed.id).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let private = keygen(&home.path().join(".ssh"), "id_ed25519", "ed25519");
    let out = run_in(
        &alice,
        home.path(),
        None,
        &[
            "credential",
            "db",
            "--public-key",
            private.with_extension("pub").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("db has no SSH certificate"),
        "{}",
        stderr(&out)
    );
    // Its token by default, as before.
    let out = run_in(&alice, home.path(), None, &["credential", "db"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("eyJ"));
}
