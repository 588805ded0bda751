//! Runs the commands `update` asks for as tasks, and reports each result back
//! to the event loop as an action. The UI never waits for the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use crate::app::action::Snapshot;
use crate::app::{Action, Command, Failure, FailureKind, Operation};
use crate::backend::{Backend, BackendError};

/// How many of my past requests the Requests screen loads.
const REQUEST_HISTORY: usize = 500;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub type Saver = Arc<dyn Fn(Vec<String>) -> Result<(), String> + Send + Sync>;

/// Signs the person in again, freshly, keeps that session, and answers its
/// token (or why it could not).
pub type SignInAgain = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
        + Send
        + Sync,
>;

#[derive(Clone)]
pub struct Worker {
    backend: Arc<dyn Backend>,
    actions: UnboundedSender<Action>,
    /// Only the newest LoadAll may land; older answers are dropped.
    generation: Arc<AtomicU64>,
    save_favourites: Option<Saver>,
    sign_in_again: Option<SignInAgain>,
    /// What the commands its messages name begin with
    /// ([`crate::app::State::hoist`]).
    hoist: Arc<str>,
}

impl Worker {
    pub fn new(
        backend: Arc<dyn Backend>,
        actions: UnboundedSender<Action>,
        save_favourites: Option<Saver>,
        sign_in_again: Option<SignInAgain>,
    ) -> Worker {
        Worker {
            backend,
            actions,
            generation: Arc::new(AtomicU64::new(0)),
            save_favourites,
            sign_in_again,
            hoist: Arc::from("hoist"),
        }
    }

    /// The same, naming commands as `hoist` (`hoist --profile work`).
    pub fn naming(mut self, hoist: &str) -> Worker {
        self.hoist = Arc::from(hoist);
        self
    }

    fn send(&self, action: Action) {
        // The loop is gone only when the app is quitting.
        let _ = self.actions.send(action);
    }

    /// Starts the command; its outcome arrives later as an action. Terminal
    /// effects (bell, clipboard) are the event loop's, not the worker's.
    pub fn run(&self, command: Command) {
        let worker = self.clone();
        tokio::spawn(async move { worker.execute(command).await });
    }

