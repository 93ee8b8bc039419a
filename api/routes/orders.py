"""Orders: placed by the storefront (or a customer key), read by every role, cancelled and refilled through
their workflow."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Response

from api.actions import MESSAGE_ERRORS, Messages, place_and_start, visible_order
from api.auth import current_caller, own_customer, role
from api.deps import Session, Starts
from api.errors import ApiError, mark_replayed
from api.schemas import (
    Cursor,
    DripFeedRunOut,
    Id,
    IdempotencyKey,
    Moment,
    OptionalReason,
    OrderCreate,
    OrderDetail,
    OrderList,
    OrderOut,
    OrderStateOut,
    ProviderOrderOut,
    RefillList,
    RefillOut,
    TimelineEvent,
    error_responses,
    replayable_responses,
)
from store import orders as store_orders
from store import runs as store_runs
from store import slots
from store.keys import Caller
from store.models import Refill
from workflows.models import OrderAction, Phase, RefillRequest, RefillStatus, Status
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])

TIMELINE_LIMIT = 1000


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses=replayable_responses(OrderOut, 401, 402, 403, 409, 422),
)
async def create_order(
    body: OrderCreate,
    response: Response,
    session: Session,
    starts: Starts,
    idempotency_key: Annotated[IdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Annotated[Caller, Depends(role("storefront", "admin", "customer"))],
) -> OrderOut:
    """Place an order: validated, written and charged in one transaction, then handed to its workflow
    (started right after the answer: the storefront never waits for Temporal).

    The same `Idempotency-Key` with the same body returns the first order (200); with another body, 422.
    """
    customer_id = body.customer_id
    if caller.role == "customer":
        if customer_id is not None and customer_id != caller.customer_id:
            raise ApiError(403, "forbidden", "a customer key places orders only for its own customer")
        customer_id = caller.customer_id
    if customer_id is None:
        raise ApiError(422, "invalid_request", "customer_id is required")
    request = store_orders.OrderRequest(
        customer_id=customer_id,
        service_id=body.service_id,
        link=body.link,
        quantity=body.quantity,
        runs=body.runs,
        interval=body.interval,
    )
    order, created = await place_and_start(session, starts, caller, request, idempotency_key)
    if not created:
        mark_replayed(response)
    return OrderOut.of(order, for_customer=caller.role == "customer")


@router.get("/{order_id}", response_model=OrderDetail, responses=error_responses(401, 404, 422))
async def get_order(
    order_id: Id, session: Session, caller: Annotated[Caller, Depends(current_caller)]
) -> OrderDetail:
    """The order with its timeline (runs, interruptions, refunds, messages and who sent them) and refills."""
    order = await visible_order(session, caller, order_id)
    for_customer = caller.role == "customer"
    events = await store_orders.timeline(session, order_id, TIMELINE_LIMIT + 1)
    refills = await store_orders.refills(session, order_id)
    submissions = [] if for_customer else await store_orders.submissions_of(session, order_id)
    costs = [s.cost_micros for s in submissions if s.cost_micros is not None]
    shown = OrderOut.of(order, for_customer=for_customer, cost_micros=sum(costs) if costs else None)
    position = await slots.queue_position(session, order_id)
    if position is not None:  # the live place in line, never a number that has aged
        shown.note = f"waiting for a provider slot: number {position} in line"
    return OrderDetail(
        **shown.model_dump(),
        timeline=[TimelineEvent.of(e, for_customer=for_customer) for e in events[:TIMELINE_LIMIT]],
        timeline_truncated=len(events) > TIMELINE_LIMIT,
        refills=[RefillOut.of(r, for_customer=for_customer) for r in refills],
        queue_position=position,
        provider_orders=None if for_customer else [ProviderOrderOut.of(s) for s in submissions],
        drip_feed=[DripFeedRunOut.of(r) for r in await store_runs.drip_feed_runs(session, order_id)]
        if order.runs
        else [],
    )


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"o:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        last_id = int(value)
        if kind != "o" or not 0 <= last_id < 2**63:
            raise ValueError(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API gave out") from exc
    return last_id


@router.get("", response_model=OrderList, responses=error_responses(401, 404, 422))
async def list_orders(
    session: Session,
    caller: Annotated[Caller, Depends(current_caller)],
    customer_id: Id | None = None,
    status: Status | None = None,
    phase: Phase | None = None,
    service_id: Id | None = None,
    created_from: Annotated[Moment | None, Query(description="inclusive; ISO 8601, UTC if no zone")] = None,
    created_to: Annotated[Moment | None, Query(description="exclusive; ISO 8601, UTC if no zone")] = None,
    cursor: Annotated[Cursor | None, Query(description="`next_cursor` of the last page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderList:
    """Orders page by page, oldest first (stable while new orders arrive); a customer key sees its own.

    The cursor is opaque: pass `next_cursor` back with the same filters to get the next page.
    """
    if caller.role == "customer":
        if customer_id is not None:
            own_customer(caller, customer_id)
        customer_id = caller.customer_id
    where = store_orders.OrderFilter(
        customer_id=customer_id,
        status=status,
        phase=phase,
        service_id=service_id,
        created_from=created_from,
        created_to=created_to,
    )
    after = _decode_cursor(cursor) if cursor else 0
    rows, more = await store_orders.list_orders(session, where, after=after, limit=limit)
    for_customer = caller.role == "customer"
    costs = {} if for_customer else await store_orders.costs_of(session, [o.id for o in rows])
    return OrderList(
        orders=[OrderOut.of(o, for_customer=for_customer, cost_micros=costs.get(o.id)) for o in rows],
        next_cursor=_encode_cursor(rows[-1].id) if more else None,
    )


@router.post("/{order_id}/cancel", response_model=OrderStateOut, responses=MESSAGE_ERRORS)
async def cancel_order(
    order_id: Id,
    session: Session,
    messages: Messages,
    caller: Annotated[Caller, Depends(role("storefront", "support", "admin", "customer"))],
    body: Annotated[OptionalReason | None, Body()] = None,
) -> OrderStateOut:
    """Ask the order to cancel. Honoured while the service allows it and the order has not started
    delivering (`cannot_cancel` otherwise); the refund follows once the order reaches `Canceled`."""
    reason = body.reason if body else ""
    order = await visible_order(session, caller, order_id)
    state = await messages.send(order, OrderWorkflow.cancel, OrderAction(caller.actor, reason))
    return OrderStateOut.of(state)


REFILL_ROLES = ("storefront", "support", "admin", "customer")


@router.post("/{order_id}/refills", status_code=201, response_model=RefillOut, responses=MESSAGE_ERRORS)
async def request_refill(
    order_id: Id,
    session: Session,
    messages: Messages,
    caller: Annotated[Caller, Depends(role(*REFILL_ROLES))],
    body: Annotated[OptionalReason | None, Body()] = None,
) -> RefillOut:
    """Request a refill of a completed order inside its refill window; the order forwards it to the provider
    and tracks it to its end. Refusals: `refill_disabled`, `not_completed`, `refill_too_soon`,
    `refill_window_closed`, `refill_limit`, `refill_in_progress`."""
    reason = body.reason if body else ""
    order = await visible_order(session, caller, order_id)
    ticket = await messages.send(order, OrderWorkflow.request_refill, RefillRequest(caller.actor, reason))
    refill = await session.get(Refill, ticket.refill_id)
    if refill is not None:
        return RefillOut.of(refill, for_customer=caller.role == "customer")
    # The order answered before its projection of the refill was visible here: answer from the ticket.
    return RefillOut(
        id=ticket.refill_id,
        order_id=order_id,
        refill_no=ticket.refill_no,
        status=RefillStatus.PENDING,
        requested_by=caller.role if caller.role == "customer" else caller.actor,
        created_at=datetime.now(UTC),
        finished_at=None,
    )


@router.get("/{order_id}/refills", response_model=RefillList, responses=error_responses(401, 403, 404, 422))
async def list_refills(
    order_id: Id,
    session: Session,
    caller: Annotated[Caller, Depends(role(*REFILL_ROLES, "ops"))],
) -> RefillList:
    """The order's refills, oldest first."""
    await visible_order(session, caller, order_id)
    refills = await store_orders.refills(session, order_id)
    return RefillList(refills=[RefillOut.of(r, for_customer=caller.role == "customer") for r in refills])
