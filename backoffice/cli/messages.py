"""`backoffice orders cancel|refill|pause|resume|retry|link-fault|refund|reconcile`: one message to one
order, through the messaging service (backoffice/messaging.py) as every door sends them, answered once
the order has acted.

The order is read from the read model (DATABASE_URL, else the dev stack's), the message goes to its workflow
(TEMPORAL_ADDRESS, else the dev stack's). Every command prints JSON with --json; exit 1 when the order did
not act.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from backoffice.cli.common import (
    Command,
    database_url,
    idempotency_key,
    message_command,
    money,
    print_json,
    temporal_settings,
    text,
    with_session,
)
from backoffice.settings import Settings
from workflows import policy
from workflows.models import (
    OrderAction,
    OrderState,
    RefillRequest,
    RefillTicket,
    RefundReceipt,
    RunReconciliation,
    SupportRefund,
)
from workflows.order import OrderWorkflow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from backoffice.cli.common import Subcommands
    from backoffice.messaging import NotAccepted, OrderMessages, Signed, StateUpdate, Update

A = TypeVar("A", bound="Signed")
R = TypeVar("R", bound="DataclassInstance")  # every answer is a dataclass (workflows/models.py)


async def connect_messages(settings: Settings, seconds: float) -> OrderMessages:
    """The messaging service on the settings' Temporal, waiting `seconds` (--timeout) for each answer."""
    from backoffice.messaging import OrderMessages
    from backoffice.temporal_client import connect

    client = await connect(temporal_settings(settings))
    # An ended order's refund is paid in the database: the dev stack's, when DATABASE_URL is not set.
    resolved = {"action_timeout_seconds": seconds, "database_url": database_url(settings)}
    return OrderMessages(client, settings.model_copy(update=resolved))


def cli_outcome(answer: object) -> str:
    """`accepted`; `refused` when the order said no (nothing was written); `failed` when no verdict came (a
    timeout, Temporal unreachable, the handler broke)."""
    from backoffice.messaging import NotAccepted, Refused

    if not isinstance(answer, NotAccepted):
        return "accepted"
    return "refused" if isinstance(answer, Refused) else "failed"


def problem_fields(order_id: int, problem: NotAccepted) -> dict[str, Any]:
    """Why the order did not act, as the CLI prints it: what an operator at a terminal needs to know."""
    from backoffice.messaging import ActionPending, WorkflowUnavailable

    message = problem.detail
    if isinstance(problem, ActionPending):
        message = (
            f"no answer within {problem.seconds:.0f} s; it may still take effect: "
            f"see `backoffice orders show {order_id}`"
        )
    elif isinstance(problem, WorkflowUnavailable):
        message = f"Temporal cannot be reached: {problem.detail}"
    return {"order_id": order_id, "outcome": cli_outcome(problem), "code": problem.code, "message": message}


async def _ask(settings: Settings, args: argparse.Namespace, update: Update[A, R], arg: A) -> R | NotAccepted:
    from backoffice.messaging import NotAccepted, Refused
    from store.orders import get_order

    order = await with_session(settings, lambda session: get_order(session, args.order_id))
    if order is None:  # never asked, so no audit line (as REST's 404)
        return Refused("order_not_found", f"order {args.order_id} does not exist")
    messages = await connect_messages(settings, args.timeout)
    try:
        return await messages.send(order, update, arg, via="cli")
    except NotAccepted as exc:
        return exc


def send_to_order(
    settings: Settings, args: argparse.Namespace, update: Update[A, R], arg: A, describe: Callable[[R], str]
) -> int:
    """One message to one order: prints the order's answer (exit 0) or why there is none (exit 1)."""
    from backoffice.messaging import NotAccepted, message_name

    answer = asyncio.run(_ask(settings, args, update, arg))
    if isinstance(answer, NotAccepted):
        problem = problem_fields(args.order_id, answer)
        if args.json:
            print_json(problem)
        else:
            name = message_name(update)
            print(
                f"order {args.order_id}: {name} refused ({problem['code']}): {problem['message']}",
                file=sys.stderr,
            )
        return 1
    if args.json:
        print_json({"order_id": args.order_id, "outcome": "accepted", "answer": dataclasses.asdict(answer)})
    else:
        print(f"order {args.order_id}: {describe(answer)}")
    return 0


def _state_line(state: OrderState) -> str:
    line = f"{state.status} ({state.phase}), {state.delivered}/{state.quantity} delivered"
    return line + (f"; {state.note}" if state.note else "")


