//! Load generator for a running `hoistd serve` on loopback (`scripts/bench`
//! starts one with a fresh database and a policy from `fixture policy`).
//! Every user's token is `tok-<user>`.
//!
//! ```text
//! load cycles --url URL [--requesters 4] [--users 100] [--roles 300] [--seconds 10] [--warmup 2]
//!     Sustained create -> approve (activates the grant) cycles, closed loop: `--requesters`
//!     tasks file requests as distinct users, two reviewers (bob, carol) approve them, each
//!     one request at a time. Reports cycles per second and each call's latency.
//! load rate --url URL [--rps 200] [--seconds 30] [--users 100] [--roles 300]
//!     Open loop at a fixed request rate, each call timed from the moment it was due (no
//!     coordinated omission): a request's life (create, approve, credential, revoke) and
//!     the reads a client makes (its requests, grants, me, roles, a reviewer's queue).
//! load events --url URL [--clients 1000] [--approvals 200] [--interval-ms 50]
//!     `--clients` event streams open (alice plus watchers w0000..., who review the role
//!     and so receive every event); alice files, bob approves, and the time from sending
//!     the approval to alice's `request` event saying `active` is recorded.
//! ```
//!
//! Prints one JSON object per line: `{"id", "run", "metrics", "meta"}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hoist_api::{AccessRequest, CreateRequest, Decision, ReviewInput};
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == name)?;
        self.0.get(at + 1).map(String::as_str)
    }

    fn number(&self, name: &str, default: u64) -> u64 {
        self.value(name)
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    }
}

