//! What the notification worker asks of the broker ([`Notifier`]): audit
//! events routed to the policy's channels, reminders of requests about to
//! lapse and grants about to end, and each attempt recorded.
//!
//! Routing reads the audit log after the stored cursor and writes the
//! notifications and the new cursor in one transaction (store rule 1), so
//! with several instances an event is routed once, whichever leader does
//! it; a reminder's dedup key (the request, or the grant and its end) makes
//! the periodic scan write each reminder once (rule 12). An extension moves
//! a grant's end, so it earns a new reminder.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessRequest, AuditEvent, AuditKind, Grant, GrantState, RequestKind, RequestState,
    SYSTEM_ACTOR,
};

use super::{Broker, now, settle_grant, settle_request};
use crate::audit::NewAuditEvent;
use crate::error::{Error, Result};
use crate::notify::{Channels, Event, Notice, Notifier};
use crate::policy::Policy;
use crate::store::{
    AuditQuery, GrantQuery, Notification, NotificationDelivery, RequestQuery, StoreError, Tx,
};

/// Audit events routed per transaction.
const ROUTE_PAGE: usize = 256;

impl Notifier for Broker {
    fn channels(&self) -> Channels {
        self.policy().notify.clone()
    }

    fn decided(&self, id: &str) -> Result<Option<hoist_api::RequestState>> {
        let request = self.store.read()?.request(id)?;
        Ok(request
            .map(|mut request| {
                settle_request(&mut request, now());
                request.state
            })
            .filter(|state| *state != hoist_api::RequestState::Pending))
    }

    fn leads_now(&self) -> bool {
        crate::target::Ledger::leads_now(self)
    }

