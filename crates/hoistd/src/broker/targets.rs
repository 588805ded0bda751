//! Grants at their targets: the effects a grant change writes to the
//! outbox (in its own transaction), and the [`Ledger`] the outbox worker and
//! the reconciler drive, each call one transaction that records state, the
//! audit event and the live change together.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hoist_api::{AccessState, AuditKind, ErrorCode, Grant, GrantState, TargetAccess};
use serde_json::{Value, json};

use super::{Broker, SYSTEM_ACTOR, Work, grant_event, new_id, settle_grant};
use crate::audit::NewAuditEvent;
use crate::error::{Error, Result};
use crate::policy::{Policy, RoleDef};
use crate::store::{Effect, EffectAction, GrantQuery, Tx};
use crate::target::reconcile::View;
use crate::target::{
    Due, GrantFacts, Journal, Ledger, Managed, TargetError, TargetKind, Targets, outbox,
};

/// What [`Work::narrow_to_policy`] did to a live grant's access.
pub(super) enum Narrowing {
    /// Nothing: it is what its role gives now, or within it.
    Unchanged,
    /// Narrower access was queued.
    Narrowed,
    /// It cannot be narrowed where it is, and the grant must end: why.
    Ends(String),
}

/// Failures of one effect audited in full; past these, only every
/// power-of-two attempt is, so a target down for a day does not flood the
/// log (each attempt is still in the outbox and the broker's log).
const FAILURES_AUDITED: u32 = 3;

fn audited_failure(attempts: u32) -> bool {
    attempts <= FAILURES_AUDITED || attempts.is_power_of_two()
}