/// Role `i`'s id, as `fixture policy` names it.
fn role_id(i: usize) -> String {
    const ENVS: [&str; 5] = ["prod", "staging", "dev", "qa", "sandbox"];
    const SERVICES: [&str; 10] = [
        "db", "k8s", "deploy", "logs", "kafka", "redis", "s3", "vault", "ssh", "billing",
    ];
    const ACCESS: [&str; 4] = ["admin", "read", "write", "operator"];
    let env = ENVS[i % 5];
    let service = SERVICES[(i / 5) % 10];
    let access = ACCESS[(i / 50) % 4];
    format!("{env}-{service}-{access}-{:04}", i / 200)
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Api {
    fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Api {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn call(
        &self,
        user: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(format!("tok-{user}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| Failure(e.to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Failure(e.to_string()))?;
        if !status.is_success() {
            return Err(Failure(format!(
                "{path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| Failure(format!("{path}: {e}")))
    }

    async fn create(&self, user: &str, role: &str) -> Result<AccessRequest, Failure> {
        let body = CreateRequest {
            role: role.to_string(),
            justification: "Load test of the broker: a routine request".into(),
            ticket: None,
            incident: None,
            duration_secs: None,
            starts_at: None,
            break_glass: false,
        };
        let value = self
            .call(
                user,
                reqwest::Method::POST,
                "/v1/requests",
                Some(serde_json::to_value(body).unwrap()),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| Failure(e.to_string()))
    }

    async fn approve(&self, reviewer: &str, id: &str) -> Result<AccessRequest, Failure> {
        let body = ReviewInput {
            decision: Decision::Approve,
            comment: None,
        };
        let value = self
            .call(
                reviewer,
                reqwest::Method::POST,
                &format!("/v1/requests/{id}/reviews"),
                Some(serde_json::to_value(body).unwrap()),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| Failure(e.to_string()))
    }
}

/// Latencies of one kind of call.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn summary(&mut self) -> serde_json::Value {
        let samples = &mut self.0;
        if samples.is_empty() {
            return json!({ "samples": 0 });
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            ms(samples[rank - 1])
        };
        json!({
            "samples": samples.len(),
            "p50_ms": at(0.5),
            "p90_ms": at(0.9),
            "p99_ms": at(0.99),
            "max_ms": ms(*samples.last().unwrap()),
        })
    }
}

fn emit(id: &str, metrics: serde_json::Value, meta: serde_json::Value) {
    println!(
        "{}",
        json!({ "id": id, "run": 0, "metrics": metrics, "meta": meta })
    );
}

async fn cycles(api: Api, args: &Args) {
    let requesters = args.number("--requesters", 4) as usize;
    let users = args.number("--users", 100) as usize;
    let roles = args.number("--roles", 300) as usize;
    let warmup = Duration::from_secs(args.number("--warmup", 2));
    let seconds = args.number("--seconds", 10);
    let window = Duration::from_secs(seconds);

    let next_pair = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let in_window = move |at: Instant| {
        let t = at.duration_since(started);
        t >= warmup && t < warmup + window
    };
    // Filed requests waiting for a reviewer: a short queue, so requesters do
    // not run far ahead and a cycle's time is not mostly waiting in it.
    let (to_review, reviews) = mpsc::channel::<(String, Instant)>(requesters);
    let reviews = Arc::new(Mutex::new(reviews));

    let mut tasks = Vec::new();
    for _ in 0..requesters {
        let (api, next_pair, done, errors, to_review) = (
            api.clone(),
            next_pair.clone(),
            done.clone(),
            errors.clone(),
            to_review.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Samples::default();
            while !done.load(Ordering::Relaxed) {
                let n = next_pair.fetch_add(1, Ordering::Relaxed);
                assert!(n < users * roles, "ran out of (user, role) pairs");
                let (user, role) = (format!("r{:04}", n % users), role_id(n / users));
                let began = Instant::now();
                match api.create(&user, &role).await {
                    Ok(request) => {
                        if in_window(began) {
                            latencies.0.push(began.elapsed());
                        }
                        if to_review.send((request.id, began)).await.is_err() {
                            break;
                        }
                    }
                    Err(err) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("load: create: {err:?}");
                        }
                    }
                }
            }
            (latencies, Samples::default(), Samples::default(), 0_u64)
        }));
    }
    drop(to_review);
    for reviewer in ["bob", "carol"] {
        let (api, reviews, errors) = (api.clone(), reviews.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let (mut approve, mut cycle) = (Samples::default(), Samples::default());
            let mut completed = 0_u64;
            loop {
                let next = reviews.lock().await.recv().await;
                let Some((id, filed)) = next else { break };
                let began = Instant::now();
                match api.approve(reviewer, &id).await {
                    Ok(request) if request.state == hoist_api::RequestState::Active => {
                        let end = Instant::now();
                        if in_window(end) {
                            completed += 1;
                            approve.0.push(end - began);
                            cycle.0.push(end - filed);
                        }
                    }
                    Ok(request) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("load: {id} is {} after approval", request.state);
                        }
                    }
                    Err(err) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("load: approve: {err:?}");
                        }
                    }
                }
            }
            (Samples::default(), approve, cycle, completed)
        }));
    }
    tokio::time::sleep(warmup + window).await;
    done.store(true, Ordering::Relaxed);
    let (mut create, mut approve, mut cycle, mut completed) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        0,
    );
    for task in tasks {
        let (c, a, y, n) = task.await.unwrap();
        create.0.extend(c.0);
        approve.0.extend(a.0);
        cycle.0.extend(y.0);
        completed += n;
    }
    emit(
        "broker.cycles",
        json!({
            "cycles_per_sec": completed as f64 / window.as_secs_f64(),
            "cycles": completed,
            "errors": errors.load(Ordering::Relaxed),
            "create": create.summary(),
            "approve": approve.summary(),
            "cycle": cycle.summary(),
        }),
        json!({
            "what": format!("closed loop for {seconds} s after {} s warm-up: {requesters} requesters file (POST /v1/requests), two reviewers approve one at a time (POST /v1/requests/{{id}}/reviews, which activates the grant); a cycle ends when the approval returns `active`", warmup.as_secs()),
        }),
    );
}

/// The calls of the fixed-rate mix.
const ENDPOINTS: [&str; 9] = [
    "POST /v1/requests",
    "POST /v1/requests/{id}/reviews",
    "GET /v1/grants/{id}/credential",
    "POST /v1/grants/{id}/revoke",
    "GET /v1/requests",
    "GET /v1/grants",
    "GET /v1/reviews",
    "GET /v1/me",
    "GET /v1/roles",
];

