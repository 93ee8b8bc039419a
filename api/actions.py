"""What the HTTP doors (REST and API v2) share around orders: who may see an order, placing and starting
one, and sending it a message through the messaging service (backoffice/messaging.py), its outcomes as
ApiError: 409 refused (the order's own code), 504 `action_pending`, 503 `workflow_unavailable`."""

from __future__ import annotations

import logging
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.deps import AppSettings, Temporal
from api.errors import ApiError
from api.schemas import error_responses
from api.starts import WorkflowStarts
from backoffice.messaging import (
    ActionPending,
    NotAccepted,
    OrderMessages,
    Signed,
    Update,
    Via,
    WorkflowUnavailable,
)
from backoffice.settings import Settings
from store import orders as store_orders
from store.keys import Caller
from store.models import Order

A = TypeVar("A", bound=Signed)
R = TypeVar("R")

log = logging.getLogger(__name__)


async def visible_order(session: AsyncSession, caller: Caller, order_id: int) -> Order:
    """The order, if this caller may see it: a customer key sees only its own, others are not found."""
    order = await store_orders.get_order(session, order_id)
    if order is None or (caller.role == "customer" and order.customer_id != caller.customer_id):
        raise ApiError(404, "order_not_found", f"order {order_id} does not exist")
    return order


async def place_and_start(
    session: AsyncSession,
    starts: WorkflowStarts,
    caller: Caller,
    request: store_orders.OrderRequest,
    idempotency_key: str,
) -> tuple[Order, bool]:
    """Place the order (store.orders.take_order: durable when it returns) and hand its workflow's start
    over (api/starts.py): the caller is answered without waiting for Temporal. Returns (order, created);
    refusals raise OrderRejected."""
    order, created = await store_orders.take_order(session, caller, request, idempotency_key)
    if order.state_version == 0:  # a replay of an order whose workflow never reported starts it again
        starts.hand_over(store_orders.order_input(order))
    return order, created


# HTTP statuses of the outcomes that are not the order's own refusal (409).
_STATUS: dict[type[NotAccepted], int] = {ActionPending: 504, WorkflowUnavailable: 503}


def api_error(problem: NotAccepted) -> ApiError:
    """An outcome other than accepted, as the HTTP answer."""
    return ApiError(_STATUS.get(type(problem), 409), problem.code, problem.message)


class HttpMessages:
    """The messaging service as REST and API v2 use it: an outcome other than accepted raises ApiError (see
    api_error); a bug is raised as it is (a 500)."""

    def __init__(
        self, temporal: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.service = OrderMessages(temporal, settings, sessions)

    async def send(self, order: Order, update: Update[A, R], arg: A, *, via: Via = "rest") -> R:
        try:
            return await self.service.send(order, update, arg, via=via)
        except NotAccepted as exc:
            raise api_error(exc) from exc


async def http_messages(request: Request, temporal: Temporal, settings: AppSettings) -> HttpMessages:
    return HttpMessages(temporal, settings, request.app.state.sessions)


# What a route that sends an order a message takes, and the statuses it can answer.
Messages = Annotated[HttpMessages, Depends(http_messages)]
MESSAGE_ERRORS = error_responses(401, 403, 404, 409, 422, 503, 504)
