//! The policy's `[[roles]]`: what may be requested, by whom, on what terms.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::users::People;
use super::{PolicyError, Source, duration, valid_name};
use crate::target::Targets;

/// What a role grants at its target: the target, and its `[roles.access]`
/// as the kind checked it.
#[derive(Debug, Clone)]
pub struct RoleAccess {
    pub target: String,
    pub kind: &'static str,
    pub access: serde_json::Value,
    /// `file:line:column` of the role, for refusals found online.
    pub position: String,
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
    /// Where the role's grants reach, if anywhere but a signed credential.
    pub access: Option<RoleAccess>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
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
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    access: Option<toml::Table>,
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
/// Checks each role against the policy's users and groups.
pub(super) fn roles(
    source: &Source<'_>,
    raw: Vec<Spanned<RawRole>>,
    people: &People,
    targets: &Targets,
) -> Result<BTreeMap<String, RoleDef>, PolicyError> {
    let mut roles = BTreeMap::new();
    for role in raw {
        let offset = role.span().start;
        let role = role.into_inner();
        let id = role.id;
        if !valid_name(&id) {
            return Err(source.invalid(
                offset,
                format!("role id `{id}` may hold only letters, digits, `.`, `_`, `-` and `@`"),
            ));
        }
        let what = format!("role `{id}`");
        for (names, list) in [
            (&role.eligible_groups, "eligible_groups"),
            (&role.approver_groups, "approver_groups"),
            (&role.break_glass_groups, "break_glass_groups"),
        ] {
            source.known_groups(&people.groups, names, &format!("{what} {list}"), offset)?;
        }
        if let Some(user) = role
            .eligible_users
            .iter()
            .find(|u| !people.users.contains_key(*u))
        {
            return Err(source.invalid(
                offset,
                format!("{what} eligible_users names unknown user `{user}`"),
            ));
        }
        if role.max_duration.is_zero() || role.default_duration.is_zero() {
            return Err(source.invalid(
                offset,
                format!("{what}: durations must be longer than zero"),
            ));
        }
        if role.default_duration > role.max_duration {
            return Err(source.invalid(
                offset,
                format!(
                    "{what}: default_duration {} is longer than max_duration {}",
                    humantime::format_duration(role.default_duration),
                    humantime::format_duration(role.max_duration)
                ),
            ));
        }
        if role.approvals > 0 && role.approver_groups.is_empty() {
            return Err(source.invalid(
                offset,
                format!(
                    "{what} needs {} approvals but names no approver_groups",
                    role.approvals
                ),
            ));
        }
        if !role.break_glass && !role.break_glass_groups.is_empty() {
            return Err(source.invalid(
                offset,
                format!("{what} has break_glass_groups but break_glass = false"),
            ));
        }
        let access = match (role.target, role.access) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(source.invalid(
                    offset,
                    format!("{what} has [roles.access] but names no target"),
                ));
            }
            (Some(name), table) => {
                let Some(target) = targets.get(&name) else {
                    return Err(source.invalid(
                        offset,
                        format!("{what} names target `{name}`, which no [[targets]] defines"),
                    ));
                };
                let access = target
                    .access(table.unwrap_or_default())
                    .map_err(|why| source.invalid(offset, format!("{what}: {why}")))?;
                let (line, column) = hoist_api::text::line_and_column(source.text, offset);
                Some(RoleAccess {
                    target: name,
                    kind: target.kind(),
                    access,
                    position: format!("{}:{line}:{column}", source.origin),
                })
            }
        };
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
            access,
        };
        if roles.insert(id.clone(), def).is_some() {
            return Err(source.invalid(offset, format!("role `{id}` is defined twice")));
        }
    }
    Ok(roles)
}
