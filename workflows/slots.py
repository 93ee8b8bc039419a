"""Provider slots: each provider delivers at most `capacity` provider orders at once; orders wait FIFO.

The queue itself is in the database (store/slots.py, behind the claim_slot and release_slot activities);
an order that frees a slot wakes the orders that may now take it with the `slot_freed` signal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

from workflows import steps
from workflows.models import ClaimSlot, Phase, ReleaseSlot, RouteRef
from workflows.record import OrderRecord

QUEUE_RECHECK = timedelta(minutes=5)  # a waiting order looks again even if no wake-up signal came


class Slots:
    def __init__(self, record: OrderRecord) -> None:
        self.record = record

    async def take(self) -> RouteRef | None:
        """Wait FIFO for a slot at the first route with room; None when delivery was stopped."""
        record, state = self.record, self.record.state
        held = next((r for r in state.routes if r.provider_id == state.slot_provider_id), None)
        if held is not None:
            return held
        while state.stop is None:
            await record.until_resumed()
            if state.stop is not None:
                break
            # The claim writes what the read model lacks (at the start: the order placed) in its transaction.
            pending = record.draft_if_changed()
            answer = await record.store_step(
                steps.CLAIM_SLOT,
                ClaimSlot(
                    state.order_id,
                    workflow.info().workflow_id,
                    [r.provider_id for r in state.routes],
                    pending,
                ),
                "ask for a provider slot",
            )
            record.published(pending)
            if answer.provider_id is not None:
                state.slot_provider_id = answer.provider_id
                # The first route with room takes the order; the others stay behind it for failover.
                state.routes.sort(key=lambda r: r.provider_id != answer.provider_id)
                if state.queue_position is not None:
                    record.event("slot", "a provider slot is free", detail=f"provider {answer.provider_id}")
                state.queue_position = None
                return state.routes[0]
            first_wait = state.queue_position is None
            state.queue_position = answer.position
            # The read model shows the live place in line; the note does not repeat a number that ages.
            state.note = "waiting for a provider slot"
            record.set_phase(Phase.QUEUED)
            record.plan_next_action(QUEUE_RECHECK)
            if first_wait:
                await record.publish()
            await record.nap(QUEUE_RECHECK, "wait for a provider slot")
            await record.continue_as_new_if_suggested()
        return None

    async def release(self, provider_id: int) -> None:
        """Leave the provider's slot and wake the orders that may now take it."""
        wake = await self.record.store_step(
            steps.RELEASE_SLOT, ReleaseSlot(self.record.state.order_id, provider_id), "free the provider slot"
        )
        self.record.state.slot_provider_id = None
        await wake_waiters(wake)

    async def free_until(self, due: datetime) -> None:
        """Leave the slot while the order waits for a run due later; it queues again then."""
        state = self.record.state
        if state.slot_provider_id is not None and due > workflow.now():
            await self.release(state.slot_provider_id)


async def wake_waiters(workflow_ids: list[str]) -> None:
    """Tell orders waiting for a provider slot that one is free."""
    for workflow_id in workflow_ids:
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("slot_freed")
        except Exception as exc:  # a waiter that ended meanwhile: nothing to wake
            workflow.logger.info("could not wake %s: %s", workflow_id, exc)
