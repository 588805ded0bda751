//! `hoist exec ROLE --workload-token-file PATH -- CMD`: a job's task with
//! access, under the job's own identity rather than a person's. Exchanges
//! the workload identity token at the broker's `POST /v1/token` (waiting
//! while a person approves), runs CMD with the task's credential and the
//! access at the role's target in its environment, revokes the grant with
//! the task's own credential when CMD ends, and exits with CMD's status.
//! A job that gives up waiting (its timeout, a signal) withdraws its task,
//! so no request, nor grant whose credential nobody got, is left standing
//! for a job that is gone; a signal during the call that hands a credential
//! over lets it arrive, and the grant is revoked like any other.
//! No keyring and no person's session are involved; neither the token nor
//! the credential is ever put in argv or a file.

use std::time::Duration;

use hoist_api::{
    ErrorCode, JWT_TOKEN_TYPE, OAuthError, TOKEN_EXCHANGE_GRANT, TaskWithdrawn,
    TokenExchangeResponse, TokenPending, WorkloadErrorCode,
};
use nix::sys::signal::Signal;
use reqwest::StatusCode;

use super::exec::{ExecArgs, run_command, task_env};
use super::revoking::{self, Failed, Revoked};
use super::signals::{Signals, status_of};
use super::{Ended, duration};
use crate::backend::BackendError;

/// The workload token itself, when no file names it.
pub const ENV_WORKLOAD_TOKEN: &str = "HOIST_WORKLOAD_TOKEN";
/// GitHub Actions-style OIDC token request: a URL and a bearer token that
/// mint an ID token for an audience.
pub const ENV_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const ENV_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// Longest a poll may wait between answers, whatever the broker says.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Attempts at a withdrawal the broker answers busy (429, 503) or not at
/// all, and the longest wait between two.
const WITHDRAW_TRIES: u32 = 3;
const WITHDRAW_WAIT: Duration = Duration::from_secs(5);
/// The longest one revoke call at the end may take.
const REVOKE_CALL: Duration = Duration::from_secs(15);
/// How long a signal lets the exchange call under way be answered.
const HEAR_OUT: Duration = Duration::from_secs(5);

/// Whether exec runs as a workload: a token file, the token in the
/// environment, or an audience to ask the CI system's token service for.
pub fn wanted(args: &ExecArgs) -> bool {
    args.workload_token_file.is_some()
        || args.workload_audience.is_some()
        || std::env::var_os(ENV_WORKLOAD_TOKEN).is_some_and(|v| !v.is_empty())
}

/// A refusal by `status`: a gateway's or an unavailable server's (502,
/// 503, 504) is one to try again later (exit 6), as a 429 is.
fn refused(status: StatusCode, message: String) -> anyhow::Error {
    let code = match status {
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            ErrorCode::Unavailable
        }
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        _ => ErrorCode::Forbidden,
    };
    BackendError::Refused {
        status: status.as_u16(),
        code,
        message,
    }
    .into()
}

/// Largest answer read from the CI system's token service (a JWT in
/// JSON), and largest workload token file.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

fn unreachable(url: &str, err: reqwest::Error) -> anyhow::Error {
    let reason = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "connection refused or failed".to_string()
    } else {
        err.without_url().to_string()
    };
    BackendError::Unreachable {
        url: url.to_string(),
        reason,
    }
    .into()
}

