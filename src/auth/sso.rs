//! Single sign-on through the broker's OpenID provider, on the `oauth2`
//! crate: the device authorization grant (RFC 8628) by default, the
//! authorization code grant with PKCE and a loopback redirect (RFC 8252) on
//! request, refresh before expiry, and revocation at sign-out.
//!
//! The bearer sent to the broker is the provider's ID token: it is a JWT the
//! broker can verify against the provider's keys, with `aud` = our client id.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hoist_api::AuthIssuer;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationUrl, EndpointNotSet,
    ExtraTokenFields, PkceCodeChallenge, RedirectUrl, RefreshToken, Scope,
    StandardDeviceAuthorizationResponse, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::auth::secrets::Session;

/// How long the device flow waits for the person to approve, at most.
const DEVICE_WAIT: Duration = Duration::from_secs(600);
/// How long the browser flow waits for the redirect back.
const BROWSER_WAIT: Duration = Duration::from_secs(300);

/// How long any one call to the provider may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// What an authorization request adds to have the person sign in at the
/// provider now, whatever session they have there: the ID token's
/// `auth_time` is then this sign-in's.
const FRESH: &[(&str, &str)] = &[("max_age", "0"), ("prompt", "login")];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoError {
    #[error(
        "the broker offers no single sign-on; sign in with a token it issued (`login --with-token`)"
    )]
    NotOffered,
    #[error("the broker does not allow the {0} flow")]
    FlowNotAllowed(&'static str),
    #[error("cannot read the provider's discovery document at {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("the provider has no {0} endpoint")]
    MissingEndpoint(&'static str),
    #[error("sign-in failed: {0}")]
    Failed(String),
    /// The provider answered a refresh with `invalid_grant`: the refresh
    /// token is spent, revoked or expired, and the session over. Only this
    /// says so; any other failure may be a proxy's or this machine's.
    #[error("sign-in failed: {0}")]
    RefreshRefused(String),
    #[error("the provider returned no ID token; is `openid` among the scopes?")]
    NoIdToken,
    /// A refresh answered without an ID token, though asked again for the
    /// scopes granted: the session cannot be renewed. The provider may
    /// have handed back a new refresh token, which replaces the one spent.
    #[error("the provider renewed the session without an ID token, even when asked for `openid`")]
    RefreshedWithoutIdToken {
        rotated: Option<RotatedToken>,
        /// Why asking again failed, if the provider could not be reached:
        /// the session may renew once it can.
        away: Option<Box<SsoError>>,
    },
    #[error("sign-in was not completed in time")]
    TimedOut,
    #[error("the sign-in response did not come from this sign-in (state mismatch)")]
    StateMismatch,
    #[error("the provider's ID token was not issued for this sign-in (nonce mismatch)")]
    NonceMismatch,
    /// The provider could not be reached, or answered "not now" (a 5xx, a
    /// 429): the same call may work in a moment.
    #[error("cannot reach the identity provider at {url}: {reason}; try again")]
    Unreachable { url: String, reason: String },
}

/// A refresh token the provider handed back in place of the one spent;
/// never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct RotatedToken(pub String);

impl std::fmt::Debug for RotatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotatedToken(<redacted>)")
    }
}

/// Which token of a sign-in the broker takes as its bearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    /// hoistd verifies the provider's ID token itself.
    IdToken,
    /// Microsoft Graph takes the access token issued for it.
    AccessToken,
}

/// The endpoints of an OpenID provider, from its discovery document.
#[derive(Debug, Clone)]
pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub flows: Vec<String>,
    pub bearer: Bearer,
    token_endpoint: String,
    authorization_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: String,
    authorization_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

impl Discovery {
    /// Every endpoint the document names, checked like any URL hoist talks
    /// to: codes and refresh tokens go to them, so none may be plain http
    /// beyond loopback, whatever the issuer's own URL is.
    fn check_endpoints(&self) -> Result<(), String> {
        let named = [
            ("token endpoint", Some(&self.token_endpoint)),
            (
                "authorization endpoint",
                self.authorization_endpoint.as_ref(),
            ),
            (
                "device authorization endpoint",
                self.device_authorization_endpoint.as_ref(),
            ),
            ("revocation endpoint", self.revocation_endpoint.as_ref()),
        ];
        for (what, url) in named {
            if let Some(url) = url {
                crate::endpoint::check(url).map_err(|refused| format!("its {what} {refused}"))?;
            }
        }
        Ok(())
    }
}

