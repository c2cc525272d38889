#!/usr/bin/python3
"""The service benchmarks (bench/run runs this after building): every scenario against a fresh
cotaskd (or the ceiling server, or a peer) on loopback, RUNS times each, then a table of
medians (min-max), the targets' ratios, and one RESULT line per scenario.

    bench/services.py BUILD_DIR RUNS [--smoke] [SCENARIO...]

--smoke runs every scenario with a hundredth of its count (the figures mean nothing): the test
suite's check that the benchmarks still run end to end (bench/CMakeLists.txt).
"""

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Process:
    """A server the benchmarks start: its address read from its log, stopped at the end."""

    def __init__(self, argv, pattern=r"listening on (127\.0\.0\.1:\d+)"):
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError(f"{argv[0]} exited")
            found = re.search(pattern, line)
            if found:
                self.address = found.group(1)
                # The rest of the log is not needed, but must not fill the pipe.
                subprocess.Popen(["cat"], stdin=self.process.stderr, stdout=subprocess.DEVNULL)
                return
        raise RuntimeError(f"{argv[0]} did not start")

    @property
    def pid(self):
        return self.process.pid

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, build, runs, scale=1.0):
        self.build = build
        self.runs = runs
        self.scale = scale
        self.results = {}  # name -> list of run figures (dicts)

    def n(self, count, smallest):
        """A scenario's count, scaled down for --smoke."""
        return max(smallest, int(count * self.scale))

    def binary(self, path):
        return os.path.join(self.build, path)

    def cotaskd(self, *flags):
        return Process([self.binary("service/cotaskd"), "--address=127.0.0.1:0",
                        "--metrics_address=", "--task_failure_log_level=none",
                        "--drain_timeout=0s", *flags])

    def load(self, target, scenario, **options):
        argv = [self.binary("bench/load"), f"--scenario={scenario}", f"--target={target}"]
        argv += [f"--{key}={value}" for key, value in options.items()]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"load {scenario}: {done.stderr.strip()}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def record(self, name, figures):
        self.results.setdefault(name, []).append(figures)
        print(f"  {name}: {json.dumps(figures)}", file=sys.stderr, flush=True)

    def median(self, name, key="per_second"):
        values = [run[key] for run in self.results.get(name, [])]
        return statistics.median(values) if values else None

    # ----- Scenarios: each runs self.runs times, each time against a fresh server.

    def ceiling_server(self, *scenarios):
        """The ceiling server, for (name, scenario, options) measurements in a row."""
        server = Process([self.binary("bench/ceiling_server")])
        try:
            for name, scenario, options in scenarios:
                self.record(name, self.load(server.address, scenario, **options))
        finally:
            server.stop()

    def ceiling(self):
        for _ in range(self.runs):
            self.ceiling_server(
                ("ceiling_unary", "nothing", dict(count=self.n(200_000, 500), inflight=256)),
                ("ceiling_stream", "echo", dict(count=self.n(200_000, 500), inflight=64)),
                # One call at a time: the round trip itself, not a queue's wait.
                ("ceiling_rtt", "nothing", dict(count=self.n(5_000, 50), inflight=1)))

    def unary(self):
        # Each Run run is bracketed by the ceiling, right before and right after it: the ratio's
        # two sides see the same machine (it is shared, and its speed drifts within minutes).
        # Each scenario runs on a cotaskd with one I/O thread (--io_threads=1) and on one whose
        # engine thread serves the calls itself (--io_threads=0: the default on <= 2 CPUs). The
        # other scenarios run on the default cotaskd.
        paired = ("ceiling_unary_paired", "nothing",
                  dict(count=self.n(100_000, 500), inflight=256))
        for _ in range(self.runs):
            for name, scenario, flags in (("run", "run", ("--io_threads=1",)),
                                          ("run_io0", "run", ("--io_threads=0",)),
                                          ("create_watch", "create", ("--io_threads=1",)),
                                          ("create_watch_io0", "create", ("--io_threads=0",))):
                self.ceiling_server(paired)
                server = self.cotaskd(*flags)
                try:
                    self.record(name, self.load(server.address, scenario,
                                                count=self.n(100_000, 500), inflight=256))
                finally:
                    server.stop()
        self.ceiling_server(paired)

    def batch(self):
        for _ in range(self.runs):
            server = self.cotaskd("--max_pending_tasks=2000000")
            try:
                self.record("batch", self.load(server.address, "batch",
                                               count=self.n(1_000_000, 2000), batch=1000,
                                               inflight=4))
            finally:
                server.stop()

    def latency(self):
        # The peak of the latency scenario's own work (creates, and a watcher of every event of
        # the group), closed loop on the default cotaskd; then that work sent open loop, evenly
        # spaced, at 10% and 50% of it.
        for _ in range(self.runs):
            server = self.cotaskd("--max_log_bytes=1073741824")
            try:
                self.record("latency_peak", self.load(server.address, "latency",
                                                      count=self.n(100_000, 500), inflight=256))
            finally:
                server.stop()
        peak = self.median("latency_peak") or 20_000
        for share in (10, 50):
            rate = int(peak * share / 100)
            for _ in range(self.runs):
                # The round trips it is compared with, right before it: one call at a time, and
                # calls sent as the latency scenario sends its creates (open loop, same rate).
                self.ceiling_server(("ceiling_rtt_paired", "nothing",
                                     dict(count=self.n(5_000, 50), inflight=1)),
                                    (f"ceiling_rtt_open_{share}", "nothing",
                                     dict(count=self.n(max(2000, rate * 5), 200), rate=rate)))
                for name, flags in ((f"latency_{share}", ("--io_threads=1",)),
                                    (f"latency_io0_{share}", ("--io_threads=0",))):
                    # (The group's log keeps every task's end: 2 events per task.)
                    server = self.cotaskd("--max_log_bytes=1073741824", *flags)
                    try:
                        self.record(name, self.load(server.address, "latency", rate=rate,
                                                    count=self.n(max(2000, rate * 5), 200)))
                    finally:
                        server.stop()

    def exec_(self):
        for _ in range(self.runs):
            server = self.cotaskd("--exec_allow=/bin/true")
            try:
                self.record("exec", self.load(server.address, "exec", count=self.n(5000, 50),
                                              inflight=32))
            finally:
                server.stop()
            self.record("spawn", self.load("", "spawn", count=self.n(5000, 50)))

    def memory(self):
        for _ in range(self.runs):
            server = self.cotaskd("--max_pending_tasks=1100000")
            try:
                self.record("pending_memory", self.load(server.address, "pending",
                                                        count=self.n(1_000_000, 2000),
                                                        batch=1000, inflight=4,
                                                        server_pid=server.pid))
            finally:
                server.stop()
            server = self.cotaskd("--max_watchers=20000")
            try:
                self.record("watch_memory", self.load(server.address, "watchers",
                                                      count=self.n(10_000, 100),
                                                      server_pid=server.pid))
            finally:
                server.stop()

    def dispatch(self):
        # On the default cotaskd and on one with an I/O thread (on <= 2 CPUs the default has
        # none: the workers' streams are then served on the engine's thread).
        for _ in range(self.runs):
            for name, flags in (("dispatch", ()), ("dispatch_io1", ("--io_threads=1",))):
                server = self.cotaskd("--max_pending_tasks=2000000", "--queue_maxsize=2000000",
                                      *flags)
                workers = [subprocess.Popen([self.binary("bench/noop_worker"),
                                             f"--server={server.address}", "--queue=bench",
                                             "--capacity=64"]) for _ in range(4)]
                try:
                    self.record(name, self.load(server.address, "dispatch",
                                                count=self.n(200_000, 2000), batch=1000,
                                                inflight=4, queue="bench"))
                finally:
                    for worker in workers:  # first: they would report the server's going
                        worker.kill()
                        worker.wait()
                    server.stop()

    def peers(self, count=20_000):
        for _ in range(self.runs):
            done = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "peers",
                                                                    "asyncio_taskgroup.py"),
                                   str(count)], capture_output=True, text=True, timeout=600,
                                  check=True)
            self.record("asyncio", json.loads(done.stdout))
        # cotask's batched end to end with the peers' task count, in the same run.
        for _ in range(self.runs):
            server = self.cotaskd()
            try:
                self.record("batch_peer_count", self.load(server.address, "batch", count=count,
                                                          batch=1000, inflight=4))
            finally:
                server.stop()
        self.gearman(count)
        celery = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "peers",
                                                                  "celery_bench.py"),
                                 str(count), str(self.runs)], capture_output=True, text=True,
                                timeout=3600)
        if celery.returncode != 0:
            raise RuntimeError(f"celery: {celery.stderr[-2000:]}")
        for line in celery.stdout.splitlines():
            self.record("celery", json.loads(line))

    def gearman(self, count):
        binary = self.binary("bench/gearman_bench")
        for _ in range(self.runs):
            port = free_port()
            gearmand = subprocess.Popen(["gearmand", f"--port={port}", "--listen=127.0.0.1",
                                         "--threads=1", "--log-file=none", "--verbose=ERROR"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            workers = []
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                workers = [subprocess.Popen([binary, "worker", str(port)]) for _ in range(2)]
                time.sleep(0.5)
                done = subprocess.run([binary, "client", str(port), str(count), "256"],
                                      capture_output=True, text=True, timeout=600, check=True)
                self.record("gearman", json.loads(done.stdout))
            finally:
                for process in workers + [gearmand]:
                    process.kill()
                    process.wait()


def figure(bench, name, key="per_second"):
    runs = [run[key] for run in bench.results.get(name, [])]
    if not runs:
        return None
    return statistics.median(runs), min(runs), max(runs)


def fmt(value):
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def report(bench):
    rows = [
        ("ceiling: empty unary RPC", "ceiling_unary", "per_second", "calls/s"),
        ("ceiling: empty unary, 1 in flight, p50", "ceiling_rtt", "latency_p50_us", "us"),
        ("ceiling: empty unary, before and after each Run", "ceiling_unary_paired",
         "per_second", "calls/s"),
        ("ceiling: streaming echo", "ceiling_stream", "per_second", "messages/s"),
        ("Run (create and await), --io_threads=1", "run", "per_second", "tasks/s"),
        ("Run, --io_threads=0", "run_io0", "per_second", "tasks/s"),
        ("CreateTask, group awaited, --io_threads=1", "create_watch", "per_second", "tasks/s"),
        ("CreateTask, group awaited, --io_threads=0", "create_watch_io0", "per_second",
         "tasks/s"),
        ("CreateTasks x1000, group awaited", "batch", "per_second", "tasks/s"),
        ("latency's work, closed loop (its peak)", "latency_peak", "per_second", "tasks/s"),
        ("create->RUNNING p50 @10% peak", "latency_10", "to_running_p50_us", "us"),
        ("create->RUNNING p99 @10% peak", "latency_10", "to_running_p99_us", "us"),
        ("create->RUNNING p99.9 @10% peak", "latency_10", "to_running_p999_us", "us"),
        ("create->PENDING seen p50 @10% peak", "latency_10", "to_pending_seen_p50_us", "us"),
        ("create->result seen p50 @10% peak", "latency_10", "to_result_p50_us", "us"),
        ("create->result seen p99 @10% peak", "latency_10", "to_result_p99_us", "us"),
        ("CreateTask call p50 @10% peak", "latency_10", "create_call_p50_us", "us"),
        ("create->end on the server p50 @10% peak", "latency_10", "to_end_p50_us", "us"),
        ("end logged->seen by the watcher p50 @10%", "latency_10", "end_delivery_p50_us", "us"),
        ("end logged->seen p50 @10%, --io_threads=0", "latency_io0_10", "end_delivery_p50_us",
         "us"),
        ("create->result seen p50 @10%, --io_threads=0", "latency_io0_10", "to_result_p50_us",
         "us"),
        ("create->result seen p99 @10%, --io_threads=0", "latency_io0_10", "to_result_p99_us",
         "us"),
        ("CreateTask call p50 @10%, --io_threads=0", "latency_io0_10", "create_call_p50_us",
         "us"),
        ("@50% peak: offered", "latency_50", "offered_per_second", "tasks/s"),
        ("@50% peak: done (to the last end seen)", "latency_50", "per_second", "tasks/s"),
        ("@50% peak, --io_threads=0: done", "latency_io0_50", "per_second", "tasks/s"),
        ("create->RUNNING p50 @50% peak", "latency_50", "to_running_p50_us", "us"),
        ("create->RUNNING p99 @50% peak", "latency_50", "to_running_p99_us", "us"),
        ("create->result seen p50 @50% peak", "latency_50", "to_result_p50_us", "us"),
        ("create->result seen p99 @50% peak", "latency_50", "to_result_p99_us", "us"),
        ("create->result seen p50 @50%, --io_threads=0", "latency_io0_50", "to_result_p50_us",
         "us"),
        ("empty unary round trip p50, 1 in flight", "ceiling_rtt_paired", "latency_p50_us",
         "us"),
        ("empty unary round trip p50, open loop @10%", "ceiling_rtt_open_10", "latency_p50_us",
         "us"),
        ("empty unary round trip p50, open loop @50%", "ceiling_rtt_open_50", "latency_p50_us",
         "us"),
        ("exec /bin/true via Run", "exec", "per_second", "tasks/s"),
        ("posix_spawn+waitpid loop", "spawn", "per_second", "processes/s"),
        ("resident bytes per pending task (1M)", "pending_memory", "bytes_per_item", "bytes"),
        ("resident bytes per Watch stream (10k)", "watch_memory", "bytes_per_item", "bytes"),
        ("dispatch via 4 worker processes", "dispatch", "per_second", "tasks/s"),
        ("dispatch via 4 workers, --io_threads=1", "dispatch_io1", "per_second", "tasks/s"),
        ("cotask CreateTasks x1000 (peer count)", "batch_peer_count", "per_second", "tasks/s"),
        ("asyncio TaskGroup, in-process", "asyncio", "per_second", "tasks/s"),
        ("gearmand, foreground jobs", "gearman", "per_second", "tasks/s"),
        ("Celery + Redis, 2 worker processes", "celery", "per_second", "tasks/s"),
    ]
    print(f"{'scenario':42} {'median':>14} {'min-max':>26}  unit")
    for label, name, key, unit in rows:
        f = figure(bench, name, key)
        if f is None:
            continue
        print(f"{label:42} {fmt(f[0]):>14} {fmt(f[1]) + '-' + fmt(f[2]):>26}  {unit}")
    print()

    def ratio(a, b, key_a="per_second", key_b="per_second"):
        fa, fb = figure(bench, a, key_a), figure(bench, b, key_b)
        return None if fa is None or fb is None or fb[0] == 0 else fa[0] / fb[0]

    checks = [
        ("Run / empty unary ceiling, --io_threads=1", ratio("run", "ceiling_unary_paired"),
         ">= 0.6", 0.6),
        ("Run / ceiling, --io_threads=0", ratio("run_io0", "ceiling_unary_paired"), ">= 0.6",
         0.6),
        ("batched tasks/s", (figure(bench, "batch") or [None])[0], ">= 200000", 200_000),
        ("batched / gearmand", ratio("batch_peer_count", "gearman"), ">= 10", 10),
        ("batched / Celery", ratio("batch_peer_count", "celery"), ">= 200", 200),
        ("create->RUNNING p50 @10% (us)", (figure(bench, "latency_10", "to_running_p50_us")
                                           or [None])[0], "<= 100", -100),
        ("create->RUNNING p99 @10% (us)", (figure(bench, "latency_10", "to_running_p99_us")
                                           or [None])[0], "<= 1000", -1000),
        ("result seen p50 @10% / round trip, io 1",
         ratio("latency_10", "ceiling_rtt_paired", "to_result_p50_us", "latency_p50_us"), "<= 2",
         -2),
        ("same, --io_threads=0",
         ratio("latency_io0_10", "ceiling_rtt_paired", "to_result_p50_us", "latency_p50_us"),
         "<= 2", -2),
        ("result seen p50 @10% / open-loop round trip",
         ratio("latency_10", "ceiling_rtt_open_10", "to_result_p50_us", "latency_p50_us"),
         "(same rate)", None),
        ("exec / posix_spawn", ratio("exec", "spawn"), ">= 0.7", 0.7),
        ("bytes per pending task", (figure(bench, "pending_memory", "bytes_per_item")
                                    or [None])[0], "<= 1024", -1024),
        ("bytes per Watch stream", (figure(bench, "watch_memory", "bytes_per_item")
                                    or [None])[0], "<= 16384", -16384),
        ("batched / asyncio in-process", ratio("batch_peer_count", "asyncio"), "(no target)",
         None),
        ("Run / streaming echo ceiling", ratio("run", "ceiling_stream"), "(no target)", None),
    ]
    print(f"{'target':44} {'measured':>12}  {'target':>12}  met")
    for label, value, text, bound in checks:
        if value is None:
            continue
        met = "" if bound is None else ("yes" if (value >= bound if bound > 0 else
                                                  value <= -bound) else "NO")
        print(f"{label:44} {fmt(value):>12}  {text:>12}  {met}")
    print()
    for label, name, key, unit in rows:
        f = figure(bench, name, key)
        if f is not None:
            print(f"RESULT {name}.{key}={f[0]:.6g} {unit} (min {f[1]:.6g}, max {f[2]:.6g}, "
                  f"runs {len(bench.results[name])})")


def main():
    build, runs = sys.argv[1], int(sys.argv[2])
    args = sys.argv[3:]
    smoke = "--smoke" in args
    wanted = [a for a in args if a != "--smoke"] or ["ceiling", "unary", "batch", "latency",
                                                     "exec", "memory", "dispatch", "peers"]
    bench = Bench(build, runs, scale=0.01 if smoke else 1.0)
    for name in wanted:
        print(f"bench: {name}", file=sys.stderr, flush=True)
        recorded = sum(len(figures) for figures in bench.results.values())
        getattr(bench, name if name != "exec" else "exec_")()
        if sum(len(figures) for figures in bench.results.values()) == recorded:
            sys.exit(f"bench: {name} recorded nothing")
    report(bench)


if __name__ == "__main__":
    main()
