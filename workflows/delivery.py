"""Delivery: the order's runs, each sent exactly once to a provider and followed to its end.

A run waits FIFO for a slot at the first route with room (capacity counts provider orders delivering, so an
order frees its slot while it waits for its next run), is submitted exactly once, and is polled with a
backoff. A provider that stops answering interrupts the order (no refund); after `max_interruption_hours`
the run's remainder fails over to the next route. A provider order the order gives up (failover, a stop) is
asked to cancel and still followed until it ends: what it delivered late counts as delivered, so nobody is
refunded for units that arrived, and what it cost is known.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import policy, steps
from workflows.errors import LINK_FAULT, NEEDS_RECONCILIATION, REJECTED, STEP_FAILED
from workflows.interruptions import Interruptions
from workflows.models import (
    CancelAnswer,
    CancelRun,
    CheckRun,
    Phase,
    ProviderOrder,
    RouteRef,
    RunReport,
    Status,
    StopKind,
    StopRequest,
    SubmitRun,
)
from workflows.record import OrderRecord, error_type, minutes, parse_time, reason
from workflows.slots import QUEUE_RECHECK, Slots

TRAILING_CHECK = timedelta(minutes=5)  # how often a given-up provider order is read while nothing else runs

LINK_FAULT_TEXT = "delivery stopped: the link is private, deleted, renamed or invalid"

# How a run ended.
DONE, STOPPED, NO_ROUTE = "done", "stopped", "no_route"


class Delivery:
    def __init__(self, record: OrderRecord) -> None:
        self.record = record
        order = record.order
        self.plan = policy.plan_runs(
            order.quantity, order.pace_per_hour, runs=order.runs, interval_minutes=order.interval_minutes
        )
        self.interruptions = Interruptions(record)
        self.slots = Slots(record)

    # ----- what the provider orders add up to

    @property
    def in_flight(self) -> ProviderOrder | None:
        """The provider order delivering the current run (neither ended nor given up)."""
        for po in reversed(self.record.state.provider_orders):
            if not po.final and po.abandoned_at is None:
                return po
        return None

    def trailing(self) -> list[ProviderOrder]:
        """Provider orders given up but not yet ended: still followed."""
        return [po for po in self.record.state.provider_orders if po.abandoned_at and not po.final]

    def _delivered_in(self, run_no: int) -> int:
        return sum(po.delivered for po in self.record.state.provider_orders if po.run_no == run_no)

    def _count_delivered(self) -> None:
        state = self.record.state
        state.delivered = min(sum(po.delivered for po in state.provider_orders), state.quantity)

    # ----- the runs

    async def run(self) -> bool:
        """Deliver every run left, then follow what was given up to its end; True when the service failed
        (no route could deliver what was left)."""
        record, state = self.record, self.record.state
        for run_no in range(state.next_run, len(self.plan) + 1):
            if state.stop is not None:
                break
            units, offset_minutes = self.plan[run_no - 1]
            following = self.in_flight is not None and self.in_flight.run_no == run_no
            if not following and not await self._wait_until_due(run_no, offset_minutes):
                break
            outcome = await self._deliver_run(run_no, units)
            if outcome == STOPPED:
                break
            if outcome == NO_ROUTE:
                state.service_failed = True
                state.note = "no delivery route could deliver the order"
                record.event("service_failed", f"no delivery route left for run {run_no}")
                break
            state.next_run, state.runs_done = run_no + 1, run_no
            if run_no < len(self.plan):
                # Capacity counts provider orders delivering: waiting for its next run, the order leaves
                # its slot to others and queues again when the run is due.
                due = parse_time(state.started_at) + timedelta(minutes=self.plan[run_no][1])
                await self.slots.free_until(due)
            await record.continue_as_new_if_suggested()
        await self._wind_down()
        return state.service_failed

    async def _wait_until_due(self, run_no: int, offset_minutes: int) -> bool:
        """Wait for the run's time, following given-up provider orders meanwhile; False when stopped."""
        record, state = self.record, self.record.state
        due = parse_time(state.started_at) + timedelta(minutes=offset_minutes)
        while state.stop is None and (remaining := due - workflow.now()) > timedelta(0):
            state.note = f"run {run_no} of {len(self.plan)} at {due:%Y-%m-%d %H:%M} UTC"
            within = min(remaining, TRAILING_CHECK) if self.trailing() else remaining
            record.plan_next_action(within)
            await record.publish_if_changed()
            stopped = await record.wait(
                lambda: state.stop is not None,
                within,
                f"wait {minutes(remaining)} before run {run_no} of {len(self.plan)}",
            )
            if not stopped and within == remaining:
                break  # the timer for the whole wait fired: the run is due, whatever the clock's last digits
            await self._check_trailing()
            await record.continue_as_new_if_suggested()
        return state.stop is None

    async def _deliver_run(self, run_no: int, units: int) -> str:
        """Deliver one run, failing over between routes; counts what every provider order delivered."""
        state = self.record.state
        while state.stop is None:
            po = self.in_flight
            first_look: RunReport | None = None
            if po is None:
                left = units - self._delivered_in(run_no)  # late deliveries of given-up routes count
                if left <= 0:
                    return DONE
                if not state.routes:
                    return NO_ROUTE
                submitted = await self._submit(run_no, left)
                if submitted is None:
                    continue  # stopped, or the route was given up
                po, first_look = submitted
            outcome = await self._follow(po, first_look)
            if outcome == STOPPED:
                return STOPPED
            route_of = self._route(po.provider_id)
            if outcome == "given_up":
                await self._abandon(po, f"no answer for {self.record.order.max_interruption_hours} hours")
                if route_of is not None:
                    await self._drop_route(route_of, "the provider stopped answering")
                continue
            if state.stop is not None:
                return STOPPED
            if policy.provider_gave_up(po.status):
                if route_of is not None:
                    await self._drop_route(route_of, f"the provider ended run {run_no} as {po.status}")
                continue
            return DONE  # Completed or Partial: a shortfall is judged at settlement, by the tolerance
        return STOPPED

    def _route(self, provider_id: int) -> RouteRef | None:
        return next((r for r in self.record.state.routes if r.provider_id == provider_id), None)

    async def _drop_route(self, route: RouteRef, why: str) -> None:
        workflow.logger.warning("route %s gave up: %s", route.provider_id, why)
        self.record.event(
            "failover", "delivery moves to another route", detail=f"provider {route.provider_id}: {why}"
        )
        self.record.state.routes.remove(route)
        await self.slots.release(route.provider_id)

    # ----- one provider order

    async def _submit(self, run_no: int, units: int) -> tuple[ProviderOrder, RunReport | None] | None:
        """Take a slot (waiting FIFO when no route has room) and send the run there exactly once, in one
        step; None when delivery stopped or the route was given up."""
        record, state, order = self.record, self.record.state, self.record.order
        while True:
            await record.until_resumed()
            if state.stop is not None or not state.routes:
                return None
            claim = self._route(state.slot_provider_id or 0) is None
            pending = record.draft_if_changed() if claim else None
            run = SubmitRun(
                order.order_id, workflow.info().workflow_id, run_no, order.link, units,
                list(state.routes), claim, pending,
            )  # fmt: skip
            try:
                submitted = await record.step(steps.SUBMIT_RUN, run, f"send run {run_no} ({units} units)")
            except ActivityError as err:
                route = self._failed_at(err, claim)
                if route is None:  # it failed before any route was tried
                    if error_type(err) == STEP_FAILED:
                        await record.needs_attention(f"submit_run failed: {reason(err)}")
                    else:
                        await record.nap(QUEUE_RECHECK, "try the submission again")
                    continue
                found = await self._after_failed_send(err, route, run_no)
                if found is None:
                    return None  # stopped, or the route was given up
                if not found:
                    continue  # try again (after an interruption's wait, or ops' attention)
                provider_order_id, first_look, provider_id = found, None, route.provider_id
            else:
                record.published(pending)
                if submitted.provider_id is None:
                    await self.slots.wait_in_line(submitted.queue_position or 1)
                    continue
                self.slots.hold(submitted.provider_id)
                self.interruptions.end()
                provider_order_id, first_look = submitted.provider_order_id or "", submitted.first_look
                provider_id = submitted.provider_id
            route = self._route(provider_id)
            assert route is not None
            po = ProviderOrder(run_no, provider_id, provider_order_id, units, route.poll_interval_seconds)
            state.provider_orders.append(po)
            state.provider_id = provider_id
            state.status = Status.IN_PROGRESS
            record.set_phase(Phase.DELIVERING)
            record.event(
                "run_submitted",
                f"run {run_no} of {len(self.plan)}: {units} units sent for delivery",
                detail=f"provider {provider_id}, their order {provider_order_id}",
            )
            return po, first_look

    def _failed_at(self, err: ActivityError, claimed: bool) -> RouteRef | None:
        """The route a failed submission went to: named in the error (the slot is now held there)."""
        cause = err.cause
        details = cause.details if isinstance(cause, ApplicationError) else ()
        route = self._route(int(details[0])) if details else None
        if route is not None and claimed:
            self.slots.hold(route.provider_id)
        return route

    async def _after_failed_send(self, err: ActivityError, route: RouteRef, run_no: int) -> str | None:
        """What a failed send at `route` leads to: the provider order ops found for it ("" to try again,
        None when delivery stopped or the route was given up)."""
        record = self.record
        kind = error_type(err)
        if kind == LINK_FAULT:
            self.stop(
                StopRequest(StopKind.LINK_FAULT, f"provider:{route.provider_id}", reason(err)), provider=True
            )
            return None
        if kind == REJECTED:
            await self._drop_route(route, reason(err))
            return None
        if kind == STEP_FAILED:
            await record.needs_attention(f"submit_run failed: {reason(err)}")
            return ""
        if kind == NEEDS_RECONCILIATION:
            # The provider may hold the run: sending it anywhere else could deliver it twice.
            found = await self.interruptions.reconcile(run_no, reason(err))
            if found is None:
                await self._drop_route(route, f"ops found the provider never took run {run_no}")
            return found
        wait = self.interruptions.begin(route, reason(err))
        if wait is None:
            await self._drop_route(route, "the provider stopped answering")
            return None
        await record.nap(wait, f"try provider {route.provider_id} again in {minutes(wait)}")
        return ""

    async def _follow(self, po: ProviderOrder, first_look: RunReport | None = None) -> str:
        """Poll the provider order until it ends ("done"), delivery stops ("stopped") or its provider has
        not answered for `max_interruption_hours` ("given_up"). A pause does not stop the polling: API v2
        has no way to hold a provider order, so what it delivers meanwhile is still counted.

        `first_look` is the status the submission read right after the provider took the run: a provider
        that delivers at once is seen finished without a timer and a workflow task of its own."""
        record, state = self.record, self.record.state
        if first_look is not None:
            self._count(po, first_look)
            if po.final:
                return self._finished(po)
        wait = timedelta(seconds=self._poll_seconds(po))
        while True:
            state.note = f"run {po.run_no} of {len(self.plan)} under way"
            record.plan_next_action(wait)
            await record.publish_if_changed()
            await record.nap(wait, f"check run {po.run_no} of {len(self.plan)}")
            if state.stop is not None:
                return STOPPED
            await self._check_trailing()
            try:
                await self._check(po)
            except ActivityError as err:
                kind = error_type(err)
                if kind == REJECTED:
                    # The provider no longer knows the order it accepted: only ops can tell what happened.
                    found = await self.interruptions.reconcile(po.run_no, reason(err))
                    if found is None:
                        po.delivered, po.final, po.status = 0, True, Status.CANCELED
                        self._count_delivered()
                        return "done"
                    po.provider_order_id = found
                    wait = timedelta(seconds=po.poll_floor_seconds)
                    continue
                route = self._route(po.provider_id)
                interrupted = self.interruptions.begin(route, reason(err)) if route is not None else None
                if interrupted is None:
                    return "given_up"
                wait = interrupted
                continue
            self.interruptions.end()
            if po.final:
                return self._finished(po)
            if state.stop is not None:
                return STOPPED
            wait = timedelta(seconds=self._poll_seconds(po))
            await record.continue_as_new_if_suggested()

    def _finished(self, po: ProviderOrder) -> str:
        self.record.event(
            "run_finished",
            f"run {po.run_no}: {po.delivered} of {po.units} delivered",
            f"provider:{po.provider_id}",
            detail=f"provider {po.provider_id} says {po.raw_status}",
        )
        return "done"

    def _poll_seconds(self, po: ProviderOrder) -> int:
        order = self.record.order
        return policy.poll_interval_seconds(po.units, order.pace_per_hour, po.poll_floor_seconds, po.checks)

    async def _check(self, po: ProviderOrder) -> None:
        """Read the provider order's status and count what it delivered."""
        seen = await self.record.step(
            steps.CHECK_RUN,
            CheckRun(po.provider_id, po.provider_order_id),
            f"status of run {po.run_no} at provider {po.provider_id}",
        )
        self._count(po, seen)

    def _count(self, po: ProviderOrder, seen: RunReport) -> None:
        """Take in what the provider reports for one of its orders."""
        record, state = self.record, self.record.state
        po.checks += 1
        po.delivered = policy.delivered_in_run(po.units, seen.status, seen.remains)
        po.status, po.raw_status = seen.status, seen.raw_status
        if seen.cost_micros is not None:
            po.cost_micros = seen.cost_micros
        po.final = seen.status in policy.FINAL_STATUSES
        self._count_delivered()
        if po.abandoned_at is None:
            state.provider_status_raw = seen.raw_status
            if state.start_count is None:
                state.start_count = seen.start_count
            if seen.link_fault and state.stop is None:
                self.stop(
                    StopRequest(StopKind.LINK_FAULT, f"provider:{po.provider_id}", seen.link_fault),
                    provider=True,
                )
        elif po.final:
            record.event(
                "given_up_run_finished",
                f"run {po.run_no}: a stopped route ended with {po.delivered} of {po.units} delivered",
                f"provider:{po.provider_id}",
                detail=f"provider {po.provider_id}, their order {po.provider_order_id}: {po.raw_status}",
            )

    async def _check_trailing(self) -> None:
        """Read every given-up provider order once; trouble with one is simply tried again next time."""
        for po in self.trailing():
            try:
                await self._check(po)
            except ActivityError as err:
                if error_type(err) == REJECTED:  # the provider forgot it: what it last reported stands
                    po.final = True
                    self.record.event(
                        "given_up_run_finished",
                        f"run {po.run_no}: a stopped delivery route is no longer followed",
                        detail=f"provider {po.provider_id}, order {po.provider_order_id}: {reason(err)}",
                    )
                else:
                    workflow.logger.info("given-up run %s not read: %s", po.provider_order_id, reason(err))

    async def cancel_at_provider(self, po: ProviderOrder, why: str) -> CancelAnswer:
        return await self.record.step(
            steps.CANCEL_RUN,
            CancelRun(self.record.state.order_id, po.provider_id, po.provider_order_id),
            f"ask provider {po.provider_id} to stop run {po.run_no}: {why}",
        )

    async def _abandon(self, po: ProviderOrder, why: str) -> None:
        """Give the provider order up: ask the provider to cancel it (what it answers changes nothing here)
        and keep following it until it ends."""
        try:
            await self.cancel_at_provider(po, why)
        except ActivityError as err:
            workflow.logger.warning(
                "provider %s did not stop run %s: %s", po.provider_id, po.run_no, reason(err)
            )
        po.abandoned_at = self.record.now_iso()
        self.record.event(
            "run_given_up",
            f"run {po.run_no}: delivery stopped here; what still arrives is counted",
            detail=f"provider {po.provider_id}, their order {po.provider_order_id}: {why}",
        )

    async def _wind_down(self) -> None:
        """Delivery has ended: give up the run in flight (a stop) and follow every given-up provider order
        to its end, at most `follow_deadline_hours` after it was given up."""
        record, state = self.record, self.record.state
        po = self.in_flight
        if po is not None and state.stop is not None:
            if state.stop.kind == StopKind.CANCEL:  # the cancel update has asked the provider already
                po.abandoned_at = record.now_iso()
            else:
                await self._abandon(po, state.stop.kind.replace("_", " "))
        patience = timedelta(hours=policy.follow_deadline_hours(record.order.max_interruption_hours))
        while True:
            await self._check_trailing()  # at once first: a cancel the provider just confirmed shows now
            now = workflow.now()
            waiting = [po for po in self.trailing() if parse_time(po.abandoned_at or "") + patience > now]
            if not waiting:
                break
            record.set_phase(Phase.SETTLING)
            state.note = "waiting for the provider to confirm what was delivered"
            within = min(timedelta(seconds=self._poll_seconds(po)) for po in waiting)
            record.plan_next_action(within)
            await record.publish_if_changed()
            await record.nap(within, "follow given-up provider orders")
            await record.continue_as_new_if_suggested()
        for po in self.trailing():
            po.final = True
            record.event(
                "given_up_run_unfinished",
                f"run {po.run_no}: settled without the provider's final word",
                detail=f"provider {po.provider_id}, their order {po.provider_order_id}: last {po.raw_status}",
            )

    # ----- stopping

    def stop(self, stop: StopRequest, message: str | None = None, *, provider: bool = False) -> None:
        """Delivery must stop (a cancel, a link fault, a refund in full): the order winds down.

        A provider's own words about the link go to staff only; customers read what it means.
        """
        record, state = self.record, self.record.state
        state.stop = stop
        record.wake = True
        if provider:
            said, detail = LINK_FAULT_TEXT, stop.reason
        else:
            said = f"{message}: {stop.reason}" if message and stop.reason else message or stop.reason
            detail = None
        record.event(stop.kind, said, stop.actor, detail=detail)
        if stop.kind == StopKind.LINK_FAULT:
            state.link_fault = stop.reason  # staff's view (the query); customers read the timeline
