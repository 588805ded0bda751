//! The real `hoist` binary in a real terminal (tmux): the same story as the
//! key-driven tests, typed and read off the screen. `scripts/test` installs tmux.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/graph.rs"]
mod graph;
#[path = "../support/oidc.rs"]
mod oidc;
#[path = "../support/tenant.rs"]
mod tenant;

mod entra;
mod profiles;
mod ssh;
mod step_up;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A private tmux server running one program in a pane of a fixed size.
struct Pane {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    /// A log the program writes, shown with the screen when a wait fails.
    log: Option<PathBuf>,
}

impl Pane {
    fn start(args: &str, env: &[(&str, &str)], width: u16, height: u16) -> Pane {
        Pane::run("", args, env, width, height)
    }

    /// `hoist ARGS` in a pane, after `before` (a shell command line that
    /// starts something alongside it, or nothing).
    fn run(before: &str, args: &str, env: &[(&str, &str)], width: u16, height: u16) -> Pane {
        let dir = tempfile::tempdir().unwrap();
        let exports: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let program = format!(
            "{before}env HOIST_CONFIG_DIR={} {exports}{} {args}",
            dir.path().display(),
            env!("CARGO_BIN_EXE_hoist")
        );
        Pane::shell(dir, &program, width, height)
    }

    /// A shell command line in a pane, in `dir`'s tmux server.
    fn shell(dir: tempfile::TempDir, program: &str, width: u16, height: u16) -> Pane {
        let socket = dir.path().join("tmux.sock");
        // The pane outlives the program so its exit status can be read.
        let program = format!("{program}; echo EXITED rc=$?; sleep 600");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(program)
            .status()
            .expect("tmux is not installed; scripts/test installs it");
        assert!(status.success());
        Pane {
            socket,
            _dir: dir,
            log: None,
        }
    }

    /// Shows `log` with the screen when a wait fails.
    fn showing_log(mut self, log: PathBuf) -> Pane {
        self.log = Some(log);
        self
    }

