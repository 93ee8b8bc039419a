"""Fifty identical requests at once do the thing once: an order and its charge, a support refund, a refill.

Orders go through the API over HTTP; refunds and refills through the workflow updates the API sends
(messaging.send_order_update), on the real servers of tests/faults/components.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from components import Running
from sqlalchemy import func, select
from temporalio.client import Client

from backoffice.messaging import Refused, send_order_update
from store.db import make_engine, make_sessionmaker
from store.models import LedgerTransfer, Order, Refill
from workflows.models import RefillRequest, RefillTicket, SupportRefund
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.faults
PARALLEL = 50
REFILL_SERVICE = 33


async def _count(database_url: str, query: Any) -> int:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            return int(await session.scalar(query) or 0)
    finally:
        await engine.dispose()


async def _order_in_refill_window(run: Running, name: str) -> int:
    """A delivered order of the refill service, waiting in its refill window."""
    body = {
        "customer_id": run.customer_id,
        "service_id": REFILL_SERVICE,
        "link": f"https://instagram.com/inst_{name}",
        "quantity": 100,
    }
    async with (
        httpx.AsyncClient(base_url=run.stack.api_url, timeout=30) as http,
        httpx.AsyncClient(base_url=run.stack.simulator_url) as sim,
    ):
        await sim.post("/sim/scenario", json={"link_contains": "inst_", "scenario": "instant"})
        headers = {**run.as_("storefront"), "Idempotency-Key": name}
        placed = await http.post("/v1/orders", json=body, headers=headers)
        assert placed.status_code == 201, placed.text
        order = placed.json()
        deadline = time.monotonic() + 60
        while order["phase"] != "refill_window":
            assert time.monotonic() < deadline, order
            await asyncio.sleep(0.5)
            order = (await http.get(f"/v1/orders/{order['id']}", headers=run.as_("storefront"))).json()
    return int(order["id"])


async def test_50_identical_orders_make_one_order_and_one_charge(running: Running) -> None:
    body = {
        "customer_id": running.customer_id,
        "service_id": 31,
        "link": "https://instagram.com/norm_same_order",
        "quantity": 100,
    }
    headers = {**running.as_("storefront"), "Idempotency-Key": "the-same-order"}
    async with httpx.AsyncClient(base_url=running.stack.api_url, timeout=60) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/orders", json=body, headers=headers) for _ in range(PARALLEL))
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * (PARALLEL - 1) + [201], [a.text for a in answers if a.status_code >= 300]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    order_id = ids.pop()
    url = running.stack.database_url
    assert await _count(url, select(func.count()).select_from(Order).where(Order.link == body["link"])) == 1
    charges = select(func.count()).where(LedgerTransfer.order_id == order_id, LedgerTransfer.kind == "charge")
    assert await _count(url, charges) == 1


async def test_50_identical_support_refunds_move_money_once(running: Running) -> None:
    order_id = await _order_in_refill_window(running, "refund_once")
    client = await Client.connect(running.stack.temporal_address)
    refund = SupportRefund("support:ana", "goodwill", "refund-key-1", amount_micros=10_000)
    receipts = await asyncio.gather(
        *(send_order_update(client, order_id, OrderWorkflow.refund, refund) for _ in range(PARALLEL))
    )
    assert sorted(r.refunded_micros for r in receipts) == [0] * (PARALLEL - 1) + [10_000]
    assert {r.total_refunded_micros for r in receipts} == {10_000}
    refunds = select(func.count()).where(LedgerTransfer.order_id == order_id, LedgerTransfer.kind == "refund")
    assert await _count(running.stack.database_url, refunds) == 1
    check = running.stack.ledger_check()
    assert check.returncode == 0, check.stdout + check.stderr


async def test_50_identical_refill_requests_make_one_refill(running: Running) -> None:
    order_id = await _order_in_refill_window(running, "refill_once")
    client = await Client.connect(running.stack.temporal_address)

    async def ask() -> RefillTicket | str:
        try:
            return await send_order_update(
                client, order_id, OrderWorkflow.request_refill, RefillRequest("customer:1", "drops")
            )
        except Refused as refused:
            return refused.code

    answers = await asyncio.gather(*(ask() for _ in range(PARALLEL)))
    tickets = [a for a in answers if isinstance(a, RefillTicket)]
    assert len(tickets) == 1, answers
    # One refill at a time, and the service allows one in all (rejected refills would not count).
    assert {a for a in answers if isinstance(a, str)} <= {
        "refill_in_progress",
        "refill_too_soon",
        "refill_limit",
    }
    url = running.stack.database_url
    assert await _count(url, select(func.count()).select_from(Refill).where(Refill.order_id == order_id)) == 1
    # The provider gets that one refill, once.
    async with httpx.AsyncClient(base_url=running.stack.simulator_url) as sim:
        deadline = time.monotonic() + 60
        while True:
            sent = (await sim.get("/sim/requests", params={"action": "refill"})).json()["requests"]
            if sent or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    assert len(sent) == 1, sent
