//! hoistd's HTTP API as a [`Backend`]: typed calls over reqwest (rustls),
//! the broker's clock from every answer, and the live event stream (SSE).
//!
//! Only `https://` URLs are accepted, except plain `http://` to a loopback
//! address ([`crate::endpoint`]). Redirects are never followed, so the
//! bearer token can never be sent to another origin.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hoist_api::{
    AccessRequest, AcknowledgeInput, ApiError, AuditEvent, AuthConfig, CreateRequest, Credential,
    Decision, ErrorCode, ExtendInput, Grant, IDEMPOTENCY_KEY_HEADER, IncidentView, LiveEvent, Me,
    ReasonInput, RequestHistory, ReviewInput, Role, SERVER_TIME_HEADER,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::{Backend, BackendError, Capabilities, EventStream, ServerClock};

/// How long one call may take before the broker counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker's time in an answer: `x-hoist-server-time` to the
/// millisecond, else the standard `Date` header.
fn server_time(headers: &reqwest::header::HeaderMap) -> Option<DateTime<Utc>> {
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
    precise.or_else(coarse)
}

/// A redirect is an error: following it would send the token elsewhere.
fn redirected(status: StatusCode) -> BackendError {
    BackendError::Protocol(format!(
        "the broker answered with a redirect ({status}); hoist never follows redirects, check the broker URL"
    ))
}

#[derive(Clone)]
pub struct HoistdClient {
    base: Url,
    /// Replaced in place when a session is refreshed; every clone sees it.
    token: Arc<std::sync::RwLock<Arc<str>>>,
    http: reqwest::Client,
    clock: Arc<ServerClock>,
}

