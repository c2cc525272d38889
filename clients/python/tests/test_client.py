"""The Python client against the real cotaskd (started by tests/python/cotaskd.py), under
Debian's python3: run, RemoteTask, watch (also across a server that closes connections),
errors, runners, and a TaskGroup checked side by side with asyncio's own."""

import asyncio
import os
import re
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "python"))
import cotaskd  # noqa: E402

import cotask  # noqa: E402
from cotask import pb  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with cotaskd.Daemon(["--exec_allow=/bin/sh"]) as daemon:
        yield daemon


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_run_returns_the_task_or_raises_its_failure(server):
    async def main():
        async with cotask.Client(server.address) as c:
            task = await c.run(cotask.exec_("/bin/sh", "-c", "echo hello"))
            assert task.state == pb.Task.SUCCEEDED
            assert task.result.output == b"hello\n"
            with pytest.raises(cotask.TaskFailed) as failed:
                await c.run(cotask.sleep(0.01, error="broken"))
            assert failed.value.task.error.message == "broken"
            with pytest.raises(cotask.TaskTimedOut):
                await c.run(cotask.sleep(10), timeout=0.05)
            with pytest.raises(cotask.RpcError) as missing:
                await c.get_task("t00000000000000")
            assert missing.value.code.name == "NOT_FOUND"
            assert missing.value.reason == "TASK_NOT_FOUND"
            with pytest.raises(cotask.RpcError) as refused:
                await c.run(cotask.exec_("/bin/ls"))
            assert refused.value.reason == "EXEC_NOT_ALLOWED"
    run(main())


def test_a_remote_task_is_awaited_and_watched(server):
    async def main():
        async with cotask.Client(server.address) as c:
            remote = await c.create_task(cotask.sleep(0.05, result="done"))
            task = await remote
            assert task.result.output == b"done"
            states = [pb.Task.State.Name(e.task_state.state)
                      async for e in c.watch(remote.id) if e.HasField("task_state")]
            assert states == ["PENDING", "QUEUED", "RUNNING", "SUCCEEDED"]
            done, pending = await c.wait([remote.id])
            assert [t.id for t in done] == [remote.id] and pending == []
    run(main())


def test_cancelling_the_awaiting_coroutine_cancels_the_remote_task(server):
    async def main():
        async with cotask.Client(server.address) as c:
            # Through Run: the call's cancellation reaches the server.
            awaiting = asyncio.create_task(
                c.run(cotask.sleep(60), labels={"case": "cancel-run"}))
            await asyncio.sleep(0.3)
            awaiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await awaiting
            # Awaiting a RemoteTask: cancelled too.
            remote = await c.create_task(cotask.sleep(60), labels={"case": "cancel-await"})
            awaiting = asyncio.create_task(_await(remote))
            await asyncio.sleep(0.3)
            awaiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await awaiting
            for case in ("cancel-run", "cancel-await"):
                for _ in range(100):
                    [task] = await c.list_tasks(labels={"case": case})
                    if task.state == pb.Task.CANCELLED:
                        break
                    await asyncio.sleep(0.02)
                assert task.state == pb.Task.CANCELLED, case
    run(main())


async def _await(awaitable):
    return await awaitable


# The same scenario, with asyncio.TaskGroup and with cotask's: one child fails soon, its sibling
# would run for a minute, and the body waits. Both must cancel the sibling and the body, and
# raise an ExceptionGroup holding the one failure.
async def local_scenario():
    sibling = None

    async def fail():
        await asyncio.sleep(0.05)
        raise RuntimeError("failed on purpose")

    body_cancelled = False
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fail())
            sibling = tg.create_task(asyncio.sleep(60))
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                body_cancelled = True
                raise
    except ExceptionGroup as group:
        return group, sibling.cancelled(), body_cancelled
    raise AssertionError("no ExceptionGroup")


async def remote_scenario(c):
    body_cancelled = False
    try:
        async with c.task_group("py-fail-fast") as tg:
            tg.create_task(cotask.sleep(0.05, error="failed on purpose"))
            sibling = tg.create_task(cotask.sleep(60))
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                body_cancelled = True
                raise
    except ExceptionGroup as group:
        task = await c.get_task(sibling.id)
        return group, task.state == pb.Task.CANCELLED, body_cancelled
    raise AssertionError("no ExceptionGroup")


