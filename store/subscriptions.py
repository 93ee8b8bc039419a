"""Subscriptions: intake, each post's child order, the workflow's projection, and the reads.

A subscription's id is drawn from the orders' id sequence, so one id names an order, a drip-feed run or a
subscription, never two of them (API v2 `status` answers any of them). A child order is placed by the normal
intake (store.orders.place_order: its own charge under the ledger's locks) and linked to its post in the
same transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from pydantic import TypeAdapter
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.customers import get_customer
from store.keys import Caller
from store.models import ApiKey, Provider, Route, Service, Subscription, SubscriptionOrder
from store.orders import OrderRejected, OrderRequest, order_input, place_order
from workflows import policy
from workflows.models import RouteRef
from workflows.subscription_models import (
    ChildPlaced,
    PlaceChild,
    SubscriptionInput,
    SubscriptionProjection,
)

SUBSCRIPTION_INPUT = TypeAdapter(SubscriptionInput)


@dataclass(frozen=True)
class SubscriptionRequest:
    customer_id: int
    service_id: int
    username: str
    min_quantity: int
    max_quantity: int
    posts: int | None = None
    old_posts: int = 0
    delay_minutes: int = 0
    expiry: str | None = None  # d/m/Y

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()


async def is_subscription_service(session: AsyncSession, service_id: int) -> bool:
    kind = await session.scalar(select(Service.type).where(Service.id == service_id))
    return kind == policy.SUBSCRIPTIONS


async def place_subscription(
    session: AsyncSession, caller: Caller, request: SubscriptionRequest, idempotency_key: str, today: date
) -> tuple[Subscription, bool]:
    """Validate and write the subscription (nothing is charged until a post's child order). Returns
    (subscription, created); a replay with the same key returns the first one. Refusals raise OrderRejected
    with the standard texts."""
    fingerprint = request.fingerprint()
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"{request.customer_id}:subscription:{idempotency_key}"},
    )
    existing = await session.scalar(
        select(Subscription).where(
            Subscription.customer_id == request.customer_id, Subscription.idempotency_key == idempotency_key
        )
    )
    if existing is not None:
        if existing.request_hash != fingerprint:
            raise OrderRejected("idempotency_conflict", "this idempotency key was already used otherwise")
        return existing, False
    service = await session.get(Service, request.service_id)
    if service is None or not service.active or service.type != policy.SUBSCRIPTIONS:
        raise OrderRejected("unknown_service", "Incorrect service ID")
    expiry = None
    if request.expiry is not None:
        expiry = policy.parse_expiry(request.expiry)
        if expiry is None:
            raise OrderRejected("bad_subscription", "Incorrect request")
    terms = policy.SubscriptionTerms(service.id, service.min_quantity, service.max_quantity)
    refusal = policy.subscription_refusal(
        terms,
        username=request.username,
        low=request.min_quantity,
        high=request.max_quantity,
        posts=request.posts,
        old_posts=request.old_posts,
        delay=request.delay_minutes,
        expiry=expiry,
        today=today,
    )
    if refusal is not None:
        raise OrderRejected(*refusal)
    child = await session.get(Service, service.child_service_id) if service.child_service_id else None
    route = await _first_route(session, service.id)
    if child is None or not child.active or route is None:
        raise OrderRejected("service_unavailable", f"service {service.id} has no provider to deliver it", 409)
    try:
        customer_id = (await get_customer(session, request.customer_id)).id
    except LookupError as exc:
        raise OrderRejected("customer_not_found", str(exc)) from exc
    new_id = await session.scalar(select(func.nextval(func.pg_get_serial_sequence("orders", "id"))))
    assert new_id is not None
    username = policy.username_of(request.username)
    assert username is not None  # the refusal above checked it
    frozen = SubscriptionInput(
        subscription_id=int(new_id),
        customer_id=customer_id,
        service_id=service.id,
        child_service_id=child.id,
        username=username,
        min_quantity=request.min_quantity,
        max_quantity=request.max_quantity,
        posts=request.posts,
        old_posts=request.old_posts,
        delay_minutes=request.delay_minutes,
        expiry=policy.format_expiry(expiry),
        expires_at=policy.expiry_moment(expiry).isoformat() if expiry else None,
        route=route,
    )
    row = Subscription(
        id=int(new_id),
        customer_id=customer_id,
        service_id=service.id,
        username=username,
        min_quantity=request.min_quantity,
        max_quantity=request.max_quantity,
        posts=request.posts,
        old_posts=request.old_posts,
        delay_minutes=request.delay_minutes,
        expiry=frozen.expiry,
        status=policy.SubscriptionStatus.ACTIVE,
        posts_used=0,
        reason="",
        workflow_input=SUBSCRIPTION_INPUT.dump_python(frozen, mode="json"),
        state_version=0,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        created_by_key_id=caller.key_id,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, True


async def _first_route(session: AsyncSession, service_id: int) -> RouteRef | None:
    row = (
        await session.execute(
            select(Route.provider_id, Route.provider_service_id, Provider.poll_interval_seconds)
            .join(Provider, Provider.id == Route.provider_id)
            .where(Route.service_id == service_id, Provider.active.is_(True))
            .order_by(Route.position)
            .limit(1)
        )
    ).first()
    return (
        None if row is None else RouteRef(row.provider_id, row.provider_service_id, row.poll_interval_seconds)
    )


def subscription_input(row: Subscription) -> SubscriptionInput:
    return SUBSCRIPTION_INPUT.validate_python(row.workflow_input)


async def place_child(session: AsyncSession, child: PlaceChild) -> ChildPlaced:
    """The post's child order, placed and charged once (idempotency key `subscription:<id>:post:<n>`), by
    the key that placed the subscription; a refusal (funds, link, limits) is answered, not raised."""
    sub = await session.get(Subscription, child.subscription_id)
    assert sub is not None, f"subscription {child.subscription_id} has no row"
    frozen = subscription_input(sub)
    key = await session.get(ApiKey, sub.created_by_key_id)
    assert key is not None
    caller = Caller(key.id, key.role, key.customer_id)
    request = OrderRequest(sub.customer_id, frozen.child_service_id, child.link, child.quantity)
    try:
        async with session.begin_nested():  # a refusal leaves nothing behind
            order, _ = await place_order(
                session, caller, request, f"subscription:{sub.id}:post:{child.post_no}"
            )
    except OrderRejected as exc:
        return ChildPlaced(None, exc.code, exc.message)
    await session.execute(
        insert(SubscriptionOrder)
        .values(subscription_id=sub.id, post_no=child.post_no, order_id=order.id)
        .on_conflict_do_nothing()
    )
    return ChildPlaced(order_input(order))


async def project(session: AsyncSession, p: SubscriptionProjection) -> bool:
    """The workflow's state into the read model; an older version never overwrites a newer one."""
    values: dict[str, object] = {
        "state_version": p.version,
        "status": p.status,
        "posts_used": p.posts_used,
        "reason": p.reason,
        "provider_subscription_id": p.provider_subscription_id,
    }
    if p.finished:
        values["finished_at"] = func.now()
    result = await session.execute(
        update(Subscription)
        .where(Subscription.id == p.subscription_id, Subscription.state_version < p.version)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_subscription(session: AsyncSession, subscription_id: int) -> Subscription | None:
    return await session.get(Subscription, subscription_id)


async def subscriptions_of_customer(
    session: AsyncSession, customer_id: int, ids: Sequence[int]
) -> dict[int, Subscription]:
    rows = await session.scalars(
        select(Subscription).where(Subscription.id.in_(ids), Subscription.customer_id == customer_id)
    )
    return {s.id: s for s in rows}


async def child_orders(session: AsyncSession, subscription_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each subscription's child order ids, by post."""
    found: dict[int, list[int]] = {i: [] for i in subscription_ids}
    rows = await session.execute(
        select(SubscriptionOrder.subscription_id, SubscriptionOrder.order_id)
        .where(SubscriptionOrder.subscription_id.in_(subscription_ids))
        .order_by(SubscriptionOrder.subscription_id, SubscriptionOrder.post_no)
    )
    for subscription_id, order_id in rows:
        found[int(subscription_id)].append(int(order_id))
    return found


async def unstarted_subscriptions(session: AsyncSession, older_than_seconds: int) -> list[Subscription]:
    """Subscriptions whose workflow never reported (the API lost the start): the sweeper starts them."""
    rows = await session.scalars(
        select(Subscription)
        .where(
            Subscription.state_version == 0,
            Subscription.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
        )
        .limit(100)
    )
    return list(rows)
