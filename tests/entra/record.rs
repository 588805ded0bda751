//! `hoist debug record` against the fake Graph: the recording holds the
//! exchanges, and nothing of the tenant's tokens, names or ids.

use std::os::unix::fs::PermissionsExt;

use hoist_api::AccessRequest;
use serde_json::Value;

use super::commands::{Hoist, stderr};
use super::{Tenant, graph, run};

#[test]
fn a_recording_keeps_no_token_name_or_id_of_the_tenant() {
    run(async {
        let tenant = Tenant::start().await;
        let alice = Hoist::signed_in(&tenant, "alice").await;
        let file = alice.config.path().join("recordings/pim.json");
        let file_arg = file.to_str().unwrap();
        // The profile given before `debug` is the recorded command's.
        let out = alice.run(&[
            "debug",
            "record",
            "--out",
            file_arg,
            "--",
            "request",
            "Exchange Administrator",
            "--reason",
            "Mailbox migration for Alice",
            "--ticket",
            "CHG-2291",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let filed: AccessRequest = serde_json::from_slice(&out.stdout).unwrap();
        let said = stderr(&out);
        assert!(said.contains("recorded"), "{said}");
        assert!(said.contains("display names"), "{said}");
        assert!(said.contains("user principal name"), "{said}");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let text = std::fs::read_to_string(&file).unwrap();
        let recording: Value = serde_json::from_str(&text).unwrap();
        let exchanges = recording["exchanges"].as_array().unwrap();
        let posts: Vec<&Value> = exchanges.iter().filter(|e| e["method"] == "POST").collect();
        assert_eq!(posts.len(), 1, "{text}");
        assert_eq!(posts[0]["response"]["status"], 201);
        assert_eq!(
            posts[0]["request"]["headers"]["authorization"],
            "Bearer <token>"
        );
        // The same id has the same placeholder: the principal of the
        // activation is who /me said I am.
        let me = exchanges
            .iter()
            .find(|e| {
                e["url"]
                    .as_str()
                    .unwrap()
                    .ends_with("/v1.0/me?$select=id,userPrincipalName,displayName")
            })
            .expect("the /me exchange");
        let my_id = &me["response"]["body"]["id"];
        assert!(my_id.is_string());
        assert_eq!(&posts[0]["request"]["body"]["principalId"], my_id);

        let graph_id = filed.id.strip_prefix("dir:").unwrap();
        let survivors: Vec<&str> = [
            alice.token.as_str(),
            graph::ALICE,
            graph::BOB,
            graph::DAVE,
            graph::USER_ADMIN,
            graph::EXCHANGE_ADMIN,
            graph::SECURITY_ADMIN,
            graph::PROD_GROUP,
            graph_id,
            "alice@contoso.example",
            "contoso",
            "Alice",
            "Bob",
            "Dave",
            "Exchange Administrator",
            "prod-dba",
            "Mailbox migration",
            "CHG-2291",
            "ServiceNow",
            "eyJ",
            // The requester's particulars, from the expanded principal.
            "+44 20 7946 0018",
            "Site reliability engineer",
            "2/14",
            "en-GB",
        ]
        .into_iter()
        .filter(|secret| text.contains(secret))
        .collect();
        assert!(survivors.is_empty(), "{survivors:?} survived in:\n{text}");
    });
}

#[test]
fn only_an_entra_profile_is_recorded() {
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.toml"),
        "[profiles.work]\nbroker = \"https://hoist.example\"\n",
    )
    .unwrap();
    let file = config.path().join("r.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args([
            "debug",
            "record",
            "--out",
            file.to_str().unwrap(),
            "--",
            "--profile",
            "work",
            "roles",
        ])
        .env("HOIST_CONFIG_DIR", config.path())
        .env_remove("HOIST_BROKER")
        .env_remove("HOIST_PROFILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("name an Entra profile"),
        "{}",
        stderr(&out)
    );
    assert!(!file.exists());
}
