//! Validation at the edge: a `CreateRequest` is checked against the role's
//! terms once, here, and becomes a [`Plan`] the lifecycle code can trust.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::text::{find_invisible, visible_len};
use hoist_api::{
    CreateRequest, ErrorCode, MAX_COMMENT_CHARS, MAX_DURATION_SECS, MAX_JUSTIFICATION_CHARS,
    MAX_REFERENCE_CHARS,
};

use crate::error::Error;
use crate::policy::{Policy, RoleDef};

/// Furthest ahead a request may be scheduled.
const MAX_SCHEDULE_AHEAD: TimeDelta = TimeDelta::days(30);
/// How far in the past a scheduled start may be (clock skew) before it is refused.
const SCHEDULE_SKEW: TimeDelta = TimeDelta::seconds(60);

/// What filing a valid request will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub justification: String,
    pub ticket: Option<String>,
    pub incident: Option<String>,
    pub duration_secs: u64,
    /// A scheduled start, if later than now.
    pub starts_at: Option<DateTime<Utc>>,
    pub break_glass: bool,
    pub approvals_required: u32,
    /// Everyone who could approve it (never the requester).
    pub approvers: Vec<String>,
}

impl Plan {
    pub fn activates_immediately(&self) -> bool {
        self.approvals_required == 0 && self.starts_at.is_none()
    }
}

pub fn plan(
    policy: &Policy,
    role: &RoleDef,
    requester: &str,
    input: &CreateRequest,
    now: DateTime<Utc>,
) -> Result<Plan, Error> {
    let justification = justification(role, &input.justification)?;
    let ticket = reference("ticket", input.ticket.as_deref())?;
    let incident = reference("incident", input.incident.as_deref())?;
    if let (Some(incident), Some(pattern)) = (&incident, &policy.settings.incident_pattern)
        && !pattern.is_match(incident)
    {
        return Err(Error::refuse(
            ErrorCode::InvalidReference,
            format!(
                "incident `{incident}` does not match the policy's incident_pattern {}",
                pattern.as_str()
            ),
        ));
    }
    let duration_secs = duration(role, input.duration_secs)?;

    if input.break_glass {
        if !role.break_glass {
            return Err(Error::refuse(
                ErrorCode::BreakGlassNotAllowed,
                format!("role `{}` does not allow break-glass", role.id),
            ));
        }
        if !policy.may_break_glass(requester, role) {
            return Err(Error::refuse(
                ErrorCode::BreakGlassNotAllowed,
                format!("you are not in a break-glass group of role `{}`", role.id),
            ));
        }
        if ticket.is_none() && incident.is_none() {
            return Err(Error::refuse(
                ErrorCode::TicketRequired,
                "break-glass needs a ticket or incident reference",
            ));
        }
        if input.starts_at.is_some() {
            return Err(Error::refuse(
                ErrorCode::InvalidStart,
                "break-glass access starts at once; it cannot be scheduled",
            ));
        }
    }
    ticket_terms(
        role,
        ticket.as_deref(),
        input.break_glass && incident.is_some(),
    )?;

    let starts_at = match input.starts_at {
        Some(at) if at < now - SCHEDULE_SKEW => {
            return Err(Error::refuse(
                ErrorCode::InvalidStart,
                format!("scheduled start {} is in the past", at.to_rfc3339()),
            ));
        }
        Some(at) if at > now + MAX_SCHEDULE_AHEAD => {
            return Err(Error::refuse(
                ErrorCode::InvalidStart,
                "a request may be scheduled at most 30 days ahead",
            ));
        }
        // To the millisecond the store keeps, so the answer to filing and
        // every later read agree, and a window ends where it says.
        Some(at) if at > now => {
            Some(DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at))
        }
        _ => None,
    };

    let approvals_required = if input.break_glass { 0 } else { role.approvals };
    let approvers = approvers(policy, role, requester, approvals_required)?;

    Ok(Plan {
        justification,
        ticket,
        incident,
        duration_secs,
        starts_at,
        break_glass: input.break_glass,
        approvals_required,
        approvers,
    })
}

/// Whether `ticket` meets the role's ticket rule: one required (but for
/// break-glass with an incident reference), matching its pattern. Checked
/// at filing, and again when a request filed earlier would give access,
/// since the rule may have changed since (a reload).
pub fn ticket_terms(
    role: &RoleDef,
    ticket: Option<&str>,
    break_glass_for_incident: bool,
) -> Result<(), Error> {
    if role.ticket_required && ticket.is_none() && !break_glass_for_incident {
        return Err(Error::refuse(
            ErrorCode::TicketRequired,
            format!("role `{}` needs a ticket reference", role.id),
        ));
    }
    if let (Some(ticket), Some(pattern)) = (ticket, &role.ticket_pattern)
        && !pattern.is_match(ticket)
    {
        return Err(Error::refuse(
            ErrorCode::TicketInvalid,
            format!(
                "ticket `{ticket}` does not match role `{}`'s pattern {}",
                role.id,
                pattern.as_str()
            ),
        ));
    }
    Ok(())
}

