//! The HTTP face of the broker: routes, authentication, the one place broker
//! errors become responses, and the OpenAPI document built from the handlers.

pub mod events;
mod grants;
mod meta;
pub mod ops;
mod requests;
pub mod serve;
pub mod slack;
mod ssh;
pub mod tls;
mod workloads;

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hoist_api::{ApiError, ErrorCode, SERVER_TIME_HEADER};
use tokio::sync::watch;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::broker::{self, Broker};
use crate::error::{self, Error};
use crate::store::StoreError;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most items one list call returns; the contract states it as each
/// `limit` parameter's maximum, and a larger `limit` is refused.
pub const MAX_PAGE: usize = 10_000;

/// The `limit` a list call was given, or `default`; refused outside 1 to
/// [`MAX_PAGE`], as the contract says, rather than quietly clamped.
pub fn page_size(limit: Option<usize>, default: usize) -> Result<usize, Failure> {
    match limit {
        None => Ok(default),
        Some(limit @ 1..=MAX_PAGE) => Ok(limit),
        Some(limit) => Err(Failure(Error::refuse(
            ErrorCode::InvalidParameter,
            format!("limit must be 1 to {MAX_PAGE}, not {limit}"),
        ))),
    }
}

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// Flips to `true` when the server shuts down, ending live streams.
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<ops::Metrics>,
    pub streams: Arc<events::StreamSlots>,
    /// Slack's signing secret and where answers go: `None` leaves
    /// `/v1/slack/actions` out of the router.
    pub slack: Option<crate::slack::Settings>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hoistd",
        description = "Just-in-time privileged access broker. Every endpoint under /v1 takes \
            `Authorization: Bearer <token>`, except those whose operation names no security: \
            /v1/health, /v1/auth/config, the token exchange (/v1/token and its withdrawal, which \
            take a workload's identity token in the form) and /v1/ssh/*. Errors carry a JSON body \
            `{\"code\": ..., \"message\": ...}`. Every response carries the broker's clock in the \
            `Date` and `x-hoist-server-time` headers.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "meta", description = "Health, identity, roles, keys and the contract itself"),
        (name = "requests", description = "Filing, reviewing and deciding access requests"),
        (name = "grants", description = "Active access: revoke, extend, credentials"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "events", description = "Live updates"),
        (name = "workloads", description = "Workload identities: token exchange for one task, and its end")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and the OpenAPI document describing exactly its routes.
fn routes() -> (Router<AppState>, serde_json::Value) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::router())
        .merge(requests::router())
        .merge(grants::router())
        .merge(events::router())
        .merge(workloads::router())
        .merge(ssh::router())
        .split_for_parts();
    let mut openapi = serde_json::to_value(openapi).unwrap_or_default();
    document_common_errors(&mut openapi);
    document_event_stream(&mut openapi);
    document_links(&mut openapi);
    (router, openapi)
}

/// The OpenAPI 3.1 document of the broker's API.
pub fn openapi() -> serde_json::Value {
    routes().1
}

/// Errors any operation can meet before its handler runs, added to each
/// operation that does not document them itself: the contract lists every
/// status the broker may answer with.
fn document_common_errors(openapi: &mut serde_json::Value) {
    let error = |description: &str| {
        serde_json::json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}
        })
    };
    let common = [
        (
            "400",
            "Malformed request: not valid HTTP, or a malformed parameter",
        ),
        (
            "408",
            "The request's headers or body did not arrive in time",
        ),
        ("414", "The request URI is longer than the broker accepts"),
        (
            "431",
            "The request's headers are larger than the broker accepts",
        ),
        ("500", "Internal error; the broker log has the details"),
    ];
    let with_body = [("413", "Body larger than 64 KiB")];
    let Some(paths) = openapi
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for item in paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
    {
        for operation in item
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            let takes_body = operation.contains_key("requestBody");
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            let extra = if takes_body { &with_body[..] } else { &[] };
            for (status, description) in common.iter().chain(extra) {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description));
            }
        }
    }
}

