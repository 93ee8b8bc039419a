"""What an order whose workflow has ended still takes: a support refund, paid here in one transaction.

The workflow no longer runs, so the read model is the order's record now: the refund is capped by what it
shows was never refunded (policy.support_refund, the same rule as while the order ran), moves the money
(taken back from revenue: the order was settled), and is written to the order's row and timeline, once per
idempotency key. A key reused for another amount is `idempotency_conflict`, as everywhere.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger, webhooks
from store.models import EndedOrderRefund, Order, OrderEvent
from store.orders import OrderRejected
from workflows import policy
from workflows.models import RefundReceipt, Status, SupportRefund


async def refund_ended_order(session: AsyncSession, order_id: int, request: SupportRefund) -> RefundReceipt:
    """Pay a support refund of an ended order, or answer the first receipt of its key (refunded 0)."""
    order = await session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if order is None:
        raise OrderRejected("order_not_found", f"order {order_id} does not exist", 404)
    known = await session.scalar(
        select(EndedOrderRefund).where(
            EndedOrderRefund.order_id == order_id, EndedOrderRefund.idempotency_key == request.idempotency_key
        )
    )
    if known is not None:
        if known.request != request.fingerprint():
            raise OrderRejected(
                "idempotency_conflict", "this Idempotency-Key was already used for a different refund", 409
            )
        return RefundReceipt(0, order.refunded_micros, Status(order.status))
    try:
        money, units = policy.support_refund(
            amount_micros=request.amount_micros,
            units=request.units,
            charge=order.charge_micros,
            quantity=order.quantity,
            refunded=order.refunded_micros,
            refunded_units=order.refunded_units,
        )
    except ValueError as exc:
        raise OrderRejected("bad_refund", str(exc), 409) from exc
    if money <= 0:
        raise OrderRejected("nothing_refundable", "nothing is left to refund on this order", 409)
    await ledger.refund_order(
        session,
        order_id=order_id,
        customer_id=order.customer_id,
        amount=money,
        key=ledger.caller_key(f"order:{order_id}:ended-refund", request.idempotency_key),
        actor=request.actor,
        reason=request.reason,
    )
    before = (order.status, order.phase, order.refunded_micros, order.refunded_units)
    order.refunded_micros += money
    order.refunded_units += units
    if order.refunded_micros >= order.charge_micros:
        order.status = Status.REFUNDED
    change = (order.status, order.phase, order.refunded_micros, order.refunded_units)
    await webhooks.order_changed(session, webhooks.OrderChange(order_id, *before, *change))
    order.state_version += 1
    seq = await session.scalar(
        select(func.coalesce(func.max(OrderEvent.seq), 0)).where(OrderEvent.order_id == order_id)
    )
    measure = f"{units} units, " if units else ""
    session.add(
        OrderEvent(
            order_id=order_id,
            seq=int(seq or 0) + 1,
            at=func.now(),
            kind="refund",
            actor=request.actor,
            message=f"refunded {measure}{policy.format_money(money)} after the order ended: {request.reason}",
        )
    )
    session.add(
        EndedOrderRefund(
            order_id=order_id,
            idempotency_key=request.idempotency_key,
            request=request.fingerprint(),
            refunded_micros=money,
            refunded_units=units,
        )
    )
    await session.flush()
    return RefundReceipt(money, order.refunded_micros, Status(order.status), units)
