//! Short-lived credentials for an active grant, and their introspection.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessState, Actor, AuditKind, Credential, CredentialClaims, ErrorCode, GrantState,
    Introspection,
};
use serde_json::json;

use super::limits::Act;
use super::targets::{granted, narrowed, not_usable_yet, usable};
use super::{Broker, HolderAct, Work, grant_event, new_id, settle_grant, std_delta};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::store::StoreError;
use crate::target::ssh::HolderKey;
use crate::target::{GrantFacts, Ledger, TargetKind};

/// A credential issued, and the target that still has to hand over its part.
type Issued = (Credential, Option<HandOver>);

/// What a grant's target still has to make for a credential just issued.
pub struct HandOver {
    target: Arc<dyn TargetKind>,
    facts: GrantFacts,
    /// The credential's id, as audited.
    jti: String,
    /// The policy its access was decided under.
    policy: Arc<Policy>,
}

impl Broker {
    /// Issues a short-lived credential for an active grant the caller holds,
    /// with, for a grant whose role has a target, how to use the access
    /// there (a PostgreSQL password is set at this moment, never kept).
    pub async fn credential(self: &Arc<Self>, user: String, id: String) -> Result<Credential> {
        self.credential_for(user, id, None).await
    }

    /// [`Broker::credential`], with a public key the holder sent for the
    /// target to certify (an SSH user certificate). The issuance is audited
    /// with the key's fingerprint, never the key.
    pub async fn credential_for(
        self: &Arc<Self>,
        user: String,
        id: String,
        key: Option<HolderKey>,
    ) -> Result<Credential> {
        // Made again under the policy a reload put in force while the
        // target was asked ([`Broker::hand_over`]), as contended work is.
        let mut tries = 1;
        loop {
            let broker = Arc::clone(self);
            let fingerprint = key.as_ref().map(|key| key.fingerprint.clone());
            let (user, id) = (user.clone(), id.clone());
            let (credential, target) = tokio::task::spawn_blocking(move || {
                broker.grant_credential_for(&user, &id, fingerprint.as_deref())
            })
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "credential task failed");
                Error::refuse(ErrorCode::Internal, "internal error")
            })??;
            match self.hand_over_for(credential, target, key.as_ref()).await {
                Err(Error::Store(StoreError::Contended(_))) if tries < super::CONTENDED_TRIES => {
                    tries += 1
                }
                handed => return handed,
            }
        }
    }

    /// Asks the grant's target for the holder's part of the access, if it
    /// has one (a PostgreSQL password is set at this moment, never kept):
    /// the second half of [`Broker::credential`], after
    /// [`Broker::grant_credential`].
    pub async fn hand_over(
        self: &Arc<Self>,
        credential: Credential,
        target: Option<HandOver>,
    ) -> Result<Credential> {
        self.hand_over_for(credential, target, None).await
    }

    async fn hand_over_for(
        self: &Arc<Self>,
        mut credential: Credential,
        target: Option<HandOver>,
        key: Option<&HolderKey>,
    ) -> Result<Credential> {
        if let Some(HandOver {
            target,
            facts,
            jti,
            policy,
        }) = target
        {
            let handed = match target.credential(&facts, &self.journal(), key).await {
                Ok(handed) => handed,
                Err(err) => {
                    self.withheld(&facts, &jti, target.name(), &err.to_string())
                        .await;
                    let message = format!(
                        "grant {} is live, but its access could not be handed over: {err}",
                        facts.id
                    );
                    // A target that did not answer may well answer the
                    // same call in a moment: a 503 with when to try again,
                    // which scripts and jobs retry, not a refusal.
                    return Err(if err.is_unreachable() {
                        Error::TargetUnavailable {
                            message: format!("{message}; try again"),
                            retry_after: crate::error::TARGET_RETRY,
                        }
                    } else {
                        Error::refuse(ErrorCode::InvalidState, message)
                    });
                }
            };
            // A revoke may have committed, and its removal run, while the
            // target was asked: then what it just issued outlived the
            // removal. It is removed again, and never handed to the holder.
            // Unchecked, what was issued is withheld all the same: the
            // holder is refused, and the audit says so if it can.
            let broker = Arc::clone(self);
            let id = facts.id.clone();
            let checked = tokio::task::spawn_blocking(move || broker.remove_again_if_ended(&id))
                .await
                .unwrap_or_else(|err| {
                    tracing::error!(error = %err, "credential task failed");
                    Err(Error::refuse(ErrorCode::Internal, "internal error"))
                });
            let ended = match checked {
                Ok(ended) => ended,
                Err(err) => {
                    self.withheld(
                        &facts,
                        &jti,
                        target.name(),
                        "whether the grant ended while its access was being handed over could \
                         not be checked",
                    )
                    .await;
                    return Err(err);
                }
            };
            if ended {
                self.withheld(
                    &facts,
                    &jti,
                    target.name(),
                    "the grant ended while its access was being handed over",
                )
                .await;
                return Err(Error::refuse(
                    ErrorCode::InvalidState,
                    format!(
                        "grant {} ended while its access was being handed over; what its \
                         target issued is being removed",
                        facts.id
                    ),
                ));
            }
            // A reload while the target was asked may have taken out of
            // the role what was just made (a principal, an OpenBao
            // policy): withheld, and made again under the policy now in
            // force. Nobody holds what was made; it ends by itself.
            if !Arc::ptr_eq(&policy, &self.policy.load()) {
                self.withheld(
                    &facts,
                    &jti,
                    target.name(),
                    "the policy was reloaded while its access was being handed over",
                )
                .await;
                return Err(StoreError::Contended(format!(
                    "the policy was reloaded while grant {}'s access was being handed over; \
                     nothing was handed over",
                    facts.id
                ))
                .into());
            }
            credential.access = handed.map(|mut access| {
                access.expires_at = access.expires_at.min(facts.expires_at);
                access
            });
        }
        Ok(credential)
    }

    /// Audits that the credential `jti` of grant `facts`, audited as issued,
    /// never reached its holder, and why. A failure to audit it is logged:
    /// the holder's answer is the refusal either way.
    async fn withheld(self: &Arc<Self>, facts: &GrantFacts, jti: &str, target: &str, why: &str) {
        let broker = Arc::clone(self);
        let (id, holder) = (facts.id.clone(), facts.holder.clone());
        let details = json!({ "jti": jti, "target": target, "error": why });
        let audited = tokio::task::spawn_blocking(move || {
            let mut work = broker.begin()?;
            let Some(grant) = work.tx.grant(&id)? else {
                return Ok(());
            };
            let mut event = grant_event(AuditKind::CredentialWithheld, &holder, work.now, &grant);
            event.details = details;
            work.audit(event)?;
            broker.finish(work)
        })
        .await;
        if !matches!(audited, Ok(Ok(()))) {
            tracing::error!(grant = %facts.id, "a credential withheld from its holder was not audited as such");
        }
    }

    /// Whether grant `id`'s access is being removed, or was: then its
    /// removal is queued again, for what a hand-over racing it issued.
    /// A policy reload racing it is met by doing it again.
    fn remove_again_if_ended(&self, id: &str) -> Result<bool> {
        super::again_while_contended(|| self.remove_again_once(id))
    }

    fn remove_again_once(&self, id: &str) -> Result<bool> {
        let mut work = self.begin()?;
        let Some(mut grant) = work.tx.grant(id)? else {
            return Ok(false);
        };
        let removing = grant.access.as_ref().is_some_and(|access| {
            matches!(access.state, AccessState::Removing | AccessState::Removed)
        });
        if !removing {
            return Ok(false);
        }
        work.end_access(&mut grant)?;
        work.save_grant(&grant)?;
        self.finish(work)?;
        Ok(true)
    }

    /// The part of [`Broker::credential`] in the store: checks, the signed
    /// token, the audit entry.
    pub fn grant_credential(&self, user: &str, id: &str) -> Result<Issued> {
        self.grant_credential_for(user, id, None)
    }

    /// [`Broker::grant_credential`], auditing the fingerprint of the public
    /// key the target is to certify, if one was sent.
    fn grant_credential_for(
        &self,
        user: &str,
        id: &str,
        fingerprint: Option<&str>,
    ) -> Result<Issued> {
        self.limit(Act::FetchCredential, user)?;
        let mut work = self.begin()?;
        let issued = self.issue_credential_keyed(&mut work, user, id, fingerprint)?;
        self.finish(work)?;
        Ok(issued)
    }

    /// Issues the credential of grant `id`, held by `user`, within `work`.
    /// A workload's credential names it in `act` and lasts as long as its
    /// grant: the task has no way to fetch another.
    pub(super) fn issue_credential(
        &self,
        work: &mut Work<'_>,
        user: &str,
        id: &str,
    ) -> Result<Issued> {
        self.issue_credential_keyed(work, user, id, None)
    }

    fn issue_credential_keyed(
        &self,
        work: &mut Work<'_>,
        user: &str,
        id: &str,
        fingerprint: Option<&str>,
    ) -> Result<Issued> {
        let policy = Arc::clone(&work.policy);
        let (grant, role) =
            self.held_active_grant(work, &policy, user, id, HolderAct::FetchCredential)?;
        if let Some(access) = grant.access.as_ref().filter(|_| !usable(&grant)) {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                not_usable_yet(&grant, access),
            ));
        }
        let target = match &grant.access {
            None => None,
            Some(access) => match policy.targets.get(&access.target) {
                Some(target) => {
                    let given = granted(&*work.tx, &policy, &grant)?;
                    if let Some(why) = policy
                        .targets
                        .moved(&access.target, given.system.as_deref())
                    {
                        return Err(Error::refuse(
                            ErrorCode::InvalidState,
                            format!("grant {} is live, but {why}", grant.id),
                        ));
                    }
                    let access = narrowed(&**target, &grant, role, &given.access)?;
                    let mut facts = self.facts(&grant, access);
                    // What the target makes ends with the access there.
                    if let Some(until) = grant.access.as_ref().and_then(|a| a.live_until) {
                        facts.expires_at = facts.expires_at.min(until);
                    }
                    Some((Arc::clone(target), facts))
                }
                None => {
                    return Err(Error::refuse(
                        ErrorCode::InvalidState,
                        format!(
                            "grant {}'s access is at {}, which the policy in force no longer names",
                            grant.id, access.target
                        ),
                    ));
                }
            },
        };
        let workload = hoist_api::is_workload(user);
        // No later than its access at the target lasts (an extension the
        // target has yet to take).
        let ends = grant
            .access
            .as_ref()
            .and_then(|access| access.live_until)
            .map_or(grant.expires_at, |until| until.min(grant.expires_at));
        let expires_at = if workload {
            ends
        } else {
            ends.min(work.now + std_delta(policy.settings.credential_ttl))
        };
        let jti = new_id("cred");
        let claims = CredentialClaims {
            iss: policy.settings.issuer.clone(),
            sub: user.to_string(),
            aud: role.scope.clone(),
            iat: work.now.timestamp(),
            exp: expires_at.timestamp(),
            jti: jti.clone(),
            role: role.id.clone(),
            grant_id: grant.id.clone(),
            scope: role.scope.clone(),
            act: workload.then(|| Actor {
                sub: user.to_string(),
            }),
        };
        let token = self.signer.issue(&claims)?;
        let mut issued = grant_event(AuditKind::CredentialIssued, user, work.now, &grant);
        issued.details = match &grant.access {
            Some(access) => {
                json!({ "jti": jti, "expires_at": expires_at, "target": access.target })
            }
            None => json!({ "jti": jti, "expires_at": expires_at }),
        };
        if let (Some(fingerprint), Some(details)) = (fingerprint, issued.details.as_object_mut()) {
            details.insert("key_fingerprint".into(), json!(fingerprint));
            // The key's certificate lasts as long as the access, not as the
            // token above: what someone tracing a lost key needs to read.
            if let Some((_, facts)) = &target {
                let valid_before = DateTime::from_timestamp(facts.expires_at.timestamp(), 0);
                details.insert("certificate_valid_before".into(), json!(valid_before));
            }
        }
        // Every credential is a bearer token of its own: each issuance is
        // audited on its own, with the `jti` that names it, never folded
        // into a count (the fetch rate bounds how many a caller makes).
        work.audit(issued)?;
        let credential = Credential {
            grant_id: grant.id,
            role: role.id.clone(),
            token_type: "Bearer".into(),
            token,
            issued_at: from_unix(claims.iat),
            expires_at: from_unix(claims.exp),
            access: None,
        };
        let hand_over = target.map(|(target, facts)| HandOver {
            target,
            facts,
            jti,
            policy,
        });
        Ok((credential, hand_over))
    }

    /// RFC 7662: a credential is active only while its grant is.
    pub fn introspect(&self, user: &str, token: &str) -> Result<Introspection> {
        self.introspect_as(user, None, token)
    }

    /// [`Broker::introspect`] by `user`, who, for a workload calling with
    /// its credential, is that workload only while `workload_grant` (the
    /// grant the credential was issued for) is active and theirs: a task's
    /// credential ends with its grant, revoked or withdrawn before its
    /// `exp`.
    pub fn introspect_as(
        &self,
        user: &str,
        workload_grant: Option<&str>,
        token: &str,
    ) -> Result<Introspection> {
        self.limit(Act::Introspect, user)?;
        let policy = self.policy();
        let inactive = Introspection::default();
        let claims = self.signer.verify(token, &policy.settings.issuer);
        if claims.is_none() && workload_grant.is_none() {
            return Ok(inactive);
        }
        let mut work = self.begin()?;
        if let Some(id) = workload_grant {
            let live = work.tx.grant(id)?.is_some_and(|mut grant| {
                settle_grant(&mut grant, work.now);
                grant.state == GrantState::Active && grant.holder == user
            });
            if !live {
                return Err(Error::refuse(
                    ErrorCode::Unauthenticated,
                    "this workload credential's grant has ended; it is no longer accepted",
                ));
            }
        }
        let Some(claims) = claims else {
            return Ok(inactive);
        };
        // `exp` is exclusive, and checked to the millisecond: the signature
        // check above counts whole seconds, so it would keep a credential
        // alive for up to a second past its `exp`.
        if work.now.timestamp_millis() >= claims.exp.saturating_mul(1000) {
            return Ok(inactive);
        }
        let Some(mut grant) = work.tx.grant(&claims.grant_id)? else {
            return Ok(inactive);
        };
        settle_grant(&mut grant, work.now);
        work.recall(&grant.holder)?;
        let policy = &work.policy;
        let still_eligible = policy
            .role(&grant.role)
            .is_some_and(|role| policy.may_hold(&grant.holder, role, grant.break_glass));
        if grant.state != GrantState::Active || grant.holder != claims.sub || !still_eligible {
            return Ok(inactive);
        }
        let mut used = grant_event(AuditKind::CredentialUsed, user, work.now, &grant);
        used.details = json!({ "jti": claims.jti });
        self.audit_use(&mut work, used)?;
        self.finish(work)?;
        Ok(Introspection {
            active: true,
            sub: Some(claims.sub),
            scope: Some(claims.scope),
            grant_id: Some(claims.grant_id),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            token_type: Some("Bearer".into()),
        })
    }
}

fn from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}
