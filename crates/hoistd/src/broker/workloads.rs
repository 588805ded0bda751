//! Workload identities: a job's token exchanged for one task's grant (RFC
//! 8693), the job's poll while a person approves or its target provisions,
//! its withdrawal when it gives up waiting, and the job's own revocation
//! when the task ends.
//!
//! A workload is its own kind of principal, `workload:<rule>:<sub>`, a name
//! no person can have (user names hold no `:`), and is verified only here:
//! `authenticate` refuses its tokens and credentials on people's routes,
//! and the policy refuses a rule whose issuer and audience sign people in.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hoist_api::{
    ACCESS_TOKEN_TYPE, AccessRequest, AuditKind, Credential, GrantState, JWT_TOKEN_TYPE,
    RequestKind, RequestState, TOKEN_EXCHANGE_GRANT, TaskWithdrawn, TokenExchangeInput,
    TokenExchangeResponse, TokenPending, WORKLOAD_PREFIX, WorkloadErrorCode, WorkloadRevoked,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::limits::Act;
use super::targets::usable;
use super::{Broker, Change, SYSTEM_ACTOR, Work, event, settle_grant};
use crate::audit::NewAuditEvent;
use crate::error::Error;
use crate::oidc::{TokenError, claimed};
use crate::policy::{Approval, Policy, WorkloadRule, audiences, claim_text};
use crate::store::{Exchange, StoreError};

/// The actor of a refusal before any rule vouched for the token: no rule
/// is named `unverified`'s way (it holds no second `:`), and no person can
/// have the name.
pub const UNVERIFIED_ACTOR: &str = "workload:unverified";
/// Who refused exchanges are audited as when the token's issuer signed it
/// but no rule admits its claims (a stranger's job at a shared issuer).
pub const UNMATCHED_ACTOR: &str = "workload:unmatched";

/// How long the exchange itself waits for a target to make the access live
/// before answering pending; the job polls for the rest.
const PROVISION_WAIT: Duration = Duration::from_secs(10);

/// How often a pending job is told to come back, in seconds.
pub const POLL_INTERVAL_SECS: u64 = 2;

/// Longest `sub` a workload may have: it is part of every audit entry
/// (as long as [`claimed`] keeps).
const MAX_SUBJECT_CHARS: usize = crate::oidc::MAX_CLAIMED_CHARS;

