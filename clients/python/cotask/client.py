"""The asyncio client of cotaskd: Client, RemoteTask, TaskGroup, Runner.

Semantics follow asyncio's, remotely:
- `await client.run(spec)` is asyncio.run for one task: the task's result, or its failure
  raised (TaskFailed, TaskTimedOut, TaskCancelled). Cancelling the awaiting coroutine cancels
  the remote task.
- `await client.create_task(spec)` returns a RemoteTask at once; awaiting it waits for the
  task's end (its failure raised); cancelling the awaiting coroutine cancels the remote task.
- `async with client.task_group(name) as tg:` is asyncio.TaskGroup: `tg.create_task(spec)`
  (no await), the exit waits for every child, the first failure cancels the others (and the
  body, wherever it waits), and the failures come out together as an ExceptionGroup.
- `async for event in client.watch(task_id)`: the task's log, resumed after a broken stream.
- `async with client.runner() as r:` is asyncio.Runner: what it creates is cancelled when it
  closes (or when the process dies), unless detached.

Every call has a deadline (timeout, or wait_timeout for calls that wait); every create has a
request id, so gRPC may retry calls on UNAVAILABLE (the channel's service config).
"""

import asyncio
import json
import os
import uuid
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from cotask.v1 import scheduler_pb2 as pb
from cotask.v1 import scheduler_pb2_grpc as pb_grpc
from cotask.v1 import workers_pb2 as workers_pb
from cotask.v1 import workers_pb2_grpc as workers_grpc

DEFAULT_SERVER = "127.0.0.1:50051"


