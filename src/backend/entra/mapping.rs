//! Entra's objects as hoist's: eligibilities as [`Role`]s with their policy
//! terms, schedule requests as [`AccessRequest`]s, active instances as
//! [`Grant`]s, with Entra's statuses mapped to the states hoist knows.
//!
//! One status needs care. An activation Entra reports `Provisioned` can take
//! minutes to appear as an active instance, and the access with it. Until
//! the instance appears the request stays [`RequestState::Approved`]
//! ("approved, not yet active"), which the core already shows as such, and
//! no grant exists: hoist never claims access that is not there yet.

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessRequest, ApprovalRule, Grant, GrantState, RequestKind, RequestState, Role, TicketRule,
};

use super::ids::{Access, ObjectRef, RoleRef, Surface};
use super::model::{AssignmentInstance, EligibilityInstance, ScheduleRequest};
use super::policy::{Terms, iso_duration};

/// How long an activation may stay `Provisioned` without an active
/// instance before hoist stops calling it propagating: Entra documents
/// minutes; past this, the access was removed before hoist saw it.
pub const PROPAGATION_WINDOW: TimeDelta = TimeDelta::minutes(30);

fn role_ref(
    surface: Surface,
    role_definition: Option<&String>,
    scope: Option<&String>,
    group: Option<&String>,
    access: Option<&String>,
) -> Option<RoleRef> {
    match surface {
        Surface::Directory => Some(RoleRef::Directory {
            role_definition: role_definition?.clone(),
            scope: scope.cloned().unwrap_or_else(|| "/".into()),
        }),
        Surface::Group => Some(RoleRef::Group {
            group: group?.clone(),
            access: Access::parse(&access?.to_ascii_lowercase())?,
        }),
    }
}

pub fn eligibility_ref(surface: Surface, e: &EligibilityInstance) -> Option<RoleRef> {
    role_ref(
        surface,
        e.role_definition_id.as_ref(),
        e.directory_scope_id.as_ref(),
        e.group_id.as_ref(),
        e.access_id.as_ref(),
    )
    .filter(|r| RoleRef::parse(&r.to_string()).as_ref() == Some(r))
}

pub fn instance_ref(surface: Surface, i: &AssignmentInstance) -> Option<RoleRef> {
    role_ref(
        surface,
        i.role_definition_id.as_ref(),
        i.directory_scope_id.as_ref(),
        i.group_id.as_ref(),
        i.access_id.as_ref(),
    )
}

pub fn request_ref(surface: Surface, r: &ScheduleRequest) -> Option<RoleRef> {
    role_ref(
        surface,
        r.role_definition_id.as_ref(),
        r.directory_scope_id.as_ref(),
        r.group_id.as_ref(),
        r.access_id.as_ref(),
    )
}

/// A role's name as people know it: the directory role's display name, or
/// the group's with the kind of access.
fn display_name(
    role: &RoleRef,
    role_definition: Option<&super::model::RoleDefinition>,
    group: Option<&super::model::Group>,
) -> String {
    match role {
        RoleRef::Directory {
            role_definition: id,
            scope,
        } => {
            let name = role_definition
                .and_then(|d| d.display_name.clone())
                .unwrap_or_else(|| id.clone());
            if scope == "/" {
                name
            } else {
                format!("{name} ({scope})")
            }
        }
        RoleRef::Group { group: id, access } => {
            let name = group
                .and_then(|g| g.display_name.clone())
                .unwrap_or_else(|| id.clone());
            format!("{name} ({})", access.as_str())
        }
    }
}

