//! The approver's side: queues, decisions, claims and break-glass acknowledgements.

use std::sync::Arc;

use hoist_api::{
    AccessRequest, Acknowledgement, AuditKind, Claim, Decision, ErrorCode, RequestKind,
    RequestState, Review,
};
use serde_json::json;

use super::{Broker, Work, event, now, settle_request, std_delta};
use crate::error::{Error, Result};
use crate::policy::{Policy, RoleDef};
use crate::store::{RequestQuery, Tx};
use crate::{domain, slack};

/// Whose own request `request` is: its requester's and, for a workload's
/// task, each user its rule in force says started the run (`actor_claims`
/// mapped by `actors`, read from the claims its token was verified with).
/// None of them reviews it, counts toward it or is asked to.
pub(super) fn owners(policy: &Policy, tx: &dyn Tx, request: &AccessRequest) -> Result<Vec<String>> {
    let mut owners = vec![request.requester.clone()];
    if let Some(rule) = policy
        .workload_rule_of(&request.requester)
        .filter(|rule| !rule.actor_claims.is_empty())
        && let Some(claims) = tx.workload_claims(&request.id)?
    {
        owners.extend(rule.started_by(&claims));
    }
    Ok(owners)
}

/// Who of `request`'s approvers count toward `role`'s rule under `policy`:
/// none of its `owners`, and only those who may approve it now (one who
/// lost the right since, at a reload, no longer counts). Their groups must
/// have been recalled ([`Work::recall`]).
fn counted_approvals(
    policy: &Policy,
    role: &RoleDef,
    request: &AccessRequest,
    owners: &[String],
) -> Vec<String> {
    request
        .reviews
        .iter()
        .filter(|r| {
            r.decision == Decision::Approve
                && !owners.contains(&r.reviewer)
                && policy.is_approver(&r.reviewer, role)
        })
        .map(|r| r.reviewer.clone())
        .collect()
}

/// How many approvals `request` needs under the policy in force: what it
/// was filed with, or more if its role needs more since (a reload made it
/// stricter). Never fewer: a rule loosened since does not carry what was
/// filed under the stricter one.
fn approvals_needed(role: &RoleDef, request: &AccessRequest) -> u32 {
    let now = if request.break_glass {
        0
    } else {
        role.approvals
    };
    request.approvals_required.max(now)
}

impl Work<'_> {
    /// Why an approved request whose scheduled start fell due no longer
    /// has the approvals it needs under the policy in force (an approver
    /// dropped from the role's approvers since, or the role needing more
    /// approvals now), or `None`: it starts only as a final approval would
    /// let it start now.
    pub(super) fn approvals_lapsed(&self, request: &AccessRequest) -> Result<Option<String>> {
        let Some(role) = self.policy.role(&request.role) else {
            // Gone from the policy: the eligibility check says so.
            return Ok(None);
        };
        for review in &request.reviews {
            self.recall(&review.reviewer)?;
        }
        let owners = owners(&self.policy, self.tx.as_ref(), request)?;
        let counted = counted_approvals(&self.policy, role, request, &owners);
        let needed = approvals_needed(role, request) as usize;
        if counted.len() >= needed {
            return Ok(None);
        }
        Ok(Some(format!(
            "it does not have the approvals role `{}` needs now: {} of the {needed} it needs \
             come from people who may still approve it; file it again",
            request.role,
            counted.len(),
        )))
    }
}

impl Broker {
    fn approver_roles(&self, policy: &Policy, user: &str) -> Vec<String> {
        policy
            .roles()
            .filter(|role| policy.is_approver(user, role))
            .map(|role| role.id.clone())
            .collect()
    }

    /// Pending requests the caller may decide, the soonest to lapse first,
    /// with those they already approved, which wait for others: each names
    /// who may decide it, so the caller can tell who else is left.
    pub fn review_queue(&self, user: &str) -> Result<Vec<AccessRequest>> {
        let policy = self.policy();
        let roles = self.approver_roles(&policy, user);
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.store.read()?;
        let now = now();
        let mut pending = tx.requests(&RequestQuery {
            roles,
            states: vec![RequestState::Pending],
            ..RequestQuery::default()
        })?;
        pending.iter_mut().for_each(|r| settle_request(r, now));
        let mut queue = Vec::new();
        for request in pending {
            if request.state != RequestState::Pending {
                continue;
            }
            let owners = owners(&policy, tx.as_ref(), &request)?;
            if !owners.iter().any(|owner| owner == user) {
                queue.push((request, owners));
            }
        }
        queue.sort_by_key(|(r, _)| r.lapses_at);
        let mut roles: Vec<_> = queue
            .iter()
            .filter_map(|(r, _)| policy.role(&r.role))
            .collect();
        roles.sort_by(|a, b| a.id.cmp(&b.id));
        roles.dedup_by(|a, b| a.id == b.id);
        super::recall_approvers(&policy, tx.as_ref(), &roles)?;
        Ok(queue
            .into_iter()
            .map(|(mut request, owners)| {
                if let Some(role) = policy.role(&request.role) {
                    request.approvers = policy
                        .approvers_of(role)
                        .into_iter()
                        .filter(|approver| !owners.contains(approver))
                        .collect();
                }
                request
            })
            .collect())
    }

