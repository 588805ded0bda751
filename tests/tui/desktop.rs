//! Desktop notices reach a real notification daemon over a real, private
//! D-Bus session bus (`dbus-daemon`, and `tests/desktop/notification-daemon.py`
//! owning `org.freedesktop.Notifications`), cleaned and escaped on the way.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(command: &mut Command, what: &str) -> (Running, Lines<BufReader<ChildStdout>>) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{what} did not start ({err}); scripts/test installs it"));
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (Running(child), lines)
}

/// The Debian python, which has the Debian `python3-jeepney`.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[tokio::test]
async fn a_notice_reaches_the_notification_daemon_cleaned_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let (_bus, mut bus_out) = start(
        Command::new("dbus-daemon").args([
            "--session",
            "--nofork",
            "--print-address=1",
            &format!("--address=unix:path={}", dir.path().join("bus").display()),
        ]),
        "dbus-daemon",
    );
    let address = bus_out.next().unwrap().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/desktop/notification-daemon.py"
    );
    let (daemon, mut notices) = start(
        Command::new(python()).arg(script).arg(&address),
        "the test notification daemon (python3-jeepney)",
    );
    assert_eq!(notices.next().unwrap().unwrap(), "READY");

    let id = hoist::desktop::notify(
        Some(&address),
        "To review: carol asks for <b>db</b> & \u{1b}[31mmore",
    )
    .await
    .unwrap();
    let seen: serde_json::Value = serde_json::from_str(&notices.next().unwrap().unwrap()).unwrap();
    assert_eq!(seen["id"], id);
    assert_eq!(seen["app"], "hoist");
    assert_eq!(seen["summary"], "hoist");
    // The escape shows as text; markup the daemon would render is escaped.
    assert_eq!(
        seen["body"],
        "To review: carol asks for &lt;b&gt;db&lt;/b&gt; &amp; ⟨U+001B⟩[31mmore"
    );

    // No daemon on the bus: a clear error, not a hang.
    drop(daemon);
    let err = hoist::desktop::notify(Some(&address), "again")
        .await
        .unwrap_err();
    assert!(err.starts_with("desktop notice not shown: "), "{err}");
}
