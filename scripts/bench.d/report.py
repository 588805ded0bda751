#!/usr/bin/env python3
"""Writes BENCHMARKS.md from the JSON lines scripts/bench.d/run.py recorded.

usage: report.py RESULTS_DIR OUTPUT.md full|quick

Each figure: the median over repeated runs (for a percentile, the median of
each run's percentile), the spread (lowest and highest run), its target, and
the command that reproduces it. A figure that misses its target says why and
what would close it (MISSES below, kept by whoever last profiled it).
"""

import json
import pathlib
import statistics
import sys

# id, group, label, how to read one run's value, unit, target, "<" or ">="
FIGURES = [
    ("render.roles", "render", "Render: Roles, 10,000 roles, filter typed (p99 of a frame)",
     lambda m: m["p99_us"] / 1000, "ms", 1.0, "<"),
    ("render.requests", "render", "Render: Requests, 10,000 history rows (p99 of a frame)",
     lambda m: m["p99_us"] / 1000, "ms", 1.0, "<"),
    ("render.grants", "render", "Render: Grants, 50 live countdowns (p99 of a frame)",
     lambda m: m["p99_us"] / 1000, "ms", 1.0, "<"),
    ("filter.keystroke", "filter", "Filter: keystroke to updated frame, 10,000 roles (p99)",
     lambda m: m["p99_us"] / 1000, "ms", 5.0, "<"),
    ("startup.roles", "startup", "Start-up: `hoist roles --json`, loopback broker (median)",
     None, "ms", 30.0, "<"),
    ("startup.version", "startup", "Start-up: `hoist --version` (median)",
     None, "ms", 5.0, "<"),
    ("startup.prompt", "startup", "Prompt: `hoist prompt` from the local cache (median)",
     None, "ms", 10.0, "<"),
    ("idle.cpu", "idle", "Idle: Grants with 5 countdowns, CPU (share of one core)",
     lambda m: m["cpu_percent"], "%", 0.5, "<"),
    ("idle.bytes", "idle", "Idle: bytes written to the terminal",
     lambda m: m["bytes_per_s"], "B/s", 2048, "<"),
    ("memory.tui", "memory", "Memory: peak RSS of the TUI, 10,000 roles + 10,000 requests in the broker (500 loaded)",
     lambda m: m["peak_rss_kb"] / 1024, "MiB", 30.0, "<"),
    ("memory.model", "memory", "Memory: peak RSS, 10,000 roles + 10,000 requests all in the TUI state",
     lambda m: m["peak_rss_kb"] / 1024, "MiB", 30.0, "<"),
    ("broker.cycles", "cycles", "Broker: create -> approve -> activate cycles, two reviewers",
     lambda m: m["cycles_per_sec"], "cycles/s", 1000, ">="),
    ("broker.rate", "rate", "Broker: p99 of every call at 200 requests/s",
     lambda m: m["all"]["p99_ms"], "ms", 10.0, "<"),
    ("events.latency", "events", "Live updates: approval to requester's event, 1,000 streams (p99)",
     lambda m: m["event"]["p99_ms"], "ms", 50.0, "<"),
    ("audit.verify", "audit", "Audit: `hoistd audit verify`, 1,000,000 events (median)",
     None, "s", 3.0, "<"),
]

# Why a figure misses its target and what would close it; shown only when it misses.
MISSES = {
    "startup.roles": (
        "Most of the time is the TLS set-up the client does before its first call: "
        "`reqwest::Client::builder().build()` with the `rustls` feature loads the platform "
        "verifier and every root certificate of the system store, even for a plain-http "
        "loopback broker. Building the client lazily, or without TLS roots when the broker URL "
        "is `http://` on loopback (src/client.rs, `BrokerClient::new`), would close it."
    ),
    "memory.model": (
        "This variant holds all 10,000 requests, which the real client never does (it loads "
        "the newest 500). The JSON bodies and the parsed lists are both alive at the peak; "
        "deserialising from the response stream, or paging the Requests screen, would lower it."
    ),
}


def fmt(value, unit):
    if unit in ("ms", "s", "%", "MiB"):
        digits = 3 if value < 1 else 2 if value < 10 else 1
        return f"{value:.{digits}f} {unit}"
    if unit in ("B/s", "cycles/s"):
        return f"{value:,.0f} {unit}"
    return f"{value} {unit}"


