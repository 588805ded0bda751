//! Criterion benchmarks of the TUI's heaviest work, for comparing a change
//! against a baseline (`cargo bench --bench tui -- --save-baseline before`).
//! The percentiles in BENCHMARKS.md come from `tui_latency`, which times
//! every frame on its own.
//!
//! - `render/*`: one frame at 200x60 drawn into ratatui's buffer, the clock
//!   one second on each time, as the tick redraws it.
//! - `filter/keystroke_10k_roles`: one key typed into the Roles filter over
//!   10,000 roles, then the whole frame through a crossterm backend (diff
//!   and escape sequences, written to a sink).
//! - `filter/rank_only_10k_roles`: ranking the roles for a filter from
//!   scratch, alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hoist::app::update;
use hoist::ui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::{CrosstermBackend, TestBackend};

fn terminal() -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(support::WIDTH, support::HEIGHT)).unwrap()
}

fn crossterm() -> Terminal<CrosstermBackend<std::io::Sink>> {
    let area = ratatui::layout::Rect::new(0, 0, support::WIDTH, support::HEIGHT);
    let options = ratatui::TerminalOptions {
        viewport: ratatui::Viewport::Fixed(area),
    };
    Terminal::with_options(CrosstermBackend::new(std::io::sink()), options).unwrap()
}

fn render(c: &mut Criterion) {
    let theme = Theme::default();
    let mut group = c.benchmark_group("render");
    for (name, mut state) in [
        ("roles_10k_filtered", support::roles_screen()),
        ("requests_10k", support::requests_screen()),
        ("grants_50", support::grants_screen()),
    ] {
        let mut terminal = terminal();
        let start = state.now;
        let mut n = 0_i64;
        group.bench_function(name, |b| {
            b.iter(|| {
                // Ten minutes of ticks, over and over: no grant runs out.
                n = (n + 1) % 600;
                state.now = start + chrono::TimeDelta::seconds(n);
                let mut frame = terminal.get_frame();
                frame.buffer_mut().reset();
                hoist::ui::draw(&mut frame, black_box(&state), &theme);
            })
        });
    }
    group.finish();
}

fn filter(c: &mut Criterion) {
    let theme = Theme::default();
    let mut state = support::filter_screen();
    let mut terminal = crossterm();
    let keys = support::keystrokes();
    let mut next = 0;
    c.bench_function("filter/keystroke_10k_roles", |b| {
        b.iter(|| {
            let key = keys[next % keys.len()].clone();
            next += 1;
            update(&mut state, key);
            terminal
                .draw(|frame| hoist::ui::draw(frame, black_box(&state), &theme))
                .unwrap();
        })
    });
    let roles = support::roles(10_000);
    let favourites = Default::default();
    c.bench_function("filter/rank_only_10k_roles", |b| {
        b.iter(|| {
            let mut from_scratch = hoist::app::roles::Search::default();
            hoist::app::roles::visible(black_box(&roles), &favourites, "prod-d", &mut from_scratch)
        })
    });
}

criterion_group!(benches, render, filter);
criterion_main!(benches);
