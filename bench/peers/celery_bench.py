"""The Celery peer: a Redis server and a Celery worker of 2 processes on loopback, then N no-op
tasks sent and every result awaited. Prints one JSON line per run:
{"scenario": "celery", "per_second": tasks a second, end to end}.
    /usr/bin/python3 celery_bench.py N RUNS"""

import gc
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main(count, runs):
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    env = {**os.environ, "CELERY_REDIS": f"redis://127.0.0.1:{port}/0", "PYTHONPATH": HERE}
    worker = None
    try:
        wait_for_port(port)
        worker = subprocess.Popen(
            ["/usr/bin/python3", "-m", "celery", "-A", "celery_app", "worker", "--concurrency=2",
             "--pool=prefork", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"], env=env, cwd=HERE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.environ.update(env)
        sys.path.insert(0, HERE)
        from celery_app import app, noop  # noqa: E402
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start")
        noop.delay().get(timeout=30)  # warm
        for _ in range(runs):
            start = time.perf_counter()
            results = [noop.delay() for _ in range(count)]
            for result in results:
                result.get(timeout=600)
            print(json.dumps({"scenario": "celery",
                              "per_second": count / (time.perf_counter() - start)}), flush=True)
            # Results let go while Redis still runs (each unsubscribes as it is collected).
            results.clear()
            del result
        gc.collect()
    finally:
        for process in [worker, redis]:
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
