//! Per-frame latency of the TUI, as percentiles, for BENCHMARKS.md
//! (`scripts/bench` runs it; criterion's `tui` bench reports means only).
//!
//! ```text
//! tui_latency render [--runs 5] [--frames 3000]   p50/p99/max of one frame per scenario
//! tui_latency filter [--runs 5] [--keys 3000]     keystroke -> update -> frame, 10,000 roles
//! tui_latency memory                              peak RSS holding 10,000 roles + 10,000 requests
//! ```
//!
//! Prints one JSON object per line and run: `{"id", "run", "metrics", "meta"}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use hoist::app::state::State;
use hoist::app::update;
use hoist::ui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::{CrosstermBackend, TestBackend};
use serde_json::json;

struct Args {
    mode: String,
    runs: usize,
    samples: usize,
    /// Only the render scenario whose id ends with this (`roles`, `requests`, `grants`).
    scenario: Option<String>,
    /// `memory`: the directory holding the response bodies to load.
    bodies: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        mode: String::new(),
        runs: 5,
        samples: 3000,
        scenario: None,
        bodies: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => parsed.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            "--frames" | "--keys" => {
                parsed.samples = args.next().and_then(|v| v.parse().ok()).unwrap_or(3000)
            }
            "--scenario" => parsed.scenario = args.next(),
            "--bodies" => parsed.bodies = args.next().map(Into::into),
            // `cargo bench` passes `--bench`; anything else unknown is ignored too.
            mode if !mode.starts_with('-') && parsed.mode.is_empty() => parsed.mode = mode.into(),
            _ => {}
        }
    }
    parsed
}

fn emit(id: &str, run: usize, metrics: serde_json::Value, meta: serde_json::Value) {
    println!(
        "{}",
        json!({ "id": id, "run": run, "metrics": metrics, "meta": meta })
    );
}

fn terminal() -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(support::WIDTH, support::HEIGHT)).unwrap()
}

/// A real crossterm terminal writing its escape sequences nowhere.
fn crossterm() -> Terminal<CrosstermBackend<std::io::Sink>> {
    let options = ratatui::TerminalOptions {
        viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(
            0,
            0,
            support::WIDTH,
            support::HEIGHT,
        )),
    };
    Terminal::with_options(CrosstermBackend::new(std::io::sink()), options).unwrap()
}

fn percentiles(samples: &mut [Duration]) -> serde_json::Value {
    let s = support::summarise(samples);
    json!({ "p50_us": s.p50_us, "p99_us": s.p99_us, "max_us": s.max_us, "mean_us": s.mean_us, "samples": s.count })
}

/// What one frame cost: wall-clock time, this thread's CPU time, and whether
/// the scheduler took the core away while it ran (an involuntary context
/// switch: then the wall-clock time includes another process's time slice).
struct Timed {
    wall: Duration,
    cpu: Duration,
    preempted: bool,
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn involuntary_switches() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
        .map(|usage| usage.involuntary_context_switches())
        .unwrap_or_default()
}

fn timed(work: impl FnOnce()) -> Timed {
    let switches = involuntary_switches();
    let cpu = thread_cpu();
    let began = Instant::now();
    work();
    let wall = began.elapsed();
    Timed {
        wall,
        cpu: thread_cpu().saturating_sub(cpu),
        preempted: involuntary_switches() != switches,
    }
}

/// Percentiles of wall-clock time, plus those of CPU time, and of the
/// wall-clock time of the frames the scheduler left alone.
fn frame_percentiles(frames: &[Timed]) -> serde_json::Value {
    let mut wall: Vec<Duration> = frames.iter().map(|t| t.wall).collect();
    let mut cpu: Vec<Duration> = frames.iter().map(|t| t.cpu).collect();
    let mut alone: Vec<Duration> = frames
        .iter()
        .filter(|t| !t.preempted)
        .map(|t| t.wall)
        .collect();
    let mut metrics = percentiles(&mut wall);
    metrics["cpu"] = percentiles(&mut cpu);
    metrics["preempted"] = json!(frames.len() - alone.len());
    if !alone.is_empty() {
        metrics["not_preempted"] = percentiles(&mut alone);
    }
    metrics
}

