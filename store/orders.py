"""Order intake and the read model's queries (the read model's writes are in store/read_model.py).

Intake writes the order and its charge in one transaction; afterwards only the order's workflow changes it
(through the projection activity).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store import intake, prices
from store.db import autocommit
from store.keys import Caller
from store.models import (
    Customer,
    CustomerPrice,
    Order,
    OrderEvent,
    Provider,
    ProviderSubmission,
    Refill,
    Route,
    Service,
)
from workflows import policy
from workflows.models import (
    OrderInput,
    OrderParameters,
    Phase,
    RouteRef,
    ServiceType,
    Status,
)

ORDER_INPUT = TypeAdapter(OrderInput)
PARAMETERS = TypeAdapter(OrderParameters)


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
    quantity: int | None  # per run for a drip-feed; None where the type counts it (lines, a package)
    runs: int | None = None
    interval: int | None = None
    parameters: OrderParameters = field(default_factory=OrderParameters)
    # API v2 is liberal: a parameter the service's type does not take, and a quantity of a type that counts
    # its own, are ignored (and never forwarded) instead of refused.
    liberal: bool = False

    def fingerprint(self) -> str:
        """A stable hash of the request body, to tell a replay from a different request with the same key.
        A Default order's hash is what it was before service types existed."""
        body = dataclasses.asdict(self)
        if self.parameters == OrderParameters():
            del body["parameters"]
        if not self.liberal:
            del body["liberal"]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def take_order(
    session: AsyncSession, caller: Caller, request: OrderRequest, idempotency_key: str
) -> tuple[Order, bool]:
    """Intake as a checkout runs it: place_order with each statement a transaction of its own, the write's
    commit not waiting for the disk, then a wait until it is there. Returns (order, created) once the order
    is as durable as a plain commit makes it; refusals raise OrderRejected, with nothing written.

    Three round trips: the catalog read, the write and the wait. The write's one statement is also its
    commit, so the customer's balance row (which every order of the customer must lock) is held inside the
    server only: not across a round trip to this process, nor through a disk flush. With a plain commit a
    reseller's burst went one order per flush, and a slow flush (the worker writing beside it) stalled the
    whole queue behind it. The wait is a transaction that writes (see _FLUSHED) and commits synchronously:
    its commit record follows the order's in the WAL, so its flush covers the order too, and the waits of
    concurrent checkouts share their flushes (each locks only its own order). In the moment between the
    write and the wait another session can see the order before it is on disk; the answer to the
    storefront and the start of its workflow come after the wait, and the sweeper takes only orders a
    minute old. Its webhook's delivery workflow is woken by the worker's feeder, which polls once a second:
    that the feeder sends an event in that moment and the server then loses it is the one gap left."""
    assert not session.in_transaction(), "take_order runs each statement alone: pass a fresh session"
    await autocommit(session)
    try:
        placed = await _place(session, caller, request, idempotency_key, alone=True)
        await session.execute(_FLUSHED, {"id": placed[0].id})
    except BaseException:
        await session.rollback()
        raise
    await session.commit()  # ends the session's transaction (nothing is sent in autocommit)
    return placed


# The wait for the order's flush: a no-op update of the order's own row. A transaction commits synchronously
# only if it wrote WAL (one that merely took a transaction id does not wait), and nothing else locks a row
# whose workflow has not started yet.
_FLUSHED = text("UPDATE orders SET state_version = state_version WHERE id = :id")


async def place_order(
    session: AsyncSession, caller: Caller, request: OrderRequest, idempotency_key: str
) -> tuple[Order, bool]:
    """Validate, write the order and charge it, inside the caller's transaction (a subscription's post, a
    test). Returns (order, created); a replay returns the first order.

    A refusal raises OrderRejected and may leave the transaction aborted: the caller rolls it back. The
    same two statements as take_order, the write inside a savepoint (so that when it meets the key's
    index the first order can still be looked up), and the commit is the caller's."""
    return await _place(session, caller, request, idempotency_key, alone=False)


