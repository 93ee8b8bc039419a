"""Helpers for the ops tests: orders delivered by the real worker against the provider simulator."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from backoffice.settings import Settings
from backoffice.sockets import listen, port_of
from backoffice.telemetry import metered_http_client
from backoffice.temporal_client import workflow_id
from store.db import transaction
from store.models import Order, Provider
from store.orders import OrderRequest, order_input, place_order
from support import SERVICE, Shop, open_shop
from worker import build_worker
from workflows.models import OrderInput

SIM_KEY = "sim-demo-key"
SIM_SERVICE = "104"  # the simulator's fast service: 500 units a second after a second's start delay


def temporal_port() -> int:
    """A free port for a Temporal dev server started as its own process. The Temporal CLI is an external
    binary that binds its ports itself and takes no socket, so this stays a guess (bound, closed, bound
    again by it) that another program could win; every server of the project's own gets its socket handed
    over instead (`--fd`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def settings_for(db_url: str, env: WorkflowEnvironment, **extra: Any) -> Settings:
    return Settings(
        database_url=db_url,
        temporal_address=temporal_address(env),
        temporal_namespace=env.client.namespace,
        temporal_task_queue=f"ops-{uuid.uuid4().hex[:8]}",
        **extra,
    )


async def open_sim_shop(
    sessions: async_sessionmaker[AsyncSession],
    api_url: str = "http://sim/api/v2",
    routes: list[dict[str, str]] | None = None,
    **service: Any,
) -> Shop:
    """Service 10 routed to the simulator's service 104 (alpha, unless `routes`), providers polled every
    second."""
    shop = await open_shop(
        sessions, routes=routes or [{"provider": "alpha", "service": SIM_SERVICE}], **service
    )
    async with transaction(sessions) as session:
        await session.execute(
            update(Provider).values(poll_interval_seconds=1, api_url=api_url, api_key=SIM_KEY)
        )
    return shop


@asynccontextmanager
async def sim_worker(
    client: Client, sessions: async_sessionmaker[AsyncSession], sim: Any, task_queue: str
) -> AsyncIterator[str]:
    """The real worker (activities, interceptors, metered http client), its providers answered in process."""
    async with (
        metered_http_client(httpx.ASGITransport(app=sim)) as http,
        build_worker(client, task_queue, sessions, http),
    ):
        yield task_queue


@contextmanager
def simulator_process() -> Iterator[str]:
    """`backoffice simulator` on a socket bound here and handed over (`--fd`); yields its API v2 URL."""
    with listen("127.0.0.1", 0) as sock:  # the child keeps its own copy
        port = port_of(sock)
        proc = subprocess.Popen(
            [sys.executable, "-m", "backoffice.cli", "simulator", "--fd", str(sock.fileno())],
            pass_fds=(sock.fileno(),),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:  # the socket listens already: a request waits in its backlog until the child serves
                httpx.get(f"http://127.0.0.1:{port}/sim/orders", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/api/v2"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def wait_for_order(sessions: async_sessionmaker[AsyncSession], order_id: int, **fields: Any) -> Order:
    """Poll the read model (up to a minute) until the order has every field value given."""
    deadline = time.monotonic() + 60
    while True:
        async with sessions() as session:
            order = await session.get(Order, order_id)
        assert order is not None
        if all(getattr(order, k) == v for k, v in fields.items()):
            return order
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} never reached {fields}: {order.status}/{order.phase}")
        await asyncio.sleep(0.2)


async def wait_for_end(
    client: Client, sessions: async_sessionmaker[AsyncSession], order_id: int, **fields: Any
) -> Order:
    """wait_for_order until the order is closed, then until its workflow has ended: the read model says
    closed a moment before the workflow returns, and a worker stopped in that moment leaves it running."""
    order = await wait_for_order(sessions, order_id, phase="closed", **fields)
    await client.get_workflow_handle(workflow_id(order_id)).result()
    return order


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus text exposition as {(sample name, labels): value}; fails on anything unparsable."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


async def place_link(
    sessions: async_sessionmaker[AsyncSession], shop: Shop, quantity: int, link: str
) -> OrderInput:
    """An order for service 10 on a link of the test's choosing (simulator scenarios match links)."""
    async with transaction(sessions) as session:
        order, _ = await place_order(
            session,
            shop.caller,
            OrderRequest(customer_id=shop.customer_id, service_id=SERVICE, link=link, quantity=quantity),
            idempotency_key=uuid.uuid4().hex,
        )
        return order_input(order)
