"""A worker process for the workers' end-to-end tests, on the Python worker library; the same
behaviours and record lines as worker_process.cc:
    py_worker.py --server=HOST:PORT --queues=a,b --capacity=N --record=FILE [--name=NAME]
SIGTERM drains the worker."""

import argparse
import asyncio
import signal
import time

import cotask


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--queues", default="q")
    parser.add_argument("--capacity", type=int, default=1)
    parser.add_argument("--record", default="/dev/null")
    parser.add_argument("--name", default="py-worker")
    args = parser.parse_args()
    record = open(args.record, "a", buffering=1)

    async def handler(task, ctx):
        who = f"{task.id} {task.attempt} {args.name}"
        record.write(f"start {who}\n")
        payload = task.spec.dispatch.payload.decode()
        try:
            if payload.startswith("stubborn:"):
                time.sleep(int(payload[9:]) / 1000)  # blocks the loop: ignores the cancel
            elif payload == "block":
                await asyncio.Event().wait()
            elif payload.startswith("sleep:"):
                await asyncio.sleep(int(payload[6:]) / 1000)
            elif payload.startswith("fail:"):
                record.write(f"done {who}\n")
                raise RuntimeError(payload[5:])
        except asyncio.CancelledError:
            record.write(f"cancelled {who} {ctx.cancel_message}\n")
            raise
        await ctx.progress(1, "done")
        record.write(f"done {who}\n")
        return "echo:" + payload

    async def run():
        async with cotask.Client(args.server) as client:
            worker = cotask.Worker(client, args.queues.split(","), handler,
                                   capacity=args.capacity, name=args.name)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.drain)
            await worker.run()

    asyncio.run(run())


if __name__ == "__main__":
    main()
