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
    ("get", "/v1/events"),
    ("get", "/v1/incidents/{reference}"),
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
            let public = matches!(
                path.as_str(),
                "/v1/health" | "/v1/auth/config" | "/.well-known/jwks.json"
            );
            if !public {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents no 401"
                );
                let error_ref = &responses["401"]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    error_ref, "#/components/schemas/ApiError",
                    "{method} {path}"
                );
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
