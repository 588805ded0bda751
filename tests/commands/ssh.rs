//! `hoist ssh`, the real binary against a real broker and a real sshd on a
//! loopback port that trusts the broker's CA: with no key anywhere it makes
//! an ephemeral one, kept only in an agent of its own, and logs in with it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    // A grant alice holds already: hoist ssh reuses it.
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
    // No agent and no key in HOME: the ephemeral path.
    let home = tempfile::tempdir().unwrap();
    let known_hosts = host.dir.path().join("known_hosts");
    let out = alice
        .command(&[
            "ssh",
            "shell",
            &format!("{}@127.0.0.1", me()),
            "--",
            "-F",
            "/dev/null",
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
    // The grant was reused, and is kept.
    let grants = broker.as_user("alice").grants().await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].id, grant_id);
}
