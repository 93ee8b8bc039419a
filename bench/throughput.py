"""The back office's performance figures in one run (`make bench`), against the embedded stack.

Starts `backoffice dev` on free ports (port 0) in a scratch folder and prints:

1. baseline: one-activity workflows per second on the same Temporal server, with a worker of the same
   settings (a default `Worker`, as worker.py builds it) in this process;
2. orders per second end to end (simulator `instant`, a service without refill), and the ratio to (1);
3. `POST /v1/orders` latency p50/p99 and throughput at a fixed arrival rate, open loop: each send is
   scheduled at a fixed time and measured from that time, so a slow answer cannot hold back later sends
   (no coordinated omission);
4. history events, activity executions and provider calls for a one-run order (on the dev server), and for
   a 10-run drip-feed with a 30-day refill window (on the time-skipping test server, with the same
   activities against the same database and simulator, so the 30 days pass in seconds);
5. worker RSS with N orders waiting in their refill windows (10 000 by default; `--waiting`).

    .venv/bin/python bench/throughput.py [--orders 300] [--rate 50] [--seconds 20] [--waiting 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from baseline_workflow import OneActivity, noop  # noqa: E402

from activities import build_activities  # noqa: E402
from backoffice.devstack import venv_binary  # noqa: E402
from backoffice.settings import Settings  # noqa: E402
from store import keys  # noqa: E402
from store.catalog import load_catalog  # noqa: E402
from store.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from store.orders import OrderRequest, order_input, place_order  # noqa: E402
from workflows import search_attributes as sa  # noqa: E402
from workflows.order import OrderWorkflow  # noqa: E402

NO_REFILL = 2  # demo catalog: Instagram Followers, no refill, 100..50000
REFILL = 1  # demo catalog: 30-day refill
DRIP_REFILL = 90  # added by the bench: drip-feed with a 30-day refill window


def free_port() -> int:
    """For the Temporal CLI only: an external binary that takes no socket, so its port is a guess."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------------ the stack


def start_stack(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    args = [sys.executable, "-m", "backoffice.cli", "dev", "--data-dir", str(data_dir)]
    # Port 0: `backoffice dev` binds any free port and hands it over; the Temporal CLI binds its own.
    args += ["--api-port", "0", "--simulator-port", "0", "--worker-metrics-port", "0"]
    args += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    log = open(data_dir / "stack.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env | {"LOG_LEVEL": "WARNING"}
    )
    deadline = time.monotonic() + 120
    while not (data_dir / "dev.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((data_dir / "stack.log").read_text()[-3000:])
        time.sleep(0.2)
    return proc, json.loads((data_dir / "dev.json").read_text())


def worker_process(stack: subprocess.Popen[bytes]) -> psutil.Process:
    for child in psutil.Process(stack.pid).children():
        if child.cmdline()[-1:] == ["worker"]:
            return child
    raise SystemExit("no worker process under the dev stack")


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Bench:
    info: dict[str, Any]
    http: httpx.AsyncClient
    sim: httpx.AsyncClient
    db: asyncpg.Pool
    client: Client
    customer_id: int

    async def place(self, service: int, n: str, quantity: int = 100, **extra: Any) -> httpx.Response:
        body = {
            "customer_id": self.customer_id,
            "service_id": service,
            "link": f"https://instagram.com/b{n}",
            "quantity": quantity,
        } | extra
        return await self.http.post("/v1/orders", json=body, headers={"Idempotency-Key": f"bench-{n}"})

    async def open_orders(self, ids: list[int] | None = None) -> int:
        if ids is None:
            return int(await self.db.fetchval("SELECT count(*) FROM orders WHERE phase <> 'closed'"))
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM orders WHERE phase <> 'closed' AND id = ANY($1)", ids
            )
        )

    async def count_in(self, phase: str) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM orders WHERE phase = $1", phase))


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------------------------------ (1) baseline


async def baseline(client: Client, count: int, concurrency: int) -> float:
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


# ------------------------------------------------------------------------------------------ (2) end to end


async def end_to_end(b: Bench, count: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    ids: list[int] = []

    async def one(n: int) -> None:
        async with gate:
            response = await b.place(NO_REFILL, f"e2e{n}")
        response.raise_for_status()
        ids.append(response.json()["id"])

    t0 = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))

    async def closed() -> bool:
        return await b.open_orders(ids) == 0

    await until(closed, 600, "the end-to-end orders to close")
    return count / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------ (3) open loop


