//! A real broker on a loopback port with a fresh SQLite file per test, and a
//! typed client per identity, so tests read as behaviour.

use std::path::PathBuf;
use std::time::Duration;

use hoist_api::{
    AccessRequest, ApiError, AuditEvent, CreateRequest, Credential, Decision, ErrorCode, Grant,
    Introspection, RequestPreview, ReviewInput,
};
use hoistd::{Policy, Server};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The test policy. Tokens are `t-<name>`; roles cover each approval rule.
pub fn policy_text(settings: &str) -> String {
    let users: String = ["alice", "bob", "carol", "dave", "erin", "frank"]
        .iter()
        .map(|u| {
            let hash = hex::encode(Sha256::digest(format!("t-{u}").as_bytes()));
            format!("[users.{u}]\ntoken_sha256 = \"{hash}\"\n")
        })
        .collect();
    format!(
        r#"
[settings]
auditor_groups = ["auditors"]
{settings}

{users}

[groups]
eng = ["alice", "bob", "carol", "dave", "frank"]
approvers = ["bob", "dave", "alice"]
oncall = ["carol"]
auditors = ["erin"]

[[roles]]
id = "db"
name = "Prod DB"
scope = "postgres://db"
eligible_groups = ["eng"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["approvers"]
break_glass = true
break_glass_groups = ["oncall"]
ticket_required = true
ticket_pattern = "INC-[0-9]+"
min_justification = 10

[[roles]]
id = "k8s"
name = "Prod cluster"
scope = "k8s://prod"
eligible_groups = ["eng"]
default_duration = "1h"
max_duration = "2h"
approvals = 2
approver_groups = ["approvers"]

[[roles]]
id = "logs"
name = "Logs"
scope = "logs://prod"
eligible_groups = ["eng"]
default_duration = "10m"
max_duration = "1h"

[[roles]]
id = "secret"
name = "Not for frank"
scope = "vault://x"
eligible_users = ["alice"]
default_duration = "10m"
max_duration = "1h"
"#
    )
}

pub struct TestBroker {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub base: String,
    http: reqwest::Client,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::with_settings("").await
    }

    pub async fn with_settings(settings: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy_text(settings)).unwrap();
        let mut broker = TestBroker {
            server: None,
            dir,
            base: String::new(),
            http: reqwest::Client::new(),
        };
        broker.boot().await;
        broker
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("hoistd.db")
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    async fn boot(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let policy = Policy::load(&self.policy_path()).unwrap();
        let store = hoistd::store::Location::Sqlite(self.db()).open().unwrap();
        let server = Server::start(listener, store, policy).await.unwrap();
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Stops the broker and starts it again on the same database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn as_user(&self, user: &str) -> Client {
        Client {
            base: self.base.clone(),
            token: format!("t-{user}"),
            http: self.http.clone(),
        }
    }
}

/// A response that is either the expected body or the broker's error.
pub type Answer<T> = Result<T, (StatusCode, ApiError)>;

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

pub fn request(role: &str, justification: &str) -> CreateRequest {
    CreateRequest {
        role: role.into(),
        justification: justification.into(),
        ticket: None,
        incident: None,
        duration_secs: None,
        starts_at: None,
        break_glass: false,
    }
}

/// A request for `db` that passes every rule.
pub fn db_request() -> CreateRequest {
    CreateRequest {
        ticket: Some("INC-42".into()),
        ..request("db", "rotate the replication slot")
    }
}

impl Client {
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn call<T: DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Answer<T> {
        let response = builder.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        if status.is_success() {
            Ok(serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: {e}: {}", String::from_utf8_lossy(&bytes))))
        } else {
            let error: ApiError = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: not an ApiError ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            Err((status, error))
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Answer<T> {
        self.call(self.raw(Method::GET, path)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Answer<T> {
        self.call(self.raw(Method::POST, path).json(body)).await
    }

    pub async fn file(&self, body: &CreateRequest) -> Answer<AccessRequest> {
        self.post("/v1/requests", body).await
    }

    pub async fn file_with_key(&self, body: &CreateRequest, key: &str) -> Answer<AccessRequest> {
        self.call(
            self.raw(Method::POST, "/v1/requests")
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    pub async fn preview(&self, body: &CreateRequest) -> Answer<RequestPreview> {
        self.post("/v1/requests/validate", body).await
    }

    pub async fn request(&self, id: &str) -> Answer<AccessRequest> {
        self.get(&format!("/v1/requests/{id}")).await
    }

    pub async fn mine(&self) -> Vec<AccessRequest> {
        self.get("/v1/requests").await.unwrap()
    }

    pub async fn queue(&self) -> Vec<AccessRequest> {
        self.get("/v1/reviews").await.unwrap()
    }

    pub async fn review(
        &self,
        id: &str,
        decision: Decision,
        comment: Option<&str>,
    ) -> Answer<AccessRequest> {
        let body = ReviewInput {
            decision,
            comment: comment.map(str::to_string),
        };
        self.post(&format!("/v1/requests/{id}/reviews"), &body)
            .await
    }

    pub async fn approve(&self, id: &str) -> Answer<AccessRequest> {
        self.review(id, Decision::Approve, None).await
    }

    pub async fn cancel(&self, id: &str) -> Answer<AccessRequest> {
        self.post(&format!("/v1/requests/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    pub async fn grants(&self) -> Vec<Grant> {
        self.get("/v1/grants").await.unwrap()
    }

    pub async fn grant(&self, id: &str) -> Answer<Grant> {
        self.get(&format!("/v1/grants/{id}")).await
    }

    pub async fn revoke(&self, id: &str, reason: &str) -> Answer<Grant> {
        self.post(
            &format!("/v1/grants/{id}/revoke"),
            &serde_json::json!({ "reason": reason }),
        )
        .await
    }

    pub async fn extend(&self, id: &str, secs: u64) -> Answer<AccessRequest> {
        self.post(
            &format!("/v1/grants/{id}/extend"),
            &serde_json::json!({ "duration_secs": secs }),
        )
        .await
    }

    pub async fn credential(&self, grant_id: &str) -> Answer<Credential> {
        self.get(&format!("/v1/grants/{grant_id}/credential")).await
    }

    pub async fn introspect(&self, token: &str) -> Introspection {
        self.call(
            self.raw(Method::POST, "/v1/introspect")
                .form(&[("token", token)]),
        )
        .await
        .unwrap()
    }

    pub async fn audit(&self) -> Vec<AuditEvent> {
        self.get("/v1/audit?limit=10000").await.unwrap()
    }
}

/// Asserts a refusal with this status and code, and returns its message.
pub fn refused<T: std::fmt::Debug>(
    answer: Answer<T>,
    status: StatusCode,
    code: ErrorCode,
) -> String {
    match answer {
        Err((got_status, error)) => {
            assert_eq!(
                (got_status, error.code),
                (status, code),
                "{}",
                error.message
            );
            assert!(!error.message.is_empty());
            error.message
        }
        Ok(value) => panic!("expected {status} {code:?}, got {value:?}"),
    }
}

/// Waits until `check` holds, polling; fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
