//! Single sign-on for real: a real OpenID provider on loopback (panva's
//! oidc-provider, from npm), a real broker trusting it, and hoist signing in
//! through the device and browser flows, refreshing, signing out; and the
//! broker refusing expired, foreign, mis-addressed and unsigned tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/oidc.rs"]
mod oidc;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hoist::auth::session::{self, Flow, Recency};
use hoist::backend::hoistd::HoistdClient;
use hoist::backend::{self, BackendError};
use hoist::config::Target;
use oidc::Provider;

/// A policy whose people exist only at the provider: their groups come from
/// the ID token.
fn policy(issuer: &str) -> String {
    format!(
        r#"
[groups]
engineers = []
prod-approvers = []

[[roles]]
id = "prod-db"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["prod-approvers"]

[[oidc]]
issuer = "{issuer}"
client_id = "hoist"
leeway = "0s"
scopes = ["openid", "offline_access"]
"#
    )
}

struct Setup {
    provider: Provider,
    broker: hoistd::testing::TestBroker,
    url: String,
}

/// Runs a test with a session keyring that every thread of its runtime
/// shares: keyutils credentials are per thread and inherited by threads
/// started later, so the keyring must be joined before the runtime exists.
fn run(test: impl std::future::Future<Output = ()>) {
    hoist::auth::secrets::prepare();
    let _ = hoist::auth::secrets::init_with(Some(hoist::auth::secrets::SessionStore::Keyutils));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

async fn setup(ttl: Option<u64>) -> Setup {
    let provider = match ttl {
        Some(secs) => Provider::start_with_ttl(secs).await,
        None => Provider::start().await,
    };
    setup_with(provider).await
}

async fn setup_with(provider: Provider) -> Setup {
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy(&provider.issuer))
        .start()
        .await;
    let url = broker.url();
    Setup {
        provider,
        broker,
        url,
    }
}

fn target(setup: &Setup, user: Option<&str>) -> Target {
    let mut target = hoist::config::Config::default()
        .resolve(Some(&setup.url), None)
        .unwrap();
    target.user = user.map(str::to_string);
    target
}

/// Signs in as `who` through the device flow, approving at the provider as a person would.
async fn device_login(setup: &Setup, who: &str) -> (hoist_api::Me, hoist::auth::secrets::Session) {
    try_device_login(setup, who).await.unwrap()
}

/// [`device_login`], as it went.
async fn try_device_login(
    setup: &Setup,
    who: &str,
) -> Result<(hoist_api::Me, hoist::auth::secrets::Session), session::SessionError> {
    let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
    let mut sender = Some(sender);
    let anonymous = target(setup, None);
    let login = session::login_sso(
        &anonymous,
        Flow::Device,
        Recency::Remembered,
        |prompt| {
            let url = prompt
                .verification_uri_complete
                .clone()
                .expect("a complete verification URI");
            let _ = sender.take().unwrap().send(url);
        },
        |_| unreachable!("device flow"),
    );
    let approve = async {
        let url = receiver.await.unwrap();
        setup.provider.approve_device(&url, who).await;
    };
    let (signed_in, ()) = tokio::join!(login, approve);
    signed_in
}

/// Alice signed in through the device flow: her target, and the session
/// it stored.
async fn alice_signed_in(setup: &Setup) -> (Target, hoist::auth::secrets::Session) {
    let (me, session) = device_login(setup, "alice").await;
    assert_eq!(me.user, "alice");
    (target(setup, Some(&me.user)), session)
}

/// Alice's session as the keyring holds it now.
fn kept_session(target: &Target) -> hoist::auth::secrets::Session {
    hoist::auth::secrets::load(&target.broker, "alice")
        .unwrap()
        .expect("a stored session")
}

/// Why a session at `target` did not open; `opened` says what opening it
/// would have wrongly done.
async fn refused_open(target: &Target, opened: &str) -> session::SessionError {
    match session::open(target).await {
        Ok(_) => panic!("{opened}"),
        Err(err) => err,
    }
}

async fn status_of(setup: &Setup, token: &str) -> Result<hoist_api::Me, BackendError> {
    backend::connect(&setup.url, token).unwrap().me().await
}

#[test]
fn the_broker_says_how_to_sign_in() {
    run(async {
        let mut setup = setup(None).await;
        let config = HoistdClient::auth_config(&setup.url).await.unwrap();
        assert_eq!(config.issuers.len(), 1);
        assert_eq!(config.issuers[0].issuer, setup.provider.issuer);
        assert_eq!(config.issuers[0].client_id, "hoist");
        assert_eq!(config.issuers[0].flows, ["device", "browser"]);
        assert!(!config.static_tokens);
        setup.broker.stop().await;
    });
}

/// The real binary against `setup`'s broker, with its config in `config`.
fn hoist_binary(setup: &Setup, config: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
    command
        .arg("--broker")
        .arg(&setup.url)
        .args(args)
        .env("HOIST_CONFIG_DIR", config)
        .env("HOIST_KEYRING", "keyutils")
        .env("HOIST_NO_BROWSER", "1")
        .stdin(Stdio::null());
    command
}

/// `hoist login` by the real binary, alice approving its device code.
async fn binary_login(setup: &Setup, config: &std::path::Path) {
    binary_login_and_meanwhile(setup, config, || {}).await;
}

/// [`binary_login`], calling `meanwhile` while the device code waits.
async fn binary_login_and_meanwhile(
    setup: &Setup,
    config: &std::path::Path,
    meanwhile: impl FnOnce(),
) {
    let mut login = hoist_binary(setup, config, &["login"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(login.stderr.take().unwrap()).lines();
    let mut complete = None;
    for line in said.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line
            .strip_prefix("(or open ")
            .and_then(|l| l.strip_suffix(')'))
        {
            complete = Some(url.to_string());
            break;
        }
    }
    meanwhile();
    setup
        .provider
        .approve_device(&complete.expect("the verification URL was shown"), "alice")
        .await;
    let status = tokio::task::spawn_blocking(move || login.wait().unwrap())
        .await
        .unwrap();
    let rest: Vec<String> = said.map(|l| l.unwrap()).collect();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("Signed in") && l.contains("alice")),
        "{rest:?}"
    );
}

