//! OpenBao (or HashiCorp Vault: the same HTTP API): a grant's holder gets an
//! OpenBao token with the role's policies, minted when they fetch their
//! credential and revoked when the grant ends. hoistd signs in with its own
//! identity: an AppRole, or JWT auth with a token hoistd signs itself, which
//! OpenBao verifies against hoistd's JWKS. Each token is an orphan (so it outlives hoistd's own sign-in),
//! carries `hoist_grant`, `hoist_holder` and `hoist_issuer` (the deployment) in its metadata, and has a TTL
//! and an explicit maximum no longer than what remains of the grant. hoist
//! keeps its accessor (which can look the token up or revoke it, never use
//! it), recorded before the token is handed over: deprovision and the
//! reconciler revoke by the accessors recorded, so the lease's own TTL is
//! never the only end, and neither reads the server's whole accessor list.
//! Only a grant marked `*` (active when handles began to be recorded) is
//! also searched for by its metadata through that list.
//!
//! Shape (as every kind): settings, access, the operations, errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hoist_api::AccessCredential;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{GrantFacts, Journal, Managed, TargetError, TargetKind, duration_setting, secret};
use super::{settings, ssh::HolderKey};

pub const KIND: &str = "openbao";
/// Longest error text taken from an answer into a grant's state.
const MAX_REASON_CHARS: usize = 300;
/// Largest answer read: the accessor list of a server with a hundred
/// thousand tokens fits many times over.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// The handle that marks a grant whose tokens may have been minted before
/// their accessors were recorded (migration 14, PostgreSQL 10): its removal
/// also searches the accessor list.
const UNRECORDED: &str = "*";
/// What a failure's reason says when the answer was not OpenBao's shape.
const NOT_OPENBAOS: &str = "(not an OpenBao answer)";
/// How a dynamic secret's lease is recorded among a grant's handles
/// (`lease:<lease id>`), beside its tokens' accessors.
const LEASE: &str = "lease:";
/// Looks again at a token OpenBao answers 403 for while walking its
/// tokens (one being revoked meanwhile), this many times this far apart.
const LOOKUP_RETRIES: usize = 3;
/// The longest hoistd keeps its own sign-in to OpenBao, whatever lease the
/// server gives it: a day.
const SESSION_MAX_SECS: u64 = 24 * 60 * 60;
const LOOKUP_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

// ---- settings ------------------------------------------------------------

/// A `[[targets]]` entry of kind `openbao`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// https, or http to a loopback address only.
    url: String,
    /// How hoistd signs in: `approle` (role and secret ids) or `jwt` (a
    /// token hoistd signs, checked by OpenBao against hoistd's JWKS).
    #[serde(default = "default_auth")]
    auth: String,
    /// The AppRole hoistd signs in with: its role id and secret id.
    role_id_env: Option<String>,
    role_id_file: Option<PathBuf>,
    secret_id_env: Option<String>,
    secret_id_file: Option<PathBuf>,
    /// Where the AppRole auth method is mounted.
    #[serde(default = "default_mount")]
    approle_mount: String,
    /// JWT auth: where it is mounted, the OpenBao role to sign in as, and
    /// the audience that role is bound to.
    #[serde(default = "default_jwt_mount")]
    jwt_mount: String,
    jwt_role: Option<String>,
    audience: Option<String>,
    /// Longest one call may take, connecting included.
    #[serde(default = "default_timeout")]
    timeout: String,
}

fn default_mount() -> String {
    "approle".into()
}

fn default_auth() -> String {
    "approle".into()
}

fn default_jwt_mount() -> String {
    "jwt".into()
}

/// How hoistd proves itself to OpenBao.
enum SignIn {
    AppRole {
        mount: String,
        role_id: String,
        secret_id: String,
    },
    Jwt {
        mount: String,
        role: String,
        audience: String,
    },
}

fn mount_path(target: &str, what: &str, mount: &str) -> Result<String, String> {
    if mount.is_empty()
        || !mount
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
    {
        return Err(format!(
            "target `{target}`: {what} must be a mount path such as `approle` or `jwt`"
        ));
    }
    Ok(mount.trim_matches('/').to_string())
}

fn default_timeout() -> String {
    "5s".into()
}

// ---- access ----------------------------------------------------------------

/// What a role grants at an OpenBao target: a token with these policies,
/// and, with `secret_path`, a dynamic secret read with that token from a
/// secrets engine's role path (`database/creds/readonly`), whose lease is
/// revoked with the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub policies: Vec<String>,
    #[serde(default)]
    pub secret_path: Option<String>,
    /// Which variable each field of the secret becomes (`username =
    /// "PGUSER"`); without it, `BAO_SECRET_<FIELD>`.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

impl Access {
    /// This access, as given at activation, narrowed to the role's access
    /// `now`: the policies in both. The secret read with the token is the
    /// one the role names now (the token's policies bound what it reads).
    fn narrowed(&self, now: &Access) -> Result<Access, String> {
        let policies: Vec<String> = self
            .policies
            .iter()
            .filter(|policy| now.policies.contains(policy))
            .cloned()
            .collect();
        if policies.is_empty() {
            return Err(format!(
                "no longer names any of the policies it gave ({})",
                self.policies.join(", ")
            ));
        }
        Ok(Access {
            policies,
            secret_path: now.secret_path.clone(),
            secret_env: now.secret_env.clone(),
        })
    }
}