/// Why an exchange, a poll or a revocation was refused, with the code that
/// names it.
#[derive(Debug)]
pub struct Refusal {
    pub code: WorkloadErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Refusal {
    fn new(code: WorkloadErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Refusal {
        match err {
            Error::RateLimited {
                message,
                retry_after,
            } => Refusal {
                code: WorkloadErrorCode::RateLimited,
                message,
                retry_after: Some(retry_after),
            },
            Error::Refused { message, .. } => {
                Refusal::new(WorkloadErrorCode::InvalidRequest, message)
            }
            Error::TargetUnavailable {
                message,
                retry_after,
            } => Refusal {
                code: WorkloadErrorCode::Unavailable,
                message,
                retry_after: Some(retry_after),
            },
            // As people's routes answer it: nothing was written, and the
            // same call may work in a moment.
            Error::Store(
                err @ (crate::store::StoreError::Unavailable(_)
                | crate::store::StoreError::Contended(_)),
            ) => {
                tracing::warn!(error = %err, "store unavailable");
                Refusal {
                    code: WorkloadErrorCode::Unavailable,
                    message: "the broker's database is unavailable; nothing was done, try again"
                        .into(),
                    retry_after: Some(crate::error::UNAVAILABLE_RETRY),
                }
            }
            // Perhaps committed: the same task, exchanged again, resumes
            // from wherever that left it (see `Broker::exchange_task`).
            Error::Store(err @ crate::store::StoreError::Uncertain(_)) => {
                tracing::warn!(error = %err, "commit outcome unknown");
                Refusal {
                    code: WorkloadErrorCode::Unavailable,
                    message: "the broker's database stopped answering as this exchange was \
                              committed; try again: the task goes on from where it got to"
                        .into(),
                    retry_after: Some(crate::error::UNAVAILABLE_RETRY),
                }
            }
            err => {
                tracing::error!(error = %err, "workload exchange failed");
                Refusal::new(
                    WorkloadErrorCode::Internal,
                    "internal error; the broker log has the details",
                )
            }
        }
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(err: crate::store::StoreError) -> Refusal {
        Refusal::from(Error::from(err))
    }
}

/// What an exchange answers.
pub enum Exchanged {
    Issued(Box<TokenExchangeResponse>),
    Pending(TokenPending),
}

/// A token that passed every check, and what it asks for.
struct Admitted {
    rule: WorkloadRule,
    principal: String,
    issuer: String,
    subject: String,
    claims: serde_json::Value,
    role: String,
    ttl: Duration,
    approval: Approval,
    task_key: String,
    task: String,
    /// The token's own key (its issuer and `jti`, or the SHA-256 of the
    /// token where it has none) where the rule keys tasks by another
    /// claim: a token files or collects one task, whichever rules admit
    /// it, so it is recorded beside the task (see `file_task` and
    /// `bind_token`).
    token_key: Option<String>,
    token_expires_at: chrono::DateTime<chrono::Utc>,
    /// The policy the token was checked against: the exchange files under
    /// it only while it is still the one in force.
    policy: Arc<Policy>,
}

/// Binds the token `admitted` presents to `task`, filed already (by an
/// older token of its run), before it collects it: a token that collected
/// one task files no other under a rule keying tasks otherwise, and one
/// that filed or collected another collects nothing here.
fn bind_token(work: &mut Work<'_>, admitted: &Admitted, task: &Exchange) -> Result<(), Refusal> {
    let Some(key) = &admitted.token_key else {
        return Ok(());
    };
    match work.tx.exchange(key)? {
        Some(bound) if bound.request_id == task.request_id => Ok(()),
        Some(_) => Err(Refusal::new(
            WorkloadErrorCode::Replayed,
            "this token was exchanged already, for another task; one token is one task".to_string(),
        )),
        None => {
            work.tx.insert_exchange(&Exchange {
                task_key: key.clone(),
                expires_at: admitted.token_expires_at,
                created_at: work.now,
                redeemed_at: None,
                collect_by: None,
                ..task.clone()
            })?;
            Ok(())
        }
    }
}

/// Tries at reopening a task ([`Broker::reopen`]), 100 ms apart and
/// doubling (about 3 s in all).
const REOPEN_TRIES: u32 = 6;

/// What the store step found.
enum Step {
    /// The credential, its hand-over, the request's id, and when the task
    /// was redeemed (what reopening it undoes, and nothing since).
    Issued(
        Box<Credential>,
        Option<Box<super::credentials::HandOver>>,
        String,
        chrono::DateTime<chrono::Utc>,
    ),
    Pending(TokenPending),
    /// The policy was reloaded after the token was checked: check it again.
    PolicyChanged,
}

/// Who a refused exchange is audited as: the workload a rule admits
/// (`workload:<rule>:<sub>`, the first rule whose pins its claims match);
/// one whose signature verified but whom no rule admits,
/// [`UNMATCHED_ACTOR`]; before the signature verified,
/// [`UNVERIFIED_ACTOR`]. Refusals are counted per actor and code, so a flood
/// of junk tokens, or of strangers' jobs, never hides a real workload's
/// refusal.
fn refused_actor(details: &serde_json::Value) -> String {
    match (
        details.get("matched_by").and_then(|r| r.as_str()),
        details.get("verified_by").and_then(|r| r.as_str()),
        details.get("subject").and_then(|s| s.as_str()),
    ) {
        (Some(rule), _, Some(subject)) => format!("{WORKLOAD_PREFIX}{rule}:{subject}"),
        (None, Some(_), _) => UNMATCHED_ACTOR.to_string(),
        _ => UNVERIFIED_ACTOR.to_string(),
    }
}

fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The role a request names: `resource` as `urn:hoist:role:<id>` (or the
/// bare id), or a `scope` of one role.
fn requested_role(input: &TokenExchangeInput) -> Result<String, Refusal> {
    let from_resource = input
        .resource
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| r.strip_prefix("urn:hoist:role:").unwrap_or(r).to_string());
    let from_scope = match input
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(scope) if scope.contains(' ') => {
            return Err(Refusal::new(
                WorkloadErrorCode::InvalidRequest,
                "scope names more than one role; one task is one role",
            ));
        }
        Some(scope) => Some(scope.to_string()),
    };
    match (from_resource, from_scope) {
        (Some(a), Some(b)) if a != b => Err(Refusal::new(
            WorkloadErrorCode::InvalidRequest,
            format!(
                "resource names role `{}` and scope names `{}`",
                claimed(&a),
                claimed(&b)
            ),
        )),
        (Some(role), _) | (None, Some(role)) => Ok(role),
        (None, None) => Err(Refusal::new(
            WorkloadErrorCode::InvalidRequest,
            "name the role in `resource` (urn:hoist:role:<id>) or `scope`",
        )),
    }
}

impl Broker {
    /// RFC 8693 token exchange: checks the workload's token against the
    /// policy's `[[workloads]]` rules, files its task's request, and hands
    /// over the credential at once (automatic approval, access live), or
    /// answers pending; a poll is the same token presented again.
    pub async fn exchange(
        self: &Arc<Self>,
        input: TokenExchangeInput,
    ) -> Result<Exchanged, Refusal> {
        let mut admitted = Arc::new(self.admitted(&input).await?);
        // Filing counts against the filing limit; asking again about a task
        // filed already (every 2 s while a person decides) against a far
        // higher one, as an introspection does, since each still takes the
        // writers' turn. Judged on a read, before the write transaction, so
        // a flood is turned away without taking it.
        let task = Arc::clone(&admitted);
        let broker = Arc::clone(self);
        let filed = tokio::task::spawn_blocking(move || -> crate::error::Result<bool> {
            Ok(broker.store.read()?.exchange(&task.task_key)?.is_some())
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "exchange read failed");
            Refusal::new(WorkloadErrorCode::Internal, "internal error")
        })??;
        self.limited(if filed { Act::Poll } else { Act::File }, &admitted)
            .await?;
        let waited_until = tokio::time::Instant::now() + PROVISION_WAIT;
        let mut checks = 1;
        loop {
            let broker = Arc::clone(self);
            let task = Arc::clone(&admitted);
            // Redeemed once the step returns a credential: if the caller
            // goes (and this future with it) before the hand-over is
            // answered, nothing reached the job, and the task is opened
            // again. The guard is made with the step's outcome, so a caller
            // gone while the step ran drops it with that outcome.
            let (step, reopen) = tokio::task::spawn_blocking(move || {
                let step = broker.exchange_task(&task);
                let reopen = match &step {
                    Ok(Step::Issued(.., redeemed_at)) => Some(Reopen {
                        broker: Arc::clone(&broker),
                        task_key: Some(task.task_key.clone()),
                        redeemed_at: *redeemed_at,
                    }),
                    _ => None,
                };
                (step, reopen)
            })
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "exchange task failed");
                Refusal::new(WorkloadErrorCode::Internal, "internal error")
            })?;
            let refusal = match step {
                Ok(Step::Issued(credential, target, request_id, redeemed_at)) => {
                    let handed = self.hand_over(*credential, target.map(|t| *t)).await;
                    if let Some(reopen) = reopen {
                        reopen.disarm();
                    }
                    let credential = match handed {
                        Ok(credential) => credential,
                        Err(err) => {
                            // Nothing reached the job: its task may poll
                            // again for the credential, rather than be
                            // refused as a replay with its grant unusable.
                            let broker = Arc::clone(self);
                            let task = Arc::clone(&admitted);
                            let _ = tokio::task::spawn_blocking(move || {
                                broker.reopen(
                                    &task.task_key,
                                    redeemed_at,
                                    "a workload task whose hand-over failed stays redeemed",
                                );
                            })
                            .await;
                            // A reload overtook the hand-over: made again
                            // under the terms now in force.
                            if matches!(err, crate::error::Error::Store(StoreError::Contended(_)))
                                && checks < 3
                            {
                                checks += 1;
                                admitted = Arc::new(self.admitted(&input).await?);
                                continue;
                            }
                            return Err(Refusal::from(err));
                        }
                    };
                    return Ok(Exchanged::Issued(Box::new(response(
                        credential, request_id,
                    ))));
                }
                Ok(Step::Pending(pending))
                    if pending.status == "provisioning"
                        && tokio::time::Instant::now() < waited_until =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Ok(Step::Pending(pending)) => return Ok(Exchanged::Pending(pending)),
                Ok(Step::PolicyChanged) if checks < 3 => {
                    // Filed under the terms in force, not those the token
                    // was checked against a reload ago.
                    checks += 1;
                    admitted = Arc::new(self.admitted(&input).await?);
                    continue;
                }
                Ok(Step::PolicyChanged) => Refusal::new(
                    WorkloadErrorCode::Internal,
                    "the policy kept changing while the token was checked; try again",
                ),
                Err(refusal) => refusal,
            };
            // Every refusal of the task is audited (a replay, a denial, a
            // token too near its end to file, a filing the policy refuses);
            // not the broker's own trouble (its database, a bug), nor a rate
            // limit, which `limited` audited.
            if !matches!(
                refusal.code,
                WorkloadErrorCode::Internal
                    | WorkloadErrorCode::Unavailable
                    | WorkloadErrorCode::RateLimited
            ) {
                self.audit_refusal(
                    admitted.principal.clone(),
                    &refusal,
                    facts(&admitted, json!({})),
                )
                .await;
            }
            return Err(refusal);
        }
    }

    /// [`Broker::admit`], with a refusal audited.
    async fn admitted(self: &Arc<Self>, input: &TokenExchangeInput) -> Result<Admitted, Refusal> {
        match self.admit(input).await {
            Ok(admitted) => Ok(admitted),
            Err((refusal, details)) => {
                if refusal.code != WorkloadErrorCode::RateLimited {
                    self.audit_refusal(refused_actor(&details), &refusal, details)
                        .await;
                }
                Err(refusal)
            }
        }
    }

    /// Every check of the token and the form, in the order the error codes
    /// are documented; a refusal comes with what the token claimed, for the
    /// audit entry.
    async fn admit(
        self: &Arc<Self>,
        input: &TokenExchangeInput,
    ) -> Result<Admitted, (Refusal, serde_json::Value)> {
        use WorkloadErrorCode as Code;
        let plain = |code, message: String| (Refusal::new(code, message), json!({}));
        if input.grant_type != TOKEN_EXCHANGE_GRANT {
            return Err(plain(
                Code::UnsupportedGrantType,
                format!("grant_type must be {TOKEN_EXCHANGE_GRANT}"),
            ));
        }
        if ![
            JWT_TOKEN_TYPE,
            ACCESS_TOKEN_TYPE,
            "urn:ietf:params:oauth:token-type:id_token",
        ]
        .contains(&input.subject_token_type.as_str())
        {
            return Err(plain(
                Code::InvalidRequest,
                format!("subject_token_type must be {JWT_TOKEN_TYPE}"),
            ));
        }
        if let Some(kind) = input
            .requested_token_type
            .as_deref()
            .filter(|t| ![JWT_TOKEN_TYPE, ACCESS_TOKEN_TYPE].contains(t))
        {
            return Err(plain(
                Code::InvalidRequest,
                format!(
                    "requested_token_type `{}` is not issued; the credential is a JWT",
                    claimed(kind)
                ),
            ));
        }
        let role = requested_role(input).map_err(|r| (r, json!({})))?;
        let requested_ttl = match input.requested_ttl.as_deref() {
            None | Some("") => None,
            Some(text) => match text.parse::<u64>() {
                Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
                _ => {
                    return Err(plain(
                        Code::InvalidRequest,
                        "requested_ttl must be a whole number of seconds above zero".into(),
                    ));
                }
            },
        };
        let token = input.subject_token.trim();
        let Some(unverified) = unverified_claims(token).filter(|_| token.split('.').count() == 3)
        else {
            return Err(plain(
                Code::MalformedToken,
                "the subject token is not a JWT".into(),
            ));
        };
        let iss = unverified
            .get("iss")
            .and_then(|v| v.as_str())
            .map(|i| i.trim_end_matches('/').to_string())
            .unwrap_or_default();
        let claimed_sub = unverified.get("sub").and_then(|v| v.as_str()).unwrap_or("");
        let said = json!({
            "issuer": claimed(&iss),
            "subject": claimed(claimed_sub),
            "role": claimed(&role),
        });
        let refuse = |code, message: String| (Refusal::new(code, message), said.clone());

        let policy = self.policy();
        let for_issuer: Vec<&WorkloadRule> = policy
            .workloads
            .iter()
            .filter(|rule| rule.issuer.issuer == iss)
            .collect();
        if for_issuer.is_empty() {
            return Err(if policy.oidc.iter().any(|i| i.issuer == iss) {
                refuse(
                    Code::WrongIssuer,
                    format!(
                        "issuer `{}` signs people in; no [[workloads]] rule trusts it for workloads",
                        claimed(&iss)
                    ),
                )
            } else {
                refuse(
                    Code::UnknownIssuer,
                    format!("no [[workloads]] rule trusts issuer `{}`", claimed(&iss)),
                )
            });
        }
        let aud = audiences(&unverified);
        let candidates: Vec<&WorkloadRule> = for_issuer
            .into_iter()
            .filter(|rule| rule.issuer.audiences.iter().any(|a| aud.contains(a)))
            .collect();
        if candidates.is_empty() {
            return Err(refuse(
                Code::WrongAudience,
                format!(
                    "no [[workloads]] rule for `{}` accepts audience {}",
                    claimed(&iss),
                    claimed(&aud.join(", "))
                ),
            ));
        }
        // Verified to read its claims with the terms of the first candidate
        // that takes it (another may take more algorithms or leeway than
        // the first, for its own subjects); again below with the terms of
        // the rule that grants, if another. None taking it, the first
        // one's refusal is the answer.
        let mut verified = None;
        let mut refused = None;
        for rule in &candidates {
            match self.verifier.verify_claims(&rule.issuer, token).await {
                Ok(claims) => {
                    verified = Some((*rule, claims));
                    break;
                }
                // Refused whatever a rule's own terms (the token's form,
                // its signature, the issuer's keys): every other candidate
                // would refuse it the same way, each at the cost of a
                // signature check an unauthenticated caller chose.
                Err(
                    err @ (TokenError::Malformed
                    | TokenError::Signature
                    | TokenError::UnknownKey(_)
                    | TokenError::Keys(_)),
                ) => {
                    refused.get_or_insert(err);
                    break;
                }
                Err(err) => {
                    refused.get_or_insert(err);
                }
            }
        }
        let (first, claims) = match (verified, refused) {
            (Some(verified), _) => verified,
            (None, Some(err)) => {
                return Err(refuse(
                    token_refusal(&err),
                    format!("the subject token was refused: {err}"),
                ));
            }
            (None, None) => unreachable!("there is at least one candidate"),
        };
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_SUBJECT_CHARS && claimed(s) == *s)
            .ok_or_else(|| {
                refuse(
                    Code::MalformedToken,
                    format!(
                        "the token's `sub` must be 1 to {MAX_SUBJECT_CHARS} visible characters"
                    ),
                )
            })?
            .to_string();
        // From here the issuer signed what the token says: a refusal names
        // the workload (and is counted apart from junk tokens' refusals).
        let mut said = said.clone();
        if let Some(map) = said.as_object_mut() {
            map.insert("subject".into(), json!(subject));
            map.insert("verified_by".into(), json!(first.name));
        }
        let refuse = |code, message: String| (Refusal::new(code, message), said.clone());
        let matching: Vec<&WorkloadRule> = candidates
            .iter()
            .copied()
            .filter(|rule| rule.mismatch(&claims).is_none())
            .collect();
        // Audited as the workload a rule admits, never as one whose rule
        // only verified the signature: that would read as the rule's.
        if matching.is_empty() {
            let claim = candidates
                .iter()
                .filter_map(|rule| rule.mismatch(&claims))
                .find(|claim| *claim != "sub");
            return Err(match claim {
                Some(claim) => refuse(
                    Code::ClaimMismatch,
                    format!("the token's `{claim}` does not match what the rule pins"),
                ),
                None => refuse(
                    Code::SubjectMismatch,
                    format!(
                        "no [[workloads]] rule matches subject `{}`",
                        claimed(&subject)
                    ),
                ),
            });
        }
        // Named after the rule that grants (the workload its grants and
        // replays are audited as), or the first that admits it.
        let granting = matching
            .iter()
            .find_map(|rule| rule.role(&role).map(|allowed| (*rule, allowed)));
        let named = granting.map_or(matching[0], |(rule, _)| rule);
        if let Some(map) = said.as_object_mut() {
            map.insert("matched_by".into(), json!(named.name));
        }
        let refuse = |code, message: String| (Refusal::new(code, message), said.clone());
        let Some((rule, allowed)) = granting else {
            return Err(refuse(
                Code::RoleNotAllowed,
                format!(
                    "workload rule `{}` does not allow role `{}`",
                    matching[0].name,
                    claimed(&role)
                ),
            ));
        };
        // The rule that grants may take fewer algorithms or less leeway
        // than the one the token was first checked with: its own terms
        // hold.
        // Refused then, it is refused as the workload its issuer signed.
        if !std::ptr::eq(rule, first) {
            self.verifier
                .verify_claims(&rule.issuer, token)
                .await
                .map_err(|err| {
                    refuse(
                        token_refusal(&err),
                        format!("the subject token was refused: {err}"),
                    )
                })?;
        }
        let ttl = match requested_ttl {
            Some(ttl) if ttl > allowed.max_ttl => {
                return Err(refuse(
                    Code::TtlTooLong,
                    format!(
                        "requested_ttl {}s is above the rule's maximum of {} minutes for role `{}`",
                        ttl.as_secs(),
                        allowed.max_ttl.as_secs() / 60,
                        role
                    ),
                ));
            }
            Some(ttl) => ttl,
            None => allowed.max_ttl,
        };
        let task = claim_text(&claims, &rule.task_claim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                refuse(
                    Code::MalformedToken,
                    format!(
                        "the token has no `{}` claim, which names its task",
                        rule.task_claim
                    ),
                )
            })?;
        // Verification already required it; the exchange is kept by it
        // (`EXCHANGES_KEPT`), so a token without one is never taken.
        let token_expires_at = claims
            .get("exp")
            .and_then(|v| v.as_i64())
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            .ok_or_else(|| {
                refuse(
                    Code::MalformedToken,
                    "the token has no `exp` claim in whole seconds".into(),
                )
            })?;
        // A value as it is where it shows as it is; otherwise (invisible
        // characters, or longer than `claimed` keeps) by its hash, so two
        // values never share a key.
        let key = |claim: &str, value: &str| {
            let shown = claimed(value);
            if shown == value {
                format!("{iss}\n{claim}:{shown}")
            } else {
                format!("{iss}\n{claim}#{}", hex::encode(Sha256::digest(value)))
            }
        };
        // A task keyed by a claim other than the token's own `jti` (a run
        // id) is one task per subject: the jobs of one run (staging's and
        // production's, each its own subject) are tasks of their own, and
        // no other subject's token can take a value first.
        let task_key = if rule.task_claim == "jti" {
            key("jti", &task)
        } else {
            key(&format!("{subject}\n{}", rule.task_claim), &task)
        };
        let token_key = (rule.task_claim != "jti").then(|| {
            match claim_text(&claims, "jti").filter(|jti| !jti.is_empty()) {
                Some(jti) => key("jti", &jti),
                None => format!("{iss}\ntoken:{}", hex::encode(Sha256::digest(token))),
            }
        });
        Ok(Admitted {
            principal: format!("{WORKLOAD_PREFIX}{}:{subject}", rule.name),
            issuer: iss.clone(),
            task_key,
            task: claimed(&task),
            token_key,
            rule: rule.clone(),
            subject,
            claims,
            role,
            ttl,
            approval: allowed.approval,
            token_expires_at,
            policy: Arc::clone(&policy),
        })
    }

    /// The exchange's one transaction: a new task files its request (and,
    /// approved automatically, starts its grant); a task already exchanged
    /// is a poll while its credential was not handed over, and a replay once
    /// it was.
    fn exchange_task(&self, admitted: &Admitted) -> Result<Step, Refusal> {
        let mut work = self.begin()?;
        if !Arc::ptr_eq(&work.policy, &admitted.policy) {
            return Ok(Step::PolicyChanged);
        }
        let step = match work.tx.exchange(&admitted.task_key)? {
            Some(mut exchange)
                if exchange.redeemed_at.is_some() || exchange.principal != admitted.principal =>
            {
                // Remembered as long as the newest token of the task lives,
                // or that token, once the first's row were purged, would
                // file the task again.
                if kept_for(&mut exchange, admitted) {
                    work.tx.update_exchange(&exchange)?;
                    self.finish(work)?;
                }
                return Err(Refusal::new(
                    WorkloadErrorCode::Replayed,
                    format!(
                        "this token's task ({}) was exchanged already; one task is one grant",
                        admitted.task
                    ),
                ));
            }
            Some(exchange) => match bind_token(&mut work, admitted, &exchange)
                .and_then(|()| self.poll(&mut work, exchange, admitted))
            {
                Ok(step) => step,
                // A refusal of the task (denied, ended, another role) keeps
                // what `poll` wrote of the newer token: the task is
                // remembered as long as it lives.
                Err(refusal)
                    if matches!(
                        refusal.code,
                        WorkloadErrorCode::Denied | WorkloadErrorCode::Replayed
                    ) =>
                {
                    self.finish(work)?;
                    return Err(refusal);
                }
                Err(refusal) => return Err(refusal),
            },
            None => {
                // A token that filed a task under another rule's key.
                if let Some(key) = &admitted.token_key
                    && work.tx.exchange(key)?.is_some()
                {
                    return Err(Refusal::new(
                        WorkloadErrorCode::Replayed,
                        "this token was exchanged already, for a task another rule keys \
                         otherwise; one token is one task"
                            .to_string(),
                    ));
                }
                self.file_task(&mut work, admitted)?
            }
        };
        let redeemed_at = work.now;
        if let Err(err) = self.finish(work) {
            if let (Step::Issued(..), Error::Store(crate::store::StoreError::Uncertain(_))) =
                (&step, &err)
            {
                // The commit may have redeemed the task with nothing handed
                // over: opened again, so that the task's next exchange
                // collects its credential rather than meet a replay. The
                // database has just gone: tried for a few seconds.
                self.reopen(
                    &admitted.task_key,
                    redeemed_at,
                    "a task whose commit was lost may stay redeemed",
                );
            }
            return Err(err.into());
        }
        Ok(step)
    }

    /// [`Broker::unredeem`], tried again for a few seconds while the
    /// database does not answer (it may just have gone); `stays` is logged
    /// if it never does.
    fn reopen(&self, task_key: &str, at: chrono::DateTime<chrono::Utc>, stays: &str) {
        let mut pause = std::time::Duration::from_millis(100);
        for attempt in 1..=REOPEN_TRIES {
            match self.unredeem(task_key, at) {
                Ok(()) => return,
                Err(err) if attempt == REOPEN_TRIES => {
                    tracing::warn!(error = %err, "{stays}");
                }
                Err(_) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
            }
        }
    }

    /// Opens an exchanged task again after its hand-over failed: redeemed
    /// in the transaction that issued the credential (so a second exchange
    /// racing it is a replay), it is redeemed for good only once the job
    /// has what it asked for. Only the redemption made at `at` (to the
    /// millisecond, as stored) is undone: not another exchange's, made
    /// since (a retry after an attempt that did commit). A task that can no longer be collected (its
    /// job withdrew meanwhile, or its token's time is over) has its grant
    /// revoked instead, as the reaper revokes one.
    fn unredeem(
        &self,
        task_key: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::Result<()> {
        let mut work = self.begin()?;
        if let Some(mut exchange) = work.tx.exchange(task_key)?
            && exchange.redeemed_at.map(|r| r.timestamp_millis()) == Some(at.timestamp_millis())
        {
            exchange.redeemed_at = None;
            if exchange.collect_by.is_some_and(|by| by <= work.now) {
                work.uncollected(
                    exchange,
                    "its credential never reached its workload, which can no longer collect it \
                     (the task was withdrawn, or its token's time is over)"
                        .to_string(),
                )?;
            } else {
                work.tx.update_exchange(&exchange)?;
            }
        }
        self.finish(work)
    }

    fn file_task(&self, work: &mut Work<'_>, admitted: &Admitted) -> Result<Step, Refusal> {
        let policy = Arc::clone(&work.policy);
        let role = self.role(&policy, &admitted.role)?;
        let approvals = match admitted.approval {
            Approval::Automatic => 0,
            Approval::Person => role.approvals.max(1),
        };
        let mut request = AccessRequest {
            justification: justification(admitted),
            duration_secs: admitted.ttl.as_secs(),
            ..work.new_request(
                RequestKind::Access,
                role,
                &admitted.principal,
                approvals,
                &policy,
            )
        };
        // Only the token can poll for the credential: once it is refused
        // as expired, nobody could take what an approval gives, so the
        // request lapses then, not at the policy's pending time.
        let token_end = collectable_until(admitted);
        if approvals > 0 && token_end <= work.now {
            return Err(Refusal::new(
                WorkloadErrorCode::TokenExpired,
                format!(
                    "this token expires within {LAPSE_MARGIN_SECS} s (the rule's leeway \
                     counted): no approval could reach the job while it lasts; present a \
                     fresher one"
                ),
            ));
        }
        if approvals > 0 {
            request.lapses_at = Some(request.lapses_at.map_or(token_end, |l| l.min(token_end)));
        }
        work.file(
            &request,
            facts(
                admitted,
                json!({
                    "kind": "workload",
                    "duration_secs": request.duration_secs,
                    "approvals_required": approvals,
                }),
            ),
        )?;
        let exchange = Exchange {
            task_key: admitted.task_key.clone(),
            principal: admitted.principal.clone(),
            request_id: request.id.clone(),
            expires_at: admitted.token_expires_at,
            created_at: work.now,
            redeemed_at: None,
            claims: Some(admitted.claims.clone()),
            collect_by: collect_by(admitted),
        };
        work.tx.insert_exchange(&exchange)?;
        // The token itself, under the key a rule keying tasks by `jti`
        // would give it: found there, it is a replay. Never collected from,
        // so never settled by the reaper.
        if let Some(key) = &admitted.token_key {
            work.tx.insert_exchange(&Exchange {
                task_key: key.clone(),
                collect_by: None,
                ..exchange.clone()
            })?;
        }
        work.workload_claims
            .insert(request.id.clone(), exchange.claims.clone());
        if approvals == 0 {
            let mut approved = event(AuditKind::Approved, SYSTEM_ACTOR, work.now, &request);
            approved.reason = Some(format!(
                "workload rule `{}` approves role `{}` automatically",
                admitted.rule.name, role.id
            ));
            work.audit(approved)?;
            let holding = work.holding(&request)?;
            work.activate(&mut request, SYSTEM_ACTOR, holding)?;
        } else {
            work.changes.push(Change::Request(request.clone()));
        }
        self.poll(work, exchange, admitted)
    }

    /// Where an exchanged task stands: its credential if its grant is
    /// usable (the exchange is then redeemed), pending while a person or
    /// the target has yet to act, refused once it will never be granted.
    fn poll(
        &self,
        work: &mut Work<'_>,
        mut exchange: Exchange,
        admitted: &Admitted,
    ) -> Result<Step, Refusal> {
        // A task keyed by its run presents a newer token each time: the
        // exchange is kept (and a replay refused) until the last of them
        // has expired, not the first (a replay's token too: above).
        if kept_for(&mut exchange, admitted) {
            work.tx.update_exchange(&exchange)?;
        }
        let role = admitted.role.as_str();
        let mut request = self.load_request(work, &exchange.request_id)?;
        // Only the token can collect what an approval gives, so a request
        // waiting for a person lapses with the token (see `file_task`); a
        // newer token of the same task keeps it waiting as long as that one
        // lives, never past the policy's pending time.
        if request.state == RequestState::Pending && request.role == role {
            let token_end = collectable_until(admitted);
            let pending_end =
                request.created_at + super::std_delta(work.policy.settings.pending_ttl);
            let lapses = token_end.min(pending_end);
            if request.lapses_at.is_some_and(|at| at < lapses) {
                request.lapses_at = Some(lapses);
                work.save_request(&mut request)?;
            }
        }
        if request.role != role {
            // The same task presented for another role: it has its grant
            // (or request) already, for the role it named first.
            return Err(Refusal::new(
                WorkloadErrorCode::Replayed,
                format!(
                    "this token's task was exchanged for role `{}`; one task is one grant",
                    claimed(&request.role)
                ),
            ));
        }
        let pending = |status: &str, grant_id: Option<String>| {
            Step::Pending(TokenPending {
                status: status.into(),
                request_id: request.id.clone(),
                grant_id,
                interval: POLL_INTERVAL_SECS,
            })
        };
        match request.state {
            RequestState::Pending | RequestState::Approved => Ok(pending("approval", None)),
            RequestState::Active => {
                let grant_id = request.grant_id.clone().unwrap_or_default();
                let mut grant = work
                    .tx
                    .grant(&grant_id)?
                    .ok_or_else(|| Error::not_found("grant", &grant_id))?;
                settle_grant(&mut grant, work.now);
                // Its credential is handed over only while it lasts.
                work.relies_on_grant(&grant);
                if grant.state != GrantState::Active {
                    return Err(Refusal::new(
                        WorkloadErrorCode::Denied,
                        format!(
                            "grant {grant_id} is {}; the task's window is over",
                            grant.state.as_str()
                        ),
                    ));
                }
                if grant.access.is_some() && !usable(&grant) {
                    return Ok(pending("provisioning", Some(grant_id)));
                }
                let (credential, target) =
                    self.issue_credential(work, &exchange.principal, &grant_id)?;
                exchange.redeemed_at = Some(work.now);
                work.tx.update_exchange(&exchange)?;
                Ok(Step::Issued(
                    Box::new(credential),
                    target.map(Box::new),
                    request.id,
                    work.now,
                ))
            }
            state => Err(Refusal::new(
                WorkloadErrorCode::Denied,
                format!(
                    "request {} is {state}{}",
                    request.id,
                    request
                        .reason
                        .as_deref()
                        .map(|r| format!(": {}", claimed(r)))
                        .unwrap_or_default()
                ),
            )),
        }
    }

    /// Audits a refused exchange; nothing else is written. Refusals of one
    /// actor with one code within a minute are audited once, then as a
    /// count.
    async fn audit_refusal(
        self: &Arc<Self>,
        actor: String,
        refusal: &Refusal,
        mut details: serde_json::Value,
    ) {
        if let Some(map) = details.as_object_mut() {
            map.insert("code".into(), json!(refusal.code.as_str()));
        }
        let mut refused = NewAuditEvent {
            subject: Some(actor.clone()),
            role: details
                .get("role")
                .and_then(|r| r.as_str())
                .map(str::to_string),
            reason: Some(refusal.message.clone()),
            details,
            ..NewAuditEvent::new(AuditKind::WorkloadRefused, actor, super::now())
        };
        // A flood of junk tokens is counted, not written one by one.
        if self.counted_repeat(&refused, refused.at) {
            return;
        }
        let broker = Arc::clone(self);
        let written = tokio::task::spawn_blocking(move || -> crate::error::Result<()> {
            let mut work = broker.begin()?;
            refused.at = work.now;
            broker.audit_use(&mut work, refused)?;
            broker.finish(work)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!("a refused workload exchange could not be audited");
        }
    }

    /// [`Broker::limit`] for an admitted workload, the refusal audited
    /// (a flood of them as one entry a window, with its count).
    async fn limited(self: &Arc<Self>, act: Act, admitted: &Admitted) -> Result<(), Refusal> {
        let Err(err) = self.limit(act, &admitted.principal) else {
            return Ok(());
        };
        let refusal = Refusal::from(err);
        self.audit_refusal(
            admitted.principal.clone(),
            &refusal,
            facts(admitted, json!({ "role": admitted.role })),
        )
        .await;
        Err(refusal)
    }

    /// `POST /v1/token/withdraw`: a job that gives up (its timeout, a
    /// signal) withdraws its task with the same form it exchanged. The token
    /// is checked as for an exchange, and only the task it names is touched:
    /// a pending request is cancelled, and a grant already made is ended
    /// unless its credential was handed over: then whoever holds it (with
    /// a `task_claim` such as a run id, another job of the same run; with
    /// `jti`, another process given the same token) may be using it, and
    /// ends it with it.
    pub async fn withdraw(
        self: &Arc<Self>,
        input: TokenExchangeInput,
    ) -> Result<TaskWithdrawn, Refusal> {
        let admitted = match self.admit(&input).await {
            Ok(admitted) => admitted,
            Err((refusal, details)) => {
                self.audit_refusal(refused_actor(&details), &refusal, details)
                    .await;
                return Err(refusal);
            }
        };
        // A turn at the writers' lock, as a poll is; in a bucket of its own.
        self.limited(Act::Withdraw, &admitted).await?;
        let broker = Arc::clone(self);
        tokio::task::spawn_blocking(move || broker.withdraw_task(&admitted))
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "withdraw task failed");
                Refusal::new(WorkloadErrorCode::Internal, "internal error")
            })?
    }

    fn withdraw_task(&self, admitted: &Admitted) -> Result<TaskWithdrawn, Refusal> {
        let reason = "the task gave up waiting and withdrew";
        let mut work = self.begin()?;
        let mut exchange = work
            .tx
            .exchange(&admitted.task_key)?
            .filter(|exchange| exchange.principal == admitted.principal)
            .ok_or_else(|| {
                Refusal::new(
                    WorkloadErrorCode::InvalidRequest,
                    format!(
                        "this token's task ({}) was never exchanged; there is nothing to withdraw",
                        admitted.task
                    ),
                )
            })?;
        let mut request = self.load_request(&work, &exchange.request_id)?;
        let mut grant_state = None;
        match request.state {
            RequestState::Pending | RequestState::Approved => {
                request.state = RequestState::Cancelled;
                request.reason = Some(reason.into());
                request.lapses_at = None;
                request.claim = None;
                work.save_request(&mut request)?;
                let mut cancelled = event(
                    AuditKind::Cancelled,
                    &admitted.principal,
                    work.now,
                    &request,
                );
                cancelled.reason = request.reason.clone();
                work.audit(cancelled)?;
            }
            RequestState::Active => {
                if let Some(grant_id) = request.grant_id.clone() {
                    let mut grant = work
                        .tx
                        .grant(&grant_id)?
                        .ok_or_else(|| Error::not_found("grant", &grant_id))?;
                    settle_grant(&mut grant, work.now);
                    // Its credential was handed over: whoever holds it (a
                    // job of the same run, with the same task) may be using
                    // it now, and ends it with that credential. A job that
                    // never got it cannot tell that job from itself.
                    // (A task keyed by its token's own id too: two
                    // processes may share one token.)
                    let handed_over = exchange.redeemed_at.is_some();
                    if grant.state == GrantState::Active && !handed_over {
                        work.end_grant(
                            &mut grant,
                            GrantState::Revoked,
                            &admitted.principal,
                            Some(reason.into()),
                        )?;
                    } else if grant.state == GrantState::Active {
                        // Redeemed, but its hand-over may still be under
                        // way, and fail or lose its caller: the task is
                        // then opened again (`unredeem`) with nobody to
                        // collect it, since its job withdrew. Due now, so
                        // that the grant is then revoked.
                        // (Already due: withdrawn before, and audited then.)
                        let withdrawn_before = exchange.collect_by.is_some_and(|by| by <= work.now);
                        exchange.collect_by = Some(work.now);
                        work.tx.update_exchange(&exchange)?;
                        if !withdrawn_before {
                            let mut withdrawn = event(
                                AuditKind::TaskWithdrawn,
                                &admitted.principal,
                                work.now,
                                &request,
                            );
                            withdrawn.reason = Some(reason.into());
                            withdrawn.details = json!({ "task": admitted.task });
                            work.audit(withdrawn)?;
                        }
                    }
                    grant_state = Some(grant.state.as_str().to_string());
                }
            }
            _ => {}
        }
        self.finish(work)?;
        Ok(TaskWithdrawn {
            request_id: request.id,
            request_state: request.state.to_string(),
            grant_id: request.grant_id,
            grant_state,
        })
    }

    /// `POST /v1/token/revoke`: the workload ends its own task's grant with
    /// the credential it was given. Ending an ended grant changes nothing.
    pub fn revoke_task(&self, credential: &str) -> Result<WorkloadRevoked, Refusal> {
        let policy = self.policy();
        let invalid = || {
            Refusal::new(
                WorkloadErrorCode::InvalidCredential,
                "not a live workload credential from this broker",
            )
        };
        let claims = self
            .signer
            .verify(credential, &policy.settings.issuer)
            .ok_or_else(invalid)?;
        let principal = claims
            .act
            .as_ref()
            .map(|act| act.sub.clone())
            .filter(|sub| *sub == claims.sub && hoist_api::is_workload(sub))
            .ok_or_else(invalid)?;
        self.limit(Act::End, &principal)?;
        let mut work = self.begin()?;
        let mut grant = work
            .tx
            .grant(&claims.grant_id)?
            .filter(|g| g.holder == principal)
            .ok_or_else(invalid)?;
        settle_grant(&mut grant, work.now);
        if grant.state == GrantState::Active {
            work.end_grant(
                &mut grant,
                GrantState::Revoked,
                &principal,
                Some("the task ended".into()),
            )?;
            self.finish(work)?;
        }
        Ok(WorkloadRevoked {
            grant_id: grant.id,
            state: grant.state.as_str().to_string(),
        })
    }

    /// Whether a bearer token is a workload's (its identity token, or the
    /// credential it was given), which people's routes refuse.
    pub(super) fn workload_bearer(&self, token: &str) -> Option<&'static str> {
        let policy = self.policy();
        let claims = unverified_claims(token)?;
        let iss = claims
            .get("iss")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .trim_end_matches('/');
        let aud = audiences(&claims);
        if policy.workloads.iter().any(|rule| {
            rule.issuer.issuer == iss && rule.issuer.audiences.iter().any(|a| aud.contains(a))
        }) {
            return Some(
                "a workload identity token is accepted only by POST /v1/token, never as a \
                 person's bearer token",
            );
        }
        (iss == policy.settings.issuer && claims.get("act").is_some()).then_some(
            "a workload's credential may call only POST /v1/token/revoke and POST \
             /v1/introspect, never a person's routes",
        )
    }

    /// The workload principal a workload credential, signed and not
    /// expired, belongs to, and the grant it was issued for: the caller
    /// is that workload only while that grant is active (checked where
    /// the call reads the store, as [`Broker::introspect`] does).
    pub fn workload_caller(&self, token: &str) -> Option<(String, String)> {
        let policy = self.policy();
        let claims = self.signer.verify(token, &policy.settings.issuer)?;
        let act = claims.act?;
        (act.sub == claims.sub && hoist_api::is_workload(&act.sub))
            .then_some((act.sub, claims.grant_id))
    }
}

