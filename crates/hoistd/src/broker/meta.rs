//! Who the caller is, the roles they may request, and the audit log they may read.

use hoist_api::{AuditEvent, ErrorCode, Me, Role};

use super::Broker;
use crate::error::{Error, Result};
use crate::store::AuditQuery;

impl Broker {
    pub fn me(&self, user: &str) -> Result<Me> {
        let policy = self.policy();
        let display_name = policy
            .display_name(user)
            .ok_or_else(|| Error::refuse(ErrorCode::Unauthenticated, "unknown user"))?;
        Ok(Me {
            user: user.to_string(),
            display_name,
            groups: policy.groups_of(user),
            approver_for: policy
                .roles()
                .filter(|role| policy.is_approver(user, role))
                .map(|role| role.id.clone())
                .collect(),
            auditor: policy.is_auditor(user),
        })
    }

    /// The roles `user` may request, each with who approves it.
    pub fn roles(&self, user: &str) -> Result<Vec<Role>> {
        let policy = self.policy();
        let eligible: Vec<_> = policy
            .roles()
            .filter(|role| policy.is_eligible(user, role))
            .collect();
        if !policy.oidc.is_empty() {
            super::recall_approvers(&policy, self.store.read()?.as_ref(), &eligible)?;
        }
        Ok(eligible
            .into_iter()
            .map(|role| policy.role_view(role, user))
            .collect())
    }

    pub fn audit(&self, user: &str, mut query: AuditQuery) -> Result<Vec<AuditEvent>> {
        if !self.policy().is_auditor(user) {
            query.involving = Some(user.to_string());
        }
        let tx = self.store.read()?;
        Ok(tx.audit(&query)?)
    }
}