/// The workload's identity token: from the file, `HOIST_WORKLOAD_TOKEN`, or
/// the CI system's token service for `--workload-audience`.
async fn identity_token(args: &ExecArgs) -> anyhow::Result<String> {
    let token = if let Some(path) = &args.workload_token_file {
        // Not on the runtime's thread: a pipe or /dev/stdin may keep it
        // waiting, and a signal must still end the wait.
        let cannot = |err: &dyn std::fmt::Display| {
            Ended::Usage(format!(
                "cannot read the workload token from {}: {err}",
                path.display()
            ))
        };
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| cannot(&err))?;
        // One byte more than allowed tells "too long" from "exactly the
        // limit": a wrong path (a log, a disk image) is not read whole.
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(
            &mut tokio::io::AsyncReadExt::take(file, MAX_TOKEN_ANSWER as u64 + 1),
            &mut bytes,
        )
        .await
        .map_err(|err| cannot(&err))?;
        if bytes.len() > MAX_TOKEN_ANSWER {
            return Err(cannot(&format!(
                "longer than {} KiB; is that really a token?",
                MAX_TOKEN_ANSWER >> 10
            ))
            .into());
        }
        String::from_utf8(bytes).map_err(|_| cannot(&"not text"))?
    } else if let Some(audience) = &args.workload_audience {
        let (Ok(url), Ok(bearer)) = (
            std::env::var(ENV_TOKEN_REQUEST_URL),
            std::env::var(ENV_TOKEN_REQUEST_TOKEN),
        ) else {
            return Err(Ended::Usage(format!(
                "--workload-audience asks the CI system for a token, but \
                 {ENV_TOKEN_REQUEST_URL} and {ENV_TOKEN_REQUEST_TOKEN} are not both set \
                 (the job needs permission to request an ID token)"
            ))
            .into());
        };
        // https (or http to loopback) and no credentials, as every
        // endpoint; its query (GitHub's `api-version`) is kept.
        crate::endpoint::check(&url)
            .map_err(|err| Ended::Usage(format!("{ENV_TOKEN_REQUEST_URL}: {err}")))?;
        let mut url = url::Url::parse(url.trim())
            .map_err(|err| Ended::Usage(format!("{ENV_TOKEN_REQUEST_URL} is not a URL: {err}")))?;
        url.query_pairs_mut().append_pair("audience", audience);
        let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
        let http = crate::endpoint::client_for(&url)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|err| anyhow::anyhow!("cannot start an HTTP client: {err}"))?;
        let answer = http
            .get(url)
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|err| unreachable(&shown, err))?;
        let status = answer.status();
        let body: serde_json::Value =
            match crate::endpoint::body_within(answer, MAX_TOKEN_ANSWER).await {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                Err(crate::endpoint::BodyError::Read(err)) => return Err(unreachable(&shown, err)),
                Err(crate::endpoint::BodyError::TooLarge) => serde_json::Value::Null,
            };
        match body.get("value").and_then(|v| v.as_str()) {
            Some(value) if status.is_success() => value.to_string(),
            _ => {
                return Err(refused(
                    status,
                    format!("the CI system's token service answered {status} without a token"),
                ));
            }
        }
    } else {
        std::env::var(ENV_WORKLOAD_TOKEN).unwrap_or_default()
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(Ended::Usage("the workload token is empty".into()).into());
    }
    Ok(token)
}

/// What one exchange answered.
enum Answer {
    Issued(Box<TokenExchangeResponse>),
    Pending(TokenPending, Duration),
}

/// The exchange's form; a withdrawal presents the same one.
fn exchange_form<'a>(
    token: &'a str,
    args: &'a ExecArgs,
    ttl: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("subject_token", token),
        ("subject_token_type", JWT_TOKEN_TYPE),
        ("scope", args.role.as_str()),
    ];
    if let Some(ttl) = ttl {
        form.push(("requested_ttl", ttl));
    }
    form
}

async fn exchange_once(
    http: &reqwest::Client,
    broker: &str,
    token: &str,
    args: &ExecArgs,
    ttl: Option<&str>,
    sent: &std::cell::Cell<bool>,
) -> anyhow::Result<Answer> {
    let url = format!("{broker}/v1/token");
    let answer = http
        .post(&url)
        .form(&exchange_form(token, args, ttl))
        .send()
        .await
        .map_err(|err| {
            // No connection made: nothing of the ask reached the broker.
            sent.set(!err.is_connect());
            unreachable(broker, err)
        })?;
    sent.set(true);
    let status = answer.status();
    let retry_after = retry_after(&answer);
    let bytes = match crate::endpoint::body(answer).await {
        Ok(bytes) => bytes,
        Err(crate::endpoint::BodyError::Read(err)) => return Err(unreachable(broker, err)),
        Err(err @ crate::endpoint::BodyError::TooLarge) => {
            return Err(
                BackendError::Protocol(format!("POST /v1/token answered {status}: {err}")).into(),
            );
        }
    };
    let protocol = |err: serde_json::Error| -> anyhow::Error {
        // Not hoistd's JSON from a server error: a proxy or load balancer
        // in front of it (an HTML 502 page, say), to try again later.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return refused(
                status,
                format!(
                    "POST /v1/token answered {status} without hoistd's JSON (a proxy in front of it?)"
                ),
            );
        }
        BackendError::Protocol(format!("POST /v1/token answered {status}: {err}")).into()
    };
    match status {
        StatusCode::OK => Ok(Answer::Issued(Box::new(
            serde_json::from_slice(&bytes).map_err(protocol)?,
        ))),
        StatusCode::ACCEPTED => {
            let pending: TokenPending = serde_json::from_slice(&bytes).map_err(protocol)?;
            let wait = retry_after
                .unwrap_or(Duration::from_secs(pending.interval))
                .clamp(Duration::from_millis(200), MAX_POLL_INTERVAL);
            Ok(Answer::Pending(pending, wait))
        }
        _ => {
            let error: OAuthError = serde_json::from_slice(&bytes).map_err(protocol)?;
            // A code from a newer broker: its OAuth `error` says as much.
            let code = match error.code {
                WorkloadErrorCode::Other => error.error.clone(),
                code => code.to_string(),
            };
            let message = format!("{code}: {}", error.error_description);
            Err(match error.code {
                WorkloadErrorCode::Denied => Ended::Denied(message).into(),
                _ => refused(status, message),
            })
        }
    }
}

