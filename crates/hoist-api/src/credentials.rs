//! Short-lived credentials for a grant, their introspection and signing keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AccessCredential;

/// `GET /v1/grants/{id}/credential`: a short-lived signed token for the
/// grant's role, verifiable with `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub grant_id: String,
    pub role: String,
    pub token_type: String,
    pub token: String,
    pub issued_at: DateTime<Utc>,
    /// Never later than the grant's end.
    pub expires_at: DateTime<Utc>,
    /// How to use the access at the role's target (a PostgreSQL login, what
    /// a webhook handed over); absent for a role with no target. Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessCredential>,
}

/// `POST /v1/introspect` (RFC 7662, form-encoded): is this credential live?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionInput {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// `POST /v1/introspect`: RFC 7662 answer. Only `active` is present when the
/// token is not live, which is what the default is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// `GET /.well-known/jwks.json`: the keys credentials are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// Claims inside a credential token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub role: String,
    pub grant_id: String,
    pub scope: String,
    /// Who acts (RFC 8693 section 4.1): present on a workload's credential,
    /// naming the workload identity that exchanged its token for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// The `act` claim of a workload's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// The workload principal, `workload:<rule>:<sub>`.
    pub sub: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{round_trip, t};

    #[test]
    fn every_type_round_trips() {
        round_trip(Credential {
            grant_id: "gr_1".into(),
            role: "r".into(),
            token_type: "Bearer".into(),
            token: "a.b.c".into(),
            issued_at: t("2026-01-01T00:00:00Z"),
            expires_at: t("2026-01-01T00:05:00Z"),
            access: None,
        });
        round_trip(Introspection::default());
        assert_eq!(
            serde_json::to_value(Introspection::default()).unwrap(),
            serde_json::json!({ "active": false })
        );
    }
}