pub fn role(role: &RoleRef, e: &EligibilityInstance, terms: &Terms) -> Role {
    let (kind, description) = match role {
        RoleRef::Directory { .. } => (
            "Entra directory role",
            e.role_definition
                .as_ref()
                .and_then(|d| d.description.clone()),
        ),
        RoleRef::Group { .. } => (
            "PIM for Groups",
            e.group.as_ref().and_then(|g| g.description.clone()),
        ),
    };
    let scope = match role {
        RoleRef::Directory { scope, .. } if scope == "/" => format!("{kind}: whole tenant"),
        RoleRef::Directory { scope, .. } => format!("{kind}: {scope}"),
        RoleRef::Group { access, .. } => format!("{kind}: {}", access.as_str()),
    };
    let notes = terms.notes();
    let mut description = description.unwrap_or_default();
    if !notes.is_empty() {
        if !description.is_empty() {
            description.push_str(" · ");
        }
        description.push_str("Entra asks for: ");
        description.push_str(&notes.join(", "));
    }
    Role {
        id: role.to_string(),
        name: display_name(role, e.role_definition.as_ref(), e.group.as_ref()),
        description,
        scope,
        target: None,
        tier: None,
        default_duration_secs: terms.default_duration_secs(),
        max_duration_secs: terms.max_duration_secs,
        approval: ApprovalRule {
            approvals: u32::from(terms.approval),
            approver_groups: terms.approver_groups.clone(),
            approvers: terms.approvers.clone(),
        },
        break_glass: false,
        ticket: TicketRule {
            required: terms.ticket,
            pattern: None,
        },
        min_justification: u32::from(terms.justification),
    }
}

/// An active instance of my own, as a grant; standing assignments (no end,
/// or `Assigned` rather than `Activated`) are not grants and are skipped.
pub fn grant(
    surface: Surface,
    i: &AssignmentInstance,
    holder: &str,
    requests: &[ScheduleRequest],
) -> Option<Grant> {
    let activated = i
        .assignment_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("activated"));
    let (Some(start), Some(end)) = (i.start_date_time, i.end_date_time) else {
        return None;
    };
    if !activated {
        return None;
    }
    let role = instance_ref(surface, i)?;
    let schedule = i
        .role_assignment_schedule_id
        .as_ref()
        .or(i.assignment_schedule_id.as_ref());
    // The activation behind it: the one naming its schedule; failing that,
    // the newest of its role filed before it began (older ones are past
    // activations of the same role).
    let activations = || requests.iter().filter(|r| r.is("selfActivate"));
    let filed_by_start = start
        .checked_add_signed(TimeDelta::minutes(1))
        .unwrap_or(start);
    let request = activations()
        .filter(|r| schedule.is_some() && r.target_schedule_id.as_ref() == schedule)
        .max_by_key(|r| r.created_date_time)
        .or_else(|| {
            activations()
                .filter(|r| {
                    request_ref(surface, r).as_ref() == Some(&role)
                        && r.created_date_time.is_some_and(|c| c <= filed_by_start)
                })
                .max_by_key(|r| r.created_date_time)
        });
    let ticket = request
        .and_then(|r| r.ticket_info.as_ref())
        .and_then(|t| t.ticket_number.clone());
    Some(Grant {
        id: ObjectRef::new(surface, &i.id).to_string(),
        request_id: request
            .map(|r| ObjectRef::new(surface, &r.id).to_string())
            .unwrap_or_default(),
        role: role.to_string(),
        role_name: display_name(&role, i.role_definition.as_ref(), i.group.as_ref()),
        holder: holder.to_string(),
        starts_at: start,
        expires_at: end,
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
        access: None,
        break_glass: false,
        ticket,
        incident: None,
        justification: request
            .and_then(|r| r.justification.clone())
            .unwrap_or_default(),
    })
}

/// What a request needs to know about the rest of the picture to tell its
/// state honestly.
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    /// Who filed it, as hoist names people (`Me::user` for mine).
    pub requester: &'a str,
    /// My active grants, as mapped by [`grant`].
    pub grants: &'a [Grant],
    /// When each role was last deactivated by me.
    pub deactivated: &'a [(String, DateTime<Utc>)],
    pub terms: Option<&'a Terms>,
    /// Whether it is the caller's: only of their own requests are their
    /// grants and deactivations known, to tell active from ended.
    pub mine: bool,
}

