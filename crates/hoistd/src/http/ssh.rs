//! The SSH user CAs' public face: their keys for sshd's
//! `TrustedUserCAKeys`, and the KRL for `RevokedKeys`. Both are public, as
//! the JWKS is: hosts fetch them with no token of their own.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use hoist_api::{ApiError, ErrorCode};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiQuery, AppState, Failure};
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ssh_ca))
        .routes(routes!(ssh_krl))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CaParams {
    /// The ssh target whose hosts ask: its own CA if it has one
    /// (`ca = "own"`), else the broker's. Without it, the broker's.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    target: Option<String>,
}

/// An SSH user CA's public key, one OpenSSH line, for sshd's
/// `TrustedUserCAKeys` on an ssh target's hosts. A CA's key never changes
/// for the life of the store (or of the key file given to `serve
/// --ssh-ca-key`), and a target's own CA is kept under its name; the
/// answer for a target changes only when the policy moves it between the
/// broker's CA and its own.
#[utoipa::path(get, path = "/v1/ssh/ca", tag = "ssh", params(CaParams),
    responses(
        (status = 200, description = "The CA's public key", content_type = "text/plain", body = String),
        (status = 400, description = "A malformed parameter", body = ApiError),
        (status = 404, description = "The policy has no ssh target by that name", body = ApiError),
    ))]
async fn ssh_ca(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CaParams>,
) -> Result<impl IntoResponse, Failure> {
    if let Some(target) = &params.target
        && !crate::policy::valid_name(target)
    {
        return Err(Failure::from(Error::refuse(
            ErrorCode::InvalidParameter,
            "target must be a target's name: letters, digits, `.`, `_`, `-` and `@`, at most 64",
        )));
    }
    let line = state.broker.ssh_ca_line(params.target.as_deref())?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{line}\n"),
    ))
}

/// The OpenSSH key revocation list (KRL) for sshd's `RevokedKeys`: the
/// certificates of grants at ssh targets that ended before their end.
/// sshd reads the file at every authentication, so a host that writes
/// this to it refuses a revoked grant's certificate from then on.
#[utoipa::path(get, path = "/v1/ssh/krl", tag = "ssh",
    responses(
        (status = 200, description = "The KRL, binary (OpenSSH PROTOCOL.krl)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 503, description = "The broker's database is unavailable: keep the KRL you have and ask again after Retry-After", body = ApiError),
    ))]
async fn ssh_krl(State(state): State<AppState>) -> Result<impl IntoResponse, Failure> {
    // No token is asked for: one read serves every ask meanwhile.
    let krl = state.broker.ssh_krl_served().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        krl,
    ))
}
