"""Ledger steps the ledger tests share: what an order's workflow and support do to its money."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import ledger
from store.db import transaction
from workflows.models import OrderInput


async def recognise(sessions: async_sessionmaker[AsyncSession], order: OrderInput, amount: int) -> None:
    """Recognise `amount` of the order's escrow as revenue, as its settlement does."""
    async with transaction(sessions) as session:
        await ledger.ensure_account(session, ledger.REVENUE, "revenue")
        await ledger.transfer(
            session,
            key=f"order:{order.order_id}:revenue",
            kind="revenue",
            debit=ledger.escrow_account(order.order_id),
            credit=ledger.REVENUE,
            amount=amount,
            actor="workflow",
            order_id=order.order_id,
        )


async def support_refund(
    sessions: async_sessionmaker[AsyncSession], order: OrderInput, amount: int, key: str
) -> ledger.TransferResult:
    """A support refund of `amount` by `key`, in its own transaction."""
    async with transaction(sessions) as session:
        return await ledger.refund_order(
            session,
            order_id=order.order_id,
            customer_id=order.customer_id,
            amount=amount,
            key=key,
            actor="support:key1",
            reason="customer complaint",
        )
