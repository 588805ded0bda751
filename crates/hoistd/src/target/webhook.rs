//! Webhook: every other system (Kubernetes RoleBindings, cloud IAM, internal
//! tools) through the operator's own endpoint. hoistd POSTs
//! `{"action": "provision" | "deprovision" | "inspect", "grant": {...}}`,
//! signed as GitHub and Stripe sign theirs: `X-Hoist-Signature: v1=<hex
//! HMAC-SHA256(secret, "<timestamp>.<body>")>`, with `X-Hoist-Timestamp`
//! (Unix seconds) and `X-Hoist-Delivery` (a UUID). The endpoint's 2xx JSON
//! answer decides; no redirect is followed; every call is in the delivery
//! log. The README documents the contract; `assets/webhook-receiver.py` is
//! an example receiver.
//!
//! Shape (as every kind): settings, access, the operations, errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use hoist_api::AccessCredential;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{
    GrantFacts, Journal, Managed, TargetError, TargetKind, duration_setting, secret, settings,
};
use crate::store::Delivery;

pub const DELIVERY_HEADER: &str = "x-hoist-delivery";
pub const TIMESTAMP_HEADER: &str = "x-hoist-timestamp";
pub const SIGNATURE_HEADER: &str = "x-hoist-signature";
/// Largest answer read from an endpoint.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest reason taken from an endpoint's answer into a grant's state.
const MAX_REASON_CHARS: usize = 300;

// ---- settings ------------------------------------------------------------

/// A `[[targets]]` entry of kind `webhook`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// https, or http to a loopback address only.
    url: String,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    /// Longest one call may take, connecting included.
    #[serde(default = "default_timeout")]
    timeout: String,
    /// The variables the endpoint may hand a holder (`inspect`'s
    /// `credential.env`); any other name it sends is left out.
    #[serde(default)]
    env: Vec<String>,
    /// Whether the endpoint's `credential.command` reaches the holder:
    /// people copy it into a shell, so only when the policy says so.
    #[serde(default)]
    command: bool,
    /// Whether the endpoint's `credential.uri` reaches the holder.
    #[serde(default)]
    uri: bool,
}

fn default_timeout() -> String {
    "5s".into()
}

pub struct Webhook {
    name: String,
    /// What `env` declares.
    handed_over: BTreeSet<String>,
    /// Whether `command` and `uri` are handed over.
    command: bool,
    uri: bool,
    endpoint: Endpoint,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("origin", &self.endpoint.origin())
            .field("timeout", &self.endpoint.timeout)
            .finish_non_exhaustive()
    }
}

/// What an endpoint answers: `{"status": "ok"}`, for inspect
/// `{"present": bool}`, and where it hands the holder something,
/// `{"credential": {...}}`.
#[derive(Debug, Deserialize)]
struct Answer {
    status: Option<String>,
    present: Option<bool>,
    message: Option<String>,
    credential: Option<Handover>,
}

#[derive(Debug, Deserialize)]
struct Handover {
    #[serde(default)]
    env: BTreeMap<String, String>,
    uri: Option<String>,
    command: Option<String>,
}

impl Webhook {
    /// Builds the target from its `[[targets]]` settings.
    pub fn configure(name: &str, table: toml::Table) -> Result<Arc<dyn TargetKind>, String> {
        let raw: Settings = settings(name, table)?;
        let url = Endpoint::check_url(&raw.url).map_err(|why| format!("target `{name}`: {why}"))?;
        if let Some((variable, why)) = raw.env.iter().find_map(|variable| {
            hoist_api::handover_variable_refusal(variable).map(|why| (variable, why))
        }) {
            return Err(format!(
                "target `{name}`: env: {variable:?} {why}; no target may hand it over"
            ));
        }
        let secret = secret(
            name,
            "secret",
            raw.secret_env.as_deref(),
            raw.secret_file.as_deref(),
        )?;
        let timeout = duration_setting(name, "timeout", &raw.timeout)?;
        let endpoint = Endpoint::new(url, secret.into_bytes(), timeout)
            .map_err(|why| format!("target `{name}`: {why}"))?;
        Ok(Arc::new(Webhook {
            name: name.to_string(),
            handed_over: raw.env.into_iter().collect(),
            command: raw.command,
            uri: raw.uri,
            endpoint,
        }))
    }

