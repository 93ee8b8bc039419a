"""The webhook outbox is written by the read-model change that causes each event, in its transaction: a
change that rolls back sends nothing, a repeated or stale projection invents nothing, an endpoint gets only
the types it asked for."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import read_model, webhooks
from store.db import transaction
from store.ended import refund_ended_order
from store.models import WebhookDelivery, WebhookEvent
from support import open_shop, place
from workflows.models import (
    OpenRefill,
    Phase,
    Projection,
    RefillProgress,
    RefillStatus,
    Status,
    SupportRefund,
)

Sessions = async_sessionmaker[AsyncSession]


async def _endpoint(sessions: Sessions, *types: str) -> int:
    async with transaction(sessions) as session:
        made = await webhooks.create_endpoint(
            session, "http://127.0.0.1:9/hook", types or webhooks.EVENT_TYPES, "", "test"
        )
        return made.id


async def _events(sessions: Sessions, endpoint_id: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    async with sessions() as session:
        query = select(WebhookEvent.type, WebhookEvent.data).order_by(WebhookEvent.occurred_at)
        if endpoint_id is not None:
            query = (
                select(WebhookEvent.type, WebhookEvent.data)
                .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookDelivery.id)
            )
        return [(t, d) for t, d in await session.execute(query)]


def _projection(order_id: int, version: int, **changes: Any) -> Projection:
    base = Projection(
        order_id=order_id,
        version=version,
        status=Status.PENDING,
        phase=Phase.QUEUED,
        delivered=0,
        refunded_micros=0,
        refunded_units=0,
        provider_id=None,
        provider_status_raw=None,
        start_count=None,
        note="",
        refill_deadline=None,
        next_action_at=None,
    )
    return replace(base, **changes)


async def _project(sessions: Sessions, p: Projection) -> bool:
    async with transaction(sessions) as session:
        return await read_model.project(session, p)


async def test_no_endpoint_no_outbox(sessions: Sessions) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    delivering = _projection(order.order_id, 1, status=Status.IN_PROGRESS, phase=Phase.DELIVERING)
    await _project(sessions, delivering)
    assert await _events(sessions) == []


async def test_each_change_is_one_event_in_order(sessions: Sessions) -> None:
    endpoint = await _endpoint(sessions)
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    oid = order.order_id
    delivering = _projection(oid, 1, status=Status.IN_PROGRESS, phase=Phase.DELIVERING)
    assert await _project(sessions, delivering)
    assert not await _project(sessions, delivering)  # the activity retried: nothing new
    assert not await _project(sessions, replace(delivering, version=0))  # a late, older write
    # A write that changes neither status nor phase nor money causes no event.
    await _project(sessions, replace(delivering, version=2, delivered=40))
    settled = replace(
        delivering,
        version=3,
        status=Status.PARTIAL,
        phase=Phase.CLOSED,
        delivered=60,
        refunded_micros=40_000,
        refunded_units=40,
    )
    await _project(sessions, settled)

    assert await _events(sessions, endpoint) == [
        ("order.created", {"status": "Pending", "phase": "queued"}),
        (
            "order.status_changed",
            {
                "old": {"status": "Pending", "phase": "queued"},
                "new": {"status": "In progress", "phase": "delivering"},
            },
        ),
        ("order.refunded", {"amount": "0.040000", "units": 40, "refunded": "0.040000"}),
        (
            "order.status_changed",
            {
                "old": {"status": "In progress", "phase": "delivering"},
                "new": {"status": "Partial", "phase": "closed"},
            },
        ),
    ]


async def test_an_endpoint_gets_only_its_types_and_a_disabled_one_nothing(sessions: Sessions) -> None:
    refunds = await _endpoint(sessions, "order.refunded")
    quiet = await _endpoint(sessions)
    async with transaction(sessions) as session:
        await webhooks.set_enabled(session, quiet, False, "maintenance")
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    await _project(sessions, _projection(order.order_id, 1, refunded_micros=100_000, status=Status.REFUNDED))
    assert [t for t, _ in await _events(sessions, refunds)] == ["order.refunded"]
    assert await _events(sessions, quiet) == []


async def test_a_change_that_rolls_back_sends_nothing(sessions: Sessions) -> None:
    await _endpoint(sessions)
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)

    async def project_then_fail() -> None:
        async with transaction(sessions) as session:
            await read_model.project(session, _projection(order.order_id, 1, status=Status.CANCELED))
            raise RuntimeError("the projection's transaction fails after the write")

    with pytest.raises(RuntimeError):
        await project_then_fail()
    assert [t for t, _ in await _events(sessions)] == ["order.created"]


async def test_a_refill_finishes_once(sessions: Sessions) -> None:
    endpoint = await _endpoint(sessions, "refill.finished")
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    async with transaction(sessions) as session:
        refill_id = await read_model.open_refill(session, OpenRefill(order.order_id, 1, "customer"))
    running = RefillProgress(1, RefillStatus.IN_PROGRESS, finished=False)
    done = RefillProgress(1, RefillStatus.COMPLETED, finished=True)
    await _project(sessions, _projection(order.order_id, 1, refills=[running]))
    await _project(sessions, _projection(order.order_id, 2, refills=[done]))
    await _project(sessions, _projection(order.order_id, 3, refills=[done]))  # projected again later
    assert await _events(sessions, endpoint) == [
        ("refill.finished", {"refill_id": refill_id, "refill_no": 1, "status": "Completed"})
    ]


async def test_a_refund_after_the_order_ended_is_an_event(sessions: Sessions) -> None:
    endpoint = await _endpoint(sessions, "order.refunded", "order.status_changed")
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    closed = _projection(order.order_id, 1, status=Status.COMPLETED, phase=Phase.CLOSED, delivered=100)
    await _project(sessions, closed)
    async with transaction(sessions) as session:
        await refund_ended_order(
            session, order.order_id, SupportRefund("support", "goodwill", "r1", amount_micros=100_000)
        )
    found = await _events(sessions, endpoint)
    assert [t for t, _ in found] == ["order.status_changed", "order.refunded", "order.status_changed"]
    assert found[1][1] == {"amount": "0.100000", "units": 0, "refunded": "0.100000"}
    assert found[2][1]["new"] == {"status": "Refunded", "phase": "closed"}
