//! The test broker and its typed client live in `hoistd::testing`, which the
//! client's tests share.

pub use hoistd::testing::*;

/// Alice's grant `id`'s access at its target, which it must have.
pub async fn target_access(broker: &TestBroker, id: &str) -> hoist_api::TargetAccess {
    broker
        .as_user("alice")
        .grant(id)
        .await
        .unwrap()
        .access
        .unwrap()
}

/// The state of alice's grant `id`'s access at its target, if it has one.
pub async fn access_state(broker: &TestBroker, id: &str) -> Option<hoist_api::AccessState> {
    let grant = broker.as_user("alice").grant(id).await.unwrap();
    grant.access.map(|a| a.state)
}

/// Waits (up to 30 s) until alice's grant `id`'s access is in `state`.
pub async fn until_access(broker: &TestBroker, id: &str, state: hoist_api::AccessState) {
    eventually(std::time::Duration::from_secs(30), || async {
        access_state(broker, id).await == Some(state)
    })
    .await;
}

/// The real `hoistd serve` on a free loopback port over `dir`'s
/// `hoistd.db` and `policy.toml`, its log at info on a pipe: started, and
/// past the line saying it serves. Killed if still running when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
    /// The line of its log that says it serves (after the policy's
    /// cautions, if any).
    pub serving: String,
    log: Option<std::io::Lines<std::io::BufReader<std::process::ChildStderr>>>,
}

impl Served {
    /// Starts it, with what `configure` adds to the command (more
    /// arguments, another log setting).
    pub fn start(
        dir: &std::path::Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoistd"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(dir.join("hoistd.db"))
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .env("HOISTD_LOG", "hoistd=info")
            .stderr(std::process::Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().unwrap();
        let mut log = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut served = Served {
            child,
            port,
            serving: String::new(),
            log: None,
        };
        // The policy's cautions, if any, come first.
        let mut before = Vec::new();
        served.serving = loop {
            let line = log
                .next()
                .unwrap_or_else(|| panic!("hoistd ended before serving: {before:?}"))
                .unwrap();
            if line.contains("hoistd serving") {
                break line;
            }
            assert!(
                line.contains("WARN") && before.len() < 10,
                "{line} (after {before:?})"
            );
            before.push(line);
        };
        served.log = Some(log);
        served
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next line of its log.
    pub fn line(&mut self) -> String {
        let log = self.log.as_mut().expect("the log is being drained");
        log.next().unwrap().unwrap()
    }

    /// The next line of its log, if it wrote one before it ended.
    pub fn next_line(&mut self) -> Option<String> {
        let log = self.log.as_mut().expect("the log is being drained");
        log.next().and_then(Result::ok)
    }

    /// Reads its log from here on in a thread of its own, so that it never
    /// blocks on a full pipe.
    pub fn drain(&mut self) {
        if let Some(log) = self.log.take() {
            std::thread::spawn(move || for _ in log {});
        }
    }

    /// Sends it `signal` ("HUP", "TERM", "KILL"...).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits for it to exit, at most `limit` (`what` says what the wait
    /// was for, should it not).
    pub async fn exited_within(
        &mut self,
        limit: std::time::Duration,
        what: &str,
    ) -> std::process::ExitStatus {
        let waited = std::time::Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(waited.elapsed() < limit, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sleeps until the local clock, which the broker shares, is past `at`.
pub async fn sleep_past(at: chrono::DateTime<chrono::Utc>) {
    let left = (at - chrono::Utc::now()).num_milliseconds() + 50;
    tokio::time::sleep(std::time::Duration::from_millis(left.max(0) as u64)).await;
}
