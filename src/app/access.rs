//! Where a grant's access is at its target, in words: what the Grants,
//! Incidents and Roles screens, the banners and the credential key say
//! about it. Only the broker's `TargetAccess` decides: nothing here calls
//! access live or removed before the broker says so.

use chrono::{DateTime, Utc};
use hoist_api::{AccessCredential, AccessState, Grant, GrantState, TargetAccess};

use crate::text::sanitize::line as clean;
use crate::text::span;

/// The target kind whose grants hand over an SSH certificate for the
/// holder's own key rather than a secret of the target's.
pub const SSH: &str = "ssh";
/// A PostgreSQL target: each fetch of a credential sets a new password.
pub const POSTGRES: &str = "postgres";

/// What `y` copies from a credential pop-up with access at a target, and
/// its name for the pop-up's hint and banner: the SSH certificate, else the
/// command, else the URI, else the token.
pub fn copied_by_y<'a>(access: &'a AccessCredential, token: &'a str) -> (&'static str, &'a str) {
    match (&access.certificate, &access.command, &access.uri) {
        (Some(certificate), _, _) => ("SSH certificate", &certificate.certificate),
        (None, Some(command), _) => ("command", command),
        (None, None, Some(uri)) => ("URI", uri),
        (None, None, None) => ("credential", token),
    }
}

/// Whether text from the broker may go to the clipboard as it is. A paste
/// into a shell runs what it holds, and the pop-up shows it cleaned: so
/// nothing a terminal or shell acts on (a line break, an escape, an
/// invisible character) may be in it, none of it is past what the pop-up
/// shows ([`MAX_CHARS`](crate::text::sanitize::MAX_CHARS)), and a token is
/// printable ASCII.
pub fn copyable(text: &str, token: bool) -> bool {
    !text.is_empty()
        && text.chars().nth(crate::text::sanitize::MAX_CHARS).is_none()
        && !crate::text::sanitize::hides_anything(text)
        && (!token || text.chars().all(|c| c.is_ascii_graphic()))
}

/// What an access line means, for the view to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Under way at the target (provisioning, removing): not usable yet, or not gone yet.
    Pending,
    /// The target confirmed the access: usable.
    Live,
    /// An attempt failed; it is retried.
    Failed,
    /// The target confirmed the access is gone.
    Gone,
}

/// One line about a grant's access: `live at db-prod-1`, `provisioning…
/// at db-prod-1`, `failed at db-prod-1: connection refused · next attempt in
/// 4s`, `removing… at db-prod-1`, `removed at db-prod-1`. A grant that ended
/// in hoist whose access the broker has not reported on since is
/// `removing…`: its removal is due, and it is not said to be done.
pub fn describe(grant: &Grant, access: &TargetAccess, now: DateTime<Utc>) -> (String, Tone) {
    let target = clean(&access.target);
    let ended = grant.state != GrantState::Active || grant.expires_at <= now;
    let state = match access.state {
        AccessState::Provisioning | AccessState::Live | AccessState::Failed if ended => {
            AccessState::Removing
        }
        state => state,
    };
    let retry = || {
        let reason = access
            .reason
            .as_deref()
            .map(|r| format!(": {}", clean(r)))
            .unwrap_or_default();
        let next = access
            .next_attempt_at
            .map(|at| {
                if at > now {
                    format!(" · next attempt in {}", span(at - now))
                } else {
                    " · trying again".to_string()
                }
            })
            .unwrap_or_default();
        format!("{reason}{next}")
    };
    match state {
        AccessState::Provisioning => (
            format!("provisioning… at {target}{}", retry()),
            Tone::Pending,
        ),
        // An extension the target has yet to take: live there only until
        // the end it has.
        AccessState::Live => match access.live_until {
            None => (format!("live at {target}"), Tone::Live),
            Some(until) if until <= now => (format!("failed at {target}{}", retry()), Tone::Failed),
            Some(until) => (
                format!("live at {target} for {}{}", span(until - now), retry()),
                Tone::Pending,
            ),
        },
        AccessState::Failed => (format!("failed at {target}{}", retry()), Tone::Failed),
        AccessState::Removing if access.reason.is_some() => {
            (format!("removing… at {target}{}", retry()), Tone::Failed)
        }
        AccessState::Removing => (format!("removing… at {target}"), Tone::Pending),
        AccessState::Removed => (format!("removed at {target}"), Tone::Gone),
    }
}

