"""Ops find orders in the Temporal Web UI by the search attributes: each one, through a visibility query;
RefillDeadline on an order in its refill window."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from ops_support import open_sim_shop, sim_worker, wait_for_end, wait_for_order
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from backoffice.temporal_client import start_order_workflow, workflow_id
from providers.simulator import create_simulator_app
from store.models import Provider
from support import SERVICE, place
from workflows import search_attributes as sa


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
        await wait_for_end(dev_server.client, sessions, order.order_id, status="Completed")

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
    for wrong in (
        'OrderStatus = "Partial"',
        'OrderPhase = "delivering"',
        f"ProviderId = {alpha + 1000}",
        "RefillDeadline IS NOT NULL",  # its service keeps no refill window
    ):
        assert not await found(client, f"{wrong} AND {this}", expected=False), wrong


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_an_order_in_its_refill_window_is_found_by_its_refill_deadline(
    dev_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_sim_shop(sessions, refill_days=30)
    order = await place(sessions, shop, 200)
    sim = create_simulator_app(api_key="sim-demo-key")
    client = dev_server.client
    handle = client.get_workflow_handle(workflow_id(order.order_id))
    async with sim_worker(client, sessions, sim, "visibility-refill-test") as queue:
        started = datetime.now(UTC)
        await start_order_workflow(client, queue, order)
        row = await wait_for_order(sessions, order.order_id, status="Completed", phase="refill_window")
        try:
            # The deadline the Web UI shows is the one the read model holds: 30 days after completion.
            deadline = (await handle.describe()).typed_search_attributes.get(sa.REFILL_DEADLINE)
            assert deadline is not None
            assert deadline == row.refill_deadline
            assert started + timedelta(days=30) <= deadline <= datetime.now(UTC) + timedelta(days=30)

            this = f'WorkflowId = "{workflow_id(order.order_id)}"'
            for condition in (
                'OrderPhase = "refill_window" AND ExecutionStatus = "Running"',
                "RefillDeadline IS NOT NULL",
                f'RefillDeadline > "{_rfc3339(started + timedelta(days=29))}"',
                f'RefillDeadline BETWEEN "{_rfc3339(deadline - timedelta(seconds=1))}" '
                f'AND "{_rfc3339(deadline + timedelta(seconds=1))}"',
            ):
                assert await found(client, f"{condition} AND {this}"), condition
            # Windows closing within the next week: not this one.
            soon = f'RefillDeadline < "{_rfc3339(datetime.now(UTC) + timedelta(days=7))}"'
            assert not await found(client, f"{soon} AND {this}", expected=False), soon
        finally:
            await handle.terminate("test over: the refill window would stay open 30 days")