impl Work<'_> {
    /// Queues an effect at the grant's target, in this transaction. It
    /// carries the access the grant was activated with, so that a removal
    /// takes away what was given even if the role has changed since, and
    /// the system that access was given at, so that it runs nowhere else.
    pub(super) fn queue_effect(&mut self, grant: &Grant, action: EffectAction) -> Result<()> {
        if grant.access.is_none() {
            return Ok(());
        }
        let granted = granted(&*self.tx, &self.policy, grant)?;
        self.queue_effect_giving(grant, action, granted.access, granted.system)
    }

    /// Queues a live grant's access again (an extension's new end, access
    /// found missing): what it was given, narrowed to what its role gives
    /// there under the policy in force, so that neither gives back what a
    /// reload took out of the role. Earlier provisions not yet done are
    /// superseded: this one gives all they would, and one retried after it
    /// would give more. `Some(why)` when nothing may be given there any
    /// more (the role no longer gives access at that target, or the target
    /// is gone or names another system); nothing is queued then.
    pub(super) fn provision_again(&mut self, grant: &Grant) -> Result<Option<String>> {
        let Some(access) = &grant.access else {
            return Ok(None);
        };
        let policy = Arc::clone(&self.policy);
        let Some(target) = policy.targets.get(&access.target) else {
            return Ok(Some(format!(
                "its access is at {}, which the policy in force no longer names",
                access.target
            )));
        };
        let granted = granted(&*self.tx, &policy, grant)?;
        if let Some(why) = policy
            .targets
            .moved(&access.target, granted.system.as_deref())
        {
            return Ok(Some(why));
        }
        let given = match policy.role(&grant.role) {
            Some(role) => narrow_to_role(&**target, role, &granted.access),
            None => Err(format!("role {} is no longer in the policy", grant.role)),
        };
        let given = match given {
            Ok(given) => given,
            Err(why) => return Ok(Some(why)),
        };
        self.supersede_provisions(grant)?;
        self.queue_effect_giving(grant, EffectAction::Provision, given, granted.system)?;
        Ok(None)
    }

    /// Narrows a live grant's access at a target where it was made once, at
    /// activation ([`TargetKind::narrowed_at_target`]: a PostgreSQL role's
    /// memberships), to what its role gives there under the policy in
    /// force (nothing, if it no longer gives access there), when that is
    /// less: a provision of the narrower access is queued, and the access
    /// counts as being provisioned (no credential) until the target has
    /// taken it. At a target that cannot narrow what it was given (a
    /// webhook's receiver), the grant must end instead: said why. So must
    /// one at a target that makes access at each credential (an SSH
    /// certificate, an OpenBao token) once its role gives less than it was
    /// given there, or nothing: what it made already is taken back with
    /// it.
    pub(super) fn narrow_to_policy(&mut self, grant: &mut Grant) -> Result<Narrowing> {
        let Some(access) = &grant.access else {
            return Ok(Narrowing::Unchanged);
        };
        let policy = Arc::clone(&self.policy);
        let target = access.target.clone();
        let (Some(kind), Some(role)) = (policy.targets.get(&target), policy.role(&grant.role))
        else {
            return Ok(Narrowing::Unchanged);
        };
        let granted = granted(&*self.tx, &policy, grant)?;
        if policy
            .targets
            .moved(&target, granted.system.as_deref())
            .is_some()
        {
            return Ok(Narrowing::Unchanged);
        }
        let gives = role
            .access
            .as_ref()
            .filter(|gives| gives.target == target)
            .map(|gives| &gives.access);
        match kind.narrowed_at_target(&granted.access, gives) {
            Some(Ok(now)) if now != granted.access => {
                self.supersede_provisions(grant)?;
                self.queue_effect_giving(grant, EffectAction::Provision, now, granted.system)?;
                let at = self.now;
                if let Some(access) = grant.access.as_mut() {
                    access.state = AccessState::Provisioning;
                    access.reason = Some(format!(
                        "being narrowed at {target} to what role {} gives there now",
                        grant.role
                    ));
                    access.attempts = 0;
                    access.next_attempt_at = None;
                    access.updated_at = super::next_change(at, access.updated_at);
                }
                self.save_grant(grant)?;
                Ok(Narrowing::Narrowed)
            }
            Some(Err(why)) => Ok(Narrowing::Ends(why)),
            Some(Ok(_)) => Ok(Narrowing::Unchanged),
            // Made at each credential (an SSH certificate, an OpenBao
            // token), which cannot be narrowed once made: when the role
            // now gives less than the grant was given, or nothing, the
            // grant ends, and with it what was made already (the
            // certificates go into the KRL, the tokens are revoked): what
            // the role no longer gives is taken back now. What it was
            // given is compared as this build reads it, so a reload that
            // changes nothing ends nothing. Access kept that this build
            // cannot read (written by a newer one, mid upgrade) is no
            // reason to end a grant: left as it is. A grant from before
            // access was kept is judged by its role alone.
            None => match narrow_to_role(kind.as_ref(), role, &granted.access) {
                Ok(now) if granted.kept => {
                    let lost = kind
                        .narrow(&granted.access, &granted.access)
                        .ok()
                        .and_then(|given| kind.taken_back(&given, &now));
                    Ok(match lost {
                        Some(lost) => Narrowing::Ends(format!(
                            "role {}'s access at {target} no longer gives {lost}, and what \
                             was made for the grant (certificates, tokens) cannot be narrowed",
                            role.id
                        )),
                        None => Narrowing::Unchanged,
                    })
                }
                Ok(_) => Ok(Narrowing::Unchanged),
                Err(why) if !granted.kept => Ok(Narrowing::Ends(why)),
                Err(why) => match kind.narrow(&granted.access, &granted.access) {
                    Ok(_) => Ok(Narrowing::Ends(why)),
                    Err(unread) => {
                        tracing::warn!(
                            grant = %grant.id,
                            target = %target,
                            error = %unread,
                            "cannot read the access the grant was given; left as it is"
                        );
                        Ok(Narrowing::Unchanged)
                    }
                },
            },
        }
    }

    /// Marks the grant's provisions not yet done as done: a later one gives
    /// what they would. One running now records nothing when it ends, and
    /// the outbox runs one effect of a grant at a time, so the later one
    /// runs after it.
    pub(super) fn supersede_provisions(&mut self, grant: &Grant) -> Result<()> {
        for mut effect in self.tx.grant_effects(&grant.id)? {
            if effect.done_at.is_none() && effect.action == EffectAction::Provision {
                effect.done_at = Some(self.now);
                self.tx.update_effect(&effect)?;
            }
        }
        Ok(())
    }

    /// Queues the first effect of a grant just started: it gives what its
    /// role's access says now, at the system its target names now (no
    /// effect of its own to read yet).
    pub(super) fn queue_first_effect(&mut self, grant: &Grant) -> Result<()> {
        let given = role_access(&self.policy, &grant.role);
        self.queue_effect_giving(grant, EffectAction::Provision, given, None)
    }

    /// Queues an effect giving `given` at `system`; with none known, at the
    /// system the grant's target names now.
    fn queue_effect_giving(
        &mut self,
        grant: &Grant,
        action: EffectAction,
        given: Value,
        system: Option<String>,
    ) -> Result<()> {
        let Some(access) = &grant.access else {
            return Ok(());
        };
        let system = system.or_else(|| {
            self.policy
                .targets
                .get(&access.target)
                .map(|target| target.system())
        });
        self.tx.insert_effect(&Effect {
            id: new_id("fx"),
            grant_id: grant.id.clone(),
            target: access.target.clone(),
            action,
            attempts: 0,
            next_attempt_at: self.now,
            last_error: None,
            created_at: self.now,
            done_at: None,
            access: Some(given),
            system,
        })?;
        self.effects = true;
        Ok(())
    }

    /// The grant ended in hoist: its provision, if still pending, stops (the
    /// deprovision takes over), and its access is removed.
    pub(super) fn end_access(&mut self, grant: &mut Grant) -> Result<()> {
        if grant.access.is_none() {
            return Ok(());
        }
        self.supersede_provisions(grant)?;
        let Some(access) = grant.access.as_mut() else {
            return Ok(());
        };
        access.state = AccessState::Removing;
        access.reason = None;
        access.live_until = None;
        access.attempts = 0;
        access.next_attempt_at = None;
        access.updated_at = super::next_change(self.now, access.updated_at);
        self.queue_effect(grant, EffectAction::Deprovision)
    }
}