    /// Break-glass activations on the caller's roles that nobody acknowledged yet.
    pub fn break_glass_queue(&self, user: &str) -> Result<Vec<AccessRequest>> {
        let policy = self.policy();
        let roles = self.approver_roles(&policy, user);
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.store.read()?;
        let mut queue: Vec<AccessRequest> = tx
            .requests(&RequestQuery {
                roles,
                unacknowledged_break_glass: true,
                ..RequestQuery::default()
            })?
            .into_iter()
            .filter(|r| r.requester != user)
            .collect();
        self.settle_views(tx.as_ref(), &mut queue, now())?;
        Ok(queue)
    }

    /// Loads a request, settled to now, that `user` may act on as an
    /// approver: visible to them, not their own, on a role they approve.
    fn request_to_review(
        &self,
        work: &Work<'_>,
        policy: &Policy,
        user: &str,
        id: &str,
    ) -> Result<AccessRequest> {
        work.recall(user)?;
        let request = self.load_request(work, id)?;
        let owners = owners(policy, work.tx.as_ref(), &request)?;
        self.may_review(policy, user, id, &request, &owners)?;
        Ok(request)
    }

    /// Whether `user` may act on `request` as an approver (see
    /// [`Broker::request_to_review`]).
    fn may_review(
        &self,
        policy: &Policy,
        user: &str,
        id: &str,
        request: &AccessRequest,
        owners: &[String],
    ) -> Result<()> {
        if !self.visible_request(policy, user, request) {
            return Err(Error::not_found("request", id));
        }
        if request.requester == user {
            return Err(Error::refuse(
                ErrorCode::SelfReview,
                "you cannot review your own request",
            ));
        }
        if owners.iter().any(|owner| owner == user) {
            return Err(Error::refuse(
                ErrorCode::SelfReview,
                "you started the run this workload's task is for: someone else must review it",
            ));
        }
        let approver = policy
            .role(&request.role)
            .is_some_and(|role| policy.is_approver(user, role));
        if !approver {
            return Err(Error::refuse(
                ErrorCode::Forbidden,
                format!("you are not an approver of role `{}`", request.role),
            ));
        }
        Ok(())
    }

    pub fn review_request(
        &self,
        user: &str,
        id: &str,
        decision: Decision,
        comment: Option<&str>,
    ) -> Result<AccessRequest> {
        self.optimistically(|work| self.decide(work, user, id, decision, comment, None))
            .map(|(request, _)| request)
    }

    /// Approves or denies as the policy user a Slack account acts as, in
    /// the same transaction as the review itself, which then runs exactly
    /// as one through the API; its audit entries say it came from Slack.
    /// A denial's reason is [`slack::DENIAL_REASON`].
    /// The account is looked up under the teams [`slack::account_teams`]
    /// names: where the press came from (`team`) and, for an Enterprise
    /// Grid member id (`W…`), their own (`home_team`, see
    /// [`slack::Action::home_team`]); a `U…` id under its own workspace
    /// only, a guest's from a shared channel under theirs.
    pub fn review_from_slack(
        &self,
        team: &str,
        home_team: Option<&str>,
        slack_user: &str,
        id: &str,
        decision: Decision,
    ) -> Result<FromSlack> {
        // A reload racing it is met by doing it again: the person who
        // pressed the button has no way to send it again.
        super::again_while_contended(|| {
            let work = self.begin()?;
            let policy = Arc::clone(&work.policy);
            let mapped = slack::account_teams(team, home_team, slack_user)
                .into_iter()
                .find_map(|team| policy.slack_user(team, slack_user));
            let Some(user) = mapped.map(str::to_string) else {
                return Ok(FromSlack::Unmapped);
            };
            let comment = (decision == Decision::Deny).then_some(slack::DENIAL_REASON);
            let mut account = json!({ "team": team, "user": slack_user });
            if let Some(home_team) = home_team {
                account["home_team"] = json!(home_team);
            }
            let via = json!({ "via": "slack", "slack": account });
            let (request, approvals) =
                self.decide(work, &user, id, decision, comment, Some(via))?;
            Ok(FromSlack::Reviewed {
                user,
                request: Box::new(request),
                approvals,
            })
        })
    }

