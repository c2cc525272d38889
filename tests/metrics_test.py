"""cotaskd's Prometheus metrics, end to end: a scrape counts every outcome under the right
labels, promtool finds nothing to complain about, no label carries a client's names, and a real
Prometheus server scrapes cotaskd. Under Debian's python3, with the Python client."""

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "python"))
import cotaskd  # noqa: E402

import cotask  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with cotaskd.Daemon(["--exec_allow=/bin/sh,/no/such/program"]) as daemon:
        yield daemon


def scrape(server):
    with urllib.request.urlopen(f"http://{server.metrics_address}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text):
    """{(name, ((label, value), ...)): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert found, line
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(3) or "")))
        out[(found.group(1), labels)] = float(found.group(4))
    return out


def value(all_samples, name, **labels):
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run_every_outcome(server):
    async def main():
        async with cotask.Client(server.address) as c:
            await c.run(cotask.sleep(0.001))
            for spec, options in [(cotask.sleep(0.001, error="no"), {}),
                                  (cotask.sleep(5), {"timeout": 0.02}),
                                  (cotask.sleep(0.001, error="again"), {"retries": 1,
                                                                        "backoff": 0.01}),
                                  (cotask.exec_("/no/such/program"), {})]:
                try:
                    await c.run(spec, **options)
                except (cotask.TaskFailed, cotask.TaskTimedOut):
                    pass
            await c.run(cotask.exec_("/bin/sh", "-c", "exit 0"), labels={"secret": "label-x"})
            remote = await c.create_task(cotask.sleep(60))
            await remote.cancel("metrics test")
            with pytest.raises(cotask.TaskCancelled):
                await remote
            with pytest.raises(ExceptionGroup):
                async with c.task_group(f"metrics-group-name-{uuid.uuid4().hex}") as tg:
                    tg.create_task(cotask.sleep(0.001, error="group child"))
    asyncio.run(main())


def test_a_scrape_counts_every_outcome_under_its_labels(server):
    before = samples(scrape(server))
    run_every_outcome(server)
    text = scrape(server)
    after = samples(text)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cotask_tasks_created_total", kind="sleep") == 6
    assert delta("cotask_tasks_created_total", kind="exec") == 2
    assert delta("cotask_tasks_finished_total", kind="sleep", state="SUCCEEDED") == 1
    assert delta("cotask_tasks_finished_total", kind="sleep", state="FAILED") == 3
    assert delta("cotask_tasks_finished_total", kind="sleep", state="TIMED_OUT") == 1
    assert delta("cotask_tasks_finished_total", kind="sleep", state="CANCELLED") == 1
    assert delta("cotask_tasks_finished_total", kind="exec", state="SUCCEEDED") == 1
    assert delta("cotask_tasks_finished_total", kind="exec", state="FAILED") == 1
    assert delta("cotask_task_retries_total", kind="sleep") == 1
    assert delta("cotask_task_cancellations_total", kind="sleep") == 1
    assert delta("cotask_exec_spawns_total") == 1
    assert delta("cotask_exec_spawn_failures_total") == 1
    assert delta("cotask_groups_finished_total", state="FAILED") == 1
    assert value(after, "cotask_tasks_running", kind="sleep", queue="") == 0
    assert value(after, "cotask_tasks_pending", kind="sleep", queue="") == 0
    assert value(after, "cotask_groups_active") == 0
    assert delta("cotask_task_run_seconds_count", kind="sleep") >= 5
    assert value(after, "cotask_event_log_bytes") > 0
    assert delta("grpc_server_handled_total", grpc_service="cotask.v1.Scheduler",
                 grpc_method="Run", grpc_type="unary", grpc_code="OK") == 6
    assert delta("grpc_server_started_total", grpc_service="cotask.v1.Scheduler",
                 grpc_method="CreateTask", grpc_type="unary") >= 2
    assert value(after, "process_resident_memory_bytes") > 1e6
    assert value(after, "process_open_fds") > 0
    assert value(after, "process_start_time_seconds") > time.time() - 3600
    assert any(name == "cotask_build_info" and v == 1 for (name, _), v in after.items())
    # Nothing a client chose is a label.
    assert "metrics-group-name" not in text and "label-x" not in text
    assert not re.search(r'"t[0-9a-f]{14}"', text)


def go_code(code):
    """go-grpc-prometheus's name of a grpc.StatusCode (grpc_code)."""
    if code.name in ("OK", "CANCELLED"):
        return {"OK": "OK", "CANCELLED": "Canceled"}[code.name]
    return "".join(word.capitalize() for word in code.name.split("_"))


def test_every_method_of_every_service_counts_its_calls_once(server):
    """Each method is called once with an empty message (or stream): started, received, sent
    and handled (under the code the client saw) move by exactly that call, under the method's
    own labels, so a method counted under another's name fails here."""
    import grpc
    from cotask.v1 import scheduler_pb2, workers_pb2

    methods = [(s.full_name, m.name, m.client_streaming, m.server_streaming)
               for file in (scheduler_pb2, workers_pb2)
               for s in file.DESCRIPTOR.services_by_name.values() for m in s.methods]
    methods += [("grpc.health.v1.Health", "Check", False, False),
                ("grpc.health.v1.Health", "Watch", False, True)]
    assert len(methods) == 25 + 2 + 2
    before = samples(scrape(server))
    expected = {}  # (service, method, type) -> (received, sent, code or None if cancelled)
    with grpc.insecure_channel(server.address) as channel:
        for service, method, client_streaming, server_streaming in methods:
            path = f"/{service}/{method}"
            kind = {(False, False): "unary", (False, True): "server_stream",
                    (True, True): "bidi_stream"}[(client_streaming, server_streaming)]
            if kind == "unary":
                try:
                    channel.unary_unary(path)(b"", timeout=10)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                expected[(service, method, kind)] = (1, int(code == grpc.StatusCode.OK), code)
                continue
            if kind == "server_stream":
                call = channel.unary_stream(path)(b"", timeout=10)
                received = 1
            else:
                call = channel.stream_stream(path)(iter([]), timeout=10)
                received = 0
            sent = 0
            try:
                next(call)  # a stream that sends stays open: it is cancelled after one message
                sent = 1
                call.cancel()
                code = None
            except grpc.RpcError as e:
                code = e.code()
            expected[(service, method, kind)] = (received, sent, code)
    assert (expected[("cotask.v1.Scheduler", "ListTasks", "unary")][2] == grpc.StatusCode.OK)
    assert (expected[("cotask.v1.Scheduler", "Run", "unary")][2]
            == grpc.StatusCode.INVALID_ARGUMENT)
    assert expected[("grpc.health.v1.Health", "Watch", "server_stream")][1:] == (1, None)

    def handled(after, labels):
        return {name: value(after, "grpc_server_handled_total", **labels, grpc_code=name)
                - value(before, "grpc_server_handled_total", **labels, grpc_code=name)
                for name in [go_code(c) for c in grpc.StatusCode]}

    deadline = time.monotonic() + 10
    while True:  # a cancelled stream is counted once its handler has seen the cancellation
        after = samples(scrape(server))
        done = all(sum(handled(after, dict(grpc_service=s, grpc_method=m, grpc_type=t)).values())
                   == 1 for (s, m, t) in expected)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for (service, method, kind), (received, sent, code) in expected.items():
        labels = dict(grpc_service=service, grpc_method=method, grpc_type=kind)

        def delta(name):
            return value(after, name, **labels) - value(before, name, **labels)
        assert delta("grpc_server_started_total") == 1, labels
        assert delta("grpc_server_msg_received_total") == received, labels
        assert delta("grpc_server_msg_sent_total") == sent, labels
        assert delta("grpc_server_handling_seconds_count") == 1, labels
        codes = {name: n for name, n in handled(after, labels).items() if n}
        assert codes == {go_code(code) if code else "Canceled": 1}, labels


def test_promtool_finds_nothing_to_complain_about(server):
    run_every_outcome(server)
    checked = subprocess.run(["promtool", "check", "metrics"], input=scrape(server),
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "" and checked.stderr == ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_prometheus_scrapes_cotaskd(server):
    run_every_outcome(server)
    with tempfile.TemporaryDirectory() as data:
        config = os.path.join(data, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    "  - job_name: cotaskd\n"
                    f"    static_configs:\n      - targets: ['{server.metrics_address}']\n")
        port = free_port()
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            query = urllib.parse.quote('cotask_tasks_finished_total{state="FAILED"}')
            deadline = time.monotonic() + 90
            while True:
                assert prometheus.poll() is None, prometheus.stderr.read()
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/api/v1/query?query={query}",
                            timeout=5) as r:
                        body = r.read().decode()
                    if '"result":[{' in body:
                        assert '"job":"cotaskd"' in body
                        return
                except OSError:
                    pass  # not up yet
                assert time.monotonic() < deadline, "Prometheus never had the metric"
                time.sleep(0.5)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)


