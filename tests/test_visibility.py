"""Ops find orders in the Temporal Web UI by the search attributes: each one, through a visibility query."""

from __future__ import annotations

import asyncio
import time

from ops_support import open_sim_shop, sim_worker, wait_for_order
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from providers.simulator import create_simulator_app
from store.models import Provider
from support import SERVICE, place
from temporal_client import start_order_workflow, workflow_id


async def found(client: Client, query: str, expected: bool = True) -> bool:
    """Whether the query lists any workflow, waiting out visibility's short lag for the expected answer."""
    deadline = time.monotonic() + 15
    while True:
        hits = [w.id async for w in client.list_workflows(query)]
        if bool(hits) == expected or time.monotonic() > deadline:
            return bool(hits)
        await asyncio.sleep(0.3)


async def test_an_order_is_found_by_each_search_attribute(
    dev_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_sim_shop(sessions)
    order = await place(sessions, shop, 200)
    async with sessions() as session:
        alpha = await session.scalar(select(Provider.id).where(Provider.name == "alpha"))
    assert alpha is not None
    sim = create_simulator_app(api_key="sim-demo-key")
    async with sim_worker(dev_server.client, sessions, sim, "visibility-test") as queue:
        await start_order_workflow(dev_server.client, queue, order)
        await wait_for_order(sessions, order.order_id, status="Completed", phase="closed")

    client = dev_server.client
    this = f'WorkflowId = "{workflow_id(order.order_id)}"'  # the dev server is shared by the whole run
    for condition in (
        'OrderStatus = "Completed"',
        'OrderPhase = "closed"',
        f"CustomerId = {shop.customer_id}",
        f"ServiceId = {SERVICE}",
        f"ProviderId = {alpha}",
        'OrderStatus IN ("Completed", "Partial") AND OrderPhase = "closed" AND ExecutionStatus = "Completed"',
    ):
        assert await found(client, f"{condition} AND {this}"), condition
    for wrong in ('OrderStatus = "Partial"', 'OrderPhase = "delivering"', f"ProviderId = {alpha + 1000}"):
        assert not await found(client, f"{wrong} AND {this}", expected=False), wrong
