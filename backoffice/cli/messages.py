"""`backoffice orders pause|resume|retry|link-fault|refund|reconcile`: messages to one order's workflow,
answered once the order has acted (TEMPORAL_ADDRESS, else the dev stack's). Every command prints JSON with
--json; exit 1 when the order did not act."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from backoffice.cli.common import message_command, money, print_json, temporal_settings, text
from backoffice.logs import order_context
from backoffice.settings import Settings
from workflows import policy

if TYPE_CHECKING:
    from backoffice.cli.common import Subcommands

T = TypeVar("T")
audit = logging.getLogger("backoffice.audit")


class _Unanswered(Exception):
    """An order message that got no verdict: timed out, or Temporal could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _send(
    client: Any, order_id: int, update: str, arg: Any, result_type: type[T], actor: str, wait_seconds: float
) -> T:
    """Send one order message and wait for its answer; every outcome is one audit log line.

    Raises OrderActionRefused (the order said no: nothing was written) or _Unanswered.
    """
    from temporalio.client import RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from backoffice.temporal_client import OrderActionRefused, send_order_update

    fields = {"event": "order_action", "action": update, "actor": actor, "via": "cli"}
    with order_context(order_id=order_id):
        try:
            async with asyncio.timeout(wait_seconds):
                result = await send_order_update(client, order_id, update, arg, result_type)
        except OrderActionRefused as exc:
            audit.info(
                "%s refused: %s", update, exc.code, extra=fields | {"outcome": "refused", "code": exc.code}
            )
            raise
        # The SDK answers a cancelled update poll with its own error, not CancelledError: the same timeout.
        except (TimeoutError, RPCTimeoutOrCancelledError) as exc:
            audit.warning(
                "%s unanswered", update, extra=fields | {"outcome": "timeout", "code": "action_pending"}
            )
            raise _Unanswered(
                "action_pending",
                f"no answer within {wait_seconds:.0f} s; it may still take effect: "
                f"see `backoffice orders show {order_id}`",
            ) from exc
        except WorkflowUpdateFailedError as exc:
            audit.warning("%s failed", update, extra=fields | {"outcome": "failed"})
            raise _Unanswered("action_failed", str(exc.cause or exc)) from exc
        except RPCError as exc:
            audit.warning("%s: Temporal unreachable", update, extra=fields | {"outcome": "failed"})
            raise _Unanswered("workflow_unavailable", f"Temporal cannot be reached: {exc}") from exc
        audit.info("%s accepted", update, extra=fields | {"outcome": "accepted"})
        return result


def _order_message(
    settings: Settings,
    args: argparse.Namespace,
    update: str,
    arg: Any,
    result_type: type[T],
    describe: Callable[[T], str],
) -> int:
    """One message to one order: prints the order's answer (exit 0) or why there is none (exit 1)."""
    from backoffice.temporal_client import OrderActionRefused, connect

    async def send() -> int:
        client = await connect(temporal_settings(settings))
        try:
            result = await _send(client, args.order_id, update, arg, result_type, args.actor, args.timeout)
        except (OrderActionRefused, _Unanswered) as exc:
            if args.json:
                print_json(
                    {
                        "order_id": args.order_id,
                        "outcome": "refused" if isinstance(exc, OrderActionRefused) else "failed",
                        "code": exc.code,
                        "message": exc.message,
                    }
                )
            else:
                print(f"order {args.order_id}: {update} refused ({exc.code}): {exc.message}", file=sys.stderr)
            return 1
        if args.json:
            print_json(
                {
                    "order_id": args.order_id,
                    "outcome": "accepted",
                    "answer": dataclasses.asdict(_dataclass(result)),
                }
            )
        else:
            print(f"order {args.order_id}: {describe(result)}")
        return 0

    return asyncio.run(send())


def _dataclass(value: Any) -> Any:
    """Message answers are dataclasses (workflows/models.py)."""
    assert dataclasses.is_dataclass(value)
    return value


def _state_line(state: Any) -> str:
    line = f"{state.status} ({state.phase}), {state.delivered}/{state.quantity} delivered"
    return line + (f"; {state.note}" if state.note else "")


def cmd_orders_pause(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(settings, args, "pause", action, OrderState, lambda s: f"paused: {_state_line(s)}")


def cmd_orders_retry(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(settings, args, "retry", action, OrderState, lambda s: f"sent on: {_state_line(s)}")


def cmd_orders_resume(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(
        settings, args, "resume", action, OrderState, lambda s: f"resumed: {_state_line(s)}"
    )


def cmd_orders_link_fault(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(
        settings,
        args,
        "report_link_fault",
        action,
        OrderState,
        lambda s: f"link fault noted: {_state_line(s)}",
    )


def cmd_orders_refund(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import RefundReceipt, SupportRefund

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

    return _order_message(settings, args, "refund", refund, RefundReceipt, describe)


def cmd_orders_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderState, RunReconciliation

    answer = RunReconciliation(args.run, args.provider_order, args.actor, args.reason)
    return _order_message(settings, args, "reconcile_run", answer, OrderState, lambda s: s.note)


def add_commands(orders: Subcommands) -> None:
    def message(name: str, help: str, func: Any, why: str) -> argparse.ArgumentParser:
        return message_command(orders, name, help, func, target="order_id", why=why)

    message("pause", "hold an order: no new run goes out until it is resumed", cmd_orders_pause, "why")
    message("resume", "let a paused order deliver again", cmd_orders_resume, "why")
    message(
        "retry",
        "send an order in phase needs_attention on, once the cause is fixed: the failed step runs again",
        cmd_orders_retry,
        "what was fixed",
    )
    message(
        "link-fault",
        "report that the order's link is private, deleted or wrong: delivery stops",
        cmd_orders_link_fault,
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
        type=text,
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
