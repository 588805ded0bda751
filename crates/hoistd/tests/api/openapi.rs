//! The OpenAPI contract lists every endpoint and its error responses.

use std::collections::BTreeSet;

use crate::helpers::*;

const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/auth/config"),
    ("get", "/v1/me"),
    ("get", "/v1/roles"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/v1/introspect"),
    ("get", "/v1/audit"),
    ("get", "/v1/requests"),
    ("post", "/v1/requests"),
    ("post", "/v1/requests/validate"),
    ("get", "/v1/requests/{id}"),
    ("get", "/v1/requests/{id}/history"),
    ("post", "/v1/requests/{id}/reviews"),
    ("post", "/v1/requests/{id}/cancel"),
    ("post", "/v1/requests/{id}/claim"),
    ("delete", "/v1/requests/{id}/claim"),
    ("post", "/v1/requests/{id}/acknowledge"),
    ("get", "/v1/reviews"),
    ("get", "/v1/break-glass"),
    ("get", "/v1/grants"),
    ("get", "/v1/grants/{id}"),
    ("post", "/v1/grants/{id}/revoke"),
    ("post", "/v1/grants/{id}/extend"),
    ("get", "/v1/grants/{id}/credential"),
    ("post", "/v1/grants/{id}/credential"),
    ("get", "/v1/events"),
    ("get", "/v1/incidents/{reference}"),
    ("post", "/v1/token"),
    ("post", "/v1/token/withdraw"),
    ("post", "/v1/token/revoke"),
    ("get", "/v1/ssh/ca"),
    ("get", "/v1/ssh/krl"),
];