def _state_command(update: StateUpdate, done: str) -> Command:
    """A command that sends `update` with the actor and reason, and prints the order's new state."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        action = OrderAction(args.actor, args.reason)
        return send_to_order(settings, args, update, action, lambda state: f"{done}: {_state_line(state)}")

    return command


def cmd_orders_refill(settings: Settings, args: argparse.Namespace) -> int:
    """As REST's POST /v1/orders/{id}/refills: the order forwards the refill to its provider and tracks it."""

    def describe(ticket: RefillTicket) -> str:
        return (
            f"refill #{ticket.refill_no} requested (refill id {ticket.refill_id}); "
            f"follow it with `backoffice orders show {args.order_id}`"
        )

    request = RefillRequest(args.actor, args.reason)
    return send_to_order(settings, args, OrderWorkflow.request_refill, request, describe)


def cmd_orders_refund(settings: Settings, args: argparse.Namespace) -> int:
    amount = None
    if args.amount is not None:
        try:
            amount = policy.parse_money(args.amount)
        except ValueError as exc:
            print(f"error: --amount: {exc}", file=sys.stderr)
            return 2
    refund = SupportRefund(
        args.actor, args.reason, args.idempotency_key, amount_micros=amount, units=args.units
    )

    def describe(receipt: RefundReceipt) -> str:
        total = policy.format_money(receipt.total_refunded_micros)
        if receipt.refunded_micros == 0:
            return f"this idempotency key was used already, nothing moved; {total} in all ({receipt.status})"
        return f"refunded {policy.format_money(receipt.refunded_micros)}; {total} in all ({receipt.status})"

    return send_to_order(settings, args, OrderWorkflow.refund, refund, describe)


def cmd_orders_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    answer = RunReconciliation(args.run, args.provider_order, args.actor, args.reason)
    return send_to_order(settings, args, OrderWorkflow.reconcile_run, answer, lambda state: state.note)


def add_commands(orders: Subcommands) -> None:
    def message(name: str, help: str, func: Command, why: str) -> argparse.ArgumentParser:
        return message_command(orders, name, help, func, target="order_id", why=why)

    message(
        "cancel",
        "cancel an order: at once while pending, in progress where the service allows it (the provider is"
        " asked first); what was not delivered is refunded once the order is canceled",
        _state_command(OrderWorkflow.cancel, "cancel requested"),
        "why",
    )
    message(
        "refill",
        "request a refill of a completed order inside its refill window, as the customer would",
        cmd_orders_refill,
        "why (e.g. the ticket)",
    )
    pause = _state_command(OrderWorkflow.pause, "paused")
    message("pause", "hold an order: no new run goes out until it is resumed", pause, "why")
    message(
        "resume", "let a paused order deliver again", _state_command(OrderWorkflow.resume, "resumed"), "why"
    )
    message(
        "retry",
        "send an order in phase needs_attention on, once the cause is fixed: the failed step runs again",
        _state_command(OrderWorkflow.retry, "sent on"),
        "what was fixed",
    )
    message(
        "link-fault",
        "report that the order's link is private, deleted or wrong: delivery stops",
        _state_command(OrderWorkflow.report_link_fault, "link fault noted"),
        "what is wrong with the link",
    )
    refund = message(
        "refund", "refund part of an order (capped at what is refundable)", cmd_orders_refund, "why"
    )
    how_much = refund.add_mutually_exclusive_group(required=True)
    how_much.add_argument("--amount", type=money, help="money, e.g. 1.50")
    how_much.add_argument("--units", type=int, help="undelivered units, refunded at the order's price")
    refund.add_argument(
        "--idempotency-key",
        required=True,
        type=idempotency_key,
        help="the same key again refunds nothing twice (e.g. a ticket id)",
    )
    reconcile = message(
        "reconcile",
        "tell an order waiting on an unknown submission what the provider really holds",
        cmd_orders_reconcile,
        "what was checked",
    )
    reconcile.add_argument("--run", type=int, required=True, help="the run number the order waits on")
    found = reconcile.add_mutually_exclusive_group(required=True)
    found.add_argument("--provider-order", type=text, help="the provider's order id found for the run")
    found.add_argument(
        "--not-placed",
        dest="provider_order",
        action="store_const",
        const=None,
        help="the provider never took the run: send it to the next route",
    )
