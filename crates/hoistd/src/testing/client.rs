//! A typed client for one identity, answering each call with the body it
//! expects or the broker's error, so a test reads as behaviour.

use hoist_api::{
    AccessRequest, ApiError, AuditEvent, CreateRequest, Credential, Decision, Grant, Introspection,
    RequestPreview, ReviewInput,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A response that is either the expected body or the broker's error.
pub type Answer<T> = Result<T, (StatusCode, ApiError)>;

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// A request for `role` with nothing but a justification.
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
