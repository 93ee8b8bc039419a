"""Refill and adjustment: services with `refill_days` keep a completed order open for refills; requests are
checked against the window, the cooldown, `refill_max` and one at a time; each refill goes to the provider
orders that delivered and is followed to its end; the window's end closes the order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from store import orders as orders_store
from support import ScriptedProvider, event_times, open_shop, order_worker, place, start_order, until
from workflows import policy
from workflows import search_attributes as sa
from workflows.models import Phase, RefillRequest, RefillTicket, Status
from workflows.order import OrderWorkflow

ASK = RefillRequest("customer:1", "lost 40 followers")
TOO_SOON = "The order was completed or refill was requested less than 24 hours ago"


async def _refused(handle: object, text: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(OrderWorkflow.request_refill, ASK)  # type: ignore[attr-defined]
    cause = err.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.message == text


async def test_a_thirty_day_window_with_cooldown_limit_and_closing(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(
        sessions, refill_days=30, refill_max=2, routes=[{"provider": "alpha", "service": "a1"}]
    )
    order = await place(sessions, shop, 1000, runs=2, interval=60)  # two provider orders to refill
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("Completed", 0)]})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        window = await until(env, handle, lambda s: s.phase == Phase.REFILL_WINDOW)
        assert window.status == Status.COMPLETED
        assert window.refill_deadline is not None
        described = await handle.describe()
        deadline = described.typed_search_attributes.get(sa.REFILL_DEADLINE)
        assert deadline is not None
        assert deadline.isoformat() == window.refill_deadline

        await _refused(handle, "The order was completed or refill was requested less than 24 hours ago")
        await env.sleep(timedelta(hours=25))
        ticket = await handle.execute_update(OrderWorkflow.request_refill, ASK, result_type=RefillTicket)
        assert ticket.refill_no == 1
        await _refused(handle, "A refill of this order is already in progress")
        await until(env, handle, lambda s: s.note.startswith("refill window"), step=timedelta(minutes=10))
        assert {r.provider_order_id for r in provider.refills} == {f"{alpha}-1", f"{alpha}-2"}

        await _refused(handle, "The order was completed or refill was requested less than 24 hours ago")
        await env.sleep(timedelta(hours=25))
        await handle.execute_update(OrderWorkflow.request_refill, ASK, result_type=RefillTicket)
        await env.sleep(timedelta(hours=25))
        await _refused(handle, "This order has no refills left")
        state = await handle.result()
    assert (state.status, state.phase, state.refills_used) == (Status.COMPLETED, Phase.CLOSED, 2)
    completed = (await event_times(sessions, order.order_id, "settled"))[0]
    closed = (await event_times(sessions, order.order_id, "closed"))[0]
    assert timedelta(days=30) <= closed - completed < timedelta(days=30, hours=1)
    async with sessions() as session:
        refills = await orders_store.refills(session, order.order_id)
    assert [(r.refill_no, r.status, r.finished_at is not None) for r in refills] == [
        (1, "Completed", True),
        (2, "Completed", True),
    ]


async def test_a_service_without_refill_refuses_with_the_standard_text(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions, refill_days=0)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(
        script={order.routes[0].provider_id: [*[("In progress", 100)] * 3, ("Completed", 0)]}
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
        await _refused(handle, "Refill is disabled for this service")
        state = await handle.result()
    assert (state.status, state.phase) == (Status.COMPLETED, Phase.CLOSED)


async def test_an_order_still_delivering_cannot_be_refilled(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions, refill_days=30)
    order = await place(sessions, shop, 500)
    provider = ScriptedProvider(
        script={order.routes[0].provider_id: [*[("In progress", 100)] * 3, ("Partial", 100)]}
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
        await _refused(handle, "The order is not completed")
        state = await handle.result()
    # A Partial order (shortfall beyond the tolerance, refunded) has no refill window.
    assert (state.status, state.phase, state.refunded_micros) == (Status.PARTIAL, Phase.CLOSED, 100_000)


async def test_a_refill_the_provider_rejects_does_not_use_up_a_refill(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """refill_max 2: the provider's own cooldown rejects the first refill at once; the customer still has
    two refills. The panel's cooldown counts from the rejected request all the same."""
    env = temporal_env
    shop = await open_shop(
        sessions, refill_days=30, refill_max=2, routes=[{"provider": "alpha", "service": "a1"}]
    )
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(
        script={alpha: [("Completed", 0)]}, refill_rejects=1, refill_answers=["Completed"]
    )
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.phase == Phase.REFILL_WINDOW)
        await env.sleep(timedelta(hours=25))
        for expected in ("Rejected", "Completed", "Completed"):
            ticket = await handle.execute_update(OrderWorkflow.request_refill, ASK, result_type=RefillTicket)
            await until(env, handle, lambda s: not s.refill_busy, step=timedelta(seconds=30))
            if expected == "Rejected":  # the cooldown counts from the request, rejected or not
                await _refused(handle, TOO_SOON)
            await env.sleep(timedelta(hours=25))
            async with sessions() as session:
                shown = {r.refill_no: r.status for r in await orders_store.refills(session, order.order_id)}
            assert shown[ticket.refill_no] == expected
        await _refused(handle, "This order has no refills left")
        state = await handle.result()
    assert (state.refills_used, state.refills_asked) == (2, 3)


async def test_refill_status_is_followed_soon_after_the_request(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A refill the provider finishes at once shows Completed within a minute (the provider's poll floor),
    not at a fixed 10-minute poll; a slow one is read less and less often."""
    env = temporal_env
    shop = await open_shop(sessions, refill_days=30, routes=[{"provider": "alpha", "service": "a1"}])
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("Completed", 0)]}, refill_answers=["Completed"])
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.phase == Phase.REFILL_WINDOW)
        await env.sleep(timedelta(hours=25))
        await handle.execute_update(OrderWorkflow.request_refill, ASK, result_type=RefillTicket)
        await until(env, handle, lambda s: not s.refill_busy, step=timedelta(seconds=10))
        asked = (await event_times(sessions, order.order_id, "refill_requested"))[0]
        done = (await event_times(sessions, order.order_id, "refill_finished"))[0]
        assert done - asked < timedelta(seconds=61)  # one poll floor (60 s) after the request
        await handle.terminate("test over")
    assert [policy.refill_poll_seconds(60, n) for n in range(6)] == [60, 120, 240, 480, 600, 600]
