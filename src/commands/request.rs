//! `hoist request` (and `--wait`), `cancel`, `approve`, `deny` and
//! `revoke`: changing things, from a script.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use hoist_api::{AccessRequest, CreateRequest, Decision, Grant, LiveEvent, RequestState};
use tokio::time::Instant;

use super::{Ended, Format, colour_stderr, duration, print};
use crate::backend::{Backend, BackendError};
use crate::text::local_timestamp as local;

#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// The role to ask for.
    #[arg(required_unless_present = "bundle")]
    pub role: Option<String>,
    /// File every role of a bundle from the config (`[bundles.NAME] roles = [...]`) at once.
    #[arg(long, conflicts_with = "role")]
    pub bundle: Option<String>,
    /// Why you need it (the role sets a minimum length).
    #[arg(long)]
    pub reason: String,
    /// Ticket reference, e.g. CHG-1024 (some roles require one).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Incident reference, e.g. INC-4711.
    #[arg(long)]
    pub incident: Option<String>,
    /// How long, e.g. 30m or 2h (default: the role's default).
    #[arg(long)]
    pub duration: Option<String>,
    /// Activate at once without approval (where the role allows it); reviewed afterwards.
    #[arg(long)]
    pub break_glass: bool,
    /// Block until the request is active (and its access at a target live), denied or
    /// lapses, printing each change to stderr.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (the request stays pending).
    #[arg(long, requires = "wait")]
    pub timeout: Option<String>,
}

impl RequestArgs {
    pub fn body(&self, role: &str) -> Result<CreateRequest, Ended> {
        Ok(CreateRequest {
            role: role.to_string(),
            justification: self.reason.clone(),
            ticket: self.ticket.clone(),
            incident: self.incident.clone(),
            duration_secs: self.duration.as_deref().map(duration).transpose()?,
            starts_at: None,
            break_glass: self.break_glass,
        })
    }

    pub fn timeout(&self) -> Result<Option<Duration>, Ended> {
        super::timeout(self.timeout.as_deref())
    }
}

/// What a filing whose outcome is unknown leaves to do.
pub(super) fn maybe_filed() -> String {
    format!(
        "a request may have been filed: `{}` lists yours; `{}` withdraws one still pending, and \
         `{}` names the grant of one approved (`{}` it)",
        super::hoist(&["requests"]),
        super::hoist(&["cancel", "ID"]),
        super::hoist(&["status", "ID"]),
        super::hoist(&["revoke", "GRANT"]),
    )
}

/// Files a request; a retry after a network error reuses the idempotency
/// key, so the broker never files twice. A failure after an answer was
/// lost says that a request may have been filed all the same.
pub async fn file(backend: &dyn Backend, body: &CreateRequest) -> anyhow::Result<AccessRequest> {
    let key = uuid::Uuid::new_v4().to_string();
    file_keyed(backend, body, &key, Duration::ZERO)
        .await
        .map_err(FilingFailed::into_error)
}

/// A filing that failed, and whether an attempt before the last may have
/// filed all the same (its answer lost on the way).
pub struct FilingFailed {
    pub error: BackendError,
    pub maybe_filed: bool,
}

impl FilingFailed {
    /// The error to report: the broker's, and when a request may have been
    /// filed all the same, how to find it (a break-glass grant may be
    /// active).
    pub fn into_error(self) -> anyhow::Error {
        if !self.maybe_filed {
            return self.error.into();
        }
        let said = if self.error.is_transient() {
            "the broker did not answer the filing"
        } else {
            "an earlier answer to the filing was lost"
        };
        anyhow::Error::from(self.error).context(format!("{said}; {}", maybe_filed()))
    }
}

