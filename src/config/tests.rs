//! The config file: parsing with file:line errors, choosing a profile, and
//! saving.

use super::*;

fn config(text: &str) -> Config {
    Config::parse(Path::new("test.toml"), text).unwrap()
}

const TWO_PROFILES: &str = r#"
    [profiles.work]
    broker = "https://hoist.corp.example/"
    user = "alice"

    [profiles.demo]
    broker = "http://127.0.0.1:8700"
"#;

#[test]
fn the_example_parses_and_has_every_setting() {
    let example = config(EXAMPLE);
    assert_eq!(example.default_profile.as_deref(), Some("work"));
    assert_eq!(
        example.ticket_url.as_deref(),
        Some("https://tracker.example/browse/{ticket}")
    );
    assert_eq!(example.favourites("work").len(), 2);
    assert!(!example.theme.is_empty());
    assert_eq!(example.bundles["incident"].roles.len(), 2);
    let target = example.resolve(None, None).unwrap();
    assert_eq!(target.broker, "https://hoist.corp.example");
    let entra = example.resolve(None, Some("entra")).unwrap();
    assert_eq!(entra.backend.kind(), Kind::Entra);
    assert_eq!(target.user.as_deref(), Some("alice"));
}

#[test]
fn an_empty_file_is_an_empty_config() {
    assert_eq!(config(""), Config::default());
}

#[test]
fn unknown_keys_are_refused_with_file_line_and_reason() {
    let text = "default_profile = \"work\"\n\n[profiles.work]\nbroker = \"https://b.example\"\nbrokr = \"x\"\n";
    let err = Config::parse(Path::new("/home/a/config.toml"), text).unwrap_err();
    let ConfigError::Parse { line, column, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*line, *column), (5, 1));
    let message = err.to_string();
    assert!(
        message.starts_with("/home/a/config.toml:5:1: unknown field `brokr`"),
        "{message}"
    );
}