/// A sign-in waits minutes for the person; what another command saved to
/// the config meanwhile (here, another profile's sign-in) is kept, not
/// overwritten by the copy read before.
#[test]
fn a_sign_in_keeps_what_another_command_saved_meanwhile() {
    run(async {
        let mut setup = setup(None).await;
        let config = tempfile::tempdir().unwrap();
        let file = config.path().join("config.toml");
        binary_login_and_meanwhile(&setup, config.path(), || {
            std::fs::write(
                &file,
                "[profiles.other]\nbroker = \"https://other.example\"\nuser = \"bob\"\n",
            )
            .unwrap();
        })
        .await;
        let saved =
            hoist::config::Config::parse(&file, &std::fs::read_to_string(&file).unwrap()).unwrap();
        let other = saved.resolve(None, Some("other")).unwrap();
        assert_eq!(other.user.as_deref(), Some("bob"), "kept");
        let signed_in = saved.resolve(Some(&setup.url), None).unwrap();
        assert_eq!(signed_in.user.as_deref(), Some("alice"));
        setup.broker.stop().await;
    });
}

/// hoist processes that find the session due at once (the TUI and
/// `reviews --watch` in another pane) refresh it one at a time: a provider
/// that rotates refresh tokens takes one spent twice for theft, and ends
/// the session everywhere.
#[test]
fn processes_refreshing_at_once_spend_each_refresh_token_once() {
    run(async {
        // Tokens that live 3 s: every command finds its session due.
        let mut setup = setup(Some(3)).await;
        let config = tempfile::tempdir().unwrap();
        binary_login(&setup, config.path()).await;
        let runs: Vec<_> = (0..4)
            .map(|_| {
                hoist_binary(&setup, config.path(), &["whoami"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for run in runs {
            let out = tokio::task::spawn_blocking(move || run.wait_with_output().unwrap())
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let again = hoist_binary(&setup, config.path(), &["whoami"])
            .output()
            .unwrap();
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        setup.broker.stop().await;
    });
}

#[test]
fn the_real_binary_signs_in_through_the_device_flow_and_uses_the_broker() {
    run(async {
        let mut setup = setup(None).await;
        let config = tempfile::tempdir().unwrap();
        let hoist = |args: &[&str]| hoist_binary(&setup, config.path(), args);
        binary_login(&setup, config.path()).await;

        let whoami = hoist(&["whoami"]).output().unwrap();
        let text = String::from_utf8(whoami.stdout).unwrap();
        assert!(text.contains("user:     alice"), "{text}");
        assert!(
            text.contains("groups:   engineers"),
            "groups come from the ID token: {text}"
        );
        assert!(
            text.contains(&format!("single sign-on via {}", setup.provider.issuer)),
            "{text}"
        );
        let roles = hoist(&["roles", "--json"]).output().unwrap();
        let roles: Vec<hoist_api::Role> = serde_json::from_slice(&roles.stdout).unwrap();
        assert_eq!(
            roles.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["prod-db"]
        );
        // Nothing of the session is in the config directory.
        for entry in walk(config.path()) {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(!text.contains("eyJ"), "{} holds a token", entry.display());
        }
        assert!(hoist(&["logout"]).output().unwrap().status.success());
        assert_eq!(hoist(&["whoami"]).output().unwrap().status.code(), Some(5));
        setup.broker.stop().await;
    });
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path))
        } else {
            files.push(path)
        }
    }
    files
}

/// Signs in as `who` through the browser flow, signing in at the provider
/// as a person would; also returns the authorization URL hoist opened.
async fn browser_login(
    setup: &Setup,
    recency: session::Recency,
    who: &str,
) -> (String, hoist_api::Me, hoist::auth::secrets::Session) {
    let (url, signed_in) = browser_login_through(setup, recency, who, str::to_string).await;
    let (me, session) = signed_in.unwrap();
    (url, me, session)
}

/// [`browser_login`] through a browser that rewrites the authorization URL
/// (`through`) before it goes to the provider; the sign-in's outcome.
async fn browser_login_through(
    setup: &Setup,
    recency: session::Recency,
    who: &str,
    through: impl FnOnce(&str) -> String,
) -> (
    String,
    Result<(hoist_api::Me, hoist::auth::secrets::Session), session::SessionError>,
) {
    let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
    let mut sender = Some(sender);
    let anonymous = target(setup, None);
    let login = session::login_sso(
        &anonymous,
        Flow::Browser,
        recency,
        |_| unreachable!("browser flow"),
        |url| {
            let _ = sender.take().unwrap().send(url.to_string());
        },
    );
    let browser = async {
        let url = receiver.await.unwrap();
        let redirect = setup.provider.login_code_flow(&through(&url), who).await;
        assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
        // The browser lands on hoist's loopback listener.
        let page = reqwest::get(&redirect).await.unwrap().text().await.unwrap();
        assert!(page.contains("Signed in"), "{page}");
        url
    };
    let (signed_in, url) = tokio::join!(login, browser);
    (url, signed_in)
}

#[test]
fn the_browser_flow_signs_in_with_pkce_on_a_loopback_redirect() {
    run(async {
        let mut setup = setup(None).await;
        let (url, me, session) = browser_login(&setup, Recency::Remembered, "bob").await;
        assert!(url.contains("code_challenge_method=S256"), "{url}");
        assert!(!url.contains("prompt=login"), "{url}");
        assert_eq!(me.user, "bob");
        assert!(me.groups.contains(&"prod-approvers".to_string()));
        assert!(session.refresh_token.is_some());
        // The ID token is bound to this sign-in by its nonce.
        let nonce = query(&url, "nonce").expect("a nonce in the authorization request");
        assert!(nonce.len() >= 16, "{nonce}");
        let claims = jwt_claims(&session.access_token);
        assert_eq!(claims["nonce"], nonce.as_str());
        setup.broker.stop().await;
    });
}

/// An ID token issued for another authorization request (here, one whose
/// nonce the browser changed) is refused, though its code and state fit.
#[test]
fn an_id_token_for_another_sign_in_is_refused() {
    run(async {
        let mut setup = setup(None).await;
        let swap = |url: &str| {
            let mut url = reqwest::Url::parse(url).unwrap();
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| match &*k {
                    "nonce" => (k.into_owned(), "another-sign-ins-nonce".to_string()),
                    _ => (k.into_owned(), v.into_owned()),
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
            url.to_string()
        };
        let (_, signed_in) = browser_login_through(&setup, Recency::Remembered, "bob", swap).await;
        let err = signed_in.unwrap_err().to_string();
        assert!(err.contains("nonce mismatch"), "{err}");
        setup.broker.stop().await;
    });
}

fn query(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A JWT's claims, read without verifying it.
fn jwt_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `hoist login --fresh`: the provider is asked to make the person sign in
/// now, whatever session it keeps, which a role's step-up needs.
#[test]
fn a_fresh_sign_in_asks_the_provider_to_sign_the_person_in_now() {
    run(async {
        let mut setup = setup(None).await;
        let (url, me, _) = browser_login(&setup, Recency::Fresh, "carol").await;
        let asked: std::collections::HashMap<String, String> = reqwest::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(
            asked.get("prompt").map(String::as_str),
            Some("login"),
            "{url}"
        );
        assert_eq!(asked.get("max_age").map(String::as_str), Some("0"), "{url}");
        assert_eq!(me.user, "carol");
        setup.broker.stop().await;
    });
}

/// A session that needs refreshing while its provider is down is not
/// "expired, sign in again" (exit 5) but "try again" (exit 6): the session
/// is kept, and refreshes once the provider is back.
#[test]
fn a_provider_outage_at_refresh_is_try_again_not_sign_in_again() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, _) = alice_signed_in(&setup).await;
        setup.provider.stop();
        let err = refused_open(&target, "refreshed with no provider").await;
        assert!(
            matches!(
                err,
                session::SessionError::Sso(hoist::auth::sso::SsoError::Unreachable { .. })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("try again"), "{err}");
        assert_eq!(hoist::commands::exit_code(&anyhow::Error::new(err)), 6);
        assert!(
            hoist::auth::secrets::load(&target.broker, "alice")
                .unwrap()
                .is_some(),
            "the session is kept"
        );
        setup.broker.stop().await;
    });
}

