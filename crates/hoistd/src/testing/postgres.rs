//! A real PostgreSQL server for tests and the demo: a fresh cluster made
//! with the server's own `initdb`, started with `pg_ctl` on a free loopback
//! port, with password (SCRAM) authentication and an admin whose password
//! is in a file, and stopped and removed when dropped.
//!
//! The server refuses to run as root; as root, it runs as the `postgres`
//! user (the Debian package creates it) through `runuser`.
//!
//! ```no_run
//! # async fn example() {
//! use hoistd::testing::Postgres;
//! match Postgres::start().await {
//!     Ok(pg) => println!("{}", pg.target_toml("db-test")), // a [[targets]] entry
//!     Err(err) => eprintln!("no PostgreSQL here: {err}"),  // e.g. binaries missing
//! }
//! # }
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a test server could not start.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// No `initdb` and `pg_ctl` found (`apt-get install postgresql`, or
    /// `HOIST_PG_BIN=<dir>`).
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: looked in {0}; \
         install postgresql or set HOIST_PG_BIN"
    )]
    Missing(String),
    #[error("the test PostgreSQL server did not start: {0}")]
    Failed(String),
}

/// A running throwaway PostgreSQL cluster on `127.0.0.1`.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    /// The unprivileged user the server runs as, when we are root.
    run_as: Option<String>,
    /// Whether the server speaks TLS, with a certificate for 127.0.0.1
    /// signed by [`Postgres::ca_file`].
    tls: bool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Where the server binaries are: `HOIST_PG_BIN`, Debian's