    fn unreachable(&self, why: impl fmt::Display) -> TargetError {
        TargetError::unreachable(&self.name, why)
    }

    fn refused(&self, why: impl fmt::Display) -> TargetError {
        TargetError::refused(&self.name, why)
    }

    /// One signed call, answered as the contract says and as `judge` (what
    /// the action asks of the answer) reads it, or refused with why;
    /// recorded in the delivery log with that outcome.
    async fn call<T>(
        &self,
        action: &str,
        grant: &GrantFacts,
        journal: &Journal,
        judge: impl FnOnce(&Self, Answer) -> Result<T, TargetError>,
    ) -> Result<T, TargetError> {
        // In the signed body as well as its header, so that a receiver can
        // refuse a captured call replayed within the timestamp's window
        // (an `inspect` hands over a credential). The target's name too:
        // one receiver's call replayed to another target sharing its
        // secret is refused there.
        let delivery = uuid::Uuid::new_v4().to_string();
        let body = serde_json::to_vec(&json!({
            "delivery": delivery,
            "target": self.name,
            "action": action,
            "grant": {
                "id": grant.id,
                "role": grant.role,
                "holder": grant.holder,
                "starts_at": grant.starts_at,
                "expires_at": grant.expires_at,
                "access": grant.access,
                "justification": grant.justification,
                "ticket": grant.ticket,
                "incident": grant.incident,
            },
            "issuer": journal.issuer(),
            "leader_epoch": journal.leader_epoch(),
        }))
        .map_err(|err| self.refused(err))?;
        let started = Instant::now();
        let at = super::now();
        let (status, posted) = self.endpoint.post(&delivery, body).await;
        let answer = match posted {
            Ok(answered) => self.read(answered).and_then(|answer| judge(self, answer)),
            Err(PostError::Unreachable(why)) => Err(self.unreachable(why)),
            Err(PostError::Refused(why)) => Err(self.refused(why)),
        };
        journal
            .delivered(Delivery {
                id: delivery,
                target: self.name.clone(),
                action: action.to_string(),
                grant_id: Some(grant.id.clone()),
                status,
                duration_ms: started.elapsed().as_millis() as u64,
                error: answer.as_ref().err().map(ToString::to_string),
                at,
            })
            .await;
        answer
    }

    /// The endpoint's answer as the contract reads it.
    fn read(&self, answered: Answered) -> Result<Answer, TargetError> {
        let Answered { status, body } = answered;
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        let said = answer
            .as_ref()
            .and_then(|a| a.message.as_deref())
            .map(|m| format!(": {}", self.endpoint.scrub(m)))
            .unwrap_or_default();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(self.unreachable(format!("answered {status}{said}")));
        }
        if !status.is_success() {
            return Err(self.refused(format!("answered {status}{said}")));
        }
        answer.ok_or_else(|| {
            self.refused(format!(
                "answered {status} with something other than the JSON the contract asks for"
            ))
        })
    }

    /// What an inspect answered: present or not.
    fn presence(&self, answer: Answer) -> Result<bool, TargetError> {
        answer
            .present
            .ok_or_else(|| self.refused("answered inspect without `\"present\": true` or `false`"))
    }

    /// A provision or deprovision succeeded only if the endpoint says ok.
    fn confirmed(&self, answer: Answer) -> Result<(), TargetError> {
        match answer.status.as_deref() {
            Some("ok") => Ok(()),
            other => {
                let said = answer
                    .message
                    .as_deref()
                    .map(|m| format!(": {}", self.endpoint.scrub(m)))
                    .unwrap_or_default();
                Err(self.refused(match other {
                    Some(status) => {
                        format!("answered status `{}`{said}", self.endpoint.scrub(status))
                    }
                    None => format!("answered without `\"status\": \"ok\"`{said}"),
                }))
            }
        }
    }
}

