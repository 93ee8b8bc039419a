"""Counts for `/metrics`, read from the read model and the ledger at scrape time (a few GROUP BYs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import LedgerTransfer, Order, Refill
from store.orders import UNSTARTED_AFTER_SECONDS, is_unstarted
from workflows import policy


@dataclass(frozen=True)
class Snapshot:
    orders: dict[tuple[str, str], int]  # (status, phase) -> orders
    unstarted: int  # charged orders whose workflow has not reported UNSTARTED_AFTER_SECONDS after intake
    refunds: int  # refund transfers (shortfalls, failures, link faults, support refunds)
    refunded_micros: int
    refills: dict[str, int]  # refill status -> refills

    @property
    def needing_attention(self) -> int:
        """Orders parked in `needs_attention`: a step failed for good and waits for ops."""
        return sum(n for (_, phase), n in self.orders.items() if phase == policy.NEEDS_ATTENTION)


async def snapshot(session: AsyncSession) -> Snapshot:
    orders = await session.execute(
        select(Order.status, Order.phase, func.count()).group_by(Order.status, Order.phase)
    )
    unstarted = await session.scalar(
        select(func.count()).select_from(Order).where(is_unstarted(UNSTARTED_AFTER_SECONDS))
    )
    refunds = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(LedgerTransfer.amount_micros), 0)).where(
                LedgerTransfer.kind == "refund"
            )
        )
    ).one()
    refills = await session.execute(select(Refill.status, func.count()).group_by(Refill.status))
    return Snapshot(
        orders={(status, phase): int(n) for status, phase, n in orders},
        unstarted=int(unstarted or 0),
        refunds=int(refunds[0]),
        refunded_micros=int(refunds[1]),
        refills={status: int(n) for status, n in refills},
    )