/// A token endpoint that answers 503 or 429 (a busy provider, or the proxy
/// in front of it) is an outage too, not a refusal of the session: exit 6
/// and the session kept, which refreshes once the provider answers again.
#[test]
fn a_busy_provider_at_refresh_is_try_again_not_sign_in_again() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, _) = alice_signed_in(&setup).await;
        for status in [503, 429] {
            setup.provider.outage(status).await;
            let err = match session::open(&target).await {
                Ok(_) => panic!("refreshed while the provider answered {status}"),
                Err(err) => err,
            };
            assert!(
                matches!(
                    err,
                    session::SessionError::Sso(hoist::auth::sso::SsoError::Unreachable { .. })
                ),
                "{status}: {err:?}"
            );
            assert!(err.to_string().contains(&status.to_string()), "{err}");
            assert_eq!(hoist::commands::exit_code(&anyhow::Error::new(err)), 6);
        }
        setup.provider.outage(0).await;
        let client = session::open(&target).await.unwrap();
        assert_eq!(client.me().await.unwrap().user, "alice");
        setup.broker.stop().await;
    });
}

/// A device sign-in at `target` that ends with the provider away, its
/// answer `status`: try again, exit 6.
async fn refused_as_away(target: &Target, status: &str) {
    let signed_in = session::login_sso(
        target,
        Flow::Device,
        Recency::Remembered,
        |_| {},
        |_| unreachable!("device flow"),
    )
    .await;
    let Err(err) = signed_in else {
        panic!("signed in while the provider was away");
    };
    assert!(
        matches!(
            err,
            session::SessionError::Sso(hoist::auth::sso::SsoError::Unreachable { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(status), "{err}");
    assert_eq!(hoist::commands::exit_code(&anyhow::Error::new(err)), 6);
}

/// The token endpoint busy (503) while hoist polls for a device sign-in:
/// polling goes on, with longer waits, and the sign-in completes once the
/// provider answers again. If the code runs out while it is still away,
/// the person is told that (try again, exit 6), not that they were slow;
/// and so they are when it is away as the sign-in starts.
#[test]
fn a_busy_provider_during_a_device_sign_in_is_waited_for_then_named() {
    run(async {
        // The code outlives the second poll, 10 s after the first.
        let mut setup = setup_with(Provider::start_with_device_ttl(30).await).await;
        setup.provider.outage(503).await;
        let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
        let mut sender = Some(sender);
        let anonymous = target(&setup, None);
        let login = session::login_sso(
            &anonymous,
            Flow::Device,
            Recency::Remembered,
            |prompt| {
                let url = prompt.verification_uri_complete.clone().unwrap();
                let _ = sender.take().unwrap().send(url);
            },
            |_| unreachable!("device flow"),
        );
        let approve = async {
            let url = receiver.await.unwrap();
            setup.provider.approve_device(&url, "alice").await;
            // Past the first poll, which is sent at once.
            tokio::time::sleep(Duration::from_secs(2)).await;
            setup.provider.outage(0).await;
        };
        let (signed_in, ()) = tokio::join!(login, approve);
        let (me, _) = signed_in.expect("signed in once the provider answered");
        assert_eq!(me.user, "alice");
        setup.broker.stop().await;

        let mut setup = setup_with(Provider::start_with_device_ttl(3).await).await;
        setup.provider.outage(503).await;
        let anonymous = target(&setup, None);
        refused_as_away(&anonymous, "503").await;
        setup.provider.outage(0).await;
        setup.provider.device_outage(429).await;
        refused_as_away(&anonymous, "429").await;
        setup.broker.stop().await;
    });
}

/// A refresh under way when a command ends (a background refresh in
/// `exec` or `--wait`) is finished and saved before the process ends: its
/// runtime would otherwise drop it while the provider answers, with the
/// stored refresh token already spent. Here the provider holds its answer
/// for 4 s, and the runtime is ended as `main` ends it, 1.5 s in (the
/// refresh token sent by then).
#[test]
fn a_refresh_under_way_when_the_command_ends_is_saved_first() {
    hoist::auth::secrets::prepare();
    let _ = hoist::auth::secrets::init_with(Some(hoist::auth::secrets::SessionStore::Keyutils));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (setup, broker, first) = runtime.block_on(async {
        // Tokens of 3 s: due for a refresh at once.
        let setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        let broker = target.broker.clone();
        setup.provider.slow(4000).await;
        tokio::spawn(async move { session::current(&target).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (setup, broker, first)
    });
    hoist::cli::shut_down(runtime);
    let stored = hoist::auth::secrets::load(&broker, "alice")
        .unwrap()
        .unwrap();
    assert!(stored.refresh_token.is_some());
    assert_ne!(
        stored.refresh_token, first.refresh_token,
        "the refresh was dropped midway: the stored refresh token is the spent one"
    );
    drop(setup);
}

/// `reviews --watch` ended by a signal while its background refresh is at
/// the provider (its answer held there 4 s) waits for the answer and saves it, then
/// ends by that signal: the refresh token it leaves stored is not spent.
#[test]
fn a_watch_ended_by_a_signal_saves_the_refresh_under_way() {
    run(async {
        // Tokens of 62 s: not due when the watch starts, due for its
        // background refresh (a minute ahead of their end) 2 s after.
        let mut setup = setup(Some(62)).await;
        let config = tempfile::tempdir().unwrap();
        binary_login(&setup, config.path()).await;
        let target = target(&setup, Some("alice"));
        setup.provider.slow(4000).await;
        let watch = hoist_binary(&setup, config.path(), &["reviews", "--watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(watch.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
            .await
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(nix::sys::signal::Signal::SIGTERM as i32),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("waiting for the sign-in provider's answer"),
            "a wait of more than a second is explained: {said}"
        );
        setup.provider.slow(0).await;
        let stored = kept_session(&target).refresh_token.unwrap();
        let refreshed = setup.provider.refresh_with(&stored).await;
        assert_eq!(
            refreshed.status(),
            200,
            "the stored refresh token was spent by a refresh the watch dropped"
        );
        setup.broker.stop().await;
    });
}

#[test]
fn sessions_refresh_themselves_and_logout_revokes_them() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        let stored = kept_session(&target);
        assert_eq!(
            stored.access_token, first.access_token,
            "the session is in the keyring"
        );

        // Within a minute of its end, opening the session refreshes it.
        let client = session::open(&target).await.unwrap();
        let renewed = kept_session(&target);
        assert_ne!(
            renewed.refresh_token, first.refresh_token,
            "the provider rotated the refresh token"
        );
        assert!(renewed.expires_at.unwrap() >= first.expires_at.unwrap());
        assert_eq!(client.me().await.unwrap().user, "alice");

        // `exp` is in whole seconds and checked as `exp < now`: allow the extra second.
        tokio::time::sleep(Duration::from_millis(4600)).await;
        let expired = status_of(&setup, &first.access_token).await;
        assert!(
            matches!(expired, Err(BackendError::Unauthenticated(_))),
            "an expired token is refused: {expired:?}"
        );
        let client = session::open(&target).await.unwrap();
        assert_eq!(
            client.me().await.unwrap().user,
            "alice",
            "refreshed again after expiry"
        );

        let old_refresh = kept_session(&target).refresh_token.unwrap();
        let signed_out = session::logout(&target).await.unwrap();
        assert!(signed_out.removed);
        assert_eq!(signed_out.revoked, Some(true), "revoked at the provider");
        assert!(
            hoist::auth::secrets::load(&target.broker, "alice")
                .unwrap()
                .is_none()
        );
        let after = setup.provider.refresh_with(&old_refresh).await;
        assert_eq!(
            after.status(),
            400,
            "the refresh token was revoked at the provider"
        );
        assert!(matches!(
            session::open(&target).await,
            Err(session::SessionError::NotSignedIn { .. })
        ));
        setup.broker.stop().await;
    });
}

/// A provider that answers a refresh with an ID token only when the refresh
/// names `openid` (OpenID Connect leaves it to the provider) is asked again
/// with the scopes it granted, and the session renews.
#[test]
fn a_refresh_answered_without_an_id_token_asks_again_for_openid() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        setup.provider.refresh_id_token("asked").await;
        let client = session::open(&target).await.unwrap();
        assert_eq!(client.me().await.unwrap().user, "alice");
        let renewed = kept_session(&target);
        assert_ne!(renewed.refresh_token, first.refresh_token, "renewed");
        let claims = jwt_claims(&renewed.access_token);
        assert_eq!(claims["preferred_username"], "alice", "{claims}");
        assert_eq!(
            claims["groups"],
            serde_json::json!(["engineers"]),
            "{claims}"
        );
        setup.broker.stop().await;
    });
}

