"""The in-process peer: CPython asyncio running N trivial coroutines in one TaskGroup.
Prints one JSON line: {"scenario": "asyncio", "per_second": tasks a second}.
    /usr/bin/python3 asyncio_taskgroup.py N"""

import asyncio
import json
import sys
import time


async def noop():
    return None


async def main(count):
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(count):
            tg.create_task(noop())
    return count / (time.perf_counter() - start)


if __name__ == "__main__":
    count = int(sys.argv[1])
    print(json.dumps({"scenario": "asyncio", "per_second": asyncio.run(main(count))}))
