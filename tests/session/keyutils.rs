//! Sign-in, open and sign-out with the kernel keyring (`HOIST_KEYRING=keyutils`),
//! so these tests do not depend on whether a D-Bus session bus exists.

use hoist::auth::secrets;
use hoist::auth::session::{self, SessionError};
use hoist::config::Config;

use crate::helpers::{
    ConfigDir, demo_broker, keyctl_read, keyutils_description, keyutils_runtime, stored,
};

#[test]
fn login_stores_a_session_that_open_then_uses() {
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let config_dir = ConfigDir::new();

        let target = config_dir.target_for(&broker.url());
        assert_eq!(target.user, None);
        let me = session::login_with_token(&target, "  demo-alice\n")
            .await
            .unwrap();
        assert_eq!(me.user, "alice");
        let mut config = config_dir.load();
        config.remember_login(&target, &me.user);
        config.save().unwrap();

        // A later command: nothing on the command line, everything from the
        // saved config and the keyring.
        let target = Config::load_from(&config_dir.path())
            .unwrap()
            .resolve(None, None)
            .unwrap();
        assert_eq!(target.user.as_deref(), Some("alice"));
        let client = session::open(&target).await.unwrap();
        let me = client.me().await.unwrap();
        assert_eq!(me.user, "alice");
        assert_eq!(me.display_name, "Alice Adams");

        // The entry is in the kernel keyring, where keyctl finds it too.
        let stored = stored(&broker.url(), "alice").await.unwrap();
        assert_eq!(stored.access_token, "demo-alice");
        let raw = keyctl_read(&keyutils_description(&broker.url(), "alice"))
            .expect("keyctl finds hoist's entry in the session keyring");
        assert_eq!(raw, r#"{"access_token":"demo-alice"}"#);

        assert!(session::logout(&target).await.unwrap().removed);
        broker.stop().await;
    });
}

#[test]
fn the_config_file_never_holds_the_token() {
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let config_dir = ConfigDir::new();
        let target = config_dir.target_for(&broker.url());
        let me = session::login_with_token(&target, "demo-bob")
            .await
            .unwrap();
        let mut config = config_dir.load();
        config.remember_login(&target, &me.user);
        config.toggle_favourite(&target.profile, "prod-db-admin");
        config.save().unwrap();

        let text = std::fs::read_to_string(config_dir.path()).unwrap();
        assert!(
            !text.contains("demo-bob"),
            "token in the config file:\n{text}"
        );
        assert!(!text.to_lowercase().contains("token = "), "{text}");
        assert!(text.contains(&broker.url()), "{text}");
        assert!(text.contains("user = \"bob\""), "{text}");
        // Nothing else was written beside it either.
        let names: Vec<_> = std::fs::read_dir(config_dir.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["config.toml"]);

        let target = config_dir.load().resolve(None, None).unwrap();
        assert!(session::logout(&target).await.unwrap().removed);
        broker.stop().await;
    });
}

#[test]
fn a_wrong_token_is_refused_by_the_broker_and_nothing_is_stored() {
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let config_dir = ConfigDir::new();
        let target = config_dir.target_for(&broker.url());

        let err = session::login_with_token(&target, "demo-alice-typo")
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::TokenRefused { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("refused the token"), "{message}");
        assert!(!message.contains("demo-alice-typo"), "{message}");
        assert_eq!(stored(&broker.url(), "alice").await, None);
        assert_eq!(
            keyctl_read(&keyutils_description(&broker.url(), "alice")),
            None
        );

        // An empty token never reaches the broker.
        let err = session::login_with_token(&target, " \n").await.unwrap_err();
        assert_eq!(err, SessionError::EmptyToken);
        assert!(!config_dir.path().exists());
        broker.stop().await;
    });
}

#[test]
fn logout_deletes_the_session_and_open_then_says_how_to_sign_in() {
    keyutils_runtime().block_on(async {
        let mut broker = demo_broker().await;
        let config_dir = ConfigDir::new();
        let target = config_dir.target_for(&broker.url());
        let me = session::login_with_token(&target, "demo-carol")
            .await
            .unwrap();
        let mut config = config_dir.load();
        config.remember_login(&target, &me.user);
        config.save().unwrap();
        let target = config_dir.load().resolve(None, None).unwrap();
        session::open(&target).await.unwrap();

        assert!(session::logout(&target).await.unwrap().removed);
        assert_eq!(stored(&broker.url(), "carol").await, None);
        assert_eq!(
            keyctl_read(&keyutils_description(&broker.url(), "carol")),
            None
        );
        let err = session::open(&target).await.unwrap_err();
        assert!(matches!(err, SessionError::NotSignedIn { .. }), "{err:?}");
        assert!(
            err.to_string().contains("hoist login --with-token"),
            "{err}"
        );
        // A second logout has nothing left to delete.
        assert!(!session::logout(&target).await.unwrap().removed);

        // Once the config forgets the user too, open says the same.
        let mut config = config_dir.load();
        config.forget_login(&target);
        config.save().unwrap();
        let target = config_dir.load().resolve(None, None).unwrap();
        assert_eq!(target.user, None);
        let err = session::open(&target).await.unwrap_err();
        assert!(matches!(err, SessionError::NotSignedIn { .. }), "{err:?}");
        broker.stop().await;
    });
}

#[test]
fn sessions_are_kept_per_broker_and_user() {
    keyutils_runtime().block_on(async {
        let mut one = demo_broker().await;
        let mut two = demo_broker().await;
        let config_dir = ConfigDir::new();
        let at_one = config_dir.target_for(&one.url());
        let at_two = config_dir.target_for(&two.url());
        session::login_with_token(&at_one, "demo-alice")
            .await
            .unwrap();
        session::login_with_token(&at_two, "demo-dave")
            .await
            .unwrap();

        assert_eq!(
            stored(&one.url(), "alice").await.unwrap().access_token,
            "demo-alice"
        );
        assert_eq!(
            stored(&two.url(), "dave").await.unwrap().access_token,
            "demo-dave"
        );
        assert_eq!(stored(&one.url(), "dave").await, None);
        assert_eq!(stored(&two.url(), "alice").await, None);

        let mut at_one = at_one;
        at_one.user = Some("alice".into());
        assert!(session::logout(&at_one).await.unwrap().removed);
        let mut at_two = at_two;
        at_two.user = Some("dave".into());
        assert_eq!(
            session::open(&at_two)
                .await
                .unwrap()
                .me()
                .await
                .unwrap()
                .user,
            "dave"
        );
        assert!(session::logout(&at_two).await.unwrap().removed);
        one.stop().await;
        two.stop().await;
    });
}

#[test]
fn the_kernel_keyring_is_announced_with_its_limits() {
    let _runtime = keyutils_runtime();
    let warning = secrets::warning().expect("keyutils comes with a warning");
    assert!(warning.contains("reboot"), "{warning}");
}
