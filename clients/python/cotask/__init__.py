"""cotask for Python: an asyncio-native client of cotaskd.

    import cotask

    async with cotask.Client() as c:                       # $COTASK_SERVER or 127.0.0.1:50051
        task = await c.run(cotask.exec_("/bin/echo", "hi"))  # asyncio.run, remotely
        async with c.task_group("nightly") as tg:          # asyncio.TaskGroup, remotely
            tg.create_task(cotask.sleep(1))
            tg.create_task(cotask.exec_("/usr/bin/make"))
        async for event in c.watch(task.id):
            ...

    async def handler(task, ctx):                          # a worker of the queue "emails"
        return b"sent " + task.spec.dispatch.payload
    await cotask.Worker(c, ["emails"], handler, capacity=4).run()

The generated stubs (cotask.v1.scheduler_pb2, ..._grpc) come from the build
(build/<preset>/clients/python/gen on PYTHONPATH): see clients/python/README.md.
"""

import pkgutil

# The generated cotask.v1 lives in the build tree, next on the path.
__path__ = pkgutil.extend_path(__path__, __name__)

from cotask.client import (  # noqa: E402
    Client,
    RemoteTask,
    Runner,
    RpcError,
    TaskCancelled,
    TaskError,
    TaskFailed,
    TaskGroup,
    TaskTimedOut,
    dispatch,
    exec_,
    sleep,
)
from cotask.v1 import scheduler_pb2 as pb  # noqa: E402
from cotask.worker import TaskContext, Worker  # noqa: E402

__all__ = [
    "Client",
    "RemoteTask",
    "Runner",
    "RpcError",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskGroup",
    "TaskContext",
    "TaskTimedOut",
    "Worker",
    "dispatch",
    "exec_",
    "pb",
    "sleep",
]
