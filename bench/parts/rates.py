"""(1) the baseline, (2) orders per second end to end and (6) the same with a second worker process."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from bench.parts.baseline_workflow import OneActivity, noop
from bench.stack import NO_REFILL, Bench, ExtraWorker, say


async def baseline(client: Client, count: int, concurrency: int) -> float:
    """One-activity workflows per second on the same server, with a default `Worker` in this process."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await client.execute_workflow(OneActivity.run, n, id=f"{queue}-{n}", task_queue=queue)

    async with Worker(client, task_queue=queue, workflows=[OneActivity], activities=[noop]):
        await asyncio.gather(*(one(n) for n in range(20)))  # warm up
        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(20, 20 + count)))
        return count / (time.perf_counter() - t0)


async def end_to_end(b: Bench, count: int, concurrency: int, tag: str = "e2e") -> float:
    """Orders per second from the first `POST /v1/orders` until the last order closed."""
    t0 = time.perf_counter()
    ids = await b.place_many(NO_REFILL, [f"{tag}{n}" for n in range(count)], concurrency)
    await b.until_closed(ids, f"the {tag} orders to close")
    return count / (time.perf_counter() - t0)


async def part_1_2(b: Bench, args: Any) -> None:
    say(f"(1) baseline: {args.baseline} one-activity workflows, {args.concurrency} in flight ...")
    base = await baseline(b.client, args.baseline, args.concurrency)
    say(f"    {base:.1f} workflows/s")
    if 2 not in args.parts:
        return
    say(
        f"(2) end to end: {args.orders} orders (simulator instant, no refill), "
        f"{args.concurrency} in flight ..."
    )
    e2e = await end_to_end(b, args.orders, args.concurrency)
    say(f"    {e2e:.1f} orders/s, ratio to the baseline {e2e / base:.2f} (target >= 0.5)")


async def part_6(b: Bench, args: Any) -> None:
    """The same end-to-end run with the stack's worker alone, then with a second `backoffice worker`."""
    say(
        f"(6) scale-out: {args.orders} orders end to end with one worker, then with two worker processes "
        f"({args.concurrency} in flight) ..."
    )
    one = await end_to_end(b, args.orders, args.concurrency, tag="so1x")
    say(f"    one worker:  {one:.1f} orders/s")
    async with ExtraWorker(b, "worker2"):
        two = await end_to_end(b, args.orders, args.concurrency, tag="so2x")
    say(
        f"    two workers: {two:.1f} orders/s (x{two / one:.2f}); both share these {args.cores} cores with "
        "PostgreSQL, Temporal, the API and the simulator"
    )
