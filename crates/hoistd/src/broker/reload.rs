//! A new policy, and the grants it no longer allows.

use std::collections::BTreeMap;
use std::sync::Arc;

use hoist_api::{AuditKind, ErrorCode, GrantState};
use serde_json::json;

use super::targets::Narrowing;
use super::{Broker, SYSTEM_ACTOR, Work};
use crate::audit::NewAuditEvent;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::store::GrantQuery;

impl Broker {
    /// Refuses a policy that drops a target still holding access for a
    /// grant (being provisioned, live, failed or being removed), or points
    /// it at another system: its removal could never run, or would run
    /// where the access is not, and the access would stay.
    fn keeps_targets_holding_access(&self, policy: &Policy) -> Result<()> {
        // A read: looked at again under the writers' lock, in the sweep.
        targets_holding_access_stay(&*self.store.read()?, &self.policy(), policy)
    }

    /// Swaps in a new policy and revokes every grant its holder may no
    /// longer have. If that sweep cannot be made (the store is down), the
    /// previous policy is put back and the error returned: a policy is in
    /// force only with its sweep done, and the caller may try again. What
    /// is put back keeps the targets the new policy added: a grant may
    /// have been given access at one between the swap and the sweep, and
    /// its removal runs only at a target the policy in force names.
    pub fn reload(&self, mut policy: Policy) -> Result<usize> {
        self.keeps_targets_holding_access(&policy)?;
        // Before the swap: a target that gets its own CA signs with it from
        // its first certificate on, and the broker's passes to no other
        // target's hosts.
        self.keep_ssh_cas(&policy)?;
        let previous = self.policy.load_full();
        let previous_limits = self.limits.load_full();
        policy.adopt_directory(&previous);
        if !previous_limits.same_rates(&policy.settings) {
            self.limits
                .store(Arc::new(super::limits::Limits::new(&policy.settings)));
        }
        self.policy.store(Arc::new(policy));
        // Live streams check their callers against the new policy before
        // they deliver anything more: told at once, so a token the policy
        // removed hears nothing of the commits still under way.
        self.reloads.send_modify(|n| *n += 1);
        // Every commit that may have checked the old policy ends before the
        // sweep reads what it must revoke.
        self.gate.turn();
        let swept = self.begin().and_then(|mut work| {
            // Again under the writers' lock, where no grant can start at a
            // dropped target between this look and the swap's effect.
            targets_holding_access_stay(&*work.tx, &previous, &work.policy)?;
            let Swept { revoked, narrowed } = work.sweep("policy reload", Some(&*previous))?;
            let roles = work.policy.roles().count();
            work.audit(NewAuditEvent {
                details: json!({
                    "roles": roles,
                    "grants_revoked": revoked,
                    "grants_narrowed": narrowed,
                }),
                ..NewAuditEvent::new(AuditKind::PolicyReloaded, SYSTEM_ACTOR, work.now)
            })?;
            self.finish(work)?;
            Ok(revoked)
        });
        if swept.is_err() {
            let mut restored = (*previous).clone();
            restored.targets = previous.targets.with_added(&self.policy().targets);
            self.policy.store(Arc::new(restored));
            self.limits.store(previous_limits);
            self.reloads.send_modify(|n| *n += 1);
            // A grant given under the new policy between the swap and the
            // failed sweep (a role it made eligible, with no approval) is
            // not one the restored policy allows: swept now, under it. If
            // that fails too (the database is down), it is swept by the
            // next reload, or at the next start.
            self.gate.turn();
            let restored = self.begin().and_then(|mut work| {
                let Swept { revoked, .. } =
                    work.sweep("policy restored after a failed reload", None)?;
                self.finish(work)?;
                Ok(revoked)
            });
            match restored {
                Ok(0) => {}
                Ok(revoked) => tracing::warn!(
                    revoked,
                    "grants given under the policy that failed to load were revoked"
                ),
                Err(err) => tracing::error!(
                    error = %err,
                    "grants given under the policy that failed to load could not be swept: \
                     reload again once the database answers"
                ),
            }
        }
        swept
    }

