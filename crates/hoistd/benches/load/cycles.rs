//! `load cycles`: sustained create -> approve cycles, closed loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Mutex, mpsc};

use crate::api::{Api, Samples, emit};
use crate::support::{Args, role_id};

pub async fn cycles(api: Api, args: &Args) {
    let requesters = args.number("--requesters", 4) as usize;
    // bob and carol, then the fixture's watchers (w0000...), who review too.
    let reviewers = args.number("--reviewers", 2) as usize;
    assert!(reviewers >= 1, "--reviewers must be at least 1");
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
    let names = ["bob".to_string(), "carol".to_string()]
        .into_iter()
        .chain((0..).map(|i| format!("w{i:04}")))
        .take(reviewers);
    for reviewer in names {
        let (api, reviews, errors) = (api.clone(), reviews.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let (mut approve, mut cycle) = (Samples::default(), Samples::default());
            let mut completed = 0_u64;
            loop {
                let next = reviews.lock().await.recv().await;
                let Some((id, filed)) = next else { break };
                let began = Instant::now();
                match api.approve(&reviewer, &id).await {
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
            "what": format!("closed loop for {seconds} s after {} s warm-up: {requesters} requesters file (POST /v1/requests), {reviewers} reviewers approve one at a time (POST /v1/requests/{{id}}/reviews, which activates the grant); a cycle ends when the approval returns `active`", warmup.as_secs()),
        }),
    );
}
