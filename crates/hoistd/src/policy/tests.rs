//! The policy parser: defaults, tokens, and errors that name file, line and column.

use super::*;

const MINIMAL: &str = r#"
[users.alice]
token_sha256 = "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"

[groups]
eng = ["alice"]

[[roles]]
id = "db"
eligible_groups = ["eng"]
default_duration = "30m"
max_duration = "1h"
"#;

fn refused(text: &str) -> String {
    Policy::parse("p.toml", text).unwrap_err().to_string()
}

#[test]
fn a_minimal_policy_parses_with_defaults() {
    let policy = Policy::parse("p.toml", MINIMAL).unwrap();
    let role = policy.role("db").unwrap();
    assert_eq!(role.name, "db");
    assert_eq!(role.max_duration, Duration::from_secs(3600));
    assert!(policy.is_eligible("alice", role));
    assert!(!policy.is_approver("alice", role));
    assert_eq!(policy.settings.pending_ttl, Duration::from_secs(3600));
}

#[test]
fn the_brokers_own_name_is_no_users_name() {
    for name in ["hoistd", "HoistD"] {
        let text = format!("{MINIMAL}\n[users.{name}]\n");
        let err = refused(&text);
        assert!(
            err.contains(&format!("user name `{name}` is reserved")),
            "{err}"
        );
    }
}

#[test]
fn linked_identities_name_a_known_issuer_and_one_user_each() {
    let oidc = "\n[[oidc]]\nissuer = \"https://id.example/\"\nclient_id = \"hoist\"\n";
    let link = |user: &str, issuer: &str| {
        format!("\n[users.{user}]\nidentities = [{{ issuer = \"{issuer}\", subject = \"s-1\" }}]\n")
    };
    let policy = Policy::parse(
        "p.toml",
        &format!("{MINIMAL}{}{oidc}", link("bob", "https://id.example")),
    )
    .unwrap();
    assert_eq!(policy.linked("https://id.example", "s-1"), Some("bob"));
    assert_eq!(policy.linked("https://id.example", "s-2"), None);
    assert!(policy.defines("bob"));

    let err = refused(&format!(
        "{MINIMAL}{}{oidc}",
        link("bob", "https://other.example")
    ));
    assert!(err.contains("which no [[oidc]] names"), "{err}");
    let err = refused(&format!(
        "{MINIMAL}{}{}{oidc}",
        link("bob", "https://id.example"),
        link("carl", "https://id.example/")
    ));
    assert!(err.contains("both link subject `s-1`"), "{err}");
}

#[test]
fn static_tokens_are_matched_by_hash() {
    let policy = Policy::parse("p.toml", MINIMAL).unwrap();
    // sha256("test-token")
    assert!(policy.user_for_token("demo-alice").is_none());
    let hash = hex::encode(Sha256::digest(b"demo-alice"));
    let text = MINIMAL.replace(
        "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90",
        &hash,
    );
    let policy = Policy::parse("p.toml", &text).unwrap();
    assert_eq!(policy.user_for_token("demo-alice").unwrap().id, "alice");
}

#[test]
fn syntax_errors_name_file_line_and_reason() {
    let err = refused("[users.alice]\nname = \"A\"\n\n[[roles]]\nid = \n");
    assert!(err.starts_with("p.toml:5:"), "{err}");
}

#[test]
fn bad_durations_name_their_line() {
    let err = refused(&MINIMAL.replace("\"30m\"", "\"thirty\""));
    assert!(err.starts_with("p.toml:11:20:"), "{err}");
    assert!(err.contains("invalid duration \"thirty\""), "{err}");
}

#[test]
fn default_longer_than_max_is_refused_at_the_role() {
    let err = refused(&MINIMAL.replace("\"30m\"", "\"2h\""));
    assert!(err.starts_with("p.toml:8:1:"), "{err}");
    assert!(
        err.contains("default_duration 2h is longer than max_duration 1h"),
        "{err}"
    );
}

#[test]
fn unknown_references_are_refused() {
    assert!(
        refused(&MINIMAL.replace("eligible_groups = [\"eng\"]", "eligible_groups = [\"ops\"]"))
            .contains("unknown group `ops`")
    );
    assert!(
        refused(&MINIMAL.replace("eng = [\"alice\"]", "eng = [\"mallory\"]"))
            .contains("unknown user `mallory`")
    );
    assert!(refused(&format!("{MINIMAL}approvals = 1\n")).contains("names no approver_groups"));
    assert!(refused(&format!("{MINIMAL}colour = \"red\"\n")).contains("unknown field `colour`"));
}

#[test]
fn ticket_patterns_match_whole_references() {
    let text = format!("{MINIMAL}ticket_required = true\nticket_pattern = \"INC-[0-9]+\"\n");
    let policy = Policy::parse("p.toml", &text).unwrap();
    let pattern = policy.role("db").unwrap().ticket_pattern.as_ref().unwrap();
    assert!(pattern.is_match("INC-42"));
    assert!(!pattern.is_match("xINC-42"));
    assert!(!pattern.is_match("INC-42 and more"));
    assert!(
        refused(&format!("{MINIMAL}ticket_pattern = \"(\"\n")).contains("invalid ticket_pattern")
    );
}

#[test]
fn the_shipped_policies_parse() {
    for file in ["policy.example.toml", "demo-policy.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../assets")
            .join(file);
        Policy::load(&path).unwrap_or_else(|err| panic!("{err}"));
    }
}

#[test]
fn columns_count_characters_after_multi_byte_text() {
    // `ë` is two bytes: a column counted in bytes would say 15.
    let err = refused("[users.alice]\nname = \"Zoë\" junk\n");
    assert!(err.starts_with("p.toml:2:14:"), "{err}");
    // Multi-byte text on the lines before the error moves no column.
    let err = refused(
        &MINIMAL
            .replace("id = \"db\"", "id = \"db\"\nname = \"Données 🦀\"")
            .replace("\"30m\"", "\"thirty\""),
    );
    assert!(err.starts_with("p.toml:12:20:"), "{err}");
}
