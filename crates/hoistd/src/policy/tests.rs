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

/// A grant lasts whole seconds: a duration under one, or with a fraction,
/// is refused at load rather than cut to nothing (or to less) at filing.
#[test]
fn role_durations_are_whole_seconds() {
    for (from, to) in [
        ("default_duration = \"30m\"", "default_duration = \"500ms\""),
        ("max_duration = \"1h\"", "max_duration = \"1500ms\""),
        ("default_duration = \"30m\"", "default_duration = \"0s\""),
    ] {
        let text = MINIMAL.replace(from, to);
        assert_ne!(text, MINIMAL);
        let err = refused(&text);
        assert!(err.contains("whole seconds, at least one"), "{to}: {err}");
    }
    let text = MINIMAL.replace("default_duration = \"30m\"", "default_duration = \"1s\"");
    assert!(Policy::parse("p.toml", &text).is_ok());
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

/// Two `[[oidc]]` entries for one issuer: the second would be shown to
/// clients and never applied to a token.
#[test]
fn an_issuer_is_defined_once() {
    let oidc = |client: &str| {
        format!("\n[[oidc]]\nissuer = \"https://id.example/\"\nclient_id = \"{client}\"\n")
    };
    let err = refused(&format!("{MINIMAL}{}{}", oidc("hoist"), oidc("other")));
    assert!(
        err.contains("oidc issuer `https://id.example` is defined twice"),
        "{err}"
    );
}

/// The broker's SSH CA signs for one ssh target at most: hosts trusting
/// it for one would let in another's certificates. Others have their own.
#[test]
fn the_brokers_ssh_ca_signs_for_one_target_at_most() {
    let ssh =
        |name: &str, ca: &str| format!("\n[[targets]]\nname = \"{name}\"\nkind = \"ssh\"\n{ca}");
    Policy::parse("p.toml", &format!("{MINIMAL}{}", ssh("hosts", ""))).unwrap();
    let err = refused(&format!("{MINIMAL}{}{}", ssh("dev", ""), ssh("prod", "")));
    assert!(
        err.contains("target `prod` is a second ssh target signed by the broker's SSH CA")
            && err.contains("would let in a certificate issued for `prod` too")
            && err.contains("ca = \"own\""),
        "{err}"
    );
    let err = refused(&format!(
        "{MINIMAL}{}{}",
        ssh("dev", "ca = \"broker\"\n"),
        ssh("prod", "")
    ));
    assert!(err.contains("second ssh target"), "{err}");
    // Each with a CA of its own, beside one signed by the broker's.
    let policy = Policy::parse(
        "p.toml",
        &format!(
            "{MINIMAL}{}{}{}",
            ssh("hosts", ""),
            ssh("dev", "ca = \"own\"\n"),
            ssh("prod", "ca = \"own\"\n")
        ),
    )
    .unwrap();
    let own: Vec<_> = policy
        .targets
        .iter()
        .filter(|t| t.own_ssh_ca())
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(own.len(), 2, "{own:?}");
    let err = refused(&format!("{MINIMAL}{}", ssh("dev", "ca = \"mine\"\n")));
    assert!(
        err.contains("target `dev`") && err.contains("mine"),
        "{err}"
    );
    for odd in ["ca = \"Broker\"\n", "ca = true\n", "ca = [\"own\"]\n"] {
        let err = refused(&format!("{MINIMAL}{}{}", ssh("dev", ""), ssh("prod", odd)));
        assert!(err.contains("target `prod`"), "{odd}: {err}");
    }
    // What a failed reload puts back (the old targets and the new ones)
    // keeps to one signed by the broker's CA: `hosts`, which left it for
    // its own in the reload, and `dev`, which took it, are not both.
    let old = Policy::parse("p.toml", &format!("{MINIMAL}{}", ssh("hosts", ""))).unwrap();
    let new = Policy::parse(
        "p.toml",
        &format!(
            "{MINIMAL}{}{}",
            ssh("hosts", "ca = \"own\"\n"),
            ssh("dev", "")
        ),
    )
    .unwrap();
    let restored = old.targets.with_added(&new.targets);
    let signed_by_brokers: Vec<_> = restored
        .iter()
        .filter(|t| t.kind() == "ssh" && !t.own_ssh_ca())
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(signed_by_brokers, ["hosts"]);
    let own = Policy::parse(
        "p.toml",
        &format!("{MINIMAL}{}", ssh("lab", "ca = \"own\"\n")),
    )
    .unwrap();
    assert!(old.targets.with_added(&own.targets).get("lab").is_some());
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

/// No duration in a policy goes beyond what the API allows a grant: a
/// role's default and maximum, the settings' times, a rate's period.
#[test]
fn durations_beyond_366_days_are_refused_where_written() {
    for (from, to) in [("\"1h\"", "\"400days\""), ("\"20m\"", "\"300000years\"")] {
        let err = refused(&MINIMAL.replace("\"30m\"", "\"20m\"").replace(from, to));
        assert!(err.contains("at most 366 days"), "{err}");
        assert!(err.starts_with("p.toml:1"), "{err}");
    }
    let settings = format!("[settings]\npending_ttl = \"2years\"\n{MINIMAL}");
    assert!(
        refused(&settings).starts_with("p.toml:2:"),
        "{}",
        refused(&settings)
    );
    assert!(
        Policy::parse("p.toml", &MINIMAL.replace("\"1h\"", "\"366days\"")).is_ok(),
        "366 days is the limit itself"
    );
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
    // Nobody would review a break-glass after the fact.
    assert!(
        refused(&format!("{MINIMAL}break_glass = true\n"))
            .contains("allows break_glass but names no approver_groups to review it")
    );
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
fn incident_patterns_match_whole_references() {
    let text = format!("[settings]\nincident_pattern = \"^INC-[0-9]+$\"\n{MINIMAL}");
    let policy = Policy::parse("p.toml", &text).unwrap();
    let pattern = policy.settings.incident_pattern.as_ref().unwrap();
    assert!(pattern.is_match("INC-4711"));
    assert!(!pattern.is_match("INC-4711x"));
    assert!(!pattern.is_match("see INC-4711"));
    assert!(
        Policy::parse("p.toml", MINIMAL)
            .unwrap()
            .settings
            .incident_pattern
            .is_none()
    );
    let refusal = refused(&format!("[settings]\nincident_pattern = \"(\"\n{MINIMAL}"));
    assert!(
        refusal.contains("invalid settings.incident_pattern"),
        "{refusal}"
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

#[test]
fn targets_refuse_inline_secrets_unknown_kinds_and_loose_access() {
    let target = |lines: &str| format!("{MINIMAL}\n[[targets]]\nname = \"db1\"\n{lines}\n");
    let line = MINIMAL.lines().count() + 2;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pw");
    std::fs::write(&password, "pw").unwrap();
    for (text, said) in [
        (
            target(
                "kind = \"postgres\"\nurl = \"postgres://admin@db:5432/app\"\npassword = \"hunter2\"",
            ),
            "writes its password inline",
        ),
        (
            target(
                "kind = \"postgres\"\nurl = \"postgres://admin:hunter2@db:5432/app\"\npassword_file = \"/dev/null\"",
            ),
            "url holds a password",
        ),
        (
            target(
                "kind = \"postgres\"\nurl = \"postgres://admin@db/app\"\npassword_file = \"/nonexistent/pw\"",
            ),
            "cannot read /nonexistent/pw (password_file)",
        ),
        (
            target(&format!(
                "kind = \"postgres\"\nurl = \"postgres://admin@db/app\"\npassword_file = \"{}\"\nsslmode = \"prefer\"",
                password.display()
            )),
            "sslmode `prefer` is not",
        ),
        (target("kind = \"ldap\""), "known kinds: postgres, webhook"),
        (target("url = \"x\""), "needs `kind`"),
    ] {
        let err = refused(&text);
        assert!(err.starts_with(&format!("p.toml:{line}:")), "{err}");
        assert!(err.contains(said), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let err = refused(&format!("{MINIMAL}\n[roles.access]\nmember_of = [\"x\"]\n"));
    assert!(
        err.contains("has [roles.access] but names no target"),
        "{err}"
    );
}

/// Two OpenBao servers whose JWT roles take the same audience would each
/// take the sign-in token hoistd sent the other: refused. Two targets at
/// the same server may share it.
#[test]
fn openbao_systems_do_not_share_a_sign_in_audience() {
    let bao = |name: &str, url: &str, audience: &str| {
        format!(
            "\n[[targets]]\nname = \"{name}\"\nkind = \"openbao\"\nurl = \"{url}\"\n\
             auth = \"jwt\"\njwt_role = \"hoistd\"\naudience = \"{audience}\"\n"
        )
    };
    let text = format!(
        "{MINIMAL}{}{}",
        bao("prod", "https://bao-prod.internal", "openbao"),
        bao("lab", "https://bao-lab.internal", "openbao")
    );
    let err = refused(&text);
    assert!(
        err.contains("target `lab` signs in with audience \"openbao\", as target `prod` does"),
        "{err}"
    );
    for fine in [
        format!(
            "{MINIMAL}{}{}",
            bao("prod", "https://bao-prod.internal", "openbao-prod"),
            bao("lab", "https://bao-lab.internal", "openbao-lab")
        ),
        format!(
            "{MINIMAL}{}{}",
            bao("prod", "https://bao-prod.internal", "openbao"),
            bao("prod-kv", "https://bao-prod.internal:443/", "openbao")
        ),
    ] {
        Policy::parse("p.toml", &fine).unwrap();
    }
}

#[test]
fn a_role_names_its_target_and_what_it_grants_there() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret\n").unwrap();
    let text = format!(
        "{MINIMAL}target = \"db1\"\n\n[roles.access]\nmember_of = [\"app_admin\"]\n\
         connection_limit = 2\n\n[[targets]]\nname = \"db1\"\nkind = \"postgres\"\n\
         url = \"postgres://hoist_admin@db-prod-1.internal:5432/app\"\npassword_file = \"{}\"\n",
        password.display()
    );
    let policy = Policy::parse("p.toml", &text).unwrap();
    let access = policy.role("db").unwrap().access.as_ref().unwrap();
    assert_eq!((access.target.as_str(), access.kind), ("db1", "postgres"));
    assert_eq!(
        access.access,
        serde_json::json!({ "member_of": ["app_admin"], "connection_limit": 2 })
    );
    assert!(
        access.position.starts_with("p.toml:8:"),
        "{}",
        access.position
    );
    let shown = format!("{:?}", policy.targets);
    assert!(!shown.contains("s3cret"), "{shown}");
    let err = refused(&text.replace("connection_limit = 2", "connection_limit = 0"));
    assert!(err.contains("connection_limit must be at least 1"), "{err}");
    let err = refused(&text.replace("connection_limit = 2", "superuser = true"));
    assert!(err.contains("unknown field `superuser`"), "{err}");
    // Named as a grant's role, which the reconciler would remove.
    let err = refused(&text.replace("app_admin", "hoist_app_readwriteall"));
    assert!(
        err.contains("`hoist_app_readwriteall` is named as hoist names the roles"),
        "{err}"
    );
    Policy::parse("p.toml", &text.replace("app_admin", "hoist_app_admin")).unwrap();
}

/// Targets label what they make with `settings.issuer`: left at its
/// default, another deployment left so that shares a target would take
/// this one's access for its own. A caution says so; a policy without
/// targets, or with an issuer of its own, has none.
#[test]
fn targets_under_the_default_issuer_are_a_caution() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret\n").unwrap();
    let target = format!(
        "[[targets]]\nname = \"db1\"\nkind = \"postgres\"\n\
         url = \"postgres://hoist_admin@127.0.0.1:5432/app\"\npassword_file = \"{}\"\n",
        password.display()
    );
    let cautions = |text: &str| {
        Policy::parse("p.toml", text)
            .unwrap_or_else(|err| panic!("{err}"))
            .cautions()
    };
    let said = cautions(&format!("{MINIMAL}\n{target}"));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("settings.issuer is the default `hoistd`"),
        "{said:?}"
    );
    assert!(cautions(MINIMAL).is_empty());
    let own = format!("{MINIMAL}\n[settings]\nissuer = \"hoistd-prod\"\n{target}");
    assert_eq!(cautions(&own), Vec::<String>::new());
}

/// A PostgreSQL target off this machine with no `sslmode` is plain text
/// nobody chose: the policy loads, with a caution naming the target and
/// the host; any `sslmode` written, or a host on this machine, has none.
#[test]
fn plain_text_nobody_chose_to_a_remote_postgresql_is_a_caution() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret\n").unwrap();
    let cautions = |url: &str, extra: &str| {
        let text = format!(
            "{MINIMAL}\n[settings]\nissuer = \"hoistd-prod\"\n\
             [[targets]]\nname = \"db1\"\nkind = \"postgres\"\nurl = \"{url}\"\n\
             password_file = \"{}\"\n{extra}\n",
            password.display()
        );
        Policy::parse("p.toml", &text)
            .unwrap_or_else(|err| panic!("{err}"))
            .cautions()
    };
    let remote = "postgres://hoist_admin@db-prod-1.internal:5432/app";
    let said = cautions(remote, "");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("target `db1`: sslmode is not set"),
        "{said:?}"
    );
    assert!(
        said[0].contains("db-prod-1.internal in plain text"),
        "{said:?}"
    );
    assert!(!said[0].contains("s3cret"), "{said:?}");
    for (url, extra) in [
        (remote, "sslmode = \"disable\""),
        (remote, "sslmode = \"verify-full\""),
        ("postgres://hoist_admin@127.0.0.1:5432/app", ""),
        ("postgres://hoist_admin@[::1]:5432/app", ""),
        ("postgres://hoist_admin@localhost/app", ""),
    ] {
        assert_eq!(cautions(url, extra), Vec::<String>::new(), "{url} {extra}");
    }
}

#[test]
fn slack_accounts_map_to_one_user_each() {
    let slack = |user: &str, team: &str, member: &str| {
        format!("\n[users.{user}]\nslack = {{ team = \"{team}\", user = \"{member}\" }}\n")
    };
    let policy = Policy::parse(
        "p.toml",
        &format!(
            "{MINIMAL}{}{}",
            slack("bob", "T0001", "U0001"),
            slack("carl", "T0001", "W0002")
        ),
    )
    .unwrap();
    assert_eq!(policy.slack_user("T0001", "U0001"), Some("bob"));
    assert_eq!(policy.slack_user("T0001", "W0002"), Some("carl"));
    assert_eq!(policy.slack_user("T0002", "U0001"), None);
    assert_eq!(policy.slack_user("T0001", "U0009"), None);

    // The second user naming the same account is refused where it does.
    let text = format!(
        "{MINIMAL}{}{}",
        slack("bob", "T0001", "U0001"),
        slack("carl", "T0001", "U0001")
    );
    let line = text.lines().count();
    let err = refused(&text);
    assert_eq!(
        err,
        format!(
            "p.toml:{line}:9: users `bob` and `carl` both name Slack user `U0001` of team `T0001`"
        )
    );
    // A Slack user id is one person in every workspace it is seen in: an
    // Enterprise Grid member (W...), and a U... id an organisation's
    // workspaces share. Mapped to two users, they would review twice.
    for member in ["W0001", "U0001"] {
        let text = format!(
            "{MINIMAL}{}{}",
            slack("bob", "T0001", member),
            slack("carl", "T0002", member)
        );
        let err = refused(&text);
        assert!(
            err.contains(&format!(
                "users `bob` and `carl` both name Slack user `{member}` (of teams `T0001` and \
                 `T0002`)"
            )),
            "{err}"
        );
    }

    for (team, member, said) in [
        ("U0001", "U0001", "is not a Slack team id"),
        ("t0001", "U0001", "is not a Slack team id"),
        ("T0001", "T0001", "is not a Slack user id"),
        ("T0001", "U00<1", "is not a Slack user id"),
        ("T0001", "", "is not a Slack user id"),
        ("E0001", "U0001", "names a member by their W... id"),
    ] {
        let err = refused(&format!("{MINIMAL}{}", slack("bob", team, member)));
        assert!(err.contains(said), "{team} {member}: {err}");
    }
    let err = refused(&format!(
        "{MINIMAL}\n[users.bob]\nslack = {{ team = \"T0001\", user = \"U0001\", channel = \"C1\" }}\n"
    ));
    assert!(err.contains("unknown field `channel`"), "{err}");
}

/// What a provider says of a person is weighed by when it said it: an
/// earlier token, or an earlier word kept in the store, never replaces a
/// later one; a later word, from a token or the store, always does; of two
/// words from one second, only the groups both name count.
/// MINIMAL, trusting one OpenID provider, whose users may approve `db`.
const WITH_PROVIDER: &str = "\n[[oidc]]\nissuer = \"https://id.example\"\nclient_id = \"hoist\"\n";
const ID: &str = "https://id.example";

#[test]
fn a_provider_users_latest_word_wins() {
    let policy = Policy::parse("p.toml", &format!("{MINIMAL}{WITH_PROVIDER}")).unwrap();
    let role = policy.role("db").unwrap();
    let at = |secs: i64| DateTime::from_timestamp(1_764_000_000 + secs, 0);
    let groups = |names: &[&str]| names.iter().map(|g| g.to_string()).collect();
    let word = |names: &[&str], secs| Remembered {
        issuer: ID.into(),
        display_name: "Dana".into(),
        groups: names.iter().map(|g| g.to_string()).collect(),
        as_of: at(secs),
    };

    assert!(policy.vouch("dana", ID, "Dana", groups(&["eng"]), at(10)));
    assert!(policy.is_eligible("dana", role));
    // The same token again, or an earlier one, changes nothing.
    assert!(!policy.vouch("dana", ID, "Dana", groups(&["eng"]), at(10)));
    assert!(!policy.vouch("dana", ID, "Dana", groups(&[]), at(5)));
    assert!(policy.is_eligible("dana", role));
    // A later token is kept, even when it says the same.
    assert!(policy.vouch("dana", ID, "Dana", groups(&["eng"]), at(20)));
    assert_eq!(policy.remembered("dana").unwrap().as_of, at(20));

    policy.recall("dana", &word(&[], 15));
    assert!(
        policy.is_eligible("dana", role),
        "an earlier word is ignored"
    );
    policy.recall("dana", &word(&[], 30));
    assert!(
        !policy.is_eligible("dana", role),
        "a later word is taken in"
    );
    // Of two words from one second, only what both say counts: the
    // earlier token presented again does not undo the removal.
    policy.recall("dana", &word(&["eng"], 30));
    assert!(!policy.is_eligible("dana", role), "one second, both words");
    assert!(!policy.vouch("dana", ID, "Dana", groups(&["eng"]), at(30)));
    assert!(!policy.is_eligible("dana", role));
    assert!(policy.vouch("dana", ID, "Dana", groups(&["eng"]), at(31)));
    assert!(
        policy.is_eligible("dana", role),
        "a later second is a later word"
    );
    let undated = Remembered {
        as_of: None,
        ..word(&[], 0)
    };
    policy.recall("dana", &undated);
    assert!(
        policy.is_eligible("dana", role),
        "an undated word is the oldest"
    );
    // Undated words (tokens without `iat`) are taken as they come.
    assert!(policy.vouch("erik", ID, "Erik", groups(&["eng"]), None));
    assert!(policy.vouch("erik", ID, "Erik", groups(&[]), None));
    assert!(!policy.is_eligible("erik", role));
    assert!(policy.vouch("erik", ID, "Erik", groups(&["eng"]), None));
    assert!(policy.is_eligible("erik", role));

    // A user the policy defines is never taken from a token or the store.
    assert!(!policy.vouch("alice", ID, "Alice", groups(&[]), at(40)));
    policy.recall("alice", &word(&[], 40));
    assert!(policy.is_eligible("alice", role));
}

/// A provider taken out of the policy vouches for no one from that reload
/// on: what it said, remembered by the directory the reload kept or by the
/// store, makes its users neither known, nor eligible, nor approvers.
#[test]
fn a_provider_taken_out_of_the_policy_vouches_for_no_one() {
    let approving = "\n[[roles]]\nid = \"k8s\"\neligible_groups = [\"eng\"]\n\
        default_duration = \"30m\"\nmax_duration = \"1h\"\napprovals = 1\n\
        approver_groups = [\"eng\"]\n";
    let before = Policy::parse("p.toml", &format!("{MINIMAL}{approving}{WITH_PROVIDER}")).unwrap();
    let groups = |names: &[&str]| names.iter().map(|g| g.to_string()).collect();
    assert!(before.vouch("dana", ID, "Dana", groups(&["eng"]), None));
    let k8s = before.role("k8s").unwrap();
    assert!(before.knows("dana") && before.is_eligible("dana", k8s));
    assert_eq!(before.approvers_of(k8s), ["alice", "dana"]);

    let mut after = Policy::parse("p.toml", &format!("{MINIMAL}{approving}")).unwrap();
    after.adopt_directory(&before);
    let k8s = after.role("k8s").unwrap();
    assert!(!after.knows("dana"));
    assert!(!after.is_eligible("dana", k8s));
    assert_eq!(after.approvers_of(k8s), ["alice"]);
    assert_eq!(after.display_name("dana"), None);
    assert_eq!(after.remembered("dana"), None);
    // Nor is it taken from the store, or from a token.
    after.recall("dana", &before.remembered("dana").unwrap());
    assert!(!after.vouch("erik", ID, "Erik", groups(&["eng"]), None));
    assert!(!after.knows("dana") && !after.knows("erik"));

    // Trusted again, what it said counts again.
    let mut again =
        Policy::parse("p.toml", &format!("{MINIMAL}{approving}{WITH_PROVIDER}")).unwrap();
    again.adopt_directory(&after);
    assert!(again.is_eligible("dana", again.role("k8s").unwrap()));
}