/// The provider away when asked again for the ID token: try again, not
/// sign in again, with the refresh token handed back the first time kept.
#[test]
fn a_provider_away_when_asked_again_for_an_id_token_is_try_again() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        setup.provider.refresh_id_token("away").await;
        let err = refused_open(&target, "renewed without an ID token").await;
        assert!(
            matches!(
                err,
                session::SessionError::Sso(hoist::auth::sso::SsoError::Unreachable { .. })
            ),
            "{err:?}"
        );
        let kept = kept_session(&target).refresh_token;
        assert_ne!(kept, first.refresh_token, "the one handed back is kept");
        setup.broker.stop().await;
    });
}

/// A provider that renews a session without an ID token however asked:
/// the session cannot go on (sign in again), but the refresh token it
/// handed back is the one kept, so that signing out revokes it. The one
/// spent is dead at a provider that rotates them.
#[test]
fn a_refresh_never_answered_with_an_id_token_keeps_the_refresh_token_handed_back() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        setup.provider.refresh_id_token("never").await;
        let err = refused_open(&target, "renewed without an ID token").await;
        assert!(
            matches!(err, session::SessionError::Expired { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("without an ID token"), "{err}");
        let kept = kept_session(&target).refresh_token.unwrap();
        assert_ne!(Some(&kept), first.refresh_token.as_ref(), "the spent one");
        let spent = setup
            .provider
            .refresh_with(first.refresh_token.as_deref().unwrap())
            .await;
        assert_eq!(spent.status(), 400, "the first refresh token was spent");

        let signed_out = session::logout(&target).await.unwrap();
        assert_eq!(signed_out.revoked, Some(true));
        let after = setup.provider.refresh_with(&kept).await;
        assert_eq!(after.status(), 400, "the kept refresh token was revoked");
        setup.broker.stop().await;
    });
}

