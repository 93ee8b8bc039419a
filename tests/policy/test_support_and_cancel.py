"""Support and issue handling: cancels (full refund while Pending; forwarded to the provider where the service
allows it; refused with the standard text otherwise) and support refunds (amount or units, capped at what is
refundable, idempotent by key, a full refund after delivery makes the order Refunded), each in the timeline
with who sent it and why."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from store.models import LedgerTransfer
from support import (
    ScriptedProvider,
    balances,
    open_shop,
    order_worker,
    place,
    set_capacity,
    start_order,
    timeline,
    until,
)
from workflows import policy
from workflows.models import OrderAction, Phase, RefundReceipt, Status, SupportRefund
from workflows.order import OrderWorkflow

ALPHA_ONLY = [{"provider": "alpha", "service": "a1"}]
CANCEL = OrderAction("customer:1", "changed my mind")


def _code(err: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> tuple[str | None, str]:
    cause = err.value.cause
    assert isinstance(cause, ApplicationError)
    return cause.type, cause.message


async def test_a_pending_order_cancels_with_a_full_refund(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions, routes=ALPHA_ONLY, cancel=False)  # cancel in progress not allowed
    order = await place(sessions, shop, 500)
    await set_capacity(sessions, order.routes[0].provider_id, 0)  # it waits in line
    provider = ScriptedProvider()
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.queue_position == 1)
        await handle.execute_update(OrderWorkflow.cancel, CANCEL)
        state = await handle.result()
    assert (state.status, state.refunded_micros) == (Status.CANCELED, 500_000)
    assert provider.submitted == []
    assert await balances(sessions, order) == {"customer": 100_000_000, "escrow": 0, "revenue": 0}


async def test_cancel_in_progress_goes_to_the_provider_and_refunds_what_was_not_delivered(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions, cancel=True)
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("In progress", 380)]})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.delivered == 120)
        await handle.execute_update(OrderWorkflow.cancel, CANCEL)
        state = await handle.result()
    assert len(provider.canceled) == 1
    assert provider.submitted[0].provider_id == alpha
    assert (state.status, state.delivered, state.refunded_micros) == (Status.PARTIAL, 120, 380_000)
    assert await balances(sessions, order) == {"customer": 99_880_000, "escrow": 0, "revenue": 120_000}
    assert ("cancel", "customer:1") in [(k, a) for k, a, _ in await timeline(sessions, order.order_id)]


async def test_cancel_is_refused_where_the_service_or_the_provider_does_not_allow_it(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    for service_allows in (False, True):
        shop = await open_shop(sessions, cancel=service_allows)
        order = await place(sessions, shop, 500)
        alpha = order.routes[0].provider_id
        answers = [*[("In progress", 300)] * 4, ("Completed", 0)]
        provider = ScriptedProvider(script={alpha: answers}, cancel_allowed=False)
        async with order_worker(env.client, sessions, provider) as queue:
            handle = await start_order(env.client, queue, order)
            await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(OrderWorkflow.cancel, CANCEL)
            assert _code(refused) == ("cannot_cancel", "The order cannot be canceled")
            state = await handle.result()
        assert (state.status, state.refunded_micros) == (Status.COMPLETED, 0)


async def test_support_refunds_are_capped_idempotent_and_a_full_one_makes_the_order_refunded(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions, refill_days=30)
    order = await place(sessions, shop, 500)  # charge 0.500000
    provider = ScriptedProvider(script={order.routes[0].provider_id: [("Completed", 0)]})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.phase == Phase.REFILL_WINDOW)

        def refund(key: str, **how: int) -> SupportRefund:
            return SupportRefund("support:lee", "drops after delivery", key, **how)

        first = await handle.execute_update(OrderWorkflow.refund, refund("t-1", units=100))
        assert (first.refunded_micros, first.total_refunded_micros) == (100_000, 100_000)
        # 50 identical requests at once: one refund, the others answer with its receipt.
        replays = await asyncio.gather(
            *(
                handle.execute_update(
                    OrderWorkflow.refund, refund("t-2", amount_micros=50_000), result_type=RefundReceipt
                )
                for _ in range(50)
            )
        )
        assert sorted(r.refunded_micros for r in replays) == [0] * 49 + [50_000]
        with pytest.raises(WorkflowUpdateFailedError) as malformed:
            await handle.execute_update(OrderWorkflow.refund, refund("t-3"))
        assert _code(malformed)[0] == "bad_refund"
        last = await handle.execute_update(OrderWorkflow.refund, refund("t-4", amount_micros=10_000_000))
        assert (last.refunded_micros, last.total_refunded_micros, last.status) == (
            350_000,
            500_000,
            Status.REFUNDED,
        )
        # Refunded in full, the order closes at once: a refund sent now is refused, by the order while it
        # still runs, or by Temporal once it has ended (the API then pays or refuses it from the
        # order's record: store/ended.py).
        with pytest.raises((WorkflowUpdateFailedError, RPCError)) as nothing_left:
            await handle.execute_update(OrderWorkflow.refund, refund("t-5", units=1))
        if isinstance(nothing_left.value, WorkflowUpdateFailedError):
            assert _code(nothing_left)[0] == "nothing_refundable"
        state = await handle.result()
    assert (state.status, state.phase, state.refunded_micros) == (Status.REFUNDED, Phase.CLOSED, 500_000)
    assert await balances(sessions, order) == {"customer": 100_000_000, "escrow": 0, "revenue": 0}
    async with sessions() as session:
        keys = list(
            await session.scalars(
                select(LedgerTransfer.idempotency_key).where(
                    LedgerTransfer.order_id == order.order_id, LedgerTransfer.kind == "refund"
                )
            )
        )
    assert sorted(keys) == [f"order:{order.order_id}:refund:{n}" for n in (1, 2, 3)]
    refunds = [(k, a) for k, a, _ in await timeline(sessions, order.order_id) if k == "refund"]
    assert refunds == [("refund", "support:lee")] * 3


def test_cancel_rules() -> None:
    def refusal(status: str, phase: str, *, stopping: bool = False, allowed: bool = False) -> object:
        return policy.cancel_refusal(status=status, phase=phase, stopping=stopping, cancel_allowed=allowed)

    assert refusal(Status.PENDING, Phase.QUEUED) is None
    assert refusal(Status.IN_PROGRESS, Phase.DELIVERING, allowed=True) is None
    assert refusal(Status.IN_PROGRESS, Phase.DELIVERING) == policy.CANNOT_CANCEL
    assert refusal(Status.PENDING, Phase.QUEUED, stopping=True) == policy.CANNOT_CANCEL
    assert refusal(Status.COMPLETED, Phase.REFILL_WINDOW, allowed=True) == policy.CANNOT_CANCEL


def test_support_refunds_already_paid_count_against_the_settlement() -> None:
    def settle(
        stop: str | None, refunded: int, delivered: int = 600, units: int = 0
    ) -> tuple[str, int, int, int]:
        return policy.final_settlement(
            quantity=1000,
            delivered=delivered,
            charge=1_000_000,
            refunded=refunded,
            refunded_units=units,
            tolerance_bp=200,
            stop_kind=stop,
            link_fault_refund="none",
            service_failed=False,
        )

    assert settle(None, 0) == (Status.PARTIAL, 400_000, 400, 600_000)
    assert settle(None, 900_000) == (Status.PARTIAL, 100_000, 400, 0)  # never more than the charge
    assert settle("cancel", 100_000) == (Status.PARTIAL, 400_000, 400, 500_000)
    assert settle("link_fault", 0) == (Status.PARTIAL, 0, 0, 1_000_000)
    assert settle("refunded", 1_000_000) == (Status.REFUNDED, 0, 0, 0)
    # Support refunded 500 units while the provider ended at 500: the shortfall is already paid.
    assert settle(None, 500_000, delivered=500, units=500) == (Status.PARTIAL, 0, 0, 500_000)
    # Support refunded 100 units; the shortfall is 400: only the other 300 are refunded now.
    assert settle(None, 100_000, units=100) == (Status.PARTIAL, 300_000, 300, 600_000)


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        ("cancel", Status.COMPLETED, "cannot_cancel"),
        ("cancel", Status.CANCELED, "cannot_cancel"),
        ("request_refill", Status.COMPLETED, "refill_window_closed"),
        ("request_refill", Status.PARTIAL, "not_completed"),
        ("report_link_fault", Status.PARTIAL, "cannot_report_link_fault"),
        ("pause", Status.COMPLETED, "cannot_pause"),
        ("resume", Status.COMPLETED, "not_paused"),
        ("retry", Status.COMPLETED, "not_needing_attention"),
    ],
)
def test_an_ended_order_answers_by_the_rules_it_ran_under(message: str, status: Status, code: str) -> None:
    refusal = policy.ended_order_refusal(message, status=status, refill_days=30, cancel_allowed=True)
    assert refusal is not None
    assert refusal[0] == code


def test_an_ended_order_of_a_service_without_refill_says_so() -> None:
    refusal = policy.ended_order_refusal(
        "request_refill", status=Status.COMPLETED, refill_days=0, cancel_allowed=False
    )
    assert refusal == policy.REFILL_DISABLED
