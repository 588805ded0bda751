//! Who a bearer token belongs to. A static token names its policy user. An
//! ID token names a provider identity (issuer, subject), which is bound to a
//! user on its first sign-in and is that user from then on; the name the
//! token claims only ever names a new person, and never one the policy
//! defines or another identity already holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hoist_api::{AuditKind, ErrorCode};
use serde_json::json;

use super::Broker;
use crate::audit::NewAuditEvent;
use crate::error::{Error, Result};
use crate::oidc::Identity;
use crate::store::{AuditQuery, Remembered};

/// A caller the broker recognised, and until when their token is good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    /// When the token stops being accepted: an ID token's `exp` plus the
    /// issuer's leeway. A static token has no end of its own.
    pub expires_at: Option<DateTime<Utc>>,
    /// How the caller signed in: a provider sign-in has a time, which a
    /// role's step-up weighs.
    pub sign_in: SignIn,
}

impl Authenticated {
    /// When the caller signed in at their provider, if the token says.
    pub fn signed_in_at(&self) -> Option<DateTime<Utc>> {
        match self.sign_in {
            SignIn::Provider { at } => at,
            SignIn::StaticToken => None,
        }
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// A static token of the policy: no sign-in happened, so there is no
    /// time to weigh. Policies give them to the demo, tests and scripts.
    StaticToken,
    /// An ID token; `at` is its `auth_time`, absent if the provider gave none.
    Provider { at: Option<DateTime<Utc>> },
}

/// Binds `identity` to `user` in `work`, audited as `identity_bound`.
fn bind_in(work: &mut super::Work<'_>, identity: &Identity, user: &str) -> Result<()> {
    work.tx
        .insert_identity(&identity.issuer, &identity.subject, user, work.now)?;
    work.audit(NewAuditEvent {
        subject: Some(user.to_string()),
        details: json!({ "issuer": identity.issuer, "subject": identity.subject }),
        ..NewAuditEvent::new(AuditKind::IdentityBound, user.to_string(), work.now)
    })?;
    Ok(())
}

/// What the store should keep of `user`, given this instance's word of
/// them (`seen`) and the store's (`kept`): nothing when the store's is
/// later (taken in here instead) or the same; of the same second, what
/// both name (taken in here too).
fn to_store(
    policy: &crate::policy::Policy,
    user: &str,
    seen: Remembered,
    kept: Option<Remembered>,
) -> Option<Remembered> {
    match kept {
        Some(kept) if kept.as_of > seen.as_of => {
            policy.recall(user, &kept);
            None
        }
        Some(kept) if kept.as_of == seen.as_of && kept.as_of.is_some() => {
            policy.recall(user, &kept);
            let both = policy.remembered(user)?;
            (both != kept).then_some(both)
        }
        // Another instance stored this token's word already.
        Some(kept) if kept == seen => None,
        _ => Some(seen),
    }
}

/// Refuses an identity bound to `bound` that the policy links to `user`,
/// another name.
fn one_name(identity: &Identity, bound: &str, user: &str) -> Result<()> {
    if bound == user {
        return Ok(());
    }
    Err(refused(format!(
        "subject `{}` at `{}` signed in here as `{bound}` before the policy linked it to \
         `{user}`, and one person has one name here: link it to a user named `{bound}` instead",
        identity.subject, identity.issuer
    )))
}

fn refused(message: String) -> Error {
    Error::refuse(ErrorCode::Unauthenticated, message)
}

impl Broker {
    /// Who a bearer token belongs to under the current policy: a static
    /// token from the policy, or an ID token from one of its OpenID
    /// providers (whose groups are recorded for users the policy does not
    /// define).
    pub async fn authenticate(self: &Arc<Self>, token: &str) -> Result<Authenticated> {
        let policy = self.policy();
        if let Some(user) = policy.user_for_token(token) {
            return Ok(Authenticated {
                user: user.id.clone(),
                expires_at: None,
                sign_in: SignIn::StaticToken,
            });
        }
        if let Some(why) = self.workload_bearer(token) {
            return Err(refused(why.into()));
        }
        if policy.oidc.is_empty() || token.split('.').count() != 3 {
            return Err(refused("unknown or expired token".into()));
        }
        let identity = self
            .verifier
            .verify(&policy, token)
            .await
            .map_err(|err| match err {
                // The provider's keys are out of reach: signing in again
                // cannot help, and the same call works once they answer.
                crate::oidc::TokenError::Keys(_) => Error::TargetUnavailable {
                    message: err.to_string(),
                    retry_after: crate::error::TARGET_RETRY,
                },
                err => refused(err.to_string()),
            })?;
        let user = match policy.linked(&identity.issuer, &identity.subject) {
            Some(user) => {
                self.keep_link(&identity, user).await?;
                user.to_string()
            }
            None => {
                let user = self.bound_user(&identity).await?;
                if policy.defines(&user) {
                    return Err(refused(format!(
                        "`{user}` is now a user of the policy, which does not link subject `{}` \
                         at `{}` to them",
                        identity.subject, identity.issuer
                    )));
                }
                user
            }
        };
        if policy.vouch(
            &user,
            &identity.issuer,
            &identity.display_name,
            identity.groups,
            identity.as_of,
        ) {
            self.remember(&policy, &user).await?;
        } else if !policy.defines(&user) && self.store.shared() {
            self.recall_caller(&user).await?;
        }
        Ok(Authenticated {
            user,
            expires_at: Some(identity.expires_at),
            sign_in: SignIn::Provider {
                at: identity.signed_in_at,
            },
        })
    }

