"""Support's actions on an order: refunds and link-fault reports, each with actor and reason, audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.actions import MESSAGE_ERRORS, Messages, visible_order
from api.auth import role
from api.deps import Session
from api.errors import mark_replayed
from api.schemas import (
    Id,
    IdempotencyKey,
    OrderStateOut,
    RefundCreate,
    RefundOut,
    RequiredReason,
    replayable_responses,
)
from store.keys import Caller
from workflows.models import OrderAction, SupportRefund
from workflows.order import OrderWorkflow
from workflows.policy import format_money, parse_money

router = APIRouter(prefix="/v1/orders", tags=["support"])
Support = Annotated[Caller, Depends(role("support", "admin"))]


@router.post(
    "/{order_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    responses=replayable_responses(RefundOut, 401, 403, 404, 409, 422, 503, 504),
)
async def refund(
    order_id: Id,
    body: RefundCreate,
    response: Response,
    session: Session,
    messages: Messages,
    idempotency_key: Annotated[IdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Support,
) -> RefundOut:
    """Refund part of an order: an `amount`, or `units` at the order's price per unit; capped at what is
    still refundable (`nothing_refundable` when nothing is). The `Idempotency-Key` makes a retry harmless:
    the same key answers 200 and moves nothing."""
    order = await visible_order(session, caller, order_id)
    arg = SupportRefund(
        actor=caller.actor,
        reason=body.reason,
        idempotency_key=idempotency_key,
        amount_micros=parse_money(body.amount) if body.amount is not None else None,
        units=body.units,
    )
    receipt = await messages.send(order, OrderWorkflow.refund, arg)
    replayed = receipt.refunded_micros == 0
    if replayed:
        mark_replayed(response)
    return RefundOut(
        order_id=order_id,
        refunded=format_money(receipt.refunded_micros),
        total_refunded=format_money(receipt.total_refunded_micros),
        status=receipt.status,
        replayed=replayed,
    )


@router.post("/{order_id}/link-fault", response_model=OrderStateOut, responses=MESSAGE_ERRORS)
async def report_link_fault(
    order_id: Id,
    body: RequiredReason,
    session: Session,
    messages: Messages,
    caller: Support,
) -> OrderStateOut:
    """Report that the order's link is private, deleted, renamed or invalid: delivery stops, and the refund
    follows the service's `link_fault_refund` (`cannot_report_link_fault` once delivery has ended)."""
    order = await visible_order(session, caller, order_id)
    state = await messages.send(
        order, OrderWorkflow.report_link_fault, OrderAction(caller.actor, body.reason)
    )
    return OrderStateOut.of(state)
