//! Health, identity, roles, signing keys, introspection and the audit log.

use axum::Json;
use axum::extract::State;
use hoist_api::{
    ApiError, AuditEvent, AuthConfig, AuthIssuer, Health, Introspection, IntrospectionInput, Jwks,
    Me, Role,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiForm, ApiQuery, AppState, Caller, Failure, PersonOrWorkload, blocking, page_size};
use crate::broker;
use crate::store::AuditQuery;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(auth_config))
        .routes(routes!(me))
        .routes(routes!(roles))
        .routes(routes!(jwks))
        .routes(routes!(introspect))
        .routes(routes!(audit))
}

/// Liveness and the broker's clock.
#[utoipa::path(get, path = "/v1/health", tag = "meta",
    responses((status = 200, description = "The broker is serving", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        time: broker::now(),
    })
}

/// How to sign in: the OpenID providers whose ID tokens are accepted, with
/// the client id and flows to use. Needs no authentication.
#[utoipa::path(get, path = "/v1/auth/config", tag = "meta",
    responses((status = 200, description = "Sign-in options", body = AuthConfig)))]
async fn auth_config(State(state): State<AppState>) -> Json<AuthConfig> {
    let policy = state.broker.policy();
    Json(AuthConfig {
        issuers: policy
            .oidc
            .iter()
            .map(|i| AuthIssuer {
                issuer: i.issuer.clone(),
                client_id: i.client_id.clone(),
                scopes: i.scopes.clone(),
                flows: i.flows.clone(),
            })
            .collect(),
        static_tokens: policy.has_static_tokens(),
    })
}

/// The caller's identity and groups under the current policy.
#[utoipa::path(get, path = "/v1/me", tag = "meta", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn me(State(state): State<AppState>, Caller(user): Caller) -> Result<Json<Me>, Failure> {
    Ok(Json(state.broker.me(&user)?))
}

/// The roles the caller is eligible for, with their policy terms.
#[utoipa::path(get, path = "/v1/roles", tag = "meta", security(("bearer" = [])),
    responses(
        (status = 200, description = "Eligible roles, by id", body = [Role]),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn roles(
    State(state): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<Role>>, Failure> {
    Ok(Json(blocking(&state, move |b| b.roles(&user)).await?))
}

/// The public keys credentials are signed with (RFC 7517, Ed25519 per RFC 8037).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "meta",
    responses((status = 200, description = "The signing keys", body = Jwks)))]
async fn jwks(State(state): State<AppState>) -> Json<Jwks> {
    Json(state.broker.signer().jwks())
}

/// RFC 7662 token introspection: is a credential live right now? Answers
/// `{"active": false}` the moment its grant is revoked or expired.
#[utoipa::path(post, path = "/v1/introspect", tag = "grants", security(("bearer" = [])),
    request_body(content = IntrospectionInput, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Whether the credential is active, and its claims if so", body = Introspection),
        (status = 400, description = "The form has no `token`", body = ApiError),
        (status = 401, description = "Missing or unknown token, or a workload's credential whose grant has ended", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 429, description = "Too many introspections by the caller; see Retry-After", body = ApiError),
    ))]
async fn introspect(
    State(state): State<AppState>,
    caller: PersonOrWorkload,
    ApiForm(input): ApiForm<IntrospectionInput>,
) -> Result<Json<Introspection>, Failure> {
    let answer = blocking(&state, move |b| {
        b.introspect_as(&caller.user, caller.workload_grant.as_deref(), &input.token)
    })
    .await?;
    Ok(Json(answer))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only entries after this sequence number.
    #[serde(default)]
    #[param(minimum = 0)]
    after: i64,
    /// At most this many entries (default 500).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Only entries about this incident reference.
    incident: Option<String>,
    /// Only entries about this request.
    request_id: Option<String>,
    /// The newest `limit` entries rather than the oldest (still listed
    /// oldest first): what an activity view shows.
    #[serde(default)]
    newest: bool,
}

/// The audit log, oldest first. Auditors see every entry; everyone else
/// sees the entries they did or that are about them.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses(
        (status = 200, description = "Audit entries", body = [AuditEvent]),
        (status = 400, description = "A malformed parameter", body = ApiError),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
    ))]
async fn audit(
    State(state): State<AppState>,
    Caller(user): Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Vec<AuditEvent>>, Failure> {
    if params.after < 0 {
        return Err(Failure(crate::error::Error::refuse(
            hoist_api::ErrorCode::InvalidParameter,
            format!("after must be 0 or more, not {}", params.after),
        )));
    }
    let query = AuditQuery {
        after_seq: params.after,
        involving: None,
        incident: params.incident,
        request_id: params.request_id,
        limit: Some(page_size(params.limit, 500)?),
        newest: params.newest,
    };
    let events = blocking(&state, move |b| b.audit(&user, query)).await?;
    Ok(Json(events))
}