/// A refresh answered without an ID token whose session the keyring can
/// no longer read or take by the time the answer comes (locked meanwhile)
/// holds the refresh token handed back in this process, as a renewal is
/// held: the session renews with it once the provider gives ID tokens
/// again, and the spent one is never sent.
#[test]
fn a_refresh_without_an_id_token_the_keyring_cannot_take_is_held() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        setup.provider.refresh_id_token("never").await;
        setup.provider.slow(2000).await;
        let renewing = tokio::spawn({
            let target = target.clone();
            async move { session::current(&target).await }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // view, search, link and set attributes: neither read nor write.
        keyctl_setperm(&target.broker, "alice", 0x39);
        let err = renewing.await.unwrap().unwrap_err();
        assert!(
            matches!(err, session::SessionError::Expired { .. }),
            "{err:?}"
        );
        assert_eq!(session::unsaved().len(), 1, "held");
        keyctl_setperm(&target.broker, "alice", 0x3f);
        assert_eq!(kept_session(&target).refresh_token, first.refresh_token);

        setup.provider.slow(0).await;
        setup.provider.refresh_id_token("always").await;
        let session = session::current(&target).await.unwrap();
        let me = status_of(&setup, &session.access_token).await.unwrap();
        assert_eq!(me.user, "alice");
        assert_eq!(session::unsaved(), Vec::<String>::new());
        let kept = kept_session(&target).refresh_token.unwrap();
        assert_eq!(Some(&kept), session.refresh_token.as_ref());
        let refreshed = setup.provider.refresh_with(&kept).await;
        assert_eq!(refreshed.status(), 200, "the kept refresh token is live");
        setup.broker.stop().await;
    });
}

/// Sets the permissions of hoist's kernel keyring entry for `user` at
/// `broker`: the possessor's, as a `keyctl setperm` mask.
fn keyctl_setperm(broker: &str, user: &str, possessor: u32) {
    let mask = format!("{:#010x}", possessor << 24 | 0x0001_0000);
    keyctl_on_entry(broker, user, &["setperm", &mask]);
}

/// Runs `keyctl ARGS... ID` on hoist's kernel keyring entry for `user` at
/// `broker` (the child shares this thread's session keyring).
fn keyctl_on_entry(broker: &str, user: &str, args: &[&str]) {
    let description = format!(
        "keyring:{}@{}",
        hoist::auth::secrets::account(broker, user),
        hoist::auth::secrets::SERVICE
    );
    let found = Command::new("keyctl")
        .args(["search", "@s", "user", &description])
        .output()
        .expect("keyctl is needed (Debian package keyutils; scripts/test installs it)");
    assert!(found.status.success(), "no keyring entry: {found:?}");
    let id = String::from_utf8(found.stdout).unwrap().trim().to_string();
    let (command, rest) = args.split_first().unwrap();
    let done = Command::new("keyctl")
        .arg(command)
        .arg(&id)
        .args(rest)
        .output()
        .unwrap();
    assert!(done.status.success(), "keyctl {args:?} on {id}: {done:?}");
}

