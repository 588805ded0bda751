//! `hoist prompt`: the active grants, for shell prompts and tmux status lines.
//! It reads a small local cache that hoist writes whenever it learns about
//! grants (the TUI, `grants`, `request`, `revoke`, `exec`); the prompt path
//! never touches the network, the keyring or an async runtime.
//!
//! The cache holds role names and end times only: nothing secret.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{Grant, GrantState};
use serde::{Deserialize, Serialize};

/// Overrides where the cache lives (tests, unusual setups).
pub const CACHE_DIR_ENV: &str = "HOIST_CACHE_DIR";
const CACHE_FILE: &str = "grants.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    pub role: String,
    pub expires_at: DateTime<Utc>,
}

/// Active grants by broker.
type Cache = BTreeMap<String, Vec<Cached>>;

pub fn cache_path() -> Option<PathBuf> {
    Some(cache_dir()?.join(CACHE_FILE))
}

/// hoist's cache directory: `$HOIST_CACHE_DIR`, else the platform's.
pub fn cache_dir() -> Option<PathBuf> {
    Some(match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => directories::ProjectDirs::from("dev", "hoist", "hoist")?
            .cache_dir()
            .to_path_buf(),
    })
}

fn read() -> Cache {
    cache_path()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records a broker's active grants (best effort: a prompt is a convenience).
/// `offset` is how far the broker's clock is ahead of this machine's.
pub fn remember(broker: &str, grants: &[Grant], offset: TimeDelta) {
    let Some(path) = cache_path() else { return };
    let mut cache = read();
    let active = cached(grants, offset);
    if cache.get(broker) == Some(&active) {
        return;
    }
    cache.insert(broker.to_string(), active);
    // Whole or not at all, so a prompt never reads half a file.
    if let Ok(json) = serde_json::to_vec(&cache) {
        let _ = crate::fs::write_private(&path, &json);
    }
}

/// The active grants as the cache keeps them: each end on this machine's
/// clock, which the prompt counts with (it never asks the broker), so a
/// clock that is off shows the same time left as the TUI does.
fn cached(grants: &[Grant], offset: TimeDelta) -> Vec<Cached> {
    grants
        .iter()
        .filter(|g| g.state == GrantState::Active)
        .map(|g| Cached {
            role: g.role.clone(),
            expires_at: g
                .expires_at
                .checked_sub_signed(offset)
                .unwrap_or(g.expires_at),
        })
        .collect()
}

/// "prod-db-admin 12m · prod-logs-read 3h58m", soonest end first; ended
/// grants are left out by the clock, whatever the cache says.
pub fn render(cache: &BTreeMap<String, Vec<Cached>>, now: DateTime<Utc>) -> String {
    let mut live: Vec<&Cached> = cache
        .values()
        .flatten()
        .filter(|g| g.expires_at > now)
        .collect();
    live.sort_by_key(|g| g.expires_at);
    live.iter()
        .map(|g| {
            let left = g.expires_at - now;
            let left = if left < TimeDelta::minutes(1) {
                format!("{}s", left.num_seconds().max(1))
            } else {
                crate::text::span(left)
            };
            format!("{} {left}", prompt_safe(&g.role))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A role id as a prompt may show it: letters, digits and `._:@/+=-`
/// only, anything else a `?`. The line goes where a shell or tmux reads it
/// again as its own syntax (tmux's `#[...]` and `#{...}` in status-right,
/// zsh's `%` escapes under PROMPT_SUBST), and a role id comes from the
/// broker.
fn prompt_safe(role: &str) -> String {
    let kept: String = role
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "._:@/+=-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    crate::text::sanitize::line(&kept).into_owned()
}

/// The whole `hoist prompt` command: prints the summary (nothing when no
/// grant is active) and never fails a prompt.
pub fn run() {
    let line = render(&read(), Utc::now());
    if !line.is_empty() {
        let _ = crate::commands::out(&format!("{line}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant the broker says ends at the end of time is cached without
    /// overflow, whichever way the clocks differ.
    #[test]
    fn an_end_at_the_end_of_time_is_cached_without_overflow() {
        let mut grant = crate::app::fixtures::grant("g-1", "prod-db-admin", "alice", Utc::now());
        grant.expires_at = DateTime::<Utc>::MAX_UTC;
        for offset in [TimeDelta::seconds(-5), TimeDelta::seconds(5)] {
            let cached = cached(std::slice::from_ref(&grant), offset);
            assert_eq!(cached.len(), 1);
            assert!(cached[0].expires_at > Utc::now());
        }
    }

    /// What tmux or zsh would read as their own syntax in a role id from
    /// the broker (a style, a format, a prompt escape) is not printed.
    #[test]
    fn a_role_id_cannot_restyle_or_escape_the_prompt() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let mut cache = Cache::new();
        cache.insert(
            "p".into(),
            vec![Cached {
                role: "db#[fg=red]#{pane_pid}%{x%}$(id)`w`\\\u{202E}é".into(),
                expires_at: now + TimeDelta::minutes(12),
            }],
        );
        let line = render(&cache, now);
        assert_eq!(line, "db??fg=red???pane_pid???x????id??w???é 12m");
    }

    #[test]
    fn soonest_first_and_ended_ones_dropped() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let mut cache = Cache::new();
        cache.insert(
            "https://a".into(),
            vec![
                Cached {
                    role: "prod-logs-read".into(),
                    expires_at: now + TimeDelta::minutes(238),
                },
                Cached {
                    role: "old".into(),
                    expires_at: now - TimeDelta::seconds(1),
                },
            ],
        );
        cache.insert(
            "https://b".into(),
            vec![Cached {
                role: "prod-db".into(),
                expires_at: now + TimeDelta::minutes(12),
            }],
        );
        assert_eq!(render(&cache, now), "prod-db 12m · prod-logs-read 3h58m");
        assert_eq!(render(&Cache::new(), now), "");
        let soon = BTreeMap::from([(
            "x".to_string(),
            vec![Cached {
                role: "r".into(),
                expires_at: now + TimeDelta::seconds(30),
            }],
        )]);
        assert_eq!(render(&soon, now), "r 30s");
    }

    /// The broker's clock is five minutes ahead of this machine's: a grant
    /// the broker ends in ten minutes shows ten minutes left here too.
    #[test]
    fn ends_are_kept_on_this_machines_clock() {
        let local: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let ahead = TimeDelta::minutes(5);
        let grant = crate::app::fixtures::grant(
            "g1",
            "prod-db",
            "alice",
            local + ahead + TimeDelta::minutes(10),
        );
        let cache = Cache::from([("x".to_string(), cached(&[grant], ahead))]);
        assert_eq!(render(&cache, local), "prod-db 10m");
    }
}