def _service_config():
    """The clients' one service config (clients/service_config.json, copied into the build's
    cotask package): retries of UNAVAILABLE for every call but OpenRunner."""
    import cotask
    for directory in cotask.__path__:
        path = os.path.join(directory, "service_config.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.dumps(json.load(f))
    raise RuntimeError("service_config.json not found: is the build's gen directory on "
                       "PYTHONPATH? (see clients/python/README.md)")


# ------------------------------------------------------------------------------------------
# Errors


class RpcError(Exception):
    """A call the server refused: `code` (grpc.StatusCode), `message`, and its ErrorInfo's
    `reason` (e.g. TASK_NOT_FOUND, INVALID_FIELD) and `metadata` (e.g. {"field": ...})."""

    def __init__(self, code, message, reason="", metadata=None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}


def _rpc_error(error):
    reason, metadata = "", {}
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
                break
    return RpcError(error.code(), error.details(), reason, metadata)


class TaskError(Exception):
    """A task that did not succeed; `task` is the cotask.v1.Task as it ended."""

    def __init__(self, task):
        super().__init__(
            f"task {task.id} {pb.Task.State.Name(task.state)}: {task.error.message}")
        self.task = task


class TaskFailed(TaskError):
    pass


class TaskTimedOut(TaskError, TimeoutError):
    pass


class TaskCancelled(TaskError):
    """Cancelled on the server (by CancelTask, its group, its runner...). Not
    asyncio.CancelledError: that one means the local coroutine was cancelled."""


def _raise_unless_succeeded(task):
    if task.state == pb.Task.SUCCEEDED:
        return task
    if task.state == pb.Task.TIMED_OUT:
        raise TaskTimedOut(task)
    if task.state == pb.Task.CANCELLED:
        raise TaskCancelled(task)
    raise TaskFailed(task)


# ------------------------------------------------------------------------------------------
# Building requests


def _duration(value):
    if isinstance(value, duration_pb2.Duration):
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def sleep(seconds, result=b"", error=None):
    """A timer task: sleeps, then succeeds with `result` (bytes or str), or fails with `error`
    (a message; code UNKNOWN) if given."""
    spec = pb.TaskSpec()
    spec.sleep.duration.CopyFrom(_duration(seconds))
    spec.sleep.result = result.encode() if isinstance(result, str) else result
    if error is not None:
        spec.sleep.error.code = grpc.StatusCode.UNKNOWN.value[0]
        spec.sleep.error.message = error
    return spec


def exec_(*argv, env=None, cwd="", stdin=b"", kill_grace=None):
    """A subprocess: argv[0] an absolute path on the server's --exec_allow list."""
    spec = pb.TaskSpec()
    spec.exec.argv.extend(argv)
    spec.exec.env.update(env or {})
    spec.exec.cwd = cwd
    spec.exec.stdin = stdin.encode() if isinstance(stdin, str) else stdin
    if kill_grace is not None:
        spec.exec.kill_grace.CopyFrom(_duration(kill_grace))
    return spec


def dispatch(queue, payload=b"", content_type=""):
    """A task for a remote worker: put on the named queue; a worker serving it runs it."""
    spec = pb.TaskSpec()
    spec.dispatch.queue = queue
    spec.dispatch.payload = payload.encode() if isinstance(payload, str) else payload
    spec.dispatch.content_type = content_type
    return spec


def _task_request(spec, *, group="", labels=None, timeout=None, delay=None, after=(),
                  retries=0, backoff=1.0, acquire=None, wait_events=(), shield=False,
                  detached=False, runner="", request_id=None, priority=0, wait_for_room=None):
    request = pb.CreateTaskRequest(spec=spec, group=group, detached=detached, runner=runner,
                                   request_id=request_id or uuid.uuid4().hex)
    if wait_for_room is not None:
        request.wait_for_room.CopyFrom(_duration(wait_for_room))
    request.options.priority = priority
    request.labels.update(labels or {})
    options = request.options
    if timeout is not None:
        options.timeout.CopyFrom(_duration(timeout))
    if delay is not None:
        options.delay.CopyFrom(_duration(delay))
    options.after.extend(a.id if isinstance(a, RemoteTask) else a for a in after)
    if retries:
        options.retry.max_attempts = retries + 1
        options.retry.initial_backoff.CopyFrom(_duration(backoff))
    if isinstance(acquire, str):
        acquire = {acquire: 1}
    for name, count in (acquire or {}).items():
        options.acquire.add(semaphore=name, count=count)
    options.wait_events.extend(wait_events)
    options.shield = shield
    return request


# ------------------------------------------------------------------------------------------
# The client


class Client:
    """A connection to one cotaskd. Use `async with Client(...) as c:` (or close())."""

    def __init__(self, server=None, *, timeout=30.0, wait_timeout=3600.0, credentials=None):
        self.server = server or os.environ.get("COTASK_SERVER") or DEFAULT_SERVER
        self.timeout = timeout
        self.wait_timeout = wait_timeout
        options = [("grpc.service_config", _service_config()),
                   ("grpc.keepalive_time_ms", 30_000),
                   ("grpc.keepalive_timeout_ms", 10_000)]
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(self.server, options=options)
        else:
            self._channel = grpc.aio.secure_channel(self.server, credentials, options=options)
        self.stub = pb_grpc.SchedulerStub(self._channel)
        self.workers_stub = workers_grpc.WorkersStub(self._channel)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        await self._channel.close()

    async def _call(self, method, request, *, waits=False):
        try:
            return await method(request, timeout=self.wait_timeout if waits else self.timeout)
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error) from None

    # Tasks.

    async def create_task(self, spec, **options):
        """Creates a task (asyncio.create_task); returns its RemoteTask. Options: group,
        labels, timeout, delay, after, retries, backoff, acquire, wait_events, shield,
        detached, runner, request_id; for dispatch tasks priority, and wait_for_room (seconds
        to wait for room in a full queue instead of failing with RESOURCE_EXHAUSTED)."""
        task = await self._call(self.stub.CreateTask, _task_request(spec, **options))
        return RemoteTask(self, task)

    async def run(self, spec, **options):
        """Creates the task and waits for its end (asyncio.run): the Task if it succeeded, its
        failure raised otherwise. Cancelling the caller cancels the task (unless detached)."""
        task = await self._call(self.stub.Run, _task_request(spec, **options), waits=True)
        return _raise_unless_succeeded(task)

    async def get_task(self, task_id):
        return await self._call(self.stub.GetTask, pb.GetTaskRequest(id=task_id))

    async def list_tasks(self, *, group="", state=0, labels=None, queue=""):
        """Every task matching (all pages), oldest first."""
        request = pb.ListTasksRequest(group=group, state=state, queue=queue)
        request.labels.update(labels or {})
        tasks = []
        while True:
            page = await self._call(self.stub.ListTasks, request)
            tasks.extend(page.tasks)
            if not page.next_page_token:
                return tasks
            request.page_token = page.next_page_token

    async def cancel_task(self, task_id, message=""):
        """True if it was cancelled, False if it had already ended."""
        response = await self._call(self.stub.CancelTask,
                                    pb.CancelTaskRequest(id=task_id, message=message))
        return response.cancelled

    async def wait(self, task_ids, *, return_when=asyncio.ALL_COMPLETED, timeout=None):
        """asyncio.wait over remote tasks: (done, pending) lists of Tasks."""
        request = pb.WaitTasksRequest(
            ids=[t.id if isinstance(t, RemoteTask) else t for t in task_ids],
            return_when={asyncio.ALL_COMPLETED: pb.WaitTasksRequest.ALL_COMPLETED,
                         asyncio.FIRST_COMPLETED: pb.WaitTasksRequest.FIRST_COMPLETED,
                         asyncio.FIRST_EXCEPTION: pb.WaitTasksRequest.FIRST_EXCEPTION}[
                             return_when])
        if timeout is not None:
            request.timeout.CopyFrom(_duration(timeout))
        response = await self._call(self.stub.WaitTasks, request, waits=True)
        return list(response.done), list(response.pending)

    async def watch(self, task_id=None, *, group=None, from_sequence=0, follow=True):
        """The log of a task (or a group): every event once, in order, following it live until
        its last (follow=False: what it holds now). A broken stream (UNAVAILABLE) is resumed
        after the last event seen."""
        request = pb.WatchRequest(from_sequence=from_sequence, no_follow=not follow)
        if group is not None:
            request.group = group
        else:
            request.task = task_id
        failures = 0
        while True:
            call = self.stub.Watch(request, timeout=self.wait_timeout)
            try:
                async for event in call:
                    failures = 0
                    request.from_sequence = event.sequence + 1
                    yield event
                return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise _rpc_error(error) from None
            finally:
                call.cancel()
            await asyncio.sleep(min(0.05 * 2 ** failures, 2.0))
            failures += 1

    # Groups.

    async def create_group(self, name, *, parent="", policy="fail_fast", labels=None,
                           timeout=None, runner="", detached=False):
        request = pb.CreateGroupRequest(
            name=name, parent=parent, runner=runner, detached=detached,
            policy=pb.Group.ALL if policy == "all" else pb.Group.FAIL_FAST,
            request_id=uuid.uuid4().hex)
        request.labels.update(labels or {})
        if timeout is not None:
            request.timeout.CopyFrom(_duration(timeout))
        return await self._call(self.stub.CreateGroup, request)

    async def get_group(self, name):
        return await self._call(self.stub.GetGroup, pb.GetGroupRequest(name=name))

    async def close_group(self, name):
        return await self._call(self.stub.CloseGroup, pb.CloseGroupRequest(name=name))

    async def cancel_group(self, name, message=""):
        return (await self._cancel_group(name, message)).cancelled

    async def _cancel_group(self, name, message):
        return await self._call(self.stub.CancelGroup,
                                pb.CancelGroupRequest(name=name, message=message))

    async def await_group(self, group):
        """Waits until a closed (or cancelled) group has ended; returns it as it ended. `group`
        is the Group as a call returned it (close_group, get_group): the wait follows the
        group's log from group.last_sequence + 1, so it reads one event however many children
        the group had. An OPEN group does not end until it is closed."""
        if group.state not in (pb.Group.OPEN, pb.Group.CLOSED):
            return group
        async for _ in self.watch(group=group.name, from_sequence=group.last_sequence + 1):
            pass
        return await self.get_group(group.name)

    def task_group(self, name, **options):
        """asyncio.TaskGroup on the server (see TaskGroup)."""
        return TaskGroup(self, name, **options)

    # Events, semaphores, runners.

    async def set_event(self, name):
        return await self._call(self.stub.SetEvent, pb.SetEventRequest(name=name))

    async def clear_event(self, name):
        return await self._call(self.stub.ClearEvent, pb.ClearEventRequest(name=name))

    async def get_event(self, name):
        return await self._call(self.stub.GetEvent, pb.GetEventRequest(name=name))

    async def create_semaphore(self, name, limit):
        return await self._call(self.stub.CreateSemaphore,
                                pb.CreateSemaphoreRequest(name=name, limit=limit))

    async def get_semaphore(self, name):
        return await self._call(self.stub.GetSemaphore, pb.GetSemaphoreRequest(name=name))

    # Queues and workers.

    async def create_queue(self, name, *, order="fifo", maxsize=0):
        """Declares a queue: order "fifo", "lifo" or "priority"; maxsize 0: the server's."""
        order_value = pb.Queue.Order.Value(order.upper())
        return await self._call(self.stub.CreateQueue,
                                pb.CreateQueueRequest(name=name, order=order_value,
                                                      maxsize=maxsize))

    async def get_queue(self, name):
        return await self._call(self.stub.GetQueue, pb.GetQueueRequest(name=name))

    async def list_queues(self):
        return list((await self._call(self.stub.ListQueues, pb.ListQueuesRequest())).queues)

    async def pause_queue(self, name):
        return await self._call(self.stub.PauseQueue, pb.PauseQueueRequest(name=name))

    async def resume_queue(self, name):
        return await self._call(self.stub.ResumeQueue, pb.ResumeQueueRequest(name=name))

    async def list_workers(self, queue=""):
        response = await self._call(self.workers_stub.ListWorkers,
                                    workers_pb.ListWorkersRequest(queue=queue))
        return list(response.workers)

    def runner(self, *, labels=None, env=None, debug=False, slow_task_duration=0.1):
        """asyncio.Runner on the server (see Runner)."""
        return Runner(self, labels=labels, env=env, debug=debug,
                      slow_task_duration=slow_task_duration)