def test_a_task_group_behaves_as_asyncios(server):
    async def main():
        local_group, local_sibling_cancelled, local_body_cancelled = await local_scenario()
        async with cotask.Client(server.address) as c:
            remote_group, remote_sibling_cancelled, remote_body_cancelled = (
                await remote_scenario(c))
            assert len(local_group.exceptions) == len(remote_group.exceptions) == 1
            assert isinstance(remote_group.exceptions[0], cotask.TaskFailed)
            assert str(local_group.exceptions[0]) == "failed on purpose"
            assert remote_group.exceptions[0].task.error.message == "failed on purpose"
            assert local_sibling_cancelled and remote_sibling_cancelled
            assert local_body_cancelled and remote_body_cancelled
            # The task is not cancelled afterwards: the group's cancellation was withdrawn.
            assert asyncio.current_task().cancelling() == 0
            group = await c.get_group("py-fail-fast")
            assert group.state == pb.Group.FAILED
    run(main())


def test_a_task_group_of_policy_all_lists_every_failure(server):
    async def main():
        async with cotask.Client(server.address) as c:
            with pytest.raises(ExceptionGroup) as raised:
                async with c.task_group("py-all", policy="all") as tg:
                    tg.create_task(cotask.sleep(0.01, error="one"))
                    tg.create_task(cotask.sleep(0.02, error="two"))
                    ok = tg.create_task(cotask.sleep(0.03))
            messages = sorted(e.task.error.message for e in raised.value.exceptions)
            assert messages == ["one", "two"]
            assert (await ok).state == pb.Task.SUCCEEDED
            async with c.task_group("py-fine") as tg:
                tg.create_task(cotask.sleep(0.01))
            assert tg.group.state == pb.Group.SUCCEEDED
    run(main())


def watch_messages_sent(server):
    """What the server has sent on Watch streams so far (grpc_server_msg_sent_total)."""
    with urllib.request.urlopen(f"http://{server.metrics_address}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.search(r'^grpc_server_msg_sent_total\{grpc_method="Watch",'
                      r'grpc_service="cotask.v1.Scheduler",[^}]*\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_awaiting_a_closed_group_reads_what_follows_the_close_not_its_log(server):
    async def main():
        async with cotask.Client(server.address) as c:
            await c.create_group("py-await")
            quick = [await c.create_task(cotask.sleep(0), group="py-await") for _ in range(100)]
            done, pending = await c.wait(quick)
            assert len(done) == 100 and not pending
            await c.create_task(cotask.sleep(0.3), group="py-await")
            closed = await c.close_group("py-await")
            assert closed.state == pb.Group.CLOSED
            # OPEN, each quick child's arrival and end, the slow one's arrival, CLOSED.
            assert closed.last_sequence == 1 + 2 * 100 + 1 + 1
            before = watch_messages_sent(server)
            ended = await c.await_group(closed)
            assert ended.state == pb.Group.SUCCEEDED and ended.children == 101
            # The slow child's end and the group's, not the 203 events before the close.
            assert watch_messages_sent(server) - before == 2
            assert ended.last_sequence == closed.last_sequence + 2
            # A group that has ended is answered as it is.
            assert await c.await_group(ended) is ended
    run(main())


def test_a_runner_cancels_what_it_owns_when_it_closes(server):
    async def main():
        async with cotask.Client(server.address) as c:
            async with c.runner(labels={"owner": "py"}, debug=True) as r:
                owned = await r.create_task(cotask.sleep(60))
                kept = await r.create_task(cotask.sleep(60), detached=True)
                assert owned.task.labels["owner"] == "py"
            assert r.cancelled_tasks == [owned.id]
            assert "the client closed it" in r.reason
            assert (await c.get_task(owned.id)).state == pb.Task.CANCELLED
            assert (await c.get_task(kept.id)).state == pb.Task.RUNNING
            await c.cancel_task(kept.id)
    run(main())


def test_events_and_semaphores(server):
    async def main():
        async with cotask.Client(server.address) as c:
            gated = await c.create_task(cotask.sleep(0), wait_events=["py-go"])
            assert (await c.get_task(gated.id)).state == pb.Task.PENDING
            assert (await c.set_event("py-go")).is_set
            assert (await gated).state == pb.Task.SUCCEEDED
            assert (await c.create_semaphore("py-sem", 1)).limit == 1
            tasks = [await c.create_task(cotask.sleep(0.01), acquire="py-sem") for _ in range(3)]
            for task in tasks:
                await task
    run(main())


def test_watch_resumes_when_the_server_closes_the_stream():
    with cotaskd.Daemon(["--exec_allow=/bin/sh", "--max_connection_age=300ms",
                         "--max_connection_age_grace=200ms"]) as daemon:
        async def main():
            async with cotask.Client(daemon.address) as c:
                remote = await c.create_task(cotask.exec_(
                    "/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.15; done"))
                sequences, output = [], b""
                async for event in c.watch(remote.id):
                    sequences.append(event.sequence)
                    output += event.output.data
                assert sequences == list(range(1, len(sequences) + 1))
                assert output == b"".join(b"%d\n" % i for i in range(1, 11))
        run(main())
