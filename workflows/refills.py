"""The refill window: a completed order of a service with refills stays open for `refill_days`; each refill
the customer asks for goes to every provider order that delivered and is followed to its end.

Refill status is read like a run's, soon at first and then less often, so a quick refill shows Completed
within a minute. A refill the provider rejects or errs on does not use up one of the customer's refills (the
cooldown still counts from the request).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import policy, steps
from workflows.errors import REJECTED, refused
from workflows.models import (
    CheckRefill,
    OpenRefill,
    Phase,
    RefillPart,
    RefillProgress,
    RefillRequest,
    RefillStatus,
    RefillTicket,
    Status,
    SubmitRefill,
)
from workflows.record import OrderRecord, error_type, parse_time, reason

REFILL_GIVE_UP = timedelta(hours=72)  # a provider that never answers about a refill: the refill errs


class Refills:
    def __init__(self, record: OrderRecord) -> None:
        self.record = record

    # ----- the customer's request

    def check(self, request: RefillRequest) -> None:
        order, state, now = self.record.order, self.record.state, workflow.now()
        deadline = parse_time(state.refill_deadline) if state.refill_deadline else None
        times = [parse_time(t) for t in (state.settled_at, state.last_refill_at) if t]
        since = max(times, default=now)
        refusal = policy.refill_refusal(
            refill_days=order.refill_days,
            refill_max=order.refill_max,
            cooldown_hours=order.refill_cooldown_hours,
            status=state.status,
            in_window=state.working_phase == Phase.REFILL_WINDOW and deadline is not None and now < deadline,
            window_over=deadline is not None and now >= deadline,
            refills_used=state.refills_used,
            refill_busy=state.refill_busy,
            hours_since_last=(now - since).total_seconds() / 3600,
        )
        if refusal is not None:
            raise refused(*refusal)

    async def request(self, request: RefillRequest) -> RefillTicket:
        record, state = self.record, self.record.state
        self.check(request)
        state.refills_used += 1
        state.refills_asked += 1  # numbers go on across refills that did not count
        refill_no = state.refills_asked
        state.refill_busy = True
        state.last_refill_at = record.now_iso()
        refill_id = await record.store_step(
            steps.OPEN_REFILL,
            OpenRefill(state.order_id, refill_no, request.actor),
            f"record refill {refill_no}",
        )
        ticket = RefillTicket(refill_id, refill_no)
        record.event(
            "refill_requested", f"refill {refill_no} (id {refill_id}) {request.reason}".strip(), request.actor
        )
        state.refill_queue.append(ticket)
        return ticket

    # ----- the window

    def opens(self) -> bool:
        """A completed order of a service with refills stays open for them once settled."""
        return self.record.order.refill_days > 0 and self.record.state.status == Status.COMPLETED

    def open_window(self) -> None:
        """The window opens at settlement: `refill_days` from then (the cooldown counts from then too)."""
        record, order, state = self.record, self.record.order, self.record.state
        assert state.settled_at is not None
        deadline = parse_time(state.settled_at) + timedelta(days=order.refill_days)
        state.refill_deadline = deadline.isoformat()
        record.set_phase(Phase.REFILL_WINDOW)
        state.note = f"refill window until {deadline:%Y-%m-%d %H:%M} UTC"
        record.event("refill_window", state.note)
        record.plan_next_action(deadline - workflow.now())

    async def window(self) -> None:
        """Keep the order open for refills until the window ends; a refill under way runs to its end."""
        record, state = self.record, self.record.state
        if state.refill_deadline is None or state.working_phase != Phase.REFILL_WINDOW:
            return
        deadline = parse_time(state.refill_deadline)
        until = f"refill window until {deadline:%Y-%m-%d %H:%M} UTC"
        while state.status != Status.REFUNDED:
            if state.refill_queue:
                await self._refill(state.refill_queue[0])
                state.refill_queue.pop(0)
                state.note = until
                record.plan_next_action(deadline - workflow.now())
                await record.publish()
                continue
            if workflow.now() >= deadline:
                break
            await record.wait(
                lambda: bool(state.refill_queue) or state.status == Status.REFUNDED,
                deadline - workflow.now(),
                until,
            )
            await record.continue_as_new_if_suggested()

    async def _refill(self, ticket: RefillTicket) -> None:
        """Send the refill to every provider order that delivered, and follow each to its end."""
        record, order, state = self.record, self.record.order, self.record.state
        if not state.refill_parts:
            state.refill_began = record.now_iso()
            self._progress(ticket, RefillStatus.IN_PROGRESS, finished=False)
            state.note = f"refill {ticket.refill_no} under way"
            await record.publish()
            delivered = {po.provider_order_id: po for po in state.provider_orders if po.delivered > 0}
            for po in delivered.values():
                part = RefillPart(po.provider_id, po.provider_order_id, po.poll_floor_seconds)
                try:
                    sent = await self.record.step(
                        steps.SUBMIT_REFILL,
                        SubmitRefill(order.order_id, ticket.refill_no, po.provider_id, po.provider_order_id),
                        f"send refill {ticket.refill_no} to provider {po.provider_id}",
                    )
                    part.provider_refill_id = sent.provider_refill_id
                except ActivityError as err:
                    part.status = RefillStatus.REJECTED if error_type(err) == REJECTED else RefillStatus.ERROR
                    record.event(
                        "refill_refused",
                        f"refill {ticket.refill_no}: a provider could not take it",
                        detail=f"provider {po.provider_id}: {reason(err)}",
                    )
                state.refill_parts.append(part)
        began = parse_time(state.refill_began or record.now_iso())
        while True:
            waiting = [p for p in state.refill_parts if p.status not in policy.REFILL_FINAL]
            if not waiting:
                break
            if workflow.now() - began > REFILL_GIVE_UP:
                for part in waiting:
                    part.status = RefillStatus.ERROR
                break
            within = timedelta(
                seconds=min(policy.refill_poll_seconds(p.poll_floor_seconds, p.checks) for p in waiting)
            )
            record.plan_next_action(within)
            record.sync_search_attributes()
            await workflow.sleep(within, summary=f"check refill {ticket.refill_no}")
            for part in waiting:
                await self._check_part(ticket, part)
            await record.continue_as_new_if_suggested()
        statuses = [p.status for p in state.refill_parts]
        outcome = policy.refill_outcome(statuses) if statuses else RefillStatus.REJECTED
        if not policy.refill_counts(outcome):
            state.refills_used -= 1
        state.refill_parts, state.refill_began = [], None
        self._progress(ticket, outcome, finished=True)
        record.event("refill_finished", f"refill {ticket.refill_no}: {outcome}")
        state.refill_busy = False

    async def _check_part(self, ticket: RefillTicket, part: RefillPart) -> None:
        if part.provider_refill_id is None:
            return
        part.checks += 1
        try:
            seen = await self.record.step(
                steps.CHECK_REFILL,
                CheckRefill(part.provider_id, part.provider_refill_id),
                f"status of refill {ticket.refill_no} at provider {part.provider_id}",
            )
        except ActivityError as err:
            workflow.logger.info("refill status unavailable: %s", reason(err))
            return
        if seen.status is not None:
            part.status = seen.status

    def _progress(self, ticket: RefillTicket, status: RefillStatus, *, finished: bool) -> None:
        self.record.state.pending_refills.append(RefillProgress(ticket.refill_no, status, finished))
