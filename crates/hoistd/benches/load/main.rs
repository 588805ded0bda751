//! Load generator for a running `hoistd serve` on loopback (`scripts/bench`
//! starts one with a fresh database and a policy from `fixture policy`).
//! Every user's token is `tok-<user>`.
//!
//! ```text
//! load cycles --url URL [--requesters 4] [--reviewers 2] [--users 100] [--roles 300]
//!            [--seconds 10] [--warmup 2]
//!     Sustained create -> approve (activates the grant) cycles, closed loop: `--requesters`
//!     tasks file requests as distinct users, `--reviewers` reviewers (bob, carol, then the
//!     fixture's watchers w0000...) approve them, each one request at a time. Reports cycles per second and each call's latency.
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
//! `--url A,B` spreads the calls over several instances in turn (the events
//! mode opens its streams on the first and approves on the second).
//!
//! Prints one JSON object per line: `{"id", "run", "metrics", "meta"}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cycles;
mod events;
mod rate;
#[path = "../support/mod.rs"]
mod support;

use api::Api;
use support::Args;

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
            "cycles" => cycles::cycles(api, &args).await,
            "rate" => rate::rate(api, &args).await,
            "events" => events::events(api, &args).await,
            other => eprintln!("load: unknown mode `{other}`"),
        }
    });
}
