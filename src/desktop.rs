//! Desktop notices over D-Bus (`org.freedesktop.Notifications`), where a
//! notification daemon listens on the session bus. The terminal's own
//! notices (OSC 9 and 777) are the TUI's; this is the desktop's.

use std::collections::HashMap;
use std::time::Duration;

use crate::text::sanitize;

/// Longest wait for the daemon: a notice never holds anything up.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a session bus is there to ask (a desktop session; not a bare
/// SSH login or CI).
pub fn available() -> bool {
    cfg!(target_os = "linux") && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
}

/// Shows `body` under the summary "hoist" through the notification daemon
/// of the session bus, or of the bus at `address`. Text from the broker is
/// in it, so it is cleaned first; daemons render a subset of markup, so
/// `<` and `&` are escaped too.
#[cfg(target_os = "linux")]
pub async fn notify(address: Option<&str>, body: &str) -> Result<u32, String> {
    let body = sanitize::line(body)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let call = async {
        let connection = match address {
            Some(address) => zbus::connection::Builder::address(address)?.build().await?,
            None => zbus::Connection::session().await?,
        };
        let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
        let reply = connection
            .call_method(
                Some("org.freedesktop.Notifications"),
                "/org/freedesktop/Notifications",
                Some("org.freedesktop.Notifications"),
                "Notify",
                &(
                    "hoist",
                    0u32,
                    "dialog-information",
                    "hoist",
                    body.as_str(),
                    Vec::<&str>::new(),
                    hints,
                    -1i32,
                ),
            )
            .await?;
        let id: u32 = reply.body().deserialize()?;
        Ok::<u32, zbus::Error>(id)
    };
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(err)) => Err(format!("desktop notice not shown: {err}")),
        Err(_) => Err("desktop notice not shown: the notification daemon did not answer".into()),
    }
}

#[cfg(not(target_os = "linux"))]
pub async fn notify(_address: Option<&str>, _body: &str) -> Result<u32, String> {
    Err("desktop notices over D-Bus are for Linux desktops".into())
}