#[test]
fn a_token_in_the_file_is_refused_with_a_pointer_to_the_keyring() {
    let text = "[profiles.work]\nbroker = \"https://b.example\"\ntoken = \"s3cret\"\n";
    let message = Config::parse(Path::new("c.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("c.toml:3:1: unknown field `token`"),
        "{message}"
    );
    assert!(message.contains("OS keyring"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn syntax_errors_name_the_line() {
    let err =
        Config::parse(Path::new("c.toml"), "ticket_url = \"x\"\n[profiles.work\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { line: 2, .. }), "{err:?}");
}

#[test]
fn broker_flag_wins_and_finds_the_profile_that_has_it() {
    let config = config(&format!("default_profile = \"demo\"\n{TWO_PROFILES}"));
    let target = config
        .resolve(Some("https://hoist.corp.example"), None)
        .unwrap();
    assert_eq!(target.profile, "work");
    assert_eq!(target.user.as_deref(), Some("alice"));
    // Even over --profile's broker: --profile then only names the profile.
    let target = config
        .resolve(Some("https://other.example"), Some("demo"))
        .unwrap();
    assert_eq!(target.profile, "demo");
    assert_eq!(target.broker, "https://other.example");
    assert_eq!(target.user, None);
}

/// `--broker` that two profiles use is not guessed at (the first one's
/// plain-file opt-in, and its session replaced by another person's).
#[test]
fn the_broker_flag_does_not_guess_between_profiles() {
    let config = config(&format!(
        "{TWO_PROFILES}\n[profiles.ci-bot]\nbroker = \"https://hoist.corp.example\"\nuser = \"bot\"\n\
         insecure_file_store = true\n"
    ));
    let err = config
        .resolve(Some("https://hoist.corp.example"), None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "several profiles use https://hoist.corp.example: pick one with `hoist --profile NAME` \
         (profiles: ci-bot, work)"
    );
    let work = config
        .resolve(Some("https://hoist.corp.example"), Some("work"))
        .unwrap();
    assert_eq!(
        (work.user.as_deref(), work.insecure_file_store),
        (Some("alice"), false)
    );
    assert_eq!(config.signed_in_elsewhere(&work), None);
    assert!(config.replaced_by(&work).is_none());
    let slashed = config
        .resolve(Some("https://hoist.corp.example/"), Some("work"))
        .unwrap();
    assert!(config.replaced_by(&slashed).is_none());

    // --profile with another broker points the profile there (a sign-in
    // then signs out who it had), and says where it is signed in now.
    let elsewhere = config
        .resolve(Some("https://other.example"), Some("work"))
        .unwrap();
    assert_eq!(elsewhere.user, None);
    assert_eq!(
        config.signed_in_elsewhere(&elsewhere),
        Some(("https://hoist.corp.example/", "alice"))
    );
    // ...and what its sign-in there replaces.
    let replaced = config.replaced_by(&elsewhere).unwrap();
    assert_eq!(
        (replaced.broker.as_str(), replaced.user.as_deref()),
        ("https://hoist.corp.example", Some("alice"))
    );
    // A profile keeping its session in a file keeps it there wherever it
    // points, so its later commands find it.
    let bot = config
        .resolve(Some("https://other.example"), Some("ci-bot"))
        .unwrap();
    assert!(bot.insecure_file_store);
    assert_eq!(
        config.replaced_by(&bot).unwrap().user.as_deref(),
        Some("bot")
    );
}

#[test]
fn a_new_broker_gets_default_or_a_free_name() {
    let empty = Config::default();
    let target = empty.resolve(Some("http://localhost:8700/"), None).unwrap();
    assert_eq!(
        target,
        Target {
            profile: "default".into(),
            broker: "http://localhost:8700".into(),
            user: None,
            insecure_file_store: false,
            backend: Backend::Hoistd,
            chosen_by: vec!["--broker".into(), "http://localhost:8700".into()],
        }
    );
    let mut taken = Config::default();
    taken.remember_login(&target, "alice");
    let other = taken.resolve(Some("https://b.example"), None).unwrap();
    assert_eq!(other.profile, "b.example");
    let other = taken.resolve(Some("http://[::1]:9000"), None).unwrap();
    assert_eq!(other.profile, "::1-9000");
}

#[test]
fn profile_flag_then_default_then_the_only_profile() {
    let config_two = config(&format!("default_profile = \"demo\"\n{TWO_PROFILES}"));
    assert_eq!(
        config_two.resolve(None, Some("work")).unwrap().profile,
        "work"
    );
    assert_eq!(config_two.resolve(None, None).unwrap().profile, "demo");

    let mut only = config(TWO_PROFILES);
    only.profiles.remove("demo");
    let target = only.resolve(None, None).unwrap();
    assert_eq!(target.profile, "work");
    assert_eq!(target.broker, "https://hoist.corp.example");
}

/// A command to run next names what chooses its target, unless a bare
/// `hoist` picks the same: `hoist login` there would sign in elsewhere.
#[test]
fn a_command_to_run_next_names_the_target_unless_a_bare_hoist_picks_it() {
    let two = config(&format!("default_profile = \"demo\"\n{TWO_PROFILES}"));
    let command = |broker: Option<&str>, profile: Option<&str>| {
        two.resolve(broker, profile).unwrap().command("login")
    };
    assert_eq!(command(None, None), "hoist login");
    assert_eq!(command(None, Some("demo")), "hoist login");
    assert_eq!(command(None, Some("work")), "hoist --profile work login");
    // A broker a saved profile holds is reached by that profile.
    assert_eq!(
        command(Some("https://hoist.corp.example/"), None),
        "hoist --profile work login"
    );
    // One no profile holds yet is reached by --broker alone, or with the
    // profile it was named for.
    assert_eq!(
        command(Some("https://b.example"), None),
        "hoist --broker https://b.example login"
    );
    assert_eq!(
        command(Some("https://b.example"), Some("on call's")),
        "hoist --broker https://b.example --profile 'on call'\\''s' login"
    );
    // With several profiles and no default, even "default" is named.
    let no_default = config(&format!(
        "{TWO_PROFILES}[profiles.default]\nbroker = \"https://d.example\"\n"
    ));
    assert_eq!(
        no_default
            .resolve(None, Some("default"))
            .unwrap()
            .command("login"),
        "hoist --profile default login"
    );
    let mut only = config(TWO_PROFILES);
    only.profiles.remove("demo");
    assert_eq!(
        only.resolve(None, None).unwrap().command("login"),
        "hoist login"
    );
}

#[test]
fn unresolvable_choices_say_what_to_do() {
    let two = config(TWO_PROFILES);
    let err = two.resolve(None, Some("prod")).unwrap_err().to_string();
    assert!(
        err.contains("`prod`") && err.contains("demo, work"),
        "{err}"
    );
    let err = two.resolve(None, None).unwrap_err().to_string();
    assert!(
        err.contains("--profile NAME") && err.contains("demo, work"),
        "{err}"
    );
    let err = Config::default()
        .resolve(None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hoist --broker URL login --with-token"),
        "{err}"
    );
    assert!(err.contains("hoist demo"), "{err}");
    let err = Config::default()
        .resolve(Some("http://broker.example"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn favourites_toggle_and_keep_their_order() {
    let mut config = config(TWO_PROFILES);
    assert!(config.toggle_favourite("work", "b"));
    assert!(config.toggle_favourite("work", "a"));
    assert_eq!(config.favourites("work"), ["b", "a"]);
    assert!(!config.toggle_favourite("work", "b"));
    assert_eq!(config.favourites("work"), ["a"]);
    assert!(config.favourites("demo").is_empty());
    assert!(!config.toggle_favourite("nope", "a"));
    assert!(config.favourites("nope").is_empty());
}

#[test]
fn login_and_logout_update_the_profile() {
    let mut config = Config::default();
    let target = config.resolve(Some("http://127.0.0.1:1"), None).unwrap();
    config.remember_login(&target, "alice");
    assert_eq!(config.default_profile.as_deref(), Some("default"));
    assert_eq!(
        config.resolve(None, None).unwrap().user.as_deref(),
        Some("alice")
    );
    config.toggle_favourite("default", "r");
    // Signed out as `hoist logout` resolves it: alice, at that broker.
    let signed_in = config.resolve(None, None).unwrap();
    // Someone signed in there since (in another terminal) stays named.
    let mut since = config.clone();
    since.remember_login(&target, "bob");
    since.forget_login(&signed_in);
    assert_eq!(since.profiles["default"].user.as_deref(), Some("bob"));
    config.forget_login(&signed_in);
    let profile = &config.profiles["default"];
    assert_eq!(profile.user, None);
    assert_eq!(profile.broker, "http://127.0.0.1:1");
    assert_eq!(profile.favourites, ["r"]);
}

#[test]
fn the_file_store_opt_in_is_per_profile_and_reaches_the_target() {
    let mut config = config(TWO_PROFILES);
    let work = config.resolve(None, Some("work")).unwrap();
    assert!(!work.insecure_file_store);
    config.set_insecure_file_store(&work, true);
    assert!(
        config
            .resolve(None, Some("work"))
            .unwrap()
            .insecure_file_store
    );
    assert!(
        config
            .resolve(Some("https://hoist.corp.example"), None)
            .unwrap()
            .insecure_file_store
    );
    assert!(
        !config
            .resolve(None, Some("demo"))
            .unwrap()
            .insecure_file_store
    );

    // Saved only when on, and read back.
    let text = toml::to_string(&config).unwrap();
    assert_eq!(
        text.matches("insecure_file_store = true").count(),
        1,
        "{text}"
    );
    let again = Config::parse(Path::new("c.toml"), &text).unwrap();
    assert!(again.profiles["work"].insecure_file_store);
    assert!(!again.profiles["demo"].insecure_file_store);

    config.set_insecure_file_store(&work, false);
    assert!(!toml::to_string(&config).unwrap().contains("insecure"));

    // Opting in before the first sign-in makes the profile; opting out
    // of one that does not exist leaves the config alone.
    let mut empty = Config::default();
    let new = empty.resolve(Some("http://127.0.0.1:8700"), None).unwrap();
    empty.set_insecure_file_store(&new, false);
    assert!(empty.profiles.is_empty());
    empty.set_insecure_file_store(&new, true);
    empty.remember_login(&new, "alice");
    let target = empty.resolve(None, None).unwrap();
    assert!(target.insecure_file_store);
    assert_eq!(target.user.as_deref(), Some("alice"));
    assert_eq!(target.broker, "http://127.0.0.1:8700");
}

#[test]
fn session_files_live_in_the_config_dir() {
    assert_eq!(
        sessions_dir().unwrap(),
        Config::dir().unwrap().join("sessions")
    );
}

#[test]
fn save_round_trips_atomically_into_a_private_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/hoist");
    let path = dir.join(CONFIG_FILE);
    let mut config = Config::load_from(&path).unwrap();
    assert_eq!(config.profiles.len(), 0);
    let target = config.resolve(Some("http://127.0.0.1:8700"), None).unwrap();
    config.remember_login(&target, "alice");
    config.toggle_favourite("default", "prod-db-admin");
    config.theme.insert("accent".into(), "#ffffff".into());
    config.ticket_url = Some("https://t.example/{ticket}".into());
    config.bundles.insert(
        "oncall".into(),
        Bundle {
            roles: vec!["a".into()],
        },
    );
    config.save().unwrap();

    let again = Config::load_from(&path).unwrap();
    assert_eq!(again, config);
    // Saving over an existing file replaces it and leaves no temporary file.
    config.toggle_favourite("default", "prod-db-admin");
    config.save().unwrap();
    assert_eq!(Config::load_from(&path).unwrap(), config);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [CONFIG_FILE]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn a_failed_save_leaves_the_old_file_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(CONFIG_FILE);
    std::fs::write(&path, TWO_PROFILES).unwrap();
    let mut config = Config::load_from(&path).unwrap();
    config.path = Some(tmp.path().join("missing-parent-is-a-file/config.toml"));
    std::fs::write(tmp.path().join("missing-parent-is-a-file"), "").unwrap();
    let err = config.save().unwrap_err();
    assert!(matches!(err, ConfigError::Write { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), TWO_PROFILES);
}

const ENTRA: &str = r#"
    [profiles.entra]
    kind = "entra"
    tenant = "contoso.onmicrosoft.com"
    client_id = "11111111-1111-1111-1111-111111111111"
"#;

#[test]
fn an_entra_profile_defaults_to_the_global_cloud() {
    let config = config(ENTRA);
    let target = config.resolve(None, Some("entra")).unwrap();
    let Backend::Entra(tenant) = &target.backend else {
        panic!("{target:?}");
    };
    assert_eq!(tenant.graph, GRAPH_GLOBAL);
    assert_eq!(tenant.authority, AUTHORITY_GLOBAL);
    assert_eq!(tenant.poll, ENTRA_POLL_DEFAULT);
    assert_eq!(tenant.ticket_system, None);
    assert_eq!(
        target.broker,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com\
         ?client_id=11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(target.backend.kind(), Kind::Entra);
    // Written back as it was read: no broker URL appears.
    let saved = toml::to_string(&config).unwrap();
    assert!(!saved.contains("broker"), "{saved}");
    assert!(saved.contains("kind = \"entra\""), "{saved}");
}

/// A session is one app registration's: two profiles of one tenant with
/// different `client_id`s keep one each, where two with the same share it.
#[test]
fn entra_profiles_share_a_session_only_with_the_same_app_registration() {
    let second = |client_id: &str| {
        format!(
            "{ENTRA}user = \"alice@contoso.example\"\n\n[profiles.other]\nkind = \"entra\"\n\
             tenant = \"contoso.onmicrosoft.com\"\nclient_id = \"{client_id}\"\n\
             user = \"alice@contoso.example\"\n"
        )
    };
    let other = config(&second("22222222-2222-2222-2222-222222222222"));
    let (entra, elsewhere) = (
        other.resolve(None, Some("entra")).unwrap(),
        other.resolve(None, Some("other")).unwrap(),
    );
    assert_ne!(entra.broker, elsewhere.broker);
    assert!(!other.shares_session(&entra));

    let same = config(&second("11111111-1111-1111-1111-111111111111"));
    let (entra, again) = (
        same.resolve(None, Some("entra")).unwrap(),
        same.resolve(None, Some("other")).unwrap(),
    );
    assert_eq!(entra.broker, again.broker);
    assert!(same.shares_session(&entra));
}

#[test]
fn national_clouds_are_settings_and_http_only_on_loopback() {
    let text = format!(
        "{ENTRA}graph = \"https://graph.microsoft.us/\"\nauthority = \"https://login.microsoftonline.us\"\npoll = \"1m\"\n"
    );
    let target = config(&text).resolve(None, Some("entra")).unwrap();
    let Backend::Entra(tenant) = target.backend else {
        panic!();
    };
    assert_eq!(tenant.graph, "https://graph.microsoft.us");
    assert_eq!(tenant.authority, "https://login.microsoftonline.us");
    assert_eq!(tenant.poll, std::time::Duration::from_secs(60));
    let plain = format!("{ENTRA}graph = \"http://graph.example\"\n");
    let err = config(&plain).resolve(None, Some("entra")).unwrap_err();
    assert!(
        err.to_string().starts_with("profile `entra`: `graph`:")
            && err.to_string().contains("loopback"),
        "{err}"
    );
    let loopback = format!("{ENTRA}graph = \"http://127.0.0.1:9\"\n");
    assert!(config(&loopback).resolve(None, Some("entra")).is_ok());
}

#[test]
fn the_ticket_system_is_the_profiles_or_the_ticket_links_host() {
    let tenant = |text: &str| match config(text).resolve(None, Some("entra")).unwrap().backend {
        Backend::Entra(tenant) => tenant,
        other => panic!("{other:?}"),
    };
    let linked = format!("ticket_url = \"https://jira.example/browse/{{ticket}}\"\n{ENTRA}");
    assert_eq!(
        tenant(&linked).ticket_system.as_deref(),
        Some("jira.example")
    );
    let named = format!("{linked}ticket_system = \"ServiceNow\"\n");
    assert_eq!(tenant(&named).ticket_system.as_deref(), Some("ServiceNow"));
    let empty = format!("{ENTRA}ticket_system = \" \"\n");
    let err = config(&empty).resolve(None, Some("entra")).unwrap_err();
    assert!(
        err.to_string().contains("`ticket_system` is empty"),
        "{err}"
    );
}

#[test]
fn a_broken_entra_profile_names_the_setting() {
    let missing = |text: &str| {
        config(text)
            .resolve(None, Some("e"))
            .unwrap_err()
            .to_string()
    };
    let err = missing("[profiles.e]\nkind = \"entra\"\nclient_id = \"c\"\n");
    assert!(err.contains("`tenant` is missing"), "{err}");
    let err = missing("[profiles.e]\nkind = \"entra\"\ntenant = \"t\"\n");
    assert!(err.contains("`client_id` is missing"), "{err}");
    let err = missing("[profiles.e]\nkind = \"entra\"\ntenant = \"a/b\"\nclient_id = \"c\"\n");
    assert!(err.contains("tenant id or a domain"), "{err}");
    let err = missing(
        "[profiles.e]\nkind = \"entra\"\ntenant = \"t\"\nclient_id = \"c\"\nbroker = \"https://x\"\n",
    );
    assert!(err.contains("has no `broker`"), "{err}");
    let err = missing(
        "[profiles.e]\nkind = \"entra\"\ntenant = \"t\"\nclient_id = \"c\"\npoll = \"often\"\n",
    );
    assert!(err.contains("`poll`"), "{err}");
    let err = Config::parse(Path::new("c.toml"), "[profiles.e]\nkind = \"okta\"\n").unwrap_err();
    assert!(err.to_string().contains("unknown variant `okta`"), "{err}");
}

#[test]
fn broker_flag_never_rewrites_an_entra_profile() {
    let err = config(ENTRA)
        .resolve(Some("https://hoist.example"), Some("entra"))
        .unwrap_err();
    assert!(err.to_string().contains("Entra profile"), "{err}");
    let mut both = config(&format!("{ENTRA}{TWO_PROFILES}"));
    let target = both.resolve(None, Some("entra")).unwrap();
    both.remember_login(&target, "alice@contoso.com");
    let profile = &both.profiles["entra"];
    assert!(profile.broker.is_empty());
    assert_eq!(profile.user.as_deref(), Some("alice@contoso.com"));
    assert_eq!(
        both.profile_kinds(),
        vec![
            ("demo".to_string(), Kind::Hoistd),
            ("entra".to_string(), Kind::Entra),
            ("work".to_string(), Kind::Hoistd)
        ]
    );
}

#[test]
fn save_keeps_what_the_file_says_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(CONFIG_FILE);
    std::fs::write(
        &path,
        "# My hoist config.\n\
         default_profile = \"work\"  # the one I use\n\
         \n\
         # Work's broker.\n\
         [profiles.work]\n\
         broker = \"https://hoist.example.com\"\n\
         favourites = [\"prod-db\"]   # keep these\n\
         \n\
         [profiles.old]\n\
         broker = \"https://old.example.com\"\n",
    )
    .unwrap();
    let mut config = Config::load_from(&path).unwrap();
    config.profiles.remove("old");
    config.toggle_favourite("work", "prod-ssh");
    config.ticket_url = Some("https://t.example/{ticket}".into());
    config.save().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(
            "# My hoist config.\n\
             default_profile = \"work\"  # the one I use\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "\n# Work's broker.\n[profiles.work]\nbroker = \"https://hoist.example.com\"\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("favourites = [\"prod-db\", \"prod-ssh\"]   # keep these\n"),
        "{text}"
    );
    assert!(text.contains("ticket_url = "), "{text}");
    assert!(!text.contains("old.example.com"), "{text}");
    assert_eq!(Config::load_from(&path).unwrap(), config);

    // A file that no longer parses is written afresh.
    std::fs::write(&path, "default_profile = \n").unwrap();
    config.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(SAVED_HEADER), "{text}");
    assert_eq!(Config::load_from(&path).unwrap(), config);
}

/// Loads the config a file saying `text` holds, changes it, saves it, and
/// returns what the file says then, checked to read back as the change.
fn saved_over(text: &str, change: impl FnOnce(&mut Config)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(CONFIG_FILE);
    std::fs::write(&path, text).unwrap();
    let mut config = Config::load_from(&path).unwrap();
    change(&mut config);
    config.save().unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(Config::load_from(&path).unwrap(), config, "{written}");
    written
}

#[test]
fn save_keeps_a_table_written_inline_inline() {
    let text = saved_over(
        "[profiles]\n\
         # The one at work.\n\
         work = { broker = \"https://hoist.example.com\", favourites = [\"prod-db\"] }\n",
        |config| {
            config.toggle_favourite("work", "prod-ssh");
        },
    );
    assert_eq!(
        text,
        "[profiles]\n\
         # The one at work.\n\
         work = { broker = \"https://hoist.example.com\", favourites = [\"prod-db\", \"prod-ssh\"] }\n"
    );
}

#[test]
fn save_keeps_the_comments_in_an_array_it_changes() {
    let file = "[profiles.work]\n\
                broker = \"https://hoist.example.com\"\n\
                favourites = [\n\
                \x20   \"prod-db\",  # the primary\n\
                \x20   \"prod-ssh\",  # bastion\n\
                \x20   # kept for incidents\n\
                \x20   \"prod-k8s\",\n\
                ]\n";
    let added = saved_over(file, |config| {
        config.toggle_favourite("work", "prod-logs");
    });
    assert_eq!(
        added,
        file.replace("\"prod-k8s\",\n", "\"prod-k8s\",\n    \"prod-logs\",\n")
    );
    let removed = saved_over(file, |config| {
        config.toggle_favourite("work", "prod-db");
    });
    assert_eq!(
        removed,
        "[profiles.work]\n\
         broker = \"https://hoist.example.com\"\n\
         favourites = [\n\
         \x20   \"prod-ssh\",  # bastion\n\
         \x20   # kept for incidents\n\
         \x20   \"prod-k8s\",\n\
         ]\n"
    );
    // A comment after the last element stays after it.
    let after_last = saved_over(
        &file.replace("\"prod-k8s\",\n", "\"prod-k8s\",  # last\n"),
        |config| {
            config.toggle_favourite("work", "prod-logs");
        },
    );
    assert!(
        after_last.ends_with("\"prod-k8s\",  # last\n    \"prod-logs\",\n]\n"),
        "{after_last}"
    );
    // On one line, the spacing stays the file's.
    let one_line = saved_over(
        "[profiles.work]\nbroker = \"https://h.example.com\"\nfavourites = [\"a\",  \"b\"]\n",
        |config| {
            config.toggle_favourite("work", "a");
            config.toggle_favourite("work", "c");
        },
    );
    assert!(
        one_line.ends_with("favourites = [\"b\",  \"c\"]\n"),
        "{one_line}"
    );
}

/// Favourites written as `list`, toggled in turn: what the list says then.
fn favourites_after(list: &str, toggles: &[&str]) -> String {
    let head = "[profiles.work]\nbroker = \"https://h.example.com\"\nfavourites = ";
    let text = saved_over(&format!("{head}{list}\n"), |config| {
        for role in toggles {
            config.toggle_favourite("work", role);
        }
    });
    text.strip_prefix(head)
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string()
}

#[test]
fn save_keeps_each_comment_with_its_element() {
    let cases: &[(&str, &[&str], &str)] = &[
        // Removed from the middle, or at the end.
        (
            "[\n  \"a\",  # first\n  \"b\",  # second\n  \"c\",  # third\n]",
            &["b"],
            "[\n  \"a\",  # first\n  \"c\",  # third\n]",
        ),
        (
            "[\n  \"a\",  # first\n  \"b\",  # second\n]",
            &["b"],
            "[\n  \"a\",  # first\n]",
        ),
        // Comment lines above an element go with it.
        (
            "[\n  # the main one\n  \"a\",\n  # backup\n  \"b\",\n]",
            &["a"],
            "[\n  # backup\n  \"b\",\n]",
        ),
        // Moved to the end.
        (
            "[\n  \"a\",  # A\n  \"b\",  # B\n]",
            &["a", "a"],
            "[\n  \"b\",  # B\n  \"a\",  # A\n]",
        ),
        // Added after a commented last element, with and without its comma.
        (
            "[\n  \"a\",\n  \"b\",  # last one\n]",
            &["c"],
            "[\n  \"a\",\n  \"b\",  # last one\n  \"c\",\n]",
        ),
        (
            "[\n  \"a\",\n  \"b\"  # last one\n]",
            &["c"],
            "[\n  \"a\",\n  \"b\",  # last one\n  \"c\"\n]",
        ),
        // Added to a list of one on lines of their own; a comment on the
        // `[` line stays there.
        ("[\n  \"a\",\n]", &["b"], "[\n  \"a\",\n  \"b\",\n]"),
        (
            "[  # mine\n  \"a\",\n]",
            &["b", "a"],
            "[  # mine\n  \"b\",\n]",
        ),
        // A comment ending a line never swallows what comes after it.
        (
            "[\"a\", \"b\",  # pinned\n]",
            &["c"],
            "[\"a\", \"b\",  # pinned\n\"c\",\n]",
        ),
        (
            "[\"a\", \"b\"  # note\n]",
            &["c"],
            "[\"a\", \"b\",  # note\n\"c\"\n]",
        ),
        (
            "[\n  \"db\", \"ssh\",   # databases\n  \"view\", \"admin\", # clusters\n]",
            &["view"],
            "[\n  \"db\", \"ssh\",   # databases\n  \"admin\", # clusters\n]",
        ),
        ("[\n  \"a\",  # A\n  \"b\"]", &["b"], "[\n  \"a\"  # A\n]"),
        // Several to a line: a new one is indented as the lines are.
        (
            "[\n  \"db\", \"ssh\",\n  \"view\", \"admin\",\n]",
            &["new"],
            "[\n  \"db\", \"ssh\",\n  \"view\", \"admin\",\n  \"new\",\n]",
        ),
        // On one line, spaced as the file spaces it.
        ("[ \"a\", \"b\" ]", &["c"], "[ \"a\", \"b\", \"c\" ]"),
        ("[\"a\",  \"b\"]", &["a", "c"], "[\"b\",  \"c\"]"),
        ("[\"a\"]", &["b"], "[\"a\", \"b\"]"),
        ("[]", &["a"], "[\"a\"]"),
        // A comment in an empty list stays.
        (
            "[  # pinned\n]",
            &["a", "b"],
            "[  # pinned\n    \"a\",\n    \"b\",\n]",
        ),
        (
            "[\n  # roles I use\n]",
            &["a"],
            "[\n  # roles I use\n  \"a\",\n]",
        ),
    ];
    for (list, toggles, expected) in cases {
        assert_eq!(
            favourites_after(list, toggles),
            *expected,
            "{list} toggling {toggles:?}"
        );
    }
}

#[test]
fn save_keeps_a_profile_that_is_left_empty() {
    for file in [
        "profiles = { work.favourites = [\"a\"] }\n",
        "profiles.work.favourites = [\"a\"]\n",
        "[profiles]\nwork.favourites = [\"a\"]\n",
    ] {
        let text = saved_over(file, |config| {
            config.toggle_favourite("work", "a");
        });
        assert!(
            text.contains("work") && !text.starts_with(SAVED_HEADER),
            "{file} became {text}"
        );
    }
}

#[test]
fn save_puts_a_new_table_after_its_siblings() {
    let text = saved_over(
        "# Colours.\n\
         [theme]\n\
         accent = \"cyan\"\n\
         \n\
         [profiles.zed]\n\
         broker = \"https://zed.example.com\"\n\
         \n\
         [profiles.work]\n\
         broker = \"https://hoist.example.com\"\n\
         \n\
         [bundles.oncall]\n\
         roles = [\"prod-db\"]\n",
        |config| {
            config.profiles.insert(
                "lab".into(),
                Profile {
                    broker: "https://lab.example.com".into(),
                    ..Profile::default()
                },
            );
        },
    );
    let at = |header: &str| {
        text.find(header)
            .unwrap_or_else(|| panic!("{header} in {text}"))
    };
    assert!(text.starts_with("# Colours.\n[theme]\n"), "{text}");
    assert!(
        at("[profiles.zed]") < at("[profiles.work]")
            && at("[profiles.work]") < at("[profiles.lab]")
            && at("[profiles.lab]") < at("[bundles.oncall]"),
        "{text}"
    );
}

#[test]
fn save_keeps_windows_line_endings() {
    let file = "# Written on Windows.\r\n\
                [profiles.work]\r\n\
                broker = \"https://hoist.example.com\"\r\n\
                favourites = [\r\n    \"prod-db\", # the main one\r\n]\r\n";
    let text = saved_over(file, |config| {
        config.toggle_favourite("work", "prod-ssh");
        config.default_profile = Some("work".into());
    });
    assert!(text.contains("# the main one"), "{text:?}");
    assert!(
        text.contains("prod-ssh") && text.contains("default_profile"),
        "{text:?}"
    );
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "every line still ends in CRLF: {text:?}"
    );
}

#[test]
fn a_ticket_url_that_cannot_make_a_link_is_refused_at_load() {
    for (template, said) in [
        ("https://tracker.example/browse/", "has no `{ticket}`"),
        (
            "javascript:alert({ticket})",
            "scheme `javascript` is not http or https",
        ),
        ("tracker/{ticket}", "is not a URL"),
    ] {
        let text = format!("ticket_url = \"{template}\"\n");
        let err = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml: ticket_url: "), "{err}");
        assert!(err.contains(said), "{template}: {err}");
    }
    assert!(
        Config::parse(
            Path::new("c.toml"),
            "ticket_url = \"http://jira.intranet/browse/{ticket}\"\n"
        )
        .is_ok()
    );
}

#[test]
fn entra_settings_on_a_hoistd_profile_are_refused_not_ignored() {
    let config = config(
        "[profiles.work]\nbroker = \"https://hoist.corp.example\"\n\
         tenant = \"contoso.onmicrosoft.com\"\npoll = \"15s\"\n",
    );
    let err = config.resolve(None, Some("work")).unwrap_err().to_string();
    assert_eq!(
        err,
        "profile `work`: `tenant`, `poll`: Entra settings (kind = \"entra\"); this profile is \
         hoistd's, with a `broker` URL, and would ignore them"
    );
}
