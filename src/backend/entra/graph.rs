//! Microsoft Graph over HTTP: JSON calls with the bearer token, paging that
//! never leaves Graph's origin, Graph's clock from every answer, and
//! failures kept as Graph worded them for [`super::errors`] to translate.
//!
//! As for hoistd, only `https://` roots are accepted, or plain `http://` to
//! loopback ([`crate::endpoint`]), and redirects are never followed.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::model::{ErrorBody, Page};
use crate::backend::ServerClock;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Times a call Graph throttles (or, for a read, is briefly unavailable)
/// is made again, each after the `Retry-After` it asked for.
const THROTTLED_RETRIES: u32 = 3;
/// The longest wait honoured between two tries; a longer `Retry-After`
/// fails the call, saying Graph is throttling.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The longest Graph's `Retry-After` holds every call back.
const LONGEST_THROTTLE: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// More pages than any person's PIM objects fill; past it Graph is looping.
const MAX_PAGES: usize = 50;

/// Which Graph API version a call goes to. Beta only where v1.0 has
/// nothing: deciding approvals of directory role activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    Beta,
}

impl Version {
    fn segment(self) -> &'static str {
        match self {
            Version::V1 => "v1.0",
            Version::Beta => "beta",
        }
    }
}

/// A call that did not succeed, before it is put in hoist's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    Unreachable(String),
    /// Graph answered with an error: its status, code and message.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    Protocol(String),
}

/// One exchange with Graph, for `hoist debug record`, as it went over the
/// wire: headers included, the authorization header too. Whoever keeps an
/// exchange must scrub it first ([`super::record`] does).
#[derive(Clone)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request: Option<serde_json::Value>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response: Option<serde_json::Value>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the headers: one of them is the token.
        f.debug_struct("Exchange")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("status", &self.status)
            .finish()
    }
}

fn header_list(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Receives every exchange, when recording is on.
pub type Recorder = Arc<dyn Fn(Exchange) + Send + Sync>;

#[derive(Clone)]
pub struct Graph {
    root: Url,
    token: Arc<RwLock<Arc<str>>>,
    http: reqwest::Client,
    clock: Arc<ServerClock>,
    recorder: Option<Recorder>,
    /// Until when Graph asked every call to wait, when it asked for longer
    /// than a call waits by itself ([`LONGEST_RETRY_AFTER`]): calls before
    /// then are answered 429 here, without reaching Graph, which keeps
    /// counting calls made while it throttles and would throttle longer.
    throttled_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// Calls that may have changed something (any but a GET) that ended,
    /// however: what was read before one may be out of date.
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Graph")
            .field("root", &self.root.as_str())
            .finish()
    }
}

