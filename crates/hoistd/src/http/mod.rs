//! The HTTP face of the broker: routes, authentication, the one place broker
//! errors become responses, and the OpenAPI document built from the handlers.

mod events;
mod grants;
mod meta;
mod requests;

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

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// Flips to `true` when the server shuts down, ending live streams.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hoistd",
        description = "Just-in-time privileged access broker. Every endpoint under /v1 except \
            /v1/health takes `Authorization: Bearer <token>`. Errors carry a JSON body \
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
        (name = "events", description = "Live updates")
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
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::router())
        .merge(requests::router())
        .merge(grants::router())
        .merge(events::router())
        .split_for_parts()
}

/// The OpenAPI 3.1 document of the broker's API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The whole HTTP application; tests call this directly.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = routes();
    let openapi = Arc::new(openapi);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(|| async { refused(ErrorCode::NotFound, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(stamp_server_time))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
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
        Forbidden | NotEligible | SelfReview | BreakGlassNotAllowed => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        InvalidState | AlreadyReviewed => StatusCode::CONFLICT,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
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
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
            } => {
                let mut response = refused(ErrorCode::RateLimited, message);
                // Whole seconds, rounded up: never an invitation to come back early.
                let secs = retry_after.as_millis().div_ceil(1000).max(1);
                if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
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

/// The caller with the token they came with, for a long-lived response that
/// must check them again later (the event stream).
pub struct Session {
    pub caller: broker::Authenticated,
    pub token: String,
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
        match state.broker.authenticate(token).await {
            Ok(caller) => Ok(Session {
                caller,
                token: token.to_string(),
            }),
            Err(err) => Err(Failure(err).into_response()),
        }
    }
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
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(refused(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            )),
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
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| ApiForm(f.0))
            .map_err(|rejection| refused(ErrorCode::InvalidBody, rejection.body_text()))
    }
}
