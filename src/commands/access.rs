//! Access at a target for commands: waiting until a grant's access is live,
//! and a credential's access as environment variables, `export` lines and a
//! URI. `exec` and `credential --format` share these.

use std::time::Duration;

use futures::StreamExt;
use hoist_api::{AccessCredential, AccessState, Grant, LiveEvent, handover_variable_refusal};
use tokio::time::Instant;

use super::request::active_grant;
use super::{Ended, say};
use crate::backend::Backend;

/// The variables a command gets for the access at the grant's target (PG*
/// for PostgreSQL), sorted. A name no target may set (`PATH`, `LD_*`,
/// `PROMPT_COMMAND`, `HOIST_*`: [`hoist_api::handover_variable_refusal`]) is
/// left out, said once on stderr; a value with a NUL (which no environment
/// can hold) too. hoistd already hands over only what the policy declares.
pub fn access_env(access: Option<&AccessCredential>) -> Vec<(String, String)> {
    let Some(access) = access else {
        return Vec::new();
    };
    access
        .env
        .iter()
        .filter(|(name, value)| {
            let keep = handover_variable_refusal(name).is_none() && !value.contains('\0');
            if !keep {
                say(&format!(
                    "warning: {} sent a variable hoist does not set: {name}",
                    access.target
                ));
            }
            keep
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A value as a POSIX shell reads it back, always in single quotes (a quote
/// inside becomes `'\''`): nothing in it is expanded.
pub fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `export NAME='value'` lines for `eval "$(hoist credential ROLE --format env)"`.
pub fn export_lines(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(name, value)| format!("export {name}={}\n", quoted(value)))
        .collect()
}

/// Why the grant's access cannot be used yet, naming its state, or `None`
/// when it can (live, or a role with no target).
pub fn not_live(grant: &Grant) -> Option<Ended> {
    let access = grant.access.as_ref()?;
    if access.state == AccessState::Live {
        return None;
    }
    let reason = access
        .reason
        .as_deref()
        .map(|r| format!(" (last attempt: {r})"))
        .unwrap_or_default();
    Some(Ended::NotLive(format!(
        "{}'s access at {} is {}{reason}, not live yet: try again, or pass --wait",
        grant.role, access.target, access.state
    )))
}

/// Waits until the grant's access at its target is live, saying on stderr
/// what it waits for and each failed attempt. Gives up at `timeout`, or
/// when the grant ends.
pub async fn wait_live(
    backend: &dyn Backend,
    grant: Grant,
    timeout: Option<Duration>,
) -> anyhow::Result<Grant> {
    if not_live(&grant).is_none() {
        return Ok(grant);
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let id = grant.id.clone();
    let mut said = None;
    let mut tell = |grant: &Grant| {
        if let Some(access) = &grant.access {
            let now = (access.state, access.attempts);
            if said != Some(now) {
                said = Some(now);
                let reason = access
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}; retrying"))
                    .unwrap_or_default();
                say(&format!(
                    "waiting for {}'s access at {}: {}{reason}",
                    grant.role, access.target, access.state
                ));
            }
        }
    };
    tell(&grant);
    let gave_up = || -> anyhow::Error {
        Ended::TimedOut(format!(
            "gave up waiting for the access of {id} to become live"
        ))
        .into()
    };
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(gave_up());
        }
        // Subscribed first, then read: a change in between is not lost.
        // The stream's opening is bounded by the deadline too.
        let stream = match deadline {
            Some(d) => match tokio::time::timeout_at(d, backend.events()).await {
                Ok(opened) => opened,
                Err(_) => return Err(gave_up()),
            },
            None => backend.events().await,
        };
        let current = match active_grant(backend, &id).await {
            Ok(Some(current)) => current,
            Ok(None) => anyhow::bail!("{id} ended before its access became live"),
            // A broker restarting: look again shortly.
            Err(err) if err.is_transient() => {
                sleep_until(deadline, Duration::from_millis(500)).await;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        tell(&current);
        if not_live(&current).is_none() {
            return Ok(current);
        }
        let Ok(mut stream) = stream else {
            // No stream (a broker restarting): look again shortly.
            sleep_until(deadline, Duration::from_millis(500)).await;
            continue;
        };
        // Read again now and then as well, in case the stream stalls.
        let pause = Instant::now() + Duration::from_secs(5);
        let until = deadline.map_or(pause, |d| d.min(pause));
        loop {
            match tokio::time::timeout_at(until, stream.next()).await {
                Ok(Some(Ok(LiveEvent::Grant { grant }))) if grant.id == id => {
                    tell(&grant);
                    if not_live(&grant).is_none() {
                        return Ok(grant);
                    }
                    if grant.state != hoist_api::GrantState::Active {
                        anyhow::bail!("{id} ended before its access became live");
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) | Err(_) => break,
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>, pause: Duration) {
    let wake = Instant::now() + pause;
    tokio::time::sleep_until(deadline.map_or(wake, |d| d.min(wake))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_survive_hostile_values() {
        let env = vec![
            (
                "PGPASSWORD".to_string(),
                "it's $(rm -rf ~) `x` \"y\" \\ ;\n#".to_string(),
            ),
            ("PGUSER".to_string(), String::new()),
        ];
        let lines = export_lines(&env);
        assert_eq!(
            lines,
            "export PGPASSWORD='it'\\''s $(rm -rf ~) `x` \"y\" \\ ;\n#'\nexport PGUSER=''\n"
        );
        // A real shell reads each value back exactly.
        let script = format!("{lines}printf '%s|%s' \"$PGPASSWORD\" \"$PGUSER\"");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}|", env[0].1)
        );
    }

    /// A broker away for a moment (restarting) is not a grant that ended:
    /// the wait goes on until its timeout.
    #[tokio::test]
    async fn a_broker_briefly_away_is_not_a_grant_that_ended() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let backend = crate::backend::hoistd::HoistdClient::new(&url, "t-alice").unwrap();
        let now = chrono::Utc::now();
        let mut grant =
            crate::app::fixtures::grant("gr_1", "db", "alice", now + chrono::TimeDelta::hours(1));
        grant.access = Some(hoist_api::TargetAccess {
            target: "db-1".into(),
            kind: "postgres".into(),
            state: AccessState::Provisioning,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
            updated_at: now,
            live_until: None,
        });
        let err = wait_live(&backend, grant, Some(Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert_eq!(
            super::super::exit_code(&err),
            super::super::exit::TIMED_OUT,
            "{err:#}"
        );
    }
}