/// The workload's facts as its audit entries carry them: rule, issuer,
/// subject, the pinned claims' values, the task and the run link.
fn facts(admitted: &Admitted, mut extra: serde_json::Value) -> serde_json::Value {
    let pinned: serde_json::Map<String, serde_json::Value> = admitted
        .rule
        .claims
        .keys()
        .filter_map(|name| {
            claim_text(&admitted.claims, name).map(|value| (name.clone(), json!(claimed(&value))))
        })
        .collect();
    if let Some(map) = extra.as_object_mut() {
        map.insert(
            "workload".into(),
            json!({
                "rule": admitted.rule.name,
                "issuer": admitted.issuer,
                "subject": admitted.subject,
                "claims": pinned,
                "task": admitted.task,
                "run_url": admitted.rule.run_link(&admitted.claims),
                "started_by": admitted.rule.started_by(&admitted.claims),
            }),
        );
    }
    extra
}

/// How long before its token expires a task's request lapses: two poll
/// intervals, so that a job polling every interval (plus its round trip)
/// polls once more after any approval while the token is good.
pub const LAPSE_MARGIN_SECS: u64 = 2 * POLL_INTERVAL_SECS;

/// The last moment an approval of `admitted`'s task may come:
/// [`LAPSE_MARGIN_SECS`] before its token is refused as expired (the rule's
/// leeway counted). An approval later would make a grant nobody can
/// collect or withdraw. (One whose access at a target is not live by the
/// job's next poll is still lost to it.)
fn collectable_until(admitted: &Admitted) -> chrono::DateTime<chrono::Utc> {
    last_poll(admitted) - chrono::TimeDelta::seconds(LAPSE_MARGIN_SECS as i64)
}

