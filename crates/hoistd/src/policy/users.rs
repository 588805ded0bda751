//! The policy's `[users]` and `[groups]`: who exists, their static tokens,
//! their accounts elsewhere (provider identities, Slack), and which groups
//! they are in.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use super::{PolicyError, Source, User, reserved_name, valid_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    name: Option<String>,
    token_sha256: Option<String>,
    /// Provider identities that sign in as this user.
    #[serde(default)]
    identities: Vec<RawIdentity>,
    /// The Slack account that acts as this user when it presses hoist's
    /// Approve or Deny buttons.
    slack: Option<Spanned<RawSlack>>,
}

/// `{ team = "T...", user = "U..." }`: one person in one Slack workspace.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    team: String,
    user: String,
}

/// Whether `id` is a Slack id starting with one of `first`: upper-case
/// letters and digits, as Slack writes them.
fn slack_id(id: &str, first: &[u8]) -> bool {
    id.len() >= 2
        && id.len() <= 32
        && id.as_bytes().first().is_some_and(|b| first.contains(b))
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// `{ issuer = "...", subject = "..." }`: one person at one OpenID provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    issuer: String,
    subject: String,
}

/// Users, their static tokens and groups, each checked against the others.
pub(super) struct People {
    pub users: BTreeMap<String, User>,
    /// SHA-256 hex of each static token, to its user.
    pub tokens: BTreeMap<String, String>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Provider identities (issuer, subject) the policy links to its users.
    pub links: BTreeMap<(String, String), String>,
    /// Slack accounts (team, user) to the users they act as.
    pub slack: BTreeMap<(String, String), String>,
}

pub(super) fn people(
    source: &Source<'_>,
    raw_users: &BTreeMap<String, Spanned<RawUser>>,
    raw_groups: &BTreeMap<String, Spanned<Vec<String>>>,
) -> Result<People, PolicyError> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, members) in raw_groups {
        let set = groups.entry(name.clone()).or_default();
        for member in members.get_ref() {
            if !raw_users.contains_key(member) {
                return Err(source.invalid(
                    members.span().start,
                    format!("group `{name}` names unknown user `{member}`"),
                ));
            }
            set.insert(member.clone());
        }
    }

    let mut users = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut slack = BTreeMap::new();
    for (id, user) in raw_users {
        let offset = user.span().start;
        let user = user.get_ref();
        if !valid_name(id) {
            return Err(source.invalid(
                offset,
                format!("user name `{id}` may hold only letters, digits, `.`, `_`, `-` and `@`"),
            ));
        }
        if reserved_name(id) {
            return Err(source.invalid(
                offset,
                format!("user name `{id}` is reserved for the broker's own acts"),
            ));
        }
        if let Some(hash) = &user.token_sha256 {
            let hash = hash.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(source.invalid(
                    offset,
                    format!(
                        "user `{id}`: token_sha256 must be 64 hex digits (see `hoistd hash-token`)"
                    ),
                ));
            }
            if let Some(other) = tokens.insert(hash, id.clone()) {
                return Err(source.invalid(
                    offset,
                    format!("users `{other}` and `{id}` have the same token"),
                ));
            }
        }
        for identity in &user.identities {
            let issuer = identity.issuer.trim_end_matches('/').to_string();
            if identity.subject.is_empty() {
                return Err(
                    source.invalid(offset, format!("user `{id}`: an identity needs a subject"))
                );
            }
            let key = (issuer, identity.subject.clone());
            if let Some(other) = links.insert(key, id.clone()) {
                return Err(source.invalid(
                    offset,
                    format!(
                        "users `{other}` and `{id}` both link subject `{}` of `{}`",
                        identity.subject, identity.issuer
                    ),
                ));
            }
        }
        if let Some(account) = &user.slack {
            let at = account.span().start;
            let RawSlack { team, user: member } = account.get_ref();
            if !slack_id(team, b"TE") {
                return Err(source.invalid(
                    at,
                    format!(
                        "user `{id}`: slack team `{team}` is not a Slack team id (T... or E..., upper-case letters and digits)"
                    ),
                ));
            }
            if !slack_id(member, b"UW") {
                return Err(source.invalid(
                    at,
                    format!(
                        "user `{id}`: slack user `{member}` is not a Slack user id (U... or W..., upper-case letters and digits)"
                    ),
                ));
            }
            // An organisation names its people by their W... ids: a U...
            // id is one workspace's, and under an E... id would match
            // nobody (or, were it looked up there, someone else).
            if team.starts_with('E') && member.starts_with('U') {
                return Err(source.invalid(
                    at,
                    format!(
                        "user `{id}`: slack team `{team}` is an Enterprise Grid organisation, \
                         which names a member by their W... id, not `{member}`; name a U... id \
                         with its workspace's T... id"
                    ),
                ));
            }
            // A user id is one person wherever it is seen: a W... id across
            // an Enterprise Grid organisation, and a U... id too, in every
            // workspace of an organisation that shares it (Slack's ids are
            // unique across Slack). Named twice, one person would be two
            // reviewers by pressing in two workspaces.
            if let Some(((other_team, _), other)) =
                slack.iter().find(|((t, m), _)| m == member && t != team)
            {
                return Err(source.invalid(
                    at,
                    format!(
                        "users `{other}` and `{id}` both name Slack user `{member}` (of teams `{other_team}` and `{team}`): a Slack user id is one person, who would count as two reviewers"
                    ),
                ));
            }
            if let Some(other) = slack.insert((team.clone(), member.clone()), id.clone()) {
                return Err(source.invalid(
                    at,
                    format!(
                        "users `{other}` and `{id}` both name Slack user `{member}` of team `{team}`"
                    ),
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
    Ok(People {
        users,
        tokens,
        groups,
        links,
        slack,
    })
}