async def _place(
    session: AsyncSession, caller: Caller, request: OrderRequest, idempotency_key: str, *, alone: bool
) -> tuple[Order, bool]:
    """The catalog read, then the write: one statement that debits the customer's balance if it covers the
    charge and only then writes the order, its escrow account and charge, its drip-feed runs and its
    webhook event. `alone`: the session is in autocommit (take_order), so the write is its own transaction.

    Whatever stops it, the catalog or the write, the key is looked up before the refusal goes out: a replay,
    or the second of two requests with one key, is answered with the first order (see _replay_or)."""
    fingerprint = request.fingerprint()
    try:
        service, routes, typed, own_price, order_id = await _checked(session, request)
    except OrderRejected as refused:
        return await _replay_or(refused, session, request.customer_id, idempotency_key, fingerprint)

    kind = ServiceType(service.type)
    total = typed.quantity * (request.runs or 1)  # drip-feed quantities are per run, as in API v2
    charge = policy.order_charge(kind, total, prices.rate_of(service, own_price))  # the customer's own rate
    values = {
        "id": order_id,
        "customer_id": request.customer_id,
        "service_id": service.id,
        "link": request.link,
        "link_key": policy.link_key(request.link) if service.deny_link_duplicates else None,
        "service_type": kind,
        "parameters": PARAMETERS.dump_python(typed.parameters, mode="json", exclude_defaults=True) or None,
        "quantity": total,
        "runs": request.runs,
        "interval_minutes": request.interval,
        "charge_micros": charge,
        "status": Status.PENDING,
        "phase": Phase.QUEUED,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "created_by_key_id": caller.key_id,
    }
    frozen = _frozen_input(values, service, routes, typed.parameters)
    values["workflow_input"] = ORDER_INPUT.dump_python(frozen, mode="json")
    write = intake.write_order(session, values, per_run=typed.quantity, actor=caller.actor, alone=alone)
    refusal: OrderRejected | None = None
    try:
        if alone:
            order = await write
        else:
            async with session.begin_nested():
                order = await write
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        if constraint == "orders_active_link":
            refusal = OrderRejected(*policy.DUPLICATE_LINK, status=409)
        elif constraint != "orders_idempotency":
            raise
        order = None
    else:
        if order is None:
            refusal = OrderRejected("insufficient_funds", "not enough funds on balance", status=402)
    if order is not None:
        return order, True
    if refusal is None:  # the key's index: an order holds the key
        refusal = OrderRejected("idempotency_conflict", "this Idempotency-Key is taken")
    return await _replay_or(refusal, session, request.customer_id, idempotency_key, fingerprint)


async def _replay_or(
    refusal: OrderRejected, session: AsyncSession, customer_id: int, idempotency_key: str, fingerprint: str
) -> tuple[Order, bool]:
    """The first order of a replay, or the refusal. A replay, or the second of two requests with one key,
    meets whichever comes first of the catalog (changed since), the key's index, a guarded link's index and
    the balance (the first order spent it): the key decides."""
    existing = await _order_by_key(session, customer_id, idempotency_key)
    if existing is None:
        raise refusal
    return _replayed(existing, fingerprint), False


# The service's routes whose provider is active, best first, as [provider, provider service, poll floor]
# rows: a column of the catalog read rather than a statement of its own.
_ROUTES = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(
                        Route.provider_id, Route.provider_service_id, Provider.poll_interval_seconds
                    ),
                    Route.position,
                )
            ),
            func.json_build_array(),
        )
    )
    .select_from(Route)
    .join(Provider, Provider.id == Route.provider_id)
    .where(Route.service_id == Service.id, Provider.active.is_(True))
    .correlate(Service)
    .scalar_subquery()
)