    /// One review, in `work`'s transaction: every rule of reviewing holds
    /// here, whichever way the review came. `via`, when given, is added to
    /// the details of the reviewer's audit entries. The request after it,
    /// and how many of its approvals count under the policy in force.
    fn decide(
        &self,
        mut work: Work<'_>,
        user: &str,
        id: &str,
        decision: Decision,
        comment: Option<&str>,
        via: Option<serde_json::Value>,
    ) -> Result<(AccessRequest, usize)> {
        let policy = Arc::clone(&work.policy);
        // What activating it would read is read with it: one round trip.
        let (mut request, held) = work
            .tx
            .request_with_holding(id)?
            .ok_or_else(|| Error::not_found("request", id))?;
        settle_request(&mut request, work.now);
        work.relies_on_open(&request);
        // The caller's token may be older than one another instance saw.
        work.recall(user)?;
        let owners = owners(&policy, work.tx.as_ref(), &request)?;
        self.may_review(&policy, user, id, &request, &owners)?;
        still_pending(&request, "reviewed")?;
        if request.reviews.iter().any(|r| r.reviewer == user) {
            return Err(Error::refuse(
                ErrorCode::AlreadyReviewed,
                format!("you already reviewed request {id}"),
            ));
        }
        let comment = domain::comment("comment", comment)?;
        if decision == Decision::Deny && comment.is_none() {
            return Err(Error::refuse(
                ErrorCode::CommentRequired,
                "a denial needs a comment: it is the reason the requester sees",
            ));
        }
        let role = self.role(&policy, &request.role)?;
        // A role made stricter since it was filed holds it to its new rule
        // (and the request says so from now on).
        request.approvals_required = approvals_needed(role, &request);
        let review = Review {
            reviewer: user.to_string(),
            decision,
            comment: comment.clone(),
            at: work.now,
        };
        request.reviews.push(review.clone());

        // Approvals count if their reviewers may still approve: one who lost
        // the right since (a reload) no longer counts toward the rule.
        for earlier in request.reviews.iter().filter(|r| r.reviewer != user) {
            work.recall(&earlier.reviewer)?;
        }
        let counted = counted_approvals(&policy, role, &request, &owners);
        let approvals = counted.len();
        // This review carries the request: enough approvals now count.
        let carried =
            decision == Decision::Approve && approvals >= request.approvals_required as usize;
        // Everything the review reads is read before it writes, so that an
        // optimistic transaction takes the lock only to commit.
        let ineligible = if carried {
            work.ineligible(&request)?
        } else {
            None
        };
        let activates = carried
            && ineligible.is_none()
            && request.kind == RequestKind::Access
            && request.starts_at.is_none_or(|at| at <= work.now);
        let holding = activates
            .then(|| work.holding_of(&request, held))
            .transpose()?;
        let extending = (carried && ineligible.is_none() && request.kind == RequestKind::Extension)
            .then(|| work.extending(&request))
            .transpose()?;

        work.tx.insert_review(&request.id, &review)?;
        let mut reviewed = event(AuditKind::Reviewed, user, work.now, &request);
        reviewed.reason = comment.clone();
        reviewed.details = with_via(json!({ "decision": decision }), via.as_ref());
        work.audit(reviewed)?;
        if decision == Decision::Deny {
            request.state = RequestState::Denied;
            request.reason = comment;
            request.lapses_at = None;
            request.claim = None;
            work.save_request(&mut request)?;
            let mut denied = event(AuditKind::Denied, user, work.now, &request);
            denied.reason = request.reason.clone();
            denied.details = with_via(json!({}), via.as_ref());
            work.audit(denied)?;
        } else if let Some(reason) = ineligible {
            // The policy changed since it was filed: no access, and the
            // requester is told why.
            work.cancel(&mut request, reason)?;
        } else if carried {
            request.state = RequestState::Approved;
            request.claim = None;
            let mut approved = event(AuditKind::Approved, user, work.now, &request);
            approved.details = with_via(json!({ "approvers": counted }), via.as_ref());
            work.audit(approved)?;
            match (extending, holding) {
                (Some(grant), _) => {
                    work.extend(&mut request, role.max_duration, user, grant)?;
                }
                (None, Some(holding)) => {
                    work.activate(&mut request, user, holding)?;
                }
                (None, None) => {
                    request.lapses_at = None;
                    work.save_request(&mut request)?;
                }
            }
        } else {
            work.save_request(&mut request)?;
        }
        self.finish(work)?;
        Ok((request, approvals))
    }