/// Graph's time in an answer, from its `Date` header.
fn server_time(headers: &reqwest::header::HeaderMap) -> Option<DateTime<Utc>> {
    headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Counts one more write of Graph's when dropped.
struct Counted<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Graph {
    pub fn new(root: &str, token: &str) -> Result<Graph, crate::endpoint::UnusableUrl> {
        let root = crate::endpoint::check(root)?;
        let http = crate::endpoint::client_for(&root)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| crate::endpoint::UnusableUrl {
                url: root.to_string(),
                reason: format!("no HTTP client for it: {err}"),
            })?;
        Ok(Graph {
            root,
            token: Arc::new(RwLock::new(Arc::from(token))),
            http,
            clock: Arc::new(ServerClock::default()),
            recorder: None,
            throttled_until: Arc::default(),
            writes: Arc::default(),
        })
    }

    /// How many calls that may have changed something have ended so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn root(&self) -> &str {
        self.root.as_str().trim_end_matches('/')
    }

    pub fn clock(&self) -> Arc<ServerClock> {
        Arc::clone(&self.clock)
    }

    pub fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(token);
    }

    pub fn record_with(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// The URL of `path` (which starts with `/` and may carry a query) under a version.
    pub fn url(&self, version: Version, path: &str) -> String {
        format!("{}/{}{path}", self.root(), version.segment())
    }

    /// A next page must stay on Graph's own origin: the token goes with it.
    fn same_origin(&self, link: &str) -> bool {
        Url::parse(link).is_ok_and(|url| url.origin() == self.root.origin())
    }

    /// One call, made again when Graph throttles it (429; for a read,
    /// also 503 and 504), after the `Retry-After` it names or a doubling
    /// wait: a write Graph throttled was not made, a read may be repeated.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, GraphError> {
        // Counted when the call ends, answered or dropped: a write dropped
        // half-way may have reached Graph.
        let _counted = (method != Method::GET).then(|| Counted(&self.writes));
        self.call_until_answered(method, url, body).await
    }

    async fn call_until_answered(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, GraphError> {
        let mut tries = 0;
        loop {
            let until = *self
                .throttled_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(until) = until.filter(|until| *until > tokio::time::Instant::now()) {
                let left = until - tokio::time::Instant::now();
                return Err(GraphError::Status {
                    status: 429,
                    code: "TooManyRequests".into(),
                    message: format!("Graph asked to wait {}s more", left.as_secs() + 1),
                });
            }
            let mut retry_after = None;
            let answer = self
                .try_call(method.clone(), url, body.clone(), &mut retry_after)
                .await;
            let retryable = match &answer {
                Err(GraphError::Status { status: 429, .. }) => true,
                Err(GraphError::Status {
                    status: 503 | 504, ..
                }) => method == Method::GET,
                _ => false,
            };
            let wait = retry_after.unwrap_or(Duration::from_secs(1 << tries));
            let throttled = matches!(&answer, Err(GraphError::Status { status: 429, .. }));
            if throttled && wait > LONGEST_RETRY_AFTER {
                // Held to a bound: a Retry-After of years would stop this
                // client for good.
                let until = tokio::time::Instant::now()
                    .checked_add(wait.min(LONGEST_THROTTLE))
                    .unwrap_or_else(tokio::time::Instant::now);
                *self
                    .throttled_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(until);
            }
            if !retryable || tries >= THROTTLED_RETRIES || wait > LONGEST_RETRY_AFTER {
                return answer;
            }
            tries += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// One try of [`Self::call`]; sets `retry_after` to what Graph asked.
    async fn try_call(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
        retry_after: &mut Option<Duration>,
    ) -> Result<Option<serde_json::Value>, GraphError> {
        let token = Arc::clone(&self.token.read().unwrap_or_else(|p| p.into_inner()));
        let mut builder = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&*token)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(CALL_TIMEOUT);
        if let Some(body) = &body {
            builder = builder.json(body);
        }
        let request = builder
            .build()
            .map_err(|err| GraphError::Protocol(err.without_url().to_string()))?;
        let request_headers = self
            .recorder
            .as_ref()
            .map(|_| header_list(request.headers()))
            .unwrap_or_default();
        let response = self.http.execute(request).await.map_err(|err| {
            GraphError::Unreachable(if err.is_timeout() {
                "timed out".into()
            } else if err.is_connect() {
                "connection refused or failed".into()
            } else {
                err.without_url().to_string()
            })
        })?;
        if let Some(at) = server_time(response.headers()) {
            self.clock.observe(at);
        }
        // Seconds, as Graph sends it.
        *retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let status = response.status();
        let response_headers = self
            .recorder
            .as_ref()
            .map(|_| header_list(response.headers()))
            .unwrap_or_default();
        let bytes = crate::endpoint::body(response)
            .await
            .map_err(|err| match err {
                crate::endpoint::BodyError::Read(err) => {
                    GraphError::Unreachable(err.without_url().to_string())
                }
                too_large => GraphError::Protocol(too_large.to_string()),
            })?;
        let parsed: Option<serde_json::Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if let Some(record) = &self.recorder {
            record(Exchange {
                method: method.to_string(),
                url: url.to_string(),
                request_headers,
                request: body,
                status: status.as_u16(),
                response_headers,
                response: parsed.clone(),
            });
        }
        if status.is_redirection() {
            return Err(GraphError::Protocol(format!(
                "Graph answered with a redirect ({status}); hoist never follows redirects, check the profile's graph URL"
            )));
        }
        if status.is_success() {
            if !bytes.is_empty() && parsed.is_none() {
                return Err(GraphError::Protocol(format!(
                    "{status} with a body that is not JSON"
                )));
            }
            return Ok(parsed);
        }
        let failure = parsed
            .and_then(|value| serde_json::from_value::<ErrorBody>(value).ok())
            .map(|body| (body.error.code, body.error.message));
        let (code, message) = failure.unwrap_or_else(|| {
            (
                String::new(),
                match status {
                    StatusCode::UNAUTHORIZED => "Graph refused the token".to_string(),
                    other => format!("{other} without an error body"),
                },
            )
        });
        Err(GraphError::Status {
            status: status.as_u16(),
            code,
            message,
        })
    }

    fn decode<T: DeserializeOwned>(value: Option<serde_json::Value>) -> Result<T, GraphError> {
        let value = value.ok_or_else(|| GraphError::Protocol("an empty answer".into()))?;
        serde_json::from_value(value).map_err(|err| GraphError::Protocol(err.to_string()))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        version: Version,
        path: &str,
    ) -> Result<T, GraphError> {
        Self::decode(
            self.call(Method::GET, &self.url(version, path), None)
                .await?,
        )
    }

    /// Every item of a collection, following `@odata.nextLink`.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        version: Version,
        path: &str,
    ) -> Result<Vec<T>, GraphError> {
        let mut url = self.url(version, path);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page<T> = Self::decode(self.call(Method::GET, &url, None).await?)?;
            items.extend(page.value);
            match page.next_link {
                None => return Ok(items),
                Some(next) if self.same_origin(&next) => url = next,
                Some(next) => {
                    return Err(GraphError::Protocol(format!(
                        "a next page at `{next}`, outside {}; not followed",
                        self.root()
                    )));
                }
            }
        }
        Err(GraphError::Protocol(format!(
            "more than {MAX_PAGES} pages at {path}"
        )))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        version: Version,
        path: &str,
        body: &B,
    ) -> Result<T, GraphError> {
        let body = serde_json::to_value(body).map_err(|e| GraphError::Protocol(e.to_string()))?;
        Self::decode(
            self.call(Method::POST, &self.url(version, path), Some(body))
                .await?,
        )
    }

    /// A POST that answers nothing (`204`), such as `cancel`.
    pub async fn post_action(&self, version: Version, path: &str) -> Result<(), GraphError> {
        self.call(Method::POST, &self.url(version, path), None)
            .await
            .map(|_| ())
    }

    pub async fn patch<B: Serialize>(
        &self,
        version: Version,
        path: &str,
        body: &B,
    ) -> Result<(), GraphError> {
        let body = serde_json::to_value(body).map_err(|e| GraphError::Protocol(e.to_string()))?;
        self.call(Method::PATCH, &self.url(version, path), Some(body))
            .await
            .map(|_| ())
    }
}