/// When `admitted`'s token is refused as expired (the rule's leeway
/// counted).
fn last_poll(admitted: &Admitted) -> chrono::DateTime<chrono::Utc> {
    admitted.token_expires_at
        + chrono::TimeDelta::from_std(admitted.rule.issuer.leeway).unwrap_or_default()
}

/// When nothing `admitted`'s task was granted can be collected any more,
/// for a task keyed by its token (`jti`): its last poll, and that poll's
/// wait for the target. The reaper then revokes a grant still waiting for
/// its job ([`Exchange::collect_by`]). None for a task keyed by its run: a
/// fresh token of the run (a job run again) may still collect it.
fn collect_by(admitted: &Admitted) -> Option<chrono::DateTime<chrono::Utc>> {
    (admitted.rule.task_claim == "jti").then(|| {
        last_poll(admitted) + chrono::TimeDelta::from_std(PROVISION_WAIT).unwrap_or_default()
    })
}

/// Keeps `exchange` as long as `admitted`'s token, presented for it, lives
/// (a task keyed by its run presents a newer token each time); whether it
/// changed. A task the reaper settled stays settled.
fn kept_for(exchange: &mut Exchange, admitted: &Admitted) -> bool {
    if admitted.token_expires_at <= exchange.expires_at {
        return false;
    }
    exchange.expires_at = admitted.token_expires_at;
    if let (Some(kept), Some(now)) = (exchange.collect_by.as_mut(), collect_by(admitted)) {
        *kept = (*kept).max(now);
    }
    true
}

