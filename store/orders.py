"""Order intake and the read model's queries.

Intake writes the order and its charge in one transaction; afterwards only the order's workflow changes it
(through the projection activity).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger, runs
from store.customers import get_customer
from store.keys import Caller
from store.models import (
    Order,
    OrderEvent,
    Provider,
    ProviderSubmission,
    Refill,
    Route,
    Service,
)
from workflows import policy
from workflows.models import OpenRefill, OrderInput, Phase, Projection, RefillStatus, RouteRef, Status

ORDER_INPUT = TypeAdapter(OrderInput)


class OrderRejected(Exception):
    """A request that cannot become an order; `code` is stable for clients."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class OrderRequest:
    customer_id: int
    service_id: int
    link: str
    quantity: int
    runs: int | None = None
    interval: int | None = None

    def fingerprint(self) -> str:
        """A stable hash of the request body, to tell a replay from a different request with the same key."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()

    @property
    def total_quantity(self) -> int:
        """Drip-feed quantities are per run, as in API v2."""
        return self.quantity * (self.runs or 1)


async def place_order(
    session: AsyncSession, caller: Caller, request: OrderRequest, idempotency_key: str
) -> tuple[Order, bool]:
    """Validate, write the order and charge it. Returns (order, created); a replay returns the first order."""
    fingerprint = request.fingerprint()
    # Serialise requests that share an idempotency key, so two concurrent replays cannot both create.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"{request.customer_id}:{idempotency_key}"},
    )
    existing = await session.scalar(
        select(Order).where(
            Order.customer_id == request.customer_id, Order.idempotency_key == idempotency_key
        )
    )
    if existing is not None:
        if existing.request_hash != fingerprint:
            raise OrderRejected(
                "idempotency_conflict", "this Idempotency-Key was already used with a different request"
            )
        return existing, False

    service = await session.get(Service, request.service_id)
    if service is None or not service.active:
        raise OrderRejected("unknown_service", f"service {request.service_id} does not exist")
    _validate(service, request)
    routes = await _active_routes(session, service.id)
    if not routes:
        raise OrderRejected("service_unavailable", f"service {service.id} has no provider to deliver it", 409)
    customer_id = await _customer_or_reject(session, request.customer_id)

    charge = policy.charge_for(request.total_quantity, service.rate_micros)
    order = Order(
        customer_id=customer_id,
        service_id=service.id,
        link=request.link,
        quantity=request.total_quantity,
        runs=request.runs,
        interval_minutes=request.interval,
        charge_micros=charge,
        status=Status.PENDING,
        phase=Phase.QUEUED,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        created_by_key_id=caller.key_id,
        workflow_input={},
    )
    session.add(order)
    await session.flush()
    escrow = ledger.escrow_account(order.id)
    await ledger.ensure_account(session, escrow, "escrow")
    if charge > 0:
        try:
            await ledger.transfer(
                session,
                key=f"order:{order.id}:charge",
                kind="charge",
                debit=ledger.customer_account(customer_id),
                credit=escrow,
                amount=charge,
                actor=caller.actor,
                reason="order placed",
                order_id=order.id,
            )
        except ledger.InsufficientFunds as exc:
            raise OrderRejected("insufficient_funds", "not enough funds on balance", status=402) from exc
    if request.runs:
        await runs.add_drip_feed_runs(session, order.id, request.quantity, request.runs)
    order.workflow_input = ORDER_INPUT.dump_python(_frozen_input(order, service, routes), mode="json")
    await session.flush()
    await session.refresh(order)  # the flush expired server-set columns (updated_at); load them now
    return order, True


def order_input(order: Order) -> OrderInput:
    """What the order's workflow starts with, as frozen at intake."""
    return ORDER_INPUT.validate_python(order.workflow_input)


async def _customer_or_reject(session: AsyncSession, customer_id: int) -> int:
    try:
        return (await get_customer(session, customer_id)).id
    except LookupError as exc:
        raise OrderRejected("customer_not_found", str(exc)) from exc


def _validate(service: Service, request: OrderRequest) -> None:
    terms = policy.ServiceTerms(
        service.id,
        service.name,
        service.link_pattern,
        service.min_quantity,
        service.max_quantity,
        service.dripfeed,
        service.pace_per_hour,
    )
    refusal = policy.intake_refusal(
        terms, link=request.link, quantity=request.quantity, runs=request.runs, interval=request.interval
    )
    if refusal is not None:
        raise OrderRejected(*refusal)


async def _active_routes(session: AsyncSession, service_id: int) -> list[RouteRef]:
    """The service's routes whose provider is active, best first."""
    rows = await session.execute(
        select(Route.provider_id, Route.provider_service_id, Provider.poll_interval_seconds)
        .join(Provider, Provider.id == Route.provider_id)
        .where(Route.service_id == service_id, Provider.active.is_(True))
        .order_by(Route.position)
    )
    return [RouteRef(r.provider_id, r.provider_service_id, r.poll_interval_seconds) for r in rows]


# An order whose workflow has not reported this long after intake lost its start (the API died between the
# commit and the start, or Temporal was down and the client never replayed): the worker's sweeper starts it.
UNSTARTED_AFTER_SECONDS = 60


def is_unstarted(older_than_seconds: int) -> ColumnElement[bool]:
    """The condition on an order whose workflow has not reported `older_than_seconds` after intake."""
    return and_(
        Order.state_version == 0,
        Order.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
    )