/// OpenAPI links from a filed request to what can be done with it and with
/// the grant it made, so clients and fuzzers can follow the ids the broker
/// hands out.
fn document_links(openapi: &mut serde_json::Value) {
    let by_request = [
        ("GetRequest", "get", "/v1/requests/{id}"),
        ("RequestHistory", "get", "/v1/requests/{id}/history"),
        ("ReviewRequest", "post", "/v1/requests/{id}/reviews"),
        ("CancelRequest", "post", "/v1/requests/{id}/cancel"),
        ("ClaimRequest", "post", "/v1/requests/{id}/claim"),
        ("ReleaseClaim", "delete", "/v1/requests/{id}/claim"),
        (
            "AcknowledgeRequest",
            "post",
            "/v1/requests/{id}/acknowledge",
        ),
    ];
    let by_grant = [
        ("GetGrant", "get", "/v1/grants/{id}"),
        ("RevokeGrant", "post", "/v1/grants/{id}/revoke"),
        ("ExtendGrant", "post", "/v1/grants/{id}/extend"),
        ("GetCredential", "get", "/v1/grants/{id}/credential"),
    ];
    let mut links = serde_json::Map::new();
    for (name, method, path) in by_request {
        links.insert(
            name.into(),
            serde_json::json!({
                "operationRef": format!("#/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1")),
                "parameters": {"id": "$response.body#/id"}
            }),
        );
    }
    for (name, method, path) in by_grant {
        links.insert(
            name.into(),
            serde_json::json!({
                "operationRef": format!("#/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1")),
                "parameters": {"id": "$response.body#/grant_id"}
            }),
        );
    }
    if let Some(created) = openapi.pointer_mut("/paths/~1v1~1requests/post/responses/201") {
        created["links"] = serde_json::Value::Object(links);
    }
}

/// The event stream's items in the form OpenAPI tools read for
/// `text/event-stream` before 3.2's `itemSchema`: the schema describes one
/// event (its `event` name and `data` line), and `data` is a [`hoist_api::LiveEvent`]
/// as JSON. Keep-alive comments are not events.
fn document_event_stream(openapi: &mut serde_json::Value) {
    let Some(content) = openapi.pointer_mut("/paths/~1v1~1events/get/responses/200/content") else {
        return;
    };
    content["text/event-stream"] = serde_json::json!({
        "schema": {
            "type": "object",
            "description": "One Server-Sent Event. `event` names the kind; `data` is a LiveEvent as JSON, its `type` the same as `event`.",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "enum": ["hello", "request", "grant", "resync"]},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/LiveEvent"}
                },
                "id": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0}
            }
        }
    });
}

/// The whole HTTP application; tests call this directly.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = routes();
    // Written once: each answer shares these bytes rather than holding a
    // copy of its own while the client takes it.
    let openapi = axum::body::Bytes::from(serde_json::to_vec(&openapi).unwrap_or_default());
    let metrics = Arc::clone(&state.metrics);
    let router = match state.slack {
        Some(_) => router.route(slack::PATH, axum::routing::post(slack::actions)),
        None => router,
    };
    router
        .route("/metrics", axum::routing::get(ops::metrics))
        .route("/readyz", axum::routing::get(ops::readyz))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }
            }),
        )
        .fallback(|| async { refused(ErrorCode::NotFound, "no such endpoint") })
        // What the broker answers is one caller's, and some of it secret
        // (credentials, introspection): no cache keeps it, unless an
        // answer says otherwise.
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::map_response(stamp_server_time))
        // Spans name the path, never the query; an answer of 5xx is the
        // access line's to record (a draining instance's 503 to every
        // readiness probe is no ERROR).
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::debug_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path()
                    )
                })
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn_with_state(metrics, ops::observe))
        .with_state(state)
}

/// Longest request URI (path and query) the broker reads, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The first percent-encoded control character (`%00` to `%1F`, `%7F`) in
/// a request target. Decoded, one would reach the store in an id or a
/// filter, where PostgreSQL refuses a NUL in text: an error of the
/// database, not of the request, had the request not been refused first.
fn encoded_control(target: &str) -> Option<&str> {
    target.match_indices('%').find_map(|(at, _)| {
        let escape = target.get(at..at + 3)?;
        let byte = u8::from_str_radix(&escape[1..], 16).ok()?;
        (byte < 0x20 || byte == 0x7F).then_some(escape)
    })
}

/// Every error leaves as `{code, message}`: a URI past [`MAX_URI_BYTES`] is
/// refused here, and whatever the framework answers by itself (405 with its
/// `Allow` header, a path parameter that is not UTF-8, any other rejection)
/// keeps its status and headers and gets the broker's error body.
async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return refused(
            ErrorCode::UriTooLong,
            format!(
                "the request URI is {uri_bytes} bytes; the broker accepts at most {MAX_URI_BYTES}"
            ),
        );
    }
    // A path with one names nothing there is (404, as any unknown id); a
    // query with one is a malformed parameter.
    if let Some(escape) = encoded_control(request.uri().path()) {
        return refused(
            ErrorCode::NotFound,
            format!("no such thing: the path holds an encoded control character ({escape})"),
        );
    }
    if let Some(escape) = request.uri().query().and_then(encoded_control) {
        return refused(
            ErrorCode::InvalidParameter,
            format!("the query holds an encoded control character ({escape}); no filter does"),
        );
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let said = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let said: String = String::from_utf8_lossy(&said)
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    let (code, message) = match status {
        // The method router adds the Allow header outside this layer.
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            format!(
                "{method} is not allowed on this path; the Allow header lists the methods it takes"
            ),
        ),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such endpoint".to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::RequestTimeout,
            "the request did not arrive in time".to_string(),
        ),
        StatusCode::URI_TOO_LONG => (
            ErrorCode::UriTooLong,
            "the request URI is too long".to_string(),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            ErrorCode::HeadersTooLarge,
            "the request's headers are too large".to_string(),
        ),
        StatusCode::UNAUTHORIZED => (ErrorCode::Unauthenticated, said),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, said),
        status if status.is_server_error() => {
            tracing::error!(%status, said, "internal error");
            (
                ErrorCode::Internal,
                "internal error; the broker log has the details".to_string(),
            )
        }
        // A path or query the router could not read (such as a path
        // segment that is not UTF-8 once decoded).
        StatusCode::BAD_REQUEST => (ErrorCode::InvalidParameter, said),
        _ => (ErrorCode::BadRequest, said),
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        message
    };
    let body = refused(code, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body.into_body())
}