    /// Marks a pending request as being looked at by the caller for a while.
    pub fn claim_request(&self, user: &str, id: &str, release: bool) -> Result<AccessRequest> {
        self.limit(super::limits::Act::Claim, user)?;
        let mut work = self.begin()?;
        let policy = Arc::clone(&work.policy);
        let mut request = self.request_to_review(&work, &policy, user, id)?;
        still_pending(&request, "claimed")?;
        // Nothing to release: nothing written, audited or announced.
        if release && request.claim.is_none() {
            return Ok(request);
        }
        match (&request.claim, release) {
            (Some(claim), _) if claim.by != user => {
                return Err(Error::refuse(
                    ErrorCode::InvalidState,
                    format!(
                        "{} is looking at request {id} until {}",
                        claim.by,
                        claim.until.to_rfc3339()
                    ),
                ));
            }
            (_, true) => request.claim = None,
            (_, false) => {
                request.claim = Some(Claim {
                    by: user.to_string(),
                    until: work.now + std_delta(policy.settings.claim_ttl),
                });
            }
        }
        work.save_request(&mut request)?;
        let mut claimed = event(AuditKind::Claimed, user, work.now, &request);
        claimed.details =
            json!({ "released": release, "until": request.claim.as_ref().map(|c| c.until) });
        work.audit(claimed)?;
        self.finish(work)?;
        Ok(request)
    }

    pub fn acknowledge_break_glass(
        &self,
        user: &str,
        id: &str,
        comment: Option<&str>,
    ) -> Result<AccessRequest> {
        self.limit(super::limits::Act::End, user)?;
        let mut work = self.begin()?;
        let policy = Arc::clone(&work.policy);
        let mut request = self.request_to_review(&work, &policy, user, id)?;
        if !request.break_glass {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!("request {id} is not a break-glass request"),
            ));
        }
        if let Some(ack) = &request.acknowledgement {
            return Err(Error::refuse(
                ErrorCode::InvalidState,
                format!("{} already acknowledged request {id}", ack.by),
            ));
        }
        let comment = domain::comment("comment", comment)?;
        request.acknowledgement = Some(Acknowledgement {
            by: user.to_string(),
            comment: comment.clone(),
            at: work.now,
        });
        // Keep the recorded state: acknowledging says nothing about the grant.
        work.save_request(&mut request)?;
        let mut acknowledged = event(AuditKind::BreakGlassAcknowledged, user, work.now, &request);
        acknowledged.reason = comment;
        work.audit(acknowledged)?;
        self.finish(work)?;
        // Committed: a re-read that fails now must not tell the approver
        // nothing was done. What was written answers instead.
        self.request(user, id).or_else(|err| {
            tracing::warn!(error = %err, request = %id, "acknowledged; the re-read failed");
            settle_request(&mut request, now());
            Ok(request)
        })
    }
}

/// What a press of a Slack button came to.
#[derive(Debug)]
pub enum FromSlack {
    /// The Slack account is no user's in the policy; nothing was done.
    Unmapped,
    /// Reviewed as `user`: the request after the review, and how many of
    /// its approvals count (an approver dropped since does not).
    Reviewed {
        user: String,
        request: Box<AccessRequest>,
        approvals: usize,
    },
}

/// `details` with the way a review came (`via`'s keys) added.
fn with_via(mut details: serde_json::Value, via: Option<&serde_json::Value>) -> serde_json::Value {
    if let (Some(details), Some(serde_json::Value::Object(via))) = (details.as_object_mut(), via) {
        details.extend(via.clone());
    }
    details
}

/// Refuses to act on a request that is no longer pending.
fn still_pending(request: &AccessRequest, done: &str) -> Result<()> {
    if request.state != RequestState::Pending {
        return Err(Error::refuse(
            ErrorCode::InvalidState,
            format!(
                "request {} is {}; only pending requests can be {done}",
                request.id, request.state
            ),
        ));
    }
    Ok(())
}
