"""The running order's record: its one state object, its timeline, how both reach the read model, and the
waits and steps every part of the order shares (delivery, money, refills).

A database step that fails in a way no retry can mend (STEP_FAILED) does not hang the order: it goes to
phase `needs_attention` with the reason on its timeline and in the Web UI, and waits for ops to fix the cause
and send it on (the `retry` update); the step then runs again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import policy, steps
from workflows import search_attributes as sa
from workflows.errors import STEP_FAILED
from workflows.models import (
    OrderEvent,
    OrderInput,
    OrderState,
    Phase,
    Projection,
    ProviderOrder,
    RunProgress,
    Status,
)

A = TypeVar("A")
R = TypeVar("R")

WORKFLOW_ACTOR = "workflow"


class OrderRecord:
    def __init__(self, order: OrderInput, state: OrderState) -> None:
        self.order = order
        self.state = state
        self.wake = False  # a message, a freed slot or a provider push: look again now
        self.retry_asked = False  # ops sent an order in needs_attention on
        self._projected: tuple[Any, ...] | None = None  # what the read model last got, to skip empty writes
        self._provider_orders_projected: dict[str, ProviderOrder] = {}
        # A drip-feed's runs as resellers track them: their sizes, and what the read model last got.
        self._drip_feed = (
            [units for units, _ in policy.plan_runs(order.quantity, order.pace_per_hour, runs=order.runs)]
            if order.runs
            else []
        )
        self._runs_projected: dict[int, RunProgress] = {}
        # The search attributes as last set (the start sets status and phase already).
        self._searchable: tuple[Any, ...] = (Status.PENDING, Phase.QUEUED, None, None)

    # ----- what the order shows

    def event(
        self, kind: str, message: str, actor: str = WORKFLOW_ACTOR, *, detail: str | None = None
    ) -> None:
        """A timeline line: `message` for anyone, `detail` (provider, their ids and words) for staff only."""
        self.state.event_seq += 1
        self.state.pending_events.append(
            OrderEvent(self.state.event_seq, workflow.now().isoformat(), kind, actor, message, detail)
        )

    def set_phase(self, phase: Phase) -> None:
        """Set the working phase; a pause (on holdable phases) or a needs_attention hold shows over it."""
        state = self.state
        state.working_phase = phase
        if state.attention is not None:
            state.phase = Phase.NEEDS_ATTENTION
        elif state.paused_by is not None and phase in policy.HOLDABLE:
            state.phase = Phase.PAUSED
        else:
            state.phase = phase

    def now_iso(self) -> str:
        return workflow.now().isoformat()

    # ----- the read model

    def _changed_provider_orders(self) -> list[ProviderOrder]:
        """Provider orders whose outcome changed since the read model last got them (a status read that
        found nothing new is not a change)."""
        return [
            dataclasses.replace(po)
            for po in self.state.provider_orders
            if _outcome(self._provider_orders_projected.get(po.provider_order_id)) != _outcome(po)
        ]

    def _changed_runs(self, *, finished: bool = False) -> list[RunProgress]:
        """Drip-feed runs whose delivered units or status changed since the read model last got them (it
        starts every run Pending at 0: after a continue-as-new only runs that moved are sent again)."""
        state = self.state
        over = finished or state.working_phase in policy.DELIVERY_OVER
        changed = []
        for run_no, units in enumerate(self._drip_feed, start=1):
            orders = [po for po in state.provider_orders if po.run_no == run_no]
            delivered = min(sum(po.delivered for po in orders), units)
            status = policy.run_status(
                units=units, delivered=delivered, sent=bool(orders), over=over or state.runs_done >= run_no
            )
            run = RunProgress(run_no, delivered, status)
            if run != self._runs_projected.get(run_no, RunProgress(run_no, 0, Status.PENDING)):
                changed.append(run)
        return changed

    def changed(self) -> bool:
        state = self.state
        return bool(
            state.pending_events
            or state.pending_refills
            or self._projected != _key(state)
            or self._changed_provider_orders()
            or self._changed_runs()
        )

    def draft(self, *, finished: bool = False) -> Projection:
        """The read model's next write: the state as it is now, with what the read model lacks. The one
        place a projection is built. A step may carry it (the slot claim, the settlement) to write it in its
        own transaction; `published` then records that it arrived."""
        state = self.state
        state.version += 1
        return dataclasses.replace(
            projection_of(state, finished=finished),
            events=list(state.pending_events),
            refills=list(state.pending_refills),
            provider_orders=self._changed_provider_orders(),
            runs=self._changed_runs(finished=finished),
        )

    def draft_if_changed(self) -> Projection | None:
        return self.draft() if self.changed() else None

    def published(self, projection: Projection | None) -> None:
        """The read model has this projection: what it carried is no longer pending (a handler may have
        added more meanwhile, which stays)."""
        if projection is None:
            return
        state = self.state
        sent = {e.seq for e in projection.events}
        state.pending_events[:] = [e for e in state.pending_events if e.seq not in sent]
        del state.pending_refills[: len(projection.refills)]
        self._projected = _key(projection)
        for po in projection.provider_orders:
            self._provider_orders_projected[po.provider_order_id] = po
        for run in projection.runs:
            self._runs_projected[run.run_no] = run
        self.show_details()

    async def publish_if_changed(self) -> None:
        if self.changed():
            await self.publish()

    async def publish(self, *, finished: bool = False) -> None:
        """Project the state into the read model and the Web UI summary (search attributes follow when the
        order next waits)."""
        projection = self.draft(finished=finished)
        await self.store_step(
            steps.PROJECT_ORDER, projection, f"record {projection.status} ({projection.phase})"
        )
        self.published(projection)

    def sync_search_attributes(self) -> None:
        """Bring the search attributes up to date. Called when the order is about to wait (a timer, a
        condition, a provider call), not at every change: each upsert is a history event, and a status
        that lasts only inside one workflow task (a run the provider finished at once) needs none."""
        state = self.state
        searchable = (state.status, state.phase, state.provider_id, state.refill_deadline)
        if searchable == self._searchable:  # each upsert is a history event: only when something changed
            return
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.ORDER_STATUS.value_set(state.status),
            sa.ORDER_PHASE.value_set(state.phase),
        ]
        if state.provider_id is not None:
            updates.append(sa.PROVIDER_ID.value_set(state.provider_id))
        if state.refill_deadline is not None:
            updates.append(sa.REFILL_DEADLINE.value_set(parse_time(state.refill_deadline)))
        workflow.upsert_search_attributes(updates)
        self._searchable = searchable

    def show_details(self) -> None:
        """The summary ops see in the Web UI: where the order is and what comes next."""
        state = self.state
        lines = [
            f"**{state.status}** ({state.phase}): {state.delivered} of {state.quantity} delivered, "
            f"run {state.runs_done} of {state.runs_total}"
        ]
        if state.refunded_micros:
            lines.append(f"refunded {policy.format_money(state.refunded_micros)}")
        if state.paused_by:
            lines.append(f"paused by {state.paused_by}")
        if state.attention:
            lines.append(f"needs attention: {state.attention}")
        if state.note:
            lines.append(f"next: {state.note}")
        workflow.set_current_details("\n\n".join(lines))

    # ----- waiting

    async def wait(self, done: Callable[[], bool], within: timedelta, summary: str) -> bool:
        """Wait until `done()`, at most `within`; True when `done()` came first."""
        self.sync_search_attributes()
        if within <= timedelta(0):
            return done()
        try:
            await workflow.wait_condition(done, timeout=within, timeout_summary=summary)
            return True
        except TimeoutError:
            return False

    async def nap(self, within: timedelta, summary: str) -> None:
        """Wait `within`, or less when something wakes the order (a message, a freed slot, a push).

        The wake-up is consumed after the wait, never before it: one that came while the order was busy
        (in an activity) still cuts the next wait short instead of being lost.
        """
        await self.wait(lambda: self.wake, within, summary)
        self.wake = False

    def plan_next_action(self, within: timedelta | None) -> None:
        """Tell the read model when the order next means to act by itself (None: it waits for someone)."""
        self.state.next_action_at = None if within is None else (workflow.now() + within).isoformat()

    async def until_resumed(self) -> None:
        if self.state.paused_by is not None:
            self.sync_search_attributes()
            await workflow.wait_condition(lambda: self.state.paused_by is None or self.state.stop is not None)

    async def continue_as_new_if_suggested(self) -> None:
        """Keep the history small: a long order goes on in a fresh run of the same workflow id, handed its
        whole state. Published first; skipped (until the next wait) while a message is being answered, so
        no accepted update is ever lost."""
        if not workflow.info().is_continue_as_new_suggested():
            return
        await self.publish_if_changed()
        if not workflow.all_handlers_finished():
            return
        self.sync_search_attributes()
        workflow.continue_as_new(dataclasses.replace(self.order, state=self.state))

    # ----- steps

    async def step(self, step: steps.Step[A, R], arg: A, summary: str) -> R:
        """A provider call: the workflow task ends while it runs, so ops see the order as it is now."""
        self.sync_search_attributes()
        return await step(arg, summary)

    async def store_step(self, step: steps.Step[A, R], arg: A, summary: str) -> R:
        """A database step; one that fails for good puts the order in needs_attention until ops send it on."""
        while True:
            try:
                return await step(arg, summary)
            except ActivityError as err:
                if error_type(err) != STEP_FAILED:
                    raise
                await self.needs_attention(
                    f"{step.name} failed: {reason(err)}", publish=step.name != "project_order"
                )

    async def needs_attention(self, why: str, *, publish: bool = True) -> None:
        """Hold the order, visibly, until ops have fixed the cause and sent it on with `retry`."""
        state = self.state
        workflow.logger.error("order %s needs attention: %s", state.order_id, why)
        state.attention = why
        self.set_phase(state.working_phase)
        self.event("needs_attention", why)
        self.plan_next_action(None)
        self.sync_search_attributes()
        self.show_details()
        if publish:
            try:
                await steps.PROJECT_ORDER(self._attention_projection(), "record needs_attention")
            except ActivityError as err:  # the read model itself may be what fails: the Web UI still shows it
                workflow.logger.error("could not record the attention: %s", reason(err))
        self.retry_asked = False
        await workflow.wait_condition(lambda: self.retry_asked)
        self.retry_asked = False
        state.attention = None
        self.set_phase(state.working_phase)

    def _attention_projection(self) -> Projection:
        """Just the hold and its reason: what else is pending may be what fails, and goes out later."""
        attention = [e for e in self.state.pending_events if e.kind == "needs_attention"][-1:]
        return dataclasses.replace(
            self.draft(),
            note=f"needs attention: {self.state.attention}",
            next_action_at=None,
            events=attention,
            refills=[],
            provider_orders=[],
        )


def _key(view: OrderState | Projection) -> tuple[Any, ...]:
    """What of the order the read model shows (the state and its projection name these fields alike)."""
    return (
        view.status,
        view.phase,
        view.delivered,
        view.refunded_micros,
        view.refunded_units,
        view.provider_id,
        view.provider_status_raw,
        view.start_count,
        view.note,
        view.refill_deadline,
    )


def _outcome(po: ProviderOrder | None) -> tuple[Any, ...] | None:
    if po is None:
        return None
    return (
        po.provider_order_id,
        po.delivered,
        po.cost_micros,
        po.status,
        po.raw_status,
        po.final,
        po.abandoned_at,
    )


def error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause) if cause is not None else str(err)


def minutes(span: timedelta) -> str:
    total = max(int(span.total_seconds() // 60), 0)
    return f"{total} min" if total < 120 else f"{total // 60} h {total % 60} min"


def parse_time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def projection_of(state: OrderState, *, finished: bool = False) -> Projection:
    """The order's row in the read model as the state says it, without timeline events, refills, provider
    orders or runs (the caller adds those it has): `OrderRecord.draft` and the bench's fast path."""
    return Projection(
        order_id=state.order_id,
        version=state.version,
        status=state.status,
        phase=state.phase,
        delivered=state.delivered,
        refunded_micros=state.refunded_micros,
        refunded_units=state.refunded_units,
        provider_id=state.provider_id,
        provider_status_raw=state.provider_status_raw,
        start_count=state.start_count,
        note=state.note,
        refill_deadline=state.refill_deadline,
        next_action_at=None if finished else state.next_action_at,
        finished=finished,
    )