/// A grant that ended in hoist while its access may still be at the
/// target: shown until the broker reports it removed.
pub fn still_ending(grant: &Grant) -> bool {
    grant
        .access
        .as_ref()
        .is_some_and(|a| a.state != AccessState::Removed)
}

/// Why the credential of a grant cannot be used yet, or `None` if it can
/// (no target, or the access is live).
pub fn not_usable(grant: &Grant, now: DateTime<Utc>) -> Option<String> {
    let access = grant.access.as_ref()?;
    match access.state {
        AccessState::Live if access.live_until.is_none_or(|until| until > now) => None,
        AccessState::Provisioning => Some(format!(
            "{} is still being provisioned at {}: it is usable once live",
            clean(&grant.role),
            clean(&access.target)
        )),
        _ => {
            let (line, _) = describe(grant, access, now);
            Some(format!("{}: access {line}", clean(&grant.role)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures::grant;
    use chrono::TimeDelta;

    fn access(state: AccessState) -> TargetAccess {
        TargetAccess {
            target: "db-prod-1".into(),
            kind: "postgres".into(),
            state,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
            updated_at: Utc::now(),
            live_until: None,
        }
    }

    #[test]
    fn each_state_is_said_as_the_broker_reports_it() {
        let now = Utc::now();
        let g = grant("gr_1", "db", "alice", now + TimeDelta::minutes(30));
        let said = |a: &TargetAccess| describe(&g, a, now);
        assert_eq!(
            said(&access(AccessState::Provisioning)),
            ("provisioning… at db-prod-1".into(), Tone::Pending)
        );
        assert_eq!(
            said(&access(AccessState::Live)),
            ("live at db-prod-1".into(), Tone::Live)
        );
        let mut failed = access(AccessState::Failed);
        failed.reason = Some("connection refused\u{1b}[2J".into());
        failed.next_attempt_at = Some(now + TimeDelta::seconds(4));
        let (line, tone) = said(&failed);
        assert_eq!(tone, Tone::Failed);
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(
            line.starts_with("failed at db-prod-1: connection refused")
                && line.ends_with("next attempt in 4s"),
            "{line}"
        );
        assert_eq!(
            said(&access(AccessState::Removed)),
            ("removed at db-prod-1".into(), Tone::Gone)
        );
    }

    #[test]
    fn live_access_whose_extension_is_not_at_the_target_lasts_until_its_old_end() {
        let now = Utc::now();
        let g = grant("gr_1", "db", "alice", now + TimeDelta::minutes(30));
        let mut live = access(AccessState::Live);
        live.live_until = Some(now + TimeDelta::minutes(2));
        live.reason = Some("the new end is not at db-prod-1 yet".into());
        let (line, tone) = describe(&g, &live, now);
        assert_eq!(tone, Tone::Pending);
        assert!(
            line.starts_with("live at db-prod-1 for 2m: the new end is not at db-prod-1 yet"),
            "{line}"
        );
        let mut held = g.clone();
        held.access = Some(live.clone());
        assert_eq!(not_usable(&held, now), None);
        let later = now + TimeDelta::minutes(3);
        let (line, tone) = describe(&g, &live, later);
        assert_eq!(tone, Tone::Failed);
        assert!(line.starts_with("failed at db-prod-1"), "{line}");
        assert!(not_usable(&held, later).is_some());
    }

    #[test]
    fn an_ended_grant_is_removing_until_the_broker_says_removed() {
        let now = Utc::now();
        let mut g = grant("gr_1", "db", "alice", now + TimeDelta::minutes(30));
        g.state = GrantState::Revoked;
        let (line, tone) = describe(&g, &access(AccessState::Live), now);
        assert_eq!(
            (line.as_str(), tone),
            ("removing… at db-prod-1", Tone::Pending)
        );
        assert!(still_ending(&{
            let mut g = g.clone();
            g.access = Some(access(AccessState::Live));
            g
        }));
        g.access = Some(access(AccessState::Removed));
        assert!(!still_ending(&g));
    }
}