/// Files a request under idempotency `key`, trying again while the broker
/// is away or its answer is lost: three times at least, and for up to
/// `patience`; the same key each time, so a filing that landed is answered
/// again, never made twice.
pub async fn file_keyed(
    backend: &dyn Backend,
    body: &CreateRequest,
    key: &str,
    patience: Duration,
) -> Result<AccessRequest, FilingFailed> {
    let until = tokio::time::Instant::now() + patience;
    let mut attempt: u64 = 0;
    loop {
        match backend.file(body, key).await {
            Ok(filed) => return Ok(filed),
            Err(err)
                if err.is_transient() && (attempt < 3 || tokio::time::Instant::now() < until) =>
            {
                attempt += 1;
                let pause = Duration::from_millis(300 * attempt).min(Duration::from_secs(2));
                tokio::time::sleep(pause).await;
            }
            Err(error) => {
                // The last error may be another than a lost answer (a
                // step-up grown too old while retrying): an earlier lost
                // answer is still a filing that may have been made.
                let maybe_filed = error.is_transient() || attempt > 0;
                return Err(FilingFailed { error, maybe_filed });
            }
        }
    }
}

/// Files one request, or every role of a bundle in parallel (one
/// justification, one incident); with `--wait`, waits for all of them.
pub async fn request(
    backend: &dyn Backend,
    args: &RequestArgs,
    bundle: Option<Vec<String>>,
    format: Format,
) -> anyhow::Result<()> {
    let roles = match (&bundle, &args.role) {
        (Some(roles), _) => roles.clone(),
        (None, Some(role)) => vec![role.clone()],
        (None, None) => return Err(Ended::Usage("name a role or a --bundle".into()).into()),
    };
    let bodies = roles
        .iter()
        .map(|role| args.body(role))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = args.timeout()?;
    let filed = futures::future::join_all(bodies.iter().map(|body| file(backend, body))).await;
    let mut requests = Vec::new();
    let mut failures = Vec::new();
    for (role, outcome) in roles.iter().zip(filed) {
        match outcome {
            Ok(request) => requests.push(request),
            // In a bundle one refusal must not hide the others' outcome.
            Err(err) if bundle.is_some() => {
                super::say(&format!("{role}: {err:#}"));
                failures.push(err);
            }
            Err(err) => return Err(err),
        }
    }
    if args.wait {
        // A signal ends the wait, not the requests: they stay pending, as
        // with --timeout, and the person is told how to withdraw them.
        let mut signals = super::signals::Signals::listen()?;
        let ids: Vec<String> = requests
            .iter()
            .filter(|r| !settled(r.state))
            .map(|r| r.id.clone())
            .collect();
        let deadline = timeout.map(|t| Instant::now() + t);
        let as_filed = requests.clone();
        // Each request as last known, with why its wait failed if it did:
        // printed either way, so a script still has its id.
        let waits = requests.into_iter().map(|r| async move {
            let request = match wait_for_final(backend, r.clone(), timeout).await {
                Ok(request) => request,
                Err(err) => return (r, Some(err)),
            };
            let live = until_live(backend, &request, deadline).await.err();
            (request, live)
        });
        requests = Vec::new();
        let outcomes = tokio::select! {
            outcomes = futures::future::join_all(waits) => outcomes,
            signal = signals.next() => {
                // Printed as filed, as at a timeout: a script still has the ids.
                match (bundle.is_some(), as_filed.as_slice()) {
                    (false, [one]) => print(format, one, || summary(std::slice::from_ref(one)))?,
                    _ => print(format, &as_filed, || summary(&as_filed))?,
                }
                let cancel: Vec<String> = ids
                    .iter()
                    .map(|id| format!("`{}`", super::hoist(&["cancel", id])))
                    .collect();
                return Err(Ended::Signalled {
                    signal,
                    message: format!(
                        "{} stopped the wait; {} still pending unless decided since (cancel with {})",
                        signal.as_str(),
                        ids.join(", "),
                        cancel.join(", ")
                    ),
                }
                .into());
            }
        };
        for (request, failed) in outcomes {
            requests.push(request);
            failures.extend(failed);
        }
    }
    super::remember_grants(backend).await;
    let verdicts: Vec<anyhow::Result<()>> = requests.iter().map(verdict).collect();
    match (bundle.is_some(), requests.as_slice()) {
        (false, [one]) => print(format, one, || summary(std::slice::from_ref(one)))?,
        _ => print(format, &requests, || summary(&requests))?,
    }
    failures
        .into_iter()
        .map(Err)
        .chain(verdicts)
        .find(Result::is_err)
        .unwrap_or(Ok(()))
}

