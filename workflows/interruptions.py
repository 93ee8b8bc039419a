"""Interruptions and reconciliation: how delivery rides out a provider that does not answer, and holds a
run whose submission's fate only ops can tell.

No refund comes of an interruption by itself (the policy's "temporary interruptions"); after
`max_interruption_hours` the route is given up and the run's remainder fails over.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import policy
from workflows.models import Phase, RouteRef, RunReconciliation
from workflows.record import OrderRecord, minutes, parse_time


class Interruptions:
    def __init__(self, record: OrderRecord) -> None:
        self.record = record
        self.reconciliation: RunReconciliation | None = None  # ops' answer, handed over by the update

    def begin(self, route: RouteRef, why: str) -> timedelta | None:
        """The provider is not answering: how long to wait before trying again (doubling, capped), or None
        once the interruption has lasted `max_interruption_hours`. Never refunds by itself."""
        record, state, order = self.record, self.record.state, self.record.order
        now = workflow.now()
        if state.interrupted_since is None:
            state.interrupted_since = now.isoformat()
            state.interruption_attempt = 0
            record.set_phase(Phase.INTERRUPTED)
            record.event(
                "interrupted",
                "delivery is interrupted: the provider is not answering",
                detail=f"provider {route.provider_id}: {why}",
            )
        since = parse_time(state.interrupted_since)
        if now - since >= timedelta(hours=order.max_interruption_hours):
            self.end(f"given up after {order.max_interruption_hours} hours")
            return None
        delay = timedelta(seconds=policy.interruption_backoff_seconds(state.interruption_attempt))
        state.interruption_attempt += 1
        state.note = f"delivery interrupted since {since:%Y-%m-%d %H:%M} UTC"
        record.plan_next_action(delay)
        return delay

    def end(self, how: str = "") -> None:
        state = self.record.state
        if state.interrupted_since is None:
            return
        lasted = workflow.now() - parse_time(state.interrupted_since)
        state.interrupted_since = None
        self.record.set_phase(Phase.DELIVERING)
        self.record.event("interruption_over", how or f"delivery goes on after {minutes(lasted)}")

    async def reconcile(self, run_no: int, why: str) -> str | None:
        """Hold delivery until ops reconcile the run; returns the provider order to follow, or None when ops
        found the provider never took it."""
        record, state = self.record, self.record.state
        record.set_phase(Phase.INTERRUPTED)
        state.note = f"run {run_no} needs reconciliation by ops"
        state.awaiting_run = run_no  # before the publish: an answer may come while it is written
        record.event("needs_reconciliation", state.note, detail=why)
        record.plan_next_action(None)
        await record.publish()
        await workflow.wait_condition(lambda: self.reconciliation is not None)
        answer = self.reconciliation
        assert answer is not None
        state.note = f"run {run_no} reconciled by ops"
        record.event(
            "reconciled", f"{state.note}: {answer.reason}", answer.actor, detail=answer.provider_order_id
        )
        record.set_phase(Phase.DELIVERING)
        self.reconciliation, state.awaiting_run = None, None  # releases the update with this state
        await record.publish()
        return answer.provider_order_id
