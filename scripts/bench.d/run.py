#!/usr/bin/env python3
"""Runs hoist's benchmark groups and writes BENCHMARKS.md. Called by scripts/bench,
which installs the tools, builds the release binaries and bench targets, and
runs this inside a fresh session keyring (`keyctl session`).

Each group writes JSON lines {"id", "run", "metrics", "meta", "cmd"} to
scripts/bench.d/results/<group>.jsonl, and the machine and commit it ran on to
<group>.machine.json; report.py turns every group's results into the document.
The results are kept in the repository, so `--only GROUP` on a fresh clone
replaces that group's figures and keeps the others' as last measured. A quick
run writes under target/bench/ instead and never touches them.
"""

import argparse
import json
import os
import pathlib
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "bench"
KEPT = pathlib.Path(__file__).resolve().parent / "results"
RESULTS = KEPT

GROUPS = ["render", "filter", "startup", "idle", "memory", "cycles", "rate", "events", "audit",
          "targets", "workloads", "slowconns", "issuance", "postgres"]

# Per group: (full, quick) settings.
SETTINGS = {
    "render": ({"runs": 5, "frames": 3000}, {"runs": 2, "frames": 500}),
    "filter": ({"runs": 5, "keys": 3000}, {"runs": 2, "keys": 500}),
    "startup": ({"runs": 50, "warmup": 5}, {"runs": 15, "warmup": 3}),
    "idle": ({"runs": 3, "seconds": 60}, {"runs": 1, "seconds": 10}),
    "memory": ({"runs": 3}, {"runs": 1}),
    "cycles": ({"runs": 5, "seconds": 10}, {"runs": 1, "seconds": 3}),
    "rate": ({"runs": 3, "seconds": 30}, {"runs": 1, "seconds": 5}),
    "events": ({"runs": 3, "approvals": 200}, {"runs": 1, "approvals": 40}),
    "audit": ({"runs": 5, "events": 1_000_000}, {"runs": 2, "events": 100_000}),
    "targets": ({"runs": 3, "grants": 200, "passes": 5}, {"runs": 1, "grants": 30, "passes": 2}),
    "workloads": ({"runs": 3, "seconds": 10, "tasks": 1000}, {"runs": 1, "seconds": 3, "tasks": 200}),
    "slowconns": ({"runs": 3, "seconds": 30, "slow": 1000}, {"runs": 1, "seconds": 5, "slow": 200}),
    "issuance": ({"runs": 3, "grants": 200}, {"runs": 1, "grants": 30}),
    "postgres": ({"runs": 3, "seconds": 10, "approvals": 200},
                 {"runs": 1, "seconds": 3, "approvals": 40}),
}

BINS = {}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def role_id(i):
    """Role i as `fixture policy` names it."""
    envs = ["prod", "staging", "dev", "qa", "sandbox"]
    services = ["db", "k8s", "deploy", "logs", "kafka", "redis", "s3", "vault", "ssh", "billing"]
    access = ["admin", "read", "write", "operator"]
    return f"{envs[i % 5]}-{services[(i // 5) % 10]}-{access[(i // 50) % 4]}-{i // 200:04d}"


def shown(argv):
    """A command as a person would type it: bench targets by their cargo name."""
    words = []
    for word in argv:
        word = str(word)
        for name, path in BINS.items():
            if word == path:
                word = {
                    "hoist": "target/release/hoist",
                    "hoistd": "target/release/hoistd",
                }.get(name, f"target/release/deps/{name}-*")
        words.append(word)
    return shlex.join(words)


def run(argv, **kwargs):
    return subprocess.run([str(a) for a in argv], check=True, **kwargs)