    /// Stores what the provider now says of `user`, so that a restart or
    /// another instance weighs them the same when they are not the caller
    /// (see `Work::recall`): once per token or change, and only over an
    /// older word. Should the store hold a newer one (a later token seen by
    /// another instance), this instance takes that in instead; one of the
    /// same second, both keep the groups both words name. Read first
    /// without the writers' lock: a token another instance stored already,
    /// or whose word the store holds a later one of, costs one read, and
    /// only a write takes the lock (and reads again under it). A store that
    /// cannot be read refuses the call, as [`Broker::recall_caller`] does:
    /// it may hold a later word. A write that fails costs nothing now: this
    /// instance knows, and the next token writes it again; until then,
    /// another instance weighs them by the older word.
    async fn remember(self: &Arc<Self>, policy: &crate::policy::Policy, user: &str) -> Result<()> {
        let Some(seen) = policy.remembered(user) else {
            return Ok(());
        };
        let broker = Arc::clone(self);
        let user = user.to_string();
        let read = tokio::task::spawn_blocking(move || -> Result<Result<()>> {
            let kept = broker.store.read()?.remembered(&user)?;
            if to_store(&broker.policy(), &user, seen.clone(), kept).is_none() {
                return Ok(Ok(()));
            }
            let write = || -> Result<()> {
                let mut work = broker.begin()?;
                let kept = work.tx.remembered(&user)?;
                let Some(seen) = to_store(&work.policy, &user, seen, kept) else {
                    return Ok(());
                };
                work.tx.remember(&user, &seen)?;
                broker.finish(work)
            };
            Ok(write())
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "storing task failed");
            Error::refuse(ErrorCode::Internal, "internal error")
        })?;
        if let Err(err) = read? {
            tracing::warn!(error = %err, "cannot store a sign-in's groups");
        }
        Ok(())
    }

