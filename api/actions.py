"""Sending an order one of its messages (workflow updates) on behalf of an API caller, and the audit log.

The order's workflow decides: its validator refuses with a stable code and writes nothing, or it accepts and
records the action in the order's timeline (`order_events`, with the actor). Refusals never reach the
timeline, so every outcome, accepted or refused, is also written here as one structured log line on the
`backoffice.audit` logger: refused support and ops actions are not silently lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.errors import ApiError
from backoffice.settings import Settings
from backoffice.temporal_client import OrderActionRefused, send_order_update, start_order_workflow
from store import orders as store_orders
from store.keys import Caller
from store.models import Order
from workflows.models import OrderAction, OrderState

T = TypeVar("T")

log = logging.getLogger(__name__)
audit = logging.getLogger("backoffice.audit")


async def visible_order(session: AsyncSession, caller: Caller, order_id: int) -> Order:
    """The order, if this caller may see it: a customer key sees only its own, others are not found."""
    order = await store_orders.get_order(session, order_id)
    if order is None or (caller.role == "customer" and order.customer_id != caller.customer_id):
        raise ApiError(404, "order_not_found", f"order {order_id} does not exist")
    return order


async def start_if_new(temporal: Client, task_queue: str, order: Order) -> None:
    """Start the order's workflow unless it has already reported (it then runs, or ran)."""
    if order.state_version == 0:
        await start_order_workflow(temporal, task_queue, store_orders.order_input(order))


async def place_and_start(
    session: AsyncSession,
    temporal: Client,
    task_queue: str,
    caller: Caller,
    request: store_orders.OrderRequest,
    idempotency_key: str,
) -> tuple[Order, bool, bool]:
    """Place the order (store.orders.place_order, in its own transaction), then start its workflow.

    Returns (order, created, started). Not started means Temporal was unreachable: the order is saved and
    charged, and a replay of the request or the worker's sweeper starts it. Refusals raise OrderRejected.
    """
    async with session.begin():
        order, created = await store_orders.place_order(session, caller, request, idempotency_key)
    try:
        await start_if_new(temporal, task_queue, order)
    except RPCError as exc:
        log.error("order %s saved but its workflow did not start: %s", order.id, exc)
        return order, created, False
    return order, created, True


def audit_line(**fields: Any) -> None:
    audit.info("%s", json.dumps({"event": "order_action", **fields}, default=str, sort_keys=True))


def pending(order_id: int, seconds: float) -> ApiError:
    """No verdict in time. The update stays with the order, which may still act on it: the caller must read
    the order before sending it again, not retry blindly."""
    return ApiError(
        504,
        "action_pending",
        f"order {order_id} did not answer within {seconds:g} s; the action may still take effect: "
        "read the order before sending it again",
    )


async def send_action(
    temporal: Client,
    settings: Settings,
    order: Order,
    caller: Caller,
    action: str,
    arg: Any,
    result_type: type[T],
    *,
    reason: str = "",
    via: str = "rest",
) -> T:
    """Send `action` to the order's workflow and return its answer; every outcome is one audit line.

    An order whose workflow has not reported yet may not have been started (the API died after the commit):
    it is started first, exactly as a replay of its creation would. Refusals raise ApiError 409 with the
    validator's code; no answer within `settings.action_timeout_seconds` raises 504 `action_pending`;
    Temporal being unreachable raises 503. Anything else is audited as failed and raised on (a 500).
    """
    base = {"action": action, "order_id": order.id, "actor": caller.actor, "reason": reason, "via": via}
    seconds = settings.action_timeout_seconds
    try:
        await start_if_new(temporal, settings.temporal_task_queue, order)
        async with asyncio.timeout(seconds):
            result = await send_order_update(temporal, order.id, action, arg, result_type)
    except OrderActionRefused as exc:
        audit_line(**base, outcome="refused", code=exc.code, message=exc.message)
        raise ApiError(409, exc.code, exc.message) from exc
    except WorkflowUpdateFailedError as exc:  # the handler failed without a stable code
        audit_line(**base, outcome="failed", code="action_failed", message=str(exc.cause or exc))
        message = f"order {order.id} could not {action}: {exc.cause or exc}"
        raise ApiError(409, "action_failed", message) from exc
    # Our deadline cancels the update's long poll; the SDK then raises its own timeout-or-cancelled error
    # rather than CancelledError, so asyncio.timeout does not turn it into TimeoutError: both mean the same.
    except (TimeoutError, RPCTimeoutOrCancelledError) as exc:
        audit_line(**base, outcome="timeout", code="action_pending")
        raise pending(order.id, seconds) from exc
    except RPCError as exc:
        audit_line(**base, outcome="failed", code="workflow_unavailable", message=str(exc))
        raise ApiError(
            503, "workflow_unavailable", f"order {order.id} cannot be reached right now; try again"
        ) from exc
    except Exception as exc:
        audit_line(**base, outcome="failed", code="internal_error", message=f"{type(exc).__name__}: {exc}")
        raise
    audit_line(**base, outcome="accepted")
    return result


async def send_order_action(
    temporal: Client,
    settings: Settings,
    order: Order,
    caller: Caller,
    action: str,
    reason: str,
    *,
    via: str = "rest",
) -> OrderState:
    """send_action for the messages that take an OrderAction and answer the order's state (cancel, pause,
    resume, report_link_fault)."""
    arg = OrderAction(actor=caller.actor, reason=reason)
    return await send_action(
        temporal, settings, order, caller, action, arg, OrderState, reason=reason, via=via
    )
