"""The console's actions on an order: who may send each (as REST allows it), its form, and how the form
becomes the same message REST sends, through the same service (api/actions.py HttpMessages, so the same
audit line, with `via: console`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from api.actions import HttpMessages
from api.schemas import IdempotencyKey, OptionalReason, Reason, RefundCreate, RequiredReason
from backoffice.messaging import StateUpdate
from store.keys import Caller
from store.models import Order
from workflows.models import OrderAction, RefillRequest, RunReconciliation, SupportRefund
from workflows.order import OrderWorkflow
from workflows.policy import format_money, parse_money

IDEMPOTENCY_KEY = TypeAdapter(IdempotencyKey)


@dataclass(frozen=True)
class Input:
    name: str
    label: str
    kind: str = "text"  # text, number or checkbox
    required: bool = False
    hint: str = ""


# What a form's handler does: validate the fields (pydantic's ValidationError), send the message (ApiError
# with the order's refusal) and say what happened.
Send = Callable[[HttpMessages, Order, Caller, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class ActionForm:
    name: str
    title: str
    roles: tuple[str, ...]  # the staff roles REST lets do it
    rest: str | None  # the REST route's last segment, for the test that holds the roles to REST's
    inputs: tuple[Input, ...]
    send: Send
    danger: bool = False
    keyed: bool = False  # carries an idempotency key made when it was shown: a double click moves once


REASON = Input("reason", "Reason", required=True, hint="kept on the order's timeline and in the audit log")
OPTIONAL_REASON = Input("reason", "Reason (optional)")


async def _refund(messages: HttpMessages, order: Order, caller: Caller, form: dict[str, Any]) -> str:
    key = IDEMPOTENCY_KEY.validate_python(form.pop("idempotency_key", ""))
    body = RefundCreate.model_validate(form)
    arg = SupportRefund(
        actor=caller.actor,
        reason=body.reason,
        idempotency_key=key,
        amount_micros=parse_money(body.amount) if body.amount is not None else None,
        units=body.units,
    )
    receipt = await messages.send(order, OrderWorkflow.refund, arg, via="console")
    total = format_money(receipt.total_refunded_micros)
    if receipt.refunded_micros == 0:
        return f"This refund was already made (same form sent twice): nothing moved; {total} refunded in all."
    return f"Refunded {format_money(receipt.refunded_micros)}; {total} refunded in all ({receipt.status})."


def _state(update: StateUpdate, done: str, *, reason_required: bool) -> Send:
    async def send(messages: HttpMessages, order: Order, caller: Caller, form: dict[str, Any]) -> str:
        body = (RequiredReason if reason_required else OptionalReason).model_validate(form)
        state = await messages.send(order, update, OrderAction(caller.actor, body.reason), via="console")
        return f"{done}: the order is {state.status}, {state.phase}."

    return send


async def _refill(messages: HttpMessages, order: Order, caller: Caller, form: dict[str, Any]) -> str:
    body = OptionalReason.model_validate(form)
    ticket = await messages.send(
        order, OrderWorkflow.request_refill, RefillRequest(caller.actor, body.reason), via="console"
    )
    return f"Refill {ticket.refill_no} requested (refill id {ticket.refill_id})."


class ReconcileForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Annotated[int, Field(ge=1, le=100_000)]
    provider_order: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    not_placed: bool = False
    reason: Reason

    @model_validator(mode="after")
    def _one_finding(self) -> Self:
        if (self.provider_order is None) == (not self.not_placed):
            raise ValueError("give the provider's order id, or tick that the provider never took the run")
        return self


async def _reconcile(messages: HttpMessages, order: Order, caller: Caller, form: dict[str, Any]) -> str:
    body = ReconcileForm.model_validate(form)
    answer = RunReconciliation(body.run, body.provider_order, caller.actor, body.reason)
    state = await messages.send(order, OrderWorkflow.reconcile_run, answer, via="console")
    return f"Run {body.run} reconciled: {state.note or state.phase}."


ACTIONS: tuple[ActionForm, ...] = (
    ActionForm(
        "refund",
        "Refund",
        ("support", "admin"),
        "refunds",
        (
            Input("amount", "Amount", hint="e.g. 0.50; or units below, not both"),
            Input("units", "Units", kind="number", hint="undelivered units, at the order's price"),
            REASON,
        ),
        _refund,
        keyed=True,
    ),
    ActionForm(
        "cancel",
        "Cancel",
        ("support", "admin"),
        "cancel",
        (OPTIONAL_REASON,),
        _state(OrderWorkflow.cancel, "Cancel accepted", reason_required=False),
        danger=True,
    ),
    ActionForm(
        "link-fault",
        "Report a link fault",
        ("support", "admin"),
        "link-fault",
        (REASON,),
        _state(OrderWorkflow.report_link_fault, "Link fault noted", reason_required=True),
        danger=True,
    ),
    ActionForm("refill", "Request a refill", ("support", "admin"), "refills", (OPTIONAL_REASON,), _refill),
    ActionForm(
        "pause",
        "Pause",
        ("ops", "admin"),
        "pause",
        (REASON,),
        _state(OrderWorkflow.pause, "Paused", reason_required=True),
    ),
    ActionForm(
        "resume",
        "Resume",
        ("ops", "admin"),
        "resume",
        (REASON,),
        _state(OrderWorkflow.resume, "Resumed", reason_required=True),
    ),
    ActionForm(
        "retry",
        "Send on (needs attention)",
        ("ops", "admin"),
        "retry",
        (REASON,),
        _state(OrderWorkflow.retry, "Sent on", reason_required=True),
    ),
    ActionForm(
        "reconcile",
        "Reconcile a run",
        ("ops", "admin"),  # the CLI's `orders reconcile`; ops' tool, as pause is
        None,
        (
            Input("run", "Run number", kind="number", required=True),
            Input("provider_order", "Provider's order id", hint="what the provider holds for the run"),
            Input("not_placed", "The provider never took the run", kind="checkbox"),
            REASON,
        ),
        _reconcile,
    ),
)
BY_NAME = {a.name: a for a in ACTIONS}
