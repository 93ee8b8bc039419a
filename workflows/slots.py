"""Provider slots: each provider delivers at most `capacity` provider orders at once; orders wait FIFO.

The queue itself is in the database (store/slots.py, behind the claim_slot and release_slot activities);
an order that frees a slot wakes the orders that may now take it with the `slot_freed` signal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

from workflows import steps
from workflows.models import Phase, ReleaseSlot
from workflows.record import OrderRecord

QUEUE_RECHECK = timedelta(minutes=5)  # a waiting order looks again even if no wake-up signal came


class Slots:
    def __init__(self, record: OrderRecord) -> None:
        self.record = record

    def hold(self, provider_id: int) -> None:
        """The order has a slot at this provider: its route goes first, the others stay behind it for
        failover (the first route with room takes the order)."""
        record, state = self.record, self.record.state
        state.slot_provider_id = provider_id
        state.routes.sort(key=lambda r: r.provider_id != provider_id)
        if state.queue_position is not None:
            record.event("slot", "a provider slot is free", detail=f"provider {provider_id}")
        state.queue_position = None

    async def wait_in_line(self, position: int) -> None:
        """No route has room: wait FIFO until one frees a slot (its order wakes this one) or, at the latest,
        until the next recheck."""
        record, state = self.record, self.record.state
        first_wait = state.queue_position is None
        state.queue_position = position
        # The read model shows the live place in line; the note does not repeat a number that ages.
        state.note = "waiting for a provider slot"
        record.set_phase(Phase.QUEUED)
        record.plan_next_action(QUEUE_RECHECK)
        if first_wait:
            await record.publish()
        await record.nap(QUEUE_RECHECK, "wait for a provider slot")
        await record.continue_as_new_if_suggested()

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