/// The answer's `Retry-After`, in seconds.
fn retry_after(answer: &reqwest::Response) -> Option<Duration> {
    answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The `requested_ttl` the job asks for, in seconds.
fn requested_ttl(args: &ExecArgs) -> anyhow::Result<Option<String>> {
    let ttl = args.asking.duration.as_deref().map(duration).transpose()?;
    Ok(ttl.map(|secs| secs.to_string()))
}

/// How the exchange ended, short of an error.
enum Exchanged {
    /// A credential, and a signal that arrived while the call that brought
    /// it was under way, if one did.
    Issued(Box<TokenExchangeResponse>, Option<Signal>),
    /// A signal while waiting: the task was withdrawn, as the text says.
    Stopped(Signal, String),
}

/// Exchanges the workload token until the credential is handed over,
/// saying once why it waits. Once it waits, a broker briefly away is asked
/// again; at the timeout, a signal, or anything else that ends the wait,
/// the task is withdrawn.
///
/// A signal while the broker waits to be asked again withdraws the task. One
/// that arrives while a call is under way lets its answer come first (for up
/// to [`HEAR_OUT`]): the broker may be handing over a credential, and a
/// grant whose credential was handed over is the job's to revoke, which
/// withdrawing it would not do.
async fn exchange(
    http: &reqwest::Client,
    broker: &str,
    token: &str,
    args: &ExecArgs,
    signals: &mut Signals,
) -> anyhow::Result<Exchanged> {
    let asked = requested_ttl(args)?;
    let deadline = args
        .asking
        .timeout()?
        .map(|wait| tokio::time::Instant::now() + wait);
    let mut said = None;
    let mut away = Duration::from_millis(500);
    let first_asked = tokio::time::Instant::now();
    // Whether an ask went unanswered: the task may be filed though nothing
    // said so, and is withdrawn however the asking ends.
    let mut unanswered = false;
    let ttl = asked.as_deref();
    let give_up = |why: String| async move {
        let withdrawn = withdraw(http, broker, token, args, ttl).await;
        Err::<Exchanged, _>(Ended::TimedOut(format!("{why}; {withdrawn}")).into())
    };
    let stopped = |signal: Signal| async move {
        let withdrawn = withdraw(http, broker, token, args, ttl).await;
        Ok(Exchanged::Stopped(signal, withdrawn))
    };
    loop {
        let sent = std::cell::Cell::new(false);
        let heard = {
            let call = exchange_once(http, broker, token, args, ttl, &sent);
            tokio::pin!(call);
            tokio::select! {
                answer = &mut call => Ok((answer, None)),
                signal = signals.next() => match tokio::time::timeout(HEAR_OUT, &mut call).await {
                    Ok(answer) => Ok((answer, Some(signal))),
                    Err(_) => Err(signal),
                },
            }
            // A call not answered ends here, closing its connection, before
            // the withdrawal: the broker then knows nobody reads the answer.
        };
        let (answer, signalled) = match heard {
            Ok(heard) => heard,
            Err(signal) => return stopped(signal).await,
        };
        let answer = match (answer, signalled) {
            (Ok(Answer::Issued(issued)), signalled) => {
                return Ok(Exchanged::Issued(issued, signalled));
            }
            (_, Some(signal)) => return stopped(signal).await,
            (answer, None) => answer,
        };
        let answer = match answer {
            Ok(answer) => answer,
            // The broker briefly away: ask again, the same token polling the
            // same task. Before any answer the task may have been filed all
            // the same (the answer lost on its way): asked again as long as
            // exec asks again a filing whose answer was lost, then withdrawn.
            // Not when no ask ever reached it (no connection made): nothing
            // can have been filed.
            Err(err)
                if err
                    .downcast_ref::<BackendError>()
                    .is_some_and(BackendError::is_transient) =>
            {
                let now = tokio::time::Instant::now();
                let past_deadline = deadline.is_some_and(|at| now + away > at);
                unanswered |= sent.get();
                if said.is_none()
                    && (past_deadline || now + away > first_asked + super::exec::FILING_PATIENCE)
                {
                    // Never answered: the broker away is the error (exit 6).
                    if !unanswered {
                        return Err(err.context("nothing was filed"));
                    }
                    let withdrawn = withdraw(http, broker, token, args, ttl).await;
                    return Err(err.context(format!("the task may have been filed; {withdrawn}")));
                }
                if past_deadline {
                    return give_up(format!("gave up waiting: {err}")).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(away) => {}
                    signal = signals.next() => return stopped(signal).await,
                }
                away = (away * 2).min(MAX_POLL_INTERVAL);
                continue;
            }
            Err(err) if said.is_some() || unanswered => {
                let withdrawn = withdraw(http, broker, token, args, ttl).await;
                let filed = if said.is_some() {
                    "the task was filed"
                } else {
                    "the task may have been filed"
                };
                return Err(err.context(format!("{filed}; {withdrawn}")));
            }
            // Refused at the first ask, every ask answered: nothing was filed.
            Err(err) => return Err(err),
        };
        away = Duration::from_millis(500);
        match answer {
            Answer::Issued(issued) => return Ok(Exchanged::Issued(issued, None)),
            Answer::Pending(pending, wait) => {
                if said.as_ref() != Some(&pending.status) {
                    super::say(&match pending.status.as_str() {
                        "approval" => format!(
                            "{} waits for a person's approval; waiting",
                            pending.request_id
                        ),
                        _ => format!(
                            "{}: the access at the role's target is being set up; waiting",
                            pending.request_id
                        ),
                    });
                    said = Some(pending.status.clone());
                }
                let now = tokio::time::Instant::now();
                if deadline.is_some_and(|at| now >= at) {
                    return give_up(format!("gave up waiting for {}", pending.request_id)).await;
                }
                let wait = deadline.map_or(wait, |at| wait.min(at - now));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    signal = signals.next() => return stopped(signal).await,
                }
            }
        }
    }
}