/// A keyring that will not take a renewed session (here the kernel
/// keyring's entries, their write permission taken away) stops no work:
/// the process goes on with each renewed session, and the next refresh
/// spends the renewed refresh token, never the spent one the keyring still
/// holds, which a provider that rotates them would take for theft. Held
/// for each account on its own; told, and saved at the first look once the
/// keyring takes it. One whose session is gone from the keyring meanwhile
/// (signed out elsewhere), or that a sign-in supersedes, is forgotten, its
/// refresh token revoked.
#[test]
fn a_renewed_session_the_keyring_refuses_is_kept_and_told() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (alice, first) = alice_signed_in(&setup).await;
        let (me, _) = device_login(&setup, "bob").await;
        let bob = target(&setup, Some(&me.user));
        // view, read, search, link and set attributes; not write.
        keyctl_setperm(&alice.broker, "alice", 0x3b);
        keyctl_setperm(&bob.broker, "bob", 0x3b);

        // Each look renews (the provider's tokens last 3 s).
        let mut bobs = None;
        for _ in 0..2 {
            for (who, account) in [("alice", &alice), ("bob", &bob)] {
                let session = session::current(account).await.unwrap();
                let me = status_of(&setup, &session.access_token).await.unwrap();
                assert_eq!(me.user, who);
                bobs = session.refresh_token;
            }
        }
        assert_eq!(
            kept_session(&alice).refresh_token,
            first.refresh_token,
            "the keyring took no write"
        );
        let told = session::unsaved();
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(told[0].contains("of alice at"), "{told:?}");
        assert!(told[0].contains("could not be saved"), "{told:?}");
        assert!(told[0].contains("sign in again"), "{told:?}");
        assert!(
            !told
                .concat()
                .contains(first.refresh_token.as_deref().unwrap()),
            "{told:?}"
        );

        keyctl_setperm(&alice.broker, "alice", 0x3f);
        let session = session::current(&alice).await.unwrap();
        let told = session::unsaved();
        assert_eq!(told.len(), 1, "alice's is saved: {told:?}");
        assert!(told[0].contains("of bob at"), "{told:?}");
        let kept = kept_session(&alice).refresh_token.unwrap();
        assert_eq!(Some(&kept), session.refresh_token.as_ref());
        assert_ne!(Some(&kept), first.refresh_token.as_ref());
        let refreshed = setup.provider.refresh_with(&kept).await;
        assert_eq!(refreshed.status(), 200, "the kept refresh token is live");

        // Bob's entry revoked, as a sign-out elsewhere deletes it.
        keyctl_on_entry(&bob.broker, "bob", &["revoke"]);
        let err = session::current(&bob).await.unwrap_err();
        assert!(
            matches!(err, session::SessionError::NotSignedIn { .. }),
            "{err:?}"
        );
        assert_eq!(session::unsaved(), Vec::<String>::new());
        let refreshed = setup.provider.refresh_with(&bobs.unwrap()).await;
        assert_eq!(refreshed.status(), 400, "the held refresh token is revoked");

        // Held again. A proxy's refusal (403, a page of HTML) is no answer
        // from the provider: the held session is kept for the next try.
        device_login(&setup, "bob").await;
        keyctl_setperm(&bob.broker, "bob", 0x3b);
        session::current(&bob).await.unwrap();
        setup.provider.outage(403).await;
        let err = session::current(&bob).await.unwrap_err();
        assert_eq!(session::unsaved().len(), 1, "kept after {err:?}");
        setup.provider.outage(0).await;
        let held = session::current(&bob).await.unwrap().refresh_token.unwrap();
        assert_eq!(session::unsaved().len(), 1);
        // Its refresh token then spent elsewhere: the provider refuses it,
        // and nothing unsaved is left to tell of.
        let spent = setup.provider.refresh_with(&held).await;
        assert_eq!(spent.status(), 200);
        let err = session::current(&bob).await.unwrap_err();
        assert!(
            matches!(err, session::SessionError::Expired { .. }),
            "{err:?}"
        );
        assert_eq!(session::unsaved(), Vec::<String>::new());
        keyctl_setperm(&bob.broker, "bob", 0x3f);

        // Held again, then superseded by a sign-in in this process.
        device_login(&setup, "bob").await;
        keyctl_setperm(&bob.broker, "bob", 0x3b);
        let held = session::current(&bob).await.unwrap().refresh_token.unwrap();
        assert_eq!(session::unsaved().len(), 1);
        keyctl_setperm(&bob.broker, "bob", 0x3f);
        device_login(&setup, "bob").await;
        assert_eq!(session::unsaved(), Vec::<String>::new());
        let refreshed = setup.provider.refresh_with(&held).await;
        assert_eq!(refreshed.status(), 400, "the superseded one is revoked");
        setup.broker.stop().await;
    });
}

/// A sign-in that is not kept (the keyring will not take it, or it is
/// someone else's where a step-up asked for the person signed in) has its
/// refresh token revoked at the provider: nothing would use or revoke it
/// otherwise. The session kept before is left as it was, and live.
#[test]
fn a_sign_in_not_kept_has_its_refresh_token_revoked() {
    run(async {
        let mut setup = setup(None).await;
        let (alice, first) = alice_signed_in(&setup).await;
        keyctl_setperm(&alice.broker, "alice", 0x3b);
        let before = setup.provider.refresh_tokens().await;
        let err = try_device_login(&setup, "alice").await.unwrap_err();
        assert!(err.to_string().contains("keyring"), "{err}");
        let issued = setup.provider.refresh_tokens().await;
        assert_eq!(issued.len(), before.len() + 1, "one sign-in, one token");
        let refreshed = setup.provider.refresh_with(issued.last().unwrap()).await;
        assert_eq!(refreshed.status(), 400, "the unkept sign-in's is revoked");
        assert_eq!(kept_session(&alice).refresh_token, first.refresh_token);
        keyctl_setperm(&alice.broker, "alice", 0x3f);

        // A step-up as alice, signed in as bob.
        let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
        let mut sender = Some(sender);
        let again = session::sign_in_again(&alice, |prompt| {
            let url = prompt.verification_uri_complete.clone().unwrap();
            let _ = sender.take().unwrap().send(url);
        });
        let approve = async {
            let url = receiver.await.unwrap();
            setup.provider.approve_device(&url, "bob").await;
        };
        let (again, ()) = tokio::join!(again, approve);
        let err = again.unwrap_err();
        assert!(
            matches!(err, session::SessionError::SomeoneElse { .. }),
            "{err:?}"
        );
        let bobs = setup.provider.refresh_tokens().await.pop().unwrap();
        let refreshed = setup.provider.refresh_with(&bobs).await;
        assert_eq!(refreshed.status(), 400, "bob's sign-in is revoked");
        let kept = kept_session(&alice).refresh_token.unwrap();
        assert_eq!(Some(&kept), first.refresh_token.as_ref());
        let refreshed = setup.provider.refresh_with(&kept).await;
        assert_eq!(refreshed.status(), 200, "alice's session is live");
        setup.broker.stop().await;
    });
}

/// The command that could not save its renewed session says so as it
/// ends, and the next one asks to sign in again, as it said.
#[test]
fn a_command_that_could_not_save_its_renewed_session_says_so() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let config = tempfile::tempdir().unwrap();
        binary_login(&setup, config.path()).await;
        keyctl_setperm(&setup.url, "alice", 0x3b);
        let whoami = || {
            hoist_binary(&setup, config.path(), &["whoami"])
                .output()
                .unwrap()
        };
        let out = whoami();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains("hoist: warning: the renewed session of alice at")
                && said.contains("could not be saved to the keyring")
                && said.contains("the kernel keyring refused access (permission denied")
                && said.contains("sign in again"),
            "{said}"
        );
        let out = whoami();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("hoist login"), "{said}");
        setup.broker.stop().await;
    });
}

