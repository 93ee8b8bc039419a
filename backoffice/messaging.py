"""Sending an order one of its messages (workflow updates): the one way REST, API v2 and the CLI do it.

The order's workflow decides: its validator refuses with a stable code and writes nothing, or it accepts and
records the action in the order's timeline (with the actor). Refusals never reach the timeline, so every
outcome, accepted or not, is also one line on the `backoffice.audit` logger: a refused support or ops action
is not silently lost. Each door maps the outcomes to its own answers (HTTP codes, API v2 texts, exit codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from backoffice.logs import order_context
from backoffice.settings import Settings
from backoffice.temporal_client import start_order_workflow, workflow_id
from store import orders as store_orders
from store.db import make_engine, make_sessionmaker
from store.ended import refund_ended_order
from store.models import Order, Provider
from store.orders import OrderRejected
from workflows import policy
from workflows.models import OrderAction, OrderState, Status, SupportRefund
from workflows.order import OrderWorkflow


class Signed(Protocol):
    """Every order message says who sends it and why (workflows/models.py)."""

    @property
    def actor(self) -> str: ...

    @property
    def reason(self) -> str: ...


A = TypeVar("A", bound=Signed)
R = TypeVar("R")
# An order update by its method reference, e.g. OrderWorkflow.cancel: the argument and answer types follow.
Update = UpdateMethodMultiParam[[OrderWorkflow, A], R]
StateUpdate = UpdateMethodMultiParam[[OrderWorkflow, OrderAction], OrderState]
Via = Literal["rest", "api_v2", "cli", "console"]

# Orders a provider-wide message asks at once; the rest wait their turn.
FANOUT = 16

audit = logging.getLogger("backoffice.audit")


class NotAccepted(Exception):
    """The order did not act on the message. `code` is stable for clients, `message` is for them to read,
    `detail` is what ops need (the audit line); `outcome` is what the audit line says happened."""

    outcome: ClassVar[str] = "failed"

    def __init__(self, code: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.detail = message if detail is None else detail


class Refused(NotAccepted):
    """The order's validator said no (its code and text, API v2's standard text where it has one)."""

    outcome = "refused"


class OrderClosed(Refused):
    """The order's workflow has ended: it takes no more messages."""

    def __init__(self, order_id: int) -> None:
        super().__init__("order_closed", f"order {order_id} has ended")


class ActionPending(NotAccepted):
    """No verdict in time. The update stays with the order, which may still act on it: the caller must read
    the order before sending it again, not retry blindly."""

    outcome = "timeout"

    def __init__(self, order_id: int, seconds: float) -> None:
        super().__init__(
            "action_pending",
            f"order {order_id} did not answer within {seconds:g} s; the action may still take effect: "
            "read the order before sending it again",
        )
        self.order_id, self.seconds = order_id, seconds


class WorkflowUnavailable(NotAccepted):
    """Temporal could not be reached: nothing was sent, the same message may be sent again."""

    def __init__(self, order_id: int, error: RPCError) -> None:
        message = f"order {order_id} cannot be reached right now; try again"
        super().__init__("workflow_unavailable", message, str(error))


class ActionFailed(NotAccepted):
    """The order's handler failed without a stable code."""

    def __init__(self, order_id: int, action: str, cause: BaseException) -> None:
        super().__init__("action_failed", f"order {order_id} could not {action}: {cause}", str(cause))


class ProviderNotFound(Exception):
    def __init__(self, provider_id: int) -> None:
        super().__init__(f"provider {provider_id} does not exist")
        self.provider_id = provider_id


def message_name(update: Update[Any, Any]) -> str:
    """The update's name as the server routes it ("cancel", "request_refill", ...)."""
    return update._defn.name or "unnamed"  # the SDK's UpdateMethodMultiParam declares _defn


async def send_order_update(client: Client, order_id: int, update: Update[A, R], arg: A) -> R:
    """The bare call: one update to the order's workflow and its verdict, with no start, deadline or audit
    line (OrderMessages.send adds them). Raises Refused, OrderClosed or ActionFailed: the order's own no."""
    handle = client.get_workflow_handle(workflow_id(order_id))
    try:
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise Refused(cause.type, cause.message) from exc
        raise ActionFailed(order_id, message_name(update), cause or exc) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise OrderClosed(order_id) from exc
        raise


async def start_if_new(temporal: Client, task_queue: str, order: Order) -> None:
    """Start the order's workflow unless it has already reported (it then runs, or ran): the API may have
    died between saving the order and starting it."""
    if order.state_version == 0:
        await start_order_workflow(temporal, task_queue, store_orders.order_input(order))


def _audit(fields: dict[str, Any], outcome: str, code: str | None = None, message: str | None = None) -> None:
    line = {"event": "order_action", **fields, "outcome": outcome}
    if code is not None:
        line |= {"code": code, "message": message}
    level = logging.INFO if outcome in ("accepted", "refused") else logging.WARNING
    # The text is the whole line (readable in any log format); the same fields ride on the record for the
    # JSON formatter, but for `message`, which a LogRecord keeps for itself.
    extra = {k: v for k, v in line.items() if k != "message"}
    audit.log(level, "%s", json.dumps(line, default=str, sort_keys=True), extra=extra)


