//! Filing, listing, reviewing, claiming, cancelling and acknowledging requests.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hoist_api::{
    AccessRequest, AcknowledgeInput, ApiError, CreateRequest, ErrorCode, IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENT_REPLAY_HEADER, ReasonInput, RequestHistory, RequestPreview, RequestState,
    ReviewInput,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiQuery, AppState, Caller, Failure, Session, blocking, page_size};
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests, create_request))
        .routes(routes!(validate_request))
        .routes(routes!(get_request))
        .routes(routes!(request_history))
        .routes(routes!(review_request))
        .routes(routes!(cancel_request))
        .routes(routes!(claim_request, release_claim))
        .routes(routes!(acknowledge_break_glass))
        .routes(routes!(review_queue))
        .routes(routes!(break_glass_queue))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// States to include, comma-separated, e.g. `pending,active` (default: all).
    #[param(value_type = Option<Vec<RequestState>>, style = Form, explode = false)]
    state: Option<String>,
    /// At most this many, newest first (default 200).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

fn parse_states(states: Option<&str>) -> Result<Vec<RequestState>, Failure> {
    let Some(states) = states else {
        return Ok(Vec::new());
    };
    states
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            RequestState::parse(s).ok_or_else(|| {
                Failure(Error::refuse(
                    ErrorCode::InvalidParameter,
                    format!("unknown state `{s}` (one of: pending, approved, active, expired, revoked, denied, cancelled, timed_out)"),
                ))
            })
        })
        .collect()
}

/// The caller's own requests, newest first.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, description = "The caller's requests", body = [AccessRequest]),
        (status = 400, description = "An unknown state or malformed parameter", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn list_requests(
    State(state): State<AppState>,
    Caller(user): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Vec<AccessRequest>>, Failure> {
    let states = parse_states(params.state.as_deref())?;
    let limit = page_size(params.limit, 200)?;
    Ok(Json(
        blocking(&state, move |b| b.my_requests(&user, states, limit)).await?,
    ))
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Failure> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        // Visible ASCII only, as the API document's pattern says: a header
        // value may also hold spaces and tabs, which a key may not.
        Ok(key)
            if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        _ => Err(Failure(Error::refuse(
            ErrorCode::InvalidParameter,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ))),
    }
}

/// Files a request. Send an `Idempotency-Key` header so that a retry can never
/// file twice: the same key with the same body returns the first request
/// (200, `idempotent-replayed: true`); with a different body it is refused (422).
/// A key is honoured for a day after its first use; then it is forgotten.
#[utoipa::path(post, path = "/v1/requests", tag = "requests", security(("bearer" = [])),
    request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "Makes the call safe to retry for a day: 1 to 255 visible ASCII characters")),
    responses(
        (status = 201, description = "Filed: pending, or already active (auto-approve, break-glass)", body = AccessRequest),
        (status = 200, description = "A retry with the same Idempotency-Key: the request filed the first time", body = AccessRequest),
        (status = 400, description = "Malformed JSON or a control character in the text", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Not eligible, or break-glass not allowed for the caller", body = ApiError),
        (status = 409, description = "The caller already holds or awaits this role", body = ApiError),
        (status = 413, description = "Body larger than 64 KiB", body = ApiError),
        (status = 422, description = "Unknown role, bad duration, ticket, justification or start; no approvers; Idempotency-Key reused", body = ApiError),
        (status = 429, description = "Too many filings by the caller; see Retry-After", body = ApiError),
    ))]
async fn create_request(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CreateRequest>,
) -> Result<Response, Failure> {
    let key = idempotency_key(&headers)?;
    let caller = session.caller;
    let (request, replayed) = blocking(&state, move |b| {
        b.create_request_as(&caller, &input, key.as_deref())
    })
    .await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, Json(request)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAY_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// What filing this request would do (approvals needed, from whom, the
/// duration granted), with nothing written.
#[utoipa::path(post, path = "/v1/requests/validate", tag = "requests", security(("bearer" = [])),
    request_body = CreateRequest,
    responses(
        (status = 200, description = "The request is valid; what it would do", body = RequestPreview),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Not eligible, break-glass not allowed, or a sign-in too old for the role (`step_up_required`)", body = ApiError),
        (status = 409, description = "The caller already has an open request for the role, or an active grant of it", body = ApiError),
        (status = 422, description = "The request breaks one of the role's rules", body = ApiError),
    ))]
async fn validate_request(
    State(state): State<AppState>,
    session: Session,
    ApiJson(input): ApiJson<CreateRequest>,
) -> Result<Json<RequestPreview>, Failure> {
    let caller = session.caller;
    Ok(Json(
        blocking(&state, move |b| b.preview_as(&caller, &input)).await?,
    ))
}

