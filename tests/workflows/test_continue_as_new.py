"""A long order keeps its history small: when the server suggests it, the workflow continues as new and
picks up where it was, without sending its run again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from devstack import venv_binary
from store import ledger
from store.db import transaction
from store.models import Provider
from support import ScriptedProvider, balances, open_shop, order_worker, place, start_order
from workflows import policy
from workflows import search_attributes as sa


@pytest.fixture(scope="module")
async def short_history_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after a few dozen events instead of thousands."""
    env = await WorkflowEnvironment.start_local(
        search_attributes=sa.ALL,
        dev_server_existing_path=venv_binary("temporal"),
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_long_run_continues_as_new_and_is_not_sent_again(
    short_history_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client = short_history_server.client
    # Real time here: a pace this fast and no polling floor make every status check due at once.
    shop = await open_shop(sessions, pace_per_hour=10**9)
    async with transaction(sessions) as session:
        await session.execute(update(Provider).values(poll_interval_seconds=0))
    order = await place(sessions, shop, 600)
    first = order.routes[0].provider_id
    answers: list[tuple[str, int | None]] = [("In progress", 600 - 50 * i) for i in range(10)]
    provider = ScriptedProvider(script={first: [*answers, ("Completed", 0)]})
    async with order_worker(client, sessions, provider) as queue:
        handle = await start_order(client, queue, order)
        state = await handle.result()
        described = await handle.describe()
    assert described.raw_description.workflow_execution_info.first_run_id != described.run_id
    assert len(provider.submitted) == 1
    assert (state.status, state.phase, state.delivered) == (policy.COMPLETED, policy.CLOSED, 600)
    assert await balances(sessions, order) == {"customer": 99_400_000, "escrow": 0, "revenue": 600_000}
    async with sessions() as session:
        assert await ledger.check_invariants(session) == []