    /// The screen, and the log if there is one, for a failure's message.
    fn evidence(&self, screen: &str) -> String {
        match &self.log {
            Some(log) => format!(
                "{screen}\nits log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_else(|err| err.to_string())
            ),
            None => screen.to_string(),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Waits for text to appear on the screen; fails with the screen if not.
    fn wait_for(&self, text: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "`{text}` never appeared; the screen:\n{}",
                self.evidence(&screen)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for text to leave the screen; fails with the screen if not.
    fn wait_gone(&self, text: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if !screen.contains(text) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "`{text}` never went; the screen:\n{}",
                self.evidence(&screen)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a line of the screen with all of `parts` on it.
    fn wait_for_line(&self, parts: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if let Some(line) = screen
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return line.to_string();
            }
            assert!(
                start.elapsed() < limit,
                "no line with {parts:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alternate_screen(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", "t", "#{alternate_on}"])
            .trim()
            == "1"
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

const LOAD: Duration = Duration::from_secs(20);

/// Signs `profile` in with a token on standard input, as a script would.
fn login_with_token(config: &std::path::Path, args: &[&str], token: &str) {
    let mut login = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .args(["login", "--with-token"])
        .env("HOIST_CONFIG_DIR", config)
        .env("HOIST_KEYRING", "keyutils")
        .env_remove("HOIST_BROKER")
        .env_remove("HOIST_PROFILE")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut login.stdin.take().unwrap(), token.as_bytes()).unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "login {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config whose one profile, `work`, is the hoistd broker at `broker`.
fn work_profile(config: &std::path::Path, broker: &str) {
    std::fs::write(
        config.join("config.toml"),
        format!("default_profile = \"work\"\n[profiles.work]\nbroker = \"{broker}\"\n"),
    )
    .unwrap();
}

/// The URL and code a device sign-in shows (on standard error before the
/// TUI runs, in its pop-up after).
fn device_prompt(screen: &str) -> (String, String) {
    let url = regex::Regex::new(r"[Oo]pen (http\S+/device)\b").unwrap();
    let code = regex::Regex::new(r"enter the code:? ([A-Z0-9-]+)").unwrap();
    let url = url
        .captures(screen)
        .unwrap_or_else(|| panic!("no URL in:\n{screen}"))[1]
        .to_string();
    let code = code
        .captures(screen)
        .unwrap_or_else(|| panic!("no code in:\n{screen}"))[1]
        .to_string();
    (url, code)
}

/// The environment the binary runs in: its own config and cache, the
/// kernel keyring, and no browser.
fn env(config: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOIST_CONFIG_DIR", config.display().to_string()),
        (
            "HOIST_CACHE_DIR",
            config.join("cache").display().to_string(),
        ),
        ("HOIST_KEYRING", "keyutils".to_string()),
        ("HOIST_NO_BROWSER", "1".to_string()),
    ]
}
const APPROVAL: Duration = Duration::from_secs(20);

#[test]
fn a_requester_files_is_approved_watches_the_countdown_and_revokes() {
    let pane = Pane::start("demo", &[], 100, 30);
    pane.wait_for("Roles (7/7)", LOAD);
    assert!(pane.alternate_screen());

    pane.keys(&["/"]);
    pane.type_text("pdb");
    pane.keys(&["Enter"]);
    pane.wait_for("Request prod-db-admin", LOAD);
    pane.type_text("Vacuum the bloated orders table");
    pane.keys(&["Tab"]);
    pane.type_text("CHG-1024");
    pane.keys(&["C-s"]);
    pane.wait_for("◌ pending", LOAD);

    // The demo's approver, bob, approves a few seconds later.
    pane.wait_for("approved by bob", APPROVAL);
    pane.keys(&["3"]);
    let grants = pane.wait_for("Active grants (1)", LOAD);
    assert!(grants.contains("prod-db-admin"), "{grants}");
    let first = pane.screen();
    std::thread::sleep(Duration::from_millis(2100));
    let later = pane.screen();
    let countdown = |s: &str| {
        s.lines()
            .find(|l| l.trim_start_matches('│').starts_with("prod-db-admin"))
            .map(str::to_string)
    };
    assert!(countdown(&first).is_some(), "{first}");
    assert_ne!(
        countdown(&first),
        countdown(&later),
        "the countdown moves each second"
    );

    pane.keys(&["x"]);
    pane.wait_for("Revoke prod-db-admin now?", LOAD);
    pane.keys(&["y"]);
    pane.wait_for("No active access", LOAD);

    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
    assert!(!pane.alternate_screen(), "the terminal is restored on quit");
}

#[test]
fn an_approver_finds_the_queue_and_decides_in_two_keys() {
    let pane = Pane::start("demo --as bob", &[], 80, 24);
    pane.wait_for("Roles", LOAD);
    pane.keys(&["4"]);
    pane.wait_for("To decide (2)", LOAD);
    // carol's cluster request needs two approvals: one keeps it waiting,
    // for others now, not for bob, and it says who else may approve.
    pane.keys(&["a"]);
    pane.wait_for("comment optional", LOAD);
    pane.keys(&["Enter"]);
    pane.wait_for("Waiting for others (1)", LOAD);
    let screen = pane.wait_for("1 of 2 · bob ✓", LOAD);
    assert!(screen.contains("To decide (1)"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("May approve") && l.contains("dave")),
        "{screen}"
    );
    // Approving it again is not offered.
    pane.keys(&["a"]);
    pane.wait_for("You already approved this request", LOAD);
    // dave's needs one, above it and the break-glass to acknowledge:
    // approving it takes it off the queue.
    pane.keys(&["k", "k", "a"]);
    pane.wait_for("Approve dave", LOAD);
    pane.keys(&["Enter"]);
    pane.wait_for("To decide (0)", LOAD);
    // Ctrl-C leaves as cleanly as q.
    pane.keys(&["C-c"]);
    pane.wait_for("EXITED rc=0", LOAD);
    assert!(!pane.alternate_screen());
}

#[test]
fn no_color_draws_without_colour() {
    let pane = Pane::start("demo", &[("NO_COLOR", "1")], 100, 30);
    pane.wait_for("Roles (7/7)", LOAD);
    let styled = pane.tmux(&["capture-pane", "-p", "-e", "-t", "t"]);
    assert!(styled.contains("\x1b[1m"), "emphasis is still drawn");
    // SGR parameters that set a colour: 30-37, 40-47, 90-97, 100-107, 38;…, 48;….
    let sgr = regex::Regex::new(r"\x1b\[([0-9;]*)m").unwrap();
    for sequence in sgr.captures_iter(&styled) {
        for param in sequence[1].split(';') {
            let n: u32 = param.parse().unwrap_or(0);
            let colour = matches!(n, 30..=37 | 40..=47 | 90..=97 | 100..=107 | 38 | 48);
            assert!(!colour, "colour SGR {:?} under NO_COLOR", &sequence[0]);
        }
    }
    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
}

/// At a terminal Ctrl-C goes to the whole foreground process group, the
/// command included, so `hoist exec` must not forward it as well, or the
/// command would see every Ctrl-C twice. The command here moves itself out
/// of the terminal's group (`setsid`), so any SIGINT it gets can only have
/// come from hoist; a process left in the group shows that Ctrl-C was sent.
#[test]
fn at_a_terminal_hoist_exec_leaves_ctrl_c_to_the_terminal() {
    ctrl_c_at_a_terminal("");
}

/// The same with stdin not the terminal (`< /dev/null`, a script fed to
/// the command): the terminal still sends Ctrl-C to the whole group.
#[test]
fn at_a_terminal_with_stdin_redirected_ctrl_c_is_still_the_terminals() {
    ctrl_c_at_a_terminal(" < /dev/null");
}

/// A broker with the demo's policy, and alice signed in to it with the
/// config in `config` (in the kernel keyring).
fn demo_broker_for_alice(
    runtime: &tokio::runtime::Runtime,
    config: &std::path::Path,
) -> hoistd::testing::TestBroker {
    let broker = runtime.block_on(
        hoistd::testing::TestBroker::builder()
            .policy(hoist::demo::DEMO_POLICY)
            .token_prefix("demo-")
            .start(),
    );
    let mut login = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["--broker", &broker.url(), "login", "--with-token"])
        .env("HOIST_CONFIG_DIR", config)
        .env("HOIST_KEYRING", "keyutils")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut login.stdin.take().unwrap(), b"demo-alice\n").unwrap();
    assert!(login.wait().unwrap().success());
    broker
}

/// `login --with-token` at a terminal asks for the token and does not show
/// it as it is typed, then signs in with it at Enter.
#[test]
fn login_with_a_token_at_a_terminal_asks_for_it_and_hides_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = runtime.block_on(
        hoistd::testing::TestBroker::builder()
            .policy(hoist::demo::DEMO_POLICY)
            .token_prefix("demo-")
            .start(),
    );
    let pane = Pane::start(
        &format!("--broker {} login --with-token", broker.url()),
        &[("HOIST_KEYRING", "keyutils")],
        100,
        20,
    );
    pane.wait_for("Paste the token (it is not shown)", LOAD);
    pane.type_text("demo-alice");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!pane.screen().contains("demo-alice"), "{}", pane.screen());
    pane.keys(&["Enter"]);
    let screen = pane.wait_for("EXITED rc=0", LOAD);
    assert!(screen.contains("as alice"), "{screen}");
    assert!(!screen.contains("demo-alice"), "{screen}");
}