async def open_loop(b: Bench, rate: float, seconds: float) -> tuple[list[float], float, int]:
    """Send at t0 + i/rate exactly; latency counts from the scheduled time, not from the actual send."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        response = await b.place(NO_REFILL, f"ol{i}x{uuid.uuid4().hex[:6]}")
        latencies.append(loop.time() - scheduled)
        if response.status_code != 201:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = loop.time() - t0
    await until(lambda: _none_open(b), 600, "the open-loop orders to close")
    return sorted(latencies), total / elapsed, errors


async def _none_open(b: Bench) -> bool:
    return await b.open_orders() == 0


def pct(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# ------------------------------------------------------------------------------------------ (4) per order


@dataclass
class Footprint:
    runs: int  # workflow runs (continue-as-new)
    events: int
    activities: int
    provider_calls: int


async def footprint(
    client: Client, handle: WorkflowHandle[Any, Any], first_run_id: str
) -> tuple[int, int, int]:
    """(workflow runs, history events, activity executions) over every run of the order's chain."""
    runs = events = activities = 0
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs += 1
        run_id = None
        for event in history.events:
            events += 1
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                activities += 1
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs, events, activities


async def provider_calls(b: Bench, link: str, order_id: int) -> int:
    """API v2 requests about this order: its `add`s, and every status/refill call naming its provider ids."""
    provider_ids = {
        str(r["provider_order_id"])
        for r in await b.db.fetch(
            "SELECT provider_order_id FROM provider_submissions"
            " WHERE order_id = $1 AND provider_order_id IS NOT NULL",
            order_id,
        )
    }
    log = (await b.sim.get("/sim/requests")).json()["requests"]
    count = 0
    for entry in log:
        params = entry["params"]
        named = {part.strip() for key in ("order", "orders") for part in params.get(key, "").split(",")}
        if params.get("link") == link or named & provider_ids:
            count += 1
        elif entry["action"] == "refill_status":
            count += 1 if provider_ids else 0  # the bench asks for one order's refills only
    return count


async def one_run_order(b: Bench) -> Footprint:
    response = await b.place(NO_REFILL, "single", quantity=500)
    order = response.json()

    async def closed() -> bool:
        return await b.open_orders([order["id"]]) == 0

    await until(closed, 120, "the one-run order to close")
    handle = b.client.get_workflow_handle(f"order-{order['id']}")
    first = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    runs, events, acts = await footprint(b.client, handle, first or (await handle.describe()).run_id or "")
    return Footprint(runs, events, acts, await provider_calls(b, order["link"], order["id"]))


async def drip_feed_order(b: Bench) -> Footprint:
    """10 runs an hour apart, then a 30-day refill window: on the time-skipping server, same activities."""
    url = b.info["database_url"]
    engine = make_engine(url, pool_size=10)
    sessions = make_sessionmaker(engine)
    simulator_url = str(b.sim.base_url).rstrip("/")
    async with transaction(sessions) as session:
        await load_catalog(session, drip_catalog(simulator_url))
        secret = await keys.create_key(session, "storefront", label="bench")
        caller = await keys.authenticate(session, secret)
        assert caller is not None
        link = "https://instagram.com/bdrip"
        order, _ = await place_order(
            session,
            caller,
            OrderRequest(
                customer_id=b.customer_id,
                service_id=DRIP_REFILL,
                quantity=1000,
                link=link,
                runs=10,
                interval=60,
            ),
            idempotency_key="bench-drip",
        )
        started = order_input(order)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in sa.ALL},
            )
        )
        async with httpx.AsyncClient() as http:
            queue = "bench-drip"
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[OrderWorkflow],
                activities=build_activities(sessions, http),
            ):
                handle = await env.client.start_workflow(
                    OrderWorkflow.run, started, id=f"order-{started.order_id}", task_queue=queue
                )
                await handle.result()
                runs, events, acts = await footprint(env.client, handle, handle.first_execution_run_id or "")
        calls = await provider_calls(b, link, started.order_id)
    finally:
        await env.shutdown()
        await engine.dispose()
    return Footprint(runs, events, acts, calls)


def drip_catalog(simulator_url: str) -> dict[str, Any]:
    path = ROOT / "store" / "demo_catalog.json"
    demo = json.loads(path.read_text().replace("{simulator_url}", simulator_url))
    service = dict(demo["services"][1])  # no-refill drip-feed followers, given a 30-day window
    service |= {"id": DRIP_REFILL, "name": "Bench drip-feed with refill", "refill_days": 30, "refill_max": 3}
    providers = [p | {"capacity": 100_000} for p in demo["providers"]]  # as the bench set it
    return {"providers": providers, "services": [service]}


# ------------------------------------------------------------------------------------------ (5) memory


async def waiting_rss(
    b: Bench, worker: psutil.Process, count: int, concurrency: int
) -> list[tuple[int, float]]:
    """Worker RSS (MiB) as orders of the refill service pile up in their refill windows."""
    gate = asyncio.Semaphore(concurrency)
    points = [(await b.count_in("refill_window"), worker.memory_info().rss / 2**20)]
    step = max(count // 5, 1)
    placed = 0
    while placed < count:
        batch = range(placed, min(placed + step, count))

        async def one(n: int) -> None:
            async with gate:
                (await b.place(REFILL, f"wait{n}")).raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in batch))
        placed = batch.stop

        async def waiting(target: int = placed) -> bool:
            return await b.count_in("refill_window") >= target

        await until(waiting, 1800, f"{placed} orders in their refill windows")
        await asyncio.sleep(3)  # let the worker settle after the last tasks
        rss = worker.memory_info().rss / 2**20
        points.append((placed, rss))
        say(
            f"  {placed:>6} waiting: worker RSS {rss:.0f} MiB "
            f"({len(batch) / (time.perf_counter() - t0):.0f} orders/s)"
        )
    return points


