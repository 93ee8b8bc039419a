"""Counts for `/metrics`, read from the read model and the ledger at scrape time (a few GROUP BYs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import LedgerTransfer, Order, ProviderSubmission, Refill
from store.orders import UNSTARTED_AFTER_SECONDS, is_unstarted
from workflows.models import Phase


@dataclass(frozen=True)
class Snapshot:
    orders: dict[tuple[str, str], int]  # (status, phase) -> orders
    unstarted: int  # charged orders whose workflow has not reported UNSTARTED_AFTER_SECONDS after intake
    refunds: int  # refund transfers (shortfalls, failures, link faults, support refunds)
    refunded_micros: int
    refills: dict[str, int]  # refill status -> refills
    units_beyond_need: int  # units providers delivered beyond what their orders asked for (failovers)
    provider_cost_micros: int  # what providers charged for every provider order, as they reported it

    @property
    def needing_attention(self) -> int:
        """Orders parked in `needs_attention`: a step failed for good and waits for ops."""
        return sum(n for (_, phase), n in self.orders.items() if phase == Phase.NEEDS_ATTENTION)


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
    per_order = (
        select(
            func.greatest(func.sum(func.coalesce(ProviderSubmission.delivered, 0)) - Order.quantity, 0).label(
                "beyond"
            )
        )
        .select_from(ProviderSubmission)
        .join(Order, Order.id == ProviderSubmission.order_id)
        .group_by(Order.id, Order.quantity)
        .subquery()
    )
    beyond = await session.scalar(select(func.coalesce(func.sum(per_order.c.beyond), 0)))
    cost = await session.scalar(select(func.coalesce(func.sum(ProviderSubmission.cost_micros), 0)))
    return Snapshot(
        orders={(status, phase): int(n) for status, phase, n in orders},
        unstarted=int(unstarted or 0),
        refunds=int(refunds[0]),
        refunded_micros=int(refunds[1]),
        refills={status: int(n) for status, n in refills},
        units_beyond_need=int(beyond or 0),
        provider_cost_micros=int(cost or 0),
    )
