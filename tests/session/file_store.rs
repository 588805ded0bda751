//! The plain-file store: only an explicit opt-in ([`secrets::init_file_store`],
//! behind `hoist login --insecure-file-store`) keeps a session in a file,
//! mode 0600 in a 0700 dir; without it, a machine with no keyring refuses
//! and writes nothing. Every child here has no keyring that works (the
//! Secret Service forced, and no bus), so a session can only be in a file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hoist::auth::secrets::{self, FILE_STORE_WARNING, SecretsError, SessionStore};
use hoist::auth::session::{self, SessionError};
use hoist::config::{self, Config};

use crate::helpers::{
    BROKER_ENV, demo_broker, in_child, keyctl_read, keyutils_description, keyutils_runtime,
    run_child, runtime, stored,
};

/// Which half a child runs, for tests with more than one child.
const PHASE_ENV: &str = "HOIST_TEST_PHASE";

/// The environment of a child with no working keyring, its own home and
/// config dir under `home`, and `broker` to talk to.
fn no_keyring_env(home: &Path, broker: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/hoist-test/bus".to_string(),
        ),
        ("HOIST_KEYRING", "secret-service".to_string()),
        ("HOME", home.to_str().unwrap().to_string()),
        (
            "HOIST_CONFIG_DIR",
            home.join("hoist-config").to_str().unwrap().to_string(),
        ),
        (BROKER_ENV, broker.to_string()),
    ]
}

