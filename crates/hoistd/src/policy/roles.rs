//! The policy's `[[roles]]`: what may be requested, by whom, on what terms.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::tiers::{TIERS, Tier, UNTIERED, optional_duration};
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
    /// Its risk tier, 0 (most critical) to 3, whose terms it is held to.
    pub tier: u8,
    /// Whether the policy named the tier. One that did not is held to tier
    /// 3's terms but was never classified, so people are shown no tier.
    pub tier_named: bool,
    /// Whether `[[workloads]]` rules may ask for it.
    pub workloads: bool,
    /// Whether its tier lets a workload rule approve it automatically.
    pub auto_approve: bool,
    /// How recent a requester's sign-in must be to file; `None` asks nothing.
    pub step_up: Option<Duration>,
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
    #[serde(default, deserialize_with = "optional_duration")]
    max_duration: Option<Duration>,
    #[serde(default)]
    approvals: Option<u32>,
    #[serde(default)]
    approver_groups: Vec<String>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    break_glass_groups: Vec<String>,
    #[serde(default)]
    ticket_required: Option<bool>,
    #[serde(default)]
    ticket_pattern: Option<TicketPattern>,
    #[serde(default)]
    min_justification: u32,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    access: Option<toml::Table>,
    #[serde(default)]
    tier: Option<u8>,
    #[serde(default)]
    workloads: Option<bool>,
    #[serde(default, deserialize_with = "optional_duration")]
    step_up: Option<Duration>,
}

/// A ticket pattern, anchored so it must match the whole reference.
struct TicketPattern(Regex);

impl<'de> Deserialize<'de> for TicketPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        whole_reference(&source)
            .map(TicketPattern)
            .map_err(|err| serde::de::Error::custom(format!("invalid ticket_pattern: {err}")))
    }
}

