//! A real OpenID provider on loopback for sign-in tests, and a browser-like driver for its pages.
//!
//! The provider is panva's `oidc-provider`, installed from the npm registry
//! into `tests/oidc-provider` and run by `server.mjs` there; see its README.md
//! for the clients, accounts and groups it knows. Include this module with
//! `#[path = "../support/oidc.rs"] mod oidc;`.

// Each test binary uses only part of this module.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use serde_json::Value;
use url::Url;

/// The grant type of the OAuth 2.0 device authorization grant (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How long the provider may take to start: Node, the provider and an RSA key,
/// on a busy two-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// More pages than any sign-in takes; past this the driver is going in circles.
const MAX_PAGES: usize = 25;

/// A running provider, stopped when dropped.
pub struct Provider {
    /// `http://127.0.0.1:PORT`, exactly as the provider names itself in `iss`.
    pub issuer: String,
    child: Child,
    // Held so the provider never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

/// Who signs in on the provider's pages, and the user code to type if asked.
struct SignIn<'a> {
    username: &'a str,
    user_code: Option<&'a str>,
}

/// Where driving the provider's pages ended.
enum Outcome {
    /// The device was authorised.
    DeviceApproved,
    /// The provider redirected away from itself: to the client's redirect URI.
    Redirected(String),
}

impl Provider {
    /// Starts a provider whose ID and access tokens live 300 seconds.
    pub async fn start() -> Provider {
        Self::spawn(None, &[]).await
    }

    /// Starts a provider whose ID and access tokens live `secs` seconds.
    pub async fn start_with_ttl(secs: u64) -> Provider {
        Self::spawn(Some(secs), &[]).await
    }

    /// Starts a provider whose device codes expire after `secs` seconds.
    pub async fn start_with_device_ttl(secs: u64) -> Provider {
        Self::spawn(None, &["--device-ttl", &secs.to_string()]).await
    }

    /// Starts a provider shaped like an Entra tenant's authority: mounted at
    /// `/{tenant}/v2.0` and issuing JWT access tokens for `graph` (see
    /// `server.mjs`). Its `issuer` is the mounted URL; [`Provider::authority`]
    /// is what an Entra profile's `authority` setting names.
    pub async fn start_entra(tenant: &str, graph: &str) -> Provider {
        let mount = format!("/{tenant}/v2.0");
        Self::spawn(None, &["--mount", &mount, "--graph", graph]).await
    }

    /// The provider's origin: an Entra profile's `authority`.
    pub fn authority(&self) -> String {
        let url = Url::parse(&self.issuer).expect("issuer is a URL");
        url.origin().ascii_serialization()
    }

    async fn spawn(ttl: Option<u64>, extra: &[&str]) -> Provider {
        // From the workspace root, or from a crate under it whose tests include this file.
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = manifest
            .ancestors()
            .map(|dir| dir.join("tests/oidc-provider"))
            .find(|dir| dir.join("server.mjs").is_file())
            .unwrap_or_else(|| manifest.join("tests/oidc-provider"));
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "the OpenID provider is not installed in {}: run scripts/test, which runs npm ci \
             (or `npm ci --prefix tests/oidc-provider`)",
            dir.display()
        );