    async fn execute(&self, command: Command) {
        let backend = &*self.backend;
        let failed = |operation: Operation, error: BackendError| Action::Failed {
            operation,
            failure: failure(&error),
        };
        // Failures here are our own, not the broker's.
        let local = |operation: Operation, reason: String| Action::Failed {
            operation,
            failure: Failure::new(FailureKind::Other, reason),
        };
        let action = match command {
            Command::LoadAll => {
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                let loaded = tokio::try_join!(
                    backend.me(),
                    backend.roles(),
                    backend.requests(REQUEST_HISTORY),
                    // Ended ones too: access still being removed at a
                    // target is shown until the broker reports it gone.
                    backend.grants(true),
                    backend.review_queue(),
                    backend.break_glass_queue(),
                );
                if self.generation.load(Ordering::SeqCst) != generation {
                    return;
                }
                match loaded {
                    Ok((me, roles, requests, grants, queue, break_glass)) => {
                        // Only beside my own grants: without them the
                        // screen still works, so a failure leaves them out.
                        let oversees = me.auditor || !me.approver_for.is_empty();
                        let workload_grants = if oversees && backend.capabilities().workload_grants
                        {
                            backend.workload_grants().await.unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        if self.generation.load(Ordering::SeqCst) != generation {
                            return;
                        }
                        Action::Loaded(Box::new(Snapshot {
                            now: backend.clock().now(),
                            me,
                            roles,
                            requests,
                            grants,
                            queue,
                            break_glass,
                            workload_grants,
                        }))
                    }
                    Err(error) => Action::LoadFailed(failure(&error)),
                }
            }
            // The newest: once there are more, the oldest would never change.
            Command::LoadActivity => match backend.latest_audit(2000).await {
                Ok(events) => Action::ActivityLoaded(events),
                Err(error) => failed(Operation::LoadingActivity, error),
            },
            Command::LoadIncident(reference) => match backend.incident(&reference).await {
                Ok(view) => Action::IncidentLoaded(Box::new(view)),
                Err(error) => failed(Operation::LoadingIncident, error),
            },
            // Only shown beside a review: without it the review still works.
            Command::LoadGrant(id) => match backend.grant(&id).await {
                Ok(grant) => Action::ReviewedGrantLoaded(Box::new(grant)),
                Err(_) => return,
            },
            Command::LoadHistory(id) => match backend.history(&id).await {
                Ok(history) => Action::HistoryLoaded(history),
                Err(error) => failed(Operation::LoadingHistory, error),
            },
            Command::Submit {
                body,
                idempotency_key,
            } => match backend.file(&body, &idempotency_key).await {
                Ok(request) => Action::Filed(Box::new(request)),
                Err(error) => failed(Operation::Filing, error),
            },
            Command::Cancel(id) => match backend.cancel(&id, None).await {
                Ok(request) => Action::RequestChanged(Box::new(request)),
                Err(error) => failed(Operation::Cancelling, error),
            },
            Command::Revoke { grant_id, reason } => {
                self.revoke_until_confirmed(&grant_id, reason).await
            }
            Command::Extend {
                grant_id,
                duration_secs,
                justification,
                idempotency_key,
            } => match backend
                .extend(&grant_id, duration_secs, justification, &idempotency_key)
                .await
            {
                Ok(request) => Action::Extended {
                    grant_id,
                    request: Box::new(request),
                },
                Err(error) => Action::ExtendFailed {
                    grant_id,
                    failure: failure(&error),
                },
            },
            Command::Review {
                request_id,
                decision,
                comment,
            } => match backend.review(&request_id, decision, comment).await {
                Ok(request) => Action::RequestChanged(Box::new(request)),
                Err(error) => Action::DecisionFailed {
                    request_id,
                    operation: Operation::Reviewing,
                    failure: failure(&error),
                },
            },
            Command::Claim(id) => match backend.claim(&id, false).await {
                Ok(request) => Action::RequestChanged(Box::new(request)),
                Err(error) => failed(Operation::Claiming, error),
            },
            Command::Acknowledge {
                request_id,
                comment,
            } => match backend.acknowledge(&request_id, comment).await {
                Ok(request) => Action::RequestChanged(Box::new(request)),
                Err(error) => Action::DecisionFailed {
                    request_id,
                    operation: Operation::Acknowledging,
                    failure: failure(&error),
                },
            },
            Command::Credential { grant_id, copy } => match backend.credential(&grant_id).await {
                Ok(credential) => Action::CredentialLoaded {
                    credential: Box::new(credential),
                    copy,
                },
                Err(error) => failed(Operation::FetchingCredential, error),
            },
            Command::Certify { grant_id, copy } => match certify(backend, &grant_id).await {
                Ok(credential) => Action::CredentialLoaded {
                    credential: Box::new(credential),
                    copy,
                },
                Err(failure) => Action::Failed {
                    operation: Operation::FetchingCredential,
                    failure,
                },
            },
            Command::SignInAgain { then } => match self.sign_in_again.clone() {
                None => Action::SignInAgainFailed("this hoist cannot sign in by itself".into()),
                Some(sign_in) => match sign_in().await {
                    // Everything from now on, the retry first, carries the
                    // fresh sign-in.
                    Ok(token) => {
                        self.backend.set_token(&token);
                        self.run(*then);
                        return;
                    }
                    Err(reason) => Action::SignInAgainFailed(reason),
                },
            },
            Command::OpenUrl(url) => {
                let opened = tokio::task::spawn_blocking(move || open::that_detached(&url)).await;
                match opened {
                    Ok(Ok(())) => return,
                    Ok(Err(err)) => local(Operation::OpeningBrowser, err.to_string()),
                    Err(err) => local(Operation::OpeningBrowser, err.to_string()),
                }
            }
            Command::SaveFavourites(favourites) => {
                let Some(save) = self.save_favourites.clone() else {
                    return;
                };
                match tokio::task::spawn_blocking(move || save(favourites)).await {
                    Ok(Ok(())) => return,
                    Ok(Err(err)) => local(Operation::SavingFavourites, err),
                    Err(err) => local(Operation::SavingFavourites, err.to_string()),
                }
            }
            Command::Batch(commands) => {
                for command in commands {
                    self.run(command);
                }
                return;
            }
            // The terminal loop's, as are the effects.
            Command::Notify(_) | Command::Copy(_) | Command::SwitchProfile(_) => return,
        };
        self.send(action);
    }

    /// A revocation is kept and retried (revoking is idempotent at the
    /// broker) until the broker confirms it; meanwhile the screen shows it as
    /// pending, never as done. A session that ended (401) is retried too:
    /// the TUI keeps its work through a renewal or a sign-in elsewhere, and
    /// each try takes the backend's token as it is then.
    async fn revoke_until_confirmed(&self, grant_id: &str, reason: Option<String>) -> Action {
        let mut delay = Duration::from_millis(500);
        let mut announced = false;
        loop {
            match self.backend.revoke(grant_id, reason.clone()).await {
                Ok(grant) => return Action::GrantChanged(Box::new(grant)),
                Err(error)
                    if error.is_transient()
                        || matches!(error, crate::backend::BackendError::Unauthenticated(_)) =>
                {
                    if !announced {
                        self.send(Action::RevokePending(grant_id.to_string()));
                        announced = true;
                    }
                    if self.actions.is_closed() {
                        return Action::Quit;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(error) => {
                    return Action::RevokeRefused {
                        grant_id: grant_id.to_string(),
                        failure: failure(&error),
                    };
                }
            }
        }
    }

    /// Follows the broker's event stream for as long as the app runs:
    /// reconnects with backoff, and says when it is up or down.
    pub async fn follow_events(self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.backend.events().await {
                Ok(stream) => {
                    self.send(Action::StreamUp);
                    backoff = Duration::from_millis(500);
                    let mut stream = stream;
                    let reason = loop {
                        match stream.next().await {
                            Some(Ok(event)) => self.send(Action::Live(Box::new(event))),
                            Some(Err(error)) => break failure(&error).describe_for(&self.hoist),
                            None => break "the broker closed the event stream".to_string(),
                        }
                    };
                    self.send(Action::StreamDown(reason));
                }
                Err(error) => self.send(Action::StreamDown(
                    failure(&error).describe_for(&self.hoist),
                )),
            }
            if self.actions.is_closed() {
                return;
            }
            let jitter = Duration::from_millis(u64::from(rand_jitter()));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A certificate for the person's SSH key (the agent's first, or
/// `~/.ssh/id_ed25519.pub`) for an ssh grant, checked to be for that key.
async fn certify(backend: &dyn Backend, grant_id: &str) -> Result<hoist_api::Credential, Failure> {
    let key = crate::sshkey::find(None).await.map_err(|err| {
        let advice = match err {
            crate::sshkey::KeyError::NoKey { .. } => "; `hoist ssh` makes one",
            _ => "",
        };
        Failure::new(FailureKind::Other, format!("{err}{advice}"))
    })?;
    let credential = backend
        .certify(grant_id, &key.line)
        .await
        .map_err(|err| failure(&err))?;
    let certificate = credential
        .access
        .as_ref()
        .and_then(|access| access.certificate.as_ref())
        .ok_or_else(|| Failure::new(FailureKind::BrokerError, "no certificate came back"))?;
    crate::sshkey::check_certificate(&certificate.certificate, &key)
        .map_err(|err| Failure::new(FailureKind::BrokerError, err.to_string()))?;
    Ok(credential)
}

/// The core's view of a broker error: what kind of failure it is, and its words.
pub fn failure(error: &BackendError) -> Failure {
    use hoist_api::ErrorCode;
    let kind = match error {
        BackendError::Unreachable { reason, .. } => {
            return Failure::new(FailureKind::Unreachable, reason.clone());
        }
        BackendError::Unauthenticated(reason) => {
            return Failure::new(FailureKind::SessionEnded, reason.clone());
        }
        BackendError::Refused {
            code,
            message,
            status,
        } => {
            let kind = match code {
                ErrorCode::Forbidden
                | ErrorCode::NotEligible
                | ErrorCode::SelfReview
                | ErrorCode::BreakGlassNotAllowed => FailureKind::DeniedByPolicy,
                ErrorCode::InvalidState | ErrorCode::AlreadyReviewed => FailureKind::NotPossibleNow,
                ErrorCode::NotFound => FailureKind::NotFound,
                ErrorCode::Internal | ErrorCode::Unavailable => FailureKind::BrokerError,
                ErrorCode::RateLimited => FailureKind::TooMany,
                ErrorCode::StepUpRequired => FailureKind::StepUpRequired,
                ErrorCode::IdempotencyKeyReused => FailureKind::AlreadyFiled,
                // A code from a newer broker: its status says what kind.
                ErrorCode::Other => match status {
                    403 => FailureKind::DeniedByPolicy,
                    404 => FailureKind::NotFound,
                    409 => FailureKind::NotPossibleNow,
                    429 => FailureKind::TooMany,
                    500.. => FailureKind::BrokerError,
                    _ => FailureKind::Refused,
                },
                _ => FailureKind::Refused,
            };
            return Failure::new(kind, message.clone());
        }
        _ => FailureKind::Other,
    };
    Failure::new(kind, error.to_string())
}

/// Up to 250 ms, so many clients do not reconnect in lockstep.
fn rand_jitter() -> u16 {
    (uuid::Uuid::new_v4().as_u128() % 250) as u16
}

#[cfg(test)]
mod tests {
    use hoist_api::ErrorCode;

    use super::*;

    /// A refusal with a code from a newer broker is told by its status.
    #[test]
    fn a_code_this_build_does_not_know_is_told_by_its_status() {
        let kind = |status| {
            failure(&BackendError::Refused {
                status,
                code: ErrorCode::Other,
                message: "grant gr_1 is paused".into(),
            })
            .kind
        };
        assert_eq!(kind(403), FailureKind::DeniedByPolicy);
        assert_eq!(kind(409), FailureKind::NotPossibleNow);
        assert_eq!(kind(503), FailureKind::BrokerError);
        assert_eq!(kind(422), FailureKind::Refused);
    }

    /// A form sent again after an edit, its first sending filed though its
    /// answer was lost, is told so, not that a key was reused.
    #[test]
    fn a_key_reused_after_an_edit_is_a_filing_made_already() {
        let failure = failure(&BackendError::Refused {
            status: 422,
            code: ErrorCode::IdempotencyKeyReused,
            message: "this Idempotency-Key was already used with a different request body".into(),
        });
        assert_eq!(failure.kind, FailureKind::AlreadyFiled);
        assert!(failure.describe().contains("filed before it was edited"));
    }
}