/// What approvers read in the queue: the workload, the claims its rule
/// pins and the link to its run, as plain lines.
fn justification(admitted: &Admitted) -> String {
    let mut text = format!(
        "Workload {} (rule {}) from {}",
        admitted.subject, admitted.rule.name, admitted.issuer
    );
    for name in admitted.rule.claims.keys().filter(|n| *n != "sub") {
        if let Some(value) = claim_text(&admitted.claims, name) {
            text.push_str(&format!("\n{name}: {}", claimed(&value)));
        }
    }
    // Who started the run, and the user each value maps to: they may not
    // approve it, and the others should know whose it is.
    for name in &admitted.rule.actor_claims {
        if let Some(value) = claim_text(&admitted.claims, name) {
            text.push_str(&format!("\n{name}: {}", claimed(&value)));
            if let Some(user) = admitted.rule.actors.get(&value) {
                text.push_str(&format!(" (user {user})"));
            }
        }
    }
    if let Some(link) = admitted.rule.run_link(&admitted.claims) {
        text.push_str(&format!("\nrun: {}", claimed(&link)));
    }
    text.chars()
        .take(hoist_api::MAX_JUSTIFICATION_CHARS)
        .collect()
}

fn response(credential: Credential, request_id: String) -> TokenExchangeResponse {
    let expires_in = (credential.expires_at - super::now()).num_seconds().max(0);
    TokenExchangeResponse {
        access_token: credential.token,
        issued_token_type: JWT_TOKEN_TYPE.into(),
        token_type: "Bearer".into(),
        expires_in: u64::try_from(expires_in).unwrap_or(0),
        scope: credential.role,
        grant_id: credential.grant_id,
        request_id,
        expires_at: credential.expires_at,
        access: credential.access,
    }
}