/// What the person must do to approve a device sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenFields {}

type Tokens = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type OauthClient = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// The discovery document at `url`, read up to
/// [`crate::endpoint::MAX_BODY`] like every answer.
async fn discovery_document(url: &str) -> Result<Discovery, SsoError> {
    let bad = |reason: String| SsoError::Discovery {
        url: url.to_string(),
        reason,
    };
    let away = |reason: String| SsoError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let response = http(url)?
        .get(url)
        .send()
        .await
        .map_err(|err| away(err.without_url().to_string()))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(away(format!("it answered {status}")));
    }
    let response = response
        .error_for_status()
        .map_err(|err| bad(err.without_url().to_string()))?;
    let bytes = crate::endpoint::body(response)
        .await
        .map_err(|err| match err {
            crate::endpoint::BodyError::Read(err) => away(err.without_url().to_string()),
            too_large => bad(too_large.to_string()),
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|err| bad(format!("it is not a discovery document: {err}")))
}

/// The HTTP client for the provider's endpoint `url`: never follows
/// redirects (the oauth2 crate's advice against SSRF), no proxy to a
/// loopback provider, rustls, bounded time.
fn http(url: &str) -> Result<reqwest::Client, SsoError> {
    crate::endpoint::client_for_text(url)
        .timeout(PROVIDER_TIMEOUT)
        .build()
        .map_err(|err| SsoError::Failed(format!("no HTTP client for {url}: {err}")))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

type HttpFuture = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send>>;

/// Adapts our reqwest to the oauth2 crate's HTTP client interface.
fn transport(client: reqwest::Client) -> impl Fn(oauth2::HttpRequest) -> HttpFuture {
    move |request: oauth2::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|err| HttpError(err.without_url().to_string()))?;
            // A provider (or the proxy before it) too busy to answer is
            // away, like one that does not answer: not a refusal.
            let status = response.status();
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(HttpError(format!("the provider answered {status}")));
            }
            let mut builder = http_response(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = crate::endpoint::body(response)
                .await
                .map_err(|err| HttpError(err.to_string()))?;
            builder.body(body).map_err(|err| HttpError(err.to_string()))
        }) as HttpFuture
    }
}

/// `http`, keeping in `away` why its last call failed (none when it
/// succeeded).
fn watched(
    http: impl Fn(oauth2::HttpRequest) -> HttpFuture,
    away: Arc<Mutex<Option<String>>>,
) -> impl Fn(oauth2::HttpRequest) -> HttpFuture {
    move |request: oauth2::HttpRequest| {
        let answer = http(request);
        let away = Arc::clone(&away);
        Box::pin(async move {
            let answer = answer.await;
            *away.lock().unwrap_or_else(PoisonError::into_inner) =
                answer.as_ref().err().map(ToString::to_string);
            answer
        }) as HttpFuture
    }
}

fn http_response(status: reqwest::StatusCode) -> oauth2::http::response::Builder {
    oauth2::http::Response::builder().status(status.as_u16())
}

fn fail(err: impl std::fmt::Display) -> SsoError {
    SsoError::Failed(err.to_string())
}

/// Reads the provider's discovery document.
pub async fn discover(issuer: &AuthIssuer) -> Result<Provider, SsoError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.issuer.trim_end_matches('/')
    );
    let bad = |reason: String| SsoError::Discovery {
        url: url.clone(),
        reason,
    };
    crate::endpoint::check(&issuer.issuer).map_err(|refused| bad(refused.reason))?;
    let document = discovery_document(&url).await?;
    if document.issuer.trim_end_matches('/') != issuer.issuer.trim_end_matches('/') {
        return Err(bad(format!("it names issuer `{}`", document.issuer)));
    }
    document.check_endpoints().map_err(bad)?;
    Ok(Provider {
        issuer: issuer.issuer.clone(),
        client_id: issuer.client_id.clone(),
        scopes: issuer.scopes.clone(),
        flows: issuer.flows.clone(),
        bearer: Bearer::IdToken,
        token_endpoint: document.token_endpoint,
        authorization_endpoint: document.authorization_endpoint,
        device_authorization_endpoint: document.device_authorization_endpoint,
        revocation_endpoint: document.revocation_endpoint,
    })
}

