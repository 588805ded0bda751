//! A real broker on a loopback port with a fresh database, a private config
//! dir, and a way to rerun one test in a child process with its own
//! environment (the workspace forbids `unsafe`, so tests cannot change
//! their own environment, and a keyring choice is made once per process).

use std::path::PathBuf;
use std::process::{Command, Output};

use hoist::auth::secrets::{self, Session, SessionStore};
use hoist::config::{Config, Target};
use hoistd::testing::TestBroker;

/// Set in a child process started by [`run_child`].
pub const CHILD_ENV: &str = "HOIST_TEST_CHILD";
/// The broker URL handed to a child process.
pub const BROKER_ENV: &str = "HOIST_TEST_BROKER";

/// Joins a session keyring and picks the kernel keyring, before any thread
/// starts, then builds the runtime whose threads inherit that keyring.
pub fn keyutils_runtime() -> tokio::runtime::Runtime {
    secrets::prepare();
    assert_eq!(
        secrets::init_with(Some(SessionStore::Keyutils)),
        Ok(SessionStore::Keyutils)
    );
    runtime()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A running broker with the demo policy (tokens `demo-alice`, `demo-bob`, ...).
/// A demo broker on a fresh port. Kernel keyring entries outlive the
/// process, and a port is reused sooner or later: whatever an earlier run
/// left for this URL is removed first, so an assertion that nothing was
/// stored speaks of this run only.
pub async fn demo_broker() -> TestBroker {
    let broker = TestBroker::builder()
        .policy(hoist::demo::DEMO_POLICY)
        .token_prefix("demo-")
        .start()
        .await;
    for user in hoist::demo::PEOPLE {
        forget(&broker.url(), user).await;
    }
    broker
}

/// A config dir of the test's own.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        ConfigDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn load(&self) -> Config {
        Config::load_from(&self.path()).unwrap()
    }

    /// The target `hoist --broker URL` would talk to with this config.
    pub fn target_for(&self, broker: &str) -> Target {
        self.load().resolve(Some(broker), None).unwrap()
    }
}

/// The stored session, read through the library from a blocking thread.
pub async fn stored(broker: &str, user: &str) -> Option<Session> {
    let (broker, user) = (broker.to_string(), user.to_string());
    tokio::task::spawn_blocking(move || secrets::load(&broker, &user))
        .await
        .unwrap()
        .unwrap()
}

/// Removes whatever an earlier run may have left for this account: kernel
/// keyring entries outlive the process (they reach the persistent keyring).
pub async fn forget(broker: &str, user: &str) {
    let (broker, user) = (broker.to_string(), user.to_string());
    tokio::task::spawn_blocking(move || secrets::delete(&broker, &user))
        .await
        .unwrap()
        .unwrap();
}

/// The secret under `description` in the kernel keyring, read by the
/// `keyctl` tool rather than by hoist, so the test does not only trust
/// hoist's own reading. The child inherits this thread's session keyring.
pub fn keyctl_read(description: &str) -> Option<String> {
    let found = Command::new("keyctl")
        .args(["search", "@s", "user", description])
        .output()
        .expect("keyctl is needed (Debian package keyutils; scripts/test installs it)");
    if !found.status.success() {
        return None;
    }
    let id = String::from_utf8(found.stdout).unwrap().trim().to_string();
    let read = Command::new("keyctl").args(["pipe", &id]).output().unwrap();
    assert!(read.status.success(), "keyctl pipe {id}: {read:?}");
    Some(String::from_utf8(read.stdout).unwrap())
}

/// The kernel keyring description of hoist's entry for `user` at `broker`.
pub fn keyutils_description(broker: &str, user: &str) -> String {
    format!(
        "keyring:{}@{}",
        secrets::account(broker, user),
        secrets::SERVICE
    )
}

/// Reruns the test `name` (its path inside this test binary) in a child
/// process with `env` added, `remove` removed and [`CHILD_ENV`] set, and
/// returns its output.
pub fn run_child(name: &str, env: &[(&str, &str)], remove: &[&str]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1");
    for key in remove {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child `{name}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}
