"""Outbound webhooks: endpoints, the event outbox and the delivery log.

An event is written by the same transaction as the read-model change that causes it (intake, the order's
projection, a refund after the order ended), so a change that rolls back sends nothing and a committed one
is never missed. It is written only when an enabled endpoint wants its type, with one delivery row per such
endpoint; the endpoint's delivery workflow (workflows/webhooks.py) sends them in `id` order.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from workflows import policy

ORDER_CREATED = "order.created"
ORDER_STATUS_CHANGED = "order.status_changed"
ORDER_REFUNDED = "order.refunded"
REFILL_FINISHED = "refill.finished"
EVENT_TYPES = (ORDER_CREATED, ORDER_STATUS_CHANGED, ORDER_REFUNDED, REFILL_FINISHED)

ANSWER_KEPT = 500  # characters of a receiver's answer kept in the log


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# --- the outbox -------------------------------------------------------------------------------------------


def outbox_ctes(order_id: str, source: str) -> str:
    """The CTEs that put one event in the outbox, for a statement to write along with its change: the event
    (`:event_id`, `:event_type`, `:event_data`) of order `order_id` (an SQL expression over `source`, a
    table or CTE of one row: nothing is written when it has none) and one delivery per enabled endpoint
    that wants the type (none: no event either)."""
    return f"""
    targets AS (
        SELECT id FROM webhook_endpoints WHERE enabled AND CAST(:event_type AS varchar) = ANY(event_types)
    ), event AS (
        INSERT INTO webhook_events (id, type, order_id, occurred_at, data)
        SELECT :event_id, :event_type, {order_id}, now(), CAST(:event_data AS jsonb)
        FROM {source} WHERE EXISTS (SELECT 1 FROM targets)
        RETURNING id
    ), deliveries AS (
        INSERT INTO webhook_deliveries (endpoint_id, event_id) SELECT targets.id, event.id FROM targets, event
    )"""


def event_parameters(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The parameters of outbox_ctes."""
    return {"event_id": f"evt_{uuid.uuid4().hex}", "event_type": event_type, "event_data": json.dumps(data)}


_RECORD = text("WITH one AS (SELECT 1)," + outbox_ctes("CAST(:order_id AS bigint)", "one") + "SELECT 1")


async def record(session: AsyncSession, event_type: str, order_id: int, data: dict[str, Any]) -> None:
    """Put an event in the outbox, for every enabled endpoint that wants its type (none: nothing written)."""
    await session.execute(_RECORD, {"order_id": order_id, **event_parameters(event_type, data)})


@dataclass(frozen=True)
class OrderChange:
    """The order's row before and after one write of the read model."""

    order_id: int
    old_status: str
    old_phase: str
    old_refunded_micros: int
    old_refunded_units: int
    status: str
    phase: str
    refunded_micros: int
    refunded_units: int


async def order_changed(session: AsyncSession, change: OrderChange) -> None:
    """The events one write of the order's row causes: a refund first, then the status it led to."""
    if change.refunded_micros > change.old_refunded_micros:
        amount = change.refunded_micros - change.old_refunded_micros
        await record(
            session,
            ORDER_REFUNDED,
            change.order_id,
            {
                "amount": policy.format_money(amount),
                "units": change.refunded_units - change.old_refunded_units,
                "refunded": policy.format_money(change.refunded_micros),
            },
        )
    if (change.status, change.phase) != (change.old_status, change.old_phase):
        await record(
            session,
            ORDER_STATUS_CHANGED,
            change.order_id,
            {
                "old": {"status": change.old_status, "phase": change.old_phase},
                "new": {"status": change.status, "phase": change.phase},
            },
        )


async def refill_finished(
    session: AsyncSession, order_id: int, refill_id: int, refill_no: int, status: str
) -> None:
    data = {"refill_id": refill_id, "refill_no": refill_no, "status": status}
    await record(session, REFILL_FINISHED, order_id, data)


# --- endpoints --------------------------------------------------------------------------------------------


