//! A new policy, and the grants it no longer allows.

use hoist_api::{AuditKind, GrantState};
use serde_json::json;

use std::sync::Arc;

use super::{Broker, SYSTEM_ACTOR};
use crate::audit::NewAuditEvent;
use crate::error::Result;
use crate::policy::Policy;
use crate::store::GrantQuery;

impl Broker {
    /// Swaps in a new policy and revokes every grant its holder may no longer have.
    pub fn reload(&self, mut policy: Policy) -> Result<usize> {
        policy.adopt_directory(&self.policy.load());
        if !self.limits.load().same_rates(&policy.settings) {
            self.limits
                .store(Arc::new(super::limits::Limits::new(&policy.settings)));
        }
        self.policy.store(Arc::new(policy));
        // Live streams check their callers against the new policy before
        // they deliver anything more.
        self.reloads.send_modify(|n| *n += 1);
        let mut work = self.begin()?;
        let policy = Arc::clone(&work.policy);
        let mut revoked = 0;
        let active = work.tx.grants(&GrantQuery {
            states: vec![GrantState::Active],
            ..GrantQuery::default()
        })?;
        for mut grant in active {
            work.recall(&grant.holder)?;
            let eligible = policy
                .role(&grant.role)
                .is_some_and(|role| policy.is_eligible(&grant.holder, role));
            if !eligible {
                let reason = format!(
                    "policy reload: {} is no longer eligible for role `{}`",
                    grant.holder, grant.role
                );
                work.end_grant(&mut grant, GrantState::Revoked, SYSTEM_ACTOR, Some(reason))?;
                revoked += 1;
            }
        }
        work.audit(NewAuditEvent {
            at: work.now,
            kind: AuditKind::PolicyReloaded,
            actor: SYSTEM_ACTOR.into(),
            subject: None,
            role: None,
            request_id: None,
            grant_id: None,
            incident: None,
            reason: None,
            details: json!({ "roles": policy.roles().count(), "grants_revoked": revoked }),
        })?;
        self.finish(work)?;
        Ok(revoked)
    }
}