    fn route(&self) -> Result<bool> {
        let policy = self.policy();
        let mut recalled = HashSet::new();
        if !policy.notify.is_empty() && !self.recall_ahead_of_routing(&policy, &mut recalled)? {
            return Ok(false);
        }
        let mut tx = self.job_transaction()?;
        let cursor = tx.notification_cursor()?;
        let events = tx.audit(&AuditQuery {
            after_seq: cursor,
            limit: Some(ROUTE_PAGE),
            ..AuditQuery::default()
        })?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(false);
        };
        let at = now();
        if !policy.notify.is_empty() {
            for event in &events {
                // An entry whose notice cannot be made because a row it
                // reads no longer decodes (its request's, its grant's) is
                // logged and passed over, for good: left in place, it
                // would keep every later notice from being written. Any
                // other failure is tried again with the whole page.
                let notice = match notice_of(&policy, tx.as_ref(), event, &mut recalled) {
                    Ok(Some(notice)) => notice,
                    Ok(None) => continue,
                    Err(err @ Error::Store(StoreError::Corrupt(_))) => {
                        tracing::error!(
                            seq = event.seq,
                            kind = %event.kind.as_str(),
                            error = %err,
                            "no notice could be made of an audit entry; passed over, the later \
                             ones are routed"
                        );
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                // A grant's access is removed once, but a removal queued
                // twice (a hand-over racing the grant's end) fails twice
                // at its first attempt: one notice for the grant.
                let key = match (notice.event, &notice.grant_id) {
                    (Event::RemovalFailed, Some(grant)) => format!("removal_failed:{grant}"),
                    _ => format!("audit:{}", event.seq),
                };
                write(&policy, tx.as_mut(), &notice, &key, at)?;
            }
        }
        tx.set_notification_cursor(last)?;
        tx.commit()?;
        Ok(events.len() == ROUTE_PAGE)
    }

    fn remind(&self) -> Result<Option<DateTime<Utc>>> {
        let policy = self.policy();
        let lapsing = policy.notify.want(Event::RequestLapsing);
        let ending = policy.notify.want(Event::GrantEnding);
        if !lapsing && !ending {
            return Ok(None);
        }
        // Looked for every second: read without the writers' lock, which is
        // taken only when there is a reminder to write.
        let read = self.store.read()?;
        let now = now();
        let mut subjects = Vec::new();
        if lapsing {
            let pending = read.requests(&RequestQuery {
                states: vec![RequestState::Pending],
                ..RequestQuery::default()
            })?;
            for mut request in pending {
                settle_request(&mut request, now);
                if let (RequestState::Pending, Some(lapses_at)) = (request.state, request.lapses_at)
                {
                    let key = format!("lapsing:{}", request.id);
                    subjects.push((
                        Event::RequestLapsing,
                        lapses_at,
                        key,
                        Subject::Request(request),
                    ));
                }
            }
        }
        if ending {
            let active = read.grants(&GrantQuery {
                states: vec![GrantState::Active],
                ..GrantQuery::default()
            })?;
            for mut grant in active {
                settle_grant(&mut grant, now);
                if grant.state == GrantState::Active {
                    let key = format!(
                        "ending:{}:{}",
                        grant.id,
                        grant.expires_at.timestamp_millis()
                    );
                    subjects.push((
                        Event::GrantEnding,
                        grant.expires_at,
                        key,
                        Subject::Grant(grant),
                    ));
                }
            }
        }
        // Reminders this instance already wrote are not written again (nor
        // their request read) at every pass; the store's unique key is what
        // makes them once across instances.
        let known = self
            .reminded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        drop(read);
        let mut written = HashSet::new();
        let mut next: Option<DateTime<Utc>> = None;
        // What is due and not yet written, by subject: each with the
        // channels to write it to.
        let mut due = Vec::new();
        for (event, end, key, subject) in subjects {
            // Routed by the role as the policy stands now.
            let role_id = subject.role();
            let role = policy.role(role_id);
            let approver_groups = role.map(|r| r.approver_groups.as_slice()).unwrap_or(&[]);
            let tier = role.and_then(|r| r.shown_tier());
            let mut channels = Vec::new();
            for channel in policy.notify.iter() {
                if !channel.covers(event, role_id, approver_groups, tier) {
                    continue;
                }
                let from = end - TimeDelta::from_std(channel.remind_before).unwrap_or_default();
                if from > now {
                    next = Some(next.map_or(from, |n| n.min(from)));
                    continue;
                }
                let dedup = format!("{key}:{}", channel.name);
                if known.contains(&dedup) {
                    written.insert(dedup);
                    continue;
                }
                channels.push((&channel.name, dedup));
            }
            if !channels.is_empty() {
                due.push((event, key, subject, channels));
            }
        }
        // A lapsing request's notice names its approvers: read before the
        // writers' turn is taken, not while every writer waits.
        let mut recalled = HashSet::new();
        let asking: Vec<_> = due
            .iter()
            .filter(|(_, _, subject, _)| matches!(subject, Subject::Request(_)))
            .filter_map(|(_, _, subject, _)| policy.role(subject.role()))
            .collect();
        if !asking.is_empty() && !policy.oidc.is_empty() {
            super::recall_approvers(&policy, self.store.read()?.as_ref(), &asking)?;
            recalled.extend(asking.iter().map(|role| role.id.clone()));
        }
        let mut wrote = false;
        let mut tx: Option<Box<dyn crate::store::Tx + '_>> = None;
        for (event, key, subject, channels) in due {
            let mut notice: Option<Notice> = None;
            for (channel, dedup) in channels {
                let tx = match &mut tx {
                    Some(tx) => tx,
                    None => tx.insert(self.job_transaction()?),
                };
                if notice.is_none() {
                    // Decided, revoked or extended since it was read: no
                    // reminder of what no longer holds.
                    if !subject.still(tx.as_ref(), now)? {
                        break;
                    }
                    notice = subject.notice(&policy, tx.as_ref(), event, now, &mut recalled)?;
                }
                let Some(notice) = &notice else {
                    break;
                };
                wrote |= insert(tx.as_mut(), channel, notice, &key, now)?;
                written.insert(dedup);
            }
        }
        if wrote && let Some(tx) = tx {
            tx.commit()?;
        }
        *self.reminded.lock().unwrap_or_else(|p| p.into_inner()) = written;
        Ok(next)
    }

    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Notification>> {
        // As the target outbox reads its effects (`Ledger::due_effects`):
        // one row it cannot read must not stop every notice from going out.
        self.notifications_unread.read(
            "notifications",
            || Ok(self.store.read()?.due_notifications(now, limit, skip)?),
            || self.due_notifications_singly(now, limit, skip),
        )
    }

    fn record_notification(
        &self,
        notification: &Notification,
        delivery: &NotificationDelivery,
    ) -> Result<()> {
        let mut tx = self.job_transaction()?;
        tx.insert_notification_delivery(delivery)?;
        // Another leader may have finished it meanwhile: its record stands.
        let open = tx
            .notification(&notification.id)?
            .is_some_and(|stored| stored.done_at.is_none());
        if open {
            tx.update_notification(notification)?;
            if notification.done_at.is_some() && !notification.delivered {
                crate::audit::append(tx.as_mut(), given_up(notification))?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Broker {
    /// Reads, without the writers' turn, the next page of the audit log to
    /// route: false if there is none, so that an idle pass never takes the
    /// turn. With a provider, it also takes in the approvers of the roles
    /// whose requests the page asks approvers about (a read of every
    /// provider user in their groups) and adds those roles to `recalled`:
    /// [`Notifier::route`] then names them under the lock without reading
    /// again. A page that differs under the lock (a leader routed it
    /// meanwhile) has its other roles read there.
    fn recall_ahead_of_routing(
        &self,
        policy: &Policy,
        recalled: &mut HashSet<String>,
    ) -> Result<bool> {
        let read = self.store.read()?;
        let events = read.audit(&AuditQuery {
            after_seq: read.notification_cursor()?,
            limit: Some(ROUTE_PAGE),
            ..AuditQuery::default()
        })?;
        if events.is_empty() || policy.oidc.is_empty() {
            return Ok(!events.is_empty());
        }
        let mut roles: Vec<_> = events
            .iter()
            .filter(|event| matches!(event.kind, AuditKind::Requested | AuditKind::BreakGlass))
            .filter_map(|event| event.role.as_deref().and_then(|role| policy.role(role)))
            .collect();
        roles.sort_by(|a, b| a.id.cmp(&b.id));
        roles.dedup_by(|a, b| a.id == b.id);
        super::recall_approvers(policy, read.as_ref(), &roles)?;
        recalled.extend(roles.iter().map(|role| role.id.clone()));
        Ok(true)
    }
}

/// What a reminder is about.
enum Subject {
    Request(AccessRequest),
    Grant(Grant),
}

impl Subject {
    /// Whether it is still as the read without the lock found it, read
    /// again in `tx` (under the lock): still pending with the same lapse,
    /// or still active with the same end.
    fn still(&self, tx: &dyn Tx, now: DateTime<Utc>) -> Result<bool> {
        Ok(match self {
            Subject::Request(was) => tx.request(&was.id)?.is_some_and(|mut request| {
                settle_request(&mut request, now);
                request.state == RequestState::Pending && request.lapses_at == was.lapses_at
            }),
            Subject::Grant(was) => tx.grant(&was.id)?.is_some_and(|mut grant| {
                settle_grant(&mut grant, now);
                grant.state == GrantState::Active && grant.expires_at == was.expires_at
            }),
        })
    }

    fn role(&self) -> &str {
        match self {
            Subject::Request(request) => &request.role,
            Subject::Grant(grant) => &grant.role,
        }
    }

    fn notice(
        &self,
        policy: &Policy,
        tx: &dyn Tx,
        event: Event,
        at: DateTime<Utc>,
        recalled: &mut HashSet<String>,
    ) -> Result<Option<Notice>> {
        Ok(match self {
            Subject::Request(request) => {
                let mut notice = request_notice(policy, event, request, at);
                notice.to = approvers(policy, tx, request, recalled)?;
                Some(notice)
            }
            Subject::Grant(grant) => tx
                .request(&grant.request_id)?
                .map(|request| grant_notice(policy, event, &request, grant, at)),
        })
    }
}

/// Writes `notice` to every channel that takes it, under `key` and the
/// channel's name.
fn write(
    policy: &Policy,
    tx: &mut dyn Tx,
    notice: &Notice,
    key: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let role = policy.role(&notice.role);
    let approver_groups = role.map(|r| r.approver_groups.as_slice()).unwrap_or(&[]);
    for channel in policy.notify.iter() {
        if channel.covers(notice.event, &notice.role, approver_groups, notice.tier) {
            insert(tx, &channel.name, notice, key, at)?;
        }
    }
    Ok(())
}

/// Writes one notification; false if it was written before (rule 12).
fn insert(
    tx: &mut dyn Tx,
    channel: &str,
    notice: &Notice,
    key: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let notification = Notification {
        id: uuid::Uuid::new_v4().to_string(),
        dedup_key: format!("{key}:{channel}"),
        channel: channel.to_string(),
        event: notice.event.as_str().to_string(),
        notice: serde_json::to_string(notice).map_err(|err| StoreError::Other(err.to_string()))?,
        attempts: 0,
        next_attempt_at: at,
        last_error: None,
        created_at: at,
        done_at: None,
        delivered: false,
    };
    match tx.insert_notification(&notification) {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The audit entry of a notification given up: what it was about (its
/// request, grant and role), where it went, and why it failed.
fn given_up(notification: &Notification) -> NewAuditEvent {
    let notice: Option<Notice> = serde_json::from_str(&notification.notice).ok();
    let mut event = NewAuditEvent::new(AuditKind::NotificationGivenUp, SYSTEM_ACTOR, now());
    if let Some(notice) = notice {
        event.subject = Some(notice.requester).filter(|who| !who.is_empty());
        event.request_id = Some(notice.request_id).filter(|id| !id.is_empty());
        event.grant_id = notice.grant_id;
        event.role = Some(notice.role).filter(|role| !role.is_empty());
        event.incident = notice.incident;
    }
    event.reason = notification.last_error.clone();
    // Marked as the broker's own in the hashed data, as `Work::audit`
    // marks every other entry it writes.
    event.details = serde_json::json!({
        "channel": notification.channel,
        "event": notification.event,
        "attempts": notification.attempts,
        "notification_id": notification.id,
        "system": true,
    });
    event
}

/// The notice an audit entry calls for, if any; `recalled` holds the roles
/// whose approvers this pass already read.
fn notice_of(
    policy: &Policy,
    tx: &dyn Tx,
    event: &AuditEvent,
    recalled: &mut HashSet<String>,
) -> Result<Option<Notice>> {
    let request = |tx: &dyn Tx| -> Result<Option<AccessRequest>> {
        match &event.request_id {
            Some(id) => Ok(tx.request(id)?),
            None => Ok(None),
        }
    };
    let notice = match event.kind {
        AuditKind::Requested => {
            let Some(request) = request(tx)? else {
                return Ok(None);
            };
            // Approved by the policy, or break-glass (its own event): no
            // one is asked.
            if request.approvals_required == 0 || request.break_glass {
                return Ok(None);
            }
            let mut notice = request_notice(policy, Event::RequestFiled, &request, event.at);
            notice.to = approvers(policy, tx, &request, recalled)?;
            notice
        }
        AuditKind::Approved | AuditKind::Denied => {
            let Some(request) = request(tx)? else {
                return Ok(None);
            };
            // Nobody decided a request the policy approved by itself.
            if request.approvals_required == 0 || event.actor == SYSTEM_ACTOR {
                return Ok(None);
            }
            let mut notice = request_notice(policy, Event::RequestDecided, &request, event.at);
            notice.to = vec![request.requester.clone()];
            notice.decision = Some(
                if event.kind == AuditKind::Approved {
                    "approved"
                } else {
                    "denied"
                }
                .to_string(),
            );
            notice.decided_by = Some(event.actor.clone());
            notice.comment = request
                .reviews
                .iter()
                .rev()
                .find(|review| review.reviewer == event.actor)
                .and_then(|review| review.comment.clone());
            notice
        }
        AuditKind::BreakGlass => {
            let Some(request) = request(tx)? else {
                return Ok(None);
            };
            let mut notice = request_notice(policy, Event::BreakGlass, &request, event.at);
            notice.to = approvers(policy, tx, &request, recalled)?;
            notice
        }
        AuditKind::ProvisionFailed | AuditKind::DeprovisionFailed => {
            // The first failure of a provisioning or removal (later ones
            // are its retries), not the reconciler finding access missing.
            if event.details.get("attempt").and_then(|a| a.as_u64()) != Some(1) {
                return Ok(None);
            }
            let Some(grant) = (match &event.grant_id {
                Some(id) => tx.grant(id)?,
                None => None,
            }) else {
                return Ok(None);
            };
            let Some(request) = tx.request(&grant.request_id)? else {
                return Ok(None);
            };
            let what = if event.kind == AuditKind::ProvisionFailed {
                Event::ProvisionFailed
            } else {
                Event::RemovalFailed
            };
            let mut notice = grant_notice(policy, what, &request, &grant, event.at);
            notice.target = event
                .details
                .get("target")
                .and_then(|t| t.as_str())
                .map(str::to_string);
            notice.error = event.reason.clone();
            notice
        }
        _ => return Ok(None),
    };
    Ok(Some(notice))
}

/// The role's approvers, the request's owners aside (see
/// [`super::reviews::owners`]), each provider user by the
/// latest word the store holds of them (see [`super::recall_approvers`]):
/// someone put in an approver group since this instance heard of them is
/// told, and someone taken out is not. Read once a pass for each role
/// (`recalled`).
fn approvers(
    policy: &Policy,
    tx: &dyn Tx,
    request: &AccessRequest,
    recalled: &mut HashSet<String>,
) -> Result<Vec<String>> {
    let Some(role) = policy.role(&request.role) else {
        return Ok(Vec::new());
    };
    if recalled.insert(role.id.clone()) {
        super::recall_approvers(policy, tx, &[role])?;
    }
    let owners = super::reviews::owners(policy, tx, request)?;
    Ok(policy
        .approvers_of(role)
        .into_iter()
        .filter(|user| !owners.contains(user))
        .collect())
}

/// A notice with the request's facts.
fn request_notice(
    policy: &Policy,
    event: Event,
    request: &AccessRequest,
    at: DateTime<Utc>,
) -> Notice {
    let settings = &policy.settings;
    Notice {
        event,
        at,
        to: Vec::new(),
        request_id: request.id.clone(),
        kind: match request.kind {
            RequestKind::Access => "access",
            RequestKind::Extension => "extension",
        }
        .to_string(),
        role: request.role.clone(),
        role_name: request.role_name.clone(),
        tier: request.tier,
        requester: request.requester.clone(),
        justification: request.justification.clone(),
        ticket: request.ticket.clone(),
        ticket_url: request
            .ticket
            .as_ref()
            .and_then(|ticket| settings.ticket_url.as_ref().map(|link| link.fill(ticket))),
        incident: request.incident.clone(),
        duration_secs: request.duration_secs,
        break_glass: request.break_glass,
        approvals_required: request.approvals_required,
        url: settings
            .request_url
            .as_ref()
            .map(|link| link.fill(&request.id)),
        lapses_at: request.lapses_at,
        decision: None,
        decided_by: None,
        comment: None,
        grant_id: request.grant_id.clone(),
        expires_at: None,
        target: None,
        error: None,
    }
}

/// A notice with the grant's facts and its request's, to the holder.
fn grant_notice(
    policy: &Policy,
    event: Event,
    request: &AccessRequest,
    grant: &Grant,
    at: DateTime<Utc>,
) -> Notice {
    Notice {
        to: vec![grant.holder.clone()],
        grant_id: Some(grant.id.clone()),
        expires_at: Some(grant.expires_at),
        justification: grant.justification.clone(),
        ..request_notice(policy, event, request, at)
    }
}

impl Broker {
    /// Due notifications read one at a time, past those that cannot be
    /// ([`super::unread::Unread::read_each`]).
    fn due_notifications_singly(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Notification>> {
        let tx = self.store.read()?;
        let listed =
            tx.due_notification_ids(now, limit + self.notifications_unread.room(), skip)?;
        self.notifications_unread.read_each(
            listed,
            |id| id,
            limit,
            |id| Ok(tx.notification(id)?),
            |id, err| {
                tracing::error!(
                    notification = ?id,
                    error = %err,
                    "a notification could not be read; the others go out, and it is read again \
                     at each look"
                );
            },
        )
    }
}
