//! The connection to a broker: typed calls over reqwest (rustls), the broker's
//! clock, and the live event stream.
//!
//! Only `https://` URLs are accepted, except plain `http://` to a loopback
//! address. Redirects are never followed, so the bearer token can never be
//! sent to another origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::{Stream, StreamExt};
use hoist_api::{
    AccessRequest, AcknowledgeInput, ApiError, AuditEvent, AuthConfig, CreateRequest, Credential,
    Decision, ErrorCode, ExtendInput, Grant, IDEMPOTENCY_KEY_HEADER, LiveEvent, Me, ReasonInput,
    RequestHistory, RequestPreview, ReviewInput, Role, SERVER_TIME_HEADER,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

/// How long one call may take before the broker counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("broker URL `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("broker unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("session expired or not signed in: {0}")]
    Unauthenticated(String),
    #[error("{message}")]
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The broker's error code, if the broker refused the call.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            ClientError::Unauthenticated(_) => Some(ErrorCode::Unauthenticated),
            _ => None,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
            || matches!(self, ClientError::Refused { status, .. } if *status >= 500)
    }
}

/// The broker's clock as seen from here: the offset learned from every response.
#[derive(Debug, Default)]
pub struct ServerClock {
    offset_ms: AtomicI64,
}

impl ServerClock {
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    fn observe(&self, headers: &reqwest::header::HeaderMap) {
        let precise = headers
            .get(SERVER_TIME_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<DateTime<Utc>>().ok());
        let coarse = || {
            headers
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        if let Some(server) = precise.or_else(coarse) {
            self.offset_ms
                .store((server - Utc::now()).num_milliseconds(), Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
pub struct BrokerClient {
    base: Url,
    /// Replaced in place when a session is refreshed; every clone sees it.
    token: Arc<std::sync::RwLock<Arc<str>>>,
    http: reqwest::Client,
    clock: Arc<ServerClock>,
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("BrokerClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl BrokerClient {
    pub fn new(base: &str, token: &str) -> Result<Self, ClientError> {
        let base = crate::endpoint::check(base).map_err(|refused| ClientError::BadUrl {
            url: refused.url,
            reason: refused.reason,
        })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        Ok(BrokerClient {
            base,
            token: Arc::new(std::sync::RwLock::new(Arc::from(token))),
            http,
            clock: Arc::new(ServerClock::default()),
        })
    }

    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    pub fn clock(&self) -> Arc<ServerClock> {
        Arc::clone(&self.clock)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let token = Arc::clone(&self.token.read().unwrap_or_else(|p| p.into_inner()));
        self.http
            .request(method, self.url(path))
            .bearer_auth(&*token)
    }

    /// Uses a new token from now on (after a refresh), in every clone.
    pub fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(token);
    }

    /// How to sign in to the broker at `base`; needs no token.
    pub async fn auth_config(base: &str) -> Result<AuthConfig, ClientError> {
        let anonymous = BrokerClient::new(base, "")?;
        let builder = anonymous.http.get(anonymous.url("/v1/auth/config"));
        anonymous.send(builder).await
    }

    fn unreachable(&self, err: &reqwest::Error) -> ClientError {
        // reqwest's messages hold the URL but never the Authorization header.
        let reason = if err.is_timeout() {
            "timed out".to_string()
        } else if err.is_connect() {
            "connection refused or failed".to_string()
        } else {
            err.to_string()
        };
        ClientError::Unreachable {
            url: self.base.to_string(),
            reason,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = builder
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|err| self.unreachable(&err))?;
        self.clock.observe(response.headers());
        let status = response.status();
        if status.is_redirection() {
            return Err(ClientError::Protocol(format!(
                "the broker answered with a redirect ({status}); hoist never follows redirects, check the broker URL"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.unreachable(&err))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|err| ClientError::Protocol(format!("{status}: {err}")));
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(error) if status == StatusCode::UNAUTHORIZED => {
                Err(ClientError::Unauthenticated(error.message))
            }
            Ok(error) => Err(ClientError::Refused {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
            }),
            Err(_) if status == StatusCode::UNAUTHORIZED => Err(ClientError::Unauthenticated(
                "the broker refused the token".into(),
            )),
            Err(_) => Err(ClientError::Protocol(format!(
                "{status} without an error body (is this a hoist broker?)"
            ))),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get("/v1/me").await
    }

    pub async fn roles(&self) -> Result<Vec<Role>, ClientError> {
        self.get("/v1/roles").await
    }

    pub async fn my_requests(&self, limit: usize) -> Result<Vec<AccessRequest>, ClientError> {
        self.get(&format!("/v1/requests?limit={limit}")).await
    }

    pub async fn request_by_id(&self, id: &str) -> Result<AccessRequest, ClientError> {
        self.get(&format!("/v1/requests/{}", path_segment(id)))
            .await
    }

    pub async fn review_queue(&self) -> Result<Vec<AccessRequest>, ClientError> {
        self.get("/v1/reviews").await
    }

    pub async fn break_glass_queue(&self) -> Result<Vec<AccessRequest>, ClientError> {
        self.get("/v1/break-glass").await
    }

    pub async fn history(&self, id: &str) -> Result<RequestHistory, ClientError> {
        self.get(&format!("/v1/requests/{}/history", path_segment(id)))
            .await
    }

    pub async fn grants(&self, include_ended: bool) -> Result<Vec<Grant>, ClientError> {
        self.get(&format!("/v1/grants?all={include_ended}")).await
    }

    pub async fn audit(&self, after: i64, limit: usize) -> Result<Vec<AuditEvent>, ClientError> {
        self.get(&format!("/v1/audit?after={after}&limit={limit}"))
            .await
    }

    /// Every audit event about one incident that the caller may read, in order.
    pub async fn incident_audit(&self, incident: &str) -> Result<Vec<AuditEvent>, ClientError> {
        const PAGE: usize = 10_000;
        let mut events: Vec<AuditEvent> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e.seq);
            let page: Vec<AuditEvent> = self
                .send(self.request(Method::GET, "/v1/audit").query(&[
                    ("incident", incident.to_string()),
                    ("after", after.to_string()),
                    ("limit", PAGE.to_string()),
                ]))
                .await?;
            let done = page.len() < PAGE;
            events.extend(page);
            if done {
                return Ok(events);
            }
        }
    }

    /// Everything filed under one incident reference that I may see.
    pub async fn incident(&self, reference: &str) -> Result<hoist_api::IncidentView, ClientError> {
        self.get(&format!("/v1/incidents/{}", path_segment(reference)))
            .await
    }

    /// Files a request. The idempotency key makes a retry after a network
    /// error return the same request instead of filing a second one.
    pub async fn create_request(
        &self,
        body: &CreateRequest,
        idempotency_key: &str,
    ) -> Result<AccessRequest, ClientError> {
        self.send(
            self.request(Method::POST, "/v1/requests")
                .header(IDEMPOTENCY_KEY_HEADER, idempotency_key)
                .json(body),
        )
        .await
    }

    pub async fn preview(&self, body: &CreateRequest) -> Result<RequestPreview, ClientError> {
        self.post("/v1/requests/validate", body).await
    }

    pub async fn review(
        &self,
        id: &str,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<AccessRequest, ClientError> {
        self.post(
            &format!("/v1/requests/{}/reviews", path_segment(id)),
            &ReviewInput { decision, comment },
        )
        .await
    }

    pub async fn cancel(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest, ClientError> {
        self.post(
            &format!("/v1/requests/{}/cancel", path_segment(id)),
            &ReasonInput { reason },
        )
        .await
    }

    pub async fn claim(&self, id: &str, release: bool) -> Result<AccessRequest, ClientError> {
        let method = if release {
            Method::DELETE
        } else {
            Method::POST
        };
        self.send(self.request(method, &format!("/v1/requests/{}/claim", path_segment(id))))
            .await
    }

    pub async fn acknowledge(
        &self,
        id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, ClientError> {
        self.post(
            &format!("/v1/requests/{}/acknowledge", path_segment(id)),
            &AcknowledgeInput { comment },
        )
        .await
    }

    pub async fn revoke(
        &self,
        grant_id: &str,
        reason: Option<String>,
    ) -> Result<Grant, ClientError> {
        self.post(
            &format!("/v1/grants/{}/revoke", path_segment(grant_id)),
            &ReasonInput { reason },
        )
        .await
    }

    pub async fn extend(
        &self,
        grant_id: &str,
        duration_secs: u64,
        justification: Option<String>,
    ) -> Result<AccessRequest, ClientError> {
        self.post(
            &format!("/v1/grants/{}/extend", path_segment(grant_id)),
            &ExtendInput {
                duration_secs,
                justification,
            },
        )
        .await
    }

    pub async fn credential(&self, grant_id: &str) -> Result<Credential, ClientError> {
        self.get(&format!("/v1/grants/{}/credential", path_segment(grant_id)))
            .await
    }

    /// Opens the live event stream. It ends when the connection drops; the
    /// caller reconnects and fetches everything again.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<LiveEvent, ClientError>> + use<>, ClientError> {
        let response = self
            .request(Method::GET, "/v1/events")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|err| self.unreachable(&err))?;
        self.clock.observe(response.headers());
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthenticated(
                "the broker refused the token".into(),
            ));
        }
        if !status.is_success() {
            return Err(ClientError::Protocol(format!(
                "event stream answered {status}"
            )));
        }
        let url = self.base.to_string();
        let stream = eventsource_stream::EventStream::new(response.bytes_stream()).map(
            move |item| match item {
                Ok(event) => serde_json::from_str::<LiveEvent>(&event.data).map_err(|err| {
                    ClientError::Protocol(format!("bad event `{}`: {err}", event.event))
                }),
                Err(err) => Err(ClientError::Unreachable {
                    url: url.clone(),
                    reason: format!("event stream: {err}"),
                }),
            },
        );
        Ok(stream)
    }
}

/// Keeps ids from the user or the server from escaping their path segment.
fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(path_segment("req_abc/../../admin?x"), "req_abcadminx");
    }

    #[test]
    fn the_brokers_clock_wins_over_ours() {
        let clock = ServerClock::default();
        let mut headers = reqwest::header::HeaderMap::new();
        let ahead = Utc::now() + TimeDelta::hours(1);
        headers.insert(SERVER_TIME_HEADER, ahead.to_rfc3339().parse().unwrap());
        clock.observe(&headers);
        let skew = clock.now() - ahead;
        assert!(skew.num_seconds().abs() <= 1, "{skew}");
        // Without the precise header, the standard Date header is used.
        let behind = Utc::now() - TimeDelta::minutes(10);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::DATE, behind.to_rfc2822().parse().unwrap());
        clock.observe(&headers);
        assert!((clock.now() - behind).num_seconds().abs() <= 2);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let client = BrokerClient::new("http://127.0.0.1:1", "s3cret-token").unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
