"""A worker in a few lines (README.md shows it): serves the queue "greetings", 4 tasks at a
time, until SIGTERM, which drains it. The server is $COTASK_SERVER or 127.0.0.1:50051. Try it
with `cotask run --queue greetings --payload world`."""

import asyncio
import signal

import cotask


async def greet(task, ctx):
    await ctx.progress(0.5, "thinking")
    await asyncio.sleep(0.1)  # cancelling the task cancels the handler here
    return "hello, " + task.spec.dispatch.payload.decode()


async def main():
    async with cotask.Client() as client:
        worker = cotask.Worker(client, ["greetings"], greet, capacity=4)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.drain)
        await worker.run()


asyncio.run(main())
