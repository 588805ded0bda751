//! Several hoistd processes on one PostgreSQL database, for the tests of
//! what happens between instances: each instance the real binary on its
//! own loopback port, started after `hoistd migrate`, and killable with
//! SIGKILL. The test gives the binary (`env!("CARGO_BIN_EXE_hoistd")`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Client, Postgres, policy_text};

/// A throwaway PostgreSQL server with `count` hoistd instances on it.
pub struct Cluster {
    pub pg: Postgres,
    /// The database's URL, password and all, as `--db` takes it.
    pub db: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
    instances: Vec<Instance>,
    http: reqwest::Client,
}

struct Instance {
    port: u16,
    child: Option<Child>,
    /// Variables set for it besides the cluster's own.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts the server, migrates with `hoistd migrate`, then starts
    /// `count` instances with the test policy and `settings`, and waits
    /// until each answers.
    pub async fn start(bin: &Path, count: usize, settings: &str) -> Cluster {
        Self::start_with_policy(bin, count, &policy_text(settings)).await
    }

    /// [`Cluster::start`] with this policy text.
    pub async fn start_with_policy(bin: &Path, count: usize, policy: &str) -> Cluster {
        let pg = Postgres::start()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let db = pg.create_database("hoistd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        let mut cluster = Cluster {
            pg,
            db,
            dir,
            bin: bin.to_path_buf(),
            instances: Vec::new(),
            http: reqwest::Client::new(),
        };
        let migrated = cluster.hoistd(&["migrate"]);
        assert!(
            migrated.status.success(),
            "hoistd migrate: {}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        for _ in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            cluster.instances.push(Instance {
                port,
                child: None,
                env: Vec::new(),
            });
        }
        for index in 0..count {
            cluster.spawn(index);
        }
        for index in 0..count {
            cluster.wait_until_serving(index).await;
        }
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let port = self.instances[index].port;
        let log =
            std::fs::File::create(self.dir.path().join(format!("hoistd-{index}.log"))).unwrap();
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--policy")
            .arg(self.dir.path().join("policy.toml"))
            .env("HOISTD_DB", &self.db)
            .env("HOISTD_LOG", "hoistd=info")
            .envs(self.instances[index].env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.instances[index].child = Some(child);
    }

    async fn wait_until_serving(&self, index: usize) {
        let url = format!("{}/v1/health", self.url(index));
        for _ in 0..200 {
            if let Ok(response) = self.http.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "instance {index} did not start serving:\n{}",
            self.log(index)
        );
    }

    /// Starts a stopped instance again on its port.
    pub async fn restart(&mut self, index: usize) {
        self.spawn(index);
        self.wait_until_serving(index).await;
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// `http://127.0.0.1:PORT` of instance `index`.
    pub fn url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.instances[index].port)
    }

    /// A client of instance `index` for `user` (token `t-<user>`).
    pub fn as_user(&self, index: usize, user: &str) -> Client {
        Client {
            base: self.url(index),
            token: format!("t-{user}"),
            http: self.http.clone(),
        }
    }

    /// A client of instance `index` with this bearer token.
    pub fn with_token(&self, index: usize, token: &str) -> Client {
        Client {
            base: self.url(index),
            token: token.to_string(),
            http: self.http.clone(),
        }
    }

    /// What instance `index` wrote to its standard error.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("hoistd-{index}.log")))
            .unwrap_or_default()
    }

    /// Runs instance `index` with its clock `ahead_secs` ahead of the
    /// host's (behind if negative) from its next start (libfaketime,
    /// Debian's `libfaketime`; the monotonic clock left as it is).
    pub fn set_clock(&mut self, index: usize, ahead_secs: i64) {
        let vars = clock_env(ahead_secs);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.set_env(index, &vars);
    }

    /// Sets these environment variables for instance `index` from its next
    /// start, besides the cluster's own.
    pub fn set_env(&mut self, index: usize, vars: &[(&str, &str)]) {
        self.instances[index]
            .env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }

    /// Kills instance `index` with SIGKILL: no clean stop, no lease given up.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.instances[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Which instance holds a lease that has not lapsed, by the database.
    pub fn leader(&self) -> Option<usize> {
        let holder = self.sql("SELECT holder FROM leadership WHERE expires_at > clock_timestamp()");
        let holder = holder.trim();
        self.instances
            .iter()
            .position(|i| holder.starts_with(&format!("127.0.0.1:{}/", i.port)))
    }

    /// The lease's epoch (0 before anyone led).
    pub fn epoch(&self) -> i64 {
        self.sql("SELECT coalesce(max(epoch), 0) FROM leadership")
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs one SQL statement on the database with psql and returns its
    /// unaligned output.
    pub fn sql(&self, statement: &str) -> String {
        let output = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&self.db)
            .arg("-c")
            .arg(statement)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `hoistd ARGS` against the cluster's database.
    pub fn hoistd(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .args(args)
            .env("HOISTD_DB", &self.db)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.instances.len() {
            self.kill(index);
        }
    }
}

/// The environment that runs a process with its clock `ahead_secs` ahead
/// of the host's (behind if negative): libfaketime (Debian's
/// `libfaketime`), the monotonic clock left as it is.
pub fn clock_env(ahead_secs: i64) -> [(&'static str, String); 3] {
    let library = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .expect("libfaketime.so.1 is not under /usr/lib/*/faketime: install Debian's libfaketime");
    [
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME", format!("{ahead_secs:+}s")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
}