/// `/usr/lib/postgresql/<newest>/bin`, or the `PATH`.
fn binaries() -> Result<PathBuf, PostgresError> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut looked = Vec::new();
    if let Ok(dir) = std::env::var("HOIST_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has(&dir) {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.into_iter().rev().find(|(_, dir)| has(dir)) {
        return Ok(dir);
    }
    looked.push("/usr/lib/postgresql/*/bin".into());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has(&dir) {
                return Ok(dir);
            }
        }
    }
    looked.push("PATH".into());
    Err(PostgresError::Missing(looked.join(", ")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn failed(what: &str, err: impl std::fmt::Display) -> PostgresError {
    PostgresError::Failed(format!("{what}: {err}"))
}

impl Postgres {
    /// Makes and starts a fresh cluster (about a second).
    pub async fn start() -> Result<Postgres, PostgresError> {
        tokio::task::spawn_blocking(|| Self::start_blocking(false))
            .await
            .map_err(|err| failed("start task", err))?
    }

    /// [`Postgres::start`], the server also speaking TLS with a certificate
    /// for `127.0.0.1` from a CA made for it (`openssl` must be installed).
    pub async fn start_with_tls() -> Result<Postgres, PostgresError> {
        tokio::task::spawn_blocking(|| Self::start_blocking(true))
            .await
            .map_err(|err| failed("start task", err))?
    }

    /// [`Postgres::start`] for a caller outside any runtime (the store
    /// conformance tests run on plain threads).
    pub fn start_now() -> Result<Postgres, PostgresError> {
        Self::start_blocking(false)
    }

    /// Makes a fresh, empty database `name` and returns its URL, the
    /// admin's password in it (for `hoistd --db`).
    pub fn create_database(&self, name: &str) -> Result<String, PostgresError> {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v"])
            .arg("ON_ERROR_STOP=1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(format!("CREATE DATABASE \"{name}\""))
            .env("PGPASSWORD", &self.password)
            .output()
            .map_err(|err| failed("psql", err))?;
        if !output.status.success() {
            return Err(failed(
                "create database",
                String::from_utf8_lossy(&output.stderr),
            ));
        }
        Ok(format!(
            "postgres://postgres:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        ))
    }

    /// Stops the server cleanly and starts it again on the same port, as
    /// `pg_ctl restart -m fast` does: every connection is cut.
    pub fn restart_fast(&self) -> Result<(), PostgresError> {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.dir.path().join("data").as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        self.pg_ctl_start()
    }

    fn start_blocking(tls: bool) -> Result<Postgres, PostgresError> {
        let bin = binaries()?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = tempfile::Builder::new()
            .prefix("hoist-pg-")
            .tempdir()
            .map_err(|err| failed("temporary directory", err))?;
        // The server's user must reach its directories inside ours.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|err| failed("permissions", err))?;
        let password = hex::encode(rand::random::<[u8; 16]>());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|err| failed("password file", err))?;
        for sub in ["data", "run"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|err| failed("directory", err))?;
        }
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            password,
            run_as,
            tls,
        };
        if tls {
            pg.make_certificates()?;
        }
        if let Some(user) = &pg.run_as {
            for path in ["data", "run", "pwfile"] {
                let status = Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(pg.dir.path().join(path))
                    .status()
                    .map_err(|err| failed("chown", err))?;
                if !status.success() {
                    return Err(failed(
                        "chown",
                        format!("could not hand {path} to the user {user}"),
                    ));
                }
            }
        }
        std::fs::set_permissions(
            pg.dir.path().join("data"),
            std::fs::Permissions::from_mode(0o700),
        )
        .map_err(|err| failed("permissions", err))?;
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                pg.dir.path().join("data").as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=scram-sha-256".as_ref(),
                format!("--pwfile={}", pwfile.display()).as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        // The admin's password stays in its file for the target's
        // password_file; the server no longer needs the initdb copy.
        let _ = std::fs::remove_file(&pwfile);
        std::fs::write(pg.password_file(), &pg.password)
            .map_err(|err| failed("password file", err))?;
        // A port picked free may be taken before the server binds it.
        let mut last = None;
        for _ in 0..5 {
            pg.port = free_port().map_err(|err| failed("free port", err))?;
            match pg.pg_ctl_start() {
                Ok(()) => return Ok(pg),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| failed("pg_ctl", "did not start")))
    }

    /// A CA (`ca.pem`, beside the cluster) and a server certificate for
    /// `127.0.0.1` signed by it, its key readable by the server alone.
    fn make_certificates(&self) -> Result<(), PostgresError> {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .map_err(|err| failed("certificate", err))?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=hoist test CA",
                ],
            ]
            .concat(),
            [
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "run/server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "run/server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        ];
        for args in steps {
            let output = Command::new("openssl")
                .args(&args)
                .current_dir(dir)
                .output()
                .map_err(|err| failed("openssl", err))?;
            if !output.status.success() {
                return Err(failed("openssl", String::from_utf8_lossy(&output.stderr)));
            }
        }
        let key = dir.join("run/server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|err| failed("permissions", err))?;
        if let Some(user) = &self.run_as {
            for file in ["run/server.key", "run/server.pem"] {
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(dir.join(file))
                    .status()
                    .map_err(|err| failed("chown", err))?;
            }
        }
        Ok(())
    }

    /// The CA that signed the server's certificate, for a target's `ca_file`
    /// (with [`Postgres::start_with_tls`]).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn pg_ctl_start(&self) -> Result<(), PostgresError> {
        let run = self.dir.path().join("run");
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            run.display()
        );
        if self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                run.join("server.pem").display(),
                run.join("server.key").display()
            ));
        }
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.dir.path().join("data").as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                run.join("log").as_os_str(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )
    }

    /// Runs a server binary as the server's user.
    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), PostgresError> {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|err| failed(tool, err))?;
        if output.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.path().join("run/log")).unwrap_or_default();
            Err(failed(
                tool,
                format!(
                    "{}{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr),
                    log
                ),
            ))
        }
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser `postgres`'s password.
    pub fn admin_password(&self) -> &str {
        &self.password
    }

    /// A file holding the admin's password (for a target's `password_file`).
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("admin-password")
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// The same without the password, as a target's `url` takes it.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A `[[targets]]` entry of kind `postgres` for this server, its
    /// password in [`Postgres::password_file`], with short timeouts.
    pub fn target_toml(&self, name: &str) -> String {
        format!(
            "[[targets]]\nname = \"{name}\"\nkind = \"postgres\"\nurl = \"{}\"\n\
             password_file = \"{}\"\nstatement_timeout = \"2s\"\nconnect_timeout = \"2s\"\n",
            self.admin_url(),
            self.password_file().display()
        )
    }

    /// A connection as the superuser.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_as("postgres", &self.password).await
    }

    /// A connection as the superuser to `database`.
    pub async fn admin_in(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_to(database, "postgres", &self.password).await
    }

    /// A connection as `user` with `password`, to the `postgres` database.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_to("postgres", user, password).await
    }

    /// A connection as `user` with `password`, to `database`.
    pub async fn connect_to(
        &self,
        database: &str,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The server's log, for a failing test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run/log")).unwrap_or_default()
    }

    /// Stops the server at once (it is started again by nothing: a
    /// target that is down).
    pub fn stop(&self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.dir.path().join("data").as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) -> Result<(), PostgresError> {
        self.pg_ctl_start()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
