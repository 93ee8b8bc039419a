"""Scaled out: two workers and two API processes against one Temporal dev server and one PostgreSQL.

Each order is placed through both APIs at once with the same idempotency key, and the orders queue for
providers with a few slots. Provider capacity holds (at the provider and in the slot table, sampled all
along), each run reaches the provider exactly once, both workers did the work, and the ledger and the
books are sound. The processes are the ones a deployment adds (`backoffice worker`, `backoffice api`),
started as tests/faults/components.py starts them, each on a socket of its own handed over at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from components import BACKOFFICE, Component, Stack, catalog, wait_http
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from backoffice.settings import Settings
from backoffice.sockets import listen, port_of
from store import keys
from store.catalog import load_catalog
from store.customers import create_customer, deposit
from store.db import make_engine, make_sessionmaker, transaction

pytestmark = pytest.mark.faults

TEMPLATE_DB = "backoffice_template"  # tests/conftest.py's migrated template
CAPACITY = 3  # slots per provider: ten orders each, so most of them wait in line
ORDERS_PER_SERVICE = 10
SERVICES = {31: "dedupe", 32: "plain"}  # components.catalog: one service per provider
QUANTITY = 300  # the simulator's service 102 takes about three seconds for it
FINAL = {"Completed", "Partial", "Canceled"}
CLOSE_WITHIN = 240  # seconds, on a loaded two-core machine


def _dsn(url: str, database: str | None = None) -> str:
    made = make_url(url).set(drivername="postgresql")
    if database is not None:
        made = made.set(database=database)
    return made.render_as_string(hide_password=False)


@dataclass
class Scaled:
    stack: Stack
    workers: list[Component]
    api_urls: list[str]
    keys: dict[str, str]
    customer_id: int


@dataclass
class Peaks:
    """The most slots held per provider, and the most orders in progress at the simulator per provider,
    seen by a sampler running beside the orders."""

    held: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    at_provider: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: int = 0


@pytest.fixture(scope="module")
async def scaled(postgres_url: str, template_url: str) -> AsyncIterator[Scaled]:
    name = f"scale_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(postgres_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    home = Path(tempfile.mkdtemp(prefix="backoffice-scale-"))
    stack = Stack(home, url)
    sockets = {role: listen("127.0.0.1", 0) for role in ("worker2", "api2")}
    worker2_fd, api2_fd = sockets["worker2"].fileno(), sockets["api2"].fileno()
    worker2 = Component(
        "worker2",
        [*BACKOFFICE, "worker", "--metrics-fd", str(worker2_fd)],
        stack.env,
        home / "worker2.log",
        (worker2_fd,),
    )
    api2 = Component(
        "api2", [*BACKOFFICE, "api", "--fd", str(api2_fd)], stack.env, home / "api2.log", (api2_fd,)
    )
    api2_url = f"http://127.0.0.1:{port_of(sockets['api2'])}"
    few_slots = catalog(stack.simulator_url)
    for provider in few_slots["providers"]:
        provider["capacity"] = CAPACITY
    engine = make_engine(url, pool_size=2)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            await load_catalog(session, few_slots)
            customer, _ = await create_customer(session, "Scaled")
            await deposit(session, customer.id, 1_000_000_000, key="scale-deposit", actor="test")
            made = {role: await keys.create_key(session, role) for role in ("storefront", "ops")}
    finally:
        await engine.dispose()
    try:
        await stack.start()
        worker2.start()
        api2.start()
        await wait_http(f"{api2_url}/healthz", api2)
        yield Scaled(stack, [stack.worker, worker2], [stack.api_url, api2_url], made, customer.id)
    finally:
        api2.stop()
        worker2.stop()
        stack.stop()
        for sock in sockets.values():
            sock.close()
        admin = await asyncpg.connect(_dsn(postgres_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _both_workers_polling(client: Client, workers: list[Component]) -> None:
    """Until each worker process polls the order task queue (its identity is pid@host)."""
    pids = {f"{w.proc.pid}@" for w in workers if w.proc is not None}
    deadline = time.monotonic() + 90
    while True:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=Settings().temporal_task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        polling = {pid for pid in pids if any(p.identity.startswith(pid) for p in answer.pollers)}
        if polling == pids:
            return
        for worker in workers:
            assert worker.alive, worker.tail()
        assert time.monotonic() < deadline, f"not polling: {pids - polling}"
        await asyncio.sleep(0.5)


async def _sample(database_url: str, sim: httpx.AsyncClient, peaks: Peaks) -> None:
    """Slots held per provider (the back office's view) and orders still running at the simulator per
    provider (the provider's view; the link names the provider), until cancelled."""
    db = await asyncpg.connect(_dsn(database_url))  # its own: the test reads on another meanwhile
    try:
        await _sample_on(db, sim, peaks)
    finally:
        await db.close()


async def _sample_on(db: asyncpg.Connection, sim: httpx.AsyncClient, peaks: Peaks) -> None:
    while True:
        for row in await db.fetch(
            "SELECT provider_id, count(*) AS held FROM provider_slots"
            " WHERE granted_at IS NOT NULL GROUP BY provider_id"
        ):
            peaks.held[row["provider_id"]] = max(peaks.held[row["provider_id"]], row["held"])
        running = Counter(
            o["link"].rsplit("/", 1)[-1].split("_")[1]
            for o in (await sim.get("/sim/orders")).json()
            if o["status"] not in FINAL
        )
        for provider, count in running.items():
            peaks.at_provider[provider] = max(peaks.at_provider[provider], count)
        peaks.samples += 1
        await asyncio.sleep(0.05)


async def _place_through_both(scaled: Scaled, service: int, n: int) -> tuple[list[int], set[int]]:
    """The same order sent to both APIs at once; (their status codes, the order ids they answered)."""
    body = {
        "customer_id": scaled.customer_id,
        "service_id": service,
        "link": f"https://instagram.com/scale_{SERVICES[service]}_{n}",
        "quantity": QUANTITY,
    }
    headers = {"Authorization": f"Bearer {scaled.keys['storefront']}", "Idempotency-Key": f"s-{service}-{n}"}

    async def one(url: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await http.post("/v1/orders", json=body, headers=headers)

    answers = await asyncio.gather(*(one(url) for url in scaled.api_urls))
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
    return sorted(a.status_code for a in answers), {a.json()["id"] for a in answers}


async def _identities(client: Client, order_ids: list[int]) -> set[str]:
    """The workers (pid@host) that started a workflow task or an activity task of these orders."""
    seen: set[str] = set()
    for order_id in order_ids:
        async for event in client.get_workflow_handle(f"order-{order_id}").fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                seen.add(event.activity_task_started_event_attributes.identity)
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                seen.add(event.workflow_task_started_event_attributes.identity)
    return seen


async def _closed(db: asyncpg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    """The orders once every one is closed."""
    deadline = time.monotonic() + CLOSE_WITHIN
    while True:
        rows = await db.fetch(
            "SELECT id, link, service_id, status, phase, delivered FROM orders WHERE id = ANY($1)", ids
        )
        if all(r["phase"] == "closed" for r in rows):
            return [dict(r) for r in rows]
        assert time.monotonic() < deadline, [dict(r) for r in rows if r["phase"] != "closed"]
        await asyncio.sleep(0.5)


async def test_two_workers_and_two_apis_keep_capacity_exactly_once_and_the_books(scaled: Scaled) -> None:
    stack = scaled.stack
    client = await Client.connect(stack.temporal_address)
    await _both_workers_polling(client, scaled.workers)
    db = await asyncpg.connect(_dsn(stack.database_url))
    peaks = Peaks()
    try:
        async with httpx.AsyncClient(base_url=stack.simulator_url, timeout=30) as sim:
            (await sim.post("/sim/scenario", json={"scenario": "normal"})).raise_for_status()
            sampler = asyncio.create_task(_sample(stack.database_url, sim, peaks))
            try:
                placed = await asyncio.gather(
                    *(
                        _place_through_both(scaled, service, n)
                        for service in SERVICES
                        for n in range(ORDERS_PER_SERVICE)
                    )
                )
                ids = [next(iter(answered)) for _, answered in placed]
                orders = await _closed(db, ids)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            sim_orders = (await sim.get("/sim/orders")).json()
            adds = (await sim.get("/sim/requests", params={"action": "add"})).json()["requests"]
        providers = {r["name"]: r["id"] for r in await db.fetch("SELECT id, name FROM providers")}
        submissions = Counter(
            r["order_id"]
            for r in await db.fetch("SELECT order_id FROM provider_submissions WHERE order_id = ANY($1)", ids)
        )
    finally:
        await db.close()

    # Intake across two API processes: one order per idempotency key, created by one of them.
    for codes, answered in placed:
        assert codes == [200, 201]
        assert len(answered) == 1
    assert len(set(ids)) == len(SERVICES) * ORDERS_PER_SERVICE
    # Provider capacity holds across both workers, and was reached (so the line was exercised).
    assert peaks.samples > 10
    for name in SERVICES.values():
        assert peaks.held[providers[name]] == CAPACITY, (name, dict(peaks.held))
        assert peaks.at_provider[name] <= CAPACITY, (name, dict(peaks.at_provider))
    # Each run submitted exactly once: one submission row, one `add`, one order at the provider.
    taken = Counter(o["link"] for o in sim_orders)
    sent = Counter(r["params"].get("link") for r in adds)
    for order in orders:
        assert (order["status"], order["delivered"]) == ("Completed", QUANTITY), order
        assert submissions[order["id"]] == 1, order
        assert sent[order["link"]] == 1, order
        assert taken[order["link"]] == 1, order
    # Both workers took part.
    identities = await _identities(client, ids)
    for worker in scaled.workers:
        assert worker.proc is not None
        assert any(i.startswith(f"{worker.proc.pid}@") for i in identities), (worker.name, identities)
    check = stack.ledger_check()
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ledger is sound" in check.stdout
    books = stack.check()
    assert books.returncode == 0, books.stdout + books.stderr
    print(
        f"\n{len(ids)} orders through {len(scaled.api_urls)} APIs and {len(scaled.workers)} workers; "
        f"most slots held {dict(peaks.held)}, most running at the provider {dict(peaks.at_provider)} "
        f"(capacity {CAPACITY}, {peaks.samples} samples)"
    )
