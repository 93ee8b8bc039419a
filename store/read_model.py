"""The read model's writes: what the order's workflow projects (its state, timeline, refills, provider
orders and drip-feed runs) and the rows its refills open. Only the workflow's activities call these; intake
and the queries are in store/orders.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store import runs, webhooks
from store.models import Order, OrderEvent, ProviderSubmission, Refill
from workflows.models import OpenRefill, Projection, RefillProgress, RefillStatus


async def project(session: AsyncSession, p: Projection) -> bool:
    """Write the workflow's state into the read model; an older version never overwrites a newer one.

    Timeline events, refill progress and what each provider order delivered and cost are written whatever
    the version: all are keyed, so a retry or a late write repeats nothing, and the order's `delivered` and
    its provider orders' change in the same transaction.
    """
    values: dict[str, Any] = {
        "state_version": p.version,
        "status": p.status,
        "phase": p.phase,
        "delivered": p.delivered,
        "refunded_micros": p.refunded_micros,
        "refunded_units": p.refunded_units,
        "provider_id": p.provider_id,
        "provider_status_raw": p.provider_status_raw,
        "start_count": p.start_count,
        "note": p.note,
        "refill_deadline": _time(p.refill_deadline),
        "next_action_at": _time(p.next_action_at),
    }
    if p.finished:
        values["finished_at"] = func.now()
    # The row as it was, locked, so the write knows which webhook events it causes (store/webhooks.py).
    before = (
        select(Order.id, Order.status, Order.phase, Order.refunded_micros, Order.refunded_units)
        .where(Order.id == p.order_id)
        .with_for_update()
        .subquery()
    )
    result = await session.execute(
        update(Order)
        .where(Order.id == before.c.id, Order.state_version < p.version)
        .values(**values)
        .returning(before.c.status, before.c.phase, before.c.refunded_micros, before.c.refunded_units)
    )
    old = result.first()
    if old is not None:
        was_status, was_phase, was_refunded, was_units = old
        await webhooks.order_changed(
            session,
            webhooks.OrderChange(
                p.order_id,
                *(was_status, was_phase, was_refunded, was_units),
                *(p.status, p.phase, p.refunded_micros, p.refunded_units),
            ),
        )
    if p.events:
        await session.execute(
            insert(OrderEvent)
            .values(
                [
                    {
                        "order_id": p.order_id,
                        "seq": e.seq,
                        "at": datetime.fromisoformat(e.at),
                        "kind": e.kind,
                        "actor": e.actor,
                        "message": e.message,
                        "detail": e.detail,
                    }
                    for e in p.events
                ]
            )
            .on_conflict_do_nothing(constraint="order_events_seq")
        )
    for refill in p.refills:
        await _project_refill(session, p.order_id, refill)
    for po in p.provider_orders:
        await session.execute(
            update(ProviderSubmission)
            .where(
                ProviderSubmission.order_id == p.order_id,
                ProviderSubmission.run_no == po.run_no,
                ProviderSubmission.provider_id == po.provider_id,
            )
            .values(
                provider_order_id=func.coalesce(ProviderSubmission.provider_order_id, po.provider_order_id),
                delivered=po.delivered,
                cost_micros=po.cost_micros,
                provider_status=po.status or None,
                provider_status_raw=po.raw_status[:100] or None,
                finished_at=func.coalesce(ProviderSubmission.finished_at, func.now()) if po.final else None,
                abandoned_at=_time(po.abandoned_at),
            )
        )
    if p.runs and old is not None:  # an older write keeps off them
        await runs.project_runs(session, p.order_id, p.runs)
    return old is not None


async def _project_refill(session: AsyncSession, order_id: int, refill: RefillProgress) -> None:
    """A refill's status; the write that first finishes it causes `refill.finished`."""
    mine = and_(Refill.order_id == order_id, Refill.refill_no == refill.refill_no)
    if not refill.finished:
        await session.execute(update(Refill).where(mine).values(status=refill.status, finished_at=None))
        return
    finished = await session.scalar(
        update(Refill)
        .where(mine, Refill.finished_at.is_(None))
        .values(status=refill.status, finished_at=func.now())
        .returning(Refill.id)
    )
    if finished is not None:
        await webhooks.refill_finished(session, order_id, finished, refill.refill_no, refill.status)


def _time(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


async def open_refill(session: AsyncSession, refill: OpenRefill) -> int:
    """The refill's row (created once per order and number); returns its id."""
    await session.execute(
        insert(Refill)
        .values(
            order_id=refill.order_id,
            refill_no=refill.refill_no,
            status=RefillStatus.PENDING,
            requested_by=refill.actor,
        )
        .on_conflict_do_nothing(constraint="refills_order_no")
    )
    refill_id = await session.scalar(
        select(Refill.id).where(Refill.order_id == refill.order_id, Refill.refill_no == refill.refill_no)
    )
    assert refill_id is not None
    return int(refill_id)