async fn rate(api: Api, args: &Args) {
    let rps = args.number("--rps", 200);
    let seconds = args.number("--seconds", 30);
    let users = args.number("--users", 100) as usize;
    let roles = args.number("--roles", 300) as usize;
    let period = Duration::from_secs_f64(1.0 / rps as f64);
    let slots = (rps * seconds) as usize;
    let errors = Arc::new(AtomicU64::new(0));
    let (record, mut recorded) = mpsc::unbounded_channel::<(usize, Duration)>();
    let origin = tokio::time::Instant::now() + Duration::from_millis(200);
    let due = move |slot: usize| origin + period * slot as u32;
    let mut tasks = Vec::new();
    // Nine slots a round: a request's life on slots 0, 2, 4, 6 and five reads between.
    for round in 0..slots / 9 {
        let base = round * 9;
        // One lane (requester, role, reviewer) per round.
        let n = round;
        let (lane_api, lane_record, lane_errors) = (api.clone(), record.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let (api, record, errors) = (lane_api, lane_record, lane_errors);
            let user = format!("r{:04}", n % users);
            let role = role_id((n / users) % roles);
            let reviewer = if n.is_multiple_of(2) { "bob" } else { "carol" };
            let step = |endpoint: usize, began: tokio::time::Instant| {
                let _ = record.send((endpoint, began.elapsed()));
            };
            tokio::time::sleep_until(due(base)).await;
            let began = due(base);
            let request = match api.create(&user, &role).await {
                Ok(r) => r,
                Err(err) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("load: {err:?}");
                    }
                    return;
                }
            };
            step(0, began);
            tokio::time::sleep_until(due(base + 2)).await;
            let began = due(base + 2).max(tokio::time::Instant::now());
            let approved = api.approve(reviewer, &request.id).await;
            let Ok(AccessRequest {
                grant_id: Some(grant),
                ..
            }) = approved
            else {
                if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("load: approval did not activate: {approved:?}");
                }
                return;
            };
            step(1, began);
            tokio::time::sleep_until(due(base + 4)).await;
            let began = due(base + 4).max(tokio::time::Instant::now());
            let path = format!("/v1/grants/{grant}/credential");
            match api.call(&user, reqwest::Method::GET, &path, None).await {
                Ok(_) => step(2, began),
                Err(err) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("load: {err:?}");
                    }
                }
            }
            tokio::time::sleep_until(due(base + 6)).await;
            let began = due(base + 6).max(tokio::time::Instant::now());
            let path = format!("/v1/grants/{grant}/revoke");
            let body = json!({ "reason": "load test" });
            match api
                .call(&user, reqwest::Method::POST, &path, Some(body))
                .await
            {
                Ok(_) => step(3, began),
                Err(err) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("load: {err:?}");
                    }
                }
            }
        }));
        for (offset, endpoint) in [(1, 4), (3, 5), (5, 6), (7, 7), (8, 8)] {
            let (api, record, errors) = (api.clone(), record.clone(), errors.clone());
            let slot = base + offset;
            tasks.push(tokio::spawn(async move {
                let user = format!("r{:04}", (slot / 9) % users);
                let (who, path) = match endpoint {
                    4 => (user.as_str(), "/v1/requests"),
                    5 => (user.as_str(), "/v1/grants"),
                    6 => ("bob", "/v1/reviews"),
                    7 => (user.as_str(), "/v1/me"),
                    _ => (user.as_str(), "/v1/roles"),
                };
                tokio::time::sleep_until(due(slot)).await;
                match api.call(who, reqwest::Method::GET, path, None).await {
                    Ok(_) => {
                        let _ = record.send((endpoint, due(slot).elapsed()));
                    }
                    Err(err) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("load: {err:?}");
                        }
                    }
                }
            }));
        }
    }
    drop(record);
    for task in tasks {
        let _ = task.await;
    }
    let mut by_endpoint: HashMap<usize, Samples> = HashMap::new();
    let mut all = Samples::default();
    while let Some((endpoint, took)) = recorded.recv().await {
        by_endpoint.entry(endpoint).or_default().0.push(took);
        all.0.push(took);
    }
    let mut endpoints = serde_json::Map::new();
    for (i, name) in ENDPOINTS.iter().enumerate() {
        let summary = by_endpoint.get_mut(&i).map_or(json!({}), Samples::summary);
        endpoints.insert((*name).to_string(), summary);
    }
    emit(
        "broker.rate",
        json!({
            "rps": rps,
            "errors": errors.load(Ordering::Relaxed),
            "all": all.summary(),
            "endpoints": endpoints,
        }),
        json!({
            "what": format!("open loop, {rps} requests/s for {seconds} s, latency from when each call was due; per 9 calls: create, approve, credential, revoke of one request and GET requests, grants, reviews (bob), me, roles"),
        }),
    );
}

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

async fn events(api: Api, args: &Args) {
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
        let filed = api.create("alice", &role_id(i)).await.expect("filing");
        // Let the `pending` event reach every stream before the approval.
        tokio::time::sleep(interval / 2).await;
        let began = Instant::now();
        let approved = api.approve("bob", &filed.id).await.expect("approving");
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

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    let mode = args.0.first().cloned().unwrap_or_default();
    let Some(url) = args.value("--url").map(str::to_string) else {
        // Under plain `cargo bench` there is no broker to load.
        eprintln!("load: cycles | rate | events --url URL (see the source); nothing to do");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let api = Api::new(&url);
        match mode.as_str() {
            "cycles" => cycles(api, &args).await,
            "rate" => rate(api, &args).await,
            "events" => events(api, &args).await,
            other => eprintln!("load: unknown mode `{other}`"),
        }
    });
}
