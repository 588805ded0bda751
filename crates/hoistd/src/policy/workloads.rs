//! The policy's `[[workloads]]`: which workload identity tokens (a CI job's
//! ID token, a Kubernetes service-account token, a SPIFFE JWT-SVID) may be
//! exchanged for which roles, for how long, and whether a person approves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::issuers::OidcIssuer;
use super::{PolicyError, RoleDef, Source, duration, valid_name};

/// Longest task a rule may allow, in minutes: workload grants are for
/// seconds or minutes, never hours.
pub const MAX_TTL_MINUTES: u64 = 60;

/// How a role asked for by a workload is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    Automatic,
    Person,
}

/// One role a rule allows.
#[derive(Debug, Clone)]
pub struct WorkloadRole {
    pub role: String,
    pub max_ttl: Duration,
    pub approval: Approval,
}

/// A trust rule for workload identity tokens.
#[derive(Debug, Clone)]
pub struct WorkloadRule {
    pub name: String,
    /// The issuer's settings as the key cache takes them: audience,
    /// algorithms, leeway, fetch bounds.
    pub issuer: OidcIssuer,
    /// Claim name to its pattern (`*` any run of characters, `?` one).
    /// Always holds `sub`.
    pub claims: BTreeMap<String, String>,
    /// The claim that names one task: `jti` unless the rule says otherwise
    /// (e.g. a run id, so one run is one grant however many tokens it asks
    /// for).
    pub task_claim: String,
    /// A link approvers follow to the run, with `{claim}` placeholders.
    pub run_url: Option<String>,
    pub roles: Vec<WorkloadRole>,
    /// The claims that name who started the run (GitHub's `actor` and
    /// `triggering_actor`, GitLab's `user_login`), in the order approvers
    /// read them.
    pub actor_claims: Vec<String>,
    /// Those claims' values, mapped to the policy users they are: someone
    /// who started a run never approves its task.
    pub actors: BTreeMap<String, String>,
}

/// A token's audiences: `aud` as one string or a list.
pub fn audiences(claims: &serde_json::Value) -> Vec<String> {
    match claims.get("aud") {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) => many
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl WorkloadRule {
    pub fn role(&self, id: &str) -> Option<&WorkloadRole> {
        self.roles.iter().find(|r| r.role == id)
    }

    /// What of a token's verified claims this rule would no longer admit,
    /// named: its issuer, its audience, or a pinned claim (`sub` first).
    /// What a reload checks a workload's grant against.
    pub fn refusal(&self, claims: &serde_json::Value) -> Option<String> {
        let iss = claims["iss"].as_str().unwrap_or("").trim_end_matches('/');
        if iss != self.issuer.issuer {
            return Some("issuer".into());
        }
        let aud = audiences(claims);
        if !self.issuer.audiences.iter().any(|a| aud.contains(a)) {
            return Some("audience".into());
        }
        self.mismatch(claims)
            .map(|claim| format!("claim `{claim}`"))
    }

    /// The claim the token does not match, if any: `sub` first. A value
    /// with control or invisible characters matches no pin: approvers are
    /// shown it without them (`refs/heads/main` for `refs/heads/main` and
    /// a zero-width space), so a glob must not take what they cannot see.
    pub fn mismatch<'a>(&'a self, claims: &serde_json::Value) -> Option<&'a str> {
        let pinned = std::iter::once("sub").chain(
            self.claims
                .keys()
                .map(String::as_str)
                .filter(|name| *name != "sub"),
        );
        for name in pinned {
            let Some(pattern) = self.claims.get(name) else {
                continue;
            };
            let matched = claim_text(claims, name)
                .is_some_and(|value| all_visible(&value) && glob(pattern, &value));
            if !matched {
                return Some(name);
            }
        }
        None
    }

    /// The policy users who started the run `claims` are of, as
    /// [`WorkloadRule::actors`] maps the values of its actor claims; none
    /// when no value is mapped.
    pub fn started_by(&self, claims: &serde_json::Value) -> Vec<String> {
        let mut users: Vec<String> = self
            .actor_claims
            .iter()
            .filter_map(|name| claim_text(claims, name))
            .filter_map(|value| self.actors.get(&value).cloned())
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// The run link for a token's claims; a placeholder the token lacks
    /// leaves the link out, so approvers never follow a wrong one.
    pub fn run_link(&self, claims: &serde_json::Value) -> Option<String> {
        let template = self.run_url.as_ref()?;
        let mut link = String::new();
        let mut rest = template.as_str();
        while let Some(open) = rest.find('{') {
            link.push_str(&rest[..open]);
            let close = rest[open..].find('}')? + open;
            let value = claim_text(claims, &rest[open + 1..close])?;
            link.extend(
                url::form_urlencoded::byte_serialize(value.as_bytes()).map(|part| {
                    // A path such as `acme/app` stays readable.
                    part.replace("%2F", "/")
                }),
            );
            rest = &rest[close + 1..];
        }
        link.push_str(rest);
        Some(link)
    }
}