/// Reruns `name` in a child with `env` (plus `extra`), off the async runtime.
async fn child(name: &'static str, env: &[(&'static str, String)], extra: &[(&'static str, &str)]) {
    let mut env: Vec<(&str, String)> = env.to_vec();
    env.extend(extra.iter().map(|(key, value)| (*key, value.to_string())));
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_child(name, &env, &[]);
    })
    .await
    .unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file (not dir) under `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn broker_from_parent() -> String {
    std::env::var(BROKER_ENV).unwrap()
}

#[test]
fn an_explicit_file_store_keeps_the_session_for_the_next_process() {
    if in_child() {
        return match std::env::var(PHASE_ENV).unwrap().as_str() {
            "login" => login_into_a_file(),
            "open" => open_from_the_file(),
            other => panic!("unknown phase {other}"),
        };
    }
    const NAME: &str = "file_store::an_explicit_file_store_keeps_the_session_for_the_next_process";
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let home = tempfile::tempdir().unwrap();
        let env = no_keyring_env(home.path(), &broker.url());
        child(NAME, &env, &[(PHASE_ENV, "login")]).await;

        // One session file, private from the start, in a private dir, named
        // by a hash rather than by the broker URL.
        let config_dir = home.path().join("hoist-config");
        let sessions = config_dir.join("sessions");
        assert_eq!(mode(&sessions), 0o700);
        let files = files_under(&sessions);
        assert_eq!(files.len(), 1, "{files:?}");
        let file = &files[0];
        assert_eq!(mode(file), 0o600);
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.len() == 37
                && name.ends_with(".json")
                && name[..32].chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        let stored_file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(
            stored_file["account"],
            secrets::account(&broker.url(), "alice")
        );
        assert_eq!(stored_file["session"]["access_token"], "demo-alice");

        // The config remembers the choice, and still holds no token.
        let text = std::fs::read_to_string(config_dir.join("config.toml")).unwrap();
        assert!(text.contains("insecure_file_store = true"), "{text}");
        assert!(!text.contains("demo-alice"), "{text}");
        // Nothing went to a keyring, nor anywhere else in the home.
        assert_eq!(stored(&broker.url(), "alice").await, None);
        assert_eq!(
            keyctl_read(&keyutils_description(&broker.url(), "alice")),
            None
        );
        let mut everything = files_under(home.path());
        everything.sort();
        assert_eq!(everything, [config_dir.join("config.toml"), file.clone()]);

        child(NAME, &env, &[(PHASE_ENV, "open")]).await;
        assert!(files_under(&sessions).is_empty());
        broker.stop().await;
    });
}

/// First child: `hoist login --insecure-file-store` with a static token.
fn login_into_a_file() {
    secrets::prepare();
    let broker = broker_from_parent();
    let mut config = Config::load().unwrap();
    let target = config.resolve(Some(&broker), None).unwrap();
    assert!(!target.insecure_file_store);

    // The opt-in comes before anything else touches sessions.
    let dir = config::sessions_dir().unwrap();
    assert_eq!(secrets::init_file_store(&dir), Ok(SessionStore::File));
    assert_eq!(secrets::init_file_store(&dir), Ok(SessionStore::File));
    // HOIST_KEYRING=secret-service does not switch it back, nor does a
    // second directory replace the first.
    assert_eq!(secrets::init(), Ok(SessionStore::File));
    assert_eq!(
        secrets::init_file_store(&dir.join("elsewhere")),
        Err(SecretsError::AlreadyChosen {
            chosen: Some(SessionStore::File)
        })
    );
    assert_eq!(secrets::warning(), Some(FILE_STORE_WARNING));

    runtime().block_on(async {
        // A profile that did not opt in is refused by name: its session is
        // never written to a file for it (as after a profile switch in the
        // TUI of a process that chose files for another).
        let err = session::login_with_token(&target, "demo-alice")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SessionError::FileStoreNotChosen {
                profile: target.profile.clone()
            }
        );
        let err = session::current(&target).await.unwrap_err();
        assert!(
            matches!(err, SessionError::FileStoreNotChosen { .. }),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing written"
        );
        // As `hoist login --insecure-file-store` does: the opt-in is the
        // profile's from here.
        let mut target = target.clone();
        target.insecure_file_store = true;
        let me = session::login_with_token(&target, "demo-alice")
            .await
            .unwrap();
        assert_eq!(me.user, "alice");
        config.remember_login(&target, &me.user);
        config.set_insecure_file_store(&target, true);
        config.save().unwrap();
    });
}

/// Second child: a later run that honours the profile's setting.
fn open_from_the_file() {
    secrets::prepare();
    let target = Config::load().unwrap().resolve(None, None).unwrap();
    assert!(target.insecure_file_store);
    assert_eq!(target.user.as_deref(), Some("alice"));
    assert_eq!(
        secrets::init_file_store(&config::sessions_dir().unwrap()),
        Ok(SessionStore::File)
    );
    runtime().block_on(async {
        let client = session::open(&target).await.unwrap();
        let me = client.me().await.unwrap();
        assert_eq!(me.user, "alice");
        assert_eq!(me.display_name, "Alice Adams");
        // Signing out deletes the file.
        assert!(session::logout(&target).await.unwrap().removed);
        let err = session::open(&target).await.unwrap_err();
        assert!(matches!(err, SessionError::NotSignedIn { .. }), "{err:?}");
    });
}

/// `hoist` itself, as a person types it: `login --insecure-file-store`
/// once, then plain commands that find the session, then `logout`, which
/// deletes the file. Nothing edits the config but `hoist`.
#[test]
fn the_binary_remembers_the_opt_in_and_logout_deletes_the_file() {
    let runtime = keyutils_runtime();
    let mut broker = runtime.block_on(demo_broker());
    let home = tempfile::tempdir().unwrap();
    let env = no_keyring_env(home.path(), &broker.url());
    let hoist = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("HOIST_BROKER")
            .env_remove("HOIST_PROFILE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let config_dir = home.path().join("hoist-config");
    let sessions = config_dir.join("sessions");

    let (code, _, said) = hoist(
        &[
            "--broker",
            &broker.url(),
            "login",
            "--with-token",
            "--insecure-file-store",
        ],
        "demo-alice\n",
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Signed in to"), "{said}");
    assert!(said.contains(FILE_STORE_WARNING), "{said}");
    let files = files_under(&sessions);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    let config = std::fs::read_to_string(config_dir.join("config.toml")).unwrap();
    assert!(config.contains("insecure_file_store = true"), "{config}");

    // The next commands, with no flag and no broker named, find the session.
    let (code, out, said) = hoist(&["whoami"], "");
    assert_eq!(code, Some(0), "{said}");
    assert!(out.contains("user:     alice (Alice Adams)"), "{out}");
    assert!(
        said.contains(FILE_STORE_WARNING) || said.is_empty(),
        "{said}"
    );
    let (code, out, said) = hoist(&["roles", "--json"], "");
    assert_eq!(code, Some(0), "{said}");
    assert!(out.contains("prod-db-admin"), "{out}");

    // Signing in as someone else ends the first session: no token is left
    // in a file that no command would read again.
    let (code, _, said) = hoist(&["login", "--with-token"], "demo-bob\n");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Signed out alice first"), "{said}");
    let files = files_under(&sessions);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        !std::fs::read_to_string(&files[0])
            .unwrap()
            .contains("demo-alice")
    );
    let (code, out, said) = hoist(&["whoami"], "");
    assert_eq!(code, Some(0), "{said}");
    assert!(out.contains("user:     bob"), "{out}");

    // A session file others could read is refused, and logout, the way
    // out, deletes it all the same.
    let files = files_under(&sessions);
    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, said) = hoist(&["whoami"], "");
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("open to other users"), "{said}");

    // Logout signs out, deletes the file, and ends the opt-in.
    let (code, _, said) = hoist(&["logout"], "");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("may have copied its tokens"), "{said}");
    assert!(said.contains("Signed out of"), "{said}");
    assert!(said.contains("the session file is deleted"), "{said}");
    assert!(files_under(&sessions).is_empty());
    let config = std::fs::read_to_string(config_dir.join("config.toml")).unwrap();
    assert!(!config.contains("insecure_file_store = true"), "{config}");
    assert!(!config.contains("demo-alice"), "{config}");
    assert!(!config.contains("bob"), "{config}");
    assert_eq!(files_under(home.path()), [config_dir.join("config.toml")]);

    // Signed out is signed out, with the way back named.
    let (code, _, said) = hoist(&["roles"], "");
    assert_eq!(code, Some(5), "{said}");
    assert!(said.contains("not signed in"), "{said}");
    // Without the flag, a machine with no keyring refuses to store the token.
    let (code, _, said) = hoist(&["login", "--with-token"], "demo-alice\n");
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("--insecure-file-store"), "{said}");
    // And says so before a provider's sign-in is begun.
    let (code, _, said) = hoist(&["login"], "");
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("--insecure-file-store"), "{said}");
    assert!(files_under(&sessions).is_empty());
    assert_eq!(
        keyctl_read(&keyutils_description(&broker.url(), "alice")),
        None
    );

    // A profile pointed at another broker signs out whoever it had at the
    // first: their file is not left where no command would look again.
    let elsewhere = broker.url().replace("127.0.0.1", "localhost");
    assert_ne!(elsewhere, broker.url());
    // (The profile's choice of a file stands without the flag again.)
    for (url, token, flag) in [
        (broker.url(), "demo-alice\n", Some("--insecure-file-store")),
        (elsewhere, "demo-bob\n", None),
    ] {
        let mut args = vec![
            "--profile",
            "work",
            "--broker",
            &url,
            "login",
            "--with-token",
        ];
        args.extend(flag);
        let (code, _, said) = hoist(&args, token);
        assert_eq!(code, Some(0), "{said}");
        if token == "demo-bob\n" {
            assert!(said.contains("Signed out alice at"), "{said}");
        }
    }
    let files = files_under(&sessions);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        !std::fs::read_to_string(&files[0])
            .unwrap()
            .contains("demo-alice")
    );

    // A sign-out through another broker than the profile's would find
    // nothing there and forget the profile's sign-in: refused, naming it.
    let (code, _, said) = hoist(
        &["--profile", "work", "--broker", &broker.url(), "logout"],
        "",
    );
    assert_ne!(code, Some(0), "{said}");
    assert!(
        said.contains("is signed in at") && said.contains("as bob"),
        "{said}"
    );
    assert_eq!(files_under(&sessions), files);

    // Two profiles signed in as one person share a session: signing in as
    // someone else on one of them leaves the other's alone.
    for (profile, token) in [
        ("one", "demo-alice\n"),
        ("two", "demo-alice\n"),
        ("one", "demo-bob\n"),
    ] {
        let (code, _, said) = hoist(
            &[
                "--profile",
                profile,
                "--broker",
                &broker.url(),
                "login",
                "--with-token",
                "--insecure-file-store",
            ],
            token,
        );
        assert_eq!(code, Some(0), "{said}");
        assert!(!said.contains("Signed out alice"), "{said}");
    }
    let (code, out, said) = hoist(&["--profile", "two", "whoami"], "");
    assert_eq!(code, Some(0), "{said}");
    assert!(out.contains("user:     alice"), "{out}");
    runtime.block_on(broker.stop());
}

#[test]
fn without_the_opt_in_no_keyring_means_refusal_and_no_file() {
    if in_child() {
        return refused_without_the_opt_in();
    }
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let home = tempfile::tempdir().unwrap();
        let env = no_keyring_env(home.path(), &broker.url());
        child(
            "file_store::without_the_opt_in_no_keyring_means_refusal_and_no_file",
            &env,
            &[],
        )
        .await;
        let left = files_under(home.path());
        assert!(left.is_empty(), "the child wrote {left:?}");
        assert!(!home.path().join("hoist-config").exists());
        assert_eq!(stored(&broker.url(), "alice").await, None);
        broker.stop().await;
    });
}

fn refused_without_the_opt_in() {
    secrets::prepare();
    let broker = broker_from_parent();
    let target = Config::load()
        .unwrap()
        .resolve(Some(&broker), None)
        .unwrap();
    assert!(!target.insecure_file_store);
    runtime().block_on(async {
        let err = session::login_with_token(&target, "demo-alice")
            .await
            .unwrap_err();
        let SessionError::Secrets(SecretsError::NoBackend { tried }) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(tried.len(), 1);
        let message = err.to_string();
        assert!(
            message.contains("refuses to store tokens in a file"),
            "{message}"
        );
        assert!(
            message.contains("`hoist login --insecure-file-store`"),
            "{message}"
        );
        assert!(!message.contains("demo-alice"), "{message}");
    });
    // Too late to fall back to a file quietly: the refusal stands.
    let dir = config::sessions_dir().unwrap();
    assert_eq!(
        secrets::init_file_store(&dir),
        Err(SecretsError::AlreadyChosen { chosen: None })
    );
    assert_eq!(secrets::warning(), None);
    assert!(!dir.exists());
}

#[test]
fn hoist_keyring_cannot_choose_the_file_store() {
    if in_child() {
        secrets::prepare();
        let err = secrets::init().unwrap_err();
        assert_eq!(
            err,
            SecretsError::UnknownBackend {
                value: "file".into()
            }
        );
        assert!(
            err.to_string()
                .contains("it takes `hoist login --insecure-file-store`"),
            "{err}"
        );
        let target = Config::load()
            .unwrap()
            .resolve(Some(&broker_from_parent()), None)
            .unwrap();
        runtime().block_on(async {
            let err = session::login_with_token(&target, "demo-alice")
                .await
                .unwrap_err();
            assert!(matches!(err, SessionError::Secrets(_)), "{err:?}");
        });
        assert!(!config::sessions_dir().unwrap().exists());
        return;
    }
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let home = tempfile::tempdir().unwrap();
        let env = no_keyring_env(home.path(), &broker.url());
        child(
            "file_store::hoist_keyring_cannot_choose_the_file_store",
            &env,
            &[("HOIST_KEYRING", "file")],
        )
        .await;
        let left = files_under(home.path());
        assert!(left.is_empty(), "the child wrote {left:?}");
        broker.stop().await;
    });
}