class Recorder:
    """A group's results, written beside the last ones and put in their place
    only when the group finishes, so a failed run keeps what was measured before."""

    def __init__(self, group):
        self.final = RESULTS / f"{group}.jsonl"
        self.path = RESULTS / f".{group}.jsonl.partial"
        self.path.unlink(missing_ok=True)

    def keep(self, machine_info):
        self.path.replace(self.final)
        (RESULTS / f"{self.final.stem}.machine.json").write_text(
            json.dumps(machine_info, indent=2) + "\n")

    def add(self, record, cmd):
        record = dict(record)
        record["cmd"] = cmd
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def from_output(self, argv, note_cmd=None, run_index=None, rename=None):
        """Runs a bench binary and records each JSON line it prints (under
        `rename(id)`, given one)."""
        out = run(argv, stdout=subprocess.PIPE, text=True).stdout
        count = 0
        for line in out.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if run_index is not None:
                record["run"] = run_index
            if rename is not None:
                record["id"] = rename(record["id"])
            self.add(record, note_cmd or shown(argv))
            count += 1
        if count == 0:
            raise SystemExit(f"bench: {shown(argv)} printed no result")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """`hoistd serve` on a free loopback port with a fresh database."""

    def __init__(self, policy, db, workdir):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(workdir / "hoistd.log", "ab")
        self.proc = subprocess.Popen(
            [BINS["hoistd"], "serve", "--listen", f"127.0.0.1:{port}", "--db", str(db),
             "--policy", str(policy)],
            stdout=self.log, stderr=self.log)
        for _ in range(200):
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"bench: hoistd did not start; see {workdir / 'hoistd.log'}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def client_env(config_dir):
    env = dict(os.environ)
    env.update({"HOIST_CONFIG_DIR": str(config_dir), "HOIST_KEYRING": "keyutils"})
    return env


def sign_in(broker, user, token, config_dir):
    run([BINS["hoist"], "--broker", broker.url, "login", "--with-token"],
        input=token.encode(), env=client_env(config_dir), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)