/// Statuses of a schedule request that end it without doing what it asked:
/// denied, cancelled, timed out, or not applied.
pub(super) const FAILED_STATUSES: &[&str] = &[
    "Denied",
    "AdminDenied",
    "Canceled",
    "TimedOut",
    "Failed",
    "FailedAsResourceIsLocked",
    "Invalid",
];

/// A schedule request as an access request; deactivations are not access
/// requests (they show as the grant ending) and give `None`.
pub fn request(surface: Surface, r: &ScheduleRequest, cx: &Context<'_>) -> Option<AccessRequest> {
    // An administrator's assignment (`adminAssign`, often with no end) is
    // standing access, not a request of mine: neither is shown.
    let kind = if r.is("selfActivate") {
        RequestKind::Access
    } else if r.is("selfExtend") || r.is("selfRenew") {
        RequestKind::Extension
    } else {
        return None;
    };
    let role = request_ref(surface, r)?;
    let id = ObjectRef::new(surface, &r.id).to_string();
    let created = r.created_date_time.unwrap_or(cx.now);
    let duration_secs = r
        .schedule_info
        .as_ref()
        .and_then(|s| s.expiration.as_ref())
        .and_then(|e| e.duration.as_deref())
        .and_then(iso_duration)
        .unwrap_or(0);
    let start = r
        .schedule_info
        .as_ref()
        .and_then(|s| s.start_date_time)
        .unwrap_or(created);
    let ends = i64::try_from(duration_secs)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|duration| start.checked_add_signed(duration))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    // An activation is active while the grant it gave is ([`grant`] names
    // it); an extension, while its role's grant is, until the end it asked
    // for.
    let grant = match kind {
        RequestKind::Access => cx.grants.iter().find(|g| g.request_id == id),
        RequestKind::Extension => cx
            .grants
            .iter()
            .find(|g| g.role == role.to_string() && cx.now < ends),
    };
    let deactivated = cx
        .deactivated
        .iter()
        .any(|(r, at)| *r == role.to_string() && *at >= created);
    let (state, reason) = match r.status.as_str() {
        "PendingApproval" | "PendingAdminDecision" | "PendingApprovalProvisioning" => {
            (RequestState::Pending, None)
        }
        "Revoked" => (RequestState::Revoked, None),
        status if FAILED_STATUSES.contains(&status) => match status {
            "Denied" | "AdminDenied" => (RequestState::Denied, None),
            "Canceled" => (RequestState::Cancelled, None),
            "TimedOut" => (RequestState::TimedOut, None),
            _ => (
                RequestState::Cancelled,
                Some(format!("Entra could not apply it ({status})")),
            ),
        },
        // Someone else's (an approver reading it): their grants are not
        // the caller's to see, so Entra's word is all there is.
        _ if !cx.mine => match cx.now >= ends && duration_secs > 0 {
            true => (RequestState::Expired, None),
            false => (RequestState::Approved, None),
        },
        // Approved or self-activated: active once its instance exists.
        _ => match grant {
            Some(_) => (RequestState::Active, None),
            // Ended early stays ended early, past the end it asked for too.
            None if deactivated => (RequestState::Revoked, Some("deactivated".into())),
            None if cx.now >= ends && duration_secs > 0 => (RequestState::Expired, None),
            // Applied, or due to start later (the portal schedules starts):
            // its instance may not exist yet.
            None if r.status != "Provisioned"
                || r.completed_date_time
                    .unwrap_or(created)
                    .max(start)
                    .checked_add_signed(PROPAGATION_WINDOW)
                    .is_none_or(|settled| cx.now < settled) =>
            {
                (RequestState::Approved, None)
            }
            None => (
                RequestState::Revoked,
                Some("no longer active in Entra".into()),
            ),
        },
    };
    let lapses_at = (state == RequestState::Pending)
        .then(|| cx.terms.and_then(|t| t.approval_timeout_days))
        .flatten()
        .and_then(|days| {
            TimeDelta::try_days(i64::from(days)).and_then(|wait| created.checked_add_signed(wait))
        });
    Some(AccessRequest {
        id,
        kind,
        role: role.to_string(),
        role_name: display_name(&role, r.role_definition.as_ref(), r.group.as_ref()),
        requester: cx.requester.to_string(),
        justification: r.justification.clone().unwrap_or_default(),
        ticket: r.ticket_info.as_ref().and_then(|t| t.ticket_number.clone()),
        incident: None,
        duration_secs,
        starts_at: None,
        break_glass: false,
        state,
        created_at: created,
        updated_at: r.completed_date_time.unwrap_or(created),
        lapses_at,
        approvals_required: u32::from(cx.terms.is_some_and(|t| t.approval)),
        reviews: Vec::new(),
        claim: None,
        grant_id: (state == RequestState::Active)
            .then(|| grant.map(|g| g.id.clone()))
            .flatten(),
        reason,
        acknowledgement: None,
        tier: None,
        approvers: Vec::new(),
        signed_in_at: None,
    })
}

