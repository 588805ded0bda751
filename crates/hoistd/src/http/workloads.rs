//! Workloads' routes, apart from people's: the token exchange (RFC 8693), a
//! task's withdrawal when its job gives up, and the revocation of a task's
//! grant with its own credential. Errors here are
//! in RFC 6749's form, `{error, error_description, code}`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hoist_api::{
    OAuthError, TaskWithdrawn, TokenExchangeInput, TokenExchangeResponse, TokenPending,
    WorkloadErrorCode, WorkloadRevoked,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::broker::{Exchanged, Refusal};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(exchange))
        .routes(routes!(withdraw))
        .routes(routes!(revoke))
}

fn status_of(code: WorkloadErrorCode) -> StatusCode {
    match code {
        WorkloadErrorCode::InvalidCredential => StatusCode::UNAUTHORIZED,
        WorkloadErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        WorkloadErrorCode::IssuerUnavailable | WorkloadErrorCode::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        WorkloadErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// RFC 6749 section 5.1: token responses are never cached.
fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn refusal(refusal: Refusal) -> Response {
    let status = status_of(refusal.code);
    let mut response = (
        status,
        Json(OAuthError {
            error: refusal.code.oauth_error().into(),
            error_description: refusal.message,
            code: refusal.code,
        }),
    )
        .into_response();
    no_store(&mut response);
    if let Some(after) = refusal.retry_after {
        let secs = after.as_millis().div_ceil(1000).max(1);
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

/// OAuth 2.0 Token Exchange (RFC 8693) for workloads: `subject_token` is the
/// workload's identity token (an OIDC JWT: a CI job's ID token, a Kubernetes
/// service-account token, a SPIFFE JWT-SVID) from an issuer a `[[workloads]]`
/// rule trusts; `resource` (`urn:hoist:role:<id>`) or `scope` names the role;
/// `requested_ttl` is in seconds. Needs no bearer token: the subject token is
/// the proof. 200 hands over the task's credential (a JWT with `act.sub`
/// naming the workload) and, for a role with a target, the access there;
/// 202 means a person must approve or the target is provisioning: present
/// the same token again after `Retry-After` seconds. Each token's task (`jti`,
/// or the rule's `task_claim`) is exchanged once; a replay is refused. Error
/// `code`s: `invalid_request`, `unsupported_grant_type`, `malformed_token`,
/// `unknown_issuer`, `wrong_issuer`, `wrong_audience`, `subject_mismatch`,
/// `claim_mismatch`, `token_expired`, `algorithm_refused`,
/// `invalid_signature`, `replayed`, `role_not_allowed`, `ttl_too_long`,
/// `denied`, `rate_limited`, `issuer_unavailable`.
#[utoipa::path(post, path = "/v1/token", tag = "workloads",
    request_body(content = TokenExchangeInput, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The task's credential", body = TokenExchangeResponse),
        (status = 202, description = "Waiting for an approver or the target; poll with the same token",
            body = TokenPending, headers(("Retry-After" = u64, description = "Seconds until the next poll"))),
        (status = 400, description = "Refused; `code` names why", body = OAuthError),
        (status = 429, description = "Too many exchanges by this workload; see Retry-After", body = OAuthError),
        (status = 503, description = "The issuer's keys could not be fetched, or the broker's database is unavailable (`Retry-After`)", body = OAuthError),
        (status = 500, description = "Internal error; the broker log has the details", body = OAuthError),
    ))]
async fn exchange(
    State(state): State<AppState>,
    form: Result<axum::Form<TokenExchangeInput>, FormRejection>,
) -> Response {
    let input = match form {
        Ok(axum::Form(input)) => input,
        Err(rejection) => return form_rejected(&rejection),
    };
    match state.broker.exchange(input).await {
        Ok(Exchanged::Issued(issued)) => {
            let mut response = Json(*issued).into_response();
            no_store(&mut response);
            response
        }
        Ok(Exchanged::Pending(pending)) => {
            let mut response = (StatusCode::ACCEPTED, Json(pending)).into_response();
            no_store(&mut response);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::broker::POLL_INTERVAL_SECS),
            );
            response
        }
        Err(refused) => refusal(refused),
    }
}

