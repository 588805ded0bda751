//! The policy's `[tiers]`: what each risk tier, 0 (most critical) to 3,
//! demands of its roles by default. A role takes its tier's terms and may
//! only tighten them; the policy may redefine a tier as a whole.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{PolicyError, Source, duration};

/// The tiers there are: 0 is the most critical, 3 the least.
pub const TIERS: u8 = 4;

/// The tier of a role that names none: the least critical, whose built-in
/// terms restrict nothing, so a policy written before tiers means what it
/// meant.
pub const UNTIERED: u8 = 3;

/// What a tier demands of its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Approvals a request needs, at least.
    pub approvals: u32,
    /// The longest grant; `None` leaves it to each role.
    pub max_duration: Option<Duration>,
    pub ticket_required: bool,
    /// Whether a role may need no approval at all (and a workload rule
    /// approve it automatically).
    pub auto_approve: bool,
    /// Whether `[[workloads]]` rules may ask for its roles.
    pub workloads: bool,
    /// Whether its roles may allow break-glass.
    pub break_glass: bool,
    /// How recent the requester's sign-in must be to file; `None` asks
    /// nothing.
    pub step_up: Option<Duration>,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The built-in terms of each tier, which `[tiers.N]` replaces key by key.
pub fn builtin(tier: u8) -> Tier {
    match tier {
        0 => Tier {
            approvals: 2,
            max_duration: Some(Duration::from_secs(HOUR)),
            ticket_required: true,
            auto_approve: false,
            workloads: false,
            break_glass: true,
            step_up: Some(Duration::from_secs(15 * MINUTE)),
        },
        1 => Tier {
            approvals: 1,
            max_duration: Some(Duration::from_secs(4 * HOUR)),
            ticket_required: true,
            auto_approve: false,
            workloads: true,
            break_glass: true,
            step_up: None,
        },
        2 => Tier {
            approvals: 1,
            max_duration: Some(Duration::from_secs(8 * HOUR)),
            ticket_required: false,
            auto_approve: false,
            workloads: true,
            break_glass: true,
            step_up: None,
        },
        _ => Tier {
            approvals: 0,
            max_duration: None,
            ticket_required: false,
            auto_approve: true,
            workloads: true,
            break_glass: true,
            step_up: None,
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    approvals: Option<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    max_duration: Option<Duration>,
    ticket_required: Option<bool>,
    auto_approve: Option<bool>,
    workloads: Option<bool>,
    break_glass: Option<bool>,
    #[serde(default, deserialize_with = "optional_duration")]
    step_up: Option<Duration>,
}

pub(super) fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// The four tiers: the built-in terms with the policy's `[tiers.N]` over
/// them.
pub(super) fn tiers(
    source: &Source<'_>,
    raw: BTreeMap<String, Spanned<RawTier>>,
) -> Result<[Tier; TIERS as usize], PolicyError> {
    let mut tiers = [builtin(0), builtin(1), builtin(2), builtin(3)];
    for (name, raw) in raw {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        // Only `0` to `3` as written: `01` or `+1` would be tier 1 again,
        // merged with `[tiers.1]` in an order no one wrote.
        let Some(index) = name
            .parse::<u8>()
            .ok()
            .filter(|n| *n < TIERS && n.to_string() == name)
        else {
            return Err(source.invalid(
                offset,
                format!("[tiers.{name}]: tiers are 0 (most critical) to 3"),
            ));
        };
        let tier = &mut tiers[usize::from(index)];
        if let Some(n) = raw.approvals {
            tier.approvals = n;
        }
        if raw.max_duration.is_some() {
            tier.max_duration = raw.max_duration;
        }
        if let Some(x) = raw.ticket_required {
            tier.ticket_required = x;
        }
        if let Some(x) = raw.auto_approve {
            tier.auto_approve = x;
        }
        if let Some(x) = raw.workloads {
            tier.workloads = x;
        }
        if let Some(x) = raw.break_glass {
            tier.break_glass = x;
        }
        if raw.step_up.is_some() {
            tier.step_up = raw.step_up;
        }
        if tier
            .max_duration
            .is_some_and(|d| !super::roles::whole_seconds(d))
            || tier.step_up.is_some_and(|d| d.is_zero())
        {
            return Err(source.invalid(
                offset,
                format!(
                    "[tiers.{name}]: max_duration is whole seconds, at least one, and step_up \
                     longer than zero"
                ),
            ));
        }
    }
    Ok(tiers)
}

impl Tier {
    /// The fewest approvals a role of this tier may need.
    pub fn least_approvals(&self) -> u32 {
        if self.auto_approve {
            self.approvals
        } else {
            self.approvals.max(1)
        }
    }
}