/// Runs `hoist exec` in a terminal's foreground group, its stdin as
/// `redirect` makes it, types Ctrl-C, and checks the command got no
/// SIGINT from hoist for it; then sends hoist a SIGINT with `kill`, which
/// hoist forwards, once.
fn ctrl_c_at_a_terminal(redirect: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().to_str().unwrap();
    let mut broker = demo_broker_for_alice(&runtime, config.path());

    // The command: counts SIGINTs, and on SIGTERM (which hoist always
    // forwards) says how many it got. Its parent is hoist.
    let script = config.path().join("count-interrupts.sh");
    let pid_file = config.path().join("hoist.pid");
    std::fs::write(
        &script,
        format!(
            "echo $PPID > {}\n\
             n=0\n\
             trap 'n=$((n+1)); echo \"got INT $n\"' INT\n\
             trap 'echo \"INT received $n times\"; exit 0' TERM\n\
             echo started\n\
             while :; do sleep 0.05; done\n",
            pid_file.display()
        ),
    )
    .unwrap();
    // A witness in the terminal's foreground group, as the command would be.
    let witness = "python3 -c 'import signal, time; print(\"witness ready\", flush=True); \
        signal.signal(signal.SIGINT, lambda *_: print(\"witness got INT\", flush=True)); \
        [time.sleep(0.05) for _ in iter(int, 1)]' & ";
    let args = format!(
        "--broker {} exec prod-logs-read --reason 'Watch the queue drain' -- setsid sh {}{redirect}",
        broker.url(),
        script.display()
    );
    let pane = Pane::run(
        witness,
        &args,
        &[
            ("HOIST_CONFIG_DIR", config_dir),
            ("HOIST_KEYRING", "keyutils"),
        ],
        100,
        30,
    );
    pane.wait_for("started", LOAD);
    pane.wait_for("witness ready", LOAD);
    pane.keys(&["C-c"]);
    pane.wait_for("witness got INT", LOAD);
    let hoist: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let hoist = nix::unistd::Pid::from_raw(hoist);
    // Time for a forwarded Ctrl-C to land, were one sent, before the
    // SIGINT below: two close together could arrive as one.
    std::thread::sleep(Duration::from_millis(500));
    // A SIGINT a process sends reaches hoist alone: forwarded, once.
    nix::sys::signal::kill(hoist, nix::sys::signal::Signal::SIGINT).unwrap();
    pane.wait_for("got INT 1", LOAD);
    nix::sys::signal::kill(hoist, nix::sys::signal::Signal::SIGTERM).unwrap();
    let screen = pane.wait_for("EXITED", LOAD);
    assert!(screen.contains("INT received 1 times"), "{screen}");
    assert!(!screen.contains("got INT 2"), "{screen}");
    assert!(screen.contains("EXITED rc=0"), "{screen}");
    runtime.block_on(broker.stop());
}