/// Who filed a request, as an approver sees it.
pub fn requester_of(r: &ScheduleRequest) -> String {
    r.principal
        .as_ref()
        .and_then(|p| p.user_principal_name.clone().or(p.display_name.clone()))
        .or_else(|| {
            r.created_by
                .as_ref()
                .and_then(|c| c.user.as_ref())
                .and_then(|u| u.display_name.clone())
        })
        .or_else(|| r.principal_id.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_json(status: &str) -> ScheduleRequest {
        serde_json::from_value(serde_json::json!({
            "id": "r1",
            "action": "selfActivate",
            "principalId": "me",
            "roleDefinitionId": "rd1",
            "directoryScopeId": "/",
            "roleDefinition": { "displayName": "User Administrator" },
            "justification": "why",
            "ticketInfo": { "ticketNumber": "CHG-1" },
            "scheduleInfo": { "startDateTime": "2026-01-01T10:00:00Z",
                              "expiration": { "type": "afterDuration", "duration": "PT1H" } },
            "status": status,
            "createdDateTime": "2026-01-01T10:00:00Z",
            "completedDateTime": "2026-01-01T10:00:05Z",
            "targetScheduleId": "s1"
        }))
        .unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn cx<'a>(now: &str, grants: &'a [Grant]) -> Context<'a> {
        Context {
            now: at(now),
            requester: "alice@contoso.com",
            grants,
            deactivated: &[],
            terms: None,
            mine: true,
        }
    }

    #[test]
    fn provisioned_is_approved_until_the_instance_appears() {
        let r = request_json("Provisioned");
        let mapped = request(Surface::Directory, &r, &cx("2026-01-01T10:01:00Z", &[])).unwrap();
        assert_eq!(mapped.state, RequestState::Approved);
        assert_eq!(mapped.id, "dir:r1");
        assert_eq!(mapped.role, "dir:rd1");
        assert_eq!(mapped.role_name, "User Administrator");
        assert_eq!(mapped.duration_secs, 3600);
        assert_eq!(mapped.ticket.as_deref(), Some("CHG-1"));
        assert_eq!(mapped.grant_id, None);

        let instance: AssignmentInstance = serde_json::from_value(serde_json::json!({
            "id": "i1", "principalId": "me", "roleDefinitionId": "rd1", "directoryScopeId": "/",
            "startDateTime": "2026-01-01T10:00:00Z", "endDateTime": "2026-01-01T11:00:00Z",
            "assignmentType": "Activated", "roleAssignmentScheduleId": "s1"
        }))
        .unwrap();
        let grant = grant(
            Surface::Directory,
            &instance,
            "alice@contoso.com",
            std::slice::from_ref(&r),
        )
        .unwrap();
        assert_eq!(grant.request_id, "dir:r1");
        assert_eq!(grant.justification, "why");
        let grants = [grant];
        let active = request(Surface::Directory, &r, &cx("2026-01-01T10:03:00Z", &grants)).unwrap();
        assert_eq!(active.state, RequestState::Active);
        assert_eq!(active.grant_id.as_deref(), Some("dir:i1"));
        // Past its end with no instance: expired, not propagating.
        let over = request(Surface::Directory, &r, &cx("2026-01-01T11:30:00Z", &[])).unwrap();
        assert_eq!(over.state, RequestState::Expired);
    }

    /// Deactivated early stays revoked past the end it asked for: it did
    /// not run to its end.
    #[test]
    fn a_deactivated_activation_stays_revoked_past_its_end() {
        let r = request_json("Provisioned");
        let deactivated = [("dir:rd1".to_string(), at("2026-01-01T10:10:00Z"))];
        let mut later = cx("2026-01-01T11:30:00Z", &[]);
        later.deactivated = &deactivated;
        let mapped = request(Surface::Directory, &r, &later).unwrap();
        assert_eq!(mapped.state, RequestState::Revoked);
    }

    /// An activation scheduled to start later (the portal allows it) has
    /// no instance until its start: it is approved until then, and for the
    /// time a start takes to apply, not called revoked from its filing on.
    #[test]
    fn an_activation_scheduled_later_is_approved_until_it_starts() {
        let mut r = request_json("Provisioned");
        r.schedule_info.as_mut().unwrap().start_date_time = Some(at("2026-01-01T12:00:00Z"));
        let before = request(Surface::Directory, &r, &cx("2026-01-01T11:00:00Z", &[])).unwrap();
        assert_eq!(before.state, RequestState::Approved);
        let gone = request(Surface::Directory, &r, &cx("2026-01-01T12:45:00Z", &[])).unwrap();
        assert_eq!(
            gone.state,
            RequestState::Revoked,
            "started, and no instance"
        );
    }

    /// Someone else's request, read by an approver long after it went
    /// through: the approver's own grants say nothing of it, so it is not
    /// called revoked for want of an instance among them.
    #[test]
    fn anothers_provisioned_request_is_approved_not_revoked() {
        let r = request_json("Provisioned");
        let mut theirs = cx("2026-01-01T10:45:00Z", &[]);
        theirs.mine = false;
        let mapped = request(Surface::Directory, &r, &theirs).unwrap();
        assert_eq!(mapped.state, RequestState::Approved);
        let mine = request(Surface::Directory, &r, &cx("2026-01-01T10:45:00Z", &[])).unwrap();
        assert_eq!(
            mine.state,
            RequestState::Revoked,
            "mine, and gone from my grants"
        );
    }

    /// Graph spells actions in more than one case; `SelfActivate` is the
    /// same request, not one to hide.
    #[test]
    fn an_action_in_another_case_is_the_same_action() {
        let mut r = request_json("PendingApproval");
        r.action = Some("SelfActivate".into());
        let mapped = request(Surface::Directory, &r, &cx("2026-01-01T10:01:00Z", &[]));
        assert_eq!(mapped.map(|m| m.state), Some(RequestState::Pending));
    }

    #[test]
    fn statuses_map_to_hoist_states() {
        let now = "2026-01-01T10:01:00Z";
        for (status, state) in [
            ("PendingApproval", RequestState::Pending),
            ("Granted", RequestState::Approved),
            ("PendingProvisioning", RequestState::Approved),
            ("Denied", RequestState::Denied),
            ("Canceled", RequestState::Cancelled),
            ("Revoked", RequestState::Revoked),
            ("TimedOut", RequestState::TimedOut),
            ("Failed", RequestState::Cancelled),
        ] {
            let mapped = request(Surface::Directory, &request_json(status), &cx(now, &[])).unwrap();
            assert_eq!(mapped.state, state, "{status}");
        }
        let mut deactivation = request_json("Revoked");
        deactivation.action = Some("selfDeactivate".into());
        assert!(request(Surface::Directory, &deactivation, &cx(now, &[])).is_none());
    }

    /// Yesterday's activation of a role, and today's: today's instance is
    /// today's request's grant, and yesterday's request stays expired,
    /// whichever order Graph lists them in.
    #[test]
    fn a_past_activation_of_the_same_role_is_not_the_live_one() {
        let mut old = request_json("Provisioned");
        old.id = "r0".into();
        old.justification = Some("yesterday".into());
        old.ticket_info =
            serde_json::from_value(serde_json::json!({ "ticketNumber": "INC-OLD" })).unwrap();
        old.target_schedule_id = Some("s0".into());
        old.created_date_time = Some(at("2025-12-31T10:00:00Z"));
        old.schedule_info = serde_json::from_value(serde_json::json!({
            "startDateTime": "2025-12-31T10:00:00Z",
            "expiration": { "type": "afterDuration", "duration": "PT1H" }
        }))
        .unwrap();
        let new = request_json("Provisioned");
        let instance: AssignmentInstance = serde_json::from_value(serde_json::json!({
            "id": "i1", "principalId": "me", "roleDefinitionId": "rd1", "directoryScopeId": "/",
            "startDateTime": "2026-01-01T10:00:00Z", "endDateTime": "2026-01-01T11:00:00Z",
            "assignmentType": "Activated", "roleAssignmentScheduleId": "s1"
        }))
        .unwrap();
        let mut unscheduled = instance.clone();
        unscheduled.role_assignment_schedule_id = None;
        for listed in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
            for instance in [&instance, &unscheduled] {
                let live =
                    grant(Surface::Directory, instance, "alice@contoso.com", &listed).unwrap();
                assert_eq!(live.request_id, "dir:r1");
                assert_eq!(live.ticket.as_deref(), Some("CHG-1"));
                assert_eq!(live.justification, "why");
                let grants = [live];
                let now = cx("2026-01-01T10:03:00Z", &grants);
                let past = request(Surface::Directory, &old, &now).unwrap();
                assert_eq!(past.state, RequestState::Expired);
                assert_eq!(past.grant_id, None);
                let current = request(Surface::Directory, &new, &now).unwrap();
                assert_eq!(current.state, RequestState::Active);
            }
        }
    }

    /// An administrator's assignment is standing access, not my request: it
    /// never shows as one, let alone as revoked while I hold the role.
    #[test]
    fn an_administrators_assignment_is_not_a_request() {
        let mut assigned = request_json("Provisioned");
        assigned.action = Some("adminAssign".into());
        let later = cx("2026-01-01T12:00:00Z", &[]);
        assert!(request(Surface::Directory, &assigned, &later).is_none());
    }

    /// A policy's approval timeout past what a date holds gives no lapse
    /// time, not a panic.
    #[test]
    fn a_huge_approval_timeout_does_not_panic() {
        let terms = Terms {
            approval_timeout_days: Some(u32::MAX),
            ..Terms::default()
        };
        let mut now = cx("2026-01-01T10:01:00Z", &[]);
        now.terms = Some(&terms);
        let pending = request(Surface::Directory, &request_json("PendingApproval"), &now).unwrap();
        assert_eq!(pending.state, RequestState::Pending);
        assert_eq!(pending.lapses_at, None);
    }

    #[test]
    fn standing_assignments_are_not_grants() {
        let standing: AssignmentInstance = serde_json::from_value(serde_json::json!({
            "id": "i2", "groupId": "g1", "accessId": "member",
            "startDateTime": "2026-01-01T10:00:00Z", "endDateTime": null, "assignmentType": "assigned"
        }))
        .unwrap();
        assert!(grant(Surface::Group, &standing, "a", &[]).is_none());
    }
}
