//! The policy file: who exists, which groups they are in, which roles they may
//! request and on what terms. Parsed once at start and again on SIGHUP; a bad
//! file is refused with its path, line and reason.

mod issuers;
mod notify;
mod roles;
mod settings;
mod targets;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;
mod tiers;
mod users;
mod workloads;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hoist_api::{ApprovalRule, Role, RoleTarget, TicketRule};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::store::Remembered;

pub use issuers::OidcIssuer;
pub(crate) use issuers::provider_url;
pub use roles::{RoleAccess, RoleDef};
pub use settings::{Rate, Settings};
pub use tiers::{TIERS, Tier, UNTIERED};
pub use workloads::{
    Approval, MAX_WORKLOAD_LEEWAY, WorkloadRole, WorkloadRule, audiences, claim_text,
};

/// A policy that passed every check.
#[derive(Debug, Clone)]
pub struct Policy {
    pub settings: Settings,
    users: BTreeMap<String, User>,
    /// SHA-256 hex of each static token, to its user.
    tokens: BTreeMap<String, String>,
    groups: BTreeMap<String, BTreeSet<String>>,
    roles: BTreeMap<String, RoleDef>,
    /// What each risk tier demands, by tier number.
    pub tiers: [Tier; TIERS as usize],
    pub oidc: Vec<OidcIssuer>,
    /// Trust rules for workload identity tokens, in the file's order.
    pub workloads: Vec<WorkloadRule>,
    /// The systems grants reach, by name.
    pub targets: crate::target::Targets,
    /// Where people are told when something needs them.
    pub notify: crate::notify::Channels,
    /// Provider identities (issuer, subject) linked to users of the policy.
    links: BTreeMap<(String, String), String>,
    /// Slack accounts (team, user) to the users they act as.
    slack: BTreeMap<(String, String), String>,
    /// People who signed in through an OpenID provider, with the groups its
    /// latest token gave them. Shared across reloads.
    directory: Arc<Directory>,
    /// The first 16 hex digits of the SHA-256 of the policy's text.
    digest: String,
}

/// Identities vouched for by an OpenID provider, as last seen.
#[derive(Debug, Default)]
pub struct Directory {
    seen: RwLock<HashMap<String, Seen>>,
}