/// Everyone who could approve `requester`'s request for the role (never the
/// requester), refused when fewer than the approvals it needs.
pub fn approvers(
    policy: &Policy,
    role: &RoleDef,
    requester: &str,
    needed: u32,
) -> Result<Vec<String>, Error> {
    let approvers: Vec<String> = policy
        .approvers_of(role)
        .into_iter()
        .filter(|approver| approver != requester)
        .collect();
    // With an identity provider, approvers exist before the broker has seen
    // them: only a policy that lists every approver can say there are too few.
    if needed as usize > approvers.len() && policy.oidc.is_empty() {
        return Err(Error::refuse(
            ErrorCode::NoApprovers,
            format!(
                "role `{}` needs {needed} approvals but only {} approver(s) other than you exist",
                role.id,
                approvers.len()
            ),
        ));
    }
    Ok(approvers)
}

pub fn justification(role: &RoleDef, text: &str) -> Result<String, Error> {
    printable("justification", text.trim())?;
    justification_kept(role, text)
}

/// A justification hoist stored before (a grant's, carried to its
/// extension): held to the role's lengths, not again to the characters
/// refused since it was accepted, or a grant filed before a rule was
/// tightened could never be extended.
pub fn justification_kept(role: &RoleDef, text: &str) -> Result<String, Error> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars > MAX_JUSTIFICATION_CHARS {
        return Err(Error::refuse(
            ErrorCode::JustificationTooLong,
            format!(
                "justification is {chars} characters; at most {MAX_JUSTIFICATION_CHARS} are accepted"
            ),
        ));
    }
    // What an approver reads is what counts towards the minimum.
    let visible = visible_len(text);
    if visible < role.min_justification as usize {
        return Err(Error::refuse(
            ErrorCode::JustificationTooShort,
            format!(
                "justification is {visible} characters; role `{}` needs at least {}",
                role.id, role.min_justification
            ),
        ));
    }
    if visible == 0 {
        return Err(Error::refuse(
            ErrorCode::JustificationTooShort,
            "justification is empty",
        ));
    }
    Ok(text.to_string())
}

/// A ticket or incident reference: short, one word, printable.
fn reference(what: &str, value: Option<&str>) -> Result<Option<String>, Error> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_REFERENCE_CHARS {
        return Err(Error::refuse(
            ErrorCode::InvalidReference,
            format!("{what} reference is longer than {MAX_REFERENCE_CHARS} characters"),
        ));
    }
    if let Some(invisible) = find_invisible(value) {
        return Err(Error::refuse(
            ErrorCode::InvalidReference,
            format!("{what} reference holds {invisible}"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::refuse(
            ErrorCode::InvalidReference,
            format!(
                "{what} reference may not hold spaces or control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(Some(value.to_string()))
}

pub fn duration(role: &RoleDef, requested: Option<u64>) -> Result<u64, Error> {
    let max = role.max_duration.as_secs().min(MAX_DURATION_SECS);
    match requested {
        None => Ok(role.default_duration.as_secs()),
        Some(0) => Err(Error::refuse(
            ErrorCode::InvalidDuration,
            "duration must be longer than zero",
        )),
        Some(secs) if secs > max => Err(Error::refuse(
            ErrorCode::DurationTooLong,
            format!(
                "duration {} is longer than role `{}`'s maximum of {}",
                humantime::format_duration(std::time::Duration::from_secs(secs)),
                role.id,
                humantime::format_duration(role.max_duration)
            ),
        )),
        Some(secs) => Ok(secs),
    }
}

/// A review, cancellation or revocation comment: trimmed, bounded, printable.
pub fn comment(what: &str, text: Option<&str>) -> Result<Option<String>, Error> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_COMMENT_CHARS {
        return Err(Error::refuse(
            ErrorCode::InvalidBody,
            format!("{what} is longer than {MAX_COMMENT_CHARS} characters"),
        ));
    }
    printable(what, text)?;
    Ok(Some(text.to_string()))
}

/// Refuses text people read to decide on access if it holds a control
/// character (other than a line break or tab) or an invisible one (bidi
/// controls, zero-width characters, line separators), naming it.
fn printable(what: &str, text: &str) -> Result<(), Error> {
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(Error::refuse(
            ErrorCode::InvalidBody,
            format!("{what} holds the control character U+{:04X}", c as u32),
        ));
    }
    if let Some(invisible) = find_invisible(text) {
        return Err(Error::refuse(
            ErrorCode::InvalidBody,
            format!("{what} holds {invisible}"),
        ));
    }
    Ok(())
}
