//! The Entra backend and the fake Graph held to Graph's own OpenAPI
//! description (the part hoist uses, generated from Graph's CSDL by
//! `scripts/graph-openapi/generate`): every request hoist sends and every
//! answer the fake gives in a whole story, and every fixture the fake
//! answers from, checked by openapi-core (`graph_contract.py`).
//!
//! The description is committed in `tests/entra/graph-openapi/` (Microsoft's
//! text under msgraph-metadata's MIT licence, carried in each file and in
//! `LICENSE` there), so the tests need no checkout of msgraph-metadata;
//! `HOIST_GRAPH_OPENAPI` points them at another, e.g. one just regenerated.

use std::path::{Path, PathBuf};

use hoist_api::{Decision, RequestState};
use serde_json::{Value, json};

use super::{Tenant, body, graph, role_id, run};

fn descriptions() -> PathBuf {
    let dir = std::env::var_os("HOIST_GRAPH_OPENAPI")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/entra/graph-openapi"));
    assert!(
        dir.join("v1.0.json").is_file() && dir.join("beta.json").is_file(),
        "Graph's OpenAPI description is not in {}: regenerate it with \
         scripts/graph-openapi/generate from a checkout of microsoftgraph/msgraph-metadata",
        dir.display()
    );
    dir
}

/// Runs the validator; answers its problems and the operations reached.
fn validate(checks: &Value) -> (Vec<String>, Vec<String>) {
    let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/entra/graph_contract.py");
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .arg(descriptions())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the tests with scripts/test"));
    let input = serde_json::to_vec(checks).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the validator failed (openapi-core is installed by scripts/test): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    (strings("problems"), strings("operations"))
}

/// What the fake received and answered, as the validator reads it.
fn exchanges(graph: &graph::FakeGraph) -> Vec<Value> {
    graph
        .received()
        .into_iter()
        .map(|r| {
            json!({ "method": r.method, "url": r.uri, "request": r.body,
                    "status": r.status, "response": r.answer })
        })
        .collect()
}

/// Every fixture, named by its version and Graph type (its path).
fn fixtures() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/entra/fixtures");
    let mut found = Vec::new();
    for version in ["v1.0", "beta"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(version))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let value: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let schema = file.file_stem().unwrap().to_str().unwrap().to_string();
            found.push(
                json!({ "name": format!("{version}/{schema}"), "version": version,
                               "schema": schema, "value": value }),
            );
        }
    }
    found
}

/// Every operation the description holds, as the validator names them.
fn described() -> Vec<String> {
    let mut all = Vec::new();
    for version in ["v1.0", "beta"] {
        let text = std::fs::read_to_string(descriptions().join(format!("{version}.json"))).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    all.push(format!("{} /{version}{path}", method.to_uppercase()));
                }
            }
        }
    }
    all.sort();
    all
}

#[test]
fn the_fixtures_are_graphs_documented_shapes() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 12, "{}", fixtures.len());
    let (problems, _) = validate(&json!({ "fixtures": fixtures }));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_request_and_answer_of_the_whole_story_is_graphs_shape() {
    run(async {
        let tenant = Tenant::start().await;
        tenant.graph.require_group_approval(&[graph::BOB]);
        let alice = tenant.backend("alice").await;
        let bob = tenant.backend("bob").await;
        alice.roles().await.unwrap();

        // A directory role: activate with a ticket, propagate, deactivate.
        let dir = role_id(graph::USER_ADMIN);
        alice
            .file(&body(&dir, Some("CHG-1024"), Some(1800)), "k")
            .await
            .unwrap();
        tenant.graph.propagate();
        let grant = alice.grants(false).await.unwrap().remove(0);
        alice.revoke(&grant.id, Some("done".into())).await.unwrap();
        // Refused by policy: Graph's error body.
        let exchange = role_id(graph::EXCHANGE_ADMIN);
        alice
            .file(&body(&exchange, None, None), "k")
            .await
            .unwrap_err();
        // Waiting for approval: cancelled, then filed again and approved on beta.
        let pending = alice
            .file(&body(&exchange, Some("CHG-2291"), None), "k")
            .await
            .unwrap();
        alice.cancel(&pending.id, None).await.unwrap();
        let pending = alice
            .file(&body(&exchange, Some("CHG-2291"), None), "k")
            .await
            .unwrap();
        assert_eq!(bob.review_queue().await.unwrap().len(), 1);
        bob.review(&pending.id, Decision::Approve, Some("ok".into()))
            .await
            .unwrap();

        // A group membership: the same on its own paths, approved on v1.0.
        let group = format!("grp:{}:member", graph::PROD_GROUP);
        let waiting = alice.file(&body(&group, None, None), "k").await.unwrap();
        alice.cancel(&waiting.id, None).await.unwrap();
        let waiting = alice.file(&body(&group, None, None), "k").await.unwrap();
        let decided = bob
            .review(&waiting.id, Decision::Approve, None)
            .await
            .unwrap();
        assert_eq!(decided.state, RequestState::Approved);
        tenant.graph.propagate();
        let held = alice.grants(false).await.unwrap();
        for grant in held {
            alice.revoke(&grant.id, None).await.unwrap();
        }
        alice.requests(50).await.unwrap();

        let exchanges = exchanges(&tenant.graph);
        assert!(exchanges.len() > 30, "{}", exchanges.len());
        let (problems, reached) = validate(&json!({ "exchanges": exchanges }));
        assert!(problems.is_empty(), "{problems:#?}");
        // The story reached every operation the description holds.
        assert_eq!(reached, described());
    });
}

/// The check can fail: a request Graph would refuse, an answer of the wrong
/// type and a fixture that is not Graph's shape are each reported.
#[test]
fn a_wrong_request_answer_or_fixture_is_caught() {
    let post = "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests";
    let wrong = json!({
        "exchanges": [
            { "method": "POST", "url": post, "status": 201, "response": { "id": "r1", "status": "Provisioned" },
              "request": { "action": "selfActivte", "principalId": "p", "roleDefinitionId": "d",
                           "directoryScopeId": "/", "reason": "a property Graph has not" } },
            { "method": "GET",
              "url": "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests/filterByCurrentUser(on='principal')",
              "request": null, "status": 200,
              "response": { "value": [ { "id": "r1", "status": 3, "createdDateTime": "yesterday" } ] } },
            { "method": "PATCH",
              "url": "/v1.0/identityGovernance/privilegedAccess/group/assignmentApprovals/a/steps/s",
              "request": { "reviewResult": "Approve" }, "status": 204, "response": null },
        ],
        "fixtures": [
            { "name": "wrong", "version": "v1.0", "schema": "microsoft.graph.unifiedRoleAssignmentScheduleInstance",
              "value": { "id": "i", "startDateTime": 17, "assignmentState": "Active" } },
        ],
    });
    let (problems, _) = validate(&wrong);
    let said = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(said("'selfActivte' is not valid"), "{problems:#?}");
    assert!(said("`reason` is not a property"), "{problems:#?}");
    assert!(said("3 is not of type 'string'"), "{problems:#?}");
    assert!(said("'yesterday' is not a 'date-time'"), "{problems:#?}");
    assert!(
        said("/steps/s: no operation of Graph's description"),
        "{problems:#?}"
    );
    assert!(said("fixture wrong: startDateTime"), "{problems:#?}");
    assert!(said("`assignmentState` is not a property"), "{problems:#?}");
}