# ------------------------------------------------------------------------------------------ main


async def run(info: dict[str, Any], stack: subprocess.Popen[bytes], args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {info['keys']['storefront']}"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    db = await asyncpg.create_pool(asyncpg_dsn(info["database_url"]), min_size=1, max_size=4)
    # The demo provider admits 50 orders at a time (its `capacity`); a benchmark of the back office's own
    # throughput must not measure that queue.
    await db.execute("UPDATE providers SET capacity = 100000")
    sim_url = str(await db.fetchval("SELECT api_url FROM providers WHERE name = 'simulator'"))
    sim_url = sim_url.removesuffix("/api/v2")
    client = await Client.connect(info["temporal_address"], namespace=info["namespace"])
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
        b = Bench(info, http, sim, db, client, customer["id"])
        worker = worker_process(stack)

        base = 0.0
        if 1 in args.parts or 2 in args.parts:
            say(f"(1) baseline: {args.baseline} one-activity workflows, {args.concurrency} in flight ...")
            base = await baseline(client, args.baseline, args.concurrency)
            say(f"    {base:.1f} workflows/s")

        if 2 in args.parts:
            say(
                f"(2) end to end: {args.orders} orders (simulator instant, no refill), "
                f"{args.concurrency} in flight ..."
            )
            e2e = await end_to_end(b, args.orders, args.concurrency)
            say(f"    {e2e:.1f} orders/s, ratio to the baseline {e2e / base:.2f} (target >= 0.5)")

        if 3 in args.parts:
            say(f"(3) open loop: POST /v1/orders at {args.rate:.0f}/s for {args.seconds:.0f} s ...")
            lat, thr, errors = await open_loop(b, args.rate, args.seconds)
            say(
                f"    p50 {pct(lat, 50) * 1000:.1f} ms  p99 {pct(lat, 99) * 1000:.1f} ms  "
                f"max {lat[-1] * 1000:.1f} ms  "
                f"throughput {thr:.1f}/s  errors {errors} (target p99 <= 100 ms)"
            )

        if 4 in args.parts:
            say("(4) per order ...")
            await sim.post("/sim/reset")
            await sim.post("/sim/scenario", json={"scenario": "instant"})
            single = await one_run_order(b)
            say(
                f"    one run:  {single.events} history events, {single.activities} activity executions, "
                f"{single.provider_calls} provider calls, {single.runs} workflow run(s) "
                "(targets <= 60 events, <= 4 provider calls)"
            )
            drip = await drip_feed_order(b)
            say(
                "    10-run drip-feed + 30-day refill window (time-skipping server): "
                f"{drip.events} history events "
                f"over {drip.runs} workflow run(s), {drip.activities} activity executions, "
                f"{drip.provider_calls} provider calls"
            )

        if 5 in args.parts:
            say(f"(5) worker RSS with {args.waiting} orders waiting in refill windows ...")
            points = await waiting_rss(b, worker, args.waiting, args.concurrency)
            (n0, r0), (n1, r1) = points[0], points[-1]
            per_order = (r1 - r0) / max(n1 - n0, 1) * 1024
            say(
                f"    {n1} waiting: worker RSS {r1:.0f} MiB "
                f"(idle {r0:.0f} MiB, {per_order:.1f} KiB per order)"
            )
            # The worker keeps at most WORKER_CACHED_ORDERS orders in memory; the rest wait at no cost.
            cache = Settings().worker_cached_orders
            full = [rss for n, rss in points if n >= cache]
            if full:
                say(
                    f"    beyond the worker's cache of {cache} orders RSS stays flat: "
                    f"{min(full):.0f}-{max(full):.0f} MiB, so about that at 10 000 waiting"
                )
            else:
                slope = (r1 - r0) / max(n1 - n0, 1)
                say(
                    f"    the worker caches at most {cache} orders: at 10 000 waiting about "
                    f"{r0 + slope * cache:.0f} MiB (linear up to the cache, flat beyond)"
                )
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=int, default=1000, help="one-activity workflows for (1)")
    parser.add_argument("--orders", type=int, default=300, help="orders for (2)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second for (3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of (3)")
    parser.add_argument(
        "--waiting", type=int, default=10_000, help="orders waiting in refill windows for (5)"
    )
    parser.add_argument("--parts", default="1,2,3,4,5", help="which figures to measure, e.g. 3 or 1,2")
    args = parser.parse_args()
    args.parts = {int(p) for p in args.parts.split(",")}
    say(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    with tempfile.TemporaryDirectory(prefix="backoffice-bench-") as scratch:
        say("starting the embedded stack (backoffice dev) ...")
        stack, info = start_stack(Path(scratch))
        try:
            asyncio.run(run(info, stack, args))
        finally:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=120)


if __name__ == "__main__":
    main()