/// A reference pattern (`ticket_pattern`, `incident_pattern`), anchored
/// so it must match the whole reference.
pub(super) fn whole_reference(source: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!(
        "^(?:{})$",
        source.trim_start_matches('^').trim_end_matches('$')
    ))
}
/// Checks each role against the policy's users and groups.
pub(super) fn roles(
    source: &Source<'_>,
    raw: Vec<Spanned<RawRole>>,
    people: &People,
    targets: &Targets,
    tiers: &[Tier],
) -> Result<BTreeMap<String, RoleDef>, PolicyError> {
    let mut roles = BTreeMap::new();
    for role in raw {
        let offset = role.span().start;
        let role = role.into_inner();
        let id = role.id.clone();
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
        let terms = tier_terms(&role, tiers)
            .map_err(|why| source.invalid(offset, format!("{what}: {why}")))?;
        if !whole_seconds(terms.max_duration) || !whole_seconds(role.default_duration) {
            return Err(source.invalid(
                offset,
                format!("{what}: durations are whole seconds, at least one (e.g. \"30m\")"),
            ));
        }
        if role.default_duration > terms.max_duration {
            return Err(source.invalid(
                offset,
                format!(
                    "{what}: default_duration {} is longer than max_duration {}",
                    humantime::format_duration(role.default_duration),
                    humantime::format_duration(terms.max_duration)
                ),
            ));
        }
        if terms.approvals > 0 && role.approver_groups.is_empty() {
            return Err(source.invalid(
                offset,
                format!(
                    "{what} needs {} approvals but names no approver_groups",
                    terms.approvals
                ),
            ));
        }
        // Break-glass is reviewed after the fact by the role's approvers:
        // a role without any could be broken open with nobody to review it
        // (and, needing no approval, without its ticket rule's ticket).
        if role.break_glass && role.approver_groups.is_empty() {
            return Err(source.invalid(
                offset,
                format!(
                    "{what} allows break_glass but names no approver_groups to review it after the fact"
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
            max_duration: terms.max_duration,
            approvals: terms.approvals,
            approver_groups: role.approver_groups,
            break_glass: role.break_glass,
            break_glass_groups: role.break_glass_groups.into_iter().collect(),
            ticket_required: terms.ticket_required,
            ticket_pattern: role.ticket_pattern.map(|p| p.0),
            min_justification: role.min_justification,
            access,
            tier: terms.tier,
            tier_named: role.tier.is_some(),
            workloads: terms.workloads,
            auto_approve: terms.auto_approve,
            step_up: terms.step_up,
        };
        if roles.insert(id.clone(), def).is_some() {
            return Err(source.invalid(offset, format!("role `{id}` is defined twice")));
        }
    }
    Ok(roles)
}

impl RoleDef {
    /// The tier people are shown: none for a role the policy left
    /// unclassified.
    pub fn shown_tier(&self) -> Option<u8> {
        self.tier_named.then_some(self.tier)
    }
}

/// A role's terms once its tier's defaults are applied.
struct Terms {
    tier: u8,
    max_duration: Duration,
    approvals: u32,
    ticket_required: bool,
    workloads: bool,
    auto_approve: bool,
    step_up: Option<Duration>,
}

/// The role's terms under its tier: what it leaves out comes from the tier,
/// and what it sets may only be stricter. A role that loosens its tier is
/// refused rather than clamped: its author meant something the tier does
/// not allow, and should hear so.
fn tier_terms(role: &RawRole, tiers: &[Tier]) -> Result<Terms, String> {
    let tier = role.tier.unwrap_or(UNTIERED);
    let Some(terms) = tiers.get(usize::from(tier)).filter(|_| tier < TIERS) else {
        return Err(format!(
            "tier {tier} does not exist; tiers are 0 (most critical) to 3"
        ));
    };
    let approvals = match role.approvals {
        Some(n) if n < terms.least_approvals() => {
            return Err(format!(
                "approvals = {n} is fewer than tier {tier} needs ({})",
                terms.least_approvals()
            ));
        }
        Some(n) => n,
        None => terms.least_approvals(),
    };
    let max_duration = match (role.max_duration, terms.max_duration) {
        (Some(asked), Some(most)) if asked > most => {
            return Err(format!(
                "max_duration {} is longer than tier {tier} allows ({})",
                humantime::format_duration(asked),
                humantime::format_duration(most)
            ));
        }
        (Some(asked), _) => asked,
        (None, Some(most)) => most,
        (None, None) => return Err(format!("needs a max_duration (tier {tier} sets none)")),
    };
    if role.ticket_required == Some(false) && terms.ticket_required {
        return Err(format!(
            "ticket_required = false, but tier {tier} requires a ticket"
        ));
    }
    if role.break_glass && !terms.break_glass {
        return Err(format!(
            "break_glass = true, but tier {tier} allows no break-glass"
        ));
    }
    if role.workloads == Some(true) && !terms.workloads {
        return Err(format!(
            "workloads = true, but tier {tier} allows no workloads"
        ));
    }
    let step_up = match (role.step_up, terms.step_up) {
        (Some(asked), Some(most)) if asked > most => {
            return Err(format!(
                "step_up {} is longer than tier {tier} allows ({})",
                humantime::format_duration(asked),
                humantime::format_duration(most)
            ));
        }
        (Some(asked), _) if asked.is_zero() => {
            return Err("step_up must be longer than zero".into());
        }
        (Some(asked), _) => Some(asked),
        (None, most) => most,
    };
    Ok(Terms {
        tier,
        max_duration,
        approvals,
        ticket_required: role.ticket_required.unwrap_or(terms.ticket_required),
        workloads: role.workloads.unwrap_or(terms.workloads),
        auto_approve: terms.auto_approve,
        step_up,
    })
}

/// A grant's duration as the wire carries it: whole seconds, at least one.
/// "500ms" would be cut to no time at all, "1500ms" to a second.
pub(super) fn whole_seconds(duration: Duration) -> bool {
    duration >= Duration::from_secs(1) && duration.subsec_nanos() == 0
}
