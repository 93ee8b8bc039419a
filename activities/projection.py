"""Read-model projection: the workflow's state written into the `orders` table at every transition, with
its new timeline events and refill progress."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.failures import fails_for_good
from store import read_model
from store.db import transaction
from workflows.models import OpenRefill, Projection


class ProjectionActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="project_order")
    @fails_for_good("project_order")
    async def project_order(self, projection: Projection) -> None:
        async with transaction(self._sessions) as session:
            await read_model.project(session, projection)

    @activity.defn(name="open_refill")
    @fails_for_good("open_refill")
    async def open_refill(self, refill: OpenRefill) -> int:
        """Record a customer's refill request; returns the refill id clients follow it by."""
        async with transaction(self._sessions) as session:
            return await read_model.open_refill(session, refill)
