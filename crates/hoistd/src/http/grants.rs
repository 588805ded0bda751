//! Grants: list, revoke, extend, and the short-lived credential.

use axum::Json;
use axum::extract::{Path, State};
use hoist_api::{
    AccessRequest, ApiError, Credential, CredentialInput, ErrorCode, ExtendInput, Grant,
    IncidentView, ReasonInput,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery, AppState, Caller, Failure, Session, blocking, page_size};
use crate::error::Error;
use crate::target::ssh::HolderKey;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_grants))
        .routes(routes!(get_grant))
        .routes(routes!(revoke_grant))
        .routes(routes!(extend_grant))
        .routes(routes!(grant_credential, certify_key))
        .routes(routes!(incident))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Include expired and revoked grants (default: active only).
    #[serde(default)]
    all: bool,
    /// Instead of the caller's own: the active grants workloads hold on
    /// roles the caller approves, or on any role for an auditor.
    #[serde(default)]
    workloads: bool,
    /// At most this many, newest first (default 200).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// The caller's grants, newest first. A grant is never listed as active at
/// or after its `expires_at`.
#[utoipa::path(get, path = "/v1/grants", tag = "grants", security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, description = "The caller's grants", body = [Grant]),
        (status = 400, description = "A malformed parameter", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn list_grants(
    State(state): State<AppState>,
    Caller(user): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Vec<Grant>>, Failure> {
    let limit = page_size(params.limit, 200)?;
    if params.workloads {
        return Ok(Json(
            blocking(&state, move |b| b.workload_grants(&user, limit)).await?,
        ));
    }
    Ok(Json(
        blocking(&state, move |b| b.grants(&user, params.all, limit)).await?,
    ))
}

/// One grant: the caller's own, or one on a role they approve or audit.
#[utoipa::path(get, path = "/v1/grants/{id}", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Grant id")),
    responses(
        (status = 200, description = "The grant", body = Grant),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 404, description = "No such grant visible to the caller", body = ApiError),
    ))]
async fn get_grant(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<Grant>, Failure> {
    Ok(Json(blocking(&state, move |b| b.grant(&user, &id)).await?))
}

/// Ends a grant now, by its holder or an approver of its role. Revoking an
/// ended grant is harmless and returns it unchanged.
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Grant id")),
    request_body = ReasonInput,
    responses(
        (status = 200, description = "The grant, ended", body = Grant),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Neither the holder nor an approver", body = ApiError),
        (status = 404, description = "No such grant visible to the caller", body = ApiError),
    ))]
async fn revoke_grant(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReasonInput>,
) -> Result<Json<Grant>, Failure> {
    Ok(Json(
        blocking(&state, move |b| {
            b.revoke_grant(&user, &id, input.reason.as_deref())
        })
        .await?,
    ))
}

/// Asks for more time on an active grant. The extension follows the role's
/// approval rule; once approved it moves this same grant's end, so access
/// never has a gap. The new end is never earlier than the old one, and never
/// more than the role's maximum duration from the moment of approval. Send
/// an `Idempotency-Key` header so that a retry (its answer lost) can never
/// extend twice: the same key with the same body returns the first
/// extension (200, `idempotent-replayed: true`), with a different body it is
/// refused (422). A key is honoured for a day.
#[utoipa::path(post, path = "/v1/grants/{id}/extend", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Grant id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "Makes the call safe to retry for a day: 1 to 255 visible ASCII characters")),
    request_body = ExtendInput,
    responses(
        (status = 201, description = "The extension request (already applied if the role needs no approval)", body = AccessRequest),
        (status = 200, description = "A retry with the same Idempotency-Key: the extension filed the first time", body = AccessRequest),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Not the holder, no longer eligible, or a sign-in too old for the role (step_up_required)", body = ApiError),
        (status = 404, description = "No such grant visible to the caller", body = ApiError),
        (status = 409, description = "The grant has ended, or an extension is already pending", body = ApiError),
        (status = 422, description = "A bad duration or justification; no approvers; Idempotency-Key reused", body = ApiError),
        (status = 429, description = "Too many filings (requests and extensions) by the caller; see Retry-After", body = ApiError),
    ))]
