//! `load events`: many event streams open, and how soon a change reaches one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::api::{Api, Samples, emit};
use crate::support::{Args, role_id};

/// One event stream; calls `on_event(name, data)` for each event.
async fn follow(
    api: Api,
    user: String,
    ready: oneshot::Sender<()>,
    mut on_event: impl FnMut(&str, &str) + Send,
) {
    let response = api
        .http
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(format!("tok-{user}"))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("event stream");
    assert!(response.status().is_success(), "{}", response.status());
    let mut ready = Some(ready);
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if name == "hello"
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(());
            }
            if !name.is_empty() {
                on_event(name, &data);
            }
        }
    }
}

pub async fn events(api: Api, args: &Args) {
    let clients = args.number("--clients", 1000) as usize;
    let approvals = args.number("--approvals", 200) as usize;
    let interval = Duration::from_millis(args.number("--interval-ms", 50));
    let delivered = Arc::new(AtomicU64::new(0));

    // Watchers: every event on the role reaches them too.
    let mut readies = Vec::new();
    for i in 0..clients - 1 {
        let (ready, is_ready) = oneshot::channel();
        let delivered = delivered.clone();
        tokio::spawn(follow(
            api.clone(),
            format!("w{i:04}"),
            ready,
            move |name, _| {
                if name != "hello" {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            },
        ));
        readies.push(is_ready);
        // Open them in batches, as a fleet of clients would arrive.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (active, mut arrivals) = mpsc::unbounded_channel::<(String, Instant)>();
    let (ready, is_ready) = oneshot::channel();
    tokio::spawn(follow(
        api.clone(),
        "alice".into(),
        ready,
        move |name, data| {
            if name == "request"
                && let Ok(event) = serde_json::from_str::<hoist_api::LiveEvent>(data)
                && let hoist_api::LiveEvent::Request { request } = event
                && request.state == hoist_api::RequestState::Active
            {
                let _ = active.send((request.id, Instant::now()));
            }
        },
    ));
    readies.push(is_ready);
    for ready in readies {
        tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .expect("a stream did not open in time")
            .expect("a stream failed");
    }
    let delivered_before = delivered.load(Ordering::Relaxed);

    let mut latency = Samples::default();
    let mut approve = Samples::default();
    let mut lost = 0;
    for i in 0..approvals {
        // With two instances (`--url A,B`), the streams are on the first and
        // the approval on the second.
        let filed = api
            .on(1)
            .create("alice", &role_id(i))
            .await
            .expect("filing");
        // Let the `pending` event reach every stream before the approval.
        tokio::time::sleep(interval / 2).await;
        let began = Instant::now();
        let approved = api
            .on(1)
            .approve("bob", &filed.id)
            .await
            .expect("approving");
        approve.0.push(began.elapsed());
        assert_eq!(approved.state, hoist_api::RequestState::Active);
        let arrival = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match arrivals.recv().await {
                    Some((id, at)) if id == filed.id => return Some(at),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await;
        match arrival {
            Ok(Some(at)) => latency.0.push(at - began),
            _ => lost += 1,
        }
        tokio::time::sleep(interval / 2).await;
    }
    // Let the last events land before counting deliveries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = delivered.load(Ordering::Relaxed) - delivered_before;
    emit(
        "events.latency",
        json!({
            "event": latency.summary(),
            "approve_call": approve.summary(),
            "lost": lost,
            "deliveries_per_watcher": deliveries as f64 / (clients - 1) as f64,
        }),
        json!({
            "what": format!("{clients} clients on GET /v1/events (alice + {} watchers who review the role, so every change reaches all of them); {approvals} approvals by bob, one every {} ms; time from sending the approval to alice's `request` event (state active)", clients - 1, interval.as_millis()),
        }),
    );
}