/// Withdraws the task at the broker (its pending request cancelled, or a
/// grant already made ended unless its credential was handed over) and
/// says what became of it.
async fn withdraw(
    http: &reqwest::Client,
    broker: &str,
    token: &str,
    args: &ExecArgs,
    ttl: Option<&str>,
) -> String {
    let url = format!("{broker}/v1/token/withdraw");
    let mut tries = 1;
    let answer = loop {
        let answer = http
            .post(&url)
            .form(&exchange_form(token, args, ttl))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        // Busy or briefly away: a request left pending could still be
        // approved for nobody, so it is worth a few seconds more.
        let wait = match &answer {
            Err(_) => Some(Duration::from_secs(1)),
            Ok(answer)
                if matches!(
                    answer.status(),
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) =>
            {
                Some(retry_after(answer).unwrap_or(Duration::from_secs(1)))
            }
            Ok(_) => None,
        };
        match wait {
            Some(wait) if tries < WITHDRAW_TRIES => {
                tries += 1;
                tokio::time::sleep(wait.min(WITHDRAW_WAIT)).await;
            }
            _ => break answer,
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(_) => {
            return "could not reach the broker to withdraw it; a pending request lapses by itself"
                .into();
        }
    };
    if answer.status().is_success() {
        return match small_json::<TaskWithdrawn>(answer).await {
            Ok(TaskWithdrawn {
                grant_id: Some(grant),
                grant_state: Some(state),
                ..
            }) => format!("withdrew it; its grant {grant} is {state}"),
            Ok(withdrawn) => format!("withdrew it ({})", withdrawn.request_state),
            Err(_) => "withdrew it".into(),
        };
    }
    let status = answer.status();
    match small_json::<OAuthError>(answer).await {
        Ok(error) => format!(
            "could not withdraw it ({}: {}); a pending request lapses by itself",
            error.code, error.error_description
        ),
        Err(_) => format!("could not withdraw it ({status}); a pending request lapses by itself"),
    }
}

/// A short JSON answer, read up to [`MAX_TOKEN_ANSWER`]: `Err` when it is
/// longer, unreadable or not that JSON.
async fn small_json<T: serde::de::DeserializeOwned>(answer: reqwest::Response) -> Result<T, ()> {
    let bytes = crate::endpoint::body_within(answer, MAX_TOKEN_ANSWER)
        .await
        .map_err(|_| ())?;
    serde_json::from_slice(&bytes).map_err(|_| ())
}

/// How far this machine's clock may be behind the broker's for a refused
/// revoke to be taken as the grant having ended at its expiry.
const EXPIRY_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Ends the task's grant with its own credential, waiting for a broker
/// briefly away ([`revoking::keep_trying`]); says so loudly if it could not.
async fn revoke(
    http: &reqwest::Client,
    broker: &str,
    issued: &TokenExchangeResponse,
    signals: &mut Signals,
) -> Revoked {
    let url = format!("{broker}/v1/token/revoke");
    let left = format!("it ends at its expiry ({})", issued.expires_at.to_rfc3339());
    revoking::keep_trying(&issued.grant_id, &left, Some(signals), || async {
        let answer = http
            .post(&url)
            .bearer_auth(&issued.access_token)
            .timeout(REVOKE_CALL)
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => Ok(()),
            // The credential lasts as long as the grant: past its end, the
            // broker no longer takes it, and there is nothing left to end.
            Ok(answer)
                if answer.status() == StatusCode::UNAUTHORIZED
                    && chrono::Utc::now() + EXPIRY_SKEW >= issued.expires_at =>
            {
                super::say(&format!(
                    "grant {} had already ended at its expiry ({})",
                    crate::text::sanitize::line(&issued.grant_id),
                    issued.expires_at.to_rfc3339()
                ));
                Ok(())
            }
            Ok(answer)
                if answer.status().is_server_error()
                    || answer.status() == StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(Failed::Transient(format!(
                    "the broker answered {}",
                    answer.status()
                )))
            }
            Ok(answer) => Err(Failed::Lasting(format!(
                "the broker answered {}",
                answer.status()
            ))),
            Err(_) => Err(Failed::Transient("the broker did not answer".into())),
        }
    })
    .await
}

