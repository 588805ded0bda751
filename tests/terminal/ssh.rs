//! The credential pop-up of a grant at an ssh target, in the real `hoist`:
//! `s` has the broker certify the person's own key (here
//! `~/.ssh/id_ed25519.pub`) and shows whom the certificate logs in as, its
//! window and key id, and what to run; `y` puts the certificate on the
//! clipboard (OSC 52, which tmux keeps as a paste buffer). With no key
//! anywhere it says so.

use std::process::Command;
use std::time::Duration;

use hoist_api::AccessState;
use hoistd::testing::{TestBroker, eventually, policy_text, request, target_role};

use super::{LOAD, Pane, env, login_with_token, work_profile};

fn me() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_credential_of_an_ssh_grant_is_a_certificate_for_my_key() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut broker = runtime.block_on(
        TestBroker::builder()
            .policy(&format!(
                "{}\n[[targets]]\nname = \"hosts\"\nkind = \"ssh\"\n{}",
                policy_text(""),
                target_role("shell", "hosts", &format!("principals = [\"{}\"]", me()))
            ))
            .start(),
    );
    let grant = runtime.block_on(async {
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
        broker.as_user("alice").grant(&grant_id).await.unwrap()
    });

    let config = tempfile::tempdir().unwrap();
    work_profile(config.path(), &broker.url());
    login_with_token(config.path(), &["--profile", "work"], "t-alice\n");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(home.path().join(".ssh/id_ed25519"))
        .status()
        .unwrap();
    assert!(made.success());

    let mut env = env(config.path());
    env.push(("HOME", home.path().display().to_string()));
    // No agent: the key file is the one.
    env.push((
        "SSH_AUTH_SOCK",
        home.path().join("no-agent").display().to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pane = Pane::start("", &env, 120, 36);
    pane.tmux(&["set-option", "-g", "set-clipboard", "on"]);
    pane.wait_for("work (hoistd) · alice", LOAD);
    pane.keys(&["3"]);
    pane.wait_for_line(&["shell"], LOAD);
    pane.keys(&["s"]);
    let popup = pane.wait_for("SSH certificate for shell at hosts", LOAD);
    let logs_in_as = pane.wait_for_line(&["Logs in as"], LOAD);
    assert!(logs_in_as.contains(&me()), "{popup}");
    assert!(
        popup.contains(&format!("hoist grant={} holder=alice", grant.id)),
        "{popup}"
    );
    assert!(popup.contains("hoist ssh shell [user@]HOST"), "{popup}");
    assert!(popup.contains("SHA256:"), "{popup}");

    pane.keys(&["y"]);
    pane.wait_for("SSH certificate for shell copied", LOAD);
    let copied = pane.tmux(&["show-buffer"]);
    assert!(
        copied.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{copied}"
    );
    // What was copied is the certificate of this grant, for this key.
    let cert = home.path().join("copied-cert.pub");
    std::fs::write(&cert, format!("{}\n", copied.trim())).unwrap();
    let details = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    let details = String::from_utf8_lossy(&details.stdout);
    assert!(
        details.contains(&format!(
            "Key ID: \"hoist grant={} holder=alice\"",
            grant.id
        )),
        "{details}"
    );
    let fingerprint = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(home.path().join(".ssh/id_ed25519.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout);
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(details.contains(fingerprint), "{fingerprint} in {details}");

    // Apart: an escape with a key right behind it reads as Alt and that key.
    pane.keys(&["Escape"]);
    let start = std::time::Instant::now();
    while pane.screen().contains("SSH certificate for shell at hosts") {
        assert!(start.elapsed() < LOAD, "the pop-up never closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // No key anywhere: said, with the way that needs none.
    std::fs::remove_file(home.path().join(".ssh/id_ed25519.pub")).unwrap();
    pane.keys(&["s"]);
    let refused = pane.wait_for("no SSH public key to certify", LOAD);
    assert!(refused.contains("`hoist ssh` makes one"), "{refused}");
    assert!(
        !refused.contains("SSH certificate for shell at hosts"),
        "{refused}"
    );

    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
    runtime.block_on(broker.stop());
}