        let mut command = Command::new("node");
        command
            .args(["server.mjs", "--port", "0", "--stop-on-stdin-eof"])
            .args(extra)
            .current_dir(&dir)
            // Our end of stdin closes when this process dies, however it dies,
            // and the provider stops with it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match ttl {
            Some(secs) => command.env("OIDC_TOKEN_TTL", secs.to_string()),
            None => command.env_remove("OIDC_TOKEN_TTL"),
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` for the OpenID provider: {e}"));

        let stdout = child.stdout.take().expect("stdout is piped");
        let ready = tokio::task::spawn_blocking(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            (stdout, line, read)
        });
        let (stdout, line, read) = match tokio::time::timeout(START_TIMEOUT, ready).await {
            Ok(joined) => joined.expect("the READY reader panicked"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the OpenID provider printed no READY line within {START_TIMEOUT:?}");
            }
        };

        let issuer = match (read, line.trim_end().strip_prefix("READY ")) {
            (Ok(_), Some(issuer)) => issuer.to_owned(),
            (read, _) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "the OpenID provider did not start (read {read:?}, line {line:?}, \
                     exit {status:?}); its stderr is above"
                );
            }
        };

        Provider {
            issuer,
            child,
            _stdout: stdout,
        }
    }

    /// The provider's discovery document.
    pub async fn discovery(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let response = http().get(&url).send().await.expect("GET discovery");
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response.json().await.expect("discovery is JSON")
    }

    /// The provider's signing keys (its `jwks_uri`).
    pub async fn jwks(&self) -> Value {
        let url = self.endpoint("jwks_uri").await;
        ok_json(http().get(&url).send().await.expect("GET jwks"), "jwks").await
    }

    /// The URL of endpoint `name` (e.g. `token_endpoint`) from discovery.
    pub async fn endpoint(&self, name: &str) -> String {
        self.discovery().await[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery names no {name}"))
            .to_owned()
    }

    /// Approves a device as `username` would in a browser, starting from the
    /// `verification_uri_complete` the device was given: confirms the user
    /// code, signs in, and grants consent.
    pub async fn approve_device(&self, verification_uri_complete: &str, username: &str) {
        let sign_in = SignIn {
            username,
            user_code: None,
        };
        match self.drive(verification_uri_complete, &sign_in).await {
            Outcome::DeviceApproved => {}
            Outcome::Redirected(url) => panic!("device approval redirected to {url}"),
        }
    }

    /// Approves a device as `username` would by opening `verification_uri`
    /// and typing `user_code` into the form.
    pub async fn approve_device_code(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
    ) {
        let sign_in = SignIn {
            username,
            user_code: Some(user_code),
        };
        match self.drive(verification_uri, &sign_in).await {
            Outcome::DeviceApproved => {}
            Outcome::Redirected(url) => panic!("device approval redirected to {url}"),
        }
    }

    /// Follows `authorization_url` through sign-in as `username` and consent,
    /// and returns the URL the provider finally redirects to (the client's
    /// `redirect_uri` with `code` and `state`, or with `error`) without
    /// requesting it, so the test can deliver it to the client's listener.
    pub async fn login_code_flow(&self, authorization_url: &str, username: &str) -> String {
        let sign_in = SignIn {
            username,
            user_code: None,
        };
        match self.drive(authorization_url, &sign_in).await {
            Outcome::Redirected(url) => url,
            Outcome::DeviceApproved => panic!("a code flow ended on the device success page"),
        }
    }

    /// A whole device flow for `client_id`, approved as `username`, done by the
    /// harness alone: returns the token response (`id_token`, `access_token`,
    /// `refresh_token`, ...).
    /// A workload identity token: a JWT access token from the client
    /// credentials grant for `client` (`deploy-bot`, `other-bot`,
    /// `k8s-deployer`), `aud` the `resource` (under `https://hoist.test/`),
    /// with `claims` added and a life of `ttl_secs` if given.
    pub async fn workload_token(
        &self,
        client: &str,
        resource: &str,
        claims: &Value,
        ttl_secs: Option<u64>,
    ) -> String {
        let token_endpoint = self.endpoint("token_endpoint").await;
        let claims = claims.to_string();
        let ttl = ttl_secs.map(|t| t.to_string()).unwrap_or_default();
        let mut fields = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", "workload-secret"),
            ("resource", resource),
            ("workload_claims", claims.as_str()),
        ];
        if ttl_secs.is_some() {
            fields.push(("workload_ttl", ttl.as_str()));
        }
        let tokens = ok_json(
            post_form(&token_endpoint, &fields).await,
            "client credentials token",
        )
        .await;
        tokens["access_token"]
            .as_str()
            .expect("an access token")
            .to_string()
    }

    /// The provider's answer to a refresh with `refresh_token`, sent as
    /// hoist sends one (a refresh token spent or revoked is refused).
    pub async fn refresh_with(&self, refresh_token: &str) -> reqwest::Response {
        let token_endpoint = self.endpoint("token_endpoint").await;
        post_form(
            &token_endpoint,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", "hoist"),
            ],
        )
        .await
    }

    /// Sets `name`'s groups at the provider, as its administrator would:
    /// tokens issued from now on carry these.
    pub async fn set_groups(&self, name: &str, groups: &[&str]) {
        let url = format!("{}/_directory/{name}", self.authority());
        let response = reqwest::Client::new()
            .put(&url)
            .body(serde_json::to_string(groups).unwrap())
            .send()
            .await
            .unwrap_or_else(|err| panic!("PUT {url}: {err}"));
        assert_eq!(response.status(), 204, "PUT {url}");
    }

    /// Answers every token request with `status` and an HTML page, as a
    /// proxy in front of a provider in trouble would; 0 ends it.
    pub async fn outage(&self, status: u16) {
        self.put_setting("_outage", status).await;
    }

    /// Answers every device authorization request with `status`, as
    /// [`Provider::outage`] does token requests; 0 ends it.
    pub async fn device_outage(&self, status: u16) {
        self.put_setting("_device_outage", status).await;
    }

    /// Holds each token response for `millis` after the provider made it
    /// (a refresh token is spent by then); 0 ends it.
    pub async fn slow(&self, millis: u64) {
        self.put_setting("_slow", millis).await;
    }

    /// Whether a refresh's answer carries an ID token: `always` (the
    /// default), `asked` (only when the refresh names `openid`), `never`,
    /// or `away` (as `asked`, but one that names `openid` is answered 503).
    pub async fn refresh_id_token(&self, mode: &str) {
        self.put_setting("_refresh_id_token", mode).await;
    }

    /// How many token requests the provider has had.
    pub async fn token_requests(&self) -> u64 {
        self.get_setting("_token_requests").await
    }

    /// The refresh tokens the provider has issued, in order.
    pub async fn refresh_tokens(&self) -> Vec<String> {
        self.get_setting("_refresh_tokens").await
    }

    async fn get_setting<T: serde::de::DeserializeOwned>(&self, what: &str) -> T {
        let url = format!("{}/{what}", self.authority());
        reqwest::get(&url)
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"))
            .json()
            .await
            .unwrap()
    }

    async fn put_setting(&self, what: &str, value: impl std::fmt::Display) {
        let url = format!("{}/{what}/{value}", self.authority());
        let response = reqwest::Client::new()
            .put(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("PUT {url}: {err}"));
        assert_eq!(response.status(), 204, "PUT {url}");
    }

    /// An ID token for `username`, signed in with the device flow as the
    /// `hoist` client.
    pub async fn id_token(&self, username: &str) -> String {
        let tokens = self.device_flow_tokens(username, "hoist").await;
        tokens["id_token"].as_str().unwrap().to_string()
    }

    pub async fn device_flow_tokens(&self, username: &str, client_id: &str) -> Value {
        let discovery = self.discovery().await;
        let device = post_form(
            discovery["device_authorization_endpoint"].as_str().unwrap(),
            &[("client_id", client_id), ("scope", "openid offline_access")],
        )
        .await;
        let device = ok_json(device, "device authorization").await;
        let complete = device["verification_uri_complete"].as_str().unwrap();
        self.approve_device(complete, username).await;

        let tokens = post_form(
            discovery["token_endpoint"].as_str().unwrap(),
            &[
                ("grant_type", DEVICE_CODE_GRANT),
                ("device_code", device["device_code"].as_str().unwrap()),
                ("client_id", client_id),
            ],
        )
        .await;
        ok_json(tokens, "device code token request").await
    }

    /// Walks the provider's pages like a browser with a fresh cookie jar,
    /// submitting whichever form each page shows, until the device is
    /// approved or the provider redirects off itself.
    async fn drive(&self, start: &str, sign_in: &SignIn<'_>) -> Outcome {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the browser client");
        let issuer = Url::parse(&self.issuer).expect("issuer is a URL");

        let mut url = Url::parse(start).unwrap_or_else(|e| panic!("{start:?} is not a URL: {e}"));
        let mut request = browser.get(url.clone());
        for _ in 0..MAX_PAGES {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("request to {url}: {e}"));
            let status = response.status();

            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_else(|| panic!("{status} from {url} without a Location"));
                url = url.join(location).expect("Location is a URL");
                if url.origin() != issuer.origin() || !url.path().starts_with(issuer.path()) {
                    return Outcome::Redirected(url.into());
                }
                request = browser.get(url.clone());
                continue;
            }

            let page = response.text().await.expect("page body");
            if title(&page) == Some("Sign-in Success") {
                return Outcome::DeviceApproved;
            }
            if !status.is_success() || page.contains("class=\"red\"") {
                panic!(
                    "the provider refused at {url} ({status}): {}",
                    visible_text(&page)
                );
            }
            let Some(form) = forms(&page).into_iter().next() else {
                panic!("no form at {url} ({status}): {}", visible_text(&page));
            };

            let fields: Vec<(String, String)> = form
                .inputs
                .into_iter()
                .map(|(name, value)| {
                    let value = match name.as_str() {
                        "login" => sign_in.username.to_owned(),
                        // The dev login accepts any password.
                        "password" => "password".to_owned(),
                        "user_code" if value.is_empty() => sign_in
                            .user_code
                            .unwrap_or_else(|| panic!("{url} asks for a user code"))
                            .to_owned(),
                        _ => value,
                    };
                    (name, value)
                })
                .collect();
            url = url.join(&form.action).expect("form action is a URL");
            request = browser.post(url.clone()).form(&fields);
        }
        panic!("sign-in did not finish within {MAX_PAGES} pages; last at {url}");
    }
}

