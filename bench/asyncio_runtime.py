#!/usr/bin/python3
"""The runtime benchmarks' counterparts in CPython asyncio, timed the same way.

Prints one JSON object per line: {"name": ..., "ns_per_op": [one figure per repetition]}.
Usage: asyncio_runtime.py [repetitions]
"""
import asyncio
import json
import sys
import time

BATCH = 1024


async def trivial():
    return None


async def taskgroup_child(n):
    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(trivial())
            if i % BATCH == BATCH - 1:
                await asyncio.sleep(0)


async def sleep_zero(n):
    for _ in range(n):
        await asyncio.sleep(0)


async def semaphore_handoff(rounds):
    a, b = asyncio.Semaphore(1), asyncio.Semaphore(1)
    await b.acquire()

    async def ping_pong(mine, theirs):
        for _ in range(rounds):
            await mine.acquire()
            theirs.release()

    await asyncio.gather(ping_pong(a, b), ping_pong(b, a))


async def queue_handoff(n):
    queue = asyncio.Queue(maxsize=1)

    async def produce():
        for i in range(n):
            await queue.put(i)

    async def consume():
        total = 0
        for _ in range(n):
            total += await queue.get()
        return total

    await asyncio.gather(produce(), consume())


CASES = [
    # name, coroutine factory, operations per run
    ("TaskGroupChild", lambda: taskgroup_child(200_000), 200_000),
    ("SleepZeroRoundTrip", lambda: sleep_zero(200_000), 200_000),
    ("SemaphoreHandOff", lambda: semaphore_handoff(50_000), 100_000),
    ("QueueHandOff", lambda: queue_handoff(100_000), 100_000),
]


def main():
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for name, factory, ops in CASES:
        figures = []
        for _ in range(repetitions):
            start = time.perf_counter_ns()
            asyncio.run(factory())
            figures.append((time.perf_counter_ns() - start) / ops)
        print(json.dumps({"name": name, "ns_per_op": figures}), flush=True)


if __name__ == "__main__":
    main()