async def _checked(
    session: AsyncSession, request: OrderRequest
) -> tuple[Service, list[RouteRef], policy.TypedOrder, CustomerPrice | None, int]:
    """The request against the catalog, before anything is written: the service, its active routes, the
    order as its type takes it, the customer's own price and the new order's id; or OrderRejected."""
    found = (
        await session.execute(
            select(
                Service,
                CustomerPrice,
                select(Customer.id).where(Customer.id == request.customer_id).exists(),
                func.nextval(func.pg_get_serial_sequence("orders", "id")),
                _ROUTES,
            )
            .outerjoin(
                CustomerPrice,
                and_(
                    CustomerPrice.service_id == Service.id, CustomerPrice.customer_id == request.customer_id
                ),
            )
            .where(Service.id == request.service_id)
        )
    ).one_or_none()
    if found is None or not found[0].active:
        raise OrderRejected("unknown_service", f"service {request.service_id} does not exist")
    service, own_price, customer_exists, order_id, route_rows = found
    typed = _validate(service, request)
    routes = [RouteRef(*row) for row in route_rows]
    if not routes:
        raise OrderRejected("service_unavailable", f"service {service.id} has no provider to deliver it", 409)
    if not customer_exists:
        raise OrderRejected("customer_not_found", f"customer {request.customer_id} does not exist")
    return service, routes, typed, own_price, int(order_id)


async def _order_by_key(session: AsyncSession, customer_id: int, idempotency_key: str) -> Order | None:
    return await session.scalar(
        select(Order).where(Order.customer_id == customer_id, Order.idempotency_key == idempotency_key)
    )


def _replayed(existing: Order, fingerprint: str) -> Order:
    if existing.request_hash != fingerprint:
        raise OrderRejected(
            "idempotency_conflict", "this Idempotency-Key was already used with a different request"
        )
    return existing


def order_input(order: Order) -> OrderInput:
    """What the order's workflow starts with, as frozen at intake."""
    return ORDER_INPUT.validate_python(order.workflow_input)


def _validate(service: Service, request: OrderRequest) -> policy.TypedOrder:
    """The order as the service's terms and type take it (workflows/policy.py), or OrderRejected."""
    terms = policy.ServiceTerms(
        service.id,
        service.name,
        service.link_pattern,
        service.min_quantity,
        service.max_quantity,
        service.dripfeed,
        service.pace_per_hour,
        ServiceType(service.type),
    )
    typed = policy.typed_order(
        terms, quantity=request.quantity, parameters=request.parameters, strict=not request.liberal
    )
    if not isinstance(typed, policy.TypedOrder):
        raise OrderRejected(*typed)
    refusal = policy.intake_refusal(
        terms, link=request.link, quantity=typed.quantity, runs=request.runs, interval=request.interval
    )
    if refusal is not None:
        raise OrderRejected(*refusal)
    return typed


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


def _frozen_input(
    order: dict[str, Any], service: Service, routes: list[RouteRef], parameters: OrderParameters
) -> OrderInput:
    """The order description the workflow starts with: the catalog's values as of intake."""
    return OrderInput(
        order_id=order["id"],
        customer_id=order["customer_id"],
        service_id=order["service_id"],
        link=order["link"],
        quantity=order["quantity"],
        charge_micros=order["charge_micros"],
        tolerance_bp=service.tolerance_bp,
        pace_per_hour=service.pace_per_hour,
        routes=routes,
        runs=order["runs"],
        interval_minutes=order["interval_minutes"],
        service_name=service.name,
        cancel_allowed=service.cancel,
        refill_days=service.refill_days,
        refill_cooldown_hours=service.refill_cooldown_hours,
        refill_max=service.refill_max,
        max_interruption_hours=service.max_interruption_hours,
        link_fault_refund=service.link_fault_refund,
        service_type=ServiceType(order["service_type"]),
        parameters=parameters,
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
    link: str | None = None  # a part of the link, any case
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
    if where.link is not None:
        query = query.where(Order.link.icontains(where.link, autoescape=True))
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


async def refills(session: AsyncSession, order_id: int) -> list[Refill]:
    return list(
        await session.scalars(select(Refill).where(Refill.order_id == order_id).order_by(Refill.refill_no))
    )