/// For an active request whose role reaches a target, waits until the
/// access there is live: `--wait` is over when the grant can be used, not
/// when the broker has decided (a psql run next must not be refused).
async fn until_live(
    backend: &dyn Backend,
    request: &AccessRequest,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let Some(grant_id) = request.grant_id.as_deref() else {
        return Ok(());
    };
    if request.state != RequestState::Active {
        return Ok(());
    }
    let Some(grant) = active_grant_patiently(backend, grant_id, deadline).await? else {
        // Active a moment ago, and no longer among the active grants: it
        // was revoked or expired since, and there is no access to use.
        anyhow::bail!("{grant_id} ended before it could be used (revoked or expired)");
    };
    if grant.access.is_none() {
        return Ok(());
    }
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    super::access::wait_live(backend, grant, remaining).await?;
    Ok(())
}

/// The exit status a finished `--wait` deserves.
fn verdict(request: &AccessRequest) -> anyhow::Result<()> {
    let reason = request.reason.clone().unwrap_or_default();
    match request.state {
        RequestState::Denied => {
            let by = request
                .reviews
                .iter()
                .find(|r| r.decision == Decision::Deny)
                .map_or("an approver", |r| r.reviewer.as_str());
            Err(Ended::Denied(format!(
                "{} for {} was denied by {by}: {reason}",
                request.id, request.role
            ))
            .into())
        }
        RequestState::TimedOut => {
            Err(Ended::TimedOut(format!("{} lapsed with no decision", request.id)).into())
        }
        RequestState::Cancelled => anyhow::bail!("{} was cancelled: {reason}", request.id),
        // Granted, then ended before the wait was over: no access now.
        RequestState::Revoked | RequestState::Expired => {
            anyhow::bail!("{} was {}: {reason}", request.id, request.state)
        }
        _ => Ok(()),
    }
}

fn summary(requests: &[AccessRequest]) -> super::table::Table {
    let mut table = super::table::Table::new(&["ID", "ROLE", "STATE", "GRANT", "NOTE"]);
    for request in requests {
        let note = match request.state {
            RequestState::Pending => request
                .lapses_at
                .map(|at| format!("lapses {}", local(at)))
                .unwrap_or_default(),
            _ => request.reason.clone().unwrap_or_default(),
        };
        table.row(vec![
            request.id.clone(),
            request.role.clone(),
            request.state.to_string(),
            request.grant_id.clone().unwrap_or_default(),
            note,
        ]);
    }
    table
}

/// Whether `--wait` is over: active, or finished one way or another.
fn settled(state: RequestState) -> bool {
    state == RequestState::Active || state.is_final()
}

/// One line on stderr per change, for the person watching.
fn report(request: &AccessRequest) {
    let line = match request.state {
        RequestState::Pending => {
            let approvals = request
                .reviews
                .iter()
                .filter(|r| r.decision == Decision::Approve)
                .count();
            let lapses = request
                .lapses_at
                .map(|at| format!("; lapses {}", local(at)))
                .unwrap_or_default();
            format!(
                "{} pending: {approvals} of {} approvals{lapses}",
                request.id, request.approvals_required
            )
        }
        RequestState::Approved if request.starts_at.is_none() => {
            format!("{} activated, propagating ({})", request.id, request.role)
        }
        RequestState::Approved => format!("{} approved; starts as scheduled", request.id),
        RequestState::Active => format!("{} active ({})", request.id, request.role),
        other => format!("{} {other}", request.id),
    };
    let line = crate::text::sanitize::line(&line).into_owned();
    // Best effort, as `say`: `exec` and `ssh` wait through here, and a
    // terminal gone (EIO) or a pipe closed must not end them with a panic
    // before they withdraw, revoke or use what they asked for.
    use std::io::Write;
    let _ = if colour_stderr() {
        writeln!(std::io::stderr().lock(), "\x1b[2m{line}\x1b[0m")
    } else {
        writeln!(std::io::stderr().lock(), "{line}")
    };
}