def meets(value, target, compare):
    return value < target if compare == "<" else value >= target


def load(results):
    records = {}
    for path in sorted(results.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            records.setdefault(record["id"], []).append(record)
    return records


def values_of(fid, records):
    """Per-run (or per-invocation) values of a figure, and the records behind them."""
    source = {"idle.cpu": "idle", "idle.bytes": "idle"}.get(fid, fid)
    found = records.get(source, [])
    if not found:
        return [], []
    figure = next(f for f in FIGURES if f[0] == fid)
    read, unit = figure[3], figure[4]
    if read is None:
        times = found[0]["metrics"]["times_s"]
        scale = 1000 if unit == "ms" else 1
        return [t * scale for t in times], found
    return [read(r["metrics"]) for r in sorted(found, key=lambda r: r["run"])], found


def main():
    results, output, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    records = load(results)
    machine = json.loads((results / "machine.json").read_text())
    lines = []
    out = lines.append

    out("# Benchmarks")
    out("")
    out("Generated by `scripts/bench` (do not edit by hand: run it again). Benchmarks are not "
        "tests: no timing is asserted in the test suite; this page says what met its target.")
    if mode == "quick":
        out("")
        out("> **Quick run** (`scripts/bench --quick`): fewer and shorter runs, 100,000 audit "
            "events instead of 1,000,000. For checking the harness, not for comparing figures.")
    out("")
    out("## Machine")
    out("")
    out(f"- CPU: {machine['cpu']}, {machine['cores']} cores; memory {machine['memory']}; "
        f"virtualisation: {machine['virtualisation']}")
    out(f"- {machine['os']}, {machine['kernel']}; {machine['rustc']}; {machine['hyperfine']}; "
        f"{machine['tmux']}")
    dirty = " with uncommitted changes" if machine["dirty"] else ""
    out(f"- Commit `{machine['commit']}`{dirty}; run {machine['date']}; load average before: "
        f"{machine['load_before']}")
    out("- Release builds (`[profile.release]`: thin LTO, 4 codegen units). Broker figures: "
        "`hoistd serve` and the load generator as two processes on the same 2 cores, over "
        "loopback HTTP/1.1 with keep-alive, SQLite in WAL mode on local disk.")
    out("")
    out("## Summary")
    out("")
    out("Median over runs; spread is the lowest and highest run (for start-up and audit, "
        "the lowest and highest of all invocations, with the interquartile range).")
    out("")
    out("| Figure | Target | Median | Spread | Runs | Met | Reproduce |")
    out("|---|---|---|---|---|---|---|")
    missed = []
    for fid, group, label, read, unit, target, compare in FIGURES:
        values, _ = values_of(fid, records)
        goal = f"{'<' if compare == '<' else '≥'} {fmt(target, unit)}"
        if not values:
            out(f"| {label} | {goal} | not measured | | | | `scripts/bench --only {group}` |")
            continue
        median = statistics.median(values)
        spread = f"{fmt(min(values), unit)} – {fmt(max(values), unit)}"
        if read is None and len(values) >= 4:
            q = statistics.quantiles(values, n=4)
            spread += f" (IQR {fmt(q[0], unit)} – {fmt(q[2], unit)})"
        ok = meets(median, target, compare)
        if not ok:
            missed.append((fid, label))
        mark = "yes" if ok else "**no**"
        if ok and not all(meets(v, target, compare) for v in values) and read is not None:
            mark = "yes (not every run)"
        out(f"| {label} | {goal} | {fmt(median, unit)} | {spread} | {len(values)} | {mark} | "
            f"`scripts/bench --only {group}` |")
    out("")

    if missed:
        out("## Figures that miss their target")
        out("")
        for fid, label in missed:
            note = MISSES.get(fid, "Not analysed yet: profile it (see *Profiling* below).")
            out(f"- **{label}**: {note}")
        out("")

    out("## What each figure measures")
    out("")
    seen = set()
    for fid, group, label, *_ in FIGURES:
        source = {"idle.cpu": "idle", "idle.bytes": "idle"}.get(fid, fid)
        if source in seen or source not in records:
            continue
        seen.add(source)
        record = records[source][0]
        out(f"### {label.split(':')[0]}: `{source}`")
        out("")
        out(f"{record['meta']['what']}.")
        out("")
        out(f"Command: `{record['cmd']}` (all of the group: `scripts/bench --only {group}`).")
        out("")
        if source == "broker.rate":
            out("| Call | p50 (median of runs) | p99 (median of runs) | p99 spread | calls a run |")
            out("|---|---|---|---|---|")
            names = list(record["metrics"]["endpoints"].keys())
            for name in names:
                runs = [r["metrics"]["endpoints"][name] for r in records[source]
                        if r["metrics"]["endpoints"][name].get("samples")]
                if not runs:
                    out(f"| `{name}` | no calls | | | |")
                    continue
                p50 = statistics.median(r["p50_ms"] for r in runs)
                p99s = [r["p99_ms"] for r in runs]
                out(f"| `{name}` | {fmt(p50, 'ms')} | {fmt(statistics.median(p99s), 'ms')} | "
                    f"{fmt(min(p99s), 'ms')} – {fmt(max(p99s), 'ms')} | "
                    f"{int(statistics.median(r['samples'] for r in runs))} |")
            errors = sum(r["metrics"]["errors"] for r in records[source])
            out("")
            out(f"Errors over all runs: {errors}.")
            out("")
        if source == "broker.cycles":
            rows = [("create (POST /v1/requests)", "create"),
                    ("approve (POST /v1/requests/{id}/reviews)", "approve"),
                    ("whole cycle, filed to active", "cycle")]
            out("| Call, under full load | p50 (median of runs) | p99 (median of runs) |")
            out("|---|---|---|")
            for name, key in rows:
                runs = [r["metrics"][key] for r in records[source] if r["metrics"][key].get("samples")]
                if runs:
                    out(f"| {name} | {fmt(statistics.median(r['p50_ms'] for r in runs), 'ms')} | "
                        f"{fmt(statistics.median(r['p99_ms'] for r in runs), 'ms')} |")
            errors = sum(r["metrics"]["errors"] for r in records[source])
            out("")
            out(f"Errors over all runs: {errors}.")
            out("")
        if source == "events.latency":
            runs = [r["metrics"] for r in records[source]]
            out(f"p50 {fmt(statistics.median(r['event']['p50_ms'] for r in runs), 'ms')}, "
                f"max {fmt(max(r['event']['max_ms'] for r in runs), 'ms')}; the approval call "
                f"itself p99 {fmt(statistics.median(r['approve_call']['p99_ms'] for r in runs), 'ms')}; "
                f"events lost: {sum(r['lost'] for r in runs)}; events delivered to each watcher "
                f"per run: {statistics.median(r['deliveries_per_watcher'] for r in runs):.0f}.")
            out("")
        if source.startswith("render") or source == "filter.keystroke":
            runs = [r["metrics"] for r in records[source]]
            out(f"p50 {fmt(statistics.median(r['p50_us'] for r in runs) / 1000, 'ms')}, "
                f"max {fmt(max(r['max_us'] for r in runs) / 1000, 'ms')}, "
                f"{runs[0]['samples']} samples a run.")
            out("")
        if source == "memory.model":
            runs = [r["metrics"] for r in records[source]]
            out(f"The process before loading: {statistics.median(r['baseline_kb'] for r in runs) / 1024:.1f} MiB; "
                f"JSON bodies: {runs[0]['json_bytes'] / 1048576:.1f} MiB.")
            out("")
        if source == "audit.verify":
            metrics = record["metrics"]
            out(f"Database: {metrics['db_bytes'] / 1048576:.0f} MiB for {metrics['events']:,} events.")
            out("")

    out("## Profiling")
    out("")
    out("`perf` works on this kind of machine for sampling (`perf record -F 999 -g`; hardware "
        "counters are not exposed to the VM). For example:")
    out("")
    out("```sh")
    out("cargo bench --no-run --bench tui_latency")
    out("perf record -F 999 -g target/release/deps/tui_latency-* filter --runs 1 --keys 3000")
    out("perf report --no-children")
    out("```")
    out("")
    output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