class Pane:
    """The real `hoist` TUI in a private tmux server, at 200x60."""

    def __init__(self, workdir, argv, env):
        self.socket = workdir / "tmux.sock"
        self.pidfile = workdir / "hoist.pid"
        wrapper = workdir / "tui.sh"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()
                           if k.startswith("HOIST_"))
        wrapper.write_text(
            "#!/bin/sh\n"
            f"echo $$ > {shlex.quote(str(self.pidfile))}\n"
            f"exec env {exports} {shlex.join(str(a) for a in argv)} 2>>{shlex.quote(str(workdir / 'hoist.err'))}\n")
        wrapper.chmod(0o755)
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "200", "-y", "60",
                  f"{wrapper}; sleep 600")
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")
        for _ in range(100):
            if self.pidfile.exists() and self.pidfile.read_text().strip():
                break
            time.sleep(0.05)
        self.pid = int(self.pidfile.read_text().strip())

    def tmux(self, *args):
        return subprocess.run(["tmux", "-S", str(self.socket), *args], check=True,
                              stdout=subprocess.PIPE, text=True).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, text, limit=30.0):
        deadline = time.time() + limit
        while time.time() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise SystemExit(f"bench: `{text}` never appeared on the TUI's screen:\n{self.screen()}")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def text(self, text):
        self.tmux("send-keys", "-t", "t", "-l", text)

    def close(self):
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_ticks(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; `fields` starts at field 3.
    return int(fields[11]) + int(fields[12])


def status_kb(pid, name):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def fixture(*args):
    run([BINS["fixture"], *args], stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# Groups


def group_render(settings, rec):
    rec.from_output([BINS["tui_latency"], "render", "--runs", settings["runs"],
                     "--frames", settings["frames"]])


def group_filter(settings, rec):
    rec.from_output([BINS["tui_latency"], "filter", "--runs", settings["runs"],
                     "--keys", settings["keys"]])


def hyperfine(argv, settings, workdir, env):
    export = workdir / f"hyperfine-{time.time_ns()}.json"
    run(["hyperfine", "--shell=none", "--style", "none", "--warmup", settings["warmup"],
         "--runs", settings["runs"], "--export-json", export, shlex.join(str(a) for a in argv)],
        env=env, stdout=subprocess.DEVNULL)
    return json.loads(export.read_text())["results"][0]["times"]


def group_startup(settings, rec, workdir):
    broker = Broker(ROOT / "assets" / "demo-policy.toml", workdir / "hoistd.db", workdir)
    try:
        config = workdir / "config"
        sign_in(broker, "alice", "demo-alice", config)
        env = client_env(config)
        env["HOIST_CACHE_DIR"] = str(workdir / "cache")
        # One active grant in the prompt cache, as after any `hoist request`.
        run([BINS["hoist"], "--broker", broker.url, "request", "prod-logs-read", "--reason",
             "benchmark", "--json"], env=env, stdout=subprocess.DEVNULL)
        prompt = [BINS["hoist"], "prompt"]
        version = [BINS["hoist"], "--version"]
        roles = [BINS["hoist"], "--broker", broker.url, "roles", "--json"]
        check = run(roles, env=env, stdout=subprocess.PIPE, text=True).stdout
        count = len(json.loads(check))
        for fid, argv, what in [
            ("startup.version", version, "`hoist --version`: the whole process"),
            ("startup.prompt", prompt,
             "`hoist prompt` with one active grant in the local cache: the whole process, "
             "no network"),
            ("startup.roles", roles,
             f"`hoist roles --json` against hoistd on loopback (demo policy, {count} roles), "
             "signed in with a static token kept in the kernel keyring: the whole process"),
        ]:
            times = hyperfine(argv, settings, workdir, env)
            rec.add({"id": fid, "run": 0, "metrics": {"times_s": times},
                     "meta": {"what": what}},
                    "hyperfine --shell=none --warmup {} --runs {} {}".format(
                        settings["warmup"], settings["runs"], shlex.quote(shown(argv))))
    finally:
        broker.stop()


def group_idle(settings, rec, workdir):
    policy = workdir / "policy.toml"
    fixture("policy", "--out", policy, "--roles", 50, "--auto", 10)
    for index in range(settings["runs"]):
        rundir = workdir / f"run{index}"
        rundir.mkdir()
        broker = Broker(policy, rundir / "hoistd.db", rundir)
        pane = None
        try:
            config = rundir / "config"
            sign_in(broker, "alice", "tok-alice", config)
            env = client_env(config)
            for i in range(5):
                run([BINS["hoist"], "--broker", broker.url, "request", role_id(i), "--reason",
                     f"Idle benchmark: live grant number {i}"], env=env,
                    stdout=subprocess.DEVNULL)
            pane = Pane(rundir, [BINS["hoist"], "--broker", broker.url], env)
            pane.wait_for("Roles (")
            pane.keys("3")
            pane.wait_for("Active grants (5)")
            time.sleep(2)
            captured = rundir / "pane.bytes"
            pane.tmux("pipe-pane", "-t", "t", "-O", f"cat > {shlex.quote(str(captured))}")
            time.sleep(0.5)
            start_ticks, start = cpu_ticks(pane.pid), time.monotonic()
            start_bytes = captured.stat().st_size if captured.exists() else 0
            time.sleep(settings["seconds"])
            end_ticks, end = cpu_ticks(pane.pid), time.monotonic()
            end_bytes = captured.stat().st_size
            pane.tmux("pipe-pane", "-t", "t")
            elapsed = end - start
            cpu = (end_ticks - start_ticks) / os.sysconf("SC_CLK_TCK")
            rec.add({"id": "idle", "run": index,
                     "metrics": {"cpu_percent": 100 * cpu / elapsed, "cpu_s": cpu,
                                 "bytes_per_s": (end_bytes - start_bytes) / elapsed,
                                 "seconds": elapsed},
                     "meta": {"what": f"the real `hoist` TUI in tmux at 200x60 on Grants with 5 live "
                                      f"countdowns, connected to hoistd on loopback, for "
                                      f"{settings['seconds']} s: CPU time from /proc/PID/stat, bytes "
                                      f"written to the terminal from `tmux pipe-pane -O`"}},
                    f"scripts/bench --only idle  # {settings['seconds']} s in tmux")
        finally:
            if pane:
                pane.close()
            broker.stop()


def group_memory(settings, rec, workdir):
    policy = workdir / "policy.toml"
    fixture("policy", "--out", policy, "--roles", 10_000, "--auto", 10)
    for index in range(settings["runs"]):
        rundir = workdir / f"run{index}"
        rundir.mkdir()
        db = rundir / "hoistd.db"
        fixture("requests", "--db", db, "--user", "alice", "--count", 10_000, "--roles", 10_000)
        broker = Broker(policy, db, rundir)
        pane = None
        try:
            config = rundir / "config"
            sign_in(broker, "alice", "tok-alice", config)
            env = client_env(config)
            pane = Pane(rundir, [BINS["hoist"], "--broker", broker.url], env)
            pane.wait_for("Roles (10000/10000)", limit=60)
            pane.text("/prod-db")
            pane.wait_for("/prod-db")
            pane.keys("Escape")
            pane.keys("2")
            pane.wait_for("My requests (500)")
            time.sleep(1)
            rec.add({"id": "memory.tui", "run": index,
                     "metrics": {"peak_rss_kb": status_kb(pane.pid, "VmHWM"),
                                 "rss_kb": status_kb(pane.pid, "VmRSS")},
                     "meta": {"what": "the real `hoist` TUI in tmux at 200x60 against hoistd with "
                                      "10,000 eligible roles and 10,000 past requests of the user: "
                                      "all 10,000 roles loaded, filtered, and the 500 newest "
                                      "requests (the client's limit) shown; VmHWM from "
                                      "/proc/PID/status"}},
                    "scripts/bench --only memory  # tmux")
        finally:
            if pane:
                pane.close()
            broker.stop()
    for index in range(settings["runs"]):
        rec.from_output([BINS["tui_latency"], "memory"], run_index=index)


def load_runs(settings, rec, workdir, policy_args, load_args):
    """Each run: a fresh broker over a fresh database on the same policy, and
    the load generator against it with `load_args(url)`."""
    policy = workdir / "policy.toml"
    fixture("policy", "--out", policy, *policy_args)
    for index in range(settings["runs"]):
        rundir = workdir / f"run{index}"
        rundir.mkdir()
        broker = Broker(policy, rundir / "hoistd.db", rundir)
        try:
            rec.from_output([BINS["load"], *load_args(broker.url)], run_index=index)
        finally:
            broker.stop()


def group_cycles(settings, rec, workdir):
    load_runs(settings, rec, workdir, ["--roles", 300, "--requesters", 200],
              lambda url: ["cycles", "--url", url, "--requesters", 4, "--users", 200,
                           "--roles", 300, "--seconds", settings["seconds"], "--warmup", 2])


def group_rate(settings, rec, workdir):
    load_runs(settings, rec, workdir, ["--roles", 300, "--requesters", 200],
              lambda url: ["rate", "--url", url, "--rps", 200, "--seconds", settings["seconds"],
                           "--users", 200, "--roles", 300])


def group_events(settings, rec, workdir):
    load_runs(settings, rec, workdir,
              ["--roles", settings["approvals"] + 10, "--watchers", 999],
              lambda url: ["events", "--url", url, "--clients", 1000,
                           "--approvals", settings["approvals"], "--interval-ms", 50])


def group_audit(settings, rec, workdir):
    db = workdir / "audit.db"
    events = settings["events"]
    log(f"writing {events:,} audit events")
    fixture("audit", "--db", db, "--events", events)
    argv = [BINS["hoistd"], "audit", "verify", "--db", db]
    check = run(argv, stdout=subprocess.PIPE, text=True).stdout
    if f"intact: {events} entries" not in check:
        raise SystemExit(f"bench: audit verify said: {check}")
    times = hyperfine(argv, {"runs": settings["runs"], "warmup": 1}, workdir, dict(os.environ))
    rec.add({"id": "audit.verify", "run": 0,
             "metrics": {"times_s": times, "events": events,
                         "db_bytes": db.stat().st_size},
             "meta": {"what": f"`hoistd audit verify` over {events:,} hash-chained events "
                              "(written by `fixture audit`), the whole process, warm page cache"}},
            "hyperfine --shell=none --warmup 1 --runs {} {}".format(
                settings["runs"], shlex.quote(shown(argv))))


def group_targets(settings, rec, workdir):
    """A real PostgreSQL target: each run starts its own cluster and broker."""
    for index in range(settings["runs"]):
        rec.from_output([BINS["targets"], "login", "--grants", settings["grants"]],
                        run_index=index)
        rec.from_output([BINS["targets"], "revoke", "--grants", settings["grants"]],
                        run_index=index)
        # The figure is defined at 200 live grants, quick or not.
        rec.from_output([BINS["targets"], "reconcile", "--grants", 200,
                         "--passes", settings["passes"]], run_index=index)


class PgServer:
    """A throwaway PostgreSQL cluster on a free loopback port, run as the
    `postgres` user when we are root (the server refuses root), with the
    server's default durability (fsync and synchronous commit on)."""

    def __init__(self, workdir):
        bins = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name))
        if not bins:
            raise SystemExit("bench: the postgres group needs PostgreSQL's server binaries "
                             "(apt-get install postgresql)")
        self.bin = bins[-1].parent
        # The server's user must reach its directory through the run's own
        # (a private temporary directory).
        workdir.chmod(workdir.stat().st_mode | 0o011)
        self.dir = workdir / "pg"
        self.dir.mkdir()
        self.dir.chmod(0o755)
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if os.getuid() == 0:
            run(["chown", "postgres:", self.dir])
        self.port = free_port()
        run([*self.prefix, self.bin / "initdb", "-D", self.dir / "data", "-A", "trust",
             "-U", "postgres", "-E", "UTF8", "--no-locale"], stdout=subprocess.DEVNULL)
        run([*self.prefix, self.bin / "pg_ctl", "-D", self.dir / "data", "-w", "-l",
             self.dir / "log", "-o", f"-p {self.port} -k {self.dir} "
             "-c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
            stdout=subprocess.DEVNULL)
        self.count = 0

    def database(self):
        """A fresh, empty database's URL."""
        self.count += 1
        name = f"hoistd{self.count}"
        run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", "-c",
             f"CREATE DATABASE {name}"])
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        run([*self.prefix, self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w",
             "stop"], stdout=subprocess.DEVNULL)