/// Follows the broker's event stream until the request settles or the time
/// runs out. Reconnects if the stream drops, re-reading the request each time
/// so no change is missed, and reads it again after [`super::LOOK_AGAIN`] without
/// news of it, should the stream be held up on its way.
pub async fn wait_for_final(
    backend: &dyn Backend,
    request: AccessRequest,
    timeout: Option<Duration>,
) -> anyhow::Result<AccessRequest> {
    let deadline = timeout.map(|t| Instant::now() + t);
    // Reports each copy heard that says something new; true once settled.
    let mut last = (request.state, request.reviews.len());
    let mut heard = |copy: &AccessRequest| {
        if (copy.state, copy.reviews.len()) != last {
            report(copy);
            last = (copy.state, copy.reviews.len());
        }
        settled(copy.state)
    };
    report(&request);
    if settled(request.state) {
        return Ok(request);
    }
    let id = request.id.clone();
    let expired = || {
        Ended::TimedOut(format!(
            "gave up waiting; {id} is still pending (cancel it with `{}`)",
            super::hoist(&["cancel", &id])
        ))
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        // Subscribed first, then read: a change in between is not lost.
        // Both are bounded by the deadline (a broker that never answers
        // must not outlast --timeout), and a broker away for a moment
        // (restarting) is asked again.
        let opened = async {
            let stream = backend.events().await?;
            let current = backend.request(&id).await?;
            Ok::<_, crate::backend::BackendError>((stream, current))
        };
        let opened = match deadline {
            Some(d) => match tokio::time::timeout_at(d, opened).await {
                Ok(opened) => opened,
                Err(_) => return Err(expired().into()),
            },
            None => opened.await,
        };
        let (stream, current) = match opened {
            Ok(opened) => opened,
            Err(err) if err.is_transient() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(expired().into());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        if heard(&current) {
            return Ok(current);
        }
        let mut stream = stream;
        let opened_at = Instant::now();
        let mut look_again = Instant::now() + super::LOOK_AGAIN;
        loop {
            let wake = deadline.map_or(look_again, |d| d.min(look_again));
            let next = match tokio::time::timeout_at(wake, stream.next()).await {
                Ok(next) => next,
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(expired().into());
                }
                Err(_) => {
                    // Nothing heard for a while: the stream may be held up
                    // on its way (a proxy that buffers it). The request
                    // itself says whether it was decided meanwhile.
                    look_again = Instant::now() + super::LOOK_AGAIN;
                    let read = backend.request(&id);
                    let read = match deadline {
                        Some(d) => match tokio::time::timeout_at(d, read).await {
                            Ok(read) => read,
                            Err(_) => return Err(expired().into()),
                        },
                        None => read.await,
                    };
                    match read {
                        Ok(current) if heard(&current) => return Ok(current),
                        Ok(_) => {}
                        Err(err) if err.is_transient() => {}
                        Err(err) => return Err(err.into()),
                    }
                    continue;
                }
            };
            // The stream is moving: no need to look for ourselves yet.
            look_again = Instant::now() + super::LOOK_AGAIN;
            match next {
                Some(Ok(LiveEvent::Request { request })) if request.id == id => {
                    if heard(&request) {
                        return Ok(request);
                    }
                }
                Some(Ok(LiveEvent::Resync { .. })) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
        // A stream that lasted: reconnect at once. One that keeps ending at
        // once is opened again more slowly each time.
        if opened_at.elapsed() >= Duration::from_secs(10) {
            backoff = Duration::from_millis(250);
        } else {
            let wake = Instant::now() + backoff;
            tokio::time::sleep_until(deadline.map_or(wake, |d| d.min(wake))).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

pub async fn cancel(
    backend: &dyn Backend,
    id: &str,
    reason: Option<String>,
    format: Format,
) -> anyhow::Result<()> {
    let request = backend.cancel(id, reason).await?;
    print(format, &request, || summary(std::slice::from_ref(&request)))
}

pub async fn approve(
    backend: &dyn Backend,
    id: &str,
    comment: Option<String>,
    format: Format,
) -> anyhow::Result<()> {
    let request = backend.review(id, Decision::Approve, comment).await?;
    print(format, &request, || summary(std::slice::from_ref(&request)))
}

pub async fn deny(
    backend: &dyn Backend,
    id: &str,
    comment: String,
    format: Format,
) -> anyhow::Result<()> {
    let request = backend.review(id, Decision::Deny, Some(comment)).await?;
    print(format, &request, || summary(std::slice::from_ref(&request)))
}

/// A grant id (`gr_…`), or the role of one of my active grants.
pub async fn find_grant(backend: &dyn Backend, target: &str) -> anyhow::Result<Grant> {
    active_grant(backend, target).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no active grant `{target}` (give a grant id, or the role of one active grant: \
             its id or its name)"
        )
    })
}

/// My active grant with this id or of this role (its id, or its exact
/// name as `hoist roles` shows it, when one grant's role is so called):
/// `None` when there is none, an error when the broker could not say.
/// How long a grant just made active is looked for while the broker is
/// away.
const READ_PATIENCE: Duration = Duration::from_secs(60);

/// [`active_grant`], asked again while the broker is briefly away
/// (restarting, failing over), until `deadline` or [`READ_PATIENCE`]: a
/// grant just made is not given up on for one failed read.
pub async fn active_grant_patiently(
    backend: &dyn Backend,
    target: &str,
    deadline: Option<Instant>,
) -> Result<Option<Grant>, crate::backend::BackendError> {
    let patience = Instant::now() + READ_PATIENCE;
    let until = deadline.map_or(patience, |at| at.min(patience));
    let mut wait = Duration::from_millis(500);
    let mut read = active_grant(backend, target).await;
    loop {
        match read {
            Err(err) if err.is_transient() && Instant::now() + wait < until => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                // Asked again only until the wait ends: the last failure
                // is the answer then.
                read = match tokio::time::timeout_at(until, active_grant(backend, target)).await {
                    Ok(again) => again,
                    Err(_) => return Err(err),
                };
            }
            read => return read,
        }
    }
}

pub async fn active_grant(
    backend: &dyn Backend,
    target: &str,
) -> Result<Option<Grant>, crate::backend::BackendError> {
    let grants = backend.grants(false).await?;
    if let Some(found) = exact(&grants, target) {
        return Ok(Some(found.clone()));
    }
    let wanted = target.trim().to_lowercase();
    let mut named = grants
        .into_iter()
        .filter(|g| g.role_name.to_lowercase() == wanted);
    Ok(match (named.next(), named.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    })
}

/// The active grant `target` names by its id or its role's id, never by a
/// role's display name: what `exec` and `ssh` use in place of filing for
/// the role `target` (a display name is any text the policy gives, and
/// one role's may be another's id).
pub async fn grant_of_role(
    backend: &dyn Backend,
    target: &str,
) -> Result<Option<Grant>, crate::backend::BackendError> {
    Ok(exact(&backend.grants(false).await?, target).cloned())
}

fn exact<'g>(grants: &'g [Grant], target: &str) -> Option<&'g Grant> {
    grants.iter().find(|g| g.id == target || g.role == target)
}

