"""The read model's writes: what the order's workflow projects (its state, timeline, refills, provider
orders and drip-feed runs) and the rows its refills open. Only the workflow's activities call these; intake
and the queries are in store/orders.py."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store import runs, webhooks
from store.models import Refill
from workflows.models import OpenRefill, Projection, RefillProgress, RefillStatus

# The projection in one statement. The order's row, locked, tells what it was (so the caller knows which
# webhook events the write causes: store/webhooks.py) and is written only by a newer version; the timeline
# events and what each provider order delivered and cost are written whatever the version (all keyed).
_PROJECT = text(
    """
    WITH before AS (
        SELECT id, status, phase, refunded_micros, refunded_units FROM orders WHERE id = :order_id FOR UPDATE
    ), events AS (
        INSERT INTO order_events (order_id, seq, at, kind, actor, message, detail)
        SELECT :order_id, e.seq, e.at, e.kind, e.actor, e.message, e.detail
        FROM jsonb_to_recordset(CAST(:events AS jsonb))
            AS e(seq integer, at timestamptz, kind text, actor text, message text, detail text)
        ON CONFLICT ON CONSTRAINT order_events_seq DO NOTHING
    ), provider_orders AS (
        UPDATE provider_submissions AS s SET
            provider_order_id = COALESCE(s.provider_order_id, po.provider_order_id),
            delivered = po.delivered,
            cost_micros = po.cost_micros,
            provider_status = po.status,
            provider_status_raw = po.raw_status,
            finished_at = CASE WHEN po.final THEN COALESCE(s.finished_at, now()) END,
            abandoned_at = po.abandoned_at,
            updated_at = now()
        FROM jsonb_to_recordset(CAST(:provider_orders AS jsonb)) AS po(
            run_no integer, provider_id bigint, provider_order_id text, delivered integer,
            cost_micros bigint, status text, raw_status text, final boolean, abandoned_at timestamptz
        )
        WHERE s.order_id = :order_id AND s.run_no = po.run_no AND s.provider_id = po.provider_id
    )
    UPDATE orders AS o SET
        state_version = :version, status = :status, phase = :phase, delivered = :delivered,
        refunded_micros = :refunded_micros, refunded_units = :refunded_units, provider_id = :provider_id,
        provider_status_raw = :provider_status_raw, start_count = :start_count, note = :note,
        refill_deadline = :refill_deadline, next_action_at = :next_action_at,
        finished_at = CASE WHEN CAST(:finished AS boolean) THEN now() ELSE o.finished_at END,
        updated_at = now()
    FROM before
    WHERE o.id = before.id AND o.state_version < :version
    RETURNING before.status, before.phase, before.refunded_micros, before.refunded_units
    """
)


async def project(session: AsyncSession, p: Projection) -> bool:
    """Write the workflow's state into the read model; an older version never overwrites a newer one.

    Timeline events, refill progress and what each provider order delivered and cost are written whatever
    the version: all are keyed, so a retry or a late write repeats nothing, and the order's `delivered` and
    its provider orders' change in the same transaction. Plain SQL: pending objects are flushed first, but
    loaded ones are not refreshed.
    """
    await session.flush()
    old = (
        await session.execute(
            _PROJECT,
            {
                "order_id": p.order_id,
                "version": p.version,
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
                "finished": p.finished,
                "events": json.dumps([dataclasses.asdict(e) for e in p.events]),
                "provider_orders": json.dumps(
                    [
                        {
                            "run_no": po.run_no,
                            "provider_id": po.provider_id,
                            "provider_order_id": po.provider_order_id,
                            "delivered": po.delivered,
                            "cost_micros": po.cost_micros,
                            "status": po.status or None,
                            "raw_status": po.raw_status[:100] or None,
                            "final": po.final,
                            "abandoned_at": po.abandoned_at or None,
                        }
                        for po in p.provider_orders
                    ]
                ),
            },
        )
    ).first()
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
    for refill in p.refills:
        await _project_refill(session, p.order_id, refill)
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
