//! `hoist` against a broker serving HTTPS with a private CA. The client
//! verifies with the platform verifier, which on Linux reads the system's
//! roots, or instead the PEM file in `SSL_CERT_FILE`: that is how it trusts
//! a private CA, and without it the handshake is refused.

use hoist_api::{AccessRequest, Role};

use crate::{Hoist, code, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoist_talks_to_a_tls_broker_that_its_ca_file_vouches_for() {
    let mut broker = hoistd::testing::TestBroker::builder()
        .policy(hoist::demo::DEMO_POLICY)
        .token_prefix("demo-")
        .tls()
        .start()
        .await;
    let url = broker.url();
    assert!(url.starts_with("https://"), "{url}");
    let ca_file = broker.ca().ca_file();
    let alice = Hoist {
        config: tempfile::tempdir().unwrap(),
        broker: url.clone(),
    };

    // Not trusted: the broker's certificate names no CA the client knows.
    let refused = alice.run_with_stdin(&["login", "--with-token"], "demo-alice\n");
    assert_ne!(code(&refused), 0);
    let said = stderr(&refused);
    assert!(said.contains("TLS certificate is not trusted"), "{said}");
    assert!(said.contains("SSL_CERT_FILE"), "{said}");

    let trusting = |args: &[&str], input: Option<&str>| {
        let mut command = alice.command(args);
        command.env("SSL_CERT_FILE", &ca_file);
        match input {
            Some(input) => {
                use std::io::Write;
                let mut child = command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
            None => command.stdin(std::process::Stdio::null()).output().unwrap(),
        }
    };
    let login = trusting(&["login", "--with-token"], Some("demo-alice\n"));
    assert_eq!(code(&login), 0, "{}", stderr(&login));
    let roles = trusting(&["roles", "--json"], None);
    assert_eq!(code(&roles), 0, "{}", stderr(&roles));
    let roles: Vec<Role> = serde_json::from_slice(&roles.stdout).unwrap();
    assert_eq!(roles.len(), 7);
    let filed = trusting(&[&crate::DB[..], &["--json"]].concat(), None);
    assert_eq!(code(&filed), 0, "{}", stderr(&filed));
    let filed: AccessRequest = serde_json::from_slice(&filed.stdout).unwrap();
    let seen = broker.as_user("alice").request(&filed.id).await.unwrap();
    assert_eq!(seen.justification, filed.justification);
}