/// A terminal that hangs up sends SIGHUP to its whole foreground group,
/// the command included, so `hoist exec` must not forward it as well, or
/// the command would get it twice. As with Ctrl-C, the command moves
/// itself out of the group, so a SIGHUP it gets can only come from hoist;
/// a witness left in the group shows the terminal sent one.
#[test]
fn at_a_terminal_that_hangs_up_hoist_exec_leaves_sighup_to_the_terminal() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().to_str().unwrap();
    let mut broker = demo_broker_for_alice(&runtime, config.path());
    let marks = config.path().join("marks");
    let script = config.path().join("count-hangups.sh");
    let pid_file = config.path().join("hoist.pid");
    let command_pid = config.path().join("command.pid");
    std::fs::write(
        &script,
        format!(
            "echo $PPID > {pids}\n\
             echo $$ > {own}\n\
             trap 'echo \"command got HUP\" >> {marks}' HUP\n\
             trap 'exit 0' TERM\n\
             echo started\n\
             while :; do sleep 0.05; done\n",
            pids = pid_file.display(),
            own = command_pid.display(),
            marks = marks.display()
        ),
    )
    .unwrap();
    let witness = format!(
        "python3 -c 'import os, signal, time; print(\"witness ready\", flush=True); \
         signal.signal(signal.SIGHUP, lambda *_: (open(\"{}\", \"a\").write(\"witness got HUP\\n\"), \
         os._exit(0))); \
         [time.sleep(0.05) for _ in iter(int, 1)]' & ",
        marks.display()
    );
    let args = format!(
        "--broker {} exec prod-logs-read --reason 'Watch the queue drain' -- setsid sh {}",
        broker.url(),
        script.display()
    );
    let pane = Pane::run(
        &witness,
        &args,
        &[
            ("HOIST_CONFIG_DIR", config_dir),
            ("HOIST_KEYRING", "keyutils"),
        ],
        100,
        30,
    );
    pane.wait_for("started", LOAD);
    pane.wait_for("witness ready", LOAD);
    let hoist: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let hoist = nix::unistd::Pid::from_raw(hoist);
    // Whatever the outcome, hoist and the command (out of the terminal's
    // reach) do not outlive the test.
    struct Ends(nix::unistd::Pid);
    impl Drop for Ends {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let command = std::fs::read_to_string(&command_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _command = Ends(nix::unistd::Pid::from_raw(command));
    drop(pane);
    let read = || std::fs::read_to_string(&marks).unwrap_or_default();
    let start = Instant::now();
    while !read().contains("witness got HUP") {
        assert!(
            start.elapsed() < LOAD,
            "the terminal sent no SIGHUP: {}",
            read()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Time for a forwarded one to land, were one sent.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!read().contains("command got HUP"), "{}", read());
    // Ended as a supervisor would end it: forwarded, and hoist goes.
    nix::sys::signal::kill(hoist, nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = Instant::now();
    while nix::sys::signal::kill(hoist, None).is_ok() {
        assert!(start.elapsed() < LOAD, "hoist did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime.block_on(broker.stop());
}

/// Ctrl-C in a shell loop around `hoist exec` stops the loop: the command
/// dies of the SIGINT, and hoist, once it has revoked the grant, ends by it
/// too, as bash must see to stop (an exit with 130 tells it the signal was
/// handled, and the loop would run its next turn). The shells around it
/// stop as well, so the loop writes to a file, read here.
#[test]
fn ctrl_c_stops_a_shell_loop_around_hoist_exec() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let mut broker = demo_broker_for_alice(&runtime, &config);
    let log = dir.path().join("loop.log");
    let program = format!(
        "HOIST_CONFIG_DIR={} HOIST_KEYRING=keyutils bash -c 'exec >> {} 2>&1; \
         for i in 1 2; do {} --broker {} exec prod-logs-read --reason \"Nightly export\" \
         -- sh -c \"echo turn $i; sleep 30\"; echo after $i; done; echo loop done'",
        config.display(),
        log.display(),
        env!("CARGO_BIN_EXE_hoist"),
        broker.url()
    );
    let pane = Pane::shell(tempfile::tempdir().unwrap(), &program, 100, 30);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    while !said().contains("turn 1") {
        assert!(start.elapsed() < LOAD, "never started: {}", said());
        std::thread::sleep(Duration::from_millis(50));
    }
    pane.keys(&["C-c"]);
    // The loop, had it gone on, says so at once, after the revocation.
    let start = Instant::now();
    while pane.tmux(&["list-panes"]).contains('[') && !said().contains("after 1") {
        assert!(
            start.elapsed() < LOAD,
            "neither ended nor went on: {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let said = said();
    for later in ["after 1", "turn 2", "loop done"] {
        assert!(!said.contains(later), "{later}: {said}");
    }
    // The grant it asked for was revoked before hoist ended.
    let active = runtime.block_on(broker.as_user("alice").grants());
    assert!(
        active.iter().all(|g| g.role != "prod-logs-read"),
        "{active:?}"
    );
    runtime.block_on(broker.stop());
}

/// The demo's story with its real PostgreSQL target, typed in a real
/// terminal: the first banner says which target, a request is approved,
/// the Grants screen says `live at demo-db`, `s` (confirmed: it sets a
/// new password) shows a `psql` command, and that command, pasted into a
/// shell, logs in.
#[test]
fn the_demo_story_ends_in_a_working_psql() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("demo.log");
    let pane = Pane::start(&format!("demo --log {}", log.display()), &[], 160, 40)
        .showing_log(log.clone());
    pane.wait_for("Demo target: a throwaway PostgreSQL", LOAD);
    pane.wait_for("Roles (7/7)", LOAD);
    pane.keys(&["/"]);
    pane.type_text("pdb");
    pane.keys(&["Enter"]);
    pane.wait_for("Request prod-db-admin", LOAD);
    pane.type_text("Vacuum the bloated orders table");
    pane.keys(&["Tab"]);
    pane.type_text("CHG-1024");
    pane.keys(&["C-s"]);
    pane.wait_for("approved by bob", APPROVAL);
    pane.keys(&["3"]);
    pane.wait_for("live at demo-db", LOAD);
    pane.keys(&["s"]);
    pane.wait_for("Show a new password for prod-db-admin?", LOAD);
    pane.keys(&["Enter"]);
    let shown = pane.wait_for("psql 'postgresql://hoist_alice_", LOAD);
    let command = shown
        .lines()
        .filter_map(|l| l.find("PGPASSWORD=").map(|at| &l[at..]))
        .next()
        .unwrap()
        .trim_end_matches(|c: char| c == '│' || c.is_whitespace())
        .to_string();
    assert!(command.ends_with('\''), "one line: {command}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} -tAc 'select current_user'"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hoist_alice_"));
    pane.keys(&["Escape"]);
    // Read together, Escape and the key after it are Alt and that key.
    pane.wait_gone("Shown once", LOAD);
    pane.keys(&["x"]);
    pane.wait_for("Revoke prod-db-admin now?", LOAD);
    pane.keys(&["y"]);
    pane.wait_for("access removed at demo-db", APPROVAL);
    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
    // The log says what the broker did, and no secret: not the password
    // the credential showed.
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("target effect done"), "{written}");
    let password = command
        .split("PGPASSWORD=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_matches('\'');
    assert!(password.len() >= 16, "{command}");
    assert!(!written.contains(password), "{written}");
}

/// Closing the terminal under the TUI ends hoist cleanly: putting the
/// terminal back writes to a terminal that is gone, and that failure must
/// not abort it.
#[test]
fn closing_the_terminal_ends_hoist_without_aborting() {
    let out = tempfile::tempdir().unwrap();
    let rc = out.path().join("rc");
    // The shell ignores the hang-up so it outlives the terminal and records
    // how hoist ended; hoist listens for SIGHUP itself.
    let pane = Pane::run(
        "trap '' HUP; ",
        &format!("demo; echo $? > {}", rc.display()),
        &[],
        160,
        40,
    );
    pane.wait_for("Demo target:", LOAD);
    drop(pane);
    let start = Instant::now();
    let status = loop {
        match std::fs::read_to_string(&rc) {
            Ok(text) if text.ends_with('\n') => break text.trim().to_string(),
            _ => {
                assert!(
                    start.elapsed() < LOAD,
                    "hoist did not end after its terminal closed"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // 0 when the hang-up is seen first, 1 when a draw fails on the gone
    // terminal first; a panic is 101, a panic while panicking 134 (abort).
    assert!(
        status == "0" || status == "1",
        "hoist ended with status {status} after its terminal closed"
    );
}

/// Closing the terminal ends the demo, and its PostgreSQL cluster goes with
/// it.
#[test]
fn closing_the_terminal_removes_the_demos_cluster() {
    let pane = Pane::start("demo", &[], 160, 40);
    let screen = pane.wait_for("Demo target: a throwaway PostgreSQL on 127.0.0.1:", LOAD);
    let port: u16 = screen
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reachable = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(reachable());
    drop(pane); // kills the tmux server: the terminal hangs up
    let start = Instant::now();
    while reachable() {
        assert!(
            start.elapsed() < LOAD,
            "the cluster on port {port} outlived the demo"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
