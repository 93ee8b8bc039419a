"""Orders: placed by the storefront (or a customer key), read by every role."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from temporalio.service import RPCError

from api.auth import current_caller, own_customer, role
from api.deps import AppSettings, Session, Temporal
from api.errors import ApiError, mark_replayed
from api.schemas import Id, IdempotencyKey, OrderCreate, OrderList, OrderOut
from store import orders as store_orders
from store.keys import Caller
from temporal_client import start_order_workflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])
log = logging.getLogger(__name__)


@router.post("", status_code=201, response_model=OrderOut, responses={200: {"model": OrderOut}})
async def create_order(
    body: OrderCreate,
    response: Response,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: Annotated[IdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Annotated[Caller, Depends(role("storefront", "admin", "customer"))],
) -> OrderOut:
    """Place an order: validated, written and charged in one transaction, then handed to its workflow.

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
    async with session.begin():
        order, created = await store_orders.place_order(session, caller, request, idempotency_key)
        order_input = store_orders.order_input(order)

    # The order is committed. Starting its workflow is retried by a replay of the same request, and by the
    # worker's sweeper if no replay comes; an order whose workflow already reported needs no start.
    try:
        if order.state_version == 0:
            await start_order_workflow(temporal, settings.temporal_task_queue, order_input)
    except RPCError as exc:
        log.error("order %s saved but its workflow did not start: %s", order.id, exc)
        raise ApiError(
            503,
            "workflow_unavailable",
            f"order {order.id} is saved and charged but could not be started yet; "
            "send the same request with the same Idempotency-Key again",
            order_id=order.id,
        ) from exc
    if not created:
        mark_replayed(response)
    return OrderOut.of(order)


@router.get("/{order_id}", response_model=OrderOut)
async def get_order(
    order_id: Id, session: Session, caller: Annotated[Caller, Depends(current_caller)]
) -> OrderOut:
    order = await store_orders.get_order(session, order_id)
    if order is None or (caller.role == "customer" and order.customer_id != caller.customer_id):
        raise ApiError(404, "order_not_found", f"order {order_id} does not exist")
    return OrderOut.of(order)


@router.get("", response_model=OrderList)
async def list_orders(
    session: Session,
    caller: Annotated[Caller, Depends(current_caller)],
    customer_id: Id | None = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderList:
    """Orders page by page, by ascending id (stable while new orders arrive); a customer key sees its own."""
    if caller.role == "customer":
        if customer_id is not None:
            own_customer(caller, customer_id)
        customer_id = caller.customer_id
    rows, more = await store_orders.list_orders(
        session, customer_id=customer_id, status=status, after=after, limit=limit
    )
    return OrderList(orders=[OrderOut.of(o) for o in rows], next_after=rows[-1].id if more else None)