/// Opens a redeemed task again when dropped armed: an exchange whose caller
/// went before its credential was handed over (see [`Broker::exchange`]).
struct Reopen {
    broker: Arc<Broker>,
    task_key: Option<String>,
    redeemed_at: chrono::DateTime<chrono::Utc>,
}

impl Reopen {
    /// The caller is still here: what happens next is its to say.
    fn disarm(mut self) {
        self.task_key = None;
    }
}

impl Drop for Reopen {
    fn drop(&mut self) {
        let Some(task_key) = self.task_key.take() else {
            return;
        };
        let (broker, redeemed_at) = (Arc::clone(&self.broker), self.redeemed_at);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || {
                broker.reopen(
                    &task_key,
                    redeemed_at,
                    "a task whose caller went may stay redeemed",
                );
            });
        }
    }
}

/// The code a subject token's refusal is audited and answered with.
fn token_refusal(err: &TokenError) -> WorkloadErrorCode {
    use WorkloadErrorCode as Code;
    match err {
        TokenError::Algorithm(_) => Code::AlgorithmRefused,
        TokenError::Expired => Code::TokenExpired,
        TokenError::Signature | TokenError::UnknownKey(_) => Code::InvalidSignature,
        TokenError::Keys(_) => Code::IssuerUnavailable,
        _ => Code::MalformedToken,
    }
}