/// Reads the discovery document at `metadata`, for a provider whose issuer
/// names the tenant its own way (Entra names it by id even when the URL
/// names a domain): the issuer must share `authority`'s origin, and every
/// endpoint is checked like any other URL hoist talks to.
pub async fn discover_at(
    metadata: &str,
    authority: &str,
    client_id: &str,
    scopes: Vec<String>,
    bearer: Bearer,
) -> Result<Provider, SsoError> {
    let bad = |reason: String| SsoError::Discovery {
        url: metadata.to_string(),
        reason,
    };
    let authority = crate::endpoint::check(authority).map_err(|refused| bad(refused.reason))?;
    crate::endpoint::check(metadata).map_err(|refused| bad(refused.reason))?;
    let document = discovery_document(metadata).await?;
    let same_origin =
        |url: &str| crate::endpoint::check(url).is_ok_and(|url| url.origin() == authority.origin());
    if !same_origin(&document.issuer) {
        return Err(bad(format!("it names issuer `{}`", document.issuer)));
    }
    if !same_origin(&document.token_endpoint) {
        return Err(bad(format!(
            "its token endpoint `{}` is elsewhere",
            document.token_endpoint
        )));
    }
    document.check_endpoints().map_err(bad)?;
    Ok(Provider {
        issuer: document.issuer,
        client_id: client_id.to_string(),
        scopes,
        flows: vec!["device".into(), "browser".into()],
        bearer,
        token_endpoint: document.token_endpoint,
        authorization_endpoint: document.authorization_endpoint,
        device_authorization_endpoint: document.device_authorization_endpoint,
        revocation_endpoint: document.revocation_endpoint,
    })
}

impl Provider {
    fn client(&self) -> OauthClient {
        oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_auth_type(oauth2::AuthType::RequestBody)
    }

    fn token_url(&self) -> Result<TokenUrl, SsoError> {
        TokenUrl::new(self.token_endpoint.clone()).map_err(fail)
    }

    fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scopes.iter().cloned().map(Scope::new)
    }

    /// Signs in with the device authorization grant. `prompt` is called once
    /// with what the person must open and type; polling then honours the
    /// provider's interval and `slow_down`.
    pub async fn sign_in_device(
        &self,
        prompt: impl FnOnce(&DevicePrompt),
    ) -> Result<Session, SsoError> {
        self.sign_in_device_with(prompt, None).await
    }

    /// The device flow, asking for `claims` (an OpenID Connect claims
    /// request, such as an authentication context a resource demands).
    pub async fn sign_in_device_with(
        &self,
        prompt: impl FnOnce(&DevicePrompt),
        claims: Option<&str>,
    ) -> Result<Session, SsoError> {
        let claims = claims.map(|claims| ("claims", claims));
        self.sign_in_device_asking(prompt, claims.as_slice()).await
    }

    /// The device flow with the person made to sign in at the provider
    /// now, whatever session they have there (`max_age=0`,
    /// `prompt=login`): the ID token's `auth_time` is this sign-in's, which
    /// a role's step-up asks for.
    pub async fn sign_in_device_fresh(
        &self,
        prompt: impl FnOnce(&DevicePrompt),
    ) -> Result<Session, SsoError> {
        self.sign_in_device_asking(prompt, FRESH).await
    }

    /// The device flow with `extra` parameters in its authorization request.
    async fn sign_in_device_asking(
        &self,
        prompt: impl FnOnce(&DevicePrompt),
        extra: &[(&str, &str)],
    ) -> Result<Session, SsoError> {
        if !self.flows.iter().any(|f| f == "device") {
            return Err(SsoError::FlowNotAllowed("device"));
        }
        let endpoint = self
            .device_authorization_endpoint
            .clone()
            .ok_or(SsoError::MissingEndpoint("device authorization"))?;
        // Each endpoint's own client: a proxy, or none for a loopback one.
        let asking = transport(http(&endpoint)?);
        let endpoint_url = endpoint.clone();
        let client = self
            .client()
            .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint).map_err(fail)?)
            .set_token_uri(self.token_url()?);
        let http = transport(http(&self.token_endpoint)?);
        let mut request = client.exchange_device_code().add_scopes(self.scopes());
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let details: StandardDeviceAuthorizationResponse = request
            .request_async(&asking)
            .await
            .map_err(|err| match err {
                oauth2::RequestTokenError::Request(away) => SsoError::Unreachable {
                    url: endpoint_url.clone(),
                    reason: away.to_string(),
                },
                other => fail(describe(&other)),
            })?;
        prompt(&DevicePrompt {
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|u| u.secret().to_string()),
            user_code: details.user_code().secret().to_string(),
            expires_in: details.expires_in(),
        });
        // A poll the provider does not answer, or answers 5xx or 429, is
        // tried again with a longer wait (RFC 8628, section 3.5); if the
        // code then runs out with the provider still away, that is what
        // the person is told, not that they were too slow.
        let away: Arc<Mutex<Option<String>>> = Arc::default();
        // No longer than the code lives: polling on is for nothing.
        let wait = DEVICE_WAIT.min(details.expires_in());
        let polls = watched(http, Arc::clone(&away));
        let tokens = client
            .exchange_device_access_token(&details)
            .request_async(&polls, tokio::time::sleep, Some(wait))
            .await
            .map_err(|err| match err {
                oauth2::RequestTokenError::ServerResponse(response)
                    if matches!(
                        response.error(),
                        oauth2::DeviceCodeErrorResponseType::ExpiredToken
                    ) =>
                {
                    match away.lock().unwrap_or_else(PoisonError::into_inner).take() {
                        Some(reason) => SsoError::Unreachable {
                            url: self.token_endpoint.clone(),
                            reason,
                        },
                        None => SsoError::TimedOut,
                    }
                }
                other => fail(describe(&other)),
            })?;
        self.session(&tokens, None)
    }

    /// Signs in with the authorization code grant and PKCE: `open` is called
    /// with the URL to visit; the provider redirects back to a listener on a
    /// loopback port.
    pub async fn sign_in_browser(&self, open: impl FnOnce(&str)) -> Result<Session, SsoError> {
        self.sign_in_browser_with(open, None).await
    }

    /// The browser flow, asking for `claims` as [`Provider::sign_in_device_with`] does.
    pub async fn sign_in_browser_with(
        &self,
        open: impl FnOnce(&str),
        claims: Option<&str>,
    ) -> Result<Session, SsoError> {
        let claims = claims.map(|claims| ("claims", claims));
        self.sign_in_browser_asking(open, claims.as_slice()).await
    }

    /// The browser flow with the person made to sign in at the provider
    /// now, as [`Provider::sign_in_device_fresh`].
    pub async fn sign_in_browser_fresh(
        &self,
        open: impl FnOnce(&str),
    ) -> Result<Session, SsoError> {
        self.sign_in_browser_asking(open, FRESH).await
    }

    /// The browser flow with `extra` parameters in its authorization request.
    async fn sign_in_browser_asking(
        &self,
        open: impl FnOnce(&str),
        extra: &[(&str, &str)],
    ) -> Result<Session, SsoError> {
        if !self.flows.iter().any(|f| f == "browser") {
            return Err(SsoError::FlowNotAllowed("browser"));
        }
        let endpoint = self
            .authorization_endpoint
            .clone()
            .ok_or(SsoError::MissingEndpoint("authorization"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(fail)?;
        let port = listener.local_addr().map_err(fail)?.port();
        let client = self
            .client()
            .set_auth_uri(AuthUrl::new(endpoint).map_err(fail)?)
            .set_token_uri(self.token_url()?)
            .set_redirect_uri(
                RedirectUrl::new(format!("http://127.0.0.1:{port}/callback")).map_err(fail)?,
            );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // Binds the ID token to this sign-in: one issued for another
        // authorization, its code slipped into this redirect, is refused.
        let nonce = CsrfToken::new_random();
        let mut authorize = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes())
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.secret());
        for (name, value) in extra {
            authorize = authorize.add_extra_param(*name, *value);
        }
        let (url, state) = authorize.url();
        let callback = tokio::spawn(receive_callback(listener, state.secret().clone()));
        open(url.as_str());
        let (code, returned_state) = tokio::time::timeout(BROWSER_WAIT, callback)
            .await
            .map_err(|_| SsoError::TimedOut)?
            .map_err(fail)??;
        if returned_state != *state.secret() {
            return Err(SsoError::StateMismatch);
        }
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&transport(http(&self.token_endpoint)?))
            .await
            .map_err(|err| fail(describe(&err)))?;
        if let Some(id_token) = &tokens.extra_fields().id_token
            && !carries_nonce(id_token, nonce.secret())
        {
            return Err(SsoError::NonceMismatch);
        }
        self.session(&tokens, None)
    }

    /// A fresh session from a refresh token; the provider may rotate it.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, SsoError> {
        // An access token is for a resource, which Entra learns from the
        // scopes: without them a refresh would not say which.
        let scopes = (self.bearer == Bearer::AccessToken).then(|| self.scopes.clone());
        let tokens = self.exchange_refresh(refresh_token, scopes).await?;
        match self.session(&tokens, Some(refresh_token)) {
            Err(SsoError::NoIdToken) => {}
            session => return session,
        }
        // OpenID Connect lets a refresh answer without an ID token (Core,
        // section 12.2); some providers give one only when the refresh
        // names `openid`. Asked once more, naming the scopes granted, with
        // the refresh token handed back: the spent one may be dead by now.
        let rotated = tokens.refresh_token().map(|t| t.secret().clone());
        let spendable = rotated.clone().unwrap_or_else(|| refresh_token.to_string());
        let mut scopes: Vec<String> = match tokens.scopes() {
            Some(granted) => granted.iter().map(|s| s.to_string()).collect(),
            None => self.scopes.clone(),
        };
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_string());
        }
        let again = self.exchange_refresh(&spendable, Some(scopes)).await;
        let latest = again
            .as_ref()
            .ok()
            .and_then(|t| t.refresh_token())
            .map(|t| t.secret().clone())
            .or(rotated);
        match again.and_then(|tokens| self.session(&tokens, Some(&spendable))) {
            Ok(session) => Ok(session),
            Err(err) => Err(SsoError::RefreshedWithoutIdToken {
                rotated: latest.map(RotatedToken),
                away: matches!(err, SsoError::Unreachable { .. }).then(|| Box::new(err)),
            }),
        }
    }

    /// One refresh token grant at the token endpoint.
    async fn exchange_refresh(
        &self,
        refresh_token: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<Tokens, SsoError> {
        let client = self.client().set_token_uri(self.token_url()?);
        let refresh = RefreshToken::new(refresh_token.to_string());
        let mut request = client.exchange_refresh_token(&refresh);
        if let Some(scopes) = scopes {
            request = request.add_scopes(scopes.into_iter().map(Scope::new));
        }
        request
            .request_async(&transport(http(&self.token_endpoint)?))
            .await
            .map_err(|err| match err {
                // Not an answer: the provider is away, not the session over.
                oauth2::RequestTokenError::Request(err) => SsoError::Unreachable {
                    url: self.token_endpoint.clone(),
                    reason: err.to_string(),
                },
                oauth2::RequestTokenError::ServerResponse(response)
                    if *response.error() == oauth2::basic::BasicErrorResponseType::InvalidGrant =>
                {
                    SsoError::RefreshRefused(response.to_string())
                }
                err => fail(describe(&err)),
            })
    }

    /// Revokes a refresh token where the provider supports it (RFC 7009).
    /// One form POST, sent directly: the oauth2 crate refuses plain http even
    /// to a loopback provider, which our URL rules allow.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool, SsoError> {
        let Some(endpoint) = self.revocation_endpoint.clone() else {
            return Ok(false);
        };
        crate::endpoint::check(&endpoint).map_err(fail)?;
        let response = http(&endpoint)?
            .post(&endpoint)
            .form(&[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
                ("client_id", self.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|err| fail(err.without_url()))?;
        match response.status() {
            status if status.is_success() => Ok(true),
            status => Err(SsoError::Failed(format!(
                "the provider answered {status} to the revocation"
            ))),
        }
    }

    fn session(
        &self,
        tokens: &Tokens,
        previous_refresh: Option<&str>,
    ) -> Result<Session, SsoError> {
        let by_lifetime = || {
            tokens
                .expires_in()
                .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                .and_then(|d| Utc::now().checked_add_signed(d))
        };
        let (bearer, expires_at) = match self.bearer {
            Bearer::IdToken => {
                let id_token = tokens
                    .extra_fields()
                    .id_token
                    .clone()
                    .ok_or(SsoError::NoIdToken)?;
                let expires_at = token_expiry(&id_token).or_else(by_lifetime);
                (id_token, expires_at)
            }
            // Graph's access tokens are not ours to read: their lifetime is
            // what the token response says.
            Bearer::AccessToken => (
                tokens.access_token().secret().clone(),
                by_lifetime().or_else(|| token_expiry(tokens.access_token().secret())),
            ),
        };
        Ok(Session {
            access_token: bearer,
            refresh_token: tokens
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| previous_refresh.map(str::to_string)),
            expires_at,
            issuer: Some(self.issuer.clone()),
            client_id: Some(self.client_id.clone()),
        })
    }
}

