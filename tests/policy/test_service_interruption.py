"""Service interruption: provider trouble is retried, not refunded; a route that refuses hands over to the
next; when no route can deliver, the undelivered part is refunded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from support import (
    ScriptedProvider,
    balances,
    event_times,
    open_shop,
    order_worker,
    place,
    run_order,
    start_order,
    timeline,
    until,
)
from workflows.models import OrderAction, Phase, Status
from workflows.order import OrderWorkflow


async def test_an_outage_is_ridden_out(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(
        script={order.routes[0].provider_id: [("Completed", 0)]}, unavailable_checks=3
    )
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.refunded_micros) == (Status.COMPLETED, 0)
    assert provider.unavailable_checks == 0


async def test_a_refusing_route_fails_over_to_the_next(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    first, second = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(script={second: [("Completed", 0)]}, rejects={first})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [run.provider_id for run in provider.submitted] == [second]
    assert (state.status, state.provider_id) == (Status.COMPLETED, second)


async def test_when_no_route_can_deliver_the_order_is_refunded(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(rejects={r.provider_id for r in order.routes})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.phase, state.refunded_micros) == (Status.CANCELED, Phase.CLOSED, 500_000)
    assert await balances(sessions, order) == {"customer": 100_000_000, "escrow": 0, "revenue": 0}


async def test_what_a_provider_gives_up_on_goes_to_the_next_route(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    first, second = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(script={first: [("Canceled", 200)], second: [("Completed", 0)]})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [(run.provider_id, run.quantity) for run in provider.submitted] == [(first, 500), (second, 200)]
    assert (state.status, state.delivered, state.refunded_micros) == (Status.COMPLETED, 500, 0)


async def test_a_complete_failure_refunds_even_a_shortfall_within_tolerance(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 1000)  # tolerance 2%: 10 missing units would normally be fine
    first, second = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(script={first: [("Canceled", 10)]}, rejects={second})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.delivered, state.refunded_micros) == (Status.PARTIAL, 990, 10_000)


async def test_an_outage_shows_as_interrupted_and_is_never_refunded_by_itself(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("Completed", 0)]}, down={alpha})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        hit = await until(env, handle, lambda s: s.phase == Phase.INTERRUPTED)
        assert (hit.status, hit.refunded_micros) == (Status.PENDING, 0)
        assert hit.interrupted_since is not None
        await env.sleep(timedelta(hours=5))  # five hours out: still waiting, still no refund
        still = await handle.query(OrderWorkflow.state)
        assert (still.phase, still.refunded_micros) == (Phase.INTERRUPTED, 0)
        provider.down.clear()
        state = await handle.result()
    assert (state.status, state.refunded_micros, state.provider_id) == (Status.COMPLETED, 0, alpha)
    kinds = [kind for kind, _, _ in await timeline(sessions, order.order_id)]
    assert kinds.index("interrupted") < kinds.index("interruption_over") < kinds.index("run_submitted")


async def test_after_max_interruption_hours_the_next_route_takes_over(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions, max_interruption_hours=72)
    order = await place(sessions, shop, 500)
    alpha, beta = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(script={beta: [("Completed", 0)]}, down={alpha})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.provider_id, state.refunded_micros) == (Status.COMPLETED, beta, 0)
    began = (await event_times(sessions, order.order_id, "interrupted"))[0]
    failed_over = (await event_times(sessions, order.order_id, "failover"))[0]
    assert timedelta(hours=72) <= failed_over - began < timedelta(hours=73)


async def test_when_every_route_stays_down_the_order_is_refunded_in_full(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions, max_interruption_hours=72)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(down={r.provider_id for r in order.routes})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.refunded_micros) == (Status.CANCELED, 500_000)
    assert await balances(sessions, order) == {"customer": 100_000_000, "escrow": 0, "revenue": 0}


async def test_ops_pause_an_order_and_resume_it(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A pause holds the back office: no new run goes out. API v2 cannot hold a provider order, so the run
    already at the provider goes on there, and the order keeps following it and counting what it delivers."""
    env = temporal_env
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 1500)  # two runs: 1000 now, 500 an hour later
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(
        script={alpha: [("In progress", 700), ("In progress", 400), ("Completed", 0)]}
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
        with pytest.raises(WorkflowUpdateFailedError) as no_reason:
            await handle.execute_update(OrderWorkflow.pause, OrderAction("ops:kim", ""))
        assert _code(no_reason.value) == "missing_reason"
        paused = await handle.execute_update(OrderWorkflow.pause, OrderAction("ops:kim", "provider outage"))
        assert (paused.phase, paused.paused_by) == (Phase.PAUSED, "ops:kim")
        await env.sleep(timedelta(hours=6))
        held = await handle.query(OrderWorkflow.state)
        assert held.phase == Phase.PAUSED
        assert held.delivered == 1000  # run 1 went on at the provider and was counted
        assert len(provider.submitted) == 1  # run 2 waits for the resume
        with pytest.raises(WorkflowUpdateFailedError) as twice:
            await handle.execute_update(OrderWorkflow.pause, OrderAction("ops:kim", "again"))
        assert _code(twice.value) == "cannot_pause"
        resumed = await handle.execute_update(OrderWorkflow.resume, OrderAction("ops:kim", "outage over"))
        assert resumed.paused_by is None
        assert resumed.phase != Phase.PAUSED
        state = await handle.result()
    assert (state.status, state.delivered) == (Status.COMPLETED, 1500)
    assert len(provider.submitted) == 2
    actors = {(kind, actor) for kind, actor, _ in await timeline(sessions, order.order_id)}
    assert {("paused", "ops:kim"), ("resumed", "ops:kim")} <= actors


def _code(err: WorkflowUpdateFailedError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None
