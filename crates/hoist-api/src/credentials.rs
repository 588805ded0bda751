//! Short-lived credentials for a grant, their introspection and signing keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AccessCredential;

/// `GET /v1/grants/{id}/credential`: a short-lived signed token for the
/// grant's role, verifiable with `GET /.well-known/jwks.json`. Its `Debug`
/// leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("grant_id", &self.grant_id)
            .field("role", &self.role)
            .field("token_type", &self.token_type)
            .field("token", &crate::REDACTED)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("access", &self.access)
            .finish()
    }
}

/// `POST /v1/introspect` (RFC 7662, form-encoded): is this credential live?
/// Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionInput {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

impl std::fmt::Debug for IntrospectionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionInput")
            .field("token", &crate::REDACTED)
            .field("token_type_hint", &self.token_type_hint)
            .finish()
    }
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
    fn debug_never_shows_a_token() {
        let credential = Credential {
            grant_id: "grt_1".into(),
            role: "db".into(),
            token_type: "Bearer".into(),
            token: "eyJ.s3cret.sig".into(),
            issued_at: t("2026-01-01T00:00:00Z"),
            expires_at: t("2026-01-01T01:00:00Z"),
            access: None,
        };
        let input = IntrospectionInput {
            token: "eyJ.s3cret.sig".into(),
            token_type_hint: Some("access_token".into()),
        };
        for shown in [format!("{credential:?}"), format!("{input:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert!(format!("{credential:?}").contains("grt_1"));
    }

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
