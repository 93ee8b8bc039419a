"""The worker starts orders that were charged but whose workflow start was lost."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from backoffice.temporal_client import workflow_id
from store.db import transaction
from support import open_shop, place
from worker import start_unstarted_orders


async def test_an_order_whose_start_was_lost_is_started(
    dev_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    fresh = await place(sessions, shop, 100)
    lost = await place(sessions, shop, 100)
    reported = await place(sessions, shop, 100)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE orders SET created_at = now() - interval '5 minutes' WHERE id IN (:a, :b)"),
            {"a": lost.order_id, "b": reported.order_id},
        )
        await session.execute(
            text("UPDATE orders SET state_version = 3 WHERE id = :b"), {"b": reported.order_id}
        )

    queue = "sweeper-test"
    assert await start_unstarted_orders(dev_server.client, sessions, queue) == 1
    described = await dev_server.client.get_workflow_handle(workflow_id(lost.order_id)).describe()
    assert described.task_queue == queue
    # A fresh order is left to the API's own start, and one that has reported needs no start.
    for untouched in (fresh, reported):
        with pytest.raises(RPCError):
            await dev_server.client.get_workflow_handle(workflow_id(untouched.order_id)).describe()
    # Sweeping again finds the same order (it has not reported: no worker runs here) and starts nothing new.
    assert await start_unstarted_orders(dev_server.client, sessions, queue) == 1
    again = await dev_server.client.get_workflow_handle(workflow_id(lost.order_id)).describe()
    assert again.run_id == described.run_id