@dataclass(frozen=True)
class OrderOutcome:
    """One order's answer to a provider-wide message: its new state, or why it did not act."""

    order_id: int
    answer: OrderState | NotAccepted


class OrderMessages:
    """Sends orders their messages through one Temporal client, with the deadline and the task queue the
    settings give (`action_timeout_seconds`, `temporal_task_queue`).

    An order whose workflow has ended is answered by the rules for its service and final status (the
    standard texts, policy.ended_order_refusal), and still takes a support refund (store/ended.py), through
    `sessions` (or a connection of its own when none is given, as the CLI does)."""

    def __init__(
        self, temporal: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession] | None = None
    ) -> None:
        self.temporal, self.settings, self.sessions = temporal, settings, sessions

    async def send(self, order: Order, update: Update[A, R], arg: A, *, via: Via) -> R:
        """Send the message and return the order's answer; every outcome is exactly one audit line.

        Raises Refused (OrderClosed once the order has ended), ActionPending when no answer came within the
        deadline, WorkflowUnavailable when Temporal cannot be reached, ActionFailed when the handler broke.
        Anything else is a bug here: audited as `internal_error` and raised as it is.
        """
        name = message_name(update)
        fields = {"action": name, "order_id": order.id, "actor": arg.actor, "reason": arg.reason, "via": via}
        seconds = self.settings.action_timeout_seconds
        with order_context(order_id=order.id):
            try:
                await start_if_new(self.temporal, self.settings.temporal_task_queue, order)
                async with asyncio.timeout(seconds):
                    try:
                        answer = await send_order_update(self.temporal, order.id, update, arg)
                    except OrderClosed:
                        answer = await self._ended(order, name, arg)
            except NotAccepted as exc:
                _audit(fields, exc.outcome, exc.code, exc.detail)
                raise
            # Our deadline cancels the update's long poll; the SDK then raises its own timeout-or-cancelled
            # error rather than CancelledError, so asyncio.timeout does not make it TimeoutError: the same.
            except (TimeoutError, RPCTimeoutOrCancelledError) as exc:
                pending = ActionPending(order.id, seconds)
                _audit(fields, pending.outcome, pending.code, pending.detail)
                raise pending from exc
            except RPCError as exc:
                unavailable = WorkflowUnavailable(order.id, exc)
                _audit(fields, unavailable.outcome, unavailable.code, unavailable.detail)
                raise unavailable from exc
            except Exception as exc:
                _audit(fields, "failed", "internal_error", f"{type(exc).__name__}: {exc}")
                raise
            _audit(fields, "accepted")
            return answer

    async def _ended(self, order: Order, name: str, arg: Any) -> Any:
        """The answer of an order whose workflow has ended: a refund paid, or the rule's refusal, read from
        the order's final record (the row the caller loaded may predate the end)."""
        async with self._session() as session, session.begin():
            if isinstance(arg, SupportRefund):
                try:
                    return await refund_ended_order(session, order.id, arg)
                except OrderRejected as exc:
                    raise Refused(exc.code, exc.message) from exc
            final = await session.get(Order, order.id, populate_existing=True) or order
        terms = store_orders.order_input(final)
        refusal = policy.ended_order_refusal(
            name,
            status=Status(final.status),
            refill_days=terms.refill_days,
            cancel_allowed=terms.cancel_allowed,
            run_no=getattr(arg, "run_no", 0),
        )
        raise Refused(*(refusal or ("order_closed", f"order {order.id} has ended")))

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """A session from the caller's pool, or (the CLI) from a connection opened for this one message."""
        if self.sessions is not None:
            async with self.sessions() as session:
                yield session
            return
        engine = make_engine(self.settings.require_database_url(), pool_size=1, name="backoffice-cli")
        try:
            async with make_sessionmaker(engine)() as session:
                yield session
        finally:
            await engine.dispose()

    async def send_to_provider(
        self,
        provider_id: int,
        orders: Sequence[Order],
        update: StateUpdate,
        action: OrderAction,
        *,
        via: Via,
        concurrency: int = FANOUT,
        on_each: Callable[[OrderOutcome], None] | None = None,
    ) -> list[OrderOutcome]:
        """Send a provider-wide message (pause, resume) to each of its orders, `concurrency` at a time; each
        order answers for itself (its timeline names the provider). Outcomes by order id."""
        signed = OrderAction(action.actor, f"provider {provider_id}: {action.reason}")
        gate = asyncio.Semaphore(concurrency)

        async def one(order: Order) -> OrderOutcome:
            async with gate:
                answer: OrderState | NotAccepted
                try:
                    answer = await self.send(order, update, signed, via=via)
                except NotAccepted as exc:
                    answer = exc
            outcome = OrderOutcome(order.id, answer)
            if on_each is not None:
                on_each(outcome)
            return outcome

        return sorted(await asyncio.gather(*(one(o) for o in orders)), key=lambda o: o.order_id)


async def orders_held(session: AsyncSession, provider_id: int) -> list[Order]:
    """The orders a provider holds now (queued for it, delivering, interrupted or paused there)."""
    if await session.get(Provider, provider_id) is None:
        raise ProviderNotFound(provider_id)
    return await store_orders.in_flight_at(session, provider_id)