async fn stamp_server_time(mut response: Response) -> Response {
    let now = broker::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Ok(value) = HeaderValue::from_str(&now) {
        response.headers_mut().insert(SERVER_TIME_HEADER, value);
    }
    response
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidBody | InvalidParameter => StatusCode::BAD_REQUEST,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        Forbidden | NotEligible | SelfReview | BreakGlassNotAllowed | StepUpRequired => {
            StatusCode::FORBIDDEN
        }
        NotFound => StatusCode::NOT_FOUND,
        InvalidState | AlreadyReviewed => StatusCode::CONFLICT,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BadRequest => StatusCode::BAD_REQUEST,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        UriTooLong => StatusCode::URI_TOO_LONG,
        HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        RateLimited => StatusCode::TOO_MANY_REQUESTS,
        UnknownRole
        | InvalidDuration
        | DurationTooLong
        | InvalidStart
        | InvalidReference
        | TicketRequired
        | TicketInvalid
        | JustificationTooShort
        | JustificationTooLong
        | CommentRequired
        | NoApprovers
        | IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // Never made here: only a client reads a code it does not know.
        Internal | Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = (
        status_of(code),
        Json(ApiError {
            code,
            message: message.into(),
        }),
    )
        .into_response();
    if code == ErrorCode::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Broker errors as responses: refusals say what is wrong; internal faults
/// are logged and never shown.
pub struct Failure(Error);

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure(err)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self.0 {
            Error::Refused { code, message } => refused(code, message),
            Error::RateLimited {
                message,
                retry_after,
            } => with_retry_after(refused(ErrorCode::RateLimited, message), retry_after),
            Error::TargetUnavailable {
                message,
                retry_after,
            } => with_retry_after(refused(ErrorCode::Unavailable, message), retry_after),
            // The database is down, failing over, or another change came
            // first too often: nothing was written, and the same call may
            // work in a moment. The driver's words stay in the log.
            Error::Store(err @ (StoreError::Unavailable(_) | StoreError::Contended(_))) => {
                tracing::warn!(error = %err, "store unavailable");
                with_retry_after(
                    refused(
                        ErrorCode::Unavailable,
                        "the broker's database is unavailable; nothing was done, try again",
                    ),
                    crate::error::UNAVAILABLE_RETRY,
                )
            }
            // The database stopped answering as the change was committed:
            // it may have been made. Said so, so that nobody takes it for
            // undone; an Idempotency-Key makes filing again safe.
            Error::Store(err @ StoreError::Uncertain(_)) => {
                tracing::warn!(error = %err, "commit outcome unknown");
                with_retry_after(
                    refused(
                        ErrorCode::Unavailable,
                        "the broker's database stopped answering as this change was committed; \
                         it may have been made: look before trying again (a filing sent again \
                         with the same Idempotency-Key is safe)",
                    ),
                    crate::error::UNAVAILABLE_RETRY,
                )
            }
            err => {
                tracing::error!(error = %err, "internal error");
                refused(
                    ErrorCode::Internal,
                    "internal error; the broker log has the details",
                )
            }
        }
    }
}

/// `response` with `Retry-After` in whole seconds, rounded up: never an
/// invitation to come back early.
fn with_retry_after(mut response: Response, after: std::time::Duration) -> Response {
    let secs = after.as_millis().div_ceil(1000).max(1);
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Runs a blocking broker call off the async runtime.
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    call: impl FnOnce(&Broker) -> error::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    let broker = Arc::clone(&state.broker);
    match tokio::task::spawn_blocking(move || call(&broker)).await {
        Ok(result) => result.map_err(Failure),
        Err(err) => {
            tracing::error!(error = %err, "broker task failed");
            Err(Failure(Error::refuse(
                ErrorCode::Internal,
                "internal error",
            )))
        }
    }
}

