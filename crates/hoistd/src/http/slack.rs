//! `POST /v1/slack/actions`, where Slack posts a press of hoist's Approve
//! or Deny button (the app's Interactivity Request URL). Outside the
//! OpenAPI contract, like `/metrics`: it is Slack's interface, signed with
//! Slack's secret and shaped by Slack, not part of hoist's API for its
//! clients; and it exists only while a signing secret is configured.
//!
//! The raw body is verified first (signature and timestamp), then taken
//! once (a replay is refused on any instance), then read; the press is
//! reviewed by the same broker operation as a review through the API, as
//! the policy user the Slack account is mapped to. Slack reads nothing of
//! the HTTP answer but its status, so the answer the presser sees (an
//! ephemeral message) is also posted to the press's `response_url`, which
//! only ever goes to Slack's own origin.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use hoist_api::{AccessRequest, ApiError, ErrorCode, RequestState};
use serde_json::json;

use super::{AppState, Failure, MAX_BODY_BYTES, blocking, body_timed_out, refused, serve};
use crate::broker::{self, FromSlack, SLACK_UNKNOWN, slack_actor};
use crate::error::Error;
use crate::slack::{self, Action, Refusal};

/// The route, with the path Slack's app settings name.
pub const PATH: &str = "/v1/slack/actions";

/// A post that is not from Slack, or not fresh, or taken before.
fn unauthenticated(message: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(ApiError {
            code: ErrorCode::Unauthenticated,
            message,
        }),
    )
        .into_response()
}

pub async fn actions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(settings) = state.slack.clone() else {
        return refused(ErrorCode::NotFound, "no such endpoint");
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if serve::timed_out(&rejection) => return body_timed_out(),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refused(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(rejection) => return refused(ErrorCode::InvalidBody, rejection.body_text()),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp = header(slack::TIMESTAMP_HEADER);
    let signature = header(slack::SIGNATURE_HEADER);
    let broker = &state.broker;

    // The raw body, before anything in it is read.
    let now = broker::now();
    if let Err(refusal) = settings.verify(&timestamp, &body, &signature, now.timestamp()) {
        let code = match refusal {
            Refusal::BadTimestamp => "bad_timestamp",
            Refusal::Stale(_) => "stale",
            Refusal::BadSignature => "bad_signature",
            Refusal::Forged => "forged",
        };
        let message = refusal.to_string();
        broker
            .audit_slack_refusal(SLACK_UNKNOWN.into(), code, message.clone(), json!({}))
            .await;
        return unauthenticated(message);
    }
    let posted_at = timestamp
        .trim()
        .parse()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or(now);
    let taken = blocking(&state, {
        let signature = signature.clone();
        move |b| b.take_slack_post(&signature, posted_at)
    })
    .await;
    match taken {
        Ok(true) => {}
        Ok(false) => {
            let message = "this Slack post was taken before: a replay is refused".to_string();
            broker
                .audit_slack_refusal(SLACK_UNKNOWN.into(), "replayed", message.clone(), json!({}))
                .await;
            return unauthenticated(message);
        }
        Err(failure) => return failure.into_response(),
    }

    let action = match slack::parse_action(&body) {
        Ok(Some(action)) => action,
        // The link button: Slack opened the page itself; nothing to answer.
        Ok(None) => return (StatusCode::OK, Json(json!({}))).into_response(),
        Err(message) => {
            broker
                .audit_slack_refusal(
                    SLACK_UNKNOWN.into(),
                    "malformed",
                    message.clone(),
                    json!({}),
                )
                .await;
            return refused(ErrorCode::InvalidBody, message);
        }
    };
    let reviewed = blocking(&state, {
        let action = action.clone();
        move |b| {
            b.review_from_slack(
                &action.team,
                action.home_team.as_deref(),
                &action.user,
                &action.request_id,
                action.decision,
            )
        }
    })
    .await;
    let text = match reviewed {
        Ok(FromSlack::Reviewed {
            request, approvals, ..
        }) => said(&action, &request, approvals),
        Ok(FromSlack::Unmapped) => {
            // Where the policy would have to name them: their own
            // workspace for a guest's `U…` id, else where they pressed.
            let own = action.account_teams()[0];
            let message = format!(
                "Slack user {} of team {own} is no user of hoist's policy",
                action.user
            );
            let mut account = json!({ "team": action.team, "user": action.user });
            if let Some(home_team) = &action.home_team {
                account["home_team"] = json!(home_team);
            }
            broker
                .audit_slack_refusal(
                    slack_actor(own, &action.user),
                    "unmapped",
                    message,
                    json!({ "slack": account, "request_id": action.request_id }),
                )
                .await;
            format!(
                "hoist did not take this: your Slack account is not linked to a hoist user. \
                 Ask hoist's administrator to add `slack = {{ team = \"{own}\", user = \"{}\" }}` \
                 to your user in the policy.",
                action.user
            )
        }
        Err(Failure(Error::Refused { message, .. } | Error::RateLimited { message, .. })) => {
            format!("hoist refused: {}", slack::escape(&message))
        }
        Err(failure) => return failure.into_response(),
    };
    let answer = slack::answer(&text);
    if let Some(url) = action
        .response_url
        .as_deref()
        .and_then(|url| settings.answer_url(url))
    {
        let answer = answer.clone();
        tokio::spawn(async move { settings.post_answer(url, &answer).await });
    }
    (StatusCode::OK, Json(answer)).into_response()
}

/// What the presser is told their review came to; `approvals` is how many
/// count under the policy in force.
fn said(action: &Action, request: &AccessRequest, approvals: usize) -> String {
    let whose = format!(
        "{}'s request {} for `{}`",
        slack::escape(&request.requester),
        slack::escape(&request.id),
        slack::escape(&request.role)
    );
    match (action.decision, request.state) {
        (hoist_api::Decision::Deny, RequestState::Denied) => format!("You denied {whose}."),
        (_, RequestState::Pending) => format!(
            "You approved {whose}: {approvals} of {} approvals so far.",
            request.approvals_required
        ),
        (_, RequestState::Active) => format!("You approved {whose}: access granted."),
        (_, RequestState::Approved) => {
            format!("You approved {whose}: it starts at its scheduled time.")
        }
        (_, state) => format!(
            "You approved {whose}; it is now {state}{}.",
            request
                .reason
                .as_deref()
                .map(|reason| format!(": {}", slack::escape(reason)))
                .unwrap_or_default()
        ),
    }
}