#[async_trait::async_trait]
impl TargetKind for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    /// The receiver: its origin, and its path and query by digest only
    /// (either may hold a token, and either may route to another
    /// receiver).
    fn system(&self) -> String {
        use sha2::Digest;
        let url = &self.endpoint.url;
        let path =
            Sha256::digest(format!("{}?{}", url.path(), url.query().unwrap_or("")).as_bytes());
        format!(
            "webhook {} (path {})",
            crate::outbound::origin_key(&self.endpoint.url),
            &hex::encode(path)[..12]
        )
    }

    /// Free-form: the endpoint alone knows what it means.
    fn access(&self, table: toml::Table) -> Result<serde_json::Value, String> {
        serde_json::to_value(table).map_err(|err| format!("access: {err}"))
    }

    /// A receiver's access is its own to read: hoist can tell neither a
    /// narrower access from a wider one nor take part of one back. A live
    /// grant keeps what it was given while its role gives the same there,
    /// and ends otherwise.
    fn narrowed_at_target(
        &self,
        given: &serde_json::Value,
        now: Option<&serde_json::Value>,
    ) -> Option<Result<serde_json::Value, String>> {
        Some(match now {
            Some(now) if now == given => Ok(given.clone()),
            Some(_) => Err(format!(
                "its role gives other access at {} now, and a webhook's receiver is not \
                 narrowed",
                self.name
            )),
            None => Err(format!("its role no longer gives access at {}", self.name)),
        })
    }

    /// The endpoint is not asked about roles: nothing to check online.
    async fn validate(&self, _access: &serde_json::Value) -> Result<(), TargetError> {
        Ok(())
    }

    async fn provision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError> {
        self.call("provision", grant, journal, Self::confirmed)
            .await
    }

    async fn deprovision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError> {
        self.call("deprovision", grant, journal, Self::confirmed)
            .await
    }

    async fn inspect(&self, grant: &GrantFacts, journal: &Journal) -> Result<bool, TargetError> {
        self.call("inspect", grant, journal, Self::presence).await
    }

    /// An endpoint cannot be asked what it holds; it answers for the grants
    /// it is asked about.
    async fn managed(&self, _journal: &Journal) -> Result<Option<Vec<Managed>>, TargetError> {
        Ok(None)
    }

    async fn remove(&self, found: &Managed, _journal: &Journal) -> Result<(), TargetError> {
        Err(self.refused(format!(
            "cannot remove `{}`: a webhook target lists nothing",
            found.name
        )))
    }

    /// Whatever the endpoint hands over when asked about the grant now;
    /// nothing is kept between calls.
    async fn credential(
        &self,
        grant: &GrantFacts,
        journal: &Journal,
        _key: Option<&super::ssh::HolderKey>,
    ) -> Result<Option<AccessCredential>, TargetError> {
        let answer = self
            .call("inspect", grant, journal, |webhook, answer| {
                match answer.present {
                    Some(true) => Ok(answer),
                    Some(false) => Err(webhook.refused("says the grant's access is not there")),
                    None => {
                        Err(webhook
                            .refused("answered inspect without `\"present\": true` or `false`"))
                    }
                }
            })
            .await?;
        Ok(answer.credential.map(|mut handover| {
            handover.env.retain(|variable, _| {
                let declared = self.handed_over.contains(variable);
                if !declared {
                    let variable: String = variable
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(64)
                        .collect();
                    tracing::warn!(
                        target_name = %self.name,
                        %variable,
                        "the endpoint handed over a variable the target's `env` does not \
                         declare; left out"
                    );
                }
                declared
            });
            for (what, allowed, sent) in [
                ("command", self.command, &mut handover.command),
                ("uri", self.uri, &mut handover.uri),
            ] {
                if !allowed && sent.take().is_some() {
                    tracing::warn!(
                        target_name = %self.name,
                        "the endpoint handed over a {what} the target does not allow \
                         (`{what} = true`); left out"
                    );
                }
            }
            AccessCredential {
                target: self.name.clone(),
                kind: "webhook".into(),
                env: handover.env,
                uri: handover.uri,
                command: handover.command,
                expires_at: grant.expires_at,
                certificate: None,
            }
        }))
    }
}

