"""The order's money after the charge: support refunds while it lives, and the settlement once delivery has
ended. Both compute amounts under one lock, so they never race, and both follow one accounting of units
(`policy.final_settlement`): a unit refunded by support is never refunded again by the settlement.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import policy, steps
from workflows.errors import STEP_FAILED, refused
from workflows.models import Phase, RefundMoney, RefundReceipt, RefundRecord, Settlement, SupportRefund
from workflows.record import OrderRecord, error_type, reason
from workflows.slots import wake_waiters


class Money:
    def __init__(self, record: OrderRecord) -> None:
        self.record = record
        self._lock = asyncio.Lock()
        self._settling = False  # the settlement's amounts are being decided and paid right now

    # ----- support refunds

    def check_refund(self, request: SupportRefund) -> None:
        """Refuse a refund that cannot be paid (validator: nothing is written)."""
        known = self.record.state.refunds.get(request.idempotency_key)
        if known is not None:
            if known.request != request.fingerprint():
                raise refused(
                    "idempotency_conflict", "this Idempotency-Key was already used for a different refund"
                )
            return
        self._refund_amount(request)

    def _refund_amount(self, request: SupportRefund) -> tuple[int, int]:
        order, state = self.record.order, self.record.state
        if self._settling:
            raise refused("order_settling", "the order is settling; send the refund again in a moment")
        try:
            money, units = policy.support_refund(
                amount_micros=request.amount_micros,
                units=request.units,
                charge=order.charge_micros,
                quantity=order.quantity,
                refunded=state.refunded_micros,
                refunded_units=state.refunded_units,
            )
        except ValueError as exc:
            raise refused("bad_refund", str(exc)) from exc
        if money <= 0:
            raise refused("nothing_refundable", "nothing is left to refund on this order")
        return money, units

    async def refund(self, request: SupportRefund) -> RefundReceipt:
        """Pay a support refund once per idempotency key; a replay answers the first receipt, moving 0."""
        record, order, state = self.record, self.record.order, self.record.state
        key = request.idempotency_key
        if key in state.refunds:
            await workflow.wait_condition(
                lambda: key not in state.refunds or state.refunds[key].receipt is not None
            )
            known = state.refunds.get(key)
            if known is None or known.receipt is None:
                raise refused("refund_failed", "the first refund with this key failed; send it again")
            return RefundReceipt(0, known.receipt.total_refunded_micros, known.receipt.status)
        state.refunds[key] = RefundRecord(request.fingerprint())
        try:
            async with self._lock:
                money, units = self._refund_amount(request)
                number = sum(1 for r in state.refunds.values() if r.receipt is not None) + 1
                try:
                    await steps.REFUND_ORDER(
                        RefundMoney(
                            order.order_id,
                            order.customer_id,
                            money,
                            f"order:{order.order_id}:refund:{number}",
                            request.actor,
                            request.reason,
                        ),
                        f"support refund {number}",
                    )
                except ActivityError as err:
                    if error_type(err) == STEP_FAILED:
                        raise refused(
                            "refund_failed", f"the refund could not be paid: {reason(err)}"
                        ) from err
                    raise
                state.refunded_micros += money
                state.refunded_units += units
        except BaseException:
            del state.refunds[key]
            raise
        measure = f"{units} units, " if units else ""
        record.event(
            "refund", f"refunded {measure}{policy.format_money(money)}: {request.reason}", request.actor
        )
        receipt = RefundReceipt(money, state.refunded_micros, state.status, units)
        state.refunds[key].receipt = receipt
        return receipt

    # ----- the settlement

    async def settle(self, then: Callable[[], None]) -> None:
        """Refund what the policy owes for the units not delivered, recognise the rest as revenue, free the
        provider slot and write the settled order into the read model, in one transaction. `then` makes
        the order what it is once settled (its refill window open, or closed), so that write is the last
        of a delivery that needs nothing more.

        A failure no retry can mend waits for ops, without holding the money lock; the order is then as it
        was before, and the amounts are decided again once ops send it on."""
        record, order, state = self.record, self.record.order, self.record.state
        while True:
            failed: str | None = None
            async with self._lock:
                before = {name: copy.deepcopy(getattr(state, name)) for name in _SETTLING_TOUCHES}
                self._settling = True
                record.set_phase(Phase.SETTLING)  # refuses messages that would change the order meanwhile
                short = order.quantity - state.delivered
                stop_kind = state.stop.kind if state.stop is not None else None
                status, refund, units, revenue = policy.final_settlement(
                    quantity=order.quantity,
                    delivered=state.delivered,
                    charge=order.charge_micros,
                    refunded=state.refunded_micros,
                    refunded_units=state.refunded_units,
                    tolerance_bp=order.tolerance_bp,
                    stop_kind=stop_kind,
                    link_fault_refund=order.link_fault_refund,
                    service_failed=state.service_failed,
                    service_type=order.service_type,
                )
                state.refunded_micros += refund
                state.refunded_units += units
                state.status = status
                state.slot_provider_id = None
                state.settled_at = record.now_iso()
                record.event(
                    "settled",
                    f"{state.delivered} of {order.quantity} delivered: {status}, "
                    f"refunded {policy.format_money(refund)}",
                )
                then()
                settled = record.draft(finished=state.working_phase == Phase.CLOSED)
                try:
                    wake = await steps.SETTLE_ORDER(
                        Settlement(
                            order_id=order.order_id,
                            customer_id=order.customer_id,
                            refund_micros=refund,
                            revenue_micros=revenue,
                            reason=f"{short} of {order.quantity} units not delivered",
                            record=settled,
                        ),
                        "settle: refund the shortfall, recognise the rest, free the provider slot",
                    )
                except ActivityError as err:
                    if error_type(err) != STEP_FAILED:
                        raise
                    failed = f"settle_order failed: {reason(err)}"
                    for name, value in before.items():  # nothing of it happened
                        setattr(state, name, value)
                finally:
                    self._settling = False
                if failed is None:
                    record.published(settled)
            if failed is not None:
                await record.needs_attention(failed)
                continue
            await wake_waiters(wake)
            return


# What a settlement changes in the order's state (and puts back when its transaction failed).
_SETTLING_TOUCHES = (
    "refunded_micros",
    "refunded_units",
    "status",
    "slot_provider_id",
    "settled_at",
    "working_phase",
    "phase",
    "note",
    "refill_deadline",
    "next_action_at",
    "event_seq",
    "pending_events",
)
