"""Provider slots: the queue that keeps each provider within its capacity."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.failures import fails_for_good
from store import orders, slots
from store.db import transaction
from workflows.models import ClaimSlot, ReleaseSlot, SlotAnswer


class SlotActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="claim_slot")
    @fails_for_good("claim_slot")
    async def claim_slot(self, claim: ClaimSlot) -> SlotAnswer:
        async with transaction(self._sessions) as session:
            if claim.record is not None:
                await orders.project(session, claim.record)
            provider_id, position = await slots.claim(
                session, claim.order_id, claim.workflow_id, claim.provider_ids
            )
        return SlotAnswer(provider_id, position)

    @activity.defn(name="release_slot")
    @fails_for_good("release_slot")
    async def release_slot(self, release: ReleaseSlot) -> list[str]:
        """Returns the workflow ids of orders that may now take a freed slot."""
        async with transaction(self._sessions) as session:
            return await slots.release(session, release.order_id, release.provider_id)