/// What a grant's effects kept of its access.
pub(super) struct Granted {
    /// What it gives at its target: the role's `[roles.access]` when the
    /// grant was activated; for a grant activated before effects kept it,
    /// what the policy in force says.
    pub access: Value,
    /// Whether `access` is what its effects kept (not the policy's).
    pub kept: bool,
    /// The system it was given at; `None` for a grant whose effects were
    /// all queued before hoistd kept it.
    pub system: Option<String>,
}

/// What `grant`'s access gives and where, as its effects kept it.
pub(super) fn granted(tx: &dyn Tx, policy: &Policy, grant: &Grant) -> Result<Granted> {
    let effects = tx.grant_effects(&grant.id)?;
    let kept = effects
        .iter()
        .rev()
        .find_map(|effect| effect.access.clone());
    Ok(Granted {
        kept: kept.is_some(),
        access: kept.unwrap_or_else(|| role_access(policy, &grant.role)),
        system: effects.into_iter().rev().find_map(|effect| effect.system),
    })
}

/// What a credential fetched now for `grant` may carry at `target`: what
/// it was `given`, narrowed to what `role` gives there under the policy in
/// force, so that a reload taking a principal or an OpenBao policy out of a
/// role takes it out of every certificate or token made after, for grants
/// already live too. A role that no longer gives access at that target
/// gives no credential there.
pub(super) fn narrowed(
    target: &dyn TargetKind,
    grant: &Grant,
    role: &RoleDef,
    given: &Value,
) -> Result<Value> {
    let refused = |why: String| {
        Error::refuse(
            ErrorCode::InvalidState,
            format!("grant {} is live, but {why}", grant.id),
        )
    };
    narrow_to_role(target, role, given)
        .map_err(|why| refused(format!("{why}: no credential is made there")))
}

/// What was `given` at `target`, narrowed to what `role` gives there under
/// the policy in force ([`TargetKind::narrow`]), or why nothing is left.
fn narrow_to_role(
    target: &dyn TargetKind,
    role: &RoleDef,
    given: &Value,
) -> std::result::Result<Value, String> {
    let now = role
        .access
        .as_ref()
        .filter(|access| access.target == target.name())
        .ok_or_else(|| {
            format!(
                "its role {} no longer gives access at {}",
                role.id,
                target.name()
            )
        })?;
    target
        .narrow(given, &now.access)
        .map_err(|why| format!("role {}'s access at {} {why}", role.id, target.name()))
}

/// The role's `[roles.access]` under this policy; null for none.
fn role_access(policy: &Policy, role: &str) -> Value {
    policy
        .role(role)
        .and_then(|role| role.access.as_ref())
        .map(|access| access.access.clone())
        .unwrap_or(Value::Null)
}

/// Whether a grant with this access is usable: no target, or live there.
pub(super) fn usable(grant: &Grant) -> bool {
    grant
        .access
        .as_ref()
        .is_none_or(|access| access.state == AccessState::Live)
}

