//! The policy's `[[notify]]`: channels that tell people when something
//! needs them (Slack, Microsoft Teams, plain JSON), each with the events it
//! takes and the roles, approver groups and tiers it covers. A channel's
//! URL is a secret (whoever has a Slack or Teams webhook URL can post to
//! the channel), so, like the HMAC secret, it comes from the environment or
//! a file, never the policy; errors never show it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{PolicyError, RoleDef, Source, TIERS, valid_name};
use crate::notify::{Channel, Channels, Event, Format};
use crate::target::{secret_of, webhook::Endpoint};

/// How long before a request lapses or a grant ends a reminder goes out,
/// unless the channel says.
pub const DEFAULT_REMIND_BEFORE: Duration = Duration::from_secs(15 * 60);
/// Longest one post to a channel may take, unless the channel says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    name: String,
    format: Spanned<String>,
    /// Refused: the URL is a secret.
    url: Option<Spanned<toml::Value>>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    /// Refused: the HMAC secret is a secret.
    secret: Option<Spanned<toml::Value>>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    /// Every event unless given.
    events: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    tiers: Vec<Spanned<i64>>,
    remind_before: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// Builds each channel, checking it against the policy's groups and roles.
pub(super) fn channels(
    source: &Source<'_>,
    raw: Vec<Spanned<RawNotify>>,
    groups: &BTreeMap<String, BTreeSet<String>>,
    roles: &BTreeMap<String, RoleDef>,
) -> Result<Channels, PolicyError> {
    let mut channels = Channels::default();
    for table in raw {
        let offset = table.span().start;
        let raw = table.into_inner();
        let name = raw.name;
        if !valid_name(&name) {
            return Err(source.invalid(
                offset,
                format!(
                    "notify channel name `{name}` may hold only letters, digits, `.`, `_`, `-` and `@`"
                ),
            ));
        }
        let owner = format!("notify channel `{name}`");
        for (inline, what) in [(&raw.url, "url"), (&raw.secret, "secret")] {
            if let Some(inline) = inline {
                return Err(source.invalid(
                    inline.span().start,
                    format!(
                        "{owner} writes its {what} inline; put it in an environment variable \
                         ({what}_env) or a file ({what}_file): whoever reads the policy could post \
                         to the channel"
                    ),
                ));
            }
        }
        let format = Format::parse(raw.format.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            source.invalid(
                raw.format.span().start,
                format!(
                    "{owner} has format `{}`; known formats: {}",
                    raw.format.get_ref(),
                    known.join(", ")
                ),
            )
        })?;
        let events = match raw.events {
            None => Event::ALL.into_iter().collect(),
            Some(listed) => {
                let mut events = BTreeSet::new();
                for event in listed {
                    let parsed = Event::parse(event.get_ref()).ok_or_else(|| {
                        let known: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
                        source.invalid(
                            event.span().start,
                            format!(
                                "{owner} names event `{}`; known events: {}",
                                event.get_ref(),
                                known.join(", ")
                            ),
                        )
                    })?;
                    events.insert(parsed);
                }
                if events.is_empty() {
                    return Err(source.invalid(
                        offset,
                        format!("{owner} takes no events; leave `events` out for all of them"),
                    ));
                }
                events
            }
        };
        let mut covered_roles = BTreeSet::new();
        for role in raw.roles {
            if !roles.contains_key(role.get_ref()) {
                return Err(source.invalid(
                    role.span().start,
                    format!("{owner} names unknown role `{}`", role.get_ref()),
                ));
            }
            covered_roles.insert(role.into_inner());
        }
        let mut covered_groups = BTreeSet::new();
        for group in raw.groups {
            if !groups.contains_key(group.get_ref()) {
                return Err(source.invalid(
                    group.span().start,
                    format!("{owner} names unknown group `{}`", group.get_ref()),
                ));
            }
            covered_groups.insert(group.into_inner());
        }
        let mut covered_tiers = BTreeSet::new();
        for tier in raw.tiers {
            match u8::try_from(*tier.get_ref()) {
                Ok(value) if value < TIERS => {
                    covered_tiers.insert(value);
                }
                _ => {
                    return Err(source.invalid(
                        tier.span().start,
                        format!(
                            "{owner} names tier {}; tiers run from 0 to {}",
                            tier.get_ref(),
                            TIERS - 1
                        ),
                    ));
                }
            }
        }
        let duration = |what: &str, value: Option<Spanned<String>>, default: Duration| {
            let Some(value) = value else {
                return Ok(default);
            };
            match super::parse_duration(value.get_ref()) {
                Ok(parsed) if !parsed.is_zero() => Ok(parsed),
                Ok(_) => Err(source.invalid(
                    value.span().start,
                    format!("{owner}: {what} must be longer than zero"),
                )),
                Err(err) => {
                    Err(source.invalid(value.span().start, format!("{owner}: {what}: {err}")))
                }
            }
        };
        let remind_before = duration("remind_before", raw.remind_before, DEFAULT_REMIND_BEFORE)?;
        let timeout = duration("timeout", raw.timeout, DEFAULT_TIMEOUT)?;
        let url = secret_of(
            &owner,
            "url",
            raw.url_env.as_deref(),
            raw.url_file.as_deref(),
        )
        .map_err(|why| source.invalid(offset, why))?;
        // The URL is a secret: the error says what is wrong with it, never
        // what it is.
        let url = Endpoint::check_url(url.trim())
            .map_err(|why| source.invalid(offset, format!("{owner}: {why}")))?;
        let secret = secret_of(
            &owner,
            "secret",
            raw.secret_env.as_deref(),
            raw.secret_file.as_deref(),
        )
        .map_err(|why| source.invalid(offset, why))?;
        let endpoint = Endpoint::new(url, secret.into_bytes(), timeout)
            .map_err(|why| source.invalid(offset, format!("{owner}: {why}")))?;
        let added = channels.insert(Channel {
            name: name.clone(),
            format,
            events,
            roles: covered_roles,
            groups: covered_groups,
            tiers: covered_tiers,
            remind_before,
            endpoint,
        });
        if !added {
            return Err(source.invalid(offset, format!("notify channel `{name}` is defined twice")));
        }
    }
    Ok(channels)
}