def group_postgres(settings, rec, workdir):
    """The cycles and rate loads of the SQLite groups against PostgreSQL,
    with one instance and with two sharing the database (calls spread over
    both in turn), the cycles on SQLite in between (their target's
    reference), and the time from an approval on one instance to the
    requester's event on another."""
    policy = workdir / "policy.toml"
    fixture("policy", "--out", policy, "--roles", 300, "--requesters", 200)
    server = PgServer(workdir)
    cycles = lambda urls: ["cycles", "--url", urls, "--requesters", 4, "--users", 200,
                           "--roles", 300, "--seconds", settings["seconds"], "--warmup", 2]
    rate = lambda urls: ["rate", "--url", urls, "--rps", 200, "--seconds", settings["seconds"],
                         "--users", 200, "--roles", 300]

    def on_postgres(kind, instances, index, load_args):
        db = server.database()
        brokers = []
        try:
            for n in range(instances):
                rundir = workdir / f"{kind}-{instances}-{index}-{n}"
                rundir.mkdir()
                brokers.append(Broker(policy, db, rundir))
            urls = ",".join(b.url for b in brokers)
            rec.from_output([BINS["load"], *load_args(urls)], run_index=index,
                            rename=lambda fid: f"postgres.{fid}.{instances}")
        finally:
            for broker in brokers:
                broker.stop()

    try:
        # The PostgreSQL cycles' target is half the SQLite figure on this
        # machine: SQLite's runs alternate with theirs, so that the drift of
        # a busy machine over minutes falls on both alike.
        for index in range(settings["runs"]):
            rundir = workdir / f"cycles-sqlite-{index}"
            rundir.mkdir()
            broker = Broker(policy, rundir / "hoistd.db", rundir)
            try:
                rec.from_output([BINS["load"], *cycles(broker.url)], run_index=index,
                                rename=lambda fid: "postgres.sqlite.cycles")
            finally:
                broker.stop()
            for instances in (1, 2):
                on_postgres("cycles", instances, index, cycles)
        for instances in (1, 2):
            for index in range(settings["runs"]):
                on_postgres("rate", instances, index, rate)
        events_policy = workdir / "events-policy.toml"
        fixture("policy", "--out", events_policy, "--roles", settings["approvals"] + 10,
                "--watchers", 99)
        for index in range(settings["runs"]):
            db = server.database()
            brokers = []
            try:
                for n in range(2):
                    rundir = workdir / f"events-{index}-{n}"
                    rundir.mkdir()
                    brokers.append(Broker(events_policy, db, rundir))
                urls = ",".join(b.url for b in brokers)
                rec.from_output([BINS["load"], "events", "--url", urls, "--clients", 100,
                                 "--approvals", settings["approvals"], "--interval-ms", 50],
                                run_index=index, rename=lambda fid: "postgres.events.across")
            finally:
                for broker in brokers:
                    broker.stop()
        # The server alone: the cycle's statements from pgbench, so what
        # the machine allows the server is known apart from hoistd's share.
        script = pathlib.Path(__file__).with_name("pg-cycle.sql")
        for index in range(settings["runs"]):
            db = server.database()
            run([BINS["hoistd"], "migrate", "--db", db], stdout=subprocess.DEVNULL)
            name = db.rsplit("/", 1)[1]
            run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", server.port, "-U", "postgres",
                 "-d", name, "-c", "CREATE SEQUENCE bench_ids"])
            options = ["-n", "-M", "prepared", "-c", 2, "-j", 2, "-T", settings["seconds"]]
            out = run([server.bin / "pgbench", *options, "-h", "127.0.0.1", "-p", server.port,
                       "-U", "postgres", "-f", script, name],
                      stdout=subprocess.PIPE, text=True).stdout
            tps = next((line.split()[2] for line in out.splitlines()
                        if line.startswith("tps = ")), None)
            if tps is None:
                raise SystemExit(f"bench: pgbench printed no tps:\n{out}")
            rec.add({"id": "postgres.server.cycles", "run": index,
                     "meta": {"what": "pgbench with 2 clients for "
                              f"{settings['seconds']} s runs one cycle's statements as hoistd's "
                              "PostgreSQL store sends them (scripts/bench.d/pg-cycle.sql, a "
                              "copy kept by hand): each transaction's read, then one pipeline "
                              "that begins, takes the advisory lock, checks the read, writes, "
                              "notifies and commits; no hoistd and no HTTP, so this is what "
                              "the server allows on the machine with the load on the same cores"},
                     "metrics": {"cycles_per_sec": float(tps)}},
                    "pgbench " + " ".join(str(o) for o in options)
                    + " -f scripts/bench.d/pg-cycle.sql")
    finally:
        server.stop()


