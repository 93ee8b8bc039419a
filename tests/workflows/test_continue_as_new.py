"""A long order keeps its history small: when the server suggests it, the workflow continues as new and
picks up where it was, without sending its run again."""

from __future__ import annotations

import asyncio

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from store import ledger
from store import orders as orders_store
from store.db import transaction
from store.models import Provider
from support import ScriptedProvider, balances, open_shop, order_worker, place, start_order, timeline
from workflows.models import OrderAction, Phase, Status, SupportRefund
from workflows.order import OrderWorkflow


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
    assert (state.status, state.phase, state.delivered) == (Status.COMPLETED, Phase.CLOSED, 600)
    assert await balances(sessions, order) == {"customer": 99_400_000, "escrow": 0, "revenue": 600_000}
    async with sessions() as session:
        assert await ledger.check_invariants(session) == []


async def test_messages_and_their_effects_survive_continue_as_new(
    short_history_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client = short_history_server.client
    shop = await open_shop(sessions, pace_per_hour=10**9)
    async with transaction(sessions) as session:
        await session.execute(update(Provider).values(poll_interval_seconds=0))
    order = await place(sessions, shop, 600)
    first = order.routes[0].provider_id
    provider = ScriptedProvider(script={first: [*[("In progress", 300)] * 60, ("Completed", 0)]})
    refund = SupportRefund("support:lee", "goodwill", "k-1", amount_micros=100_000)
    async with order_worker(client, sessions, provider) as queue:
        handle = await start_order(client, queue, order)
        receipt = await handle.execute_update(OrderWorkflow.refund, refund)
        assert receipt.refunded_micros == 100_000
        paused = await handle.execute_update(OrderWorkflow.pause, OrderAction("ops:kim", "look closer"))
        run_before = (await handle.describe()).run_id
        # While paused nothing polls, so nothing suggests a new run: resume, and let it move on.
        await handle.execute_update(OrderWorkflow.resume, OrderAction("ops:kim", "fine"))
        for _ in range(600):
            if (await handle.describe()).run_id != run_before:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the order never continued as new: the test would prove nothing")
        again = await handle.execute_update(OrderWorkflow.refund, refund)
        state = await handle.result()
    assert paused.paused_by == "ops:kim"
    assert (again.refunded_micros, again.total_refunded_micros) == (0, 100_000)  # the key was carried over
    assert (state.status, state.delivered, state.refunded_micros) == (Status.COMPLETED, 600, 100_000)
    assert await balances(sessions, order) == {"customer": 99_500_000, "escrow": 0, "revenue": 500_000}
    kinds = [k for k, _, _ in await timeline(sessions, order.order_id)]
    assert kinds.count("refund") == 1
    assert "paused" in kinds
    assert "resumed" in kinds
    seqs = await _event_seqs(sessions, order.order_id)
    assert seqs == list(range(1, len(seqs) + 1))  # numbered on across runs, none lost or repeated


async def _event_seqs(sessions: async_sessionmaker[AsyncSession], order_id: int) -> list[int]:
    async with sessions() as session:
        return [e.seq for e in await orders_store.timeline(session, order_id)]