#[derive(Debug, Clone)]
struct Seen {
    /// The provider that said it (`iss`, as the policy names it): what it
    /// said counts only while the policy trusts it.
    issuer: String,
    display_name: String,
    groups: BTreeSet<String>,
    /// When the provider said so (see [`Remembered::as_of`]).
    as_of: Option<DateTime<Utc>>,
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
pub struct User {
    pub id: String,
    pub display_name: String,
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
    /// A role's access that its target, asked at load, refused.
    #[error("{position}: {reason}")]
    Target { position: String, reason: String },
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses policy text; `origin` names it in errors. Each section is
    /// checked in turn, against the sections before it.
    pub fn parse(origin: &str, text: &str) -> Result<Self, PolicyError> {
        let source = Source { origin, text };
        let raw: RawPolicy = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |span| span.start);
            source.invalid(offset, err.message().trim().to_string())
        })?;
        let people = users::people(&source, &raw.users, &raw.groups)?;
        let settings = settings::settings(&source, raw.settings, &people.groups)?;
        let targets = targets::targets(&source, raw.targets)?;
        let tiers = tiers::tiers(&source, raw.tiers)?;
        let roles = roles::roles(&source, raw.roles, &people, &targets, &tiers)?;
        let oidc = issuers::issuers(&source, raw.oidc)?;
        let workloads = workloads::workloads(&source, raw.workloads, &oidc, &roles)?;
        let notify = notify::channels(&source, raw.notify, &people.groups, &roles)?;
        if let Some(((issuer, _), user)) = people
            .links
            .iter()
            .find(|((issuer, _), _)| !oidc.iter().any(|i| i.issuer == *issuer))
        {
            let offset = raw.users.get(user).map_or(0, |u| u.span().start);
            return Err(source.invalid(
                offset,
                format!("user `{user}` links an identity at `{issuer}`, which no [[oidc]] names"),
            ));
        }
        Ok(Policy {
            settings,
            users: people.users,
            tokens: people.tokens,
            groups: people.groups,
            roles,
            tiers,
            oidc,
            workloads,
            targets,
            notify,
            links: people.links,
            slack: people.slack,
            directory: Arc::default(),
            digest: hex::encode(&Sha256::digest(text.as_bytes())[..8]),
        })
    }

    /// Names the text this policy was read from: the first 16 hex digits
    /// of its SHA-256. Instances on one database should all show the same
    /// (`hoistd check-config`, `hoistd_policy_info` in `/metrics`, the log
    /// line of each load): two that differ decide by different rules.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Checks each role's access against its target where the target
    /// answers (e.g. that every PostgreSQL role `member_of` names exists),
    /// refusing with the role's `file:line:column`. A target that cannot be
    /// reached now is logged, not refused: it may be down at activation too,
    /// which the lifecycle handles; the other roles at that target are not
    /// checked either, so that one target that does not answer costs its
    /// timeouts once, not once a role.
    pub async fn check_targets(&self) -> Result<(), PolicyError> {
        let mut unreachable = std::collections::HashSet::new();
        for role in self.roles.values() {
            let Some(access) = &role.access else {
                continue;
            };
            let Some(target) = self.targets.get(&access.target) else {
                continue;
            };
            if unreachable.contains(&access.target) {
                continue;
            }
            match target.validate(&access.access).await {
                Ok(()) => {}
                Err(err) if err.is_unreachable() => {
                    tracing::warn!(
                        target = %access.target,
                        role = %role.id,
                        error = %err,
                        "target not checked at load; grants wait for it"
                    );
                    unreachable.insert(access.target.clone());
                }
                Err(err) => {
                    return Err(PolicyError::Target {
                        position: access.position.clone(),
                        reason: format!("role `{}`: {err}", role.id),
                    });
                }
            }
        }
        Ok(())
    }

    /// Keeps the identities a previous policy learnt from OpenID providers.
    pub fn adopt_directory(&mut self, previous: &Policy) {
        self.directory = Arc::clone(&previous.directory);
    }

    /// The policy user a provider identity is linked to, if any.
    pub fn linked(&self, issuer: &str, subject: &str) -> Option<&str> {
        self.links
            .get(&(issuer.to_string(), subject.to_string()))
            .map(String::as_str)
    }

    /// The policy user a Slack account (team, user) acts as, if any.
    pub fn slack_user(&self, team: &str, user: &str) -> Option<&str> {
        self.slack
            .get(&(team.to_string(), user.to_string()))
            .map(String::as_str)
    }

    /// Whether the policy itself defines the user. Such a user's groups are
    /// the policy's alone, and a provider identity acts as them only where
    /// the policy links it.
    pub fn defines(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The user the policy defines whose name is `user`'s but for case, if
    /// any and not `user` itself.
    pub fn defines_but_for_case(&self, user: &str) -> Option<&str> {
        self.users
            .keys()
            .find(|defined| defined.as_str() != user && defined.eq_ignore_ascii_case(user))
            .map(String::as_str)
    }

    /// Records who an OpenID provider says a user is, as of the token that
    /// says it (`as_of`), unless what is known of them is newer: a token
    /// issued before another that was seen says nothing new; of two dated
    /// the same, only the groups both name count. Never for a
    /// user the policy defines: a token's groups must not extend them.
    /// Whether the store should keep it (see [`Policy::recall`]): when it
    /// changed what was known, or is a newer token's word.
    /// Nor for a provider the policy no longer trusts.
    pub fn vouch(
        &self,
        user: &str,
        issuer: &str,
        display_name: &str,
        groups: BTreeSet<String>,
        as_of: Option<DateTime<Utc>>,
    ) -> bool {
        if self.defines(user) || !self.trusts(issuer) {
            return false;
        }
        let mut seen = Seen {
            issuer: issuer.to_string(),
            display_name: display_name.to_string(),
            groups,
            as_of,
        };
        let mut directory = self
            .directory
            .seen
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(was) = directory.get(user).filter(|was| was.issuer == seen.issuer) {
            if was.as_of > seen.as_of {
                return false;
            }
            if was.as_of == seen.as_of {
                if seen.as_of.is_some() {
                    // Two words dated the same second (`iat`): which is the
                    // later cannot be told, so only what both say counts.
                    // Else an earlier token presented again would undo a
                    // removal, and back and forth.
                    seen.groups = was.groups.intersection(&seen.groups).cloned().collect();
                }
                if was.display_name == seen.display_name && was.groups == seen.groups {
                    return false;
                }
            }
        }
        directory.insert(user.to_string(), seen);
        true
    }

    /// Takes in what a provider last said of `user`, as the store kept it,
    /// unless this instance has heard newer from them: another instance (or
    /// this one before a restart) may have seen a later token, and a user
    /// who is not the caller is weighed by their latest word, not by what
    /// this instance happened to see last, nor taken for a stranger.
    pub fn recall(&self, user: &str, seen: &Remembered) {
        if self.defines(user) {
            return;
        }
        self.vouch(
            user,
            &seen.issuer,
            &seen.display_name,
            seen.groups.iter().cloned().collect(),
            seen.as_of,
        );
    }

    /// Whether the policy trusts the OpenID provider `issuer`.
    pub fn trusts(&self, issuer: &str) -> bool {
        let issuer = issuer.trim_end_matches('/');
        self.oidc.iter().any(|known| known.issuer == issuer)
    }

    /// What a provider the policy trusts last said of `user`. The directory
    /// outlives reloads: a provider taken out of the policy vouches for no
    /// one any more, from that reload on.
    fn seen(&self, user: &str) -> Option<Seen> {
        self.directory
            .get(user)
            .filter(|seen| self.trusts(&seen.issuer))
    }

    /// What is known of `user` from their provider, for the store.
    pub fn remembered(&self, user: &str) -> Option<Remembered> {
        self.seen(user).map(|seen| Remembered {
            issuer: seen.issuer,
            display_name: seen.display_name,
            groups: seen.groups.into_iter().collect(),
            as_of: seen.as_of,
        })
    }

    pub fn has_static_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// A local user or one an OpenID provider vouched for.
    pub fn knows(&self, user: &str) -> bool {
        self.users.contains_key(user) || self.seen(user).is_some()
    }

    pub fn display_name(&self, user: &str) -> Option<String> {
        match self.users.get(user) {
            Some(local) => Some(local.display_name.clone()),
            None => self.seen(user).map(|seen| seen.display_name),
        }
    }

    /// The user a static bearer token belongs to.
    pub fn user_for_token(&self, token: &str) -> Option<&User> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        self.tokens.get(&hash).and_then(|id| self.users.get(id))
    }

    /// The groups a provider last said a user is in; none for a user the
    /// policy defines (a directory kept across reloads may remember them from
    /// before the policy named them).
    fn claimed_groups(&self, user: &str) -> Option<BTreeSet<String>> {
        if self.defines(user) {
            return None;
        }
        self.seen(user).map(|seen| seen.groups)
    }

    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let claimed = self.claimed_groups(user).unwrap_or_default();
        self.groups
            .iter()
            .filter(|(name, members)| members.contains(user) || claimed.contains(*name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether the user is in any of the groups, by the policy file or by
    /// their OpenID provider's word.
    fn in_any(&self, user: &str, groups: impl IntoIterator<Item = impl AsRef<str>>) -> bool {
        let claimed = self.claimed_groups(user);
        groups.into_iter().any(|group| {
            let group = group.as_ref();
            self.groups
                .get(group)
                .is_some_and(|members| members.contains(user))
                || claimed.as_ref().is_some_and(|c| c.contains(group))
        })
    }

    /// The rule a workload principal (`workload:<rule>:<sub>`) was admitted by.
    pub fn workload_rule_of(&self, principal: &str) -> Option<&WorkloadRule> {
        let rest = principal.strip_prefix(hoist_api::WORKLOAD_PREFIX)?;
        let (name, _) = rest.split_once(':')?;
        self.workloads.iter().find(|rule| rule.name == name)
    }

    pub fn role(&self, id: &str) -> Option<&RoleDef> {
        self.roles.get(id)
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleDef> {
        self.roles.values()
    }

    /// What the operator should hear of though the policy loads (see
    /// [`TargetKind::cautions`](crate::target::TargetKind::cautions)).
    pub fn cautions(&self) -> Vec<String> {
        let shared_name = (!self.targets.is_empty()
            && self.settings.issuer == settings::DEFAULT_ISSUER)
            .then(|| {
                format!(
                    "settings.issuer is the default `{}`: targets label the access they make \
                     with it, so another deployment left at the default that shares one of \
                     these targets (a staging hoistd on the same PostgreSQL cluster or OpenBao) \
                     takes this one's access for its own, and removes it; give this deployment \
                     a name of its own",
                    settings::DEFAULT_ISSUER
                )
            });
        shared_name
            .into_iter()
            .chain(self.targets.iter().flat_map(|target| target.cautions()))
            .collect()
    }

    pub fn is_eligible(&self, user: &str, role: &RoleDef) -> bool {
        if hoist_api::is_workload(user) {
            // The principal is `workload:<rule>:<sub>`: the rule must still
            // allow the role and still pin a subject that matches, so a
            // rule narrowed at a reload ends what it no longer allows.
            let subject = user
                .strip_prefix(hoist_api::WORKLOAD_PREFIX)
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, subject)| subject);
            return self.workload_rule_of(user).is_some_and(|rule| {
                rule.role(&role.id).is_some()
                    && subject.is_some_and(|subject| {
                        rule.claims
                            .get("sub")
                            .is_some_and(|pattern| workloads::glob(pattern, subject))
                    })
            });
        }
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

    /// Whether `user` may hold a grant of `role`: a break-glass one only
    /// while they may still break glass, as its activation required.
    pub fn may_hold(&self, user: &str, role: &RoleDef, break_glass: bool) -> bool {
        if break_glass {
            self.may_break_glass(user, role)
        } else {
            self.is_eligible(user, role)
        }
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
            if !self.defines(user)
                && self.trusts(&identity.issuer)
                && role
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
            target: role.access.as_ref().map(|access| RoleTarget {
                name: access.target.clone(),
                kind: access.kind.to_string(),
                // Who an ssh role's certificates log in as, for the
                // holder's Grants screen; other kinds say nothing here.
                principals: access.access["principals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect(),
            }),
            tier: role.shown_tier(),
        }
    }
}

/// The text being parsed and what to call it, so an error can point at
/// `origin:line:column`.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn invalid(&self, offset: usize, reason: String) -> PolicyError {
        let (line, column) = hoist_api::text::line_and_column(self.text, offset);
        PolicyError::Invalid {
            path: self.origin.to_string(),
            line,
            column,
            reason,
        }
    }

    /// Refuses a list that names a group the policy does not define.
    fn known_groups(
        &self,
        groups: &BTreeMap<String, BTreeSet<String>>,
        names: &[String],
        what: &str,
        offset: usize,
    ) -> Result<(), PolicyError> {
        match names.iter().find(|group| !groups.contains_key(*group)) {
            Some(group) => {
                Err(self.invalid(offset, format!("{what} names unknown group `{group}`")))
            }
            None => Ok(()),
        }
    }
}