/// Times `frames` frames of one screen, each after a one-second tick, two
/// ways: drawn into ratatui's buffer (what the target is about), and the
/// whole `Terminal::draw` through crossterm (diff against the last frame and
/// the escape sequences for the changed cells, written to a sink).
fn render_run(state: &State, frames: usize) -> serde_json::Value {
    let theme = Theme::default();
    let mut state = state.clone();
    let mut buffer = terminal();
    let mut whole = crossterm();
    let start = state.now;
    let mut into_buffer = Vec::with_capacity(frames);
    let mut through_crossterm = Vec::with_capacity(frames);
    for i in 0..frames + 200 {
        // Ten minutes of ticks, over and over: no grant runs out mid-run.
        state.now = start + chrono::TimeDelta::seconds((i % 600) as i64);
        let drawn = timed(|| {
            let mut frame = buffer.get_frame();
            frame.buffer_mut().reset();
            hoist::ui::draw(&mut frame, &state, &theme);
        });
        let flushed = timed(|| {
            whole
                .draw(|frame| hoist::ui::draw(frame, &state, &theme))
                .unwrap();
        });
        // The first 200 warm the caches and the allocator.
        if i >= 200 {
            into_buffer.push(drawn);
            through_crossterm.push(flushed);
        }
    }
    let mut metrics = frame_percentiles(&into_buffer);
    metrics["terminal"] = frame_percentiles(&through_crossterm);
    metrics
}

/// A frame to measure: its key, what it shows, and how to build its state.
type Scenario = (&'static str, &'static str, fn() -> State);

fn render(args: &Args) {
    let scenarios: [Scenario; 3] = [
        (
            "render.roles",
            "Roles: 10,000 eligible roles, filter `prod-db` typed (500 requests, 5 grants loaded)",
            support::roles_screen,
        ),
        (
            "render.requests",
            "Requests: 10,000 history rows, cursor mid-list",
            support::requests_screen,
        ),
        (
            "render.grants",
            "Grants: 50 live countdowns",
            support::grants_screen,
        ),
    ];
    for (id, what, build) in scenarios {
        if args
            .scenario
            .as_ref()
            .is_some_and(|s| !id.ends_with(s.as_str()))
        {
            continue;
        }
        let state = build();
        for run in 0..args.runs {
            let metrics = render_run(&state, args.samples);
            emit(
                id,
                run,
                metrics,
                json!({ "what": format!("{what}; each frame drawn by `hoist::ui::draw` into ratatui's 200x60 buffer after a one-second tick"), "size": format!("{}x{}", support::WIDTH, support::HEIGHT) }),
            );
        }
    }
}