    /// Takes in what the store last heard of `user` from their provider, for
    /// a token that says nothing new here: another instance on the same
    /// database may have seen a later one (a store no other process uses
    /// holds nothing this instance did not hear). What the caller may see
    /// (their roles, the review queue, requests and grants of roles they
    /// approve, the audit log for an auditor) is then weighed by that
    /// latest word, as what they may do already is. A store that cannot be
    /// read refuses the call: it would be weighed by a word that may be
    /// stale.
    async fn recall_caller(self: &Arc<Self>, user: &str) -> Result<()> {
        let broker = Arc::clone(self);
        let user = user.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let kept = broker.store.read()?.remembered(&user)?;
            if let Some(kept) = kept {
                broker.policy().recall(&user, &kept);
            }
            Ok(())
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "recall task failed");
            Error::refuse(ErrorCode::Internal, "internal error")
        })?
    }

    /// Binds an identity the policy links to `user`, as a first sign-in
    /// binds one it does not (once; neither bound before): should the
    /// policy stop defining `user`, the name stays with this identity, and
    /// is not refused to it for the past it has here. What the provider
    /// said of them is recorded as nothing (no groups): a policy that stops
    /// defining them then judges them by that, and revokes what only the
    /// policy's groups gave them, at a reload or a start alike. A failure
    /// is logged: the link alone lets this sign-in in.
    ///
    /// An identity already bound to another name (it signed in as a
    /// provider user before the policy linked it) is refused: it would be
    /// two people here, its approvals counted twice toward one request
    /// and its requests approvable by itself under its other name.
    async fn keep_link(self: &Arc<Self>, identity: &Identity, user: &str) -> Result<()> {
        let key = (identity.issuer.clone(), identity.subject.clone());
        let known = self
            .bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(bound) = known {
            return one_name(identity, &bound, user);
        }
        // Found unbound under this policy: a binding, once made, never
        // changes, so it stays so until a reload changes the links.
        let policy_now = *self.reloads.borrow();
        let unbound = self
            .unbound_links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|(linked, seen)| linked == user && *seen == policy_now);
        if unbound {
            return Ok(());
        }
        let broker = Arc::clone(self);
        let (linked, user) = ((identity.clone(), user.to_string()), user);
        let kept = tokio::task::spawn_blocking(move || -> Result<Option<String>> {
            let (identity, user) = linked;
            let mut work = broker.begin()?;
            if let Some(bound) = work.tx.identity_user(&identity.issuer, &identity.subject)? {
                return Ok(Some(bound));
            }
            // The store binds one identity to a user: another linked to
            // the same user acts as them while the policy links it, and is
            // not taken for bound meanwhile.
            if work.tx.user_identity(&user)?.is_none() {
                bind_in(&mut work, &identity, &user)?;
                let display_name = broker.policy().display_name(&user).unwrap_or_default();
                let nothing = Remembered {
                    issuer: identity.issuer.clone(),
                    display_name,
                    groups: Vec::new(),
                    as_of: None,
                };
                work.tx.remember(&user, &nothing)?;
                broker.finish(work)?;
                return Ok(Some(user));
            }
            Ok(None)
        })
        .await;
        match kept {
            Ok(Ok(None)) => {
                self.unbound_links
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (user.to_string(), policy_now));
            }
            Ok(Ok(Some(bound))) => {
                self.bindings
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, bound.clone());
                return one_name(identity, &bound, user);
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "a linked identity not bound"),
            Err(err) => tracing::warn!(error = %err, "a linked identity not bound"),
        }
        Ok(())
    }

    /// The user a provider identity is bound to, binding it to the name its
    /// token claims on its first sign-in.
    async fn bound_user(self: &Arc<Self>, identity: &Identity) -> Result<String> {
        let key = (identity.issuer.clone(), identity.subject.clone());
        let known = self
            .bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(user) = known {
            return Ok(user);
        }
        let broker = Arc::clone(self);
        let identity = identity.clone();
        let user = tokio::task::spawn_blocking(move || broker.bind(&identity))
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "binding task failed");
                Error::refuse(ErrorCode::Internal, "internal error")
            })??;
        // Bindings never change once made, so they are kept for good.
        self.bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, user.clone());
        Ok(user)
    }

    fn bind(&self, identity: &Identity) -> Result<String> {
        // Bound already (at another instance, or before a restart): a
        // binding never changes, so a read without the writers' lock is
        // enough. Only a first sign-in takes the lock, and looks again.
        let bound = self
            .store
            .read()?
            .identity_user(&identity.issuer, &identity.subject)?;
        if let Some(user) = bound {
            return Ok(user);
        }
        let mut work = self.begin()?;
        if let Some(user) = work.tx.identity_user(&identity.issuer, &identity.subject)? {
            return Ok(user);
        }
        let claimed = &identity.user;
        if work.policy.defines(claimed) {
            return Err(refused(format!(
                "`{claimed}` is a user of the policy: a sign-in as subject `{}` at `{}` acts as \
                 them only if the policy links that identity to them",
                identity.subject, identity.issuer
            )));
        }
        // Shown in queues, notices and the audit log, `Alice` would pass for
        // the policy's `alice` to an approver reading them.
        if let Some(defined) = work.policy.defines_but_for_case(claimed) {
            return Err(refused(format!(
                "`{claimed}` differs only in case from `{defined}`, a user of the policy: a \
                 sign-in (subject `{}` at `{}`) may not take a name that passes for theirs",
                identity.subject, identity.issuer
            )));
        }
        if let Some((issuer, _)) = work.tx.user_identity(claimed)? {
            let at = if issuer == identity.issuer {
                "another subject at this provider".to_string()
            } else {
                format!("an identity at `{issuer}`")
            };
            return Err(refused(format!(
                "user `{claimed}` belongs to {at}; this sign-in (subject `{}` at `{}`) is \
                 someone else",
                identity.subject, identity.issuer
            )));
        }
        // A name with a past here (a user since removed from the policy, a
        // token user's): a newcomer claiming it would inherit that past,
        // its requests, grants and audit entries.
        let past = work.tx.audit(&AuditQuery {
            involving: Some(claimed.clone()),
            limit: Some(1),
            ..AuditQuery::default()
        })?;
        if !past.is_empty() {
            return Err(refused(format!(
                "user `{claimed}` has acted here before, signed in some other way; this \
                 sign-in (subject `{}` at `{}`) acts as them only if the policy links that \
                 identity to them",
                identity.subject, identity.issuer
            )));
        }
        bind_in(&mut work, identity, claimed)?;
        self.finish(work)?;
        tracing::info!(user = %claimed, issuer = %identity.issuer, "provider identity bound");
        Ok(claimed.clone())
    }
}

impl Broker {
    /// Refuses to file for a role whose tier asks for a recent sign-in when
    /// the caller's provider sign-in is older than that, or of unknown age.
    /// Static tokens involve no sign-in and are not weighed.
    pub fn check_step_up(&self, caller: &Authenticated, role: &str) -> Result<()> {
        let policy = self.policy();
        let Some(limit) = policy.role(role).and_then(|r| r.step_up) else {
            return Ok(());
        };
        let SignIn::Provider { at } = caller.sign_in else {
            return Ok(());
        };
        let limit_text = humantime::format_duration(limit);
        let Some(at) = at else {
            return Err(Error::refuse(
                ErrorCode::StepUpRequired,
                format!(
                    "role `{role}` needs a sign-in within {limit_text}, and your provider's \
                     token does not say when you signed in (auth_time)"
                ),
            ));
        };
        let age = (super::now() - at).to_std().unwrap_or_default();
        if age > limit {
            return Err(Error::refuse(
                ErrorCode::StepUpRequired,
                format!(
                    "role `{role}` needs a sign-in within {limit_text}; yours was {} ago",
                    humantime::format_duration(Duration::from_secs(age.as_secs()))
                ),
            ));
        }
        Ok(())
    }
}
