//! Live events between instances: each transaction that changed requests
//! or grants sends their ids, and when the first of them falls due for the
//! reaper, with `NOTIFY` (delivered at commit, and only then), and each
//! instance listens on a connection of its own, outside the pool,
//! reconnecting when it is lost. Ids rather than rows: a payload is limited
//! to 8 kB, and each instance reads the rows itself, if it has streams to
//! tell.

use std::time::Duration;

use chrono::DateTime;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::Announcement;

/// The channel every instance of a database listens on.
pub(super) const CHANNEL: &str = "hoistd_changes";
/// Ids per notification, well under the 8 kB payload limit.
pub(super) const IDS_PER_NOTICE: usize = 100;
/// Wait between attempts to listen again.
const RETRY: Duration = Duration::from_millis(500);
/// How often a listener checks that its server is still writable.
const WRITABLE_LOOK: Duration = Duration::from_secs(2);

/// Whether the server a connection is at takes no writes: a standby, or
/// one made read-only (`default_transaction_read_only`).
async fn read_only(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// One notification's payload.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Notice {
    /// The store that sent it: an instance ignores its own, which it
    /// already delivered to its streams.
    pub(super) origin: String,
    #[serde(default)]
    pub(super) requests: Vec<String>,
    #[serde(default)]
    pub(super) grants: Vec<String>,
    /// Whether it says when they fall due (`due`): a sender that does not
    /// leaves the listener to read them to know.
    #[serde(default)]
    pub(super) timed: bool,
    /// When the first of them falls due for the reaper, in Unix
    /// milliseconds; none if none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) due: Option<i64>,
    /// Whether the transaction queued target effects, so the leader's
    /// outbox worker need not look when it did not; a sender that does not
    /// say leaves it to look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) effects: Option<bool>,
}

/// Listens until `out` is dropped; says [`Announcement::Missed`] each time
/// it starts listening: the first time, so the server can wait for it
/// before serving, and after each reconnection, since notifications sent
/// meanwhile are lost.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    origin: String,
    out: mpsc::UnboundedSender<Announcement>,
) {
    loop {
        match listen_once(&config, &tls, &origin, &out).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for other instances' changes; retrying")
            }
        }
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One connection's life: `Ok(true)` when it was lost after listening,
/// `Ok(false)` when nobody listens any more.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    origin: &str,
    out: &mpsc::UnboundedSender<Announcement>,
) -> Result<bool, tokio_postgres::Error> {
    let (client, mut connection) = without_tls_on_sockets(config).connect(tls.clone()).await?;
    let (notices, mut received) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(notice) = message
                && notices.send(notice.payload().to_owned()).is_err()
            {
                return;
            }
        }
    });
    // Only a writable server hears the writers' notifications. One that
    // takes no writes (a standby, a primary fenced off by turning it
    // read-only) is left, and another connection tried after a while: the
    // URL's next host, or its one name once a failover moved it.
    if read_only(&client).await? {
        driver.abort();
        tracing::debug!("the server to listen at takes no writes; trying again shortly");
        tokio::time::sleep(WRITABLE_LOOK).await;
        return Ok(true);
    }
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    if out.send(Announcement::Missed).is_err() {
        return Ok(false);
    }
    tracing::debug!("listening for other instances' changes");
    // And one that stops taking writes while listened at, staying up:
    // every writer moves to the new primary, whose notifications this
    // connection would never hear.
    let mut looks = tokio::time::interval(WRITABLE_LOOK);
    looks.tick().await;
    loop {
        let payload = tokio::select! {
            payload = received.recv() => match payload {
                Some(payload) => payload,
                None => break,
            },
            _ = looks.tick() => {
                if read_only(&client).await? {
                    tracing::warn!(
                        "the server listened at turned read-only; listening at a writable one"
                    );
                    break;
                }
                continue;
            }
        };
        let Ok(notice) = serde_json::from_str::<Notice>(&payload) else {
            tracing::warn!("an unreadable notification on {CHANNEL}; streams resync");
            if out.send(Announcement::Missed).is_err() {
                return Ok(false);
            }
            continue;
        };
        if notice.origin == origin {
            continue;
        }
        if out.send(notice.into()).is_err() {
            return Ok(false);
        }
    }
    driver.abort();
    drop(client);
    tracing::warn!("lost the connection listening for other instances' changes; reconnecting");
    Ok(true)
}

impl From<Notice> for Announcement {
    fn from(notice: Notice) -> Self {
        Announcement::Changed {
            requests: notice.requests,
            grants: notice.grants,
            due: notice
                .timed
                .then(|| notice.due.and_then(DateTime::from_timestamp_millis)),
            effects: notice.effects.unwrap_or(true),
        }
    }
}

/// The listener's connection settings: over Unix sockets only, no TLS,
/// whatever `sslmode` says, as for the pool's connections (see
/// `drive::start`): the server offers none there, and `require` would
/// otherwise keep the listener from ever connecting.
fn without_tls_on_sockets(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    let sockets_only = config
        .get_hosts()
        .iter()
        .all(|host| matches!(host, tokio_postgres::config::Host::Unix(_)));
    if sockets_only {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(payload: &str) -> Announcement {
        serde_json::from_str::<Notice>(payload).unwrap().into()
    }

    #[test]
    fn a_notice_says_when_its_changes_fall_due_or_that_none_does() {
        let due = DateTime::from_timestamp_millis(1_700_000_000_000);
        let sent = |due| Notice {
            origin: "a".into(),
            requests: vec!["req_1".into()],
            grants: Vec::new(),
            timed: true,
            due,
            effects: Some(false),
        };
        let payload = serde_json::to_string(&sent(Some(1_700_000_000_000))).unwrap();
        assert_eq!(
            heard(&payload),
            Announcement::Changed {
                requests: vec!["req_1".into()],
                grants: Vec::new(),
                due: Some(due),
                effects: false,
            }
        );
        let payload = serde_json::to_string(&sent(None)).unwrap();
        assert!(matches!(
            heard(&payload),
            Announcement::Changed {
                due: Some(None),
                ..
            }
        ));
    }

    #[test]
    fn a_notice_that_does_not_say_when_leaves_the_rows_to_be_read() {
        let announced = heard(r#"{"origin":"a","requests":["req_1"]}"#);
        assert!(matches!(announced, Announcement::Changed { due: None, .. }));
    }

    #[test]
    fn a_notice_that_does_not_say_whether_it_queued_effects_wakes_the_outbox() {
        let announced = heard(r#"{"origin":"a","grants":["gr_1"],"timed":true}"#);
        assert!(matches!(
            announced,
            Announcement::Changed { effects: true, .. }
        ));
        let announced = heard(r#"{"origin":"a","grants":["gr_1"],"effects":true}"#);
        assert!(matches!(
            announced,
            Announcement::Changed { effects: true, .. }
        ));
    }
}