pub async fn revoke(
    backend: &dyn Backend,
    target: &str,
    reason: Option<String>,
    format: Format,
) -> anyhow::Result<()> {
    let grant = find_grant(backend, target).await?;
    let grant = backend.revoke(&grant.id, reason).await?;
    super::remember_grants(backend).await;
    print(format, &grant, || {
        let mut table = super::table::Table::new(&["GRANT", "ROLE", "STATE", "ENDED"]);
        table.row(vec![
            grant.id.clone(),
            grant.role.clone(),
            grant.state.as_str().into(),
            grant.ended_at.map(local).unwrap_or_default(),
        ]);
        table
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that takes the connection and never answers (stopped, or
    /// wedged): --timeout still ends the wait, at its deadline.
    #[tokio::test]
    async fn a_broker_that_never_answers_the_stream_does_not_outlast_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                open.push(socket);
            }
        });
        let backend = crate::backend::hoistd::HoistdClient::new(&url, "t-alice").unwrap();
        let pending = crate::app::fixtures::request("req_1", "db", "alice", chrono::Utc::now());
        let waited = tokio::time::timeout(
            Duration::from_secs(12),
            wait_for_final(&backend, pending, Some(Duration::from_millis(500))),
        )
        .await
        .expect("the wait ends by itself, well before the call timeout");
        let err = waited.unwrap_err();
        assert!(
            matches!(err.downcast_ref::<Ended>(), Some(Ended::TimedOut(_))),
            "{err:#}"
        );
        held.abort();
    }

    /// A broker that answers the re-read with 503 once (restarting) is
    /// asked again: the wait goes on and ends with the request settled.
    #[tokio::test]
    async fn a_failed_re_read_while_waiting_is_tried_again() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let now = chrono::Utc::now();
        let mut active = crate::app::fixtures::request("req_1", "db", "alice", now);
        active.state = RequestState::Active;
        let answered = Arc::clone(&reads);
        let app = axum::Router::new()
            .route(
                "/v1/events",
                axum::routing::get(|| async {
                    ([("content-type", "text/event-stream")], ": open\n\n")
                }),
            )
            .route(
                "/v1/requests/{id}",
                axum::routing::get(move || {
                    let active = active.clone();
                    let answered = Arc::clone(&answered);
                    async move {
                        use axum::response::IntoResponse;
                        if answered.fetch_add(1, Ordering::SeqCst) == 0 {
                            return (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(serde_json::json!({
                                    "code": "unavailable",
                                    "message": "restarting",
                                })),
                            )
                                .into_response();
                        }
                        axum::Json(active).into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move { axum::serve(listener, app).await });
        let backend = crate::backend::hoistd::HoistdClient::new(&url, "t-alice").unwrap();
        let pending = crate::app::fixtures::request("req_1", "db", "alice", now);
        let settled = wait_for_final(&backend, pending, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(settled.state, RequestState::Active);
        assert!(reads.load(Ordering::SeqCst) >= 2);
        served.abort();
    }

    /// A stream that stays open and says nothing (held up by a proxy that
    /// buffers it) does not hold the wait up for ever: the request is read
    /// again, and the decision found there ends the wait.
    #[tokio::test]
    async fn a_stream_held_up_on_its_way_does_not_hide_the_decision() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let now = chrono::Utc::now();
        let pending = crate::app::fixtures::request("req_1", "db", "alice", now);
        let mut active = pending.clone();
        active.state = RequestState::Active;
        let answered = Arc::clone(&reads);
        let app = axum::Router::new()
            .route(
                "/v1/events",
                axum::routing::get(super::super::silent_events),
            )
            .route(
                "/v1/requests/{id}",
                axum::routing::get(move || {
                    let (pending, active) = (pending.clone(), active.clone());
                    let answered = Arc::clone(&answered);
                    async move {
                        // Pending when the wait opens; decided after.
                        let first = answered.fetch_add(1, Ordering::SeqCst) == 0;
                        axum::Json(if first { pending } else { active })
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move { axum::serve(listener, app).await });
        let backend = crate::backend::hoistd::HoistdClient::new(&url, "t-alice").unwrap();
        let filed = crate::app::fixtures::request("req_1", "db", "alice", now);
        let settled = tokio::time::timeout(
            Duration::from_secs(10),
            wait_for_final(&backend, filed, None),
        )
        .await
        .expect("the wait ends without an event")
        .unwrap();
        assert_eq!(settled.state, RequestState::Active);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        served.abort();
    }

    /// A wait that ends with the request revoked or expired gave no access:
    /// it fails, as a denial or a cancellation does.
    #[test]
    fn a_request_revoked_or_expired_by_the_end_of_the_wait_is_a_failure() {
        let now = chrono::Utc::now();
        for state in [RequestState::Revoked, RequestState::Expired] {
            let mut ended = crate::app::fixtures::request("req_1", "db", "alice", now);
            ended.state = state;
            let err = verdict(&ended).unwrap_err();
            assert!(err.to_string().contains(state.as_str()), "{err}");
        }
        let mut active = crate::app::fixtures::request("req_1", "db", "alice", now);
        active.state = RequestState::Active;
        assert!(verdict(&active).is_ok());
    }
}