impl std::fmt::Debug for HoistdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("HoistdClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl HoistdClient {
    pub fn new(base: &str, token: &str) -> Result<Self, BackendError> {
        let base = crate::endpoint::check(base).map_err(|refused| BackendError::BadUrl {
            url: refused.url,
            reason: refused.reason,
        })?;
        let http = crate::endpoint::client_for(&base)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| BackendError::Protocol(err.to_string()))?;
        Ok(HoistdClient {
            base,
            token: Arc::new(std::sync::RwLock::new(Arc::from(token))),
            http,
            clock: Arc::new(ServerClock::default()),
        })
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

    /// How to sign in to the broker at `base`; needs no token.
    pub async fn auth_config(base: &str) -> Result<AuthConfig, BackendError> {
        let anonymous = HoistdClient::new(base, "")?;
        let builder = anonymous.http.get(anonymous.url("/v1/auth/config"));
        anonymous.send(builder).await
    }

    fn unreachable(&self, err: &reqwest::Error) -> BackendError {
        // reqwest's messages hold the URL but never the Authorization header.
        let reason = if err.is_timeout() {
            "timed out".to_string()
        } else if let Some(why) = untrusted_certificate(err) {
            format!(
                "its TLS certificate is not trusted ({why}); for a private CA, point SSL_CERT_FILE at the CA's PEM file"
            )
        } else if err.is_connect() {
            "connection refused or failed".to_string()
        } else {
            err.to_string()
        };
        BackendError::Unreachable {
            url: self.base.to_string(),
            reason,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, BackendError> {
        let response = builder
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|err| self.unreachable(&err))?;
        if let Some(server) = server_time(response.headers()) {
            self.clock.observe(server);
        }
        let status = response.status();
        if status.is_redirection() {
            return Err(redirected(status));
        }
        let bytes = crate::endpoint::body(response)
            .await
            .map_err(|err| match err {
                crate::endpoint::BodyError::Read(err) => self.unreachable(&err),
                too_large => BackendError::Protocol(too_large.to_string()),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|err| BackendError::Protocol(format!("{status}: {err}")));
        }
        Err(refusal(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, BackendError> {
        self.send(self.request(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, BackendError> {
        self.send(self.request(Method::POST, path).json(body)).await
    }
}

#[async_trait::async_trait]
impl Backend for HoistdClient {
    fn broker(&self) -> &str {
        self.base.as_str()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn clock(&self) -> Arc<ServerClock> {
        Arc::clone(&self.clock)
    }

    fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(token);
    }

    async fn me(&self) -> Result<Me, BackendError> {
        self.get("/v1/me").await
    }

    async fn roles(&self) -> Result<Vec<Role>, BackendError> {
        self.get("/v1/roles").await
    }

    async fn requests(&self, limit: usize) -> Result<Vec<AccessRequest>, BackendError> {
        self.get(&format!("/v1/requests?limit={limit}")).await
    }

    async fn request(&self, id: &str) -> Result<AccessRequest, BackendError> {
        self.get(&format!("/v1/requests/{}", path_segment(id)?))
            .await
    }

    async fn review_queue(&self) -> Result<Vec<AccessRequest>, BackendError> {
        self.get("/v1/reviews").await
    }

    async fn break_glass_queue(&self) -> Result<Vec<AccessRequest>, BackendError> {
        self.get("/v1/break-glass").await
    }

    async fn history(&self, id: &str) -> Result<RequestHistory, BackendError> {
        self.get(&format!("/v1/requests/{}/history", path_segment(id)?))
            .await
    }

    async fn grants(&self, include_ended: bool) -> Result<Vec<Grant>, BackendError> {
        self.get(&format!("/v1/grants?all={include_ended}")).await
    }

    async fn workload_grants(&self) -> Result<Vec<Grant>, BackendError> {
        self.get("/v1/grants?workloads=true").await
    }

    async fn audit(&self, after: i64, limit: usize) -> Result<Vec<AuditEvent>, BackendError> {
        self.get(&format!("/v1/audit?after={after}&limit={limit}"))
            .await
    }

    async fn latest_audit(&self, limit: usize) -> Result<Vec<AuditEvent>, BackendError> {
        self.get(&format!("/v1/audit?newest=true&limit={limit}"))
            .await
    }

    /// Every audit event about one incident that the caller may read, in order.
    async fn incident_audit(&self, incident: &str) -> Result<Vec<AuditEvent>, BackendError> {
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
            // Each page must go on from the last: a broker that answers
            // the same page again would otherwise be asked for ever.
            let goes_on = page.first().is_none_or(|first| first.seq > after)
                && page.windows(2).all(|pair| pair[0].seq < pair[1].seq);
            if !goes_on {
                return Err(BackendError::Protocol(format!(
                    "the audit page after {after} did not go on from it"
                )));
            }
            events.extend(page);
            if done {
                return Ok(events);
            }
        }
    }

    /// Everything filed under one incident reference that I may see.
    async fn incident(&self, reference: &str) -> Result<IncidentView, BackendError> {
        self.get(&format!("/v1/incidents/{}", path_segment(reference)?))
            .await
    }

    async fn file(
        &self,
        body: &CreateRequest,
        idempotency_key: &str,
    ) -> Result<AccessRequest, BackendError> {
        self.send(
            self.request(Method::POST, "/v1/requests")
                .header(IDEMPOTENCY_KEY_HEADER, idempotency_key)
                .json(body),
        )
        .await
    }

    async fn review(
        &self,
        id: &str,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        self.post(
            &format!("/v1/requests/{}/reviews", path_segment(id)?),
            &ReviewInput { decision, comment },
        )
        .await
    }

    async fn cancel(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        self.post(
            &format!("/v1/requests/{}/cancel", path_segment(id)?),
            &ReasonInput { reason },
        )
        .await
    }

    async fn claim(&self, id: &str, release: bool) -> Result<AccessRequest, BackendError> {
        let method = if release {
            Method::DELETE
        } else {
            Method::POST
        };
        self.send(self.request(method, &format!("/v1/requests/{}/claim", path_segment(id)?)))
            .await
    }

    async fn acknowledge(
        &self,
        id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        self.post(
            &format!("/v1/requests/{}/acknowledge", path_segment(id)?),
            &AcknowledgeInput { comment },
        )
        .await
    }

    async fn revoke(&self, grant_id: &str, reason: Option<String>) -> Result<Grant, BackendError> {
        self.post(
            &format!("/v1/grants/{}/revoke", path_segment(grant_id)?),
            &ReasonInput { reason },
        )
        .await
    }

    async fn extend(
        &self,
        grant_id: &str,
        duration_secs: u64,
        justification: Option<String>,
        idempotency_key: &str,
    ) -> Result<AccessRequest, BackendError> {
        self.send(
            self.request(
                Method::POST,
                &format!("/v1/grants/{}/extend", path_segment(grant_id)?),
            )
            .header(IDEMPOTENCY_KEY_HEADER, idempotency_key)
            .json(&ExtendInput {
                duration_secs,
                justification,
            }),
        )
        .await
    }

    async fn grant(&self, id: &str) -> Result<Grant, BackendError> {
        self.get(&format!("/v1/grants/{}", path_segment(id)?)).await
    }

    async fn credential(&self, grant_id: &str) -> Result<Credential, BackendError> {
        self.get(&format!(
            "/v1/grants/{}/credential",
            path_segment(grant_id)?
        ))
        .await
    }

    async fn certify(&self, grant_id: &str, public_key: &str) -> Result<Credential, BackendError> {
        self.post(
            &format!("/v1/grants/{}/credential", path_segment(grant_id)?),
            &hoist_api::CredentialInput {
                public_key: public_key.to_string(),
            },
        )
        .await
    }

    async fn events(&self) -> Result<EventStream, BackendError> {
        // The stream itself runs for as long as it is read, but its answer
        // comes within a call's time, as any other's: a broker that never
        // answers is unreachable, and the caller tries again.
        let sent = self
            .request(Method::GET, "/v1/events")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send();
        let response = tokio::time::timeout(CALL_TIMEOUT, sent)
            .await
            .map_err(|_| BackendError::Unreachable {
                url: self.base.to_string(),
                reason: "the event stream did not answer".into(),
            })?
            .map_err(|err| self.unreachable(&err))?;
        if let Some(server) = server_time(response.headers()) {
            self.clock.observe(server);
        }
        let status = response.status();
        if status.is_redirection() {
            return Err(redirected(status));
        }
        if !status.is_success() {
            // The broker says why (a cap on streams, say): its own words,
            // which everything that shows them sanitises.
            let bytes = tokio::time::timeout(CALL_TIMEOUT, crate::endpoint::body(response))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(match refusal(status, &bytes) {
                BackendError::Protocol(_) => {
                    BackendError::Protocol(format!("event stream answered {status}"))
                }
                refused => refused,
            });
        }
        let url = self.base.to_string();
        let bytes = bounded_events(response.bytes_stream());
        let stream = eventsource_stream::EventStream::new(bytes).map(move |item| match item {
            Ok(event) => serde_json::from_str::<LiveEvent>(&event.data).map_err(|err| {
                BackendError::Protocol(format!("bad event `{}`: {err}", event.event))
            }),
            Err(err) => Err(BackendError::Unreachable {
                url: url.clone(),
                reason: format!("event stream: {err}"),
            }),
        });
        Ok(Box::pin(stream))
    }
}

/// The most one event may take on the wire, from the line after the last
/// blank one: a stream that sends more without ending an event is broken
/// (or hostile), and ends rather than grow the parser's buffer for ever.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// `bytes` as they come, failing once more than [`MAX_EVENT_BYTES`] come
/// without a blank line (`\n\n`, `\r\n\r\n` or `\r\r`) between them.
fn bounded_events<B: AsRef<[u8]>>(
    bytes: impl futures::Stream<Item = reqwest::Result<B>>,
) -> impl futures::Stream<Item = Result<B, String>> {
    let (mut since_blank, mut breaks, mut last) = (0_usize, 0_u8, 0_u8);
    bytes.map(move |chunk| {
        let chunk = chunk.map_err(|err| err.without_url().to_string())?;
        for &byte in chunk.as_ref() {
            match byte {
                b'\n' if last == b'\r' => {}
                b'\n' | b'\r' => {
                    breaks = breaks.saturating_add(1);
                    if breaks >= 2 {
                        since_blank = 0;
                    }
                }
                _ => {
                    breaks = 0;
                    since_blank += 1;
                }
            }
            last = byte;
        }
        if since_blank > MAX_EVENT_BYTES {
            return Err(format!(
                "an event longer than {} KiB",
                MAX_EVENT_BYTES >> 10
            ));
        }
        Ok(chunk)
    })
}

/// A failed answer as an error: the broker's `{code, message}` where it
/// sent one.
fn refusal(status: StatusCode, body: &[u8]) -> BackendError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(error) if status == StatusCode::UNAUTHORIZED => {
            BackendError::Unauthenticated(error.message)
        }
        Ok(error) => BackendError::Refused {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        },
        Err(_) if status == StatusCode::UNAUTHORIZED => {
            BackendError::Unauthenticated("the broker refused the token".into())
        }
        // A proxy or load balancer in front of the broker answers for it
        // while an instance restarts (502, 503, 504, its own 429), with a
        // page of its own: the broker is away, not refusing, and the call
        // is tried again like any other while it is away.
        Err(_) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            BackendError::Refused {
                status: status.as_u16(),
                code: if status == StatusCode::TOO_MANY_REQUESTS {
                    ErrorCode::RateLimited
                } else {
                    ErrorCode::Unavailable
                },
                message: format!(
                    "{status} from in front of the broker (no hoist error body): it is away or \
                     busy; try again"
                ),
            }
        }
        Err(_) => BackendError::Protocol(format!(
            "{status} without an error body (is this a hoist broker?)"
        )),
    }
}

/// Everything but the URL's unreserved characters (letters, digits, `-`,
/// `.`, `_`, `~`) is percent-encoded in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id or reference from the user or the server as one path segment:
/// sent as it is, percent-encoded, so that it cannot leave its segment
/// (`/`, `?`, `#`) and the broker answers for exactly it (a typo is not
/// found, never another id); an empty one, `.` and `..`, which a URL takes
/// as moves, are refused.
fn path_segment(id: &str) -> Result<String, BackendError> {
    if matches!(id, "" | "." | "..") {
        return Err(BackendError::BadInput(format!(
            "`{id}` is not an id or reference"
        )));
    }
    Ok(percent_encoding::utf8_percent_encode(id, SEGMENT).to_string())
}

/// Why the broker's certificate was refused, if that is why `err` happened:
/// the platform verifier's reason, somewhere in its causes (an I/O error
/// holds it as its inner error, which `source` skips).
fn untrusted_certificate(err: &reqwest::Error) -> Option<String> {
    let mut cause = std::error::Error::source(err);
    while let Some(error) = cause {
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        let tls = error
            .downcast_ref::<rustls::Error>()
            .or_else(|| inner.and_then(|inner| inner.downcast_ref::<rustls::Error>()));
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) = tls {
            return Some(tls.to_string());
        }
        cause = match inner {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of any number, each under the bound, pass; one line that
    /// never ends, past the bound, fails the stream.
    #[test]
    fn an_event_without_end_fails_the_stream_at_its_bound() {
        let run = |chunks: Vec<Vec<u8>>| {
            let stream = bounded_events(futures::stream::iter(
                chunks.into_iter().map(reqwest::Result::Ok),
            ));
            futures::executor::block_on(stream.collect::<Vec<_>>())
        };
        let event = |n: usize, end: &[u8]| {
            let mut bytes = b"data: ".to_vec();
            bytes.extend(std::iter::repeat_n(b'x', n));
            bytes.extend_from_slice(end);
            bytes
        };
        let many: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                event(
                    MAX_EVENT_BYTES / 2,
                    if i % 2 == 0 { b"\n\n" } else { b"\r\n\r\n" },
                )
            })
            .collect();
        assert!(run(many).iter().all(Result::is_ok));
        // The blank line split across two chunks still ends the event.
        let split = vec![
            event(MAX_EVENT_BYTES / 2, b"\n"),
            b"\n".to_vec(),
            event(MAX_EVENT_BYTES / 2, b"\n\n"),
        ];
        assert!(run(split).iter().all(Result::is_ok));
        let endless: Vec<Vec<u8>> = (0..3).map(|_| event(MAX_EVENT_BYTES / 2, b"\n")).collect();
        let results = run(endless);
        assert!(results[0].is_ok());
        assert_eq!(results[1], Err("an event longer than 1024 KiB".to_string()));
    }

    #[test]
    fn path_segments_cannot_escape_and_are_sent_as_typed() {
        assert_eq!(
            path_segment("req_abc/../../admin?x#y").unwrap(),
            "req_abc%2F..%2F..%2Fadmin%3Fx%23y"
        );
        assert_eq!(path_segment("req_1.2").unwrap(), "req_1.2");
        assert_eq!(path_segment("PD#Q1 é").unwrap(), "PD%23Q1%20%C3%A9");
        for moving in ["", ".", ".."] {
            let err = path_segment(moving).unwrap_err().to_string();
            assert!(err.contains("is not an id or reference"), "{err}");
        }
        // As the URL the request goes to reads it: one segment, unchanged.
        let url = url::Url::parse(&format!(
            "https://broker.example/v1/requests/{}/cancel",
            path_segment("../../v1/admin").unwrap()
        ))
        .unwrap();
        let segments: Vec<_> = url.path_segments().unwrap().collect();
        assert_eq!(
            segments,
            ["v1", "requests", "..%2F..%2Fv1%2Fadmin", "cancel"]
        );
    }

    #[test]
    fn the_brokers_time_comes_from_its_headers() {
        use chrono::TimeDelta;
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(server_time(&headers), None);
        let ahead = Utc::now() + TimeDelta::hours(1);
        headers.insert(SERVER_TIME_HEADER, ahead.to_rfc3339().parse().unwrap());
        assert_eq!(server_time(&headers), Some(ahead));
        // Without the precise header, the standard Date header is used.
        let behind = Utc::now() - TimeDelta::minutes(10);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::DATE, behind.to_rfc2822().parse().unwrap());
        let seen = server_time(&headers).unwrap();
        assert!((seen - behind).num_seconds().abs() <= 1);
    }

    /// A refusal with a code from a newer broker keeps its message.
    #[test]
    fn a_refusal_with_a_code_this_build_does_not_know_keeps_its_message() {
        let body = br#"{"code":"grant_paused","message":"grant gr_1 is paused"}"#;
        assert_eq!(
            refusal(StatusCode::CONFLICT, body),
            BackendError::Refused {
                status: 409,
                code: hoist_api::ErrorCode::Other,
                message: "grant gr_1 is paused".into(),
            }
        );
    }

    /// A proxy's error page for a broker that is away (502, 503, 504, or
    /// its own 429) is a transient failure, retried as such; any other
    /// status without hoist's error body is not hoist talking.
    #[test]
    fn a_proxys_error_page_is_transient() {
        let page = b"<html><body><h1>502 Bad Gateway</h1></body></html>";
        for status in [
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let error = refusal(status, page);
            assert!(error.is_transient(), "{status}: {error:?}");
            assert!(error.to_string().contains(status.as_str()), "{error}");
        }
        let error = refusal(StatusCode::NOT_FOUND, page);
        assert!(!error.is_transient(), "{error:?}");
        assert!(matches!(error, BackendError::Protocol(_)), "{error:?}");
    }

    /// An event of a type from a newer broker neither ends nor fails the
    /// stream: it reads as unknown, and the next event follows.
    #[tokio::test]
    async fn the_event_stream_reads_past_a_type_this_build_does_not_know() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            let body = "event: grant_paused\ndata: {\"type\":\"grant_paused\",\"grant\":{}}\n\n\
                        event: resync\ndata: {\"type\":\"resync\",\"time\":\"2026-01-01T00:00:00Z\"}\n\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let client = HoistdClient::new(&url, "token").unwrap();
        let events: Vec<_> = client.events().await.unwrap().take(2).collect().await;
        assert_eq!(events[0], Ok(LiveEvent::Unknown));
        assert!(
            matches!(events[1], Ok(LiveEvent::Resync { .. })),
            "{:?}",
            events[1]
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let client = HoistdClient::new("http://127.0.0.1:1", "s3cret-token").unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
