"""(3) `POST /v1/orders` at a fixed arrival rate, open loop, measured twice: alone (the stack's worker
stopped, so orders only queue) and while the worker drains the burst.

Open loop: each send is scheduled at t0 + i/rate and measured from that time, so a slow answer cannot hold
back later sends (no coordinated omission). The same sender serves both measurements.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stack import NO_REFILL, Bench, cpu_seconds, pct, say, stack_processes, worker_process

TARGET_P99 = 0.100  # seconds


@dataclass
class Intake:
    latencies: list[float]  # seconds from the scheduled send to the answer, sorted
    sent: int
    accepted: int  # answered 201
    errors: int  # any other answer, or none
    elapsed: float  # from the first scheduled send to the last answer
    ids: list[int]

    def line(self) -> str:
        ms = [x * 1000 for x in (pct(self.latencies, 50), pct(self.latencies, 99), self.latencies[-1])]
        met = pct(self.latencies, 99) <= TARGET_P99 and self.accepted == self.sent
        return (
            f"p50 {ms[0]:.1f} ms  p99 {ms[1]:.1f} ms  max {ms[2]:.1f} ms  "
            f"accepted {self.accepted}/{self.sent} ({self.accepted / self.elapsed:.1f}/s)  "
            f"errors {self.errors}  {'met' if met else 'missed'}"
        )


async def open_loop(b: Bench, rate: float, seconds: float, tag: str) -> Intake:
    """Send at t0 + i/rate exactly; latency counts from the scheduled time, not from the actual send."""
    total = int(rate * seconds)
    latencies: list[float] = []
    ids: list[int] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    last = t0

    async def one(i: int) -> None:
        nonlocal errors, last
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        try:
            response = await b.place(NO_REFILL, f"{tag}{i}x{uuid.uuid4().hex[:6]}")
        except httpx.HTTPError:
            response = None
        last = max(last, loop.time())
        latencies.append(loop.time() - scheduled)
        if response is None or response.status_code != 201:
            errors += 1
        else:
            ids.append(response.json()["id"])

    # The sender's own full collections (100 ms and more, the bench's heap being large) would show as the
    # server's latency: what lives now is moved out of the collector's sight for the run, and the run's
    # own garbage waits for the end.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        gc.enable()
        gc.unfreeze()
    return Intake(sorted(latencies), total, len(ids), errors, last - t0, ids)


async def part_3(b: Bench, args: Any) -> None:
    say(
        f"(3) intake: POST /v1/orders at {args.rate:.0f}/s open loop for {args.seconds:.0f} s, twice "
        f"(target p99 <= {TARGET_P99 * 1000:.0f} ms, all accepted) ..."
    )
    worker = worker_process(b.stack)
    # SIGSTOP: the worker holds its connections but runs nothing; the orders' workflows wait in Temporal.
    apis = stack_processes(b.stack, "api")
    worker.suspend()
    try:
        cpu_before = cpu_seconds(apis)
        alone = await open_loop(b, args.rate, args.seconds, "ia")
        cpu_per_order = (cpu_seconds(apis) - cpu_before) / max(1, alone.accepted)
    finally:
        worker.resume()
    say(f"    alone (worker stopped):      {alone.line()}")
    say(
        f"    API CPU per accepted order:  {cpu_per_order * 1000:.1f} ms "
        f"({len(apis)} API process{'es' if len(apis) > 1 else ''}; its workflow start included)"
    )
    await b.until_closed(alone.ids, "the orders taken while the worker was stopped to close")
    draining = await open_loop(b, args.rate, args.seconds, "id")
    say(f"    while the worker drains it:  {draining.line()}")
    await b.until_closed(draining.ids, "the open-loop orders to close")