/// Whether `value` shows as it is: no control or invisible characters.
fn all_visible(value: &str) -> bool {
    value.chars().all(|c| !c.is_control())
        && hoist_api::text::visible_chars(value.chars()).eq(value.chars())
}

/// A claim's value as text: strings as they are, numbers and booleans
/// written out; anything else has no text to match.
pub fn claim_text(claims: &serde_json::Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `text` matches `pattern` as a whole: `*` is any run of
/// characters (`/` included), `?` exactly one, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    name: String,
    issuer: String,
    audience: String,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    #[serde(default = "default_task_claim")]
    task_claim: String,
    #[serde(default)]
    run_url: Option<String>,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    leeway: Duration,
    #[serde(default = "default_keys_timeout", deserialize_with = "duration")]
    keys_timeout: Duration,
    #[serde(default = "default_keys_refetch_after", deserialize_with = "duration")]
    keys_refetch_after: Duration,
    #[serde(default, deserialize_with = "super::tiers::optional_duration")]
    keys_ttl: Option<Duration>,
    #[serde(
        default = "super::issuers::default_keys_max_age",
        deserialize_with = "duration"
    )]
    keys_max_age: Duration,
    #[serde(default)]
    roles: Vec<RawWorkloadRole>,
    #[serde(default)]
    actor_claims: Vec<String>,
    #[serde(default)]
    actors: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkloadRole {
    role: String,
    max_ttl_minutes: u64,
    /// Unset: a person's approval if the role asks people for any, else
    /// automatic. A role's own approvals are never waived unless written.
    #[serde(default)]
    approval: Option<Approval>,
}

/// An issuer that signs the jobs (or the accounts) of everyone on a hosted
/// service: a rule trusting one must pin whose, or any account there could
/// match it.
struct Shared {
    issuer: &'static str,
    /// The prefix of a `sub` that names the owner, and what ends the
    /// owner's name there; none where `sub` names no owner (a Google
    /// account's number), so that only an exact `sub` pins one.
    owner_in_sub: Option<(&'static str, char)>,
    /// Whether `sub` goes on, after the owner, with the name of one of
    /// theirs (a repository or project) ended by `:`: `repo:acme/app*`
    /// matches `acme/app-internal`'s jobs as well as `acme/app`'s.
    named_after_owner: bool,
    /// Claims that pin the owner when written exactly.
    owner_claims: &'static [&'static str],
}