/// A job that gives up waiting (its timeout, a signal) withdraws its task
/// with the same form it presented to `POST /v1/token`: the token is checked
/// as for the exchange, its pending request is cancelled, and a grant already
/// made for it is ended unless its credential was handed over (its holder
/// ends it). Refusals are the exchange's `code`s; withdrawals have a rate
/// limit of their own.
#[utoipa::path(post, path = "/v1/token/withdraw", tag = "workloads",
    request_body(content = TokenExchangeInput, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The task, withdrawn", body = TaskWithdrawn),
        (status = 400, description = "Refused; `code` names why", body = OAuthError),
        (status = 429, description = "Too many withdrawals and exchanges of tasks filed already by this workload; see Retry-After", body = OAuthError),
        (status = 503, description = "The issuer's keys could not be fetched, or the broker's database is unavailable (`Retry-After`)", body = OAuthError),
        (status = 500, description = "Internal error; the broker log has the details", body = OAuthError),
    ))]
async fn withdraw(
    State(state): State<AppState>,
    form: Result<axum::Form<TokenExchangeInput>, FormRejection>,
) -> Response {
    let input = match form {
        Ok(axum::Form(input)) => input,
        Err(rejection) => return form_rejected(&rejection),
    };
    match state.broker.withdraw(input).await {
        Ok(withdrawn) => Json(withdrawn).into_response(),
        Err(refused) => refusal(refused),
    }
}

/// What a form that could not be read is answered: a body that did not
/// arrive in time (408) or is too large (413) as on every route, with the
/// broker's error body the contract names for both; anything else in the
/// exchange's own form.
fn form_rejected(rejection: &FormRejection) -> Response {
    if super::serve::timed_out(rejection) {
        return super::body_timed_out();
    }
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return super::body_too_large();
    }
    refusal(form_refused(rejection))
}

/// A body that is not the exchange's form.
fn form_refused(rejection: &FormRejection) -> Refusal {
    Refusal {
        code: WorkloadErrorCode::InvalidRequest,
        message: format!(
            "the body must be an application/x-www-form-urlencoded form (RFC 6749 section 3.2): {}",
            rejection.body_text()
        ),
        retry_after: None,
    }
}

/// A workload ends its own task's grant, with the credential `POST /v1/token`
/// gave it as the bearer token. The only route besides introspection a
/// workload's credential may call; people revoke with
/// `POST /v1/grants/{id}/revoke`.
#[utoipa::path(post, path = "/v1/token/revoke", tag = "workloads", security(("bearer" = [])),
    responses(
        (status = 200, description = "The grant, ended", body = WorkloadRevoked),
        (status = 400, description = "Malformed request", body = OAuthError),
        (status = 401, description = "Not a live workload credential", body = OAuthError),
        (status = 500, description = "Internal error; the broker log has the details", body = OAuthError),
        (status = 503, description = "The broker's database is unavailable (`Retry-After`)", body = OAuthError),
    ))]
async fn revoke(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let broker = std::sync::Arc::clone(&state.broker);
    match tokio::task::spawn_blocking(move || broker.revoke_task(&token)).await {
        Ok(Ok(revoked)) => Json(revoked).into_response(),
        Ok(Err(refused)) => refusal(refused),
        Err(err) => {
            tracing::error!(error = %err, "revoke task failed");
            refusal(Refusal {
                code: WorkloadErrorCode::Internal,
                message: "internal error".into(),
                retry_after: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::store::StoreError;

    /// A database down or a change that kept losing is a 503 with
    /// Retry-After on workloads' routes too, as on people's: a job tries
    /// again rather than fail its deploy on a 500.
    #[test]
    fn a_target_that_does_not_answer_is_503_with_retry_after() {
        let response = refusal(Refusal::from(Error::TargetUnavailable {
            message: "grant gr_1 is live, but its access could not be handed over".into(),
            retry_after: crate::error::TARGET_RETRY,
        }));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("5"))
        );
        let bytes =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096)).unwrap();
        let error: OAuthError = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error.code, WorkloadErrorCode::Unavailable);
    }

    #[test]
    fn a_database_unavailable_is_503_with_retry_after() {
        for err in [
            StoreError::Unavailable("08006: connection to server lost".into()),
            StoreError::Contended("changed meanwhile".into()),
            StoreError::Uncertain("08006: connection to server lost".into()),
        ] {
            let response = refusal(Refusal::from(Error::Store(err)));
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers().get(header::RETRY_AFTER),
                Some(&HeaderValue::from_static("1"))
            );
            let bytes =
                futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096))
                    .unwrap();
            let error: OAuthError = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(error.code, WorkloadErrorCode::Unavailable);
            assert_eq!(error.error, "temporarily_unavailable");
            assert!(!error.error_description.contains("08006"));
        }
    }
}