/// The authenticated caller, resolved against the current policy.
pub struct Caller(pub String);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Session::from_request_parts(parts, state)
            .await
            .map(|session| Caller(session.caller.user))
    }
}

/// A person, or a workload with its credential and the grant it was issued
/// for: introspection is the one route of people's API a workload's
/// credential may also call, while that grant is active.
pub struct PersonOrWorkload {
    pub user: String,
    pub workload_grant: Option<String>,
}

impl FromRequestParts<AppState> for PersonOrWorkload {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let workload = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .and_then(|token| state.broker.workload_caller(token.trim()));
        match workload {
            Some((user, grant)) => Ok(PersonOrWorkload {
                user,
                workload_grant: Some(grant),
            }),
            None => Caller::from_request_parts(parts, state)
                .await
                .map(|Caller(user)| PersonOrWorkload {
                    user,
                    workload_grant: None,
                }),
        }
    }
}

/// The caller with the token they came with, for a long-lived response that
/// must check them again later (the event stream).
pub struct Session {
    pub caller: broker::Authenticated,
    pub token: String,
    /// How many policy reloads there had been before the caller was
    /// authenticated: a stream opened after another must check its caller
    /// against the policy now in force.
    pub reloads_before: u64,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(refused(
                ErrorCode::Unauthenticated,
                "missing bearer token (Authorization: Bearer ...)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(refused(
                ErrorCode::Unauthenticated,
                "the Authorization header is not a bearer token",
            ));
        };
        // Read before: authenticating may wait (a provider's keys, the
        // database), and a reload meanwhile must not go unseen.
        let reloads_before = *state.broker.reloads().borrow();
        match state.broker.authenticate(token).await {
            Ok(caller) => Ok(Session {
                caller,
                token: token.to_string(),
                reloads_before,
            }),
            Err(err) => Err(Failure(err).into_response()),
        }
    }
}

/// A body that did not arrive in time: the connection closes after this
/// answer, since the rest of the body may still be on its way.
fn body_timed_out() -> Response {
    let mut response = refused(
        ErrorCode::RequestTimeout,
        "the request body did not arrive in time",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A body over [`MAX_BODY_BYTES`].
fn body_too_large() -> Response {
    refused(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// `Json<T>` whose rejections use the broker's error body.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if serve::timed_out(&rejection) => Err(body_timed_out()),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large())
            }
            Err(rejection) => Err(refused(ErrorCode::InvalidBody, rejection.body_text())),
        }
    }
}

/// `Query<T>` whose rejections use the broker's error body.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| refused(ErrorCode::InvalidParameter, rejection.body_text()))
    }
}

/// `Form<T>` whose rejections use the broker's error body.
pub struct ApiForm<T>(pub T);

impl<T, S> FromRequest<S> for ApiForm<T>
where
    axum::Form<T>: FromRequest<S, Rejection = FormRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(ApiForm(value)),
            Err(rejection) if serve::timed_out(&rejection) => Err(body_timed_out()),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large())
            }
            Err(rejection) => Err(refused(ErrorCode::InvalidBody, rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a failing store gives a caller: a 503 to try again in a second
    /// when nothing was written and the same call may work then, without
    /// the driver's words; a 503 that says it may have been done when the
    /// commit's answer was lost; a 500 otherwise.
    #[test]
    fn a_store_that_cannot_answer_now_is_a_503_to_try_again() {
        let body = |response: Response| {
            let bytes =
                futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096))
                    .unwrap_or_default();
            serde_json::from_slice::<ApiError>(&bytes).ok()
        };
        for err in [
            StoreError::Unavailable("08006: connection to server lost".into()),
            StoreError::Contended("changed meanwhile".into()),
        ] {
            let response = Failure(Error::Store(err)).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers().get(header::RETRY_AFTER),
                Some(&HeaderValue::from_static("1"))
            );
            let error = body(response).expect("an ApiError");
            assert_eq!(error.code, ErrorCode::Unavailable);
            assert!(!error.message.contains("08006"), "{}", error.message);
            assert!(
                error.message.contains("nothing was done"),
                "{}",
                error.message
            );
        }
        // Lost at the commit: perhaps done, and said so.
        let lost = StoreError::Uncertain("08006: connection to server lost".into());
        let response = Failure(Error::Store(lost)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let error = body(response).expect("an ApiError");
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert!(
            error.message.contains("it may have been made"),
            "{}",
            error.message
        );
        assert!(
            !error.message.contains("nothing was done"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("08006"), "{}", error.message);
        let response =
            Failure(Error::Store(StoreError::Corrupt("column 3".into()))).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(response).map(|e| e.code), Some(ErrorCode::Internal));
    }
}
