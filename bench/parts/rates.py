"""(1) the baseline, (2) orders per second end to end and (6) the same with a second worker process."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from bench.parts.baseline_workflow import OneActivity, noop
from bench.stack import NO_REFILL, Bench, ExtraWorker, cpu_by_role, say


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
    """(1) and (2) in alternating rounds, so the ratio compares figures taken a minute apart on the same
    server: this machine's speed drifts by a third and more over minutes (the baseline alone gave 13 to 26
    workflows/s on one stack), which a single baseline before a single order run reads as a ratio."""
    rounds, both = (args.rounds, True) if 2 in args.parts else (1, False)
    what = f"{args.baseline} one-activity workflows"
    if both:
        what += f", then {args.orders} orders (simulator instant, no refill)"
    title = "(1) baseline and (2) end to end" if both else "(1) baseline"
    say(f"{title}: {rounds} round(s) of {what}, {args.concurrency} in flight ...")
    base_seconds = order_seconds = 0.0
    ratios: list[float] = []
    base_cpu: Counter[str] = Counter()
    order_cpu: Counter[str] = Counter()
    for n in range(rounds):
        before = cpu_by_role(b.stack, b.data_dir)
        base = await baseline(b.client, args.baseline, args.concurrency)
        between = cpu_by_role(b.stack, b.data_dir)
        base_seconds += args.baseline / base
        base_cpu.update({role: between[role] - before.get(role, 0.0) for role in between})
        if not both:
            break
        e2e = await end_to_end(b, args.orders, args.concurrency, tag=f"e2e{n}x")
        after = cpu_by_role(b.stack, b.data_dir)
        order_seconds += args.orders / e2e
        order_cpu.update({role: after[role] - between.get(role, 0.0) for role in after})
        ratios.append(e2e / base)
        say(f"    round {n + 1}: baseline {base:.1f} workflows/s, orders {e2e:.1f}/s, ratio {e2e / base:.2f}")
    base_rate = rounds * args.baseline / base_seconds
    say(f"    (1) {base_rate:.1f} workflows/s")
    # The warm-up workflows (20 a round) are not timed but run inside the baseline's CPU window.
    base_cpu_line = _cpu_line(base_cpu, rounds * (args.baseline + 20))
    if not both:
        say(f"    CPU a baseline workflow: {base_cpu_line}")
        return
    e2e_rate = rounds * args.orders / order_seconds
    spread = f"rounds {min(ratios):.2f} to {max(ratios):.2f}, median {statistics.median(ratios):.2f}"
    say(
        f"    (2) {e2e_rate:.1f} orders/s, ratio to the baseline {e2e_rate / base_rate:.2f} "
        f"(target >= 0.5; {spread})"
    )
    say(f"    CPU a baseline workflow: {base_cpu_line}")
    say(f"    CPU an order:            {_cpu_line(order_cpu, rounds * args.orders)}")


def _cpu_line(used: Counter[str], count: int) -> str:
    """Milliseconds of CPU a unit, by part of the stack, biggest first, and their sum."""
    ms = {role: 1000 * seconds / count for role, seconds in used.items()}
    parts = ", ".join(f"{role} {value:.1f}" for role, value in sorted(ms.items(), key=lambda kv: -kv[1]))
    return f"{sum(ms.values()):.1f} ms ({parts})"


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