fn filter(args: &Args) {
    let theme = Theme::default();
    let keys = support::keystrokes();
    for run in 0..args.runs {
        let mut state = support::filter_screen();
        let mut terminal = crossterm();
        let mut samples = Vec::with_capacity(args.samples);
        for i in 0..args.samples + keys.len() * 4 {
            let key = keys[i % keys.len()].clone();
            let took = timed(|| {
                update(&mut state, key);
                terminal
                    .draw(|frame| hoist::ui::draw(frame, &state, &theme))
                    .unwrap();
            });
            if i >= keys.len() * 4 {
                samples.push(took);
            }
        }
        // Which keys are the slow ones: the same key of every round together.
        let mut by_key = frame_percentiles(&samples);
        by_key["keys"] = keys
            .iter()
            .enumerate()
            .map(|(at, key)| {
                let mut wall: Vec<Duration> = samples
                    .iter()
                    .skip(at)
                    .step_by(keys.len())
                    .map(|t| t.wall)
                    .collect();
                let filter: String = support::QUERY.chars().take(at + 1).collect();
                let shown = match key {
                    hoist::app::Action::Input(c) => format!("{c} (filter `{filter}`)"),
                    _ => {
                        let left = support::QUERY
                            .len()
                            .saturating_sub(at + 1 - support::QUERY.len());
                        let filter: String = support::QUERY.chars().take(left).collect();
                        format!("Backspace (filter `{filter}`)")
                    }
                };
                let mut stats = percentiles(&mut wall);
                stats["key"] = json!(shown);
                stats
            })
            .collect();
        emit(
            "filter.keystroke",
            run,
            by_key,
            json!({ "what": format!("10,000 roles on the Roles screen, `{}` typed into the filter and erased, key by key, over and over; each key timed from `update` to the finished 200x60 frame (`Terminal::draw` through crossterm: drawing, the diff, the escape sequences; written to a sink)", support::QUERY) }),
        );
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of this process, in kB.
fn memory_status() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Writes the response bodies for 10,000 roles and 10,000 requests, then
/// measures a fresh process of this program loading them (`memory --bodies`),
/// so that building the fixture does not count towards the peak.
fn memory() {
    let dir = std::env::temp_dir().join(format!("hoist-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let roles = support::roles(10_000);
    let requests = support::requests(&roles, 10_000, support::epoch());
    std::fs::write(dir.join("roles.json"), serde_json::to_vec(&roles).unwrap()).unwrap();
    std::fs::write(
        dir.join("requests.json"),
        serde_json::to_vec(&requests).unwrap(),
    )
    .unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("memory")
        .arg("--bodies")
        .arg(&dir)
        .status();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(status.unwrap().success(), "measuring memory failed");
}

/// Loads 10,000 roles and 10,000 requests from JSON bodies, as the client
/// receives them, and draws the Roles (filtered) and Requests screens through
/// a real crossterm backend. The peak is this process's.
fn memory_load(dir: &std::path::Path) {
    let (baseline, _) = memory_status();
    let roles_body = std::fs::read(dir.join("roles.json")).unwrap();
    let requests_body = std::fs::read(dir.join("requests.json")).unwrap();
    let body_bytes = roles_body.len() + requests_body.len();
    let roles: Vec<hoist_api::Role> = serde_json::from_slice(&roles_body).unwrap();
    drop(roles_body);
    let requests: Vec<hoist_api::AccessRequest> = serde_json::from_slice(&requests_body).unwrap();
    drop(requests_body);
    let grants = support::grants(&roles, 5, support::epoch());
    let mut state = support::loaded(roles, requests, grants);
    let theme = Theme::default();
    let mut terminal = crossterm();
    let mut draw = |state: &State| {
        terminal
            .draw(|frame| hoist::ui::draw(frame, state, &theme))
            .unwrap();
    };
    draw(&state);
    update(&mut state, hoist::app::Action::StartFilter);
    for c in support::QUERY.chars() {
        update(&mut state, hoist::app::Action::Input(c));
        draw(&state);
    }
    update(
        &mut state,
        hoist::app::Action::GoTo(hoist::app::Screen::Requests),
    );
    draw(&state);
    let (peak, now) = memory_status();
    emit(
        "memory.model",
        0,
        json!({ "peak_rss_kb": peak, "rss_kb": now, "baseline_kb": baseline, "json_bytes": body_bytes }),
        json!({ "what": "10,000 roles + 10,000 requests deserialised from JSON response bodies into the TUI state; Roles (filtered) and Requests drawn at 200x60; a process of its own that only loads and draws" }),
    );
}

fn main() {
    let args = args();
    match args.mode.as_str() {
        "render" => render(&args),
        "filter" => filter(&args),
        "memory" => match &args.bodies {
            Some(dir) => memory_load(dir),
            None => memory(),
        },
        // Under plain `cargo bench`: a short pass over everything.
        _ => {
            let quick = Args {
                mode: String::new(),
                runs: 1,
                samples: 300,
                scenario: None,
                bodies: None,
            };
            render(&quick);
            filter(&quick);
        }
    }
}