/// Why a grant's access cannot be used yet, as its holder is told.
pub(super) fn not_usable_yet(grant: &Grant, access: &TargetAccess) -> String {
    let mut message = format!(
        "grant {} is active, but its access at {} is {}",
        grant.id,
        access.target,
        match access.state {
            AccessState::Provisioning => "being provisioned",
            // Live until the end its target took (`settle_grant`).
            AccessState::Failed if access.live_until.is_some() => "no longer there",
            AccessState::Failed => "not there yet: provisioning failed",
            AccessState::Removing | AccessState::Removed => "being removed",
            AccessState::Live => "live",
        }
    );
    if let Some(reason) = &access.reason {
        message.push_str(&format!(" ({reason})"));
    }
    if let Some(at) = access.next_attempt_at {
        message.push_str(&format!(
            "; attempt {} at {}",
            access.attempts + 1,
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    message.push_str("; try again once it is live");
    message
}

impl Broker {
    /// The facts a target is told about a grant, with the access it gives
    /// there (see [`granted`]).
    pub(super) fn facts(&self, grant: &Grant, access: Value) -> GrantFacts {
        GrantFacts {
            id: grant.id.clone(),
            role: grant.role.clone(),
            holder: grant.holder.clone(),
            starts_at: grant.starts_at,
            expires_at: grant.expires_at,
            access,
            justification: grant.justification.clone(),
            ticket: grant.ticket.clone(),
            incident: grant.incident.clone(),
        }
    }

    /// Wakes the outbox worker: an effect was written.
    pub fn outbox_wakeup(&self) -> &Arc<tokio::sync::Notify> {
        &self.outbox
    }

    /// Wakes the reconciler for a pass now.
    pub fn reconciler_wakeup(&self) -> &Arc<tokio::sync::Notify> {
        &self.reconciler
    }

    /// Counts the reconciler's rounds on this instance: each time every
    /// system's targets have ended a pass since the last.
    pub fn reconciler_passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reconciled.subscribe()
    }

    fn target_event(
        &self,
        kind: AuditKind,
        at: DateTime<Utc>,
        grant: &Grant,
        access: &TargetAccess,
    ) -> NewAuditEvent {
        let mut event = grant_event(kind, SYSTEM_ACTOR, at, grant);
        event.details = json!({ "target": access.target, "kind": access.kind });
        event
    }
}

impl Ledger for Broker {
    fn targets(&self) -> Targets {
        self.policy().targets.clone()
    }

    fn leads_now(&self) -> bool {
        self.term
            .borrow()
            .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    fn journal(&self) -> Journal {
        // Only a leader acts under its lease; a hand-over on another
        // instance sends none.
        let lease = self.lease().borrow().clone();
        let epoch = lease.filter(|_| self.leads_now()).map(|lease| lease.epoch);
        Journal::new(
            Arc::clone(&self.store),
            self.ssh_cas(),
            Arc::clone(&self.signer),
            self.policy().settings.issuer.clone(),
        )
        .under_lease(epoch)
    }

    /// What is due, read together; if that fails for a reason other than
    /// the database's (an effect or a grant it cannot read), each effect
    /// is read on its own, and the ones that cannot be are logged and left
    /// out ([`super::unread::Unread`]): one bad row must not keep every other
    /// grant's access from being given or removed.
    fn due_effects(&self, now: DateTime<Utc>, limit: usize, skip: &[String]) -> Result<Vec<Due>> {
        self.effects_unread.read(
            "target effects",
            || self.due_effects_together(now, limit, skip),
            || self.due_effects_singly(now, limit, skip),
        )
    }

    fn next_effect_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self.store.read()?.next_effect_due()?)
    }

    fn record_effect(
        &self,
        due: &Due,
        outcome: std::result::Result<(), TargetError>,
    ) -> Result<()> {
        let mut work = self.begin_job()?;
        let effects = work.tx.grant_effects(&due.effect.grant_id)?;
        // A removal queued again while this one ran (a credential handed
        // over as the grant ended: what it minted is removed by the next):
        // the access is removed once that one is done, not before.
        let another_removal = effects.iter().any(|e| {
            e.id != due.effect.id && e.done_at.is_none() && e.action == EffectAction::Deprovision
        });
        // A Provision queued after this one already went through.
        let superseded = effects.iter().any(|e| {
            e.id != due.effect.id
                && e.action == EffectAction::Provision
                && e.done_at.is_some()
                && e.created_at >= due.effect.created_at
        });
        let Some(mut effect) = effects.into_iter().find(|e| e.id == due.effect.id) else {
            return Ok(());
        };
        // Superseded while it ran (its grant ended): its deprovision, which
        // waited for it, decides now.
        if effect.done_at.is_some() {
            return Ok(());
        }
        let Some(mut grant) = work.tx.grant(&effect.grant_id)? else {
            return Ok(());
        };
        let Some(mut access) = grant.access.clone() else {
            return Ok(());
        };
        let now = work.now;
        let event = match outcome {
            Ok(()) => {
                effect.done_at = Some(now);
                effect.last_error = None;
                access.attempts = effect.attempts + 1;
                access.reason = None;
                access.next_attempt_at = None;
                access.updated_at = super::next_change(now, access.updated_at);
                match effect.action {
                    EffectAction::Provision => {
                        access.state = AccessState::Live;
                        // The end it was given; before the grant's if the
                        // grant was extended again since it was sent.
                        let given = due.grant.expires_at;
                        access.live_until = (given < grant.expires_at).then_some(given);
                        Some(self.target_event(AuditKind::Provisioned, now, &grant, &access))
                    }
                    EffectAction::Deprovision if another_removal => None,
                    EffectAction::Deprovision => {
                        access.state = AccessState::Removed;
                        Some(self.target_event(AuditKind::Deprovisioned, now, &grant, &access))
                    }
                }
            }
            Err(err) => {
                effect.attempts += 1;
                let retry_at = now
                    + chrono::TimeDelta::from_std(outbox::backoff(effect.attempts))
                        .unwrap_or_default();
                effect.next_attempt_at = retry_at;
                effect.last_error = Some(err.to_string());
                access.attempts = effect.attempts;
                access.reason = Some(err.to_string());
                access.next_attempt_at = Some(retry_at);
                access.updated_at = super::next_change(now, access.updated_at);
                let kind = match effect.action {
                    // Giving live access its new end (an extension): what
                    // the target has is still there until the end it took,
                    // and usable until then (`settle_grant`).
                    EffectAction::Provision
                        if access.state == AccessState::Live && access.live_until.is_some() =>
                    {
                        access.reason = Some(format!(
                            "the new end is not at {} yet, where the access ends at {} \
                             unless it takes it: {err}",
                            access.target,
                            access
                                .live_until
                                .map(|until| until.to_rfc3339())
                                .unwrap_or_default()
                        ));
                        AuditKind::ProvisionFailed
                    }
                    // With no end recorded, a retry of a Provision a later
                    // one made good (the target has the grant's end) leaves
                    // it live; otherwise what the target has is not known
                    // (an extension by an instance from before live_until
                    // was kept), and the access counts as failed.
                    EffectAction::Provision if access.state == AccessState::Live && superseded => {
                        AuditKind::ProvisionFailed
                    }
                    EffectAction::Provision => {
                        access.state = AccessState::Failed;
                        AuditKind::ProvisionFailed
                    }
                    // A failed teardown stays `removing`, with its reason.
                    EffectAction::Deprovision => AuditKind::DeprovisionFailed,
                };
                audited_failure(effect.attempts).then(|| {
                    let mut event = self.target_event(kind, now, &grant, &access);
                    event.reason = Some(err.to_string());
                    event.details = json!({
                        "target": access.target,
                        "kind": access.kind,
                        "attempt": effect.attempts,
                        "retry_at": retry_at,
                        "unreachable": err.is_unreachable(),
                    });
                    event
                })
            }
        };
        work.tx.update_effect(&effect)?;
        grant.access = Some(access);
        work.save_grant(&grant)?;
        if let Some(event) = event {
            work.audit(event)?;
        }
        self.finish(work)
    }

    fn holding(&self) -> Result<HashSet<String>> {
        let grants = self
            .store
            .read()?
            .grants(&GrantQuery::holding_access(None))?;
        Ok(grants.into_iter().map(|grant| grant.id).collect())
    }

    fn reconcile_view(&self, target: &str) -> Result<View> {
        let tx = self.store.read()?;
        let policy = self.policy();
        let now = super::now();
        // Every target's, not only this one's: targets may share a server
        // (two PostgreSQL targets on one cluster, whose roles are the whole
        // cluster's), and a role there of another target's live grant is
        // no drift.
        let holding = tx.grants(&GrantQuery::holding_access(None))?;
        let mut view = View::default();
        for mut grant in holding {
            view.holding.insert(grant.id.clone());
            if grant.access.as_ref().is_none_or(|a| a.target != target) {
                continue;
            }
            settle_grant(&mut grant, now);
            let live = grant
                .access
                .as_ref()
                .is_some_and(|a| a.state == AccessState::Live);
            if grant.state == GrantState::Active && live {
                let granted = granted(&*tx, &policy, &grant)?;
                // Given at the system the target named before: not to be
                // looked for (and given again) where it names now.
                if policy
                    .targets
                    .moved(target, granted.system.as_deref())
                    .is_none()
                {
                    view.live.push(self.facts(&grant, granted.access));
                }
            }
        }
        Ok(view)
    }

    fn access_missing(&self, grant_id: &str, target: &str) -> Result<()> {
        let mut work = self.begin_job()?;
        let Some(mut grant) = work.tx.grant(grant_id)? else {
            return Ok(());
        };
        settle_grant(&mut grant, work.now);
        // Set up again only while it lasts.
        work.relies_on_grant(&grant);
        let live_here = grant
            .access
            .as_ref()
            .is_some_and(|a| a.state == AccessState::Live && a.target == target);
        // It ended, or changed, since the reconciler looked: nothing to do.
        if grant.state != GrantState::Active || !live_here {
            return Ok(());
        }
        // Its target was pointed elsewhere since the reconciler looked.
        let policy = Arc::clone(&work.policy);
        let given_at = granted(&*work.tx, &policy, &grant)?.system;
        if policy.targets.get(target).is_none()
            || policy.targets.moved(target, given_at.as_deref()).is_some()
        {
            return Ok(());
        }
        let now = work.now;
        let reason = format!("access was missing at {target}; provisioning it again");
        if let Some(access) = grant.access.as_mut() {
            access.state = AccessState::Provisioning;
            access.reason = Some(reason.clone());
            access.attempts = 0;
            access.next_attempt_at = None;
            access.updated_at = super::next_change(now, access.updated_at);
        }
        // Given again as its role gives it now: never what a reload took
        // out of the role. One that gives nothing there any more is not
        // given again, and counts as failed.
        let reason = match work.provision_again(&grant)? {
            None => reason,
            Some(why) => {
                // Nor by a provision still being retried.
                work.supersede_provisions(&grant)?;
                let reason =
                    format!("access was missing at {target}, and is not given again: {why}");
                if let Some(access) = grant.access.as_mut() {
                    access.state = AccessState::Failed;
                    access.reason = Some(reason.clone());
                }
                reason
            }
        };
        work.save_grant(&grant)?;
        if let Some(access) = &grant.access {
            let mut event = self.target_event(AuditKind::ProvisionFailed, now, &grant, access);
            event.reason = Some(reason);
            event.details = json!({ "target": target, "kind": access.kind, "missing": true });
            work.audit(event)?;
        }
        self.finish(work)
    }

    fn drift_removed(&self, target: &str, found: &Managed) -> Result<()> {
        let mut work = self.begin_job()?;
        let grant = match &found.grant_id {
            Some(id) => work.tx.grant(id)?,
            None => None,
        };
        let kind = self
            .policy()
            .targets
            .get(target)
            .map(|t| t.kind())
            .unwrap_or("unknown");
        let mut event = match &grant {
            Some(grant) => grant_event(AuditKind::DriftRemoved, SYSTEM_ACTOR, work.now, grant),
            None => NewAuditEvent::new(AuditKind::DriftRemoved, SYSTEM_ACTOR, work.now),
        };
        event.reason = Some(format!(
            "{} at {target} had no live grant behind it",
            found.name
        ));
        event.details = json!({
            "target": target,
            "kind": kind,
            "name": found.name,
            "grant_id": found.grant_id,
        });
        work.audit(event)?;
        work.tx.delete_drift_removal(target, &found.name)?;
        self.finish(work)
    }

    fn drift_found(&self, target: &str, found: &Managed) -> Result<()> {
        let mut work = self.begin_job()?;
        work.tx
            .insert_drift_removal(target, &found.name, found.grant_id.as_deref(), work.now)?;
        self.finish(work)
    }

    fn drift_removals(&self, target: &str) -> Result<Vec<Managed>> {
        Ok(self
            .store
            .read()?
            .drift_removals(target)?
            .into_iter()
            .map(|(name, grant_id)| Managed { name, grant_id })
            .collect())
    }

    fn drift_explained(&self, target: &str, name: &str) -> Result<()> {
        let mut work = self.begin_job()?;
        work.tx.delete_drift_removal(target, name)?;
        self.finish(work)
    }

    fn reconciled(&self) {
        self.reconciled.send_modify(|passes| *passes += 1);
    }
}

impl Broker {
    /// The public key line of the SSH CA that signs for ssh target
    /// `target` (its own, or the broker's), or of the broker's CA when no
    /// target is named: what its hosts put in `TrustedUserCAKeys`.
    pub fn ssh_ca_line(&self, target: Option<&str>) -> Result<String> {
        // The policy first: its CAs were loaded before it was swapped in,
        // so the CAs read after it hold them all.
        let policy = self.policy();
        let cas = self.ssh_cas();
        let Some(name) = target else {
            return Ok(cas.broker().public_key());
        };
        let found = policy
            .targets
            .get(name)
            .filter(|t| t.kind() == crate::target::ssh::KIND);
        let Some(found) = found else {
            return Err(Error::not_found("ssh target", name));
        };
        let signer = if found.own_ssh_ca() {
            crate::target::ssh::Signer::Own
        } else {
            crate::target::ssh::Signer::Broker
        };
        match cas.of(name, signer) {
            Some(ca) => Ok(ca.public_key()),
            // Loaded before any policy naming it is in force.
            None => Err(Error::Signer(crate::credential::SignerError::BadKey(
                format!("the CA of ssh target `{name}` is not loaded"),
            ))),
        }
    }

    /// The SSH KRL in force now: the certificate serials of grants at ssh
    /// targets that ended early and would otherwise still be valid, under
    /// this instance's CA, every ssh target's own kept in the store, and
    /// every other CA `serve` recorded signing with. Read without the
    /// store's write lock (anyone may ask for it), and only the revoked
    /// grants that have not reached their end.
    pub fn ssh_krl(&self) -> Result<Vec<u8>> {
        let now = super::now();
        let read = self.store.read()?;
        let serials = crate::target::ssh::revoked_serials(read.as_ref(), now)?;
        let mut cas = vec![self.ssh_cas().broker().public()];
        cas.extend(crate::target::ssh::own_authorities(read.as_ref())?);
        cas.extend(crate::target::ssh::recorded_authorities(read.as_ref())?);
        Ok(crate::target::ssh::krl(&cas, &serials, now))
    }
}

impl Broker {
    fn due_effects_together(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Due>> {
        let tx = self.store.read()?;
        let policy = self.policy();
        let mut due = Vec::new();
        for effect in tx.due_effects(now, limit, skip)? {
            if let Some(found) = self.due_of(&*tx, &policy, effect)? {
                due.push(found);
            }
        }
        Ok(due)
    }

    fn due_effects_singly(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Due>> {
        let tx = self.store.read()?;
        let policy = self.policy();
        let listed = tx.due_effect_ids(now, limit + self.effects_unread.room(), skip)?;
        self.effects_unread.read_each(
            listed,
            |(id, _)| id,
            limit,
            |(id, _)| match tx.effect(id)? {
                Some(effect) => self.due_of(&*tx, &policy, effect),
                None => Ok(None),
            },
            |(id, grant), err| {
                tracing::error!(
                    effect = ?id,
                    grant = ?grant,
                    error = %err,
                    "a target effect could not be read; the others run, and it is read again \
                     at each look"
                );
            },
        )
    }

    /// `effect` with the facts of its grant (none: the grant is not
    /// stored).
    fn due_of(&self, tx: &dyn Tx, policy: &Policy, effect: Effect) -> Result<Option<Due>> {
        let Some(grant) = tx.grant(&effect.grant_id)? else {
            return Ok(None);
        };
        let access = match &effect.access {
            Some(access) => access.clone(),
            None => role_access(policy, &grant.role),
        };
        Ok(Some(Due {
            grant: self.facts(&grant, access),
            effect,
        }))
    }
}