/// One request: the caller's own, or one for a role they approve or audit.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request", body = AccessRequest),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 404, description = "No such request visible to the caller", body = ApiError),
    ))]
async fn get_request(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccessRequest>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.request(&user, &id)).await?,
    ))
}

/// The requester's recent requests for the same role, for deciding this one.
#[utoipa::path(get, path = "/v1/requests/{id}/history", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Up to 10 earlier requests, newest first", body = RequestHistory),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 404, description = "No such request visible to the caller", body = ApiError),
    ))]
async fn request_history(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestHistory>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.request_history(&user, &id)).await?,
    ))
}

/// Approves or denies. Requesters never review their own requests; each
/// approver counts once; one denial ends the request.
#[utoipa::path(post, path = "/v1/requests/{id}/reviews", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    request_body = ReviewInput,
    responses(
        (status = 200, description = "The request after the review", body = AccessRequest),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Own request, or not an approver of the role", body = ApiError),
        (status = 404, description = "No such request visible to the caller", body = ApiError),
        (status = 409, description = "Not pending, or already reviewed by the caller", body = ApiError),
        (status = 422, description = "A denial without a comment", body = ApiError),
    ))]
async fn review_request(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReviewInput>,
) -> Result<Json<AccessRequest>, Failure> {
    let request = blocking(&state, move |b| {
        b.review_request(&user, &id, input.decision, input.comment.as_deref())
    })
    .await?;
    Ok(Json(request))
}

/// Withdraws the caller's own pending (or scheduled, not yet started) request.
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    request_body = ReasonInput,
    responses(
        (status = 200, description = "The cancelled request", body = AccessRequest),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 404, description = "No such request of the caller's", body = ApiError),
        (status = 409, description = "The request is no longer pending", body = ApiError),
    ))]
async fn cancel_request(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReasonInput>,
) -> Result<Json<AccessRequest>, Failure> {
    Ok(Json(
        blocking(&state, move |b| {
            b.cancel_request(&user, &id, input.reason.as_deref())
        })
        .await?,
    ))
}

/// Tells other approvers the caller is looking at this request, for a few
/// minutes. A claim never blocks anyone's decision.
#[utoipa::path(post, path = "/v1/requests/{id}/claim", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request, with the caller's claim", body = AccessRequest),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Own request, or not an approver of the role", body = ApiError),
        (status = 404, description = "No such request visible to the caller", body = ApiError),
        (status = 409, description = "Not pending, or claimed by another approver", body = ApiError),
        (status = 429, description = "Too many claims and releases by this caller; see Retry-After", body = ApiError),
    ))]
async fn claim_request(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccessRequest>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.claim_request(&user, &id, false)).await?,
    ))
}

/// Releases the caller's claim.
#[utoipa::path(delete, path = "/v1/requests/{id}/claim", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request, unclaimed", body = AccessRequest),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Own request, or not an approver of the role", body = ApiError),
        (status = 404, description = "No such request visible to the caller", body = ApiError),
        (status = 409, description = "Not pending, or claimed by another approver", body = ApiError),
        (status = 429, description = "Too many claims and releases by this caller; see Retry-After", body = ApiError),
    ))]
async fn release_claim(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccessRequest>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.claim_request(&user, &id, true)).await?,
    ))
}

/// Closes the after-the-fact review of a break-glass activation.
#[utoipa::path(post, path = "/v1/requests/{id}/acknowledge", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    request_body = AcknowledgeInput,
    responses(
        (status = 200, description = "The acknowledged request", body = AccessRequest),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 403, description = "Own request, or not an approver of the role", body = ApiError),
        (status = 404, description = "No such request visible to the caller", body = ApiError),
        (status = 409, description = "Not a break-glass request, or already acknowledged", body = ApiError),
    ))]
async fn acknowledge_break_glass(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AcknowledgeInput>,
) -> Result<Json<AccessRequest>, Failure> {
    let request = blocking(&state, move |b| {
        b.acknowledge_break_glass(&user, &id, input.comment.as_deref())
    })
    .await?;
    Ok(Json(request))
}

/// Pending requests the caller may decide, soonest to lapse first. Never the
/// caller's own.
#[utoipa::path(get, path = "/v1/reviews", tag = "requests", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's review queue", body = [AccessRequest]),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn review_queue(
    State(state): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<AccessRequest>>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.review_queue(&user)).await?,
    ))
}

/// Break-glass activations on the caller's roles awaiting acknowledgement.
#[utoipa::path(get, path = "/v1/break-glass", tag = "requests", security(("bearer" = [])),
    responses(
        (status = 200, description = "Unacknowledged break-glass requests", body = [AccessRequest]),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn break_glass_queue(
    State(state): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<AccessRequest>>, Failure> {
    Ok(Json(
        blocking(&state, move |b| b.break_glass_queue(&user)).await?,
    ))
}
