//! The SSH user CA's public face: its key for sshd's `TrustedUserCAKeys`,
//! and the KRL for `RevokedKeys`. Both are public, as the JWKS is: hosts
//! fetch them with no token of their own.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use hoist_api::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Failure};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ssh_ca))
        .routes(routes!(ssh_krl))
}

/// The SSH user CA's public key, one OpenSSH line, for sshd's
/// `TrustedUserCAKeys`. It never changes for the life of the store (or of
/// the key file given to `serve --ssh-ca-key`).
#[utoipa::path(get, path = "/v1/ssh/ca", tag = "ssh",
    responses((status = 200, description = "The CA's public key", content_type = "text/plain", body = String)))]
async fn ssh_ca(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.broker.ssh_ca().public_key()),
    )
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