class RemoteTask:
    """A task on the server, like an asyncio.Task: `await` it for its Task (its failure
    raised); cancel() it. `task` is the Task as last seen."""

    def __init__(self, client, task=None, creating=None):
        self._client = client
        self.task = task
        self._creating = creating  # a local asyncio.Task still creating it (TaskGroup)

    @property
    def id(self):
        creating = self._creating
        if (self.task is None and creating is not None and creating.done()
                and not creating.cancelled() and creating.exception() is None):
            self.task = creating.result()
        if self.task is None:
            raise RuntimeError("the task is still being created (await it, or leave its group)")
        return self.task.id

    async def _created(self):
        if self.task is None:
            self.task = await self._creating
        return self.task

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self):
        await self._created()
        try:
            async for _ in self._client.watch(self.id):
                pass
        except asyncio.CancelledError:
            # Awaiting an asyncio.Task and being cancelled cancels it: so here.
            await asyncio.shield(self._client.cancel_task(
                self.id, "the coroutine awaiting it was cancelled"))
            raise
        self.task = await self._client.get_task(self.id)
        return _raise_unless_succeeded(self.task)

    async def cancel(self, message=""):
        await self._created()
        return await self._client.cancel_task(self.id, message)

    def __repr__(self):
        state = pb.Task.State.Name(self.task.state) if self.task is not None else "CREATING"
        return f"<RemoteTask {self.task.id if self.task else '?'} {state}>"