// ---- signed posts --------------------------------------------------------

/// Where hoistd POSTs signed JSON: a webhook target's endpoint, or a
/// notification channel's (`notify`). https, or http to a loopback address
/// only; no redirect followed; at most [`MAX_ANSWER_BYTES`] of an answer
/// read. Its `Debug` shows neither the URL nor the secret (a channel's URL
/// is a secret of its own).
pub struct Endpoint {
    url: url::Url,
    secret: Vec<u8>,
    timeout: Duration,
    http: reqwest::Client,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What an endpoint answered.
#[derive(Debug)]
pub struct Answered {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
}

/// Why a post has no answer to read: none came in time (try again), or the
/// one that came is not acceptable whatever it says (a redirect, too long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    Unreachable(String),
    Refused(String),
}

impl Endpoint {
    /// Reads `url` as an endpoint's: https, or http to a loopback address;
    /// no credentials in it. The error says what is wrong without repeating
    /// the URL.
    pub fn check_url(url: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(url).map_err(|err| format!("url: {err}"))?;
        if !crate::outbound::allowed(&url) {
            return Err("url must use https (http only to a loopback address)".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url holds credentials; use secret_env or secret_file".into());
        }
        Ok(url)
    }

    /// An endpoint at a URL [`Endpoint::check_url`] accepted, signing with
    /// `secret`, each call bounded by `timeout`.
    pub fn new(url: url::Url, secret: Vec<u8>, timeout: Duration) -> Result<Self, String> {
        let http = crate::outbound::client_for(&url)
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("hoistd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| err.without_url().to_string())?;
        Ok(Endpoint {
            url,
            secret,
            timeout,
            http,
        })
    }

    /// The endpoint's scheme, host and port, without its path or query:
    /// what may be shown of a URL that is itself a secret.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// `text` an endpoint answered, made fit to show and keep: clipped, and
    /// with the URL's path and query taken out wherever it repeats them (a
    /// receiver's 404 page quoting the path, whose token is the secret).
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        let path = self.url.path();
        let mut secrets: Vec<String> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        if let Some(query) = self.url.query().filter(|q| !q.is_empty()) {
            secrets.push(query.to_string());
            // Each value too, as written and decoded: a receiver may quote
            // one parameter (`token abc… expired`), or the query reordered.
            for pair in query.split('&') {
                let raw = pair.split_once('=').map_or(pair, |(_, value)| value);
                parts.push(raw.to_string());
            }
            parts.extend(self.url.query_pairs().map(|(_, value)| value.into_owned()));
        }
        if path.len() > 1 {
            secrets.push(path.to_string());
            // Each segment too, as a router may quote only its own part.
            parts.extend(path.split('/').map(str::to_string));
        }
        parts.retain(|part| part.len() >= SECRET_PART_CHARS);
        secrets.extend(parts);
        // The longest first, so that a whole is taken out before its parts.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        for secret in secrets {
            text = text.replace(&secret, "…");
        }
        clip(&text)
    }

    /// Where a redirect led, as may be shown: its origin, or "elsewhere on
    /// the same origin" (the path may hold the endpoint's secret).
    fn redirected_to(&self, location: &str) -> String {
        match self.url.join(location) {
            Ok(to) if to.origin() == self.url.origin() => " elsewhere on the same origin".into(),
            Ok(to) => format!(" to {}", to.origin().ascii_serialization()),
            Err(_) => String::new(),
        }
    }

