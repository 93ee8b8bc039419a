"""Provider slots: the queue that keeps each provider within its capacity."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.failures import fails_for_good
from store import orders, slots
from store.db import transaction
from workflows.models import ReleaseSlot, RouteRef, SubmitRun


class SlotActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="release_slot")
    @fails_for_good("release_slot")
    async def release_slot(self, release: ReleaseSlot) -> list[str]:
        """Returns the workflow ids of orders that may now take a freed slot."""
        async with transaction(self._sessions) as session:
            return await slots.release(session, release.order_id, release.provider_id)


@fails_for_good("take a slot")
async def route_for(sessions: async_sessionmaker[AsyncSession], run: SubmitRun) -> RouteRef | int:
    """The route a run goes to, or its place in line (1 = next) when no route has room. Writes what the
    read model lacks in the same transaction (at an order's start: the order placed)."""
    async with transaction(sessions) as session:
        if run.record is not None:
            await orders.project(session, run.record)
        if not run.claim:
            return run.routes[0]
        provider_id, position = await slots.claim(
            session, run.order_id, run.workflow_id, [r.provider_id for r in run.routes]
        )
    if provider_id is None:
        return position
    return next(r for r in run.routes if r.provider_id == provider_id)