class TaskGroup:
    """asyncio.TaskGroup, remotely: a named group on the server.

        async with client.task_group("nightly", policy="fail_fast") as tg:
            tg.create_task(cotask.exec_("/usr/bin/make"))

    create_task() returns a RemoteTask at once (its create is sent in the background). The
    exit closes the group and waits until every child has ended. With the default policy the
    first child that fails or times out cancels the others (on the server) and the body,
    wherever it waits (as asyncio does); policy="all" lets every child finish. Failures come
    out as an ExceptionGroup of TaskFailed / TaskTimedOut (and the body's own exception, if it
    raised one); a body that raises cancels the group first.
    """

    def __init__(self, client, name, *, policy="fail_fast", parent="", labels=None,
                 timeout=None, runner=""):
        self._client = client
        self.name = name
        self._options = dict(policy=policy, parent=parent, labels=labels, timeout=timeout,
                             runner=runner)
        self._policy = policy
        self._creating = []
        self._parent_task = None
        self._watcher = None
        self._aborting = False
        self._in_body = False
        self.group = None

    async def __aenter__(self):
        self.group = await self._client.create_group(self.name, **self._options)
        self._parent_task = asyncio.current_task()
        self._in_body = True
        if self._policy != "all":
            self._watcher = asyncio.create_task(self._watch_for_failure())
        return self

    def create_task(self, spec, **options):
        if not self._in_body:
            raise RuntimeError(f"TaskGroup {self.name} is not active")
        creating = asyncio.ensure_future(
            self._client._call(self._client.stub.CreateTask,
                               _task_request(spec, group=self.name, **options)))
        self._creating.append(creating)
        return RemoteTask(self._client, creating=creating)

    async def _watch_for_failure(self):
        """The first child failure cancels the body, as asyncio.TaskGroup does."""
        async for event in self._client.watch(group=self.name):
            state = event.task_state.state if event.HasField("task_state") else None
            if state in (pb.Task.FAILED, pb.Task.TIMED_OUT) or (
                    event.HasField("group_state") and event.group != self.name
                    and event.group_state.state in (pb.Group.FAILED, pb.Group.TIMED_OUT)):
                if self._in_body and not self._aborting:
                    self._aborting = True
                    self._parent_task.cancel()
                return

    async def __aexit__(self, et, exc, tb):
        self._in_body = False
        created = await asyncio.gather(*self._creating, return_exceptions=True)
        errors = [e for e in created if isinstance(e, BaseException)]
        body_raised = et is not None and not issubclass(et, asyncio.CancelledError)
        cancelled_from_outside = (et is not None and issubclass(et, asyncio.CancelledError)
                                  and not self._aborting)
        if body_raised or cancelled_from_outside:
            seen = (await asyncio.shield(self._client._cancel_group(
                self.name, f"the TaskGroup's body raised {et.__name__}"))).group
        else:
            seen = await asyncio.shield(self._client.close_group(self.name))
        # The exit always waits for every child (as asyncio's does), even when cancelled.
        ended = asyncio.ensure_future(self._client.await_group(seen))
        try:
            self.group = await asyncio.shield(ended)
        except asyncio.CancelledError:
            self.group = await ended
            raise
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
        if self._aborting and et is not None and issubclass(et, asyncio.CancelledError):
            self._parent_task.uncancel()  # our own cancellation of the body: not an error
        for failure in self.group.failures:
            task = pb.Task(id=failure.task, group=self.name, state=failure.state,
                           error=failure.error)
            errors.append(TaskTimedOut(task) if failure.state == pb.Task.TIMED_OUT
                          else TaskFailed(task))
        if body_raised:
            errors.insert(0, exc)
        if errors:
            raise ExceptionGroup(f"unhandled errors in TaskGroup {self.name}", errors)
        if cancelled_from_outside:
            return False  # the CancelledError goes on
        return et is not None and issubclass(et, asyncio.CancelledError) and self._aborting