    /// POSTs `body` signed with `X-Hoist-Signature: v1=<hex
    /// HMAC-SHA256(secret, "<timestamp>.<body>")>`, `X-Hoist-Timestamp` and
    /// `X-Hoist-Delivery: delivery`, and reads the answer; with the HTTP
    /// status if one came. Errors never hold the URL.
    pub async fn post(
        &self,
        delivery: &str,
        body: Vec<u8>,
    ) -> (Option<u16>, Result<Answered, PostError>) {
        let timestamp = crate::clock::now().timestamp().to_string();
        let signature = format!("v1={}", sign(&self.secret, &timestamp, &body));
        let result = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, delivery)
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), self.read(response).await)
            }
            Err(err) => (
                None,
                Err(PostError::Unreachable(describe(
                    &err.without_url(),
                    self.timeout,
                ))),
            ),
        }
    }

    async fn read(&self, mut response: reqwest::Response) -> Result<Answered, PostError> {
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.redirected_to(l))
                .unwrap_or_default();
            return Err(PostError::Refused(format!(
                "answered {status} redirecting{to}; redirects are not followed"
            )));
        }
        let body = match super::body_within(&mut response, MAX_ANSWER_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Err(PostError::Refused(format!(
                    "answered {status} with more than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            Err(err) => {
                return Err(PostError::Unreachable(describe(
                    &err.without_url(),
                    self.timeout,
                )));
            }
        };
        Ok(Answered { status, body })
    }
}

/// Hex HMAC-SHA256 over `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Text from an endpoint, made fit to show: bounded, one line, no controls.
/// Parts of an endpoint's URL this long or longer are taken out of what it
/// answers ([`Endpoint::scrub`]); shorter ones (`v=1`, `api`) say nothing
/// secret and would blot out ordinary words.
const SECRET_PART_CHARS: usize = 8;

pub fn clip(text: &str) -> String {
    // Line breaks, Unicode's too, make one line of it; bidi overrides,
    // zero-width characters and stray variation selectors would make what
    // people read differ from what was said.
    let one_line = text.chars().map(|c| match c {
        '\u{2028}' | '\u{2029}' => ' ',
        c if c.is_control() => ' ',
        c => c,
    });
    let mut kept = hoist_api::text::visible_chars(one_line);
    let cleaned: String = kept.by_ref().take(MAX_REASON_CHARS).collect();
    if kept.next().is_some() {
        format!("{cleaned}…")
    } else {
        cleaned
    }
}

fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// A webhook target `name` at `url`, its secret a file in `dir`: for
/// tests of what a target's system decides.
#[cfg(test)]
pub(crate) fn test_hook(dir: &std::path::Path, name: &str, url: &str) -> Arc<dyn TargetKind> {
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cret-s3cret-s3cret").unwrap();
    let table: toml::Table =
        toml::from_str(&format!("url = \"{url}\"\nsecret_file = {secret:?}")).unwrap();
    Webhook::configure(name, table).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature a receiver computes from the headers and the body it
    /// got (RFC 4231's first HMAC-SHA256 case checks the primitive).
    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_dot_body() {
        let key = [0x0b_u8; 20];
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"Hi There");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1780304400.{\"action\":\"inspect\"}");
        assert_eq!(
            sign(b"s3cret", "1780304400", b"{\"action\":\"inspect\"}"),
            hex::encode(mac.finalize().into_bytes())
        );
        assert_ne!(
            sign(b"s3cret", "1780304400", b"{}"),
            sign(b"s3cret", "1780304401", b"{}")
        );
    }

    /// A receiver routed by its query (`?tenant=`) is another system than
    /// the one under another query.
    #[test]
    fn the_query_names_another_receiver() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret-s3cret-s3cret").unwrap();
        let at = |url: &str| {
            let table: toml::Table = toml::from_str(&format!(
                "url = \"{url}\"\nsecret_file = {:?}",
                dir.path().join("secret"),
            ))
            .unwrap();
            Webhook::configure("hook", table).unwrap().system()
        };
        assert_ne!(
            at("https://hooks.example/access?tenant=a"),
            at("https://hooks.example/access?tenant=b")
        );
        assert_eq!(
            at("https://hooks.example/access"),
            at("https://hooks.example/access")
        );
        assert!(!at("https://hooks.example/access?tenant=a").contains("tenant"));
    }

    #[test]
    fn endpoint_text_is_clipped_to_one_line() {
        assert_eq!(clip("a\nb\u{1b}[31m"), "a b [31m");
        assert_eq!(clip("a\u{2028}b\u{202e}c\u{200b}d"), "a bcd");
        assert_eq!(clip("down\u{FE0F} ⚠\u{FE0F}"), "down ⚠\u{FE0F}");
        assert_eq!(clip(&"x".repeat(400)).chars().count(), MAX_REASON_CHARS + 1);
    }

    /// A channel's URL is a secret (its path or query holds the token): a
    /// redirect is reported by its origin, and an answer quoting the path
    /// keeps it out of what is stored and logged.
    #[tokio::test]
    async fn what_an_endpoint_answers_never_repeats_its_path() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 301 Moved Permanently\r\nlocation: /hooks/T0KEN-s3cr3t-42/?sig=SIGSECRET\r\n\
                 content-length: 0\r\n\r\n",
                "HTTP/1.1 404 Not Found\r\ncontent-length: 42\r\n\r\n\
                 Cannot POST /hooks/T0KEN-s3cr3t-42?sig=SIG",
            ] {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut request = [0; 4096];
                let _ = conn.read(&mut request).await;
                conn.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let url = Endpoint::check_url(&format!(
            "http://127.0.0.1:{port}/hooks/T0KEN-s3cr3t-42?sig=SIG"
        ))
        .unwrap();
        let endpoint = Endpoint::new(url, b"k".to_vec(), Duration::from_secs(5)).unwrap();
        let (_, redirected) = endpoint.post("d1", b"{}".to_vec()).await;
        let Err(PostError::Refused(why)) = redirected else {
            panic!("{redirected:?}");
        };
        assert!(why.contains("elsewhere on the same origin"), "{why}");
        let (_, missing) = endpoint.post("d2", b"{}".to_vec()).await;
        let said = String::from_utf8_lossy(&missing.unwrap().body).to_string();
        let shown = endpoint.scrub(&said);
        assert!(shown.starts_with("Cannot POST"), "{shown}");
        for text in [why, shown] {
            assert!(!text.contains("T0KEN") && !text.contains("SIG"), "{text}");
        }
    }

    /// A secret in the query is taken out of an answer however the
    /// receiver quotes it: alone, decoded, or the query reordered.
    #[test]
    fn an_answer_quoting_one_query_value_has_it_taken_out() {
        let url = Endpoint::check_url(
            "https://flows.example.com/workflows/run?api-version=1&sig=Zm9v%2Bc2VjcmV0&sv=1.0",
        )
        .unwrap();
        let endpoint = Endpoint::new(url, b"k".to_vec(), Duration::from_secs(5)).unwrap();
        for said in [
            "signature Zm9v%2Bc2VjcmV0 expired",
            "signature Zm9v+c2VjcmV0 expired",
            "bad request sv=1.0&sig=Zm9v%2Bc2VjcmV0&api-version=1",
        ] {
            let shown = endpoint.scrub(said);
            assert!(!shown.contains("c2VjcmV0"), "{said}: {shown}");
        }
        assert_eq!(
            endpoint.scrub("api-version 1 is retired"),
            "api-version 1 is retired",
            "short values are ordinary words"
        );
    }
}
