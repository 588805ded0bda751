//! Live updates over Server-Sent Events.

use std::time::Duration;

use futures::StreamExt;
use hoist_api::{LiveEvent, RequestState};

use crate::helpers::*;

/// Reads a `text/event-stream` and yields each event's parsed `data`.
pub(crate) struct EventStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl EventStream {
    pub(crate) async fn open(client: &Client) -> Self {
        let response = client
            .raw(reqwest::Method::GET, "/v1/events")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        // Not held back by a proxy that buffers answers.
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        EventStream {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> Option<LiveEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                let event: LiveEvent = serde_json::from_str(&data).unwrap();
                let name = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))
                    .unwrap()
                    .trim();
                assert_eq!(name, event.name());
                return Some(event);
            }
            let chunk = self.body.next().await?.unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Whether the stream ends within `wait`, with nothing delivered before
    /// its end; panics on an event.
    async fn ends_within(&mut self, wait: Duration) -> bool {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(None) => true,
            Ok(Some(event)) => panic!("expected the stream to end, got {event:?}"),
            Err(_) => false,
        }
    }

    /// The next event, or None if none comes within `wait`.
    pub(crate) async fn within(&mut self, wait: Duration) -> Option<LiveEvent> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }
}

#[tokio::test]
async fn each_caller_gets_the_changes_that_concern_them() {
    let broker = TestBroker::start().await;
    let (alice, bob, frank) = (
        broker.as_user("alice"),
        broker.as_user("bob"),
        broker.as_user("frank"),
    );
    let mut alice_events = EventStream::open(&alice).await;
    let mut bob_events = EventStream::open(&bob).await;
    let mut frank_events = EventStream::open(&frank).await;
    for (stream, user) in [
        (&mut alice_events, "alice"),
        (&mut bob_events, "bob"),
        (&mut frank_events, "frank"),
    ] {
        match stream.next().await {
            Some(LiveEvent::Hello { user: who, .. }) => assert_eq!(who, user),
            other => panic!("expected hello, got {other:?}"),
        }
    }

    let filed = alice.file(&db_request()).await.unwrap();
    let wait = Duration::from_secs(5);
    // The approver's queue gains it; the requester sees it filed.
    match bob_events.within(wait).await {
        Some(LiveEvent::Request { request }) => assert_eq!(
            (request.id.as_str(), request.state),
            (filed.id.as_str(), RequestState::Pending)
        ),
        other => panic!("bob expected the new request, got {other:?}"),
    }
    let mut copies = vec![];
    match alice_events.within(wait).await {
        Some(LiveEvent::Request { request }) => copies.push(request),
        other => panic!("alice expected her request, got {other:?}"),
    }

    bob.approve(&filed.id).await.unwrap();
    let mut saw_active = false;
    let mut saw_grant = false;
    while !(saw_active && saw_grant) {
        match alice_events.within(wait).await {
            Some(LiveEvent::Request { request }) => {
                saw_active |= request.state == RequestState::Active;
                copies.push(request);
            }
            Some(LiveEvent::Grant { grant }) => {
                assert_eq!(grant.holder, "alice");
                saw_grant = true;
            }
            other => panic!("alice expected her request and grant, got {other:?}"),
        }
    }
    // Each change, even two in one transaction within a millisecond (the
    // approval, then the activation), is later than the one before, so a
    // client given them out of order can tell which is newer.
    assert!(copies.len() >= 2, "{copies:?}");
    for pair in copies.windows(2) {
        assert!(pair[0].is_older_than(&pair[1]), "{pair:?}");
    }
    // Nothing of alice's reaches a bystander.
    assert!(
        frank_events
            .within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn streams_end_when_the_broker_stops() {
    let mut broker = TestBroker::start().await;
    let mut events = EventStream::open(&broker.as_user("alice")).await;
    assert!(matches!(events.next().await, Some(LiveEvent::Hello { .. })));
    tokio::time::timeout(Duration::from_secs(10), broker.stop())
        .await
        .expect("stop does not hang on open streams");
    assert!(events.within(Duration::from_secs(5)).await.is_none());
}

/// Rewrites the test policy with `from` replaced by `to`, and reloads it.
async fn reload_with(broker: &TestBroker, from: &str, to: &str) {
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    assert!(text.contains(from), "the policy has no {from:?}");
    std::fs::write(broker.policy_path(), text.replace(from, to)).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
}

#[tokio::test]
async fn a_stream_ends_when_its_token_is_rotated_out_of_the_policy() {
    use sha2::{Digest, Sha256};
    let broker = TestBroker::start().await;
    let (alice, bob, dave) = (
        broker.as_user("alice"),
        broker.as_user("bob"),
        broker.as_user("dave"),
    );
    let mut bob_events = EventStream::open(&bob).await;
    let mut dave_events = EventStream::open(&dave).await;
    for stream in [&mut bob_events, &mut dave_events] {
        assert!(matches!(stream.next().await, Some(LiveEvent::Hello { .. })));
    }
    let old = hex::encode(Sha256::digest(b"t-bob"));
    let new = hex::encode(Sha256::digest(b"t-bob-rotated"));
    reload_with(&broker, &old, &new).await;

    // bob is still an approver, but not with that token: nothing more of
    // anyone's reaches it, and the stream ends.
    alice.file(&db_request()).await.unwrap();
    assert!(bob_events.ends_within(Duration::from_secs(10)).await);
    match dave_events.within(Duration::from_secs(5)).await {
        Some(LiveEvent::Request { request }) => assert_eq!(request.requester, "alice"),
        other => panic!("dave's stream should go on, got {other:?}"),
    }
    // Reconnecting says the token is no longer good.
    let response = bob
        .raw(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let rotated = broker.with_token("t-bob-rotated");
    let mut again = EventStream::open(&rotated).await;
    assert!(matches!(again.next().await, Some(LiveEvent::Hello { .. })));
}

#[tokio::test]
async fn a_stream_ends_when_its_caller_is_taken_out_and_idle_streams_too() {
    let broker = TestBroker::start().await;
    let bob = broker.as_user("bob");
    let mut events = EventStream::open(&bob).await;
    assert!(matches!(events.next().await, Some(LiveEvent::Hello { .. })));
    // Nothing happens on the stream; the reload alone ends it.
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    let without_bob = text.replace("[users.bob]\ntoken_sha256", "[users.bob]\n# token_sha256");
    assert_ne!(text, without_bob);
    std::fs::write(broker.policy_path(), without_bob).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    assert!(events.ends_within(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_stream_ends_when_its_id_token_does() {
    let issuer = crate::issuer::Issuer::start().await;
    let broker = TestBroker::builder()
        .policy(&(policy_text("") + &issuer.policy(r#"leeway = "0s""#)))
        .start()
        .await;
    let zed = broker.with_token(&issuer.token("k1", "zed", 2, serde_json::json!({})));
    let mut events = EventStream::open(&zed).await;
    assert!(matches!(events.next().await, Some(LiveEvent::Hello { .. })));
    assert!(events.ends_within(Duration::from_secs(10)).await);
    let response = zed
        .raw(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "the token has ended");
}
