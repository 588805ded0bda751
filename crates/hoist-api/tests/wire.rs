//! The wire contract, held to fixed JSON documents (`tests/wire/*.json`)
//! rather than to the types' own serde: each document must parse into
//! exactly the value written out here, and that value must serialise back
//! to exactly the document. Renaming, retyping, dropping or adding a field,
//! or renaming an enum's value, fails here, as it would fail a client or a
//! broker of the other version.
//!
//! Long by design: every wire type beside its document, and the exhaustive
//! enum matches in one place, so a new variant cannot be left out unnoticed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use hoist_api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn document(name: &str) -> Value {
    let path = format!("{}/tests/wire/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The document `name` as a `T`: it must be `expected`, and serialise back
/// to the document itself.
fn holds<T>(name: &str, expected: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let fixed = document(name);
    let parsed: T =
        serde_json::from_value(fixed.clone()).unwrap_or_else(|err| panic!("{name}: {err}"));
    assert_eq!(parsed, expected, "{name} parses to another value");
    let written = serde_json::to_value(&expected).unwrap();
    assert_eq!(written, fixed, "{name} is not what the type writes");
}

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn full_request() -> AccessRequest {
    AccessRequest {
        id: "req_0123456789ab".into(),
        kind: RequestKind::Extension,
        role: "prod-db-admin".into(),
        role_name: "Production database admin".into(),
        requester: "alice".into(),
        justification: "Vacuum the bloated orders table\nthen reindex".into(),
        ticket: Some("CHG-1024".into()),
        incident: Some("INC-4711".into()),
        duration_secs: 1800,
        starts_at: Some(t("2026-06-01T09:30:00Z")),
        break_glass: true,
        state: RequestState::Active,
        created_at: t("2026-06-01T09:00:00.125Z"),
        updated_at: t("2026-06-01T09:05:00Z"),
        lapses_at: Some(t("2026-06-01T11:00:00Z")),
        approvals_required: 2,
        reviews: vec![
            Review {
                reviewer: "bob".into(),
                decision: Decision::Approve,
                comment: Some("go ahead".into()),
                at: t("2026-06-01T09:01:00Z"),
            },
            Review {
                reviewer: "dave".into(),
                decision: Decision::Deny,
                comment: None,
                at: t("2026-06-01T09:02:00Z"),
            },
        ],
        claim: Some(Claim {
            by: "dave".into(),
            until: t("2026-06-01T09:10:00Z"),
        }),
        grant_id: Some("gr_0123456789ab".into()),
        reason: Some("failover done".into()),
        acknowledgement: Some(Acknowledgement {
            by: "bob".into(),
            comment: Some("seen at the review".into()),
            at: t("2026-06-01T10:00:00Z"),
        }),
        tier: Some(0),
        approvers: strings(&["bob", "dave"]),
        signed_in_at: None,
    }
}

fn minimal_request() -> AccessRequest {
    AccessRequest {
        id: "req_1".into(),
        kind: RequestKind::Access,
        role: "prod-logs-read".into(),
        role_name: "Production logs (read)".into(),
        requester: "carol".into(),
        justification: "Trace checkout".into(),
        ticket: None,
        incident: None,
        duration_secs: 14400,
        starts_at: None,
        break_glass: false,
        state: RequestState::Pending,
        created_at: t("2026-06-01T09:00:00Z"),
        updated_at: t("2026-06-01T09:00:00Z"),
        lapses_at: None,
        approvals_required: 0,
        reviews: vec![],
        claim: None,
        grant_id: None,
        reason: None,
        acknowledgement: None,
        tier: None,
        approvers: Vec::new(),
        signed_in_at: None,
    }
}

fn revoked_grant() -> Grant {
    Grant {
        id: "gr_0123456789ab".into(),
        request_id: "req_0123456789ab".into(),
        role: "prod-db-admin".into(),
        role_name: "Production database admin".into(),
        holder: "alice".into(),
        starts_at: t("2026-06-01T09:05:00Z"),
        expires_at: t("2026-06-01T09:35:00Z"),
        state: GrantState::Revoked,
        ended_at: Some(t("2026-06-01T09:20:00.500Z")),
        revoked_by: Some("carol".into()),
        revoke_reason: Some("failover done".into()),
        break_glass: true,
        ticket: Some("CHG-1024".into()),
        incident: Some("INC-4711".into()),
        justification: "Vacuum the bloated orders table".into(),
        access: None,
    }
}

#[test]
fn requests() {
    holds("access_request.json", full_request());
    holds("access_request_minimal.json", minimal_request());
    holds(
        "create_request.json",
        CreateRequest {
            role: "prod-db-admin".into(),
            justification: "Vacuum the bloated orders table".into(),
            ticket: Some("CHG-1024".into()),
            incident: Some("INC-4711".into()),
            duration_secs: Some(3600),
            starts_at: Some(t("2026-06-01T22:00:00Z")),
            break_glass: true,
        },
    );
    holds(
        "create_request_minimal.json",
        CreateRequest {
            role: "prod-logs-read".into(),
            justification: "Trace checkout".into(),
            ticket: None,
            incident: None,
            duration_secs: None,
            starts_at: None,
            break_glass: false,
        },
    );
    holds(
        "request_preview.json",
        RequestPreview {
            role: "prod-k8s-admin".into(),
            approvals_required: 2,
            approver_groups: strings(&["prod-approvers"]),
            approvers: strings(&["bob", "dave"]),
            duration_secs: 3600,
            activates_immediately: false,
            break_glass: false,
            lapses_at: Some(t("2026-06-01T11:00:00Z")),
        },
    );
    holds(
        "request_history.json",
        RequestHistory {
            requester: "carol".into(),
            role: "prod-logs-read".into(),
            recent: vec![minimal_request()],
        },
    );
    holds(
        "incident_view.json",
        IncidentView {
            incident: "INC-4711".into(),
            requests: vec![minimal_request()],
            grants: vec![revoked_grant()],
        },
    );
}

#[test]
fn inputs() {
    holds(
        "review_input.json",
        ReviewInput {
            decision: Decision::Deny,
            comment: Some("Not during the freeze".into()),
        },
    );
    holds(
        "reason_input.json",
        ReasonInput {
            reason: Some("done".into()),
        },
    );
    holds(
        "acknowledge_input.json",
        AcknowledgeInput {
            comment: Some("seen".into()),
        },
    );
    holds(
        "extend_input.json",
        ExtendInput {
            duration_secs: 1800,
            justification: Some("Reindex is slower than planned".into()),
        },
    );
    holds(
        "introspection_input.json",
        IntrospectionInput {
            token: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln".into(),
            token_type_hint: Some("access_token".into()),
        },
    );
}

/// What a client may leave out of a body, and what it may not add.
#[test]
fn inputs_default_what_is_left_out_and_refuse_the_unknown() {
    let minimal: CreateRequest =
        serde_json::from_value(json!({ "role": "r", "justification": "j" })).unwrap();
    assert_eq!(
        (minimal.ticket, minimal.duration_secs, minimal.break_glass),
        (None, None, false)
    );
    let review: ReviewInput = serde_json::from_value(json!({ "decision": "approve" })).unwrap();
    assert_eq!(review.comment, None);
    let reason: ReasonInput = serde_json::from_value(json!({})).unwrap();
    assert_eq!(reason, ReasonInput::default());
    let ack: AcknowledgeInput = serde_json::from_value(json!({})).unwrap();
    assert_eq!(ack, AcknowledgeInput::default());
    let extend: ExtendInput = serde_json::from_value(json!({ "duration_secs": 60 })).unwrap();
    assert_eq!(extend.justification, None);
    let hint: IntrospectionInput = serde_json::from_value(json!({ "token": "t" })).unwrap();
    assert_eq!(hint.token_type_hint, None);

    for (what, refused) in [
        (
            "CreateRequest",
            serde_json::from_value::<CreateRequest>(
                json!({ "role": "r", "justification": "j", "approved": true }),
            )
            .err(),
        ),
        (
            "ReviewInput",
            serde_json::from_value::<ReviewInput>(json!({ "decision": "approve", "as": "bob" }))
                .err(),
        ),
        (
            "ReasonInput",
            serde_json::from_value::<ReasonInput>(json!({ "why": "x" })).err(),
        ),
        (
            "AcknowledgeInput",
            serde_json::from_value::<AcknowledgeInput>(json!({ "note": "x" })).err(),
        ),
        (
            "ExtendInput",
            serde_json::from_value::<ExtendInput>(json!({ "duration_secs": 60, "force": true }))
                .err(),
        ),
    ] {
        let err = refused.unwrap_or_else(|| panic!("{what} accepted an unknown field"));
        assert!(err.to_string().contains("unknown field"), "{what}: {err}");
    }
}

#[test]
fn grants_and_credentials() {
    holds("grant.json", revoked_grant());
    holds(
        "credential.json",
        Credential {
            grant_id: "gr_0123456789ab".into(),
            role: "prod-db-admin".into(),
            token_type: "Bearer".into(),
            token: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln".into(),
            issued_at: t("2026-06-01T09:05:00Z"),
            expires_at: t("2026-06-01T09:10:00Z"),
            access: None,
        },
    );
    holds(
        "credential_claims.json",
        CredentialClaims {
            iss: "hoistd".into(),
            sub: "alice".into(),
            aud: "prod-db-admin".into(),
            iat: 1_780_304_400,
            exp: 1_780_304_700,
            jti: "cred_0123456789ab".into(),
            role: "prod-db-admin".into(),
            grant_id: "gr_0123456789ab".into(),
            scope: "postgres://db-prod-1.internal:5432".into(),
            act: None,
        },
    );
    holds(
        "credential_claims_workload.json",
        CredentialClaims {
            iss: "hoistd".into(),
            sub: "workload:deploy:repo:acme/app:ref:refs/heads/main".into(),
            aud: "deploy".into(),
            iat: 1_780_304_400,
            exp: 1_780_304_700,
            jti: "cred_0123456789ab".into(),
            role: "deploy".into(),
            grant_id: "gr_0123456789ab".into(),
            scope: "deploy".into(),
            act: Some(Actor {
                sub: "workload:deploy:repo:acme/app:ref:refs/heads/main".into(),
            }),
        },
    );
    holds(
        "token_exchange_input.json",
        TokenExchangeInput {
            grant_type: TOKEN_EXCHANGE_GRANT.into(),
            subject_token: "eyJ.eyJ.sig".into(),
            subject_token_type: JWT_TOKEN_TYPE.into(),
            resource: Some("urn:hoist:role:deploy".into()),
            scope: None,
            requested_ttl: Some("300".into()),
            requested_token_type: None,
        },
    );
    holds(
        "token_exchange_response.json",
        TokenExchangeResponse {
            access_token: "eyJ.eyJ.sig".into(),
            issued_token_type: JWT_TOKEN_TYPE.into(),
            token_type: "Bearer".into(),
            expires_in: 300,
            scope: "deploy".into(),
            grant_id: "gr_0123456789ab".into(),
            request_id: "req_0123456789ab".into(),
            expires_at: t("2026-06-01T09:10:00Z"),
            access: None,
        },
    );
    holds(
        "token_pending.json",
        TokenPending {
            status: "approval".into(),
            request_id: "req_0123456789ab".into(),
            grant_id: None,
            interval: 2,
        },
    );
    holds(
        "oauth_error.json",
        OAuthError {
            error: "invalid_request".into(),
            error_description: "the subject token has expired".into(),
            code: WorkloadErrorCode::TokenExpired,
        },
    );
    holds(
        "workload_revoked.json",
        WorkloadRevoked {
            grant_id: "gr_0123456789ab".into(),
            state: "revoked".into(),
        },
    );
    holds(
        "task_withdrawn.json",
        TaskWithdrawn {
            request_id: "req_0123456789ab".into(),
            request_state: "cancelled".into(),
            grant_id: None,
            grant_state: None,
        },
    );
    holds(
        "introspection_active.json",
        Introspection {
            active: true,
            sub: Some("alice".into()),
            scope: Some("postgres://db-prod-1.internal:5432".into()),
            grant_id: Some("gr_0123456789ab".into()),
            iss: Some("hoistd".into()),
            aud: Some("prod-db-admin".into()),
            exp: Some(1_780_304_700),
            iat: Some(1_780_304_400),
            token_type: Some("Bearer".into()),
        },
    );
    holds("introspection_inactive.json", Introspection::default());
    holds(
        "jwks.json",
        Jwks {
            keys: vec![Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
                kid: "hoistd-1".into(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
            }],
        },
    );
}

#[test]
fn identity_roles_and_health() {
    holds(
        "health.json",
        Health {
            status: "ok".into(),
            version: "0.1.0".into(),
            time: t("2026-06-01T09:00:00.001Z"),
        },
    );
    holds(
        "auth_config.json",
        AuthConfig {
            issuers: vec![AuthIssuer {
                issuer: "https://login.example/realms/eng".into(),
                client_id: "hoist".into(),
                scopes: strings(&["openid", "profile", "offline_access"]),
                flows: strings(&["device", "browser"]),
            }],
            static_tokens: true,
        },
    );
    holds(
        "me.json",
        Me {
            user: "bob".into(),
            display_name: "Bob Baker".into(),
            groups: strings(&["engineers", "prod-approvers"]),
            approver_for: strings(&["prod-db-admin", "prod-k8s-admin"]),
            auditor: false,
        },
    );
    holds(
        "role.json",
        Role {
            id: "prod-db-admin".into(),
            name: "Production database admin".into(),
            description: "Superuser on the primary Postgres cluster.".into(),
            scope: "postgres://db-prod-1.internal:5432".into(),
            default_duration_secs: 1800,
            max_duration_secs: 7200,
            approval: ApprovalRule {
                approvals: 1,
                approver_groups: strings(&["prod-approvers"]),
                approvers: strings(&["bob", "dave"]),
            },
            break_glass: true,
            ticket: TicketRule {
                required: true,
                pattern: Some("^(?:(INC|CHG)-[0-9]+)$".into()),
            },
            min_justification: 20,
            target: None,
            tier: None,
        },
    );
}

#[test]
fn audit_errors_and_live_events() {
    holds(
        "audit_event.json",
        AuditEvent {
            seq: 42,
            at: t("2026-06-01T09:20:00.500Z"),
            kind: AuditKind::Revoked,
            actor: "carol".into(),
            subject: Some("alice".into()),
            role: Some("prod-db-admin".into()),
            request_id: Some("req_0123456789ab".into()),
            grant_id: Some("gr_0123456789ab".into()),
            incident: Some("INC-4711".into()),
            reason: Some("failover done".into()),
            details: json!({ "ended_at": "2026-06-01T09:20:00.500Z", "early": true }),
            prev_hash: "0".repeat(64),
            hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        },
    );
    holds(
        "api_error.json",
        ApiError {
            code: ErrorCode::JustificationTooShort,
            message: "justification is 5 characters; role `prod-db-admin` needs at least 20".into(),
        },
    );
    let mut active = revoked_grant();
    active.state = GrantState::Active;
    active.ended_at = None;
    active.revoked_by = None;
    active.revoke_reason = None;
    active.break_glass = false;
    active.ticket = None;
    active.incident = None;
    holds(
        "live_events.json",
        vec![
            LiveEvent::Hello {
                user: "alice".into(),
                time: t("2026-06-01T09:00:00Z"),
                ordered: true,
            },
            LiveEvent::Resync {
                time: t("2026-06-01T09:00:01Z"),
            },
            LiveEvent::Grant { grant: active },
            LiveEvent::Request {
                request: minimal_request(),
            },
        ],
    );
}

/// Every value of every enum, by its wire name, in one document: a value
/// added, renamed or dropped shows up here.
#[test]
fn enums() {
    let names = document("enums.json");
    let list = |key: &str| names[key].clone();
    let all = |key: &str, values: Value| assert_eq!(list(key), values, "{key}");
    all(
        "request_states",
        serde_json::to_value(RequestState::ALL).unwrap(),
    );
    all("audit_kinds", serde_json::to_value(AuditKind::ALL).unwrap());
    all(
        "workload_error_codes",
        serde_json::to_value(WorkloadErrorCode::ALL).unwrap(),
    );
    all(
        "request_kinds",
        serde_json::to_value([RequestKind::Access, RequestKind::Extension]).unwrap(),
    );
    all(
        "grant_states",
        serde_json::to_value([GrantState::Active, GrantState::Expired, GrantState::Revoked])
            .unwrap(),
    );
    all(
        "decisions",
        serde_json::to_value([Decision::Approve, Decision::Deny]).unwrap(),
    );
    use ErrorCode::*;
    let codes = [
        InvalidBody,
        InvalidParameter,
        Unauthenticated,
        Forbidden,
        NotFound,
        UnknownRole,
        NotEligible,
        InvalidDuration,
        DurationTooLong,
        InvalidStart,
        InvalidReference,
        TicketRequired,
        TicketInvalid,
        JustificationTooShort,
        JustificationTooLong,
        CommentRequired,
        BreakGlassNotAllowed,
        NoApprovers,
        InvalidState,
        SelfReview,
        AlreadyReviewed,
        IdempotencyKeyReused,
        PayloadTooLarge,
        BadRequest,
        MethodNotAllowed,
        RequestTimeout,
        UriTooLong,
        HeadersTooLarge,
        RateLimited,
        StepUpRequired,
        Unavailable,
        Internal,
    ];
    // A code added to the enum must be added above (and to the document):
    // this match stops compiling until it is.
    for code in codes {
        match code {
            InvalidBody
            | InvalidParameter
            | Unauthenticated
            | Forbidden
            | NotFound
            | UnknownRole
            | NotEligible
            | InvalidDuration
            | DurationTooLong
            | InvalidStart
            | InvalidReference
            | TicketRequired
            | TicketInvalid
            | JustificationTooShort
            | JustificationTooLong
            | CommentRequired
            | BreakGlassNotAllowed
            | NoApprovers
            | InvalidState
            | SelfReview
            | AlreadyReviewed
            | IdempotencyKeyReused
            | PayloadTooLarge
            | BadRequest
            | MethodNotAllowed
            | RequestTimeout
            | UriTooLong
            | HeadersTooLarge
            | RateLimited
            | StepUpRequired
            | Unavailable
            | Internal => {}
            // Read from a newer broker, never sent: not in the document.
            Other => unreachable!(),
        }
    }
    all("error_codes", serde_json::to_value(codes).unwrap());
    all(
        "access_states",
        serde_json::to_value(AccessState::ALL).unwrap(),
    );
    for state in AccessState::ALL {
        assert_eq!(json!(state.as_str()), serde_json::to_value(state).unwrap());
        assert_eq!(AccessState::parse(state.as_str()), Some(state));
    }
    // Each name parses back to its own value, and the strings the code
    // uses for states and kinds are the wire's.
    let back: Vec<ErrorCode> = serde_json::from_value(list("error_codes")).unwrap();
    assert_eq!(back, codes);
    for state in RequestState::ALL {
        assert_eq!(json!(state.as_str()), serde_json::to_value(state).unwrap());
        assert_eq!(RequestState::parse(state.as_str()), Some(state));
    }
    for kind in AuditKind::ALL {
        assert_eq!(json!(kind.as_str()), serde_json::to_value(&kind).unwrap());
        assert_eq!(AuditKind::parse(kind.as_str()), kind);
    }
    for state in [GrantState::Active, GrantState::Expired, GrantState::Revoked] {
        assert_eq!(json!(state.as_str()), serde_json::to_value(state).unwrap());
        assert_eq!(GrantState::parse(state.as_str()), Some(state));
    }
}

/// A grant whose role has a target carries where its access is; the
/// credential for it, how to use that access; a role, where it grants it.
#[test]
fn targets() {
    let mut provisioning = revoked_grant();
    provisioning.state = GrantState::Active;
    provisioning.ended_at = None;
    provisioning.revoked_by = None;
    provisioning.revoke_reason = None;
    provisioning.break_glass = false;
    provisioning.incident = None;
    provisioning.access = Some(TargetAccess {
        target: "db-prod-1".into(),
        kind: "postgres".into(),
        state: AccessState::Failed,
        reason: Some("db-prod-1 unreachable: connection refused".into()),
        attempts: 3,
        next_attempt_at: Some(t("2026-06-01T09:05:04.250Z")),
        updated_at: t("2026-06-01T09:05:02.125Z"),
        live_until: None,
    });
    holds("grant_with_access.json", provisioning);
    holds(
        "target_access_live.json",
        TargetAccess {
            target: "k8s-prod".into(),
            kind: "webhook".into(),
            state: AccessState::Live,
            reason: None,
            attempts: 1,
            next_attempt_at: None,
            updated_at: t("2026-06-01T09:05:00.040Z"),
            live_until: None,
        },
    );
    let user = "hoist_alice_0123456789ab";
    let password = "Zm9vYmFyYmF6cXV4cXV1eA";
    let uri = format!(
        "postgresql://{user}:{password}@db-prod-1.internal:5432/orders?sslmode=verify-full"
    );
    holds(
        "credential_with_access.json",
        Credential {
            grant_id: "gr_0123456789ab".into(),
            role: "prod-db-admin".into(),
            token_type: "Bearer".into(),
            token: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln".into(),
            issued_at: t("2026-06-01T09:05:00Z"),
            expires_at: t("2026-06-01T09:10:00Z"),
            access: Some(AccessCredential {
                target: "db-prod-1".into(),
                kind: "postgres".into(),
                env: [
                    ("PGHOST", "db-prod-1.internal"),
                    ("PGPORT", "5432"),
                    ("PGDATABASE", "orders"),
                    ("PGUSER", user),
                    ("PGPASSWORD", password),
                    ("PGSSLMODE", "verify-full"),
                ]
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
                command: Some(format!(
                    "PGPASSWORD={password} psql 'postgresql://{user}@db-prod-1.internal:5432/orders?sslmode=verify-full'"
                )),
                uri: Some(uri),
                expires_at: t("2026-06-01T09:35:00Z"),
                certificate: None,
            }),
        },
    );
    holds(
        "access_credential_minimal.json",
        AccessCredential {
            target: "k8s-prod".into(),
            kind: "webhook".into(),
            env: Default::default(),
            uri: None,
            command: None,
            expires_at: t("2026-06-01T09:35:00Z"),
            certificate: None,
        },
    );
    holds(
        "role_with_target.json",
        Role {
            id: "prod-db-admin".into(),
            name: "Production database admin".into(),
            description: "Member of app_admin on db-prod-1.".into(),
            scope: "postgres://db-prod-1.internal:5432".into(),
            default_duration_secs: 1800,
            max_duration_secs: 7200,
            approval: ApprovalRule {
                approvals: 1,
                approver_groups: strings(&["prod-approvers"]),
                approvers: strings(&["bob", "dave"]),
            },
            break_glass: false,
            ticket: TicketRule {
                required: false,
                pattern: None,
            },
            min_justification: 20,
            target: Some(RoleTarget {
                name: "db-prod-1".into(),
                kind: "postgres".into(),
                principals: Vec::new(),
            }),
            tier: Some(1),
        },
    );
}

/// A broker that knows no targets, or one from before them, writes no
/// `access` or `target` at all, and such documents still parse.
#[test]
fn targets_are_absent_where_there_are_none() {
    let grant = serde_json::to_value(revoked_grant()).unwrap();
    assert!(grant.get("access").is_none(), "{grant}");
    assert_eq!(document("grant.json"), grant);
    let role: Role = serde_json::from_value(document("role.json")).unwrap();
    assert_eq!(role.target, None);
    let credential: Credential = serde_json::from_value(document("credential.json")).unwrap();
    assert_eq!(credential.access, None);
}

/// A broker from before `ordered` says nothing of it: its copies are taken
/// as unordered.
#[test]
fn a_hello_without_ordered_is_from_a_broker_that_does_not_order() {
    let hello: LiveEvent = serde_json::from_value(serde_json::json!({
        "type": "hello", "user": "alice", "time": "2026-06-01T09:00:00Z"
    }))
    .unwrap();
    assert!(matches!(hello, LiveEvent::Hello { ordered: false, .. }));
}