impl Provider {
    /// Stops the provider, as an outage would: nothing answers at its port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain client for the provider's API endpoints.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

/// POSTs `fields` as a form, as a public client does.
pub async fn post_form(url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    http()
        .post(url)
        .form(fields)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// The JSON body of a successful response; panics with the provider's error otherwise.
pub async fn ok_json(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body = response.text().await.expect("response body");
    assert!(status.is_success(), "{what}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"))
}

/// The claims of a JWT, decoded without checking its signature.
pub fn jwt_claims(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

/// The header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    use base64::Engine as _;
    let part = jwt
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("{jwt:?} is not a JWT"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWT part {index} is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part {index} is not JSON: {e}"))
}

/// A form as a browser would submit it.
struct Form {
    action: String,
    inputs: Vec<(String, String)>,
}

/// The forms of a page, with their named inputs. The provider's pages are
/// machine-made and regular, so reading tags is enough; buttons carry no
/// fields we want (the confirm page's only named button is "abort").
fn forms(page: &str) -> Vec<Form> {
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let (tag, body) = split_tag(after);
        let end = body.find("</form>").unwrap_or(body.len());
        let inner = &body[..end];
        let action = attribute(tag, "action").unwrap_or_default();
        let mut inputs = Vec::new();
        let mut scan = inner;
        while let Some(at) = scan.find("<input") {
            let (input, next) = split_tag(&scan[at..]);
            if let Some(name) = attribute(input, "name") {
                inputs.push((name, attribute(input, "value").unwrap_or_default()));
            }
            scan = next;
        }
        found.push(Form { action, inputs });
        rest = &body[end..];
    }
    found
}

/// Splits `<tag ...>rest` into the tag's text and what follows it.
fn split_tag(html: &str) -> (&str, &str) {
    let mut quote = None;
    for (i, c) in html.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return (&html[..i], &html[i + 1..]),
            _ => {}
        }
    }
    (html, "")
}

/// The unescaped value of attribute `name` in a tag's text.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag.trim_start_matches('<');
    rest = rest.trim_start_matches(|c: char| !c.is_whitespace());
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let key = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, next) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let close = after[1..].find(q).map_or(after.len(), |i| i + 1);
                    (&after[1..close], after.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            rest = next;
            value
        } else {
            ""
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(unescape(value));
        }
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn title(page: &str) -> Option<&str> {
    let start = page.find("<title>")? + "<title>".len();
    let end = start + page[start..].find("</title>")?;
    Some(page[start..end].trim())
}

/// A page's text without tags, styles or scripts, for failure messages.
fn visible_text(page: &str) -> String {
    let mut text = String::new();
    let mut rest = page;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        let from_tag = &rest[open..];
        let element_end = ["style", "script"].iter().find_map(|element| {
            let close = format!("</{element}>");
            from_tag[1..]
                .starts_with(element)
                .then(|| from_tag.find(&close).map(|end| end + close.len()))
                .flatten()
        });
        rest = match element_end {
            Some(end) => &from_tag[end..],
            None => split_tag(from_tag).1,
        };
    }
    text.push_str(rest);
    unescape(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}