async def unstarted_orders(session: AsyncSession, older_than_seconds: int, limit: int = 100) -> list[Order]:
    """Charged orders whose workflow never reported: the API died, or Temporal was down, after the commit."""
    rows = await session.scalars(
        select(Order).where(is_unstarted(older_than_seconds)).order_by(Order.created_at).limit(limit)
    )
    return list(rows)


def _frozen_input(order: Order, service: Service, routes: list[RouteRef]) -> OrderInput:
    """The order description the workflow starts with: the catalog's values as of intake."""
    return OrderInput(
        order_id=order.id,
        customer_id=order.customer_id,
        service_id=order.service_id,
        link=order.link,
        quantity=order.quantity,
        charge_micros=order.charge_micros,
        tolerance_bp=service.tolerance_bp,
        pace_per_hour=service.pace_per_hour,
        routes=routes,
        runs=order.runs,
        interval_minutes=order.interval_minutes,
        service_name=service.name,
        cancel_allowed=service.cancel,
        refill_days=service.refill_days,
        refill_cooldown_hours=service.refill_cooldown_hours,
        refill_max=service.refill_max,
        max_interruption_hours=service.max_interruption_hours,
        link_fault_refund=service.link_fault_refund,
    )


async def get_order(session: AsyncSession, order_id: int) -> Order | None:
    return await session.get(Order, order_id)


@dataclass(frozen=True)
class OrderFilter:
    """What a listing may be narrowed by; every field is optional."""

    customer_id: int | None = None
    status: str | None = None
    phase: str | None = None
    service_id: int | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive


async def list_orders(
    session: AsyncSession, where: OrderFilter, *, after: int, limit: int
) -> tuple[list[Order], bool]:
    """One page of orders with ids above `after`, by ascending id; the flag says whether more follow."""
    query = select(Order).where(Order.id > after).order_by(Order.id).limit(limit + 1)
    if where.customer_id is not None:
        query = query.where(Order.customer_id == where.customer_id)
    if where.status is not None:
        query = query.where(Order.status == where.status)
    if where.phase is not None:
        query = query.where(Order.phase == where.phase)
    if where.service_id is not None:
        query = query.where(Order.service_id == where.service_id)
    if where.created_from is not None:
        query = query.where(Order.created_at >= where.created_from)
    if where.created_to is not None:
        query = query.where(Order.created_at < where.created_to)
    rows = list(await session.scalars(query))
    return rows[:limit], len(rows) > limit


async def orders_of_customer(session: AsyncSession, customer_id: int, ids: Sequence[int]) -> dict[int, Order]:
    """The customer's orders among `ids`; another customer's order is simply absent."""
    rows = await session.scalars(select(Order).where(Order.id.in_(ids), Order.customer_id == customer_id))
    return {o.id: o for o in rows}


async def timeline(session: AsyncSession, order_id: int, limit: int | None = None) -> list[OrderEvent]:
    """The order's timeline in order; its first `limit` events when a limit is given."""
    query = select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.seq)
    return list(await session.scalars(query if limit is None else query.limit(limit)))


async def refills_of_customer(
    session: AsyncSession, customer_id: int, ids: Sequence[int]
) -> dict[int, Refill]:
    """The customer's refills among `ids` (a refill belongs to whoever owns its order)."""
    rows = await session.scalars(
        select(Refill)
        .join(Order, Order.id == Refill.order_id)
        .where(Refill.id.in_(ids), Order.customer_id == customer_id)
    )
    return {r.id: r for r in rows}


# Phases in which an order is in the hands of a provider (or waiting for one): what a provider pause reaches.


async def in_flight_at(session: AsyncSession, provider_id: int) -> list[Order]:
    """The orders a provider holds now, as the read model last saw them."""
    rows = await session.scalars(
        select(Order)
        .where(Order.provider_id == provider_id, Order.phase.in_(policy.IN_FLIGHT))
        .order_by(Order.id)
    )
    return list(rows)


async def submissions_of(session: AsyncSession, order_id: int) -> list[ProviderSubmission]:
    """The order's runs as sent to providers (what ops check when a run needs reconciliation)."""
    return list(
        await session.scalars(
            select(ProviderSubmission)
            .where(ProviderSubmission.order_id == order_id)
            .order_by(ProviderSubmission.run_no, ProviderSubmission.id)
        )
    )


async def costs_of(session: AsyncSession, order_ids: Sequence[int]) -> dict[int, int]:
    """What the providers charged for each order's provider orders, for the orders that have a cost."""
    if not order_ids:
        return {}
    rows = await session.execute(
        select(ProviderSubmission.order_id, func.sum(ProviderSubmission.cost_micros))
        .where(ProviderSubmission.order_id.in_(order_ids), ProviderSubmission.cost_micros.is_not(None))
        .group_by(ProviderSubmission.order_id)
    )
    return {int(order_id): int(total or 0) for order_id, total in rows}


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
    result = await session.execute(
        update(Order).where(Order.id == p.order_id, Order.state_version < p.version).values(**values)
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
        await session.execute(
            update(Refill)
            .where(Refill.order_id == p.order_id, Refill.refill_no == refill.refill_no)
            .values(status=refill.status, finished_at=func.now() if refill.finished else None)
        )
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
    if p.runs and result.rowcount:  # type: ignore[attr-defined]  # an older write keeps off them
        await runs.project_runs(session, p.order_id, p.runs)
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


async def refills(session: AsyncSession, order_id: int) -> list[Refill]:
    return list(
        await session.scalars(select(Refill).where(Refill.order_id == order_id).order_by(Refill.refill_no))
    )