const SHARED_ISSUERS: &[Shared] = &[
    Shared {
        issuer: "https://token.actions.githubusercontent.com",
        owner_in_sub: Some(("repo:", '/')),
        named_after_owner: true,
        owner_claims: &[
            "repository_owner",
            "repository_owner_id",
            "repository",
            "repository_id",
        ],
    },
    Shared {
        issuer: "https://gitlab.com",
        owner_in_sub: Some(("project_path:", '/')),
        named_after_owner: true,
        owner_claims: &[
            "namespace_path",
            "namespace_id",
            "project_path",
            "project_id",
        ],
    },
    Shared {
        issuer: "https://agent.buildkite.com",
        owner_in_sub: Some(("organization:", ':')),
        named_after_owner: false,
        owner_claims: &["organization_slug", "organization_id"],
    },
    Shared {
        issuer: "https://app.terraform.io",
        owner_in_sub: Some(("organization:", ':')),
        named_after_owner: false,
        owner_claims: &["terraform_organization_name", "terraform_organization_id"],
    },
    // Any Google account, or any project's service account, gets ID
    // tokens for any audience it names.
    Shared {
        issuer: "https://accounts.google.com",
        owner_in_sub: None,
        named_after_owner: false,
        owner_claims: &["email", "hd"],
    },
];

/// Why a rule trusting a shared issuer does not pin an owner, if it does
/// not: its `sub` must name the owner before any wildcard
/// (`repo:acme/*`, not `repo:acme*` or `repo:*`), or an owner claim must
/// be pinned exactly. A `*` within a repository's name in `sub` must be
/// followed by the `:` that ends the name (`repo:acme/app*:*`), so that it
/// is clearly meant to match other repositories.
fn shared_issuer_unpinned(
    issuer: &str,
    sub: &str,
    claims: &BTreeMap<String, String>,
) -> Option<String> {
    let shared = SHARED_ISSUERS
        .iter()
        .find(|shared| issuer.trim_end_matches('/') == shared.issuer)?;
    let pinned = |name: &&str| {
        claims
            .get(*name)
            .is_some_and(|p| !p.is_empty() && !p.contains(['*', '?']))
    };
    let owner_claim = shared.owner_claims.iter().any(pinned);
    let owners = shared.owner_claims.join(", ");
    let Some((prefix, end)) = shared.owner_in_sub else {
        return (sub.contains(['*', '?']) && !owner_claim).then(|| {
            format!(
                "{issuer} signs tokens for every account it hosts, and `sub = \"{sub}\"` does \
                 not name one: write the account's `sub` exactly, or pin one of {owners} exactly"
            )
        });
    };
    let literal = sub.split(['*', '?']).next().unwrap_or_default();
    let owner_in_sub = literal
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.find(end).is_some_and(|at| at > 0));
    if !owner_in_sub && !owner_claim {
        return Some(format!(
            "{issuer} signs the jobs of every account it hosts, and `sub = \"{sub}\"` does not \
             name whose: write the owner before any wildcard (`{prefix}OWNER{end}...`), or pin \
             one of {owners} exactly"
        ));
    }
    let named = sub
        .strip_prefix(prefix)
        .filter(|_| shared.named_after_owner)?;
    let star = named.find('*')?;
    let before = &named[..star];
    let within_name = !named.contains(':') && before.contains(end) && !before.ends_with(end);
    within_name.then(|| {
        let name = before;
        format!(
            "`sub = \"{sub}\"`: its `*` goes on from within a name, so it matches every \
             repository or project whose name begins `{name}` (its owner's other ones too), and \
             any of their jobs: write `{prefix}{name}:*` for the jobs of `{name}`, or \
             `{prefix}{name}*:*` if every such one is meant"
        )
    })
}

/// Why a rule's `actor_claims` and `actors` do not work together, if they
/// do not: each needs the other, a claim is named once, and every value
/// maps to a user's id.
fn unmapped_actors(claims: &[String], actors: &BTreeMap<String, String>) -> Option<String> {
    if claims.is_empty() != actors.is_empty() {
        return Some(if claims.is_empty() {
            "[workloads.actors] maps who started a run, but no actor_claims names the claims \
             that say it (e.g. actor_claims = [\"actor\", \"triggering_actor\"])"
                .into()
        } else {
            "actor_claims names who started a run, but [workloads.actors] maps none of them to \
             a user: without it, anyone who starts a run could approve its task"
                .into()
        });
    }
    let mut seen = BTreeSet::new();
    if let Some(name) = claims.iter().find(|name| !seen.insert(name.as_str())) {
        return Some(format!("actor_claims names `{name}` twice"));
    }
    if claims.iter().any(|name| name.is_empty()) {
        return Some("actor_claims names an empty claim".into());
    }
    if actors.keys().any(|actor| actor.is_empty()) {
        return Some("[workloads.actors] maps an empty value".into());
    }
    let (actor, user) = actors.iter().find(|(_, user)| !valid_name(user))?;
    Some(format!(
        "[workloads.actors] maps `{actor}` to `{user}`, which is not a user id (letters, \
         digits, `.`, `_`, `-` and `@`)"
    ))
}