/// exec as a workload against `broker` (a URL hoist may talk to).
pub async fn exec(broker: &str, args: &ExecArgs) -> anyhow::Result<u8> {
    if args.command.is_empty() {
        return Err(Ended::Usage("no command after `--`".into()).into());
    }
    let http = crate::endpoint::client_for_text(broker)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start an HTTP client: {err}"))?;
    let mut signals = Signals::listen()?;
    let token = tokio::select! {
        token = identity_token(args) => token?,
        // Nothing asked of the broker yet: nothing to undo.
        signal = signals.next() => {
            super::say(&format!("{} arrived; nothing was asked for or run", signal.as_str()));
            return Ok(status_of(signal));
        }
    };
    let (issued, signalled) = match exchange(&http, broker, &token, args, &mut signals).await? {
        Exchanged::Issued(issued, signalled) => (issued, signalled),
        Exchanged::Stopped(signal, withdrawn) => {
            super::say(&format!(
                "{} while waiting; nothing was run; {withdrawn}",
                signal.as_str()
            ));
            return Ok(status_of(signal));
        }
    };
    drop(token);
    // A task's credential ends with its grant.
    let env = task_env(
        &issued.access_token,
        issued.expires_at,
        (&issued.scope, &issued.grant_id, issued.expires_at),
        issued.access.as_ref(),
    );
    let outcome = match signalled.or_else(|| signals.pending()) {
        Some(signal) => {
            super::say(&format!(
                "{} arrived before the command started; it was not run",
                signal.as_str()
            ));
            Ok(status_of(signal))
        }
        None => {
            // What could mint another identity token stays with hoist.
            let withheld = [ENV_TOKEN_REQUEST_URL, ENV_TOKEN_REQUEST_TOKEN];
            run_command(&args.command, &env, &withheld, &mut signals).await
        }
    };
    let revoked = revoke(&http, broker, &issued, &mut signals).await;
    outcome.map(|status| revoked.status(status))
}
