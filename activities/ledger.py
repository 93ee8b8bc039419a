"""Ledger side of an order's settlement. Amounts are decided by the workflow; this only moves them, once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.failures import fails_for_good
from store import ledger, settlement, slots
from store.db import transaction
from workflows.models import RefundMoney, Settlement


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="settle_order")
    @fails_for_good("settle_order")
    async def settle_order(self, s: Settlement) -> list[str]:
        """Refund and recognise revenue in one transaction; transfer keys make a retry pay nothing twice
        (the settlement's refund is always `order:<id>:refund:0`; support refunds count from 1).

        Settling ends the order's hold on its provider too, and writes the settled order into the read
        model, in the same transaction: returns the workflow ids of the orders that may now take the freed
        slot.
        """
        async with transaction(self._sessions) as session:
            await settlement.settle(session, s)
            return await slots.release(session, s.order_id, None)

    @activity.defn(name="refund_order")
    @fails_for_good("refund_order")
    async def refund_order(self, r: RefundMoney) -> None:
        """A support refund, by key: from escrow, or taken back from revenue once delivery was recognised."""
        async with transaction(self._sessions) as session:
            await ledger.refund_order(
                session,
                order_id=r.order_id,
                customer_id=r.customer_id,
                amount=r.amount_micros,
                key=r.key,
                actor=r.actor,
                reason=r.reason,
            )