fn default_task_claim() -> String {
    "jti".into()
}
fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// The most a workload rule's `leeway` may be. Leeway allows for clocks
/// that disagree, not for late tokens: an exchange is remembered for a day
/// past its token's expiry (`broker::EXCHANGES_KEPT`), and a token accepted
/// later than that could be exchanged again.
pub const MAX_WORKLOAD_LEEWAY: Duration = Duration::from_secs(3_600);

fn default_keys_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_keys_refetch_after() -> Duration {
    Duration::from_secs(30)
}

/// Checks each rule: a unique name, an https issuer (http only on
/// loopback), an audience no `[[oidc]]` issuer accepts for people, a pinned
/// `sub`, public-key algorithms, known roles with a maximum in minutes, and
/// approvers for roles a person must approve.
pub(super) fn workloads(
    source: &Source<'_>,
    raw: Vec<Spanned<RawWorkload>>,
    oidc: &[OidcIssuer],
    roles: &BTreeMap<String, RoleDef>,
) -> Result<Vec<WorkloadRule>, PolicyError> {
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for rule in raw {
        let offset = rule.span().start;
        let rule = rule.into_inner();
        let bad = |reason: String| source.invalid(offset, reason);
        if !valid_name(&rule.name) {
            return Err(bad(format!(
                "workload rule name `{}` may hold only letters, digits, `.`, `_`, `-` and `@`",
                rule.name
            )));
        }
        let what = format!("workload rule `{}`", rule.name);
        if !names.insert(rule.name.clone()) {
            return Err(bad(format!("{what} is defined twice")));
        }
        let issuer = rule.issuer.trim_end_matches('/').to_string();
        super::issuers::check_url(&issuer).map_err(|reason| bad(format!("{what}: {reason}")))?;
        if rule.audience.is_empty() {
            return Err(bad(format!("{what} needs an audience")));
        }
        if let Some(people) = oidc
            .iter()
            .find(|i| i.issuer == issuer && i.audiences.contains(&rule.audience))
        {
            return Err(bad(format!(
                "{what}: audience `{}` is one `{}` signs people in with; workload tokens need an \
                 audience of their own, so a person's ID token is never a workload's, nor the reverse",
                rule.audience, people.issuer
            )));
        }
        match rule.claims.get("sub") {
            None => {
                return Err(bad(format!(
                    "{what} does not pin `sub`: [workloads.claims] must name the subject (exactly \
                     or as a glob), or any workload of the issuer could use it"
                )));
            }
            Some(pattern) if pattern.chars().all(|c| matches!(c, '*' | '?')) => {
                return Err(bad(format!(
                    "{what}: `sub = \"{pattern}\"` matches any subject; pin it"
                )));
            }
            Some(pattern) => {
                if let Some(why) = shared_issuer_unpinned(&rule.issuer, pattern, &rule.claims) {
                    return Err(bad(format!("{what}: {why}")));
                }
            }
        }
        if let Some((name, _)) = rule.claims.iter().find(|(_, p)| p.is_empty()) {
            return Err(bad(format!("{what}: claim `{name}` has an empty pattern")));
        }
        if rule.task_claim.is_empty() {
            return Err(bad(format!("{what}: task_claim is empty")));
        }
        if let Some(reason) = unmapped_actors(&rule.actor_claims, &rule.actors) {
            return Err(bad(format!("{what}: {reason}")));
        }
        let algorithms = super::issuers::algorithms(&rule.algorithms)
            .map_err(|reason| bad(format!("{what}: {reason}")))?;
        if rule.leeway > MAX_WORKLOAD_LEEWAY {
            return Err(bad(format!(
                "{what}: leeway {}s is above the most allowed, {}s: it allows for clock skew, \
                 not for expired tokens",
                rule.leeway.as_secs(),
                MAX_WORKLOAD_LEEWAY.as_secs()
            )));
        }
        if rule.keys_timeout.is_zero() || rule.keys_refetch_after < Duration::from_secs(1) {
            return Err(bad(format!(
                "{what}: keys_timeout must be above zero and keys_refetch_after at least 1s"
            )));
        }
        let keys_ttl =
            super::issuers::key_ages(rule.keys_refetch_after, rule.keys_ttl, rule.keys_max_age)
                .map_err(|reason| bad(format!("{what}: {reason}")))?;
        if rule.roles.is_empty() {
            return Err(bad(format!("{what} allows no roles")));
        }
        let mut allowed = Vec::new();
        for raw_role in rule.roles {
            let Some(role) = roles.get(&raw_role.role) else {
                return Err(bad(format!(
                    "{what} names unknown role `{}`",
                    raw_role.role
                )));
            };
            if raw_role.max_ttl_minutes == 0 || raw_role.max_ttl_minutes > MAX_TTL_MINUTES {
                return Err(bad(format!(
                    "{what}: role `{}` max_ttl_minutes must be 1 to {MAX_TTL_MINUTES}, not {}",
                    role.id, raw_role.max_ttl_minutes
                )));
            }
            let max_ttl = Duration::from_secs(raw_role.max_ttl_minutes * 60);
            if max_ttl > role.max_duration {
                return Err(bad(format!(
                    "{what}: role `{}` max_ttl_minutes {} is longer than the role's \
                     max_duration of {}",
                    role.id,
                    raw_role.max_ttl_minutes,
                    humantime::format_duration(role.max_duration)
                )));
            }
            if !role.workloads {
                return Err(bad(format!(
                    "{what}: role `{}` (tier {}) allows no workloads",
                    role.id, role.tier
                )));
            }
            let approval = raw_role.approval.unwrap_or(if role.approvals > 0 {
                Approval::Person
            } else {
                Approval::Automatic
            });
            if approval == Approval::Automatic && !role.auto_approve {
                return Err(bad(format!(
                    "{what}: role `{}` is tier {}, which allows no automatic approval \
                     (approval = \"person\")",
                    role.id, role.tier
                )));
            }
            if approval == Approval::Person && role.approver_groups.is_empty() {
                return Err(bad(format!(
                    "{what}: role `{}` needs a person's approval, but the role has no \
                     approver_groups",
                    role.id
                )));
            }
            allowed.push(WorkloadRole {
                role: role.id.clone(),
                max_ttl,
                approval,
            });
        }
        rules.push(WorkloadRule {
            issuer: OidcIssuer {
                issuer,
                client_id: rule.audience.clone(),
                audiences: vec![rule.audience],
                username_claim: "sub".into(),
                groups_claim: String::new(),
                algorithms,
                flows: Vec::new(),
                scopes: Vec::new(),
                leeway: rule.leeway,
                keys_timeout: rule.keys_timeout,
                keys_refetch_after: rule.keys_refetch_after,
                keys_ttl,
                keys_max_age: rule.keys_max_age,
            },
            name: rule.name,
            claims: rule.claims,
            task_claim: rule.task_claim,
            run_url: rule.run_url,
            roles: allowed,
            actor_claims: rule.actor_claims,
            actors: rule.actors,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_the_whole_text() {
        assert!(glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/app:ref:refs/heads/main"
        ));
        assert!(!glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/app:ref:refs/heads/dev"
        ));
        assert!(glob(
            "system:serviceaccount:ci:deploy?",
            "system:serviceaccount:ci:deploy1"
        ));
        assert!(!glob("deploy", "deploy-bot"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b", "a"));
        assert!(glob("*", ""));
    }
}