    /// What the policy hoistd starts with leaves behind of the access
    /// grants hold, one line each: the policy file may have changed while
    /// it was down, or differ from another instance's. hoistd starts
    /// anyway (refusing would stop every other grant's expiry and removal);
    /// nothing is done for those grants at a moved target until it names
    /// their system again, nor at a dropped one until it is back.
    pub fn access_left_behind(&self) -> Result<Vec<String>> {
        let LeftBehind { dropped, moved } =
            access_left_behind(&*self.store.read()?, None, &self.policy())?;
        let mut lines: Vec<String> = moved
            .into_iter()
            .map(|(target, Moved { was, now, .. })| {
                format!(
                    "target `{target}` names {now}, but grants hold access at {was}: their \
                     removal waits until it names {was} again (or, if both are one system, \
                     lists \"{was}\" in `formerly`)"
                )
            })
            .collect();
        if !dropped.is_empty() {
            lines.push(format!(
                "the policy names no target where grants still hold access: {}; their \
                 removal waits until it names each again",
                named(&dropped)
            ));
        }
        Ok(lines)
    }

    /// Revokes, at start-up, every grant the policy hoistd starts with no
    /// longer allows: the policy file may have changed while it was down.
    pub fn sweep_at_start(&self) -> Result<usize> {
        let mut work = self.begin()?;
        let Swept { revoked, .. } = work.sweep("policy at start", None)?;
        self.finish(work)?;
        Ok(revoked)
    }
}

impl Work<'_> {
    /// Revokes every active grant whose holder the current policy no longer
    /// allows it, the reason starting with `why`, and narrows the access
    /// the others were given at a target where it was made at activation
    /// to what their role gives there now ([`Work::narrow_to_policy`]); one
    /// whose access cannot be narrowed where it is (a webhook's receiver)
    /// is revoked once its role gives other access there, and one whose
    /// access is made at each credential (SSH, OpenBao) once its role
    /// leaves it nothing of what it was given. A provider user of whom
    /// nothing was ever recorded (not signed in since groups began to be
    /// kept) cannot be judged, and keeps their grant until its end or
    /// their next sign-in; but one the `previous` policy defined is judged
    /// with no groups (the groups they had were the policy's), and one
    /// whose provider the policy no longer trusts is eligible for nothing.
    fn sweep(&mut self, why: &str, previous: Option<&Policy>) -> Result<Swept> {
        let policy = Arc::clone(&self.policy);
        let mut revoked = 0;
        let mut narrowed = 0;
        let active = self.tx.grants(&GrantQuery {
            states: vec![GrantState::Active],
            ..GrantQuery::default()
        })?;
        let mut recalled = std::collections::HashSet::new();
        for mut grant in active {
            // One past its end is the reaper's to record as expired, not
            // this sweep's as revoked.
            super::settle_grant(&mut grant, self.now);
            if grant.state != GrantState::Active {
                continue;
            }
            if recalled.insert(grant.holder.clone()) {
                self.recall(&grant.holder)?;
            }
            // (Unless their provider is one the policy no longer trusts:
            // they are then no one it knows.)
            let unjudged = !hoist_api::is_workload(&grant.holder)
                && !policy.knows(&grant.holder)
                && !previous.is_some_and(|p| p.defines(&grant.holder))
                && self
                    .tx
                    .user_identity(&grant.holder)?
                    .is_some_and(|(issuer, _)| policy.trusts(&issuer));
            // A break-glass grant stands only while its holder may still
            // break glass, as its activation required.
            let eligible = unjudged
                || policy
                    .role(&grant.role)
                    .is_some_and(|role| policy.may_hold(&grant.holder, role, grant.break_glass));
            let reason = if !eligible {
                Some(format!(
                    "{why}: {} is no longer eligible for role `{}`",
                    grant.holder, grant.role
                ))
            } else if unjudged {
                None
            } else {
                self.workload_refusal(&grant.holder, &grant.request_id)?
                    .map(|what| {
                        format!(
                            "{why}: the token {} was granted `{}` with no longer matches its \
                             rule's {what}",
                            grant.holder, grant.role
                        )
                    })
            };
            let narrowing = match reason {
                Some(reason) => Narrowing::Ends(reason),
                None => match self.narrow_to_policy(&mut grant)? {
                    Narrowing::Ends(what) => Narrowing::Ends(format!("{why}: {what}")),
                    narrowing => narrowing,
                },
            };
            match narrowing {
                Narrowing::Unchanged => {}
                Narrowing::Narrowed => narrowed += 1,
                Narrowing::Ends(reason) => {
                    self.end_grant(&mut grant, GrantState::Revoked, SYSTEM_ACTOR, Some(reason))?;
                    revoked += 1;
                }
            }
        }
        Ok(Swept { revoked, narrowed })
    }
}

/// What a sweep did: grants revoked, and grants whose access it narrowed.
struct Swept {
    revoked: usize,
    narrowed: usize,
}

