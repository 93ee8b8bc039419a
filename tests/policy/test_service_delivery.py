"""Service delivery: orders queue FIFO for a provider slot (each provider takes `capacity` orders at once),
the detail shows the place in line, and the first route with room takes the order at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from store import slots
from support import (
    ScriptedProvider,
    event_times,
    open_shop,
    order_worker,
    place,
    run_order,
    set_capacity,
    start_order,
    until,
)
from workflows.models import Phase, Status

ALPHA_ONLY = [{"provider": "alpha", "service": "a1"}]


async def test_orders_beyond_capacity_wait_in_line_and_start_when_a_slot_frees(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions, routes=ALPHA_ONLY)
    first = await place(sessions, shop, 500)
    second = await place(sessions, shop, 500)
    third = await place(sessions, shop, 500)
    alpha = first.routes[0].provider_id
    await set_capacity(sessions, alpha, 1)
    provider = ScriptedProvider(script={alpha: [*[("In progress", 250)] * 6, ("Completed", 0)]})
    env = temporal_env
    async with order_worker(env.client, sessions, provider) as queue:
        h1 = await start_order(env.client, queue, first)
        await until(env, h1, lambda s: s.status == Status.IN_PROGRESS)
        h2 = await start_order(env.client, queue, second)
        waiting = await until(env, h2, lambda s: s.queue_position == 1)
        assert (waiting.status, waiting.phase) == (Status.PENDING, Phase.QUEUED)
        h3 = await start_order(env.client, queue, third)
        assert (await until(env, h3, lambda s: s.queue_position is not None)).queue_position == 2
        async with sessions() as session:
            assert await slots.queue_position(session, third.order_id) == 2
        results = [await h.result() for h in (h1, h2, h3)]
    assert [s.status for s in results] == [Status.COMPLETED] * 3
    # FIFO: each order was sent only after the one before it had finished with the provider.
    assert [run.order_id for run in provider.submitted] == [first.order_id, second.order_id, third.order_id]
    finished_first = (await event_times(sessions, first.order_id, "run_finished"))[0]
    sent_second = (await event_times(sessions, second.order_id, "run_submitted"))[0]
    assert sent_second >= finished_first


async def test_the_first_route_with_room_takes_the_order_at_once(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    alpha, beta = (r.provider_id for r in order.routes)
    await set_capacity(sessions, alpha, 0)
    provider = ScriptedProvider(script={beta: [("Completed", 0)]})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [run.provider_id for run in provider.submitted] == [beta]
    assert (state.status, state.provider_id, state.queue_position) == (Status.COMPLETED, beta, None)
    assert await event_times(sessions, order.order_id, "slot") == []  # it never had to wait


async def test_an_order_waiting_for_its_next_run_leaves_its_slot_to_the_next_in_line(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Capacity counts provider orders delivering, not orders: a paced order frees its slot during the hour
    between its runs, the order behind it delivers meanwhile, and the first queues again for its next run."""
    shop = await open_shop(sessions, routes=ALPHA_ONLY, pace_per_hour=1000)
    paced = await place(sessions, shop, 1500)  # 1000 now, 500 an hour later
    behind = await place(sessions, shop, 500)
    alpha = paced.routes[0].provider_id
    await set_capacity(sessions, alpha, 1)
    provider = ScriptedProvider(script={alpha: [("In progress", 500), ("Completed", 0)]})
    env = temporal_env
    async with order_worker(env.client, sessions, provider) as queue:
        h1 = await start_order(env.client, queue, paced)
        await until(env, h1, lambda s: s.status == Status.IN_PROGRESS)
        h2 = await start_order(env.client, queue, behind)
        await until(env, h2, lambda s: s.queue_position == 1)
        results = [await h.result() for h in (h1, h2)]
    assert [s.status for s in results] == [Status.COMPLETED] * 2
    assert [(run.order_id, run.run_no) for run in provider.submitted] == [
        (paced.order_id, 1),
        (behind.order_id, 1),
        (paced.order_id, 2),
    ]
    paced_runs = await event_times(sessions, paced.order_id, "run_submitted")
    sent_behind = (await event_times(sessions, behind.order_id, "run_submitted"))[0]
    assert sent_behind - paced_runs[0] < timedelta(minutes=30)  # not an hour behind an idle provider
