"""The back office's performance figures in one run (`make bench`), against the embedded stack.

Starts `backoffice dev` on free ports (port 0) in a scratch folder and prints:

1. baseline: one-activity workflows per second on the same Temporal server, with a default `Worker` in
   this process;
2. orders per second end to end (simulator `instant`, a service without refill), and the ratio to (1);
   (1) and (2) run in alternating rounds (`--rounds`), each figure over all its rounds;
3. `POST /v1/orders` latency p50/p99/max, accepted/s and errors at a fixed arrival rate, open loop, twice:
   alone (the stack's worker stopped, so orders only queue) and while the worker drains the burst;
4. history events, activity executions and provider calls for a one-run order (on the dev server), and for
   a 10-run drip-feed with a 30-day refill window (on the time-skipping test server);
5. worker RSS at 0, 1/4, ... N orders waiting in their refill windows (10 000 by default; `--waiting`),
   put there the real way or by the faster path that gives the same workflow state (`--waiting-path`);
6. orders per second end to end with the stack's worker alone and with a second `backoffice worker`;
7. provider `status` calls per order per hour with N orders in flight on a slow service (1 000 by default;
   `--in-flight`), as sent (batched) and as one call per poll would have been.

The parts run in the order 1, 2, 6, 3, 4, 5, 7 (7 leaves its orders in flight). The modules are in
bench/parts/; docs/performance.md records a run.

    .venv/bin/python bench/throughput.py [--parts 1,2,3] [--waiting 2000] [--waiting-path real]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.parts import footprint, intake, polling, rates, waiting
from bench.stack import Bench, asyncpg_dsn, say, start_stack, stop_stack
from store.db import make_engine, make_sessionmaker

Part = Callable[[Bench, Any], Awaitable[None]]
# In the order they run: (6) beside (2), whose figure it repeats; (7) last, its orders stay in flight.
PARTS: list[tuple[set[int], Part]] = [
    ({1, 2}, rates.part_1_2),
    ({6}, rates.part_6),
    ({3}, intake.part_3),
    ({4}, footprint.part_4),
    ({5}, waiting.part_5),
    ({7}, polling.part_7),
]


async def run(info: dict[str, Any], stack: Any, data_dir: Path, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {info['keys']['storefront']}"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    db = await asyncpg.create_pool(asyncpg_dsn(info["database_url"]), min_size=1, max_size=4)
    engine = make_engine(info["database_url"], pool_size=8, name="backoffice-bench")
    # The demo provider admits 50 orders at a time (its `capacity`); a benchmark of the back office's own
    # throughput must not measure that queue.
    await db.execute("UPDATE providers SET capacity = 100000")
    sim_url = str(await db.fetchval("SELECT api_url FROM providers WHERE name = 'simulator'"))
    sim_url = sim_url.removesuffix("/api/v2")
    client = await Client.connect(info["temporal_address"], namespace=info["namespace"])
    try:
        async with (
            httpx.AsyncClient(base_url=info["api_url"], headers=headers, timeout=60, limits=limits) as http,
            httpx.AsyncClient(base_url=sim_url, timeout=30) as sim,
        ):
            (await sim.post("/sim/scenario", json={"scenario": "instant"})).raise_for_status()
            customer = (await http.post("/v1/customers", json={"name": "bench"})).json()
            await http.post(
                f"/v1/customers/{customer['id']}/deposits",
                json={"amount": "1000000"},
                headers={"Idempotency-Key": "bench-deposit"},
            )
            b = Bench(info, stack, data_dir, http, sim, db, make_sessionmaker(engine), client, customer["id"])
            for wanted, part in PARTS:
                if wanted & args.parts:
                    await part(b, args)
    finally:
        await db.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--baseline", type=int, default=500, help="one-activity workflows for (1), in each round"
    )
    parser.add_argument(
        "--orders", type=int, default=300, help="orders for (2), in each round, and for each run of (6)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of (1) and (2)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight for (2), (5), (6)")
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second for (3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run of (3)")
    parser.add_argument(
        "--waiting", type=int, default=10_000, help="orders waiting in refill windows for (5)"
    )
    parser.add_argument(
        "--waiting-path",
        choices=("fast", "real"),
        default="fast",
        help="(5): orders through the API (real), or placed in process and started settled (fast)",
    )
    parser.add_argument("--in-flight", type=int, default=1000, help="orders being polled for (7)")
    parser.add_argument("--poll-window", type=float, default=300.0, help="simulated seconds (7) counts")
    parser.add_argument("--parts", default="1,2,3,4,5,6,7", help="which figures to measure, e.g. 3 or 1,2")
    args = parser.parse_args()
    args.parts = {int(p) for p in args.parts.split(",")}
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.cores = os.cpu_count()
    say(f"machine: {args.cores} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    # SIGTERM (a `timeout`, a kill) unwinds like Ctrl-C, so the finally below stops the stack it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="backoffice-bench-") as scratch:
        say("starting the embedded stack (backoffice dev) ...")
        stack, info = start_stack(Path(scratch))
        try:
            asyncio.run(run(info, stack, Path(scratch), args))
        finally:
            stop_stack(stack)


if __name__ == "__main__":
    main()