/// Whether `name` is the broker's own actor name, in any case: a user by
/// that name would pass for the broker in the audit log, and read its
/// entries about everyone.
pub fn reserved_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(hoist_api::SYSTEM_ACTOR)
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
    #[serde(default = "settings::default_settings")]
    settings: Spanned<settings::RawSettings>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    users: BTreeMap<String, Spanned<users::RawUser>>,
    #[serde(default)]
    tiers: BTreeMap<String, Spanned<tiers::RawTier>>,
    #[serde(default)]
    roles: Vec<Spanned<roles::RawRole>>,
    #[serde(default)]
    oidc: Vec<Spanned<issuers::RawOidc>>,
    #[serde(default)]
    targets: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    workloads: Vec<Spanned<workloads::RawWorkload>>,
    #[serde(default)]
    notify: Vec<Spanned<notify::RawNotify>>,
}

/// The longest duration a policy may write anywhere: what the API allows
/// a grant (366 days). Every time the broker computes from a policy's
/// durations then stays far inside what its clocks can count.
const MAX_POLICY_DURATION: Duration = Duration::from_secs(hoist_api::MAX_DURATION_SECS);

/// A policy's duration ("30m", "2h", "90s"), at most [`MAX_POLICY_DURATION`].
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(value)
        .map_err(|err| format!("invalid duration \"{value}\": {err}"))?;
    if parsed > MAX_POLICY_DURATION {
        return Err(format!(
            "invalid duration \"{value}\": a policy's durations are at most 366 days"
        ));
    }
    Ok(parsed)
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"30m\", \"2h\" or \"90s\"")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Duration, E> {
            parse_duration(value).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Visitor)
}
