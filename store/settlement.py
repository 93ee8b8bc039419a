"""An order's settlement in the database: the refund of its shortfall and the revenue it earned, both out
of its escrow and each once by its key, with the read model's final write, all in the caller's transaction
(activities/ledger.py:settle_order; the bench's fast path settles many orders in one)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger, read_model
from workflows.models import Settlement


async def settle(session: AsyncSession, s: Settlement) -> None:
    escrow = ledger.escrow_account(s.order_id)
    if s.refund_micros > 0:
        await ledger.transfer(
            session,
            key=f"order:{s.order_id}:refund:0",
            kind="refund",
            debit=escrow,
            credit=ledger.customer_account(s.customer_id),
            amount=s.refund_micros,
            actor=s.actor,
            reason=s.reason,
            order_id=s.order_id,
        )
    if s.revenue_micros > 0:
        await ledger.ensure_account(session, ledger.REVENUE, "revenue")
        await ledger.transfer(
            session,
            key=f"order:{s.order_id}:revenue",
            kind="revenue",
            debit=escrow,
            credit=ledger.REVENUE,
            amount=s.revenue_micros,
            actor=s.actor,
            reason="delivery recognised",
            order_id=s.order_id,
        )
    if s.record is not None:
        await read_model.project(session, s.record)