pub struct OpenBao {
    name: String,
    url: url::Url,
    sign_in: SignIn,
    timeout: Duration,
    http: reqwest::Client,
    /// hoistd's own token from its AppRole sign-in, and when to sign in again.
    session: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for OpenBao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret id or a token.
        f.debug_struct("OpenBao")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl OpenBao {
    /// Builds the target from its `[[targets]]` settings.
    pub fn configure(name: &str, table: toml::Table) -> Result<Arc<dyn TargetKind>, String> {
        Ok(Arc::new(OpenBao::build(name, table)?))
    }

    fn build(name: &str, table: toml::Table) -> Result<OpenBao, String> {
        let raw: Settings = settings(name, table)?;
        let url =
            url::Url::parse(&raw.url).map_err(|err| format!("target `{name}`: url: {err}"))?;
        if !crate::outbound::allowed(&url) {
            return Err(format!(
                "target `{name}`: url must use https (http only to a loopback address)"
            ));
        }
        // The address goes to every holder (BAO_ADDR), and into errors.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "target `{name}`: url holds credentials; hoistd signs in with `auth`"
            ));
        }
        let sign_in = match raw.auth.as_str() {
            "approle" => SignIn::AppRole {
                mount: mount_path(name, "approle_mount", &raw.approle_mount)?,
                role_id: secret(
                    name,
                    "role_id",
                    raw.role_id_env.as_deref(),
                    raw.role_id_file.as_deref(),
                )?,
                secret_id: secret(
                    name,
                    "secret_id",
                    raw.secret_id_env.as_deref(),
                    raw.secret_id_file.as_deref(),
                )?,
            },
            "jwt" => SignIn::Jwt {
                mount: mount_path(name, "jwt_mount", &raw.jwt_mount)?,
                role: raw
                    .jwt_role
                    .ok_or_else(|| format!("target `{name}`: auth = \"jwt\" needs jwt_role"))?,
                audience: raw
                    .audience
                    .ok_or_else(|| format!("target `{name}`: auth = \"jwt\" needs audience"))?,
            },
            other => {
                return Err(format!(
                    "target `{name}`: auth \"{other}\" is not one hoist signs in with: approle or jwt"
                ));
            }
        };
        let timeout = duration_setting(name, "timeout", &raw.timeout)?;
        let http = crate::outbound::client_for(&url)
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("hoistd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("target `{name}`: {err}"))?;
        Ok(OpenBao {
            name: name.to_string(),
            url,
            sign_in,
            timeout,
            http,
            session: Mutex::new(None),
        })
    }

    fn unreachable(&self, why: impl fmt::Display) -> TargetError {
        TargetError::unreachable(&self.name, why)
    }

    fn refused(&self, why: impl fmt::Display) -> TargetError {
        TargetError::refused(&self.name, why)
    }

    /// Where OpenBao's API is, as its CLI takes it (`BAO_ADDR`): the base
    /// every call is joined to (`…/bao-a/` for `…/bao-a/v1/…`), so a holder
    /// calls the server hoistd minted their token at.
    fn address(&self) -> String {
        self.url
            .join("./")
            .map_or_else(|_| self.url.to_string(), |base| base.to_string())
            .trim_end_matches('/')
            .to_string()
    }

    fn endpoint(&self, path: &str) -> Result<url::Url, TargetError> {
        self.url
            .join(&format!("v1/{path}"))
            .map_err(|err| self.refused(err))
    }

    /// One call; the answer's JSON (`null` for 204), or why not. A sealed or
    /// failing server (5xx) is unreachable; a 4xx is refused with its errors.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, TargetError> {
        let mut request = self.http.request(method, self.endpoint(path)?);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|err| {
            if err.is_timeout() {
                self.unreachable(format!("no answer within {:?}", self.timeout))
            } else {
                self.unreachable(format!("cannot connect: {}", describe(&err)))
            }
        })?;
        let status = response.status();
        let text = self.body(response, path).await?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|_| self.refused(format!("{path}: the answer is not JSON")));
        }
        // OpenBao answers every failure with `{"errors": [...]}`; anything
        // else (a proxy's page) is said to be so, so that no caller takes
        // it for OpenBao's word (a 404 for "no such thing").
        let listed = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"].as_array().cloned());
        let mut errors: Vec<String> = listed
            .iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        if listed.is_none() {
            errors.push(NOT_OPENBAOS.to_string());
        }
        if status == reqwest::StatusCode::FORBIDDEN
            && let Some(token) = token
        {
            // hoistd's own token may be what was refused (revoked, or its
            // policy changed): the next call signs in again rather than
            // reuse it until it nears its end.
            let mut session = self.session.lock().await;
            if session.as_ref().is_some_and(|(held, _)| held == token) {
                *session = None;
            }
        }
        let why: String = format!("{path}: {} {}", status.as_u16(), errors.join("; "))
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON_CHARS)
            .collect();
        // Rate limited (a quota) is unreachable for now, as a 5xx is: tried
        // again after a pause, and the target probed one call at a time.
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(self.unreachable(why))
        } else if status.is_redirection() {
            // A standby node sends its callers to the active one; hoistd
            // follows no redirect (its token would go along).
            Err(TargetError::refused(
                &self.name,
                format!(
                    "{why}: a redirect, not followed; point the target's url at the active node"
                ),
            ))
        } else {
            Err(TargetError::refused(&self.name, why))
        }
    }

    /// An answer's text, at most [`MAX_ANSWER_BYTES`]; one cut short is
    /// unreachable, never read as empty.
    async fn body(
        &self,
        mut response: reqwest::Response,
        path: &str,
    ) -> Result<String, TargetError> {
        match super::body_within(&mut response, MAX_ANSWER_BYTES).await {
            Ok(Some(body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
            Ok(None) => Err(self.refused(format!(
                "{path}: the answer is longer than {MAX_ANSWER_BYTES} bytes"
            ))),
            Err(err) => {
                Err(self.unreachable(format!("{path}: the answer broke off: {}", describe(&err))))
            }
        }
    }

    /// hoistd's own token: signed in (AppRole or JWT), again once it is
    /// near its end.
    async fn token(&self, journal: &Journal) -> Result<String, TargetError> {
        let mut session = self.session.lock().await;
        if let Some((token, until)) = session.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (path, body) = match &self.sign_in {
            SignIn::AppRole {
                mount,
                role_id,
                secret_id,
            } => (
                format!("auth/{mount}/login"),
                json!({ "role_id": role_id, "secret_id": secret_id }),
            ),
            SignIn::Jwt {
                mount,
                role,
                audience,
            } => {
                let jwt = journal
                    .identity_token(audience, Duration::from_secs(60))
                    .map_err(|err| self.refused(format!("cannot sign hoistd's token: {err}")))?;
                (
                    format!("auth/{mount}/login"),
                    json!({ "role": role, "jwt": jwt }),
                )
            }
        };
        let answer = self
            .call(reqwest::Method::POST, &path, None, Some(body))
            .await?;
        let token = answer["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| self.refused("the sign-in returned no token"))?
            .to_string();
        // The server's word, bounded: a session is signed in again at least
        // daily, whatever lease it claims (and no lease overflows a clock).
        let lease = answer["auth"]["lease_duration"]
            .as_u64()
            .unwrap_or(60)
            .min(SESSION_MAX_SECS);
        // Sign in again at two thirds of the token's life, never later.
        let until = Instant::now() + Duration::from_secs(lease * 2 / 3);
        *session = Some((token.clone(), until));
        Ok(token)
    }

    /// Every token this deployment minted, found by reading every token's
    /// metadata through the accessor list: accessor and the grant in its
    /// metadata. Only for grants marked [`UNRECORDED`].
    async fn minted(&self, journal: &Journal) -> Result<Vec<Managed>, TargetError> {
        let token = self.token(journal).await?;
        let listed = match self
            .call(
                reqwest::Method::GET,
                "auth/token/accessors?list=true",
                Some(&token),
                None,
            )
            .await
        {
            Ok(listed) => listed,
            // No token at all: OpenBao answers 404 with no errors (a 404
            // from something else in the way is no empty list).
            Err(TargetError::Refused(_, why))
                if why.contains(" 404") && !why.contains(NOT_OPENBAOS) =>
            {
                return Ok(Vec::new());
            }
            Err(err) => return Err(err),
        };
        // An answer of another shape is no list: taken as "no tokens", a
        // removal would be recorded as done having revoked nothing.
        let accessors: Vec<String> = listed["data"]["keys"]
            .as_array()
            .ok_or_else(|| self.refused("the list of token accessors came back without data.keys"))?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let mut found = Vec::new();
        for accessor in accessors {
            // hoistd's own token is taken again for each lookup: a long
            // walk outlives the one it began with, which is then signed in
            // again for (it is kept until two thirds of its life).
            let lookup = || async {
                let token = self.token(journal).await?;
                self.call(
                    reqwest::Method::POST,
                    "auth/token/lookup-accessor",
                    Some(&token),
                    Some(json!({ "accessor": accessor })),
                )
                .await
            };
            let mut looked = lookup().await;
            // A token being revoked as it is looked up (its entry gone, its
            // accessor not yet) answers 403; a moment later, "invalid
            // accessor". A 403 that stays is hoistd's own token refused.
            for _ in 0..LOOKUP_RETRIES {
                match &looked {
                    Err(TargetError::Refused(_, why)) if why.contains(" 403") => {
                        tokio::time::sleep(LOOKUP_PAUSE).await;
                        looked = lookup().await;
                    }
                    _ => break,
                }
            }
            let looked = match looked {
                Ok(looked) => looked,
                // Gone meanwhile (expired or revoked): nothing to manage.
                Err(TargetError::Refused(_, why)) if why.contains("invalid accessor") => continue,
                // Anything else (refused, unreachable, sealed) leaves the
                // token unknown, and perhaps the grant's: the caller tries
                // again rather than take it as gone.
                Err(err) => return Err(err),
            };
            let meta = &looked["data"]["meta"];
            // Another deployment's (its own `settings.issuer`), sharing
            // this OpenBao: not ours to revoke. A token minted before
            // tokens named their deployment has no issuer: ours.
            if meta["hoist_issuer"]
                .as_str()
                .is_some_and(|issuer| issuer != journal.issuer())
            {
                continue;
            }
            if let Some(grant) = meta["hoist_grant"].as_str() {
                found.push(Managed {
                    name: accessor,
                    grant_id: Some(grant.to_string()),
                });
            }
        }
        Ok(found)
    }

    /// Revokes what a recorded handle names: a dynamic secret's lease
    /// (`lease:<id>`), at once and confirmed (`sys/leases/revoke`, which
    /// answers only once the secrets engine has removed it: a token's
    /// revocation only queues its leases', and gives up on one whose
    /// system is down), or a token by its accessor.
    async fn revoke_handle(&self, handle: &str, journal: &Journal) -> Result<(), TargetError> {
        let Some(lease) = handle.strip_prefix(LEASE) else {
            return self.revoke(handle, journal).await;
        };
        let token = self.token(journal).await?;
        self.call(
            reqwest::Method::PUT,
            "sys/leases/revoke",
            Some(&token),
            Some(json!({ "lease_id": lease, "sync": true })),
        )
        .await
        .map(|_| ())
    }

    async fn revoke(&self, accessor: &str, journal: &Journal) -> Result<(), TargetError> {
        let token = self.token(journal).await?;
        match self
            .call(
                reqwest::Method::POST,
                "auth/token/revoke-accessor",
                Some(&token),
                Some(json!({ "accessor": accessor })),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already gone is what was wanted.
            Err(TargetError::Refused(_, why)) if why.contains("invalid accessor") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Revokes a token just minted that nobody will hold, with hoistd's
    /// token: by its accessor, or, with no accessor, by the token itself
    /// (`auth/token/revoke`; the token has no `default` policy to revoke
    /// itself with); then forgets the accessor if it was `recorded` for
    /// that grant. A failure is logged:
    /// the token still ends at the grant's end, and, recorded, is revoked
    /// with the grant.
    async fn unmint(
        &self,
        token: &str,
        accessor: Option<&str>,
        recorded: Option<&str>,
        journal: &Journal,
    ) {
        let revoked = match accessor {
            Some(accessor) => self.revoke(accessor, journal).await,
            None => match self.token(journal).await {
                Ok(hoistd) => self
                    .call(
                        reqwest::Method::POST,
                        "auth/token/revoke",
                        Some(&hoistd),
                        Some(json!({ "token": token })),
                    )
                    .await
                    .map(|_| ()),
                Err(err) => Err(err),
            },
        };
        let forgotten = match (&revoked, recorded, accessor) {
            (Ok(()), Some(grant), Some(accessor)) => {
                journal.forget_handle(&self.name, grant, accessor).await
            }
            _ => Ok(()),
        };
        if let Err(err) = revoked.and(forgotten) {
            tracing::error!(
                target = %self.name, error = %err,
                "a token minted for no one could not be revoked and forgotten now"
            );
        }
    }
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text.chars().take(MAX_REASON_CHARS).collect()
}

#[async_trait::async_trait]
impl TargetKind for OpenBao {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    /// The server: its origin, and the path every call goes under (a
    /// gateway may route `/bao-a/` and `/bao-b/` to two servers) by
    /// digest: the path as calls are joined to the URL (`…/bao-a` without
    /// its slash calls `…/v1/`, not `…/bao-a/v1/`).
    fn system(&self) -> String {
        use sha2::Digest;
        let origin = crate::outbound::origin_key(&self.url);
        let under = self
            .url
            .join("v1/")
            .map(|api| api.path().to_string())
            .unwrap_or_default();
        match under.as_str() {
            "/v1/" => format!("{KIND} {origin}"),
            path => {
                let path = sha2::Sha256::digest(path.as_bytes());
                format!("{KIND} {origin} (path {})", &hex::encode(path)[..12])
            }
        }
    }

    /// A URL whose path does not end in `/` has its calls go under the
    /// URL's directory, holders' included ([`OpenBao::address`]): said at
    /// every load, in case OpenBao is served under the whole path.
    fn cautions(&self) -> Vec<String> {
        let address = self.address();
        if address == self.url.as_str().trim_end_matches('/') {
            return Vec::new();
        }
        vec![format!(
            "target `{}`: url path {} does not end in `/`, so hoistd and holders call OpenBao \
             at {address}; if it is served under {}, end the url with `/`",
            self.name,
            self.url.path(),
            self.url.path()
        )]
    }

    fn sign_in_audience(&self) -> Option<&str> {
        match &self.sign_in {
            SignIn::Jwt { audience, .. } => Some(audience),
            SignIn::AppRole { .. } => None,
        }
    }

    fn narrow(&self, given: &Value, now: &Value) -> Result<Value, String> {
        super::narrow_as(given, now, Access::narrowed)
    }

    /// The policies a token made with `given` has and one made now would
    /// not. The secret a fetch reads, and the names it is handed over
    /// under, are not in the token: changing them takes nothing back.
    fn taken_back(&self, given: &Value, narrowed: &Value) -> Option<String> {
        super::taken_back_as(given, narrowed, |given: &Access, narrowed: &Access| {
            given
                .policies
                .iter()
                .filter(|policy| !narrowed.policies.contains(policy))
                .map(|policy| format!("policy {policy}"))
                .collect()
        })
    }

    fn access(&self, table: toml::Table) -> Result<Value, String> {
        let access: Access = toml::Value::Table(table)
            .try_into()
            .map_err(|err: toml::de::Error| err.message().trim().to_string())?;
        if access.policies.is_empty() {
            return Err("policies must name at least one OpenBao policy".into());
        }
        if let Some(path) = &access.secret_path
            && (path.is_empty()
                || path.starts_with('/')
                || path.contains("..")
                || !path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)))
        {
            return Err(format!(
                "secret_path {path:?} must be a role path such as database/creds/readonly"
            ));
        }
        if let Some((bad, why)) = access
            .secret_env
            .values()
            .find_map(|name| hoist_api::handover_variable_refusal(name).map(|why| (name, why)))
        {
            return Err(format!("secret_env: {bad:?} {why}"));
        }
        // Those say where the holder's token goes and how it is checked
        // (VAULT_ADDR, VAULT_SKIP_VERIFY, VAULT_CACERT): a secret's value,
        // which whoever writes the secret chooses, must not.
        if let Some(bad) = access
            .secret_env
            .values()
            .find(|name| name.starts_with("BAO_") || name.starts_with("VAULT_"))
        {
            return Err(format!(
                "secret_env: {bad:?} configures the OpenBao and Vault clients; name another variable"
            ));
        }
        if let Some(bad) = access.policies.iter().find(|p| {
            p.is_empty()
                || *p == "root"
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }) {
            return Err(format!(
                "policy {bad:?} is not one hoist grants (letters, digits, - _ . only; never root)"
            ));
        }
        serde_json::to_value(access).map_err(|err| err.to_string())
    }

    /// Nothing to check offline-able at load: sign-in problems show as the
    /// access failing at activation, with OpenBao's reason.
    async fn validate(&self, _access: &Value) -> Result<(), TargetError> {
        Ok(())
    }

    /// Nothing is minted until the holder fetches it; live means hoistd can
    /// sign in, so the fetch will work.
    async fn provision(&self, _grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError> {
        self.token(journal).await.map(|_| ())
    }

    /// Revokes every token minted for the grant: by the accessors
    /// recorded, each forgotten once OpenBao confirms, and, for a grant
    /// marked [`UNRECORDED`], every token whose metadata names it.
    async fn deprovision(&self, grant: &GrantFacts, journal: &Journal) -> Result<(), TargetError> {
        let mut recorded = journal.handles(&self.name, Some(&grant.id)).await?;
        // Leases first: a token revoked before its lease would leave the
        // lease's revocation to OpenBao's queue, unconfirmed. Each handle
        // is tried, so one that is refused holds up no other's revocation;
        // the first failure is the answer, and the removal is tried again
        // for what is left.
        recorded.sort_by_key(|(_, handle)| !handle.starts_with(LEASE));
        let mut failed = None;
        for (_, accessor) in recorded.iter().filter(|(_, a)| a != UNRECORDED) {
            match self.revoke_handle(accessor, journal).await {
                Ok(()) => {
                    journal
                        .forget_handle(&self.name, &grant.id, accessor)
                        .await?
                }
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        if let Some(err) = failed {
            return Err(err);
        }
        if recorded.iter().any(|(_, a)| a == UNRECORDED) {
            for found in self.minted(journal).await? {
                if found.grant_id.as_deref() == Some(grant.id.as_str()) {
                    self.revoke(&found.name, journal).await?;
                }
            }
            journal
                .forget_handle(&self.name, &grant.id, UNRECORDED)
                .await?;
        }
        Ok(())
    }

    async fn inspect(&self, _grant: &GrantFacts, journal: &Journal) -> Result<bool, TargetError> {
        self.token(journal).await.map(|_| true)
    }

    /// The tokens recorded, and while a grant marked [`UNRECORDED`] may
    /// still hold access, every token found through the accessor list. A
    /// marker whose grant's access is removed is forgotten (an instance of
    /// the version before may have removed it). A search that fails is
    /// logged and leaves the recorded tokens listed: listing less only
    /// removes less.
    async fn managed(&self, journal: &Journal) -> Result<Option<Vec<Managed>>, TargetError> {
        let recorded = journal.handles(&self.name, None).await?;
        let mut found: Vec<Managed> = recorded
            .iter()
            .filter(|(_, accessor)| accessor != UNRECORDED)
            .map(|(grant, accessor)| Managed {
                name: accessor.clone(),
                grant_id: Some(grant.clone()),
            })
            .collect();
        let mut marked = 0;
        for (grant, _) in recorded.iter().filter(|(_, a)| a == UNRECORDED) {
            if journal.access_removed(&self.name, grant).await? {
                journal.forget_handle(&self.name, grant, UNRECORDED).await?;
            } else {
                marked += 1;
            }
        }
        if marked > 0 {
            tracing::info!(
                target = %self.name, grants = marked,
                "grants from before token accessors were recorded still hold access: \
                 their tokens are searched for through the accessor list until they end"
            );
            match self.minted(journal).await {
                Ok(minted) => {
                    for token in minted {
                        if !found.iter().any(|known| known.name == token.name) {
                            found.push(token);
                        }
                    }
                }
                Err(err) => tracing::warn!(
                    target = %self.name, error = %err,
                    "cannot search the accessor list; only recorded tokens are reconciled"
                ),
            }
        }
        Ok(Some(found))
    }

    async fn remove(&self, found: &Managed, journal: &Journal) -> Result<(), TargetError> {
        self.revoke_handle(&found.name, journal).await?;
        match &found.grant_id {
            Some(grant) => journal.forget_handle(&self.name, grant, &found.name).await,
            None => Ok(()),
        }
    }

    /// Mints the holder's token now: an orphan with the role's policies, a
    /// TTL and explicit maximum of what remains of the grant, not renewable.
    async fn credential(
        &self,
        grant: &GrantFacts,
        journal: &Journal,
        _key: Option<&HolderKey>,
    ) -> Result<Option<AccessCredential>, TargetError> {
        let access: Access = serde_json::from_value(grant.access.clone())
            .map_err(|err| self.refused(format!("role access: {err}")))?;
        let now = super::now();
        let remaining = (grant.expires_at - now).num_seconds();
        if remaining < 1 {
            return Err(self.refused("the grant has ended"));
        }
        let token = self.token(journal).await?;
        let answer = self
            .call(
                reqwest::Method::POST,
                "auth/token/create-orphan",
                Some(&token),
                Some(json!({
                    "policies": access.policies,
                    // The role's policies and no others: OpenBao would add
                    // its `default` policy (cubbyhole, wrapping, leases, and
                    // whatever an operator added to it) to each.
                    "no_default_policy": true,
                    "ttl": format!("{remaining}s"),
                    "explicit_max_ttl": format!("{remaining}s"),
                    "renewable": false,
                    "display_name": format!("hoist-{}", grant.id),
                    "meta": {
                        "hoist_grant": grant.id,
                        "hoist_holder": grant.holder,
                        "hoist_issuer": journal.issuer(),
                    },
                })),
            )
            .await?;
        let minted = answer["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| self.refused("the token answer held no token"))?
            .to_string();
        // Recorded before anyone holds the token, so that its removal
        // finds it; if it cannot be, the token is revoked at once.
        let accessor = answer["auth"]["accessor"].as_str().map(str::to_string);
        let recorded = match &accessor {
            Some(accessor) => {
                journal
                    .remember_handle(&self.name, &grant.id, accessor)
                    .await
            }
            None => Err(self.refused("the token answer held no accessor")),
        };
        if let Err(err) = recorded {
            self.unmint(&minted, accessor.as_deref(), None, journal)
                .await;
            return Err(err);
        }
        // The server's word, bounded by the grant: no lease it claims
        // outlasts the grant (or overflows a clock).
        let lease = answer["auth"]["lease_duration"]
            .as_i64()
            .unwrap_or(remaining)
            .min(remaining)
            .max(0);
        let address = self.address();
        let mut env = BTreeMap::from([
            ("BAO_ADDR".to_string(), address.clone()),
            ("BAO_TOKEN".to_string(), minted.clone()),
            ("VAULT_ADDR".to_string(), address),
            ("VAULT_TOKEN".to_string(), minted.clone()),
        ]);
        let mut expires_at = (now + chrono::TimeDelta::seconds(lease)).min(grant.expires_at);
        if let Some(path) = &access.secret_path {
            // Read with the holder's own token: the lease is that token's,
            // so revoking the token at the grant's end revokes the lease.
            let secret = match self
                .call(reqwest::Method::GET, path, Some(&minted), None)
                .await
            {
                Ok(secret) => secret,
                Err(err) => {
                    // Nobody will hold the token: it goes now, not at the
                    // grant's end.
                    self.unmint(&minted, accessor.as_deref(), Some(&grant.id), journal)
                        .await;
                    return Err(err);
                }
            };
            // A secret with no lease (a key-value secret) is not the
            // token's to take back: it would work on after the grant. Not
            // handed over, and the token goes now.
            let Some(lease_id) = secret["lease_id"].as_str().filter(|id| !id.is_empty()) else {
                self.unmint(&minted, accessor.as_deref(), Some(&grant.id), journal)
                    .await;
                return Err(self.refused(format!(
                    "{path}: the secret has no lease, so it would outlive the grant; \
                     secret_path must name a dynamic secret (such as database/creds/<role>)"
                )));
            };
            // Recorded before anyone holds the secret, so that its removal
            // revokes the lease itself and waits for it to be done; if it
            // cannot be, the lease is revoked now, and the token with it.
            let handle = format!("{LEASE}{lease_id}");
            if let Err(err) = journal
                .remember_handle(&self.name, &grant.id, &handle)
                .await
            {
                if let Err(unrevoked) = self.revoke_handle(&handle, journal).await {
                    tracing::error!(
                        target = %self.name, error = %unrevoked,
                        "a lease read for no one could not be revoked now; it goes with its token"
                    );
                }
                self.unmint(&minted, accessor.as_deref(), Some(&grant.id), journal)
                    .await;
                return Err(err);
            }
            let fields = secret["data"].as_object().cloned().unwrap_or_default();
            for (field, value) in fields {
                let Some(value) = value.as_str() else {
                    continue;
                };
                let name = access.secret_env.get(&field).cloned().unwrap_or_else(|| {
                    format!(
                        "BAO_SECRET_{}",
                        field
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() {
                                c.to_ascii_uppercase()
                            } else {
                                '_'
                            })
                            .collect::<String>()
                    )
                });
                // Never in place of the address or token set above.
                env.entry(name).or_insert_with(|| value.to_string());
            }
            if let Some(secs) = secret["lease_duration"].as_i64().filter(|s| *s > 0) {
                expires_at = expires_at.min(now + chrono::TimeDelta::seconds(secs.min(lease)));
            }
        }
        Ok(Some(AccessCredential {
            target: self.name.clone(),
            kind: KIND.into(),
            env,
            uri: None,
            command: None,
            expires_at,
            certificate: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An OpenBao target on loopback whose server answers every call with
    /// `head` and then `body` bytes of spaces, or, with no `body`, spaces
    /// until the connection closes.
    async fn answering(
        head: &'static str,
        body: Option<usize>,
    ) -> (Arc<dyn TargetKind>, Journal, tempfile::TempDir) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0; 4096];
                    let _ = conn.read(&mut request).await;
                    conn.write_all(head.as_bytes()).await.unwrap();
                    let spaces = vec![b' '; 64 * 1024];
                    let mut left = body.unwrap_or(usize::MAX);
                    while left > 0 {
                        let n = left.min(spaces.len());
                        if conn.write_all(&spaces[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("role"), "role-id").unwrap();
        std::fs::write(dir.path().join("secret"), "secret-id").unwrap();
        let table: toml::Table = toml::from_str(&format!(
            "url = \"http://127.0.0.1:{port}\"\nrole_id_file = {:?}\nsecret_id_file = {:?}\ntimeout = \"10s\"",
            dir.path().join("role"),
            dir.path().join("secret"),
        ))
        .unwrap();
        let target = OpenBao::configure("bao", table).unwrap();
        let store: Arc<dyn crate::store::Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let journal = Journal::new(
            store,
            Arc::new(crate::target::ssh::Authorities::new(Arc::new(
                crate::target::ssh::Authority::from_key(&key),
            ))),
            Arc::new(crate::credential::Signer::from_key(&key).unwrap()),
            "https://hoist.test".into(),
        );
        (target, journal, dir)
    }

    /// A server behind a gateway, by path, is another system than the one
    /// under another path: a target moved so holds access that may not
    /// move. The path is the one calls go under.
    #[test]
    fn the_path_under_an_origin_names_another_system() {
        let dir = tempfile::tempdir().unwrap();
        let at = |url: &str| approle_at(&dir, url).system();
        assert_ne!(
            at("https://gw.example/bao-a/"),
            at("https://gw.example/bao-b/")
        );
        // Without its slash, calls go to the gateway's root: another system.
        assert_ne!(
            at("https://gw.example/bao-a"),
            at("https://gw.example/bao-a/")
        );
        assert_eq!(at("https://gw.example/bao-a"), at("https://gw.example/"));
        assert_eq!(at("https://bao.example"), "openbao https://bao.example:443");
    }

    /// The target at `url`, signing in by AppRole from files in `dir`.
    fn approle_at(dir: &tempfile::TempDir, url: &str) -> OpenBao {
        std::fs::write(dir.path().join("role"), "role-id").unwrap();
        std::fs::write(dir.path().join("secret"), "secret-id").unwrap();
        let table: toml::Table = toml::from_str(&format!(
            "url = \"{url}\"\nrole_id_file = {:?}\nsecret_id_file = {:?}",
            dir.path().join("role"),
            dir.path().join("secret"),
        ))
        .unwrap();
        OpenBao::build("bao", table).unwrap()
    }

    /// Holders are sent where hoistd calls: the base each call is joined
    /// to. A path without its slash is the URL's directory, and a caution
    /// says so at every load.
    #[test]
    fn holders_call_the_server_hoistd_calls() {
        let dir = tempfile::tempdir().unwrap();
        for (url, address, cautioned) in [
            (
                "https://bao.example:8200",
                "https://bao.example:8200",
                false,
            ),
            (
                "https://gw.example/bao-a/",
                "https://gw.example/bao-a",
                false,
            ),
            ("https://gw.example/bao-a", "https://gw.example", true),
            ("https://gw.example/x/bao-a", "https://gw.example/x", true),
        ] {
            let target = approle_at(&dir, url);
            assert_eq!(target.address(), address, "{url}");
            let api = target.endpoint("sys/health").unwrap();
            assert_eq!(api.as_str(), format!("{address}/v1/sys/health"), "{url}");
            let cautions = target.cautions();
            assert_eq!(
                cautions.len(),
                usize::from(cautioned),
                "{url}: {cautions:?}"
            );
            if cautioned {
                assert!(
                    cautions[0].contains(&format!("at {address};")),
                    "{cautions:?}"
                );
            }
        }
    }

    /// A grant to sign in for.
    fn facts() -> GrantFacts {
        let now = super::super::now();
        GrantFacts {
            id: "gr_1".into(),
            role: "app-reader".into(),
            holder: "alice".into(),
            starts_at: now,
            expires_at: now + chrono::TimeDelta::hours(1),
            access: json!({ "policies": ["read-app"] }),
            justification: "reading".into(),
            ticket: None,
            incident: None,
        }
    }

    /// The address goes to every holder: https (http only to loopback), and
    /// never with credentials in it.
    #[test]
    fn the_url_is_https_and_holds_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("role"), "role-id").unwrap();
        std::fs::write(dir.path().join("secret"), "secret-id").unwrap();
        let configure = |url: &str| {
            let table: toml::Table = toml::from_str(&format!(
                "url = {url:?}\nrole_id_file = {:?}\nsecret_id_file = {:?}",
                dir.path().join("role"),
                dir.path().join("secret"),
            ))
            .unwrap();
            OpenBao::configure("bao", table).map(|_| ())
        };
        assert!(configure("https://bao.example:8200").is_ok());
        assert!(configure("http://127.0.0.1:8200").is_ok());
        let err = configure("http://bao.example:8200").unwrap_err();
        assert!(err.contains("must use https"), "{err}");
        for url in ["https://u:p@bao.example", "https://u@bao.example"] {
            let err = configure(url).unwrap_err();
            assert!(err.contains("url holds credentials"), "{err}");
            assert!(!err.contains("u:p"), "{err}");
        }
    }

    /// A role's `secret_env` may not name a variable that decides what runs.
    #[tokio::test]
    async fn secret_env_cannot_name_what_decides_what_runs() {
        let (target, _journal, _dir) = answering("", None).await;
        let access = |name: &str| {
            target.access(
                toml::from_str(&format!(
                    "policies = [\"read-app\"]\nsecret_path = \"database/creds/app\"\n\
                     [secret_env]\npassword = {name:?}"
                ))
                .unwrap(),
            )
        };
        assert!(access("PGPASSWORD").is_ok());
        let err = access("LD_PRELOAD").unwrap_err();
        assert!(
            err.contains("\"LD_PRELOAD\" decides what a command runs"),
            "{err}"
        );
        let err = access("A-B").unwrap_err();
        assert!(err.contains("is not a variable name"), "{err}");
        // Nor one that says where the holder's token goes, or how it is
        // checked.
        for name in [
            "VAULT_ADDR",
            "BAO_TOKEN",
            "VAULT_SKIP_VERIFY",
            "VAULT_CACERT",
        ] {
            let err = access(name).unwrap_err();
            assert!(
                err.contains("configures the OpenBao and Vault clients"),
                "{err}"
            );
        }
    }

    /// An answer with no end is read up to the cap and refused, not held
    /// in memory whole.
    #[tokio::test]
    async fn an_answer_past_the_cap_is_refused() {
        let (target, journal, _dir) = answering(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n",
            None,
        )
        .await;
        let err = target.provision(&facts(), &journal).await.unwrap_err();
        assert!(
            matches!(&err, TargetError::Refused(_, why) if why.contains("longer than")),
            "{err}"
        );
    }

    /// A rate limit is the server unreachable for now (tried again after a
    /// pause, probed one call at a time), not a refusal someone must fix.
    #[tokio::test]
    async fn a_rate_limited_answer_is_unreachable() {
        let (target, journal, _dir) = answering(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
             content-length: 42\r\n\r\n{\"errors\":[\"request path quota exceeded\"]}",
            Some(0),
        )
        .await;
        let err = target.provision(&facts(), &journal).await.unwrap_err();
        assert!(
            matches!(&err, TargetError::Unreachable(_, why) if why.contains("429 request path quota")),
            "{err}"
        );
    }

    /// A failure in another shape than OpenBao's (a proxy's page) is said
    /// to be so, so that a 404 from it is never read as "nothing there".
    #[tokio::test]
    async fn a_failure_not_in_openbaos_shape_says_so() {
        let (target, journal, _dir) = answering(
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\n\
             content-length: 9\r\n\r\n<h1>x</h1",
            Some(0),
        )
        .await;
        let err = target.provision(&facts(), &journal).await.unwrap_err();
        assert!(
            matches!(&err, TargetError::Refused(_, why) if why.contains("404") && why.contains(NOT_OPENBAOS)),
            "{err}"
        );
    }

    /// A standby's redirect is not followed, and the refusal says so.
    #[tokio::test]
    async fn a_redirect_is_refused_saying_it_was_not_followed() {
        let (target, journal, _dir) = answering(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: https://active.example/v1/x\r\n\
             content-length: 0\r\n\r\n",
            Some(0),
        )
        .await;
        let err = target.provision(&facts(), &journal).await.unwrap_err();
        assert!(
            matches!(&err, TargetError::Refused(_, why) if why.contains("307") && why.contains("not followed")),
            "{err}"
        );
    }

    /// An answer cut short is the server unreachable, not an empty answer.
    #[tokio::test]
    async fn an_answer_cut_short_is_unreachable() {
        let (target, journal, _dir) = answering(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
            Some(10),
        )
        .await;
        let err = target.provision(&facts(), &journal).await.unwrap_err();
        assert!(
            matches!(&err, TargetError::Unreachable(_, why) if why.contains("broke off")),
            "{err}"
        );
    }
}
