"""Nothing a caller sends wedges an order: text the store cannot keep is refused by the order itself, a
refund key reused for other money is a conflict, and a step that fails for good waits for ops visibly
(phase needs_attention) and then runs exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerActivities
from store import ledger
from store.models import LedgerTransfer, Order
from support import ScriptedProvider, open_shop, order_worker, place, start_order, timeline, until
from workflows import search_attributes as sa
from workflows.errors import STEP_FAILED
from workflows.models import OrderAction, Phase, Settlement, Status, SupportRefund
from workflows.order import OrderWorkflow


def _code(err: WorkflowUpdateFailedError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


async def test_text_the_store_cannot_keep_is_refused_and_the_order_goes_on(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("In progress", 400)]})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.delivered == 100)
        for bad in ("stop\x00now", "lone \ud800 surrogate", "bell\x07"):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(OrderWorkflow.cancel, OrderAction("customer:1", bad))
            assert _code(refused.value) == "bad_text"
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(
                    OrderWorkflow.refund, SupportRefund("support:lee", bad, "K-1", units=10)
                )
            assert _code(refused.value) == "bad_text"
        await handle.execute_update(OrderWorkflow.cancel, OrderAction("customer:1", "changed my mind"))
        state = await handle.result()
    assert (state.status, state.refunded_micros) == (Status.PARTIAL, 400_000)  # 100 of 500 delivered


async def test_a_refund_key_reused_for_other_money_is_a_conflict(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions, refill_days=30)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(script={order.routes[0].provider_id: [("Completed", 0)]})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.phase == Phase.REFILL_WINDOW)
        first = SupportRefund("support:lee", "goodwill", "T-1", amount_micros=50_000)
        assert (await handle.execute_update(OrderWorkflow.refund, first)).refunded_micros == 50_000
        assert (await handle.execute_update(OrderWorkflow.refund, first)).refunded_micros == 0  # a replay
        for other in (
            SupportRefund("support:lee", "goodwill", "T-1", amount_micros=60_000),
            SupportRefund("support:lee", "goodwill", "T-1", units=50),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as conflict:
                await handle.execute_update(OrderWorkflow.refund, other)
            assert _code(conflict.value) == "idempotency_conflict"
        state = await handle.query(OrderWorkflow.state)
        assert state.refunded_micros == 50_000
        await handle.terminate("test over")


async def test_a_step_that_fails_for_good_waits_for_ops_and_then_settles_once(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(script={order.routes[0].provider_id: [("Partial", 200)]})
    real = LedgerActivities(sessions)
    broken = {"on": True, "calls": 0}

    @activity.defn(name="settle_order")
    async def settle_order(s: Settlement) -> Any:
        broken["calls"] += 1
        if broken["on"]:  # as a bad row or a broken constraint would: no retry can mend it
            raise ApplicationError("numeric field overflow", type=STEP_FAILED, non_retryable=True)
        return await real.settle_order(s)

    async with order_worker(env.client, sessions, provider, replace={"settle_order": settle_order}) as queue:
        handle = await start_order(env.client, queue, order)
        with pytest.raises(WorkflowUpdateFailedError) as healthy:
            await handle.execute_update(OrderWorkflow.retry, OrderAction("ops:kim", "just in case"))
        assert _code(healthy.value) == "not_needing_attention"
        held = await until(env, handle, lambda s: s.phase == Phase.NEEDS_ATTENTION)
        assert held.attention is not None
        assert "numeric field overflow" in held.attention
        described = await handle.describe()
        assert described.typed_search_attributes.get(sa.ORDER_PHASE) == Phase.NEEDS_ATTENTION
        async with sessions() as session:
            row = await session.get(Order, order.order_id)
            assert row is not None
            assert row.phase == Phase.NEEDS_ATTENTION
        # Nothing is retried behind ops' back, and money can still be refunded meanwhile (the lock is free).
        calls = broken["calls"]
        await env.sleep(3600)
        assert broken["calls"] == calls
        receipt = await handle.execute_update(
            OrderWorkflow.refund, SupportRefund("support:lee", "sorry", "T-9", amount_micros=10_000)
        )
        assert receipt.refunded_micros == 10_000
        with pytest.raises(WorkflowUpdateFailedError) as blank:
            await handle.execute_update(OrderWorkflow.retry, OrderAction("ops:kim", ""))
        assert _code(blank.value) == "missing_reason"
        broken["on"] = False
        await handle.execute_update(OrderWorkflow.retry, OrderAction("ops:kim", "fixed the column"))
        state = await handle.result()
    # 300 of 500 delivered: the 200 short are refunded once, on top of support's goodwill.
    assert (state.status, state.refunded_micros, state.phase) == (Status.PARTIAL, 210_000, Phase.CLOSED)
    kinds = [(kind, actor) for kind, actor, _ in await timeline(sessions, order.order_id)]
    assert ("needs_attention", "workflow") in kinds
    assert ("sent_on", "ops:kim") in kinds
    async with sessions() as session:
        settlements = await session.scalar(
            select(func.count()).where(
                LedgerTransfer.order_id == order.order_id,
                LedgerTransfer.idempotency_key == f"order:{order.order_id}:refund:0",
            )
        )
        assert settlements == 1
        assert await ledger.check_invariants(session) == []
