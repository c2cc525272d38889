"""An asyncio worker of cotaskd: runs the dispatch tasks of named queues, taken over one
Workers.Work stream.

    async def handler(task, ctx):              # task: cotask.pb.Task
        await ctx.progress(0.5, "halfway")
        return b"result"                        # bytes or str: the task's result

    async with cotask.Client() as client:
        worker = cotask.Worker(client, ["emails"], handler, capacity=4)
        await worker.run()                      # until worker.drain() or worker.stop()

Each task runs its handler as an asyncio task. Its return value is the task's result
(SUCCEEDED); an exception fails it (FAILED: an RpcError with its code and message, anything
else UNKNOWN with the exception's type and message), retried under the task's retry policy.
Cancelling the task on the server (CancelTask, its group, its timeout, the server's drain)
cancels the handler's coroutine at once, with the cancel message (asyncio's Task.cancel(msg));
the server waits a grace period for it to end, then ends the task CANCELLED whatever the
handler does. Heartbeats are sent for the worker; if the process dies or the stream breaks,
the server gives the tasks it held back to their queues.
"""

import asyncio
import os
import socket

import grpc
from google.rpc import status_pb2

from cotask.client import RpcError, _duration, _rpc_error
from cotask.v1 import scheduler_pb2 as pb
from cotask.v1 import workers_pb2 as workers_pb

_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]


class TaskContext:
    """What a handler has besides its task: progress, output, and the cancel message."""

    def __init__(self, worker, task):
        self._worker = worker
        self.task = task
        self.id = task.id
        self.attempt = task.attempt
        self.payload = task.spec.dispatch.payload
        self.content_type = task.spec.dispatch.content_type
        self.cancel_message = ""

    async def progress(self, value, message=""):
        """Reports progress: kept as the task's progress and in its event log."""
        self._worker._send(workers_pb.WorkRequest(progress=workers_pb.TaskProgress(
            task=self.id, attempt=self.attempt,
            progress=pb.Progress(value=value, message=message))))

    async def output(self, data, stream="stdout"):
        """Output for the task's event log (watchers see it live)."""
        data = data.encode() if isinstance(data, str) else data
        self._worker._send(workers_pb.WorkRequest(output=workers_pb.TaskOutput(
            task=self.id, attempt=self.attempt, data=data,
            stream=pb.Output.STDERR if stream == "stderr" else pb.Output.STDOUT)))


class Worker:
    """A worker: `await run()` serves `queues` with `handler(task, ctx)`, `capacity` tasks at
    once, until drain() has finished, stop() was called, or the stream failed (RpcError; call
    run() again to reconnect)."""

    def __init__(self, client, queues, handler, *, capacity=1, name=None, labels=None,
                 heartbeat_timeout=None):
        self._client = client
        self._handler = handler
        self._hello = workers_pb.WorkerHello(
            name=name or f"{socket.gethostname()}-{os.getpid()}", queues=list(queues),
            capacity=capacity)
        self._hello.labels.update(labels or {})
        if heartbeat_timeout is not None:
            self._hello.heartbeat_timeout.CopyFrom(_duration(heartbeat_timeout))
        self.id = None
        self._outbox = None
        self._call = None
        self._running = {}  # task id -> (TaskContext, asyncio.Task)
        self._draining = False
        self._stopped = False

    def _send(self, message):
        if self._outbox is not None:
            self._outbox.put_nowait(message)

    def drain(self):
        """Takes no new task and finishes those it holds; run() then returns."""
        if not self._draining:
            self._draining = True
            self._send(workers_pb.WorkRequest(drain=workers_pb.DrainWorker()))

    def stop(self):
        """Ends the stream now: handlers are cancelled, the server gives their tasks back."""
        self._stopped = True
        if self._call is not None:
            self._call.cancel()

    async def _write(self, call):
        while True:
            message = await self._outbox.get()
            if message is None:
                await call.done_writing()
                return
            await call.write(message)

    async def _heartbeats(self, interval):
        while True:
            await asyncio.sleep(interval)
            self._send(workers_pb.WorkRequest(heartbeat=workers_pb.Heartbeat()))

    async def _handle(self, ctx):
        report = workers_pb.TaskResultReport(task=ctx.id, attempt=ctx.attempt)
        try:
            result = await self._handler(ctx.task, ctx)
            if result is None:
                result = b""
            report.output = result.encode() if isinstance(result, str) else bytes(result)
        except asyncio.CancelledError:
            if self._call is None or self._call.done():
                raise  # the worker is stopping: the server has the task back
            report.error.CopyFrom(status_pb2.Status(
                code=_CANCELLED, message=ctx.cancel_message or "cancelled"))
        except RpcError as error:
            report.error.CopyFrom(status_pb2.Status(code=error.code.value[0],
                                                    message=error.message))
        except Exception as error:  # noqa: BLE001 - any failure of the handler fails the task
            report.error.CopyFrom(status_pb2.Status(
                code=_UNKNOWN, message=f"{type(error).__name__}: {error}"))
        finally:
            self._running.pop(ctx.id, None)
        self._send(workers_pb.WorkRequest(result=report))

    async def run(self):
        if self._stopped:
            return
        self._outbox = asyncio.Queue()
        self._outbox.put_nowait(workers_pb.WorkRequest(hello=self._hello))
        call = self._client.workers_stub.Work()
        self._call = call
        writer = asyncio.create_task(self._write(call))
        heartbeats = None
        try:
            first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("kind") != "registered":
                raise grpc.aio.AioRpcError(await call.code(), await call.initial_metadata(),
                                           await call.trailing_metadata(), await call.details())
            self.id = first.registered.worker
            interval = first.registered.heartbeat_interval.ToTimedelta().total_seconds()
            heartbeats = asyncio.create_task(self._heartbeats(interval))
            if self._draining:
                self._send(workers_pb.WorkRequest(drain=workers_pb.DrainWorker()))
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                kind = message.WhichOneof("kind")
                if kind == "assignment":
                    ctx = TaskContext(self, message.assignment.task)
                    self._running[ctx.id] = (ctx, asyncio.create_task(self._handle(ctx)))
                elif kind == "cancel":
                    cancel = message.cancel
                    running = self._running.get(cancel.task)
                    if running is not None and running[0].attempt == cancel.attempt:
                        running[0].cancel_message = cancel.message
                        running[1].cancel(cancel.message)
                        self._send(workers_pb.WorkRequest(cancel_ack=workers_pb.CancelAck(
                            task=cancel.task, attempt=cancel.attempt)))
                elif kind == "drained":
                    self._send(None)
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise grpc.aio.AioRpcError(code, await call.initial_metadata(),
                                           await call.trailing_metadata(), await call.details())
        except grpc.aio.AioRpcError as error:
            if not (self._stopped and error.code() == grpc.StatusCode.CANCELLED):
                raise _rpc_error(error) from None
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            self._call = None
            handlers = [task for _, task in self._running.values()]
            for task in handlers:
                task.cancel("the worker's stream ended")
            for task in [writer, heartbeats]:
                if task is not None:
                    task.cancel()
            await asyncio.gather(writer, *(t for t in [heartbeats] if t), *handlers,
                                 return_exceptions=True)
            self._running.clear()
            self._outbox = None
