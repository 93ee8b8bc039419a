"""Gradual delivery: drip-feed runs as the customer chose them; otherwise hourly runs no bigger than the
service's pace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from support import ScriptedProvider, event_times, open_shop, order_worker, place, run_order
from workflows import policy
from workflows.models import Status


@settings(deadline=None)
@given(quantity=st.integers(1, 10**6), pace=st.integers(100, 10**5))
def test_paced_runs_add_up_and_never_exceed_the_pace(quantity: int, pace: int) -> None:
    plan = policy.plan_runs(quantity, pace)
    assert sum(units for units, _ in plan) == quantity
    assert all(0 < units <= pace for units, _ in plan)
    assert [start for _, start in plan] == [60 * hour for hour in range(len(plan))]


@given(quantity=st.integers(1, 10**6), runs=st.integers(2, 1000), interval=st.integers(1, 10080))
def test_drip_feed_runs_follow_the_customer(quantity: int, runs: int, interval: int) -> None:
    plan = policy.plan_runs(quantity * runs, 10**9, runs=runs, interval_minutes=interval)
    assert len(plan) == runs
    assert {units for units, _ in plan} == {quantity}
    assert [start for _, start in plan] == [i * interval for i in range(runs)]


async def test_a_large_order_is_sent_in_hourly_runs(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 2500)  # pace 1000 per hour: runs of 1000, 1000, 500
    provider = ScriptedProvider(script={order.routes[0].provider_id: [("Completed", 0)]})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [run.quantity for run in provider.submitted] == [1000, 1000, 500]
    assert (state.status, state.delivered, state.runs_done, state.runs_total) == (
        Status.COMPLETED,
        2500,
        3,
        3,
    )


async def test_a_drip_feed_order_runs_as_ordered(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100, runs=3, interval=30)
    provider = ScriptedProvider(script={order.routes[0].provider_id: [("Completed", 0)]})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [run.quantity for run in provider.submitted] == [100, 100, 100]
    assert (state.status, state.delivered) == (Status.COMPLETED, 300)


async def test_a_ten_run_drip_feed_starts_each_run_an_interval_after_the_last_one_started(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100, runs=10, interval=60)
    # Each run takes a while at the provider: the interval still counts from a run's start, not its end.
    answers = [("In progress", 50), ("Completed", 0)]
    provider = ScriptedProvider(script={order.routes[0].provider_id: answers})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.delivered, state.runs_done) == (Status.COMPLETED, 1000, 10)
    starts = await event_times(sessions, order.order_id, "run_submitted")
    assert len(starts) == 10
    offsets = [(at - starts[0]).total_seconds() / 60 for at in starts]
    assert offsets == pytest.approx([60 * i for i in range(10)], abs=1)


@given(
    runs=st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 1000)), min_size=1, max_size=30),
    refunded=st.integers(0, 30_000),
)
def test_a_drip_feeds_runs_share_out_exactly_what_the_order_refunded(
    runs: list[tuple[int, int]], refunded: int
) -> None:
    runs = [(quantity, min(delivered, quantity)) for quantity, delivered in runs]
    total = sum(quantity for quantity, _ in runs)
    remains = min(refunded, total)
    shown = [(q, d, Status.COMPLETED) for q, d in runs]
    view = policy.drip_feed_view(shown, order_status=Status.PARTIAL, order_remains=remains)
    assert sum(share for _, share in view) == remains
    assert all(0 <= share <= quantity for (_, share), (quantity, _) in zip(view, runs, strict=True))
    # Shortfalls are refunded first: a run that delivered in full shows a refund only once every
    # shortfall is covered.
    shortfall = sum(q - d for q, d in runs)
    if remains <= shortfall:
        assert all(share <= q - d for (_, share), (q, d) in zip(view, runs, strict=True))
    for (status, share), (quantity, _) in zip(view, runs, strict=True):
        whole = Status.CANCELED if share == quantity else Status.PARTIAL
        assert status == (Status.COMPLETED if share == 0 else whole)


def test_a_run_is_pending_until_sent_and_final_once_the_order_is_past_it() -> None:
    assert policy.run_status(units=100, delivered=0, sent=False, over=False) == Status.PENDING
    assert policy.run_status(units=100, delivered=30, sent=True, over=False) == Status.IN_PROGRESS
    assert policy.run_status(units=100, delivered=100, sent=True, over=True) == Status.COMPLETED
    assert policy.run_status(units=100, delivered=30, sent=True, over=True) == Status.PARTIAL
    assert policy.run_status(units=100, delivered=0, sent=False, over=True) == Status.CANCELED