/// What `policy` would leave behind of the access grants hold (being
/// provisioned, live, failed or being removed), as `tx` sees them: the
/// targets it drops, with their grants, and those it points at another
/// system than their access was given at, with that system and the new one
/// (on a reload, only where the `previous` policy pointed it at that
/// system). A grant's system is the one its effects recorded; for one whose
/// effects predate that, the one its target had in `previous`.
fn access_left_behind(
    tx: &dyn crate::store::Tx,
    previous: Option<&Policy>,
    policy: &Policy,
) -> Result<LeftBehind> {
    let holding = tx.grants(&GrantQuery::holding_access(None))?;
    let mut dropped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut moved: BTreeMap<String, Moved> = BTreeMap::new();
    for grant in holding {
        let Some(access) = &grant.access else {
            continue;
        };
        let Some(now) = policy.targets.get(&access.target) else {
            // On a reload, only what it drops (see below).
            if previous.is_none_or(|previous| previous.targets.get(&access.target).is_some()) {
                dropped
                    .entry(access.target.clone())
                    .or_default()
                    .push(grant.id.clone());
            }
            continue;
        };
        // A reload that leaves the target as it was moves nothing given at
        // it: no need to read where each grant's access was given (one
        // read a grant, under the writers' lock).
        if previous.is_some_and(|previous| policy.targets.keeps(&previous.targets, &access.target))
        {
            continue;
        }
        let given_at = super::targets::granted(tx, policy, &grant)?
            .system
            .or_else(|| {
                previous
                    .and_then(|previous| previous.targets.get(&access.target))
                    .map(|was| was.system())
            });
        // On a reload, only what it moves: access stranded already (by a
        // start with another policy) waits, logged, and does not hold up
        // every reload after. A reload moves the target if the new policy
        // does not take it to be `was`, or points it at another system
        // without saying (`formerly`) that the one it named is that one:
        // what `formerly` said of the old system is not said of the new.
        let target = access.target.as_str();
        let before = previous
            .and_then(|previous| previous.targets.get(target))
            .map(|before| before.system());
        let repointed = before
            .as_ref()
            .is_some_and(|before| !policy.targets.is(target, before));
        let Some(was) =
            given_at.filter(|was| previous.is_none_or(|previous| previous.targets.is(target, was)))
        else {
            continue;
        };
        // The system the new policy must say the target still is.
        let unvouched = if !policy.targets.is(target, &was) {
            Some(was.clone())
        } else if repointed && was != now.system() {
            before
        } else {
            None
        };
        if let Some(vouch) = unvouched {
            moved.insert(
                access.target.clone(),
                Moved {
                    was,
                    now: now.system(),
                    vouch,
                },
            );
        }
    }
    Ok(LeftBehind { dropped, moved })
}

/// See [`access_left_behind`].
struct LeftBehind {
    /// Target name -> the grants holding access there.
    dropped: BTreeMap<String, Vec<String>>,
    /// Target name -> where access was given, and where it now points.
    moved: BTreeMap<String, Moved>,
}

struct Moved {
    /// The system access was given at.
    was: String,
    /// The system the target names now.
    now: String,
    /// What its `formerly` would have to list for the two to be one: `was`,
    /// or, on a reload that repoints it, the system it named before.
    vouch: String,
}

/// Refuses `policy` if it drops a target that still holds access for a
/// grant `tx` sees, or points it at another system than the access was
/// given at (see [`access_left_behind`]).
fn targets_holding_access_stay(
    tx: &dyn crate::store::Tx,
    previous: &Policy,
    policy: &Policy,
) -> Result<()> {
    let LeftBehind { dropped, moved } = access_left_behind(tx, Some(previous), policy)?;
    if let Some((target, Moved { was, now, vouch })) = moved.into_iter().next() {
        return Err(Error::refuse(
            ErrorCode::InvalidState,
            format!(
                "the new policy points target `{target}` at {now}, but grants still hold access \
                 at {was}: their removal would run where the access is not. Keep it until their \
                 access is removed, or add the new system under another name; if {vouch} and \
                 {now} are one system (another name for the host, a rotated token in the URL), \
                 list \"{vouch}\" in the target's `formerly`"
            ),
        ));
    }
    if dropped.is_empty() {
        return Ok(());
    }
    Err(Error::refuse(
        ErrorCode::InvalidState,
        format!(
            "the new policy drops targets that still hold access: {}; keep each until its \
             grants' access is removed (revoke them, or wait for their end)",
            named(&dropped)
        ),
    ))
}

fn named(dropped: &BTreeMap<String, Vec<String>>) -> String {
    let named: Vec<String> = dropped
        .iter()
        .map(|(target, grants)| format!("{target} (grants {})", grants.join(", ")))
        .collect();
    named.join("; ")
}
