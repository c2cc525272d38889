"""Queues and remote workers end to end: the real cotaskd, worker processes on the C++ worker
library (worker_process.cc) and on the Python one (py_worker.py), tasks created with the
Python client. Under Debian's python3."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import grpc
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import cotaskd  # noqa: E402

import cotask  # noqa: E402
from cotask import pb  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with cotaskd.Daemon(["--queues=small:fifo:3,prio:priority,stack:lifo",
                         "--worker_heartbeat_timeout=2s", "--worker_cancel_grace=1s",
                         "--max_batch_size=1000", "--drain_timeout=1s"]) as daemon:
        yield daemon


class Workers:
    """Worker processes of one test, killed at its end; each records what its handlers did."""

    def __init__(self, server, directory):
        self.server = server
        self.directory = directory
        self.processes = {}

    def start(self, kind, name, queues, capacity=1):
        record = os.path.join(self.directory, f"{name}.log")
        args = [f"--server={self.server.address}", f"--queues={','.join(queues)}",
                f"--capacity={capacity}", f"--record={record}", f"--name={name}"]
        if kind == "cpp":
            command = [os.environ["CPP_WORKER"], *args]
        else:
            command = ["/usr/bin/python3", os.path.join(HERE, "py_worker.py"), *args]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        self.processes[name] = (process, record)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if name in [w.name for w in run(list_workers(self.server))]:
                return process
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.02)
        raise AssertionError(f"worker {name} did not connect")

    def lines(self, name):
        path = self.processes[name][1]
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.rstrip("\n").split(" ", 4) for line in f if line.endswith("\n")]

    def wait_for(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError("timed out waiting")

    def stop_all(self):
        for process, _ in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def workers(server, tmp_path):
    pool = Workers(server, str(tmp_path))
    yield pool
    pool.stop_all()


def run(coroutine):
    return asyncio.run(coroutine)


async def list_workers(server):
    async with cotask.Client(server.address) as c:
        return await c.list_workers()


def queue_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_all(server, queue, payloads, **options):
    """Creates the dispatch tasks in batches; returns their ids in order."""
    async with cotask.Client(server.address) as c:
        ids = []
        for start in range(0, len(payloads), 500):
            request = pb.CreateTasksRequest()
            for payload in payloads[start:start + 500]:
                request.requests.append(cotask.client._task_request(
                    cotask.dispatch(queue, payload), **options))
            response = await c.stub.CreateTasks(request)
            ids.extend(t.id for t in response.tasks)
        return ids


async def await_all(server, ids, timeout=60):
    async with cotask.Client(server.address) as c:
        tasks = []
        for start in range(0, len(ids), 1000):
            done, pending = await c.wait(ids[start:start + 1000], timeout=timeout)
            assert not pending, f"{len(pending)} tasks did not end within {timeout}s"
            tasks.extend(done)
        by_id = {t.id: t for t in tasks}
        return [by_id[i] for i in ids]


def test_three_workers_share_1000_tasks_and_each_runs_exactly_once(server, workers):
    queue = queue_name("bulk")
    workers.start("cpp", "cpp-1", [queue], capacity=8)
    workers.start("cpp", "cpp-2", [queue], capacity=8)
    workers.start("py", "py-1", [queue], capacity=8)
    payloads = [f"t{i}" for i in range(1000)]
    ids = run(create_all(server, queue, payloads))
    tasks = run(await_all(server, ids))
    assert [t.state for t in tasks] == [pb.Task.SUCCEEDED] * 1000
    assert [t.result.output.decode() for t in tasks] == [f"echo:{p}" for p in payloads]
    assert all(t.attempt == 1 for t in tasks)
    done = {}
    for name in ["cpp-1", "cpp-2", "py-1"]:
        ran = [line[1] for line in workers.lines(name) if line[0] == "done"]
        assert ran, f"{name} ran nothing"
        for task_id in ran:
            done[task_id] = done.get(task_id, 0) + 1
        # Each task's worker is the one whose handler ran it.
        assert all(tasks[ids.index(i)].worker != "" for i in ran)
    assert sorted(done) == sorted(ids)
    assert set(done.values()) == {1}
    queue_now = run(get_queue(server, queue))
    assert (queue_now.size, queue_now.depth, queue_now.leased, queue_now.workers) == (0, 0, 0, 3)


async def get_queue(server, name):
    async with cotask.Client(server.address) as c:
        return await c.get_queue(name)


def test_a_killed_workers_tasks_go_back_and_another_finishes_them(server, workers):
    queue = queue_name("kill")
    doomed = workers.start("cpp", "doomed", [queue], capacity=4)
    ids = run(create_all(server, queue, ["sleep:400"] * 6, retries=2, backoff=0.01))
    workers.wait_for(lambda: len(workers.lines("doomed")) == 4)
    held = [line[1] for line in workers.lines("doomed")]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    workers.start("py", "rescuer", [queue], capacity=6)
    tasks = run(await_all(server, ids))
    assert [t.state for t in tasks] == [pb.Task.SUCCEEDED] * 6
    for task in tasks:
        assert task.attempt == (2 if task.id in held else 1)
    rescued = [line[1] for line in workers.lines("rescuer") if line[0] == "done"]
    assert sorted(rescued) == sorted(ids)
    assert all(line[0] == "start" for line in workers.lines("doomed"))


def test_a_silent_worker_loses_its_tasks_after_the_heartbeat_timeout(server, workers):
    queue = queue_name("silent")
    frozen = workers.start("cpp", "frozen", [queue], capacity=1)
    [task_id] = run(create_all(server, queue, ["sleep:300"], retries=1, backoff=0.01))
    workers.wait_for(lambda: len(workers.lines("frozen")) == 1)
    frozen.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    workers.start("cpp", "awake", [queue], capacity=1)
    [task] = run(await_all(server, [task_id]))
    assert task.state == pb.Task.SUCCEEDED
    assert task.attempt == 2
    assert time.monotonic() - stopped >= 1.5  # the 2s heartbeat timeout, not sooner
    assert [line[0] for line in workers.lines("awake")] == ["start", "done"]
    frozen.send_signal(signal.SIGCONT)
    # Its stream was ended by the server: the worker process says why and exits non-zero.
    code = frozen.wait(timeout=20)
    stderr = frozen.stderr.read()
    assert code == 1, stderr
    assert "heartbeat timeout" in stderr
    assert run(get_task(server, task_id)).state == pb.Task.SUCCEEDED


async def get_task(server, task_id):
    async with cotask.Client(server.address) as c:
        return await c.get_task(task_id)


@pytest.mark.parametrize("kind", ["cpp", "py"])
def test_cancelling_a_running_task_reaches_its_handler(server, workers, kind):
    queue = queue_name(f"cancel-{kind}")
    workers.start(kind, "holder", [queue], capacity=1)
    [task_id] = run(create_all(server, queue, ["block"]))
    workers.wait_for(lambda: len(workers.lines("holder")) == 1)

    async def cancel():
        async with cotask.Client(server.address) as c:
            assert await c.cancel_task(task_id, "no longer needed")
            [task], _ = await c.wait([task_id], timeout=10)
            return task
    task = run(cancel())
    assert task.state == pb.Task.CANCELLED
    assert task.cancel_message == "no longer needed"
    lines = workers.lines("holder")
    assert lines[1][0] == "cancelled"
    assert lines[1][1] == task_id
    assert lines[1][4] == "no longer needed"


def test_a_handler_that_ignores_a_cancel_loses_its_task_after_the_grace(server, workers):
    queue = queue_name("stubborn")
    workers.start("cpp", "stubborn", [queue], capacity=1)
    [task_id] = run(create_all(server, queue, ["stubborn:2500"]))
    workers.wait_for(lambda: len(workers.lines("stubborn")) == 1)

    async def cancel():
        async with cotask.Client(server.address) as c:
            await c.cancel_task(task_id)
            started = time.monotonic()
            [task], _ = await c.wait([task_id], timeout=10)
            return task, time.monotonic() - started
    task, waited = run(cancel())
    assert task.state == pb.Task.CANCELLED
    assert 0.8 <= waited < 2.0  # the 1s grace, not the handler's 2.5s
    # Its late result is ignored: the task stays CANCELLED.
    workers.wait_for(lambda: len(workers.lines("stubborn")) == 2)
    time.sleep(0.1)
    assert run(get_task(server, task_id)).state == pb.Task.CANCELLED


def test_a_full_queue_pushes_back_and_loses_nothing(server, workers):
    async def scenario():
        async with cotask.Client(server.address) as c:
            made = [await c.create_task(cotask.dispatch("small", f"{i}")) for i in range(3)]
            with pytest.raises(cotask.RpcError) as refused:
                await c.create_task(cotask.dispatch("small", "3"))
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.value.reason == "QUEUE_FULL"
            assert refused.value.metadata["queue"] == "small"
            assert refused.value.metadata["bound"] == "3"
            queue = await c.get_queue("small")
            assert (queue.size, queue.maxsize) == (3, 3)
            # One that waits for room gets in once a worker takes a task, and so does a batch
            # (CreateTasks waits as a whole: its sleep task is made with its dispatch one).
            waiting = asyncio.create_task(
                c.create_task(cotask.dispatch("small", "4"), wait_for_room=10))
            batch = pb.CreateTasksRequest()
            batch.requests.append(cotask.client._task_request(cotask.sleep(0, result=b"s")))
            batch.requests.append(cotask.client._task_request(cotask.dispatch("small", "5")))
            batch.wait_for_room.FromSeconds(10)
            waiting_batch = asyncio.ensure_future(c.stub.CreateTasks(batch))
            await asyncio.sleep(0.2)
            assert not waiting.done() and not waiting_batch.done()
            assert (await c.get_queue("small")).size == 3
            await asyncio.to_thread(workers.start, "cpp", "drainer", ["small"], 1)
            late = await waiting
            late_batch = (await waiting_batch).tasks
            assert [t.request_id for t in late_batch] == [r.request_id for r in batch.requests]
            assert late_batch[1].spec.dispatch.payload == b"5"
            return [m.id for m in made] + [late.id] + [t.id for t in late_batch]

    ids = run(scenario())
    tasks = run(await_all(server, ids))
    assert [t.state for t in tasks] == [pb.Task.SUCCEEDED] * 6
    assert [t.result.output.decode() for t in tasks] == [
        "echo:0", "echo:1", "echo:2", "echo:4", "s", "echo:5"]


def started_order(workers, name, ids, payloads):
    by_id = dict(zip(ids, payloads))
    return [by_id[line[1]] for line in workers.lines(name) if line[0] == "start"]


def test_priority_and_lifo_orders_hold(server, workers):
    async def create(queue, items):
        async with cotask.Client(server.address) as c:
            return [(await c.create_task(cotask.dispatch(queue, payload),
                                         priority=priority)).id for payload, priority in items]
    prio = [("low", -5), ("a", 0), ("urgent", 10), ("b", 0), ("high", 5), ("c", 0)]
    prio_ids = run(create("prio", prio))
    stack = [("1", 0), ("2", 0), ("3", 0), ("4", 0)]
    stack_ids = run(create("stack", stack))
    workers.start("cpp", "prio-worker", ["prio"], capacity=1)
    workers.start("py", "stack-worker", ["stack"], capacity=1)
    run(await_all(server, prio_ids + stack_ids))
    assert started_order(workers, "prio-worker", prio_ids, [p for p, _ in prio]) == [
        "urgent", "high", "a", "b", "c", "low"]
    assert started_order(workers, "stack-worker", stack_ids, [p for p, _ in stack]) == [
        "4", "3", "2", "1"]


def test_python_and_cpp_workers_serve_the_same_queue(server, workers):
    queue = queue_name("mixed")
    workers.start("cpp", "cpp-side", [queue], capacity=2)
    workers.start("py", "py-side", [queue], capacity=2)
    ids = run(create_all(server, queue, ["sleep:20"] * 40 + ["fail:on purpose"]))
    tasks = run(await_all(server, ids))
    assert [t.state for t in tasks[:40]] == [pb.Task.SUCCEEDED] * 40
    assert tasks[40].state == pb.Task.FAILED
    assert "on purpose" in tasks[40].error.message
    ran = {name: [line[1] for line in workers.lines(name) if line[0] == "done"]
           for name in ["cpp-side", "py-side"]}
    assert len(ran["cpp-side"]) >= 5 and len(ran["py-side"]) >= 5
    assert sorted(ran["cpp-side"] + ran["py-side"]) == sorted(ids)
    workers_now = run(list_workers(server))
    mine = [w for w in workers_now if queue in w.queues]
    assert sorted(w.name for w in mine) == ["cpp-side", "py-side"]
    assert all(w.tasks_done >= 5 and not w.leases for w in mine)


@pytest.mark.parametrize("kind", ["cpp", "py"])
def test_sigterm_drains_a_worker(server, workers, kind):
    queue = queue_name(f"drain-{kind}")
    process = workers.start(kind, "draining", [queue], capacity=1)
    [first] = run(create_all(server, queue, ["sleep:500"]))
    workers.wait_for(lambda: len(workers.lines("draining")) == 1)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    [second] = run(create_all(server, queue, ["x"]))
    assert process.wait(timeout=20) == 0
    assert run(get_task(server, first)).state == pb.Task.SUCCEEDED
    assert run(get_task(server, second)).state == pb.Task.QUEUED  # it took nothing new


def test_queues_and_workers_are_in_metrics_and_stats(server, workers):
    queue = queue_name("seen")
    workers.start("cpp", "seen-worker", [queue], capacity=2)
    run(create_all(server, queue, ["block", "block", "block"]))
    workers.wait_for(lambda: len(workers.lines("seen-worker")) == 2)
    with urllib.request.urlopen(f"http://{server.metrics_address}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert f'cotask_queue_depth{{queue="{queue}"}} 1' in text
    assert f'cotask_queue_leased_tasks{{queue="{queue}"}} 2' in text
    assert f'cotask_queue_workers{{queue="{queue}"}} 1' in text
    assert f'cotask_tasks_running{{kind="dispatch",queue="{queue}"}} 2' in text
    assert re.search(r"^cotask_workers_connected [1-9]", text, re.M)

    async def stats():
        async with cotask.Client(server.address) as c:
            call = c.stub.StreamStats(pb.StreamStatsRequest())
            first = await call.read()
            call.cancel()
            return first
    snapshot = run(stats())
    [mine] = [q for q in snapshot.queues if q.name == queue]
    assert (mine.depth, mine.leased, mine.workers) == (1, 2, 1)
    assert snapshot.workers_connected >= 1
    assert [k.kind for k in snapshot.kinds] == ["sleep", "exec", "dispatch"]


def test_the_readmes_python_worker_serves_greetings(server):
    example = os.path.join(HERE, "..", "..", "clients", "python", "examples", "worker.py")
    process = subprocess.Popen(["/usr/bin/python3", example],
                               env={**os.environ, "COTASK_SERVER": server.address})
    try:
        async def greet():
            async with cotask.Client(server.address) as c:
                return await c.run(cotask.dispatch("greetings", "world"))
        task = run(greet())
        assert task.result.output == b"hello, world"
        assert task.progress.message == "thinking"
    finally:
        process.send_signal(signal.SIGTERM)  # it drains, then exits 0
        assert process.wait(timeout=20) == 0


def test_a_malformed_message_ends_the_stream_and_what_came_before_it_counts(server, workers):
    """The server hands a worker's messages to the engine without a round trip each: a message
    that breaks the protocol still ends the stream with INVALID_ARGUMENT naming the field, and
    the result sent just before it is kept."""
    from cotask.v1 import workers_pb2 as workers_pb
    name = queue_name("malformed")

    async def main():
        async with cotask.Client(server.address) as c:
            [task_id] = await create_all(server, name, ["x"])
            call = c.workers_stub.Work()
            await call.write(workers_pb.WorkRequest(hello=workers_pb.WorkerHello(
                name="raw", queues=[name], capacity=1)))
            assert (await call.read()).HasField("registered")
            assignment = await call.read()
            assert assignment.assignment.task.id == task_id
            await call.write(workers_pb.WorkRequest(result=workers_pb.TaskResultReport(
                task=task_id, attempt=assignment.assignment.task.attempt, output=b"done")))
            bad = workers_pb.WorkRequest()
            bad.progress.task = task_id
            bad.progress.attempt = 1
            bad.progress.progress.value = float("nan")
            await call.write(bad)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while await call.read() is not grpc.aio.EOF:
                    pass
            assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ended.value.details() == "progress.progress.value: must be a finite number"
            [task] = await await_all(server, [task_id])
            assert task.state == pb.Task.SUCCEEDED
            assert task.result.output == b"done"
            assert "raw" not in [w.name for w in await c.list_workers()]

    run(asyncio.wait_for(main(), 30))
