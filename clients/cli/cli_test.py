"""The `cotask` command against the real cotaskd: exit codes, output streamed as it comes,
JSON that parses, usage errors, Ctrl-C, and a killed `cotask run` taking its task with it.
Run by ctest with COTASKD and COTASK naming the binaries, under Debian's python3."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "python"))
import cotaskd  # noqa: E402

COTASK = os.environ.get("COTASK", "cotask")


@pytest.fixture(scope="module")
def server():
    with cotaskd.Daemon(["--exec_allow=/bin/sh"]) as daemon:
        yield daemon


def cotask(server, *args, timeout=30):
    return subprocess.run(
        [COTASK, "--server", server.address, *args],
        capture_output=True, text=True, timeout=timeout)


def task_json(server, task_id):
    done = cotask(server, "get", task_id, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_state(server, task_id, state, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = task_json(server, task_id)
        if task["state"] == state:
            return task
        time.sleep(0.05)
    raise AssertionError(f"{task_id} is {task['state']}, not {state}")


@pytest.mark.parametrize("script,code", [
    ("exit 0", 0),
    ("echo out; echo err >&2; exit 3", 3),
    ("kill -KILL $$", 128 + 9),
    ("kill -TERM $$", 128 + 15),
])
def test_run_mirrors_the_exit_code(server, script, code):
    done = cotask(server, "run", "--", "/bin/sh", "-c", script)
    assert done.returncode == code, done.stderr
    if code == 3:
        assert done.stdout == "out\n"
        assert done.stderr.startswith("err\n")
        assert "FAILED: /bin/sh exited with code 3" in done.stderr


def test_run_of_a_failing_timer_and_a_timeout(server):
    assert cotask(server, "run", "--sleep", "10ms", "--fail", "broken").returncode == 1
    timed_out = cotask(server, "run", "--sleep", "10s", "--task-timeout", "50ms")
    assert timed_out.returncode == 124
    assert "TIMED_OUT" in timed_out.stderr


def test_run_streams_output_before_the_result(server):
    run = subprocess.Popen(
        [COTASK, "--server", server.address, "run", "--", "/bin/sh", "-c",
         "echo first; sleep 2; echo second"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline() == "first\n"
        # The task still runs, and so does the command: the line came as it was written.
        assert run.poll() is None
        listed = json.loads(cotask(server, "list", "--state", "running", "-o", "json").stdout)
        assert any(t["spec"]["exec"]["argv"][-1].startswith("echo first")
                   for t in listed.get("tasks", []))
        assert run.stdout.readline() == "second\n"
        assert run.wait(timeout=10) == 0
    finally:
        run.kill()
        run.wait()


def test_json_output_is_the_apis_json(server):
    done = cotask(server, "run", "--sleep", "5ms", "--result", "hi", "-o", "json")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert task["state"] == "SUCCEEDED"
    assert task["id"].startswith("t")
    assert task["spec"]["sleep"]["duration"] == "0.005s"
    assert task["result"]["output"] == "aGk="  # bytes are base64 in proto3 JSON
    listed = json.loads(cotask(server, "list", "-o", "json").stdout)
    assert task["id"] in [t["id"] for t in listed["tasks"]]
    yaml = cotask(server, "get", task["id"], "-o", "yaml")
    assert "state: SUCCEEDED\n" in yaml.stdout


def test_a_bad_flag_prints_usage_and_exits_2(server):
    done = cotask(server, "run", "--no-such-flag")
    assert done.returncode == 2
    assert "Usage:" in done.stderr
    assert "--no-such-flag" in done.stderr
    bad_duration = cotask(server, "run", "--sleep", "soon")
    assert bad_duration.returncode == 2
    assert '"soon" is not a duration' in bad_duration.stderr
    assert cotask(server, "frobnicate").returncode == 2
    assert cotask(server, "list", "--state", "sleepy").returncode == 2
    assert cotask(server, "run").returncode == 2  # nothing to run


def test_errors_are_one_line_with_the_status_code(server):
    done = cotask(server, "get", "t00000000000000")
    assert done.returncode == 1
    assert done.stderr.startswith("cotask: NOT_FOUND: no task t00000000000000")
    assert done.stderr.count("\n") == 1
    refused = cotask(server, "run", "--", "/bin/ls")
    assert refused.returncode == 1
    assert refused.stderr.startswith("cotask: PERMISSION_DENIED: ")


def test_ctrl_c_cancels_the_task_and_exits_130(server):
    run = subprocess.Popen(
        [COTASK, "--server", server.address, "run", "--", "/bin/sh", "-c", "echo up; sleep 60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline() == "up\n"
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=20) == 130
    stderr = run.stderr.read()
    task_id = stderr.split("cancelling ")[1].split()[0]
    task = task_json(server, task_id)
    assert task["state"] == "CANCELLED"
    assert task["cancelMessage"] == "cotask run was interrupted"


def test_a_killed_run_takes_its_task_with_it_unless_detached(server):
    ids = {}
    for detach in (False, True):
        run = subprocess.Popen(
            [COTASK, "--server", server.address, "run", *(["--detach"] if detach else []),
             "--label", f"case=killed-{detach}", "--", "/bin/sh", "-c", "echo up; sleep 60"],
            stdout=subprocess.PIPE, text=True)
        assert run.stdout.readline() == "up\n"
        run.kill()
        run.wait()
        listed = json.loads(cotask(server, "list", "-l", f"case=killed-{detach}", "-o",
                                   "json").stdout)
        ids[detach] = listed["tasks"][0]["id"]
    cancelled = wait_for_state(server, ids[False], "CANCELLED")
    assert "runner " in cancelled["cancelMessage"]
    assert task_json(server, ids[True])["state"] == "RUNNING"
    assert cotask(server, "cancel", ids[True]).returncode == 0
    wait_for_state(server, ids[True], "CANCELLED")


def test_logs_prints_what_there_is_or_follows(server):
    # The task prints one line, then waits for a file the test makes once it has seen `logs`
    # print just that line (however slow the machine), then prints the second.
    gate = f"/tmp/cotask-cli-test-{os.getpid()}-{time.monotonic_ns()}"
    task_id = cotask(server, "submit", "--", "/bin/sh", "-c",
                     f"echo one; while [ ! -e {gate} ]; do sleep 0.05; done; echo two").stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while cotask(server, "logs", task_id).stdout != "one\n":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        open(gate, "w").close()
        followed = cotask(server, "logs", "-f", task_id)
        assert followed.stdout == "one\ntwo\n"
    finally:
        if os.path.exists(gate):
            os.remove(gate)


def test_groups_events_and_waiting(server):
    assert cotask(server, "group", "create", "cli-g", "--policy", "all").returncode == 0
    ok = cotask(server, "submit", "-g", "cli-g", "--sleep", "10ms").stdout.strip()
    bad = cotask(server, "submit", "-g", "cli-g", "--sleep", "10ms", "--fail", "no").stdout.strip()
    waited = cotask(server, "group", "wait", "cli-g")
    assert waited.returncode == 1
    assert "FAILED" in waited.stdout
    assert cotask(server, "wait", ok).returncode == 0
    assert cotask(server, "wait", ok, bad).returncode == 1
    gated = cotask(server, "submit", "--sleep", "1ms", "--wait-event", "cli-go").stdout.strip()
    assert task_json(server, gated)["state"] == "PENDING"
    assert cotask(server, "event", "set", "cli-go").returncode == 0
    wait_for_state(server, gated, "SUCCEEDED")


def test_the_readmes_cpp_example_runs(server):
    done = subprocess.run([os.environ["CLIENT_EXAMPLE"], "/bin/sh", "-c", "echo hello"],
                          env={**os.environ, "COTASK_SERVER": server.address},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "SUCCEEDED hello\n"


@pytest.mark.parametrize("command", [
    "run", "submit", "get", "list", "watch", "logs", "cancel", "wait", "group", "group create",
    "group get", "group close", "group cancel", "group watch", "group wait", "group list",
    "event", "event set", "event clear", "event get", "semaphore", "semaphore create",
    "semaphore get", "queue", "queue create", "queue get", "queue list", "queue pause",
    "queue resume", "workers"])
def test_every_command_has_help_with_examples(command):
    done = subprocess.run([COTASK, *command.split(), "--help"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0
    assert "Usage:" in done.stdout and "Examples:" in done.stdout


def test_tables_fit_the_terminal(server):
    for _ in range(3):
        cotask(server, "submit", "-l", "a-rather-long-label-key=and-an-even-longer-label-value",
               "--", "/bin/sh", "-c", "echo a command line long enough to need cutting; exit 0")
    for width in (60, 100):
        done = subprocess.run([COTASK, "--server", server.address, "list", "-o", "wide"],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "COLUMNS": str(width)})
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) >= 4 and lines[0].startswith("ID")
        assert all(len(line) <= width for line in lines), (width, lines)


def test_queues_and_workers(server):
    created = cotask(server, "queue", "create", "cli-q", "--order", "priority", "--maxsize", "5")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[1].split() == [
        "cli-q", "priority", "0/5", "0", "0", "0", "no"]
    submitted = cotask(server, "submit", "--queue", "cli-q", "--payload", "hi", "--priority", "7")
    assert submitted.returncode == 0, submitted.stderr
    task = task_json(server, submitted.stdout.strip())
    assert task["spec"]["dispatch"] == {"queue": "cli-q", "payload": "aGk="}
    assert task["options"]["priority"] == 7
    listed = json.loads(cotask(server, "queue", "list", "-o", "json").stdout)
    [queue] = [q for q in listed["queues"] if q["name"] == "cli-q"]
    assert (queue["order"], queue["size"], queue["depth"]) == ("PRIORITY", "1", "1")
    paused = cotask(server, "queue", "pause", "cli-q")
    assert paused.stdout.splitlines()[1].split()[-1] == "yes"
    assert cotask(server, "queue", "resume", "cli-q").stdout.splitlines()[1].split()[-1] == "no"
    in_queue = json.loads(cotask(server, "list", "--queue", "cli-q", "-o", "json").stdout)
    assert [t["id"] for t in in_queue["tasks"]] == [task["id"]]
    assert cotask(server, "cancel", task["id"]).returncode == 0  # no worker will take it
    assert cotask(server, "submit", "--payload", "x", "--sleep", "1s").returncode == 2
    missing = cotask(server, "queue", "get", "no-such-queue")
    assert missing.returncode == 1
    assert missing.stderr.startswith("cotask: NOT_FOUND: no queue named no-such-queue")

    # The README's C++ worker serves "greetings": `cotask run --queue` gets its result.
    worker = subprocess.Popen([os.environ["WORKER_EXAMPLE"]], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "COTASK_SERVER": server.address})
    try:
        ran = cotask(server, "run", "--queue", "greetings", "--payload", "world")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "hello, world\n"
        shown = cotask(server, "workers", "-q", "greetings", "-o", "json")
        [one] = json.loads(shown.stdout)["workers"]
        assert one["queues"] == ["greetings"] and one["capacity"] == 4
        table = cotask(server, "workers").stdout.splitlines()
        assert table[0].split()[:3] == ["ID", "NAME", "QUEUES"]
        assert table[1].split()[2:5] == ["greetings", "0/4", "1"]
    finally:
        worker.send_signal(signal.SIGTERM)  # it drains, then exits 0
        assert worker.wait(timeout=20) == 0, worker.stderr.read()