#[tokio::test]
async fn the_served_document_is_openapi_3_1_and_lists_every_endpoint_with_its_errors() {
    let broker = TestBroker::start().await;
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", broker.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let mut listed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            listed.insert((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            // The exchange takes no bearer token: its subject token is the proof.
            // Hosts fetch the SSH CA and KRL with no token, as the JWKS.
            let public = matches!(
                path.as_str(),
                "/v1/health"
                    | "/v1/auth/config"
                    | "/.well-known/jwks.json"
                    | "/v1/token"
                    | "/v1/token/withdraw"
                    | "/v1/ssh/ca"
                    | "/v1/ssh/krl"
            );
            if !public {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents no 401"
                );
                let error_ref = &responses["401"]["content"]["application/json"]["schema"]["$ref"];
                let expected = if path.starts_with("/v1/token") {
                    "#/components/schemas/OAuthError"
                } else {
                    "#/components/schemas/ApiError"
                };
                assert_eq!(error_ref, expected, "{method} {path}");
                if expected.ends_with("/ApiError") {
                    // Whatever reads the store may find it unavailable.
                    let unavailable =
                        &responses["503"]["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(unavailable, expected, "{method} {path} documents no 503");
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(listed, expected);
    for schema in [
        "AccessRequest",
        "Grant",
        "ApiError",
        "ErrorCode",
        "AuditEvent",
        "LiveEvent",
        "CreateRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

/// The document states what the server enforces: page-size limits, the
/// state filter's values, integer bounds, the event stream's items, and the
/// errors any operation can meet.
#[tokio::test]
async fn the_document_states_limits_enums_and_every_error() {
    let broker = TestBroker::start().await;
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", broker.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let param = |path: &str, name: &str| -> serde_json::Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
            .clone()
    };
    for path in ["/v1/requests", "/v1/grants", "/v1/audit"] {
        let limit = param(path, "limit");
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&serde_json::json!(1), &serde_json::json!(10000)),
            "{path}: {limit}"
        );
    }
    let state = param("/v1/requests", "state");
    assert_eq!(state["explode"], false, "{state}");
    let items = &state["schema"]["items"];
    let states = match items.get("$ref") {
        Some(reference) => {
            let name = reference.as_str().unwrap().rsplit('/').next().unwrap();
            doc["components"]["schemas"][name]["enum"].clone()
        }
        None => items["enum"].clone(),
    };
    assert!(
        states
            .as_array()
            .is_some_and(|s| s.contains(&"pending".into())),
        "{state}"
    );
    assert_eq!(param("/v1/audit", "after")["schema"]["minimum"], 0);
    let duration = &doc["components"]["schemas"]["ExtendInput"]["properties"]["duration_secs"];
    assert_eq!(
        (&duration["minimum"], &duration["maximum"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(hoist_api::MAX_DURATION_SECS)
        ),
        "{duration}"
    );

    let stream = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["schema"];
    assert_eq!(
        stream["properties"]["data"]["contentSchema"]["$ref"], "#/components/schemas/LiveEvent",
        "{stream}"
    );
    assert_eq!(stream["required"], serde_json::json!(["event", "data"]));

    // A filed request links to what can be done with it and its grant.
    let links = &doc["paths"]["/v1/requests"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["CancelRequest"]["parameters"]["id"],
        "$response.body#/id"
    );
    assert_eq!(
        links["RevokeGrant"]["operationRef"],
        "#/paths/~1v1~1grants~1{id}~1revoke/post"
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // The workloads' routes answer in RFC 6749's form.
            let oauth = path.starts_with("/v1/token");
            for status in ["400", "408", "414", "431", "500"] {
                let schema = if oauth && ["400", "500"].contains(&status) {
                    "#/components/schemas/OAuthError"
                } else {
                    "#/components/schemas/ApiError"
                };
                assert_eq!(
                    operation["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                    schema,
                    "{method} {path} documents no {status}"
                );
            }
        }
    }
}

/// What the document bounds, the server refuses outside the bounds.
#[tokio::test]
async fn parameters_outside_their_documented_bounds_are_refused() {
    let broker = TestBroker::start().await;
    let erin = broker.as_user("erin");
    for path in [
        "/v1/requests?limit=0",
        "/v1/requests?limit=10001",
        "/v1/grants?limit=10001",
        "/v1/audit?limit=0",
        "/v1/audit?after=-1",
        "/v1/requests?state=pending,bogus",
    ] {
        let answer = erin
            .call::<serde_json::Value>(erin.raw(reqwest::Method::GET, path))
            .await;
        refused(
            answer,
            reqwest::StatusCode::BAD_REQUEST,
            hoist_api::ErrorCode::InvalidParameter,
        );
    }
    let ok: Vec<hoist_api::AccessRequest> = erin
        .get("/v1/requests?limit=10000&state=pending,active")
        .await
        .unwrap();
    assert!(ok.is_empty());
    // A whole number written with a zero fraction is the integer it is.
    let alice = broker.as_user("alice");
    let filed: hoist_api::AccessRequest = alice
        .call(
            alice
                .raw(reqwest::Method::POST, "/v1/requests")
                .header("content-type", "application/json")
                .body(r#"{"role":"logs","justification":"reading logs","duration_secs":60.0}"#),
        )
        .await
        .unwrap();
    assert_eq!(filed.duration_secs, 60);
}

/// The document passes a real OpenAPI 3.1 validator (openapi-spec-validator,
/// from PyPI; `scripts/test` installs it).
#[tokio::test]
async fn the_document_passes_an_openapi_3_1_validator() {
    let broker = TestBroker::start().await;
    let text = reqwest::get(format!("{}/openapi.json", broker.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = broker.dir().join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the tests with scripts/test"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("No module named"),
        "openapi-spec-validator is not installed for {python}; scripts/test installs it: {said}"
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("OK"), "{said}");
}

/// schemathesis (from PyPI; `scripts/test` installs it) runs every one of
/// its checks against a live broker at a fixed seed, as alice (requester
/// and approver): schema-valid input accepted, schema-invalid input
/// refused, every answer as documented, the event stream's items included.
/// Any failure it finds fails this test, with its report.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_with_every_check() {
    let broker = TestBroker::start().await;
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let st = std::path::Path::new(&python).with_file_name("st");
    assert!(
        st.exists(),
        "schemathesis is not installed next to {python}; run the tests with scripts/test"
    );
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let out = std::process::Command::new(&st)
        .args(["--config-file", config, "--no-color", "run"])
        .arg(format!("{}/openapi.json", broker.url()))
        .args([
            "--checks",
            "all",
            "--seed",
            "20261130",
            "--max-examples",
            "20",
        ])
        .args(["--workers", "1", "--generation-database", "none"])
        .args(["--header", "Authorization: Bearer t-alice"])
        .current_dir(broker.dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains(" passed"), "{said}");
    assert!(!said.contains("failures"), "{said}");
}