def group_workloads(settings, rec, workdir):
    """Workload token exchange: each run starts its own broker and issuer."""
    for index in range(settings["runs"]):
        rec.from_output([BINS["workloads"], "rate", "--rps", 200, "--seconds", settings["seconds"]],
                        run_index=index)
        rec.from_output([BINS["workloads"], "tasks", "--tasks", settings["tasks"]],
                        run_index=index)


def percentiles(samples):
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1],
            "samples": len(ordered)}


async def health_probes(host, port, seconds, per_second):
    """`GET /v1/health` on a new connection each time, as a load balancer's
    probe does; returns each answer's latency in ms (connect to last byte)."""
    import asyncio
    latencies = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        began = loop.time()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        latencies.append((loop.time() - began) * 1000)
        writer.close()
        if not answer.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"bench: health answered {answer[:40]!r}")
        await asyncio.sleep(max(0.0, 1 / per_second - (loop.time() - began)))
    return latencies


async def slow_client(host, port, stop, opened):
    """A slowloris: a request's headers, one more header line a second,
    never finished; when the broker closes it (the header timeout), again."""
    import asyncio
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened[0] += 1
        try:
            writer.write(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n")
            while not stop.is_set():
                await asyncio.sleep(1)
                writer.write(b"X-Slow: a\r\n")
                await writer.drain()
                if reader.at_eof():
                    break
        except OSError:
            pass
        finally:
            opened[0] -= 1
            writer.close()


async def slowconns_run(port, seconds, slow):
    import asyncio
    stop = asyncio.Event()
    opened = [0]
    clients = [asyncio.create_task(slow_client("127.0.0.1", port, stop, opened))
               for _ in range(slow)]
    # Every slow connection opened before the probes start.
    for _ in range(200):
        if opened[0] >= slow:
            break
        await asyncio.sleep(0.05)
    held = []

    async def sample():
        while not stop.is_set():
            held.append(opened[0])
            await asyncio.sleep(0.5)
    sampler = asyncio.create_task(sample())
    latencies = await health_probes("127.0.0.1", port, seconds, 20)
    stop.set()
    await asyncio.gather(*clients, sampler, return_exceptions=True)
    return latencies, held


def group_slowconns(settings, rec, workdir):
    """Health p99 while slow connections are held open: a baseline with none,
    then with `slow` slowloris connections, each against a fresh broker."""
    import asyncio
    # Health reads no policy: the shipped example is enough.
    policy = ROOT / "assets" / "policy.example.toml"
    for index in range(settings["runs"]):
        for slow in (0, settings["slow"]):
            rundir = workdir / f"run{index}-{slow}"
            rundir.mkdir()
            broker = Broker(policy, rundir / "hoistd.db", rundir)
            try:
                port = int(broker.url.rsplit(":", 1)[1])
                latencies, held = asyncio.run(slowconns_run(port, settings["seconds"], slow))
            finally:
                broker.stop()
            rec.add({"id": "slowconns" if slow else "slowconns.baseline", "run": index,
                     "metrics": {"health": percentiles(latencies),
                                 "held_min": min(held) if held else 0,
                                 "held_median": statistics.median(held) if held else 0},
                     "meta": {"what": f"GET /v1/health on a new loopback connection, 20 a second "
                                      f"for {settings['seconds']} s (connect to last byte), while "
                                      f"{slow} connections each send a request's headers a line "
                                      f"a second and never finish them (reopened when the "
                                      f"broker closes them at its 10 s header timeout); default "
                                      f"limits (4,096 connections)"}},
                    f"scripts/bench --only slowconns  # {slow} slow connections")


def group_issuance(settings, rec, workdir):
    """SSH certificates and OpenBao tokens: each run starts its own broker (and bao)."""
    for index in range(settings["runs"]):
        rec.from_output([BINS["issuance"], "ssh", "--grants", settings["grants"]],
                        run_index=index)
        rec.from_output([BINS["issuance"], "openbao", "--grants", settings["grants"]],
                        run_index=index)


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True).stdout.strip()
        except OSError:
            return ""
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": sh("uname -sr"),
        "os": sh(". /etc/os-release && echo \"$PRETTY_NAME\""),
        "virtualisation": sh("systemd-detect-virt 2>/dev/null || true") or "unknown",
        "rustc": sh("rustc -V"),
        "commit": sh(f"git -C {shlex.quote(str(ROOT))} rev-parse --short HEAD"),
        "dirty": bool(sh(f"git -C {shlex.quote(str(ROOT))} status --porcelain --untracked-files=no")),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": sh("cut -d' ' -f1-3 /proc/loadavg"),
        "hyperfine": sh("hyperfine --version"),
        "tmux": sh("tmux -V"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--bins", required=True, help="JSON: name -> executable")
    args = parser.parse_args()
    BINS.update(json.loads(args.bins))
    groups = [g for g in args.only.split(",") if g] or GROUPS
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise SystemExit(f"bench: unknown group(s) {', '.join(unknown)}; groups: {', '.join(GROUPS)}")
    mode = "quick" if args.quick else "full"
    global RESULTS
    RESULTS = OUT / "results-quick" if args.quick else KEPT
    if not args.only:
        # From scratch: nothing of an earlier run survives.
        for old in [*RESULTS.glob("*.jsonl"), *RESULTS.glob("*.machine.json")]:
            old.unlink()
    RESULTS.mkdir(parents=True, exist_ok=True)

    for group in groups:
        settings = SETTINGS[group][1 if args.quick else 0]
        log(f"{group} ({', '.join(f'{k}={v}' for k, v in settings.items())})")
        began = time.monotonic()
        rec = Recorder(group)
        measured_on = dict(machine(), mode=mode)
        with tempfile.TemporaryDirectory(prefix=f"hoist-bench-{group}-") as tmp:
            workdir = pathlib.Path(tmp)
            function = globals()[f"group_{group}"]
            if group in ("render", "filter"):
                function(settings, rec)
            else:
                function(settings, rec, workdir)
        rec.keep(measured_on)
        log(f"{group} done in {time.monotonic() - began:.0f} s")

    target = OUT / "BENCHMARKS.quick.md" if args.quick else ROOT / "BENCHMARKS.md"
    run([sys.executable, pathlib.Path(__file__).with_name("report.py"), RESULTS, target,
         "quick" if args.quick else "full"])
    log(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
