//! `load rate`: a fixed request rate, each call timed from when it was due.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hoist_api::AccessRequest;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::{Api, Samples, emit};
use crate::support::{Args, role_id};

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

pub async fn rate(api: Api, args: &Args) {
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