/// A sign-out while another process is refreshing the session (here the
/// test, holding the refresh lock, renews it at the provider and saves it
/// as that process would) waits for the refresh: it then revokes and
/// deletes the renewed session, rather than one the refresh writes back
/// after it, with a refresh token nobody revoked.
#[test]
fn a_sign_out_during_a_refresh_elsewhere_ends_the_renewed_session() {
    run(async {
        let mut setup = setup(None).await;
        let (target, first) = alice_signed_in(&setup).await;
        let lock = hoist::config::Config::dir().unwrap().join("refresh.lock");
        let held = hoist::fs::lock(&lock, Duration::ZERO).unwrap().unwrap();

        let signing_out = tokio::spawn({
            let target = target.clone();
            async move { session::logout(&target).await }
        });
        // Time for a sign-out that does not wait to be done.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let renewed = setup
            .provider
            .refresh_with(first.refresh_token.as_deref().unwrap())
            .await;
        assert_eq!(renewed.status(), 200);
        let renewed: serde_json::Value = renewed.json().await.unwrap();
        let renewed_refresh = renewed["refresh_token"].as_str().unwrap().to_string();
        let mut saved = first.clone();
        saved.refresh_token = Some(renewed_refresh.clone());
        hoist::auth::secrets::save(&target.broker, "alice", &saved).unwrap();
        drop(held);

        let signed_out = signing_out.await.unwrap().unwrap();
        assert!(signed_out.removed);
        assert_eq!(signed_out.revoked, Some(true));
        assert!(
            hoist::auth::secrets::load(&target.broker, "alice")
                .unwrap()
                .is_none(),
            "the renewed session was written back after the sign-out"
        );
        assert_eq!(
            setup.provider.refresh_with(&renewed_refresh).await.status(),
            400,
            "the renewed refresh token was revoked"
        );
        setup.broker.stop().await;
    });
}

fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &[u8]) -> String {
    let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        part(&header),
        part(&claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[test]
fn the_broker_refuses_foreign_misaddressed_and_unsigned_tokens() {
    run(async {
        let mut setup = setup(None).await;
        let good = setup.provider.device_flow_tokens("alice", "hoist").await;
        let good = good["id_token"].as_str().unwrap();
        assert_eq!(status_of(&setup, good).await.unwrap().user, "alice");

        let refused = |result: Result<hoist_api::Me, BackendError>| match result {
            Err(BackendError::Unauthenticated(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };

        // Another provider, even one running the same software.
        let stranger = Provider::start().await;
        let foreign = stranger.device_flow_tokens("alice", "hoist").await;
        let reason = refused(status_of(&setup, foreign["id_token"].as_str().unwrap()).await);
        assert!(reason.contains("not accepted"), "{reason}");

        // The right provider, but a token for another application.
        let other = setup
            .provider
            .device_flow_tokens("alice", "other-app")
            .await;
        let reason = refused(status_of(&setup, other["id_token"].as_str().unwrap()).await);
        assert!(reason.to_lowercase().contains("audience"), "{reason}");

        // alg: none, with the good token's claims.
        let claims = oidc::jwt_claims(good);
        let none = forge(
            serde_json::json!({"alg": "none", "typ": "JWT"}),
            claims.clone(),
            b"",
        );
        refused(status_of(&setup, &none).await);
        let none_empty = format!("{}.", none.trim_end_matches('.'));
        refused(status_of(&setup, &none_empty).await);

        // HMAC confusion: HS256 "signed" with the provider's public key as the secret.
        let jwks = setup.provider.jwks().await;
        let n = jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec();
        let header =
            serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]});
        let key = jsonwebtoken::EncodingKey::from_secret(&n);
        let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jwt_header.kid = header["kid"].as_str().map(str::to_string);
        let hmac = jsonwebtoken::encode(&jwt_header, &claims, &key).unwrap();
        let reason = refused(status_of(&setup, &hmac).await);
        assert!(reason.contains("algorithm"), "{reason}");

        // A tampered payload under a real signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut tampered = claims.clone();
        tampered["preferred_username"] = serde_json::json!("bob");
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());
        refused(status_of(&setup, &parts.join(".")).await);
        setup.broker.stop().await;
    });
}

#[test]
fn groups_from_the_token_decide_what_people_may_do() {
    run(async {
        let mut setup = setup(None).await;
        let alice = setup.provider.device_flow_tokens("alice", "hoist").await;
        let bob = setup.provider.device_flow_tokens("bob", "hoist").await;
        let alice = backend::connect(&setup.url, alice["id_token"].as_str().unwrap()).unwrap();
        let bob = backend::connect(&setup.url, bob["id_token"].as_str().unwrap()).unwrap();
        let body = hoist_api::CreateRequest {
            role: "prod-db".into(),
            justification: "vacuum".into(),
            ticket: None,
            incident: None,
            duration_secs: None,
            starts_at: None,
            break_glass: false,
        };
        let filed = alice.file(&body, "k").await.unwrap();
        // bob approves because his token says he is in prod-approvers.
        let approved = bob
            .review(&filed.id, hoist_api::Decision::Approve, None)
            .await
            .unwrap();
        assert_eq!(approved.state, hoist_api::RequestState::Active);
        setup.broker.stop().await;
    });
}

/// A command that waits longer than its token lives (`--wait`, `exec`,
/// `reviews --watch`) keeps a fresh one: its backend is still let in after
/// the token it started with has expired.
#[test]
fn a_command_that_outlives_its_token_keeps_a_fresh_one() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, first) = alice_signed_in(&setup).await;
        let client = session::open(&target).await.unwrap();
        tokio::time::sleep(Duration::from_millis(4600)).await;
        let expired = status_of(&setup, &first.access_token).await;
        assert!(
            matches!(expired, Err(BackendError::Unauthenticated(_))),
            "the first token has expired: {expired:?}"
        );
        assert_eq!(client.me().await.unwrap().user, "alice");
        setup.broker.stop().await;
    });
}