async fn extend_grant(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ApiJson(input): ApiJson<ExtendInput>,
) -> Result<axum::response::Response, Failure> {
    use axum::response::IntoResponse;
    let key = super::requests::idempotency_key(&headers)?;
    let caller = session.caller;
    let (request, replayed) = blocking(&state, move |b| {
        b.extend_grant(
            &caller,
            &id,
            input.duration_secs,
            input.justification.as_deref(),
            key.as_deref(),
        )
    })
    .await?;
    let status = match replayed {
        true => axum::http::StatusCode::OK,
        false => axum::http::StatusCode::CREATED,
    };
    let mut response = (status, Json(request)).into_response();
    if replayed {
        response.headers_mut().insert(
            hoist_api::IDEMPOTENT_REPLAY_HEADER,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// A short-lived signed grant_credential (EdDSA JWT) for the grant's role. Its
/// lifetime never exceeds the grant's remaining time. Every fetch is audited:
/// repeated ones within a minute once more, with their count. For a role with
/// a target, `access` says how to use the access there (for PostgreSQL, a
/// fresh password set now); refused until the target confirmed the access.
#[utoipa::path(get, path = "/v1/grants/{id}/credential", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Grant id")),
    responses(
        (status = 200, description = "The grant_credential", body = Credential),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Not the holder, or no longer eligible", body = ApiError),
        (status = 404, description = "No such grant visible to the caller", body = ApiError),
        (status = 409, description = "The grant is not active, or its access at its target is not live yet (the message says why)", body = ApiError),
        (status = 429, description = "Too many credential fetches by the caller; see Retry-After", body = ApiError),
    ))]
async fn grant_credential(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<Credential>, Failure> {
    Ok(Json(state.broker.credential(user, id).await?))
}

/// The credential, with what the role's target issues for the holder's
/// public key: for an `ssh` target, an OpenSSH user certificate with the
/// role's principals, options and extensions, valid from the grant's start
/// to its end and never beyond. Other kinds ignore the key. Audited with
/// the key's fingerprint, never the key.
#[utoipa::path(post, path = "/v1/grants/{id}/credential", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Grant id")),
    request_body = CredentialInput,
    responses(
        (status = 200, description = "The credential; `access.certificate` for an ssh target", body = Credential),
        (status = 400, description = "Malformed JSON, or not an OpenSSH public key", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Not the holder, or no longer eligible", body = ApiError),
        (status = 404, description = "No such grant visible to the caller", body = ApiError),
        (status = 409, description = "The grant is not active, or its access at its target is not live yet (the message says why)", body = ApiError),
        (status = 429, description = "Too many credential fetches by the caller; see Retry-After", body = ApiError),
    ))]
async fn certify_key(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CredentialInput>,
) -> Result<Json<Credential>, Failure> {
    let key = HolderKey::parse(&input.public_key)
        .map_err(|why| Failure::from(Error::refuse(ErrorCode::InvalidBody, why)))?;
    Ok(Json(
        state.broker.credential_for(user, id, Some(key)).await?,
    ))
}

/// Everything filed under one incident reference that the caller may see:
/// their own requests and grants, anyone's on roles they approve, all for auditors.
#[utoipa::path(get, path = "/v1/incidents/{reference}", tag = "grants", security(("bearer" = [])),
    params(("reference" = String, Path, description = "Incident reference, e.g. INC-4711")),
    responses(
        (status = 200, description = "The incident's requests and grants", body = IncidentView),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 404, description = "The reference holds a control character, which no reference does", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn incident(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(reference): Path<String>,
) -> Result<Json<IncidentView>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.incident(&user, &reference)).await?,
    ))
}
