"""Service interruption: provider trouble is retried, not refunded; a route that refuses hands over to the
next; when no route can deliver, the undelivered part is refunded."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from support import ScriptedProvider, balances, open_shop, order_worker, place, run_order
from workflows import policy


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
    assert (state.status, state.refunded_micros) == (policy.COMPLETED, 0)
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
    assert (state.status, state.provider_id) == (policy.COMPLETED, second)


async def test_when_no_route_can_deliver_the_order_is_refunded(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(rejects={r.provider_id for r in order.routes})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.phase, state.refunded_micros) == (policy.CANCELED, policy.CLOSED, 500_000)
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
    assert (state.status, state.delivered, state.refunded_micros) == (policy.COMPLETED, 500, 0)


async def test_a_complete_failure_refunds_even_a_shortfall_within_tolerance(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 1000)  # tolerance 2%: 10 missing units would normally be fine
    first, second = (r.provider_id for r in order.routes)
    provider = ScriptedProvider(script={first: [("Canceled", 10)]}, rejects={second})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.delivered, state.refunded_micros) == (policy.PARTIAL, 990, 10_000)