/// A command whose session ended at the provider (its refresh token
/// revoked there) sends that token no more, however long it waits; it
/// takes up a session signed in since, elsewhere.
#[test]
fn a_command_whose_session_ended_takes_up_a_new_sign_in_not_the_dead_token() {
    run(async {
        let mut setup = setup(Some(3)).await;
        let (target, _) = alice_signed_in(&setup).await;
        let client = session::open(&target).await.unwrap();
        let stored = kept_session(&target);
        let revocation = setup.provider.endpoint("revocation_endpoint").await;
        let revoked = oidc::post_form(
            &revocation,
            &[
                ("token", stored.refresh_token.as_deref().unwrap()),
                ("client_id", "hoist"),
            ],
        )
        .await;
        assert!(revoked.status().is_success(), "{}", revoked.status());
        // Its refresh is refused within a second or two; then nothing.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = setup.provider.token_requests().await;
        tokio::time::sleep(Duration::from_secs(13)).await;
        assert_eq!(
            setup.provider.token_requests().await,
            before,
            "the refused refresh token was sent again"
        );
        assert!(client.me().await.is_err(), "its token has expired");

        device_login(&setup, "alice").await;
        let mut taken_up = false;
        for _ in 0..40 {
            if client.me().await.is_ok() {
                taken_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(taken_up, "the new sign-in was not taken up");
        setup.broker.stop().await;
    });
}

/// The TUI opening profile `work` (at `broker` if given) with `who`
/// signing in through its pop-up: the notice it opens with.
async fn tui_signing_in(
    setup: &Setup,
    broker: Option<&str>,
    who: &str,
) -> (String, hoist::app::state::Level) {
    let prompter = hoist::tui::profiles::Prompter::default();
    let (actions, mut asked) = tokio::sync::mpsc::unbounded_channel();
    prompter.attach(actions);
    let approve = async {
        while let Some(action) = asked.recv().await {
            if let hoist::app::Action::SignInPrompt(prompt) = action {
                let url = prompt.complete.expect("a complete verification URI");
                setup.provider.approve_device(&url, who).await;
                return;
            }
        }
    };
    let (opened, ()) = tokio::join!(
        hoist::tui::profiles::open(broker, Some("work"), &prompter),
        approve
    );
    opened.unwrap().options.notice.unwrap()
}

/// The TUI reads its config where HOIST_CONFIG_DIR says, which a test
/// cannot set for itself: the test `name` runs again in a child process,
/// with it set to a fresh directory. In the child, that directory; in the
/// test itself, `None` once the child passed.
fn in_child_with_config(name: &str) -> Option<std::path::PathBuf> {
    if let Some(config) =
        std::env::var_os("HOIST_TEST_CHILD").and(std::env::var_os("HOIST_CONFIG_DIR"))
    {
        return Some(config.into());
    }
    let config = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env("HOIST_TEST_CHILD", "1")
        .env("HOIST_CONFIG_DIR", config.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("1 passed"),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    None
}

/// The TUI opening a profile that `--broker` points elsewhere signs in
/// there, and signs out whoever the profile had at its broker before, as
/// `hoist login` does: that session is not left in the keyring where no
/// command of the profile would look again. A banner says so.
#[test]
fn the_tui_pointing_a_profile_elsewhere_signs_out_its_old_session() {
    let Some(config) =
        in_child_with_config("the_tui_pointing_a_profile_elsewhere_signs_out_its_old_session")
    else {
        return;
    };
    run(async {
        let setup = setup(None).await;
        let (me, _) = device_login(&setup, "alice").await;
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[profiles.work]\nbroker = \"{}\"\nuser = \"{}\"\n",
                setup.url, me.user
            ),
        )
        .unwrap();
        let stored = |broker: String| async move {
            tokio::task::spawn_blocking(move || hoist::auth::secrets::load(&broker, "alice"))
                .await
                .unwrap()
                .unwrap()
        };
        assert!(stored(setup.url.clone()).await.is_some());

        let elsewhere = setup.url.replace("127.0.0.1", "localhost");
        let (notice, level) = tui_signing_in(&setup, Some(&elsewhere), "alice").await;
        assert!(notice.contains("Signed out alice at"), "{notice}");
        assert_eq!(level, hoist::app::state::Level::Info);
        assert!(stored(setup.url.clone()).await.is_none());
        let config = hoist::config::Config::load().unwrap();
        let now = config.resolve(None, Some("work")).unwrap();
        assert_ne!(now.broker, setup.url);
        assert!(stored(now.broker.clone()).await.is_some());
    });
}

/// The TUI finding a profile's session ended, and someone else signing in
/// through its pop-up, signs out the person the profile had, as
/// `hoist login` does: their session does not stay in the keyring, where
/// no command would look for it again. A banner says so.
#[test]
fn the_tui_signing_in_someone_else_signs_out_the_ended_session() {
    let Some(config) =
        in_child_with_config("the_tui_signing_in_someone_else_signs_out_the_ended_session")
    else {
        return;
    };
    run(async {
        let setup = setup(None).await;
        let (me, mut ended) = device_login(&setup, "alice").await;
        // Ended, with nothing to renew it with.
        ended.refresh_token = None;
        ended.expires_at = Some(chrono::Utc::now() - chrono::TimeDelta::minutes(1));
        hoist::auth::secrets::save(&setup.url, &me.user, &ended).unwrap();
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[profiles.work]\nbroker = \"{}\"\nuser = \"{}\"\n",
                setup.url, me.user
            ),
        )
        .unwrap();
        let stored = |user: &'static str| {
            let broker = setup.url.clone();
            async move {
                tokio::task::spawn_blocking(move || hoist::auth::secrets::load(&broker, user))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        assert!(stored("alice").await.is_some());

        let (notice, level) = tui_signing_in(&setup, None, "bob").await;
        assert!(notice.contains("Signed out alice"), "{notice}");
        assert_eq!(level, hoist::app::state::Level::Info);
        assert!(stored("alice").await.is_none(), "alice's session stayed");
        assert!(stored("bob").await.is_some());
    });
}