class Runner:
    """asyncio.Runner, remotely: a session (one OpenRunner stream) that owns what is created
    through it, gives it its labels and env, and cancels on the server what has not ended
    when it closes (or when this process dies), detached tasks and groups excepted.

        async with client.runner(labels={"job": "nightly"}) as r:
            await r.run(cotask.exec_("/usr/bin/make"))

    After close(): `cancelled_tasks`, `cancelled_groups`, `reason`, and with debug,
    `slow_tasks` and `unread_failures` (failed tasks whose outcome nobody read).
    """

    def __init__(self, client, *, labels=None, env=None, debug=False, slow_task_duration=0.1):
        self._client = client
        self._open = pb.OpenRunnerRequest(debug=debug)
        self._open.labels.update(labels or {})
        self._open.env.update(env or {})
        self._open.slow_task_duration.CopyFrom(_duration(slow_task_duration))
        self._call = None
        self._reader = None
        self.id = None
        self.slow_tasks = []
        self.unread_failures = []
        self.cancelled_tasks = []
        self.cancelled_groups = []
        self.reason = ""

    async def __aenter__(self):
        self._call = self._client.stub.OpenRunner()
        try:
            await self._call.write(pb.RunnerRequest(open=self._open))
            first = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error) from None
        if first is grpc.aio.EOF:
            raise _rpc_error(await self._call_error())
        self.id = first.opened.runner
        self._reader = asyncio.create_task(self._read())
        return self

    async def _call_error(self):
        call = self._call
        return grpc.aio.AioRpcError(await call.code(), await call.initial_metadata(),
                                    await call.trailing_metadata(), await call.details())

    async def _read(self):
        call = self._call
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            kind = message.WhichOneof("kind")
            if kind == "slow_task":
                self.slow_tasks.append(message.slow_task)
            elif kind == "unread_failure":
                self.unread_failures.append(message.unread_failure)
            elif kind == "closed":
                self.cancelled_tasks = list(message.closed.cancelled_tasks)
                self.cancelled_groups = list(message.closed.cancelled_groups)
                self.reason = message.closed.reason

    async def create_task(self, spec, **options):
        return await self._client.create_task(spec, runner=self.id, **options)

    async def run(self, spec, **options):
        return await self._client.run(spec, runner=self.id, **options)

    def task_group(self, name, **options):
        return TaskGroup(self._client, name, runner=self.id, **options)

    async def close(self, reason=""):
        """Ends the runner and waits for the server to have cancelled what it owned."""
        if self._call is None:
            return
        call, self._call = self._call, None
        try:
            await call.write(pb.RunnerRequest(close=pb.CloseRunnerRequest(reason=reason)))
            await call.done_writing()
            await self._reader
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error) from None

    async def __aexit__(self, et, exc, tb):
        await asyncio.shield(self.close())
