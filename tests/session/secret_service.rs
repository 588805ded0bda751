//! The Secret Service backend: refused plainly when there is no session
//! bus, never replaced by a file; and, under `secret-service.sh`, a real
//! gnome-keyring on a private bus.

use hoist::auth::secrets::{self, SecretsError, SessionStore};
use hoist::auth::session::{self, SessionError};
use hoist::config::Config;

use crate::helpers::{
    BROKER_ENV, ConfigDir, demo_broker, in_child, keyctl_read, keyutils_description,
    keyutils_runtime, run_child, runtime, stored,
};

/// A bus address that cannot exist, whatever the machine has.
const NO_BUS: (&str, &str) = (
    "DBUS_SESSION_BUS_ADDRESS",
    "unix:path=/nonexistent/hoist-test/bus",
);
/// Set by `secret-service.sh`: `unlocked` or `locked`.
const REAL_SECRET_SERVICE_ENV: &str = "HOIST_TEST_SECRET_SERVICE";

#[test]
fn forced_secret_service_without_a_bus_is_refused_and_nothing_is_stored() {
    if in_child() {
        return refused_without_a_bus();
    }
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let home = tempfile::tempdir().unwrap();
        let config_dir = home.path().join("hoist-config");
        let url = broker.url().clone();
        let config_env = config_dir.to_str().unwrap().to_string();
        let home_env = home.path().to_str().unwrap().to_string();
        tokio::task::spawn_blocking(move || {
            run_child(
                "secret_service::forced_secret_service_without_a_bus_is_refused_and_nothing_is_stored",
                &[
                    NO_BUS,
                    ("HOIST_KEYRING", "secret-service"),
                    (BROKER_ENV, &url),
                    ("HOIST_CONFIG_DIR", &config_env),
                    ("HOME", &home_env),
                ],
                &[],
            )
        })
        .await
        .unwrap();

        // No file anywhere in the child's home, and no kernel keyring entry.
        let left: Vec<_> = std::fs::read_dir(home.path()).unwrap().collect();
        assert!(left.is_empty(), "the child wrote {left:?}");
        assert_eq!(stored(&broker.url(), "alice").await, None);
        assert_eq!(keyctl_read(&keyutils_description(&broker.url(), "alice")), None);
        broker.stop().await;
    });
}

/// The child's half: `HOIST_KEYRING=secret-service` and no bus.
fn refused_without_a_bus() {
    secrets::prepare();
    let err = secrets::init().unwrap_err();
    assert_eq!(
        err,
        SecretsError::NoBackend {
            tried: vec![(
                SessionStore::SecretService,
                "no Secret Service (no D-Bus session bus)".to_string()
            )]
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("refuses to store tokens in a file"),
        "{message}"
    );
    // The choice sticks: asking again gives the same answer, and no store.
    assert_eq!(
        secrets::init_with(Some(SessionStore::Keyutils)),
        Err(err.clone())
    );
    assert_eq!(secrets::warning(), None);

    let broker = std::env::var(BROKER_ENV).unwrap();
    runtime().block_on(async {
        let target = Config::load()
            .unwrap()
            .resolve(Some(&broker), None)
            .unwrap();
        // The broker accepts the token; only storing it fails, and says why.
        let err = session::login_with_token(&target, "demo-alice")
            .await
            .unwrap_err();
        assert_eq!(err, SessionError::Secrets(secrets::init().unwrap_err()));
        assert!(!err.to_string().contains("demo-alice"), "{err}");
    });
}

#[test]
fn without_a_bus_the_kernel_keyring_is_chosen_with_a_warning() {
    if in_child() {
        secrets::prepare();
        assert_eq!(secrets::init(), Ok(SessionStore::Keyutils));
        assert!(secrets::warning().unwrap().contains("reboot"));
        return;
    }
    run_child(
        "secret_service::without_a_bus_the_kernel_keyring_is_chosen_with_a_warning",
        &[NO_BUS],
        &["HOIST_KEYRING"],
    );
}

#[test]
fn an_unknown_keyring_name_is_refused() {
    if in_child() {
        let err = secrets::init().unwrap_err();
        assert_eq!(
            err,
            SecretsError::UnknownBackend {
                value: "file".into()
            }
        );
        assert!(
            err.to_string().contains("secret-service, keyutils"),
            "{err}"
        );
        return;
    }
    run_child(
        "secret_service::an_unknown_keyring_name_is_refused",
        &[("HOIST_KEYRING", "file")],
        &[],
    );
}

/// Whether `secret-service.sh` set up a real Secret Service in `state`;
/// anything else is a mistake worth failing on, since these tests would
/// otherwise write to the developer's own keyring.
fn require_real_secret_service(state: &str) {
    let set = std::env::var(REAL_SECRET_SERVICE_ENV).unwrap_or_default();
    assert_eq!(
        set, state,
        "run this test through tests/session/secret-service.sh, which starts a private gnome-keyring"
    );
}

#[test]
#[ignore = "needs a private gnome-keyring: run tests/session/secret-service.sh"]
fn real_secret_service_is_preferred_and_keeps_the_session() {
    require_real_secret_service("unlocked");
    secrets::prepare();
    assert_eq!(secrets::init(), Ok(SessionStore::SecretService));
    assert_eq!(secrets::warning(), None);
    runtime().block_on(async {
        let mut broker = demo_broker().await;
        let config_dir = ConfigDir::new();
        let target = config_dir.target_for(&broker.url());
        let me = session::login_with_token(&target, "demo-erin")
            .await
            .unwrap();
        assert_eq!(me.user, "erin");
        let mut config = config_dir.load();
        config.remember_login(&target, &me.user);
        config.save().unwrap();
        let target = config_dir.load().resolve(None, None).unwrap();

        // Another process, with its own D-Bus connection, finds it too.
        let url = broker.url().clone();
        tokio::task::spawn_blocking(move || {
            run_child(
                "secret_service::real_secret_service_child_reads_the_session",
                &[(BROKER_ENV, &url)],
                &[],
            )
        })
        .await
        .unwrap();

        let client = session::open(&target).await.unwrap();
        assert_eq!(client.me().await.unwrap().user, "erin");
        assert!(session::logout(&target).await.unwrap().removed);
        let err = session::open(&target).await.unwrap_err();
        assert!(matches!(err, SessionError::NotSignedIn { .. }), "{err:?}");
        broker.stop().await;
    });
}

#[test]
#[ignore = "the second half of real_secret_service_is_preferred_and_keeps_the_session"]
fn real_secret_service_child_reads_the_session() {
    require_real_secret_service("unlocked");
    assert!(
        in_child(),
        "started by real_secret_service_is_preferred_and_keeps_the_session"
    );
    assert_eq!(
        secrets::init_with(Some(SessionStore::SecretService)),
        Ok(SessionStore::SecretService)
    );
    let broker = std::env::var(BROKER_ENV).unwrap();
    let session = secrets::load(&broker, "erin").unwrap().unwrap();
    assert_eq!(session.access_token, "demo-erin");
}

#[test]
#[ignore = "needs a private, locked gnome-keyring: run tests/session/secret-service.sh"]
fn a_locked_secret_service_is_refused_with_a_plain_reason() {
    require_real_secret_service("locked");
    secrets::prepare();
    let err = secrets::init_with(Some(SessionStore::SecretService)).unwrap_err();
    assert_eq!(
        err,
        SecretsError::NoBackend {
            tried: vec![(
                SessionStore::SecretService,
                "the keyring is locked".to_string()
            )]
        }
    );
}