/// Opens a sign-in URL in the browser where there is one to open (a
/// desktop session, and `HOIST_NO_BROWSER` unset); otherwise the URL shown
/// to the person is all there is (e.g. over SSH).
pub fn open_in_browser(url: &str) {
    // Only what hoist itself would talk to: a provider cannot have a file
    // or another program's scheme opened.
    if crate::endpoint::check(url).is_err() {
        return;
    }
    let graphical = cfg!(any(target_os = "macos", target_os = "windows"))
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if graphical && std::env::var_os("HOIST_NO_BROWSER").is_none() {
        let _ = open::that_detached(url);
    }
}

/// When a JWT just received ends by this machine's clock, read without
/// verifying it (the broker verifies; we only need to know when to
/// refresh): its `exp`, or, if sooner, its lifetime (`exp` less `iat`)
/// counted from now. A clock behind the provider's would otherwise put the
/// refresh after the broker, on the provider's time, refused the token.
pub fn token_expiry(jwt: &str) -> Option<DateTime<Utc>> {
    let claims = claims(jwt)?;
    let exp = DateTime::from_timestamp(claims.get("exp")?.as_i64()?, 0)?;
    let by_lifetime = claims
        .get("iat")
        .and_then(|iat| iat.as_i64())
        .and_then(|iat| DateTime::from_timestamp(iat, 0))
        .filter(|iat| *iat <= exp)
        .and_then(|iat| Utc::now().checked_add_signed(exp - iat));
    Some(by_lifetime.map_or(exp, |end| end.min(exp)))
}