async def create_endpoint(
    session: AsyncSession, url: str, event_types: Sequence[str], description: str, actor: str
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        url=url,
        event_types=list(event_types),
        description=description,
        secret=new_secret(),
        enabled=True,
        created_by=actor,
    )
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return list(await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


async def endpoint(session: AsyncSession, endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint | None:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    return await session.scalar(query.with_for_update() if lock else query)


async def set_enabled(session: AsyncSession, endpoint_id: int, enabled: bool, reason: str | None) -> bool:
    """Enable (reason cleared) or disable an endpoint with a reason; False when it does not exist."""
    result = await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(enabled=enabled, disabled_reason=None if enabled else reason)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def rotate_secret(session: AsyncSession, endpoint_id: int) -> str | None:
    """A new secret for the endpoint (the next try of every delivery signs with it); None: no endpoint."""
    secret = new_secret()
    result = await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(secret=secret, secret_rotated_at=func.now())
    )
    return secret if result.rowcount else None  # type: ignore[attr-defined]


async def delete_endpoint(session: AsyncSession, endpoint_id: int) -> bool:
    """The endpoint and its delivery log; events stay (other endpoints may still send them)."""
    result = await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- deliveries -------------------------------------------------------------------------------------------


async def due_deliveries(session: AsyncSession, endpoint_id: int, limit: int) -> list[int]:
    """The endpoint's next pending deliveries in the order their events happened; none while disabled."""
    rows = await session.scalars(
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.state == "pending",
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    return list(rows)


async def endpoints_with_work(session: AsyncSession) -> dict[int, int]:
    """Enabled endpoints with pending deliveries, each with its newest pending delivery's id."""
    rows = await session.execute(
        select(WebhookDelivery.endpoint_id, func.max(WebhookDelivery.id))
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.state == "pending", WebhookEndpoint.enabled.is_(True))
        .group_by(WebhookDelivery.endpoint_id)
    )
    return {int(endpoint_id): int(newest) for endpoint_id, newest in rows}


async def backlog(session: AsyncSession) -> tuple[int, float]:
    """Pending deliveries of enabled endpoints, and the age in seconds of the oldest (0 with none)."""
    row = (
        await session.execute(
            select(func.count(), func.extract("epoch", func.now() - func.min(WebhookDelivery.created_at)))
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.state == "pending", WebhookEndpoint.enabled.is_(True))
        )
    ).one()
    return int(row[0]), float(row[1] or 0)


@dataclass(frozen=True)
class Outgoing:
    """What one try of a delivery sends, and where."""

    delivery_id: int
    event: WebhookEvent
    url: str
    secret: str


async def outgoing(session: AsyncSession, delivery_id: int) -> Outgoing | None:
    """The delivery to try now; None when it is no longer wanted (sent, given up, endpoint disabled or
    deleted)."""
    row = (
        await session.execute(
            select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.id == delivery_id)
        )
    ).first()
    if row is None:
        return None
    delivery, event, target = row
    if delivery.state != "pending" or not target.enabled:
        return None
    return Outgoing(delivery.id, event, target.url, target.secret)


async def freeze_snapshot(session: AsyncSession, event_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The event's order as first sent: written once, so every try and every endpoint sends the same."""
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.order_snapshot.is_(None))
        .values(order_snapshot=snapshot)
    )
    frozen = await session.scalar(select(WebhookEvent.order_snapshot).where(WebhookEvent.id == event_id))
    assert frozen is not None
    return dict(frozen)


@dataclass(frozen=True)
class Answer:
    """What one try got: an HTTP status (None: no answer) and the answer's start or what went wrong."""

    status_code: int | None
    answer: str
    duration_ms: int
    next_try_at: datetime | None

    @property
    def taken(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def log_attempt(session: AsyncSession, delivery_id: int, answer: Answer) -> None:
    """One try in the delivery log; a 2xx answer marks the delivery delivered."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery_id,
            status_code=answer.status_code,
            answer=answer.answer[:ANSWER_KEPT],
            duration_ms=answer.duration_ms,
            next_try_at=None if answer.taken else answer.next_try_at,
        )
    )
    values: dict[str, Any] = {
        "attempts": WebhookDelivery.attempts + 1,
        "last_status_code": answer.status_code,
        "last_answer": answer.answer[:ANSWER_KEPT],
        "next_try_at": None if answer.taken else answer.next_try_at,
    }
    if answer.taken:
        values |= {"state": "delivered", "delivered_at": func.now()}
    await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))


async def give_up(session: AsyncSession, endpoint_id: int, delivery_id: int, failure: str) -> None:
    """A delivery whose retries ran out: failed, and its endpoint disabled with the reason."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:  # the endpoint was deleted meanwhile
        return
    last = f"answered {delivery.last_status_code}" if delivery.last_status_code else delivery.last_answer
    reason = (
        f"gave up on event {delivery.event_id} after {delivery.attempts} tries in 25 hours; "
        f"last try: {last or failure}"
    )
    delivery.state, delivery.next_try_at = "failed", None
    await session.flush()
    await set_enabled(session, endpoint_id, False, reason[:1000])


async def redeliver(session: AsyncSession, endpoint_id: int, delivery_id: int) -> WebhookDelivery | None:
    """Send a delivery again (delivered or failed alike), same event id; None: not this endpoint's."""
    delivery = await session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
        .with_for_update()
    )
    if delivery is None:
        return None
    delivery.state = "pending"
    delivery.next_try_at = None
    await session.flush()
    return delivery


@dataclass(frozen=True)
class LoggedDelivery:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


async def delivery_log(
    session: AsyncSession, endpoint_id: int, *, before: int | None, limit: int, attempts_each: int = 20
) -> tuple[list[LoggedDelivery], bool]:
    """The endpoint's deliveries newest first (ids below `before`), each with its latest attempts."""
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = [(d, e) for d, e in await session.execute(query)]
    page = rows[:limit]
    tries: dict[int, list[WebhookAttempt]] = {}
    if page:
        found = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_([d.id for d, _ in page]))
            .order_by(WebhookAttempt.id.desc())
        )
        for attempt in found:
            kept = tries.setdefault(attempt.delivery_id, [])
            if len(kept) < attempts_each:
                kept.append(attempt)
    return [LoggedDelivery(d, e, tries.get(d.id, [])) for d, e in page], len(rows) > limit
