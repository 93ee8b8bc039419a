"""A run whose submission fate is unknown is never sent elsewhere: the order waits for ops to reconcile it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from store.models import Order
from support import ScriptedProvider, open_shop, order_worker, place, start_order, timeline, until
from workflows.models import OrderState, RunReconciliation, Status
from workflows.order import OrderWorkflow


async def _until_interrupted(handle: WorkflowHandle) -> OrderState:  # type: ignore[type-arg]
    for _ in range(200):
        try:
            state = await handle.query(OrderWorkflow.state)
            if state.awaiting_run is not None:
                return state
        except Exception:  # not started yet
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the order never waited for reconciliation")


async def _run(
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], found: str | None
) -> tuple:  # type: ignore[type-arg]
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    first, second = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(
        script={first: [("Completed", 0)], second: [("Completed", 0)]}, lost_answers={first}
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        waiting = await _until_interrupted(handle)
        assert "reconciliation" in waiting.note
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                OrderWorkflow.reconcile_run, RunReconciliation(2, found, "ops:ann", "x")
            )
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                OrderWorkflow.reconcile_run, RunReconciliation(1, found, "ops:ann", " ")
            )
        answered = await handle.execute_update(
            OrderWorkflow.reconcile_run,
            RunReconciliation(1, found, "ops:ann", "checked the provider's panel"),
        )
        assert answered.note == "run 1 reconciled by ops"  # the note is for customers too: no staff ids
        state = await handle.result()
    return state, provider, first, second


async def test_a_run_found_at_the_provider_is_followed_there(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    state, provider, first, _ = await _run(temporal_env, sessions, found="alpha-777")
    assert provider.submitted == []  # nothing was sent again, to anyone
    assert provider.checks[first] >= 1
    assert (state.status, state.delivered, state.provider_id) == (Status.COMPLETED, 500, first)
    events = await timeline(sessions, state.order_id)
    assert ("reconciled", "ops:ann") in [(kind, actor) for kind, actor, _ in events]


async def test_a_run_the_provider_never_took_goes_to_the_next_route(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    state, provider, _, second = await _run(temporal_env, sessions, found=None)
    assert [run.provider_id for run in provider.submitted] == [second]
    assert (state.status, state.provider_id) == (Status.COMPLETED, second)


async def test_a_run_the_provider_forgot_counts_nothing_once_ops_find_it_never_placed(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The provider reported 152 delivered, then no longer knew the order; ops find it was never placed.
    The order counts 0 for it everywhere (read model and timeline) and the next route delivers it all."""
    env = temporal_env
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    first, second = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(
        script={first: [("In progress", 348)], second: [("Completed", 0)]}, forgets_after={first: 1}
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        waiting = await until(env, handle, lambda s: s.awaiting_run == 1)
        assert waiting.delivered == 152
        await handle.execute_update(
            OrderWorkflow.reconcile_run, RunReconciliation(1, None, "ops:ann", "not in their panel")
        )
        state = await handle.result()
    assert (state.status, state.delivered, state.refunded_micros) == (Status.COMPLETED, 500, 0)
    assert [(run.provider_id, run.quantity) for run in provider.submitted] == [(first, 500), (second, 500)]
    async with sessions() as session:
        row = await session.get(Order, order.order_id)
        assert row is not None
        assert row.delivered == 500
    finished = [m for kind, _, m in await timeline(sessions, state.order_id) if kind == "run_finished"]
    assert finished == ["run 1: 500 of 500 delivered"]