/// Whether a JWT's `nonce` is `nonce`, read without verifying the token:
/// it came straight from the provider's token endpoint, and the broker
/// verifies its signature.
fn carries_nonce(jwt: &str, nonce: &str) -> bool {
    claims(jwt).is_some_and(|claims| claims.get("nonce").and_then(|n| n.as_str()) == Some(nonce))
}

fn claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// The provider's own words for a failed token request, without secrets.
fn describe<E: std::error::Error, R: oauth2::ErrorResponse + std::fmt::Display>(
    err: &oauth2::RequestTokenError<E, R>,
) -> String {
    match err {
        oauth2::RequestTokenError::ServerResponse(response) => response.to_string(),
        oauth2::RequestTokenError::Request(err) => format!("cannot reach the provider: {err}"),
        oauth2::RequestTokenError::Parse(err, _) => {
            format!("unreadable answer from the provider: {err}")
        }
        oauth2::RequestTokenError::Other(other) => other.clone(),
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Serves the loopback redirect and hands back the code and state of the
/// first one that carries `expected` (this sign-in's state, error or not).
/// Any other request is answered 400 and waited past: another process, or a
/// page guessing the port, cannot end the sign-in by calling first.
async fn receive_callback(
    listener: tokio::net::TcpListener,
    expected: String,
) -> Result<(String, String), SsoError> {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::response::Html;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<(String, String), SsoError>>(1);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |Query(callback): Query<Callback>| {
            let sender = sender.clone();
            let ours = callback.state.as_deref() == Some(expected.as_str());
            async move {
                if !ours {
                    return (
                        StatusCode::BAD_REQUEST,
                        Html("<h1>Not this sign-in</h1><p>hoist is waiting for another redirect.</p>"),
                    );
                }
                let outcome = match (callback.code, callback.state, callback.error) {
                    (Some(code), Some(state), None) => Ok((code, state)),
                    (_, _, Some(error)) => Err(SsoError::Failed(format!(
                        "{error}: {}",
                        callback.error_description.unwrap_or_default()
                    ))),
                    _ => Err(SsoError::Failed("the redirect carried no code".into())),
                };
                let page = if outcome.is_ok() {
                    "<h1>Signed in to hoist</h1><p>You can close this tab and return to the terminal.</p>"
                } else {
                    "<h1>Sign-in failed</h1><p>Return to the terminal for details.</p>"
                };
                let _ = sender.send(outcome).await;
                (StatusCode::OK, Html(page))
            }
        }),
    );
    let mut receiver = receiver;
    let server = axum::serve(listener, app);
    tokio::select! {
        served = server => Err(SsoError::Failed(format!("the loopback listener stopped: {served:?}"))),
        outcome = receiver.recv() => outcome.unwrap_or(Err(SsoError::Failed("no redirect arrived".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to the loopback redirect without this sign-in's state,
    /// error or not, is refused and waited past; the real one ends it.
    #[tokio::test]
    async fn only_the_redirect_with_this_sign_ins_state_ends_the_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/callback", listener.local_addr().unwrap());
        let mut waiting = tokio::spawn(receive_callback(listener, "s-1".into()));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for stray in ["?code=x&state=guess", "?error=access_denied", "?code=x"] {
            let answer = http.get(format!("{base}{stray}")).send().await.unwrap();
            assert_eq!(answer.status(), 400, "{stray}");
        }
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), &mut waiting).await;
        assert!(
            early.is_err(),
            "a stray request ended the sign-in: {early:?}"
        );
        let answer = http
            .get(format!("{base}?code=c-1&state=s-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let (code, state) = waiting.await.unwrap().unwrap();
        assert_eq!((code.as_str(), state.as_str()), ("c-1", "s-1"));
    }

    #[test]
    fn expiry_is_read_from_the_token() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1893456000,"sub":"x"}"#);
        let token = format!("e30.{payload}.sig");
        assert_eq!(token_expiry(&token).unwrap().timestamp(), 1_893_456_000);
        assert_eq!(token_expiry("not-a-jwt"), None);
    }

    /// A clock 10 minutes behind the provider's: a token that lives 5
    /// minutes, issued "in 10 minutes" by this clock, ends in 5, not in 15.
    #[test]
    fn expiry_counts_the_lifetime_from_now_when_the_clock_is_behind() {
        let now = Utc::now().timestamp();
        let token = |iat: i64, exp: i64| {
            let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{iat},"exp":{exp}}}"#));
            format!("e30.{payload}.sig")
        };
        let behind = token_expiry(&token(now + 600, now + 900))
            .unwrap()
            .timestamp();
        assert!(
            (now + 299..=now + 302).contains(&behind),
            "{behind} - {now}"
        );
        // A clock ahead refreshes early by its own lead, no later than exp.
        let ahead = token_expiry(&token(now - 600, now + 300))
            .unwrap()
            .timestamp();
        assert_eq!(ahead, now + 300);
    }

    #[test]
    fn every_endpoint_a_discovery_document_names_is_checked() {
        let document = |token: &str, device: &str| Discovery {
            issuer: "https://id.example".into(),
            token_endpoint: token.into(),
            authorization_endpoint: Some("https://id.example/auth".into()),
            device_authorization_endpoint: Some(device.into()),
            revocation_endpoint: None,
        };
        assert!(
            document("https://id.example/token", "http://127.0.0.1:9/device")
                .check_endpoints()
                .is_ok()
        );
        let refused = document("http://192.0.2.2/token", "https://id.example/device")
            .check_endpoints()
            .unwrap_err();
        assert!(
            refused.contains("token endpoint `http://192.0.2.2/token`"),
            "{refused}"
        );
        assert!(refused.contains("plain http"), "{refused}");
        let refused = document("https://id.example/token", "file:///etc/passwd")
            .check_endpoints()
            .unwrap_err();
        assert!(
            refused.contains("device authorization endpoint"),
            "{refused}"
        );
    }
}