/// An OData string literal inside a query: quotes doubled, then the whole
/// value percent-encoded as a query component.
pub fn odata_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes a query value the way Graph reads it (spaces as `%20`).
pub fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'\''
            | b'('
            | b')'
            | b','
            | b'/'
            | b'$'
            | b'='
            | b';' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_pages_stay_on_graph() {
        let graph = Graph::new("https://graph.microsoft.com", "t").unwrap();
        assert!(graph.same_origin("https://graph.microsoft.com/v1.0/x?$skiptoken=1"));
        assert!(!graph.same_origin("https://graph.evil.example/v1.0/x"));
        assert!(!graph.same_origin("http://graph.microsoft.com/v1.0/x"));
        assert_eq!(
            graph.url(Version::Beta, "/me"),
            "https://graph.microsoft.com/beta/me"
        );
    }

    #[test]
    fn query_values_are_encoded_as_graph_reads_them() {
        assert_eq!(
            query_value(&format!("scopeId eq {} and x", odata_literal("it's"))),
            "scopeId%20eq%20'it''s'%20and%20x"
        );
        assert_eq!(query_value("a&b#c"), "a%26b%23c");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let graph = Graph::new("https://graph.microsoft.com", "s3cret").unwrap();
        assert!(!format!("{graph:?}").contains("s3cret"));
    }

    #[test]
    fn only_https_or_loopback() {
        assert!(Graph::new("http://graph.microsoft.com", "t").is_err());
        assert!(Graph::new("http://127.0.0.1:1", "t").is_ok());
    }
}
