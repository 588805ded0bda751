//! The policy file: who exists, which groups they are in, which roles they may
//! request and on what terms. Parsed once at start and again on SIGHUP; a bad
//! file is refused with its path, line and reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hoist_api::{ApprovalRule, Role, TicketRule};
use regex::Regex;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use toml::Spanned;

/// A policy that passed every check.
#[derive(Debug, Clone)]
pub struct Policy {
    pub settings: Settings,
    users: BTreeMap<String, User>,
    /// SHA-256 hex of each static token, to its user.
    tokens: BTreeMap<String, String>,
    groups: BTreeMap<String, BTreeSet<String>>,
    roles: BTreeMap<String, RoleDef>,
    pub oidc: Vec<OidcIssuer>,
    /// People who signed in through an OpenID provider, with the groups its
    /// latest token gave them. Shared across reloads.
    directory: Arc<Directory>,
}

/// An OpenID provider whose ID tokens are accepted as bearer tokens.
#[derive(Debug, Clone)]
pub struct OidcIssuer {
    pub issuer: String,
    /// The public client hoist signs in as.
    pub client_id: String,
    /// Accepted `aud` values (the client id unless given).
    pub audiences: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub flows: Vec<String>,
    pub scopes: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Identities vouched for by an OpenID provider, as last seen.
#[derive(Debug, Default)]
pub struct Directory {
    seen: RwLock<HashMap<String, Seen>>,
}

#[derive(Debug, Clone)]
struct Seen {
    display_name: String,
    groups: BTreeSet<String>,
}

impl Directory {
    fn get(&self, user: &str) -> Option<Seen> {
        self.seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a request may wait for a decision before it times out.
    pub pending_ttl: Duration,
    /// How long an approver's claim on a request lasts.
    pub claim_ttl: Duration,
    /// Longest lifetime of one issued credential (never past the grant).
    pub credential_ttl: Duration,
    pub auditor_groups: Vec<String>,
    /// `iss` of issued credentials.
    pub issuer: String,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone)]
pub struct RoleDef {
    pub id: String,
    pub name: String,
    pub description: String,
    pub scope: String,
    pub eligible_users: BTreeSet<String>,
    pub eligible_groups: BTreeSet<String>,
    pub default_duration: Duration,
    pub max_duration: Duration,
    pub approvals: u32,
    pub approver_groups: Vec<String>,
    pub break_glass: bool,
    /// Empty means every eligible user may break glass.
    pub break_glass_groups: BTreeSet<String>,
    pub ticket_required: bool,
    pub ticket_pattern: Option<Regex>,
    pub min_justification: u32,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses policy text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, PolicyError> {
        let invalid = |offset: usize, reason: String| {
            let (line, column) = line_and_column(text, offset);
            PolicyError::Invalid {
                path: origin.to_string(),
                line,
                column,
                reason,
            }
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |span| span.start);
            invalid(offset, err.message().trim().to_string())
        })?;

        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, members) in &raw.groups {
            let set = groups.entry(name.clone()).or_default();
            for member in members.get_ref() {
                if !raw.users.contains_key(member) {
                    return Err(invalid(
                        members.span().start,
                        format!("group `{name}` names unknown user `{member}`"),
                    ));
                }
                set.insert(member.clone());
            }
        }
        let check_groups = |names: &[String], what: &str, offset: usize| match names
            .iter()
            .find(|group| !groups.contains_key(*group))
        {
            Some(group) => Err(invalid(
                offset,
                format!("{what} names unknown group `{group}`"),
            )),
            None => Ok(()),
        };

        let mut users = BTreeMap::new();
        let mut tokens = BTreeMap::new();
        for (id, user) in &raw.users {
            let offset = user.span().start;
            let user = user.get_ref();
            if !valid_name(id) {
                return Err(invalid(
                    offset,
                    format!(
                        "user name `{id}` may hold only letters, digits, `.`, `_`, `-` and `@`"
                    ),
                ));
            }
            if let Some(hash) = &user.token_sha256 {
                let hash = hash.to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(
                        offset,
                        format!(
                            "user `{id}`: token_sha256 must be 64 hex digits (see `hoistd hash-token`)"
                        ),
                    ));
                }
                if let Some(other) = tokens.insert(hash, id.clone()) {
                    return Err(invalid(
                        offset,
                        format!("users `{other}` and `{id}` have the same token"),
                    ));
                }
            }
            users.insert(
                id.clone(),
                User {
                    id: id.clone(),
                    display_name: user.name.clone().unwrap_or_else(|| id.clone()),
                },
            );
        }

        let settings_offset = raw.settings.span().start;
        let raw_settings = raw.settings.into_inner();
        check_groups(
            &raw_settings.auditor_groups,
            "settings.auditor_groups",
            settings_offset,
        )?;
        for (what, value) in [
            ("pending_ttl", raw_settings.pending_ttl),
            ("claim_ttl", raw_settings.claim_ttl),
            ("credential_ttl", raw_settings.credential_ttl),
        ] {
            if value.is_zero() {
                return Err(invalid(
                    settings_offset,
                    format!("settings.{what} must be longer than zero"),
                ));
            }
        }
        let settings = Settings {
            pending_ttl: raw_settings.pending_ttl,
            claim_ttl: raw_settings.claim_ttl,
            credential_ttl: raw_settings.credential_ttl,
            auditor_groups: raw_settings.auditor_groups,
            issuer: raw_settings.issuer,
        };

        let mut roles = BTreeMap::new();
        for role in raw.roles {
            let offset = role.span().start;
            let role = role.into_inner();
            let id = role.id;
            if !valid_name(&id) {
                return Err(invalid(
                    offset,
                    format!("role id `{id}` may hold only letters, digits, `.`, `_`, `-` and `@`"),
                ));
            }
            let what = format!("role `{id}`");
            check_groups(
                &role.eligible_groups,
                &format!("{what} eligible_groups"),
                offset,
            )?;
            check_groups(
                &role.approver_groups,
                &format!("{what} approver_groups"),
                offset,
            )?;
            check_groups(
                &role.break_glass_groups,
                &format!("{what} break_glass_groups"),
                offset,
            )?;
            if let Some(user) = role.eligible_users.iter().find(|u| !users.contains_key(*u)) {
                return Err(invalid(
                    offset,
                    format!("{what} eligible_users names unknown user `{user}`"),
                ));
            }
            if role.max_duration.is_zero() || role.default_duration.is_zero() {
                return Err(invalid(
                    offset,
                    format!("{what}: durations must be longer than zero"),
                ));
            }
            if role.default_duration > role.max_duration {
                return Err(invalid(
                    offset,
                    format!(
                        "{what}: default_duration {} is longer than max_duration {}",
                        humantime::format_duration(role.default_duration),
                        humantime::format_duration(role.max_duration)
                    ),
                ));
            }
            if role.approvals > 0 && role.approver_groups.is_empty() {
                return Err(invalid(
                    offset,
                    format!(
                        "{what} needs {} approvals but names no approver_groups",
                        role.approvals
                    ),
                ));
            }
            if !role.break_glass && !role.break_glass_groups.is_empty() {
                return Err(invalid(
                    offset,
                    format!("{what} has break_glass_groups but break_glass = false"),
                ));
            }
            let def = RoleDef {
                id: id.clone(),
                name: role.name.unwrap_or_else(|| id.clone()),
                description: role.description,
                scope: role.scope,
                eligible_users: role.eligible_users.into_iter().collect(),
                eligible_groups: role.eligible_groups.into_iter().collect(),
                default_duration: role.default_duration,
                max_duration: role.max_duration,
                approvals: role.approvals,
                approver_groups: role.approver_groups,
                break_glass: role.break_glass,
                break_glass_groups: role.break_glass_groups.into_iter().collect(),
                ticket_required: role.ticket_required,
                ticket_pattern: role.ticket_pattern.map(|p| p.0),
                min_justification: role.min_justification,
            };
            if roles.insert(id.clone(), def).is_some() {
                return Err(invalid(offset, format!("role `{id}` is defined twice")));
            }
        }

        let mut oidc = Vec::new();
        for issuer in raw.oidc {
            let offset = issuer.span().start;
            let issuer = issuer.into_inner();
            let url = url::Url::parse(&issuer.issuer).map_err(|err| {
                invalid(offset, format!("oidc issuer `{}`: {err}", issuer.issuer))
            })?;
            let loopback = url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(invalid(
                    offset,
                    format!(
                        "oidc issuer `{}` must use https (http only on loopback)",
                        issuer.issuer
                    ),
                ));
            }
            let mut algorithms = Vec::new();
            for name in &issuer.algorithms {
                let alg: jsonwebtoken::Algorithm = name.parse().map_err(|_| {
                    invalid(offset, format!("oidc algorithm `{name}` is not known"))
                })?;
                if matches!(
                    alg,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                ) {
                    return Err(invalid(
                        offset,
                        format!(
                            "oidc algorithm `{name}` is symmetric; only public-key algorithms are accepted"
                        ),
                    ));
                }
                algorithms.push(alg);
            }
            if let Some(flow) = issuer
                .flows
                .iter()
                .find(|f| !matches!(f.as_str(), "device" | "browser"))
            {
                return Err(invalid(
                    offset,
                    format!("oidc flow `{flow}` is not `device` or `browser`"),
                ));
            }
            oidc.push(OidcIssuer {
                audiences: if issuer.audiences.is_empty() {
                    vec![issuer.client_id.clone()]
                } else {
                    issuer.audiences
                },
                issuer: issuer.issuer.trim_end_matches('/').to_string(),
                client_id: issuer.client_id,
                username_claim: issuer.username_claim,
                groups_claim: issuer.groups_claim,
                algorithms,
                flows: issuer.flows,
                scopes: issuer.scopes,
                leeway: issuer.leeway,
            });
        }

        Ok(Policy {
            settings,
            users,
            tokens,
            groups,
            roles,
            oidc,
            directory: Arc::default(),
        })
    }

    /// Keeps the identities a previous policy learnt from OpenID providers.
    pub fn adopt_directory(&mut self, previous: &Policy) {
        self.directory = Arc::clone(&previous.directory);
    }

    /// Records who an OpenID provider says a user is, as of their latest token.
    pub fn vouch(&self, user: &str, display_name: &str, groups: BTreeSet<String>) {
        let seen = Seen {
            display_name: display_name.to_string(),
            groups,
        };
        self.directory
            .seen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string(), seen);
    }

    pub fn has_static_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// A local user or one an OpenID provider vouched for.
    pub fn knows(&self, user: &str) -> bool {
        self.users.contains_key(user) || self.directory.get(user).is_some()
    }

    pub fn display_name(&self, user: &str) -> Option<String> {
        match self.users.get(user) {
            Some(local) => Some(local.display_name.clone()),
            None => self.directory.get(user).map(|seen| seen.display_name),
        }
    }

    /// The user a static bearer token belongs to.
    pub fn user_for_token(&self, token: &str) -> Option<&User> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        self.tokens.get(&hash).and_then(|id| self.users.get(id))
    }

    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let claimed = self
            .directory
            .get(user)
            .map(|seen| seen.groups)
            .unwrap_or_default();
        self.groups
            .iter()
            .filter(|(name, members)| members.contains(user) || claimed.contains(*name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether the user is in any of the groups, by the policy file or by
    /// their OpenID provider's word.
    fn in_any(&self, user: &str, groups: impl IntoIterator<Item = impl AsRef<str>>) -> bool {
        let claimed = self.directory.get(user).map(|seen| seen.groups);
        groups.into_iter().any(|group| {
            let group = group.as_ref();
            self.groups
                .get(group)
                .is_some_and(|members| members.contains(user))
                || claimed.as_ref().is_some_and(|c| c.contains(group))
        })
    }

    pub fn role(&self, id: &str) -> Option<&RoleDef> {
        self.roles.get(id)
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleDef> {
        self.roles.values()
    }

    pub fn is_eligible(&self, user: &str, role: &RoleDef) -> bool {
        self.knows(user)
            && (role.eligible_users.contains(user) || self.in_any(user, &role.eligible_groups))
    }

    /// Whether `user` is one of the role's approvers. Whether they may review a
    /// given request also depends on not being its requester.
    pub fn is_approver(&self, user: &str, role: &RoleDef) -> bool {
        self.in_any(user, &role.approver_groups)
    }

    pub fn may_break_glass(&self, user: &str, role: &RoleDef) -> bool {
        role.break_glass
            && self.is_eligible(user, role)
            && (role.break_glass_groups.is_empty() || self.in_any(user, &role.break_glass_groups))
    }

    pub fn is_auditor(&self, user: &str) -> bool {
        self.in_any(user, &self.settings.auditor_groups)
    }

    /// Everyone who may approve requests for the role, as the policy stands.
    pub fn approvers_of(&self, role: &RoleDef) -> Vec<String> {
        let mut approvers = BTreeSet::new();
        for group in &role.approver_groups {
            if let Some(members) = self.groups.get(group) {
                approvers.extend(members.iter().cloned());
            }
        }
        let seen = self
            .directory
            .seen
            .read()
            .unwrap_or_else(|p| p.into_inner());
        for (user, identity) in seen.iter() {
            if role
                .approver_groups
                .iter()
                .any(|g| identity.groups.contains(g))
            {
                approvers.insert(user.clone());
            }
        }
        approvers.into_iter().collect()
    }

    /// The role as the caller sees it on the wire.
    pub fn role_view(&self, role: &RoleDef, caller: &str) -> Role {
        Role {
            id: role.id.clone(),
            name: role.name.clone(),
            description: role.description.clone(),
            scope: role.scope.clone(),
            default_duration_secs: role.default_duration.as_secs(),
            max_duration_secs: role.max_duration.as_secs(),
            approval: ApprovalRule {
                approvals: role.approvals,
                approver_groups: role.approver_groups.clone(),
                approvers: self.approvers_of(role),
            },
            break_glass: self.may_break_glass(caller, role),
            ticket: TicketRule {
                required: role.ticket_required,
                pattern: role.ticket_pattern.as_ref().map(|p| p.as_str().to_string()),
            },
            min_justification: role.min_justification,
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "default_settings")]
    settings: Spanned<RawSettings>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    users: BTreeMap<String, Spanned<RawUser>>,
    #[serde(default)]
    roles: Vec<Spanned<RawRole>>,
    #[serde(default)]
    oidc: Vec<Spanned<RawOidc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_username_claim")]
    username_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_flows")]
    flows: Vec<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    leeway: Duration,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}

fn default_flows() -> Vec<String> {
    ["device", "browser"].map(String::from).to_vec()
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .map(String::from)
        .to_vec()
}

fn default_settings() -> Spanned<RawSettings> {
    Spanned::new(0..0, RawSettings::default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    #[serde(deserialize_with = "duration")]
    pending_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    claim_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    credential_ttl: Duration,
    auditor_groups: Vec<String>,
    issuer: String,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            pending_ttl: Duration::from_secs(3600),
            claim_ttl: Duration::from_secs(600),
            credential_ttl: Duration::from_secs(300),
            auditor_groups: Vec::new(),
            issuer: "hoistd".to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Option<String>,
    token_sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: String,
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    eligible_users: Vec<String>,
    #[serde(default)]
    eligible_groups: Vec<String>,
    #[serde(deserialize_with = "duration")]
    default_duration: Duration,
    #[serde(deserialize_with = "duration")]
    max_duration: Duration,
    #[serde(default)]
    approvals: u32,
    #[serde(default)]
    approver_groups: Vec<String>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    break_glass_groups: Vec<String>,
    #[serde(default)]
    ticket_required: bool,
    #[serde(default)]
    ticket_pattern: Option<TicketPattern>,
    #[serde(default)]
    min_justification: u32,
}

/// A ticket pattern, anchored so it must match the whole reference.
struct TicketPattern(Regex);

impl<'de> Deserialize<'de> for TicketPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        let anchored = format!(
            "^(?:{})$",
            source.trim_start_matches('^').trim_end_matches('$')
        );
        Regex::new(&anchored)
            .map(TicketPattern)
            .map_err(|err| serde::de::Error::custom(format!("invalid ticket_pattern: {err}")))
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"30m\", \"2h\" or \"90s\"")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Duration, E> {
            humantime::parse_duration(value)
                .map_err(|err| E::custom(format!("invalid duration \"{value}\": {err}")))
        }
    }
    deserializer.deserialize_str(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[users.alice]
token_sha256 = "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"

[groups]
eng = ["alice"]

[[roles]]
id = "db"
eligible_groups = ["eng"]
default_duration = "30m"
max_duration = "1h"
"#;

    fn refused(text: &str) -> String {
        Policy::parse("p.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_policy_parses_with_defaults() {
        let policy = Policy::parse("p.toml", MINIMAL).unwrap();
        let role = policy.role("db").unwrap();
        assert_eq!(role.name, "db");
        assert_eq!(role.max_duration, Duration::from_secs(3600));
        assert!(policy.is_eligible("alice", role));
        assert!(!policy.is_approver("alice", role));
        assert_eq!(policy.settings.pending_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn static_tokens_are_matched_by_hash() {
        let policy = Policy::parse("p.toml", MINIMAL).unwrap();
        // sha256("test-token")
        assert!(policy.user_for_token("demo-alice").is_none());
        let hash = hex::encode(Sha256::digest(b"demo-alice"));
        let text = MINIMAL.replace(
            "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90",
            &hash,
        );
        let policy = Policy::parse("p.toml", &text).unwrap();
        assert_eq!(policy.user_for_token("demo-alice").unwrap().id, "alice");
    }

    #[test]
    fn syntax_errors_name_file_line_and_reason() {
        let err = refused("[users.alice]\nname = \"A\"\n\n[[roles]]\nid = \n");
        assert!(err.starts_with("p.toml:5:"), "{err}");
    }

    #[test]
    fn bad_durations_name_their_line() {
        let err = refused(&MINIMAL.replace("\"30m\"", "\"thirty\""));
        assert!(err.starts_with("p.toml:11:20:"), "{err}");
        assert!(err.contains("invalid duration \"thirty\""), "{err}");
    }

    #[test]
    fn default_longer_than_max_is_refused_at_the_role() {
        let err = refused(&MINIMAL.replace("\"30m\"", "\"2h\""));
        assert!(err.starts_with("p.toml:8:1:"), "{err}");
        assert!(
            err.contains("default_duration 2h is longer than max_duration 1h"),
            "{err}"
        );
    }

    #[test]
    fn unknown_references_are_refused() {
        assert!(
            refused(&MINIMAL.replace("eligible_groups = [\"eng\"]", "eligible_groups = [\"ops\"]"))
                .contains("unknown group `ops`")
        );
        assert!(
            refused(&MINIMAL.replace("eng = [\"alice\"]", "eng = [\"mallory\"]"))
                .contains("unknown user `mallory`")
        );
        assert!(refused(&format!("{MINIMAL}approvals = 1\n")).contains("names no approver_groups"));
        assert!(
            refused(&format!("{MINIMAL}colour = \"red\"\n")).contains("unknown field `colour`")
        );
    }

    #[test]
    fn ticket_patterns_match_whole_references() {
        let text = format!("{MINIMAL}ticket_required = true\nticket_pattern = \"INC-[0-9]+\"\n");
        let policy = Policy::parse("p.toml", &text).unwrap();
        let pattern = policy.role("db").unwrap().ticket_pattern.as_ref().unwrap();
        assert!(pattern.is_match("INC-42"));
        assert!(!pattern.is_match("xINC-42"));
        assert!(!pattern.is_match("INC-42 and more"));
        assert!(
            refused(&format!("{MINIMAL}ticket_pattern = \"(\"\n"))
                .contains("invalid ticket_pattern")
        );
    }

    #[test]
    fn the_shipped_policies_parse() {
        for file in ["policy.example.toml", "demo-policy.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../assets")
                .join(file);
            Policy::load(&path).unwrap_or_else(|err| panic!("{err}"));
        }
    }
}