def test_stream_stats_sends_snapshots_that_change_as_tasks_finish(server):
    from cotask import pb
    from google.protobuf import duration_pb2
    import grpc

    def succeeded(stats):
        return sum(k.finished["SUCCEEDED"] for k in stats.kinds if k.kind == "sleep")

    async def main():
        async with cotask.Client(server.address) as c:
            call = c.stub.StreamStats(pb.StreamStatsRequest(
                interval=duration_pb2.Duration(nanos=100_000_000)))
            first = await call.read()
            assert [k.kind for k in first.kinds] == ["sleep", "exec", "dispatch"]
            await c.run(cotask.sleep(0.001))
            for _ in range(50):
                later = await call.read()
                if succeeded(later) > succeeded(first):
                    break
            assert succeeded(later) == succeeded(first) + 1
            assert later.time.ToNanoseconds() > first.time.ToNanoseconds()
            call.cancel()
            too_often = c.stub.StreamStats(pb.StreamStatsRequest(
                interval=duration_pb2.Duration(nanos=10_000_000)))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await too_often.read()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "interval" in refused.value.details()
    asyncio.run(main())


def test_json_logs_one_object_a_line_with_task_failures_at_the_chosen_level():
    import json as jsonlib
    with cotaskd.Daemon(["--log_format=json", "--task_failure_log_level=error"]) as daemon:
        async def main():
            async with cotask.Client(daemon.address) as c:
                with pytest.raises(cotask.TaskFailed) as failed:
                    await c.run(cotask.sleep(0.001, error="broken\non purpose"))
                return failed.value.task.id
        task_id = asyncio.run(main())
        deadline = time.monotonic() + 10
        while not any("task failed" in line for line in daemon.log):
            assert time.monotonic() < deadline, daemon.log
            time.sleep(0.05)
        daemon.stop()
        lines = [jsonlib.loads(line) for line in daemon.log]
    assert lines[0]["level"] == "info" and lines[0]["msg"].startswith("listening on ")
    assert lines[0]["address"] == daemon.address
    [failure] = [line for line in lines if line["msg"] == "task failed"]
    assert failure["level"] == "error"
    assert failure["task"] == task_id
    assert failure["state"] == "FAILED" and failure["kind"] == "sleep"
    assert failure["error"] == "broken\non purpose"
    assert [line["msg"] for line in lines[-2:]] == ["SIGTERM: draining, up to 10s", "stopped"]
