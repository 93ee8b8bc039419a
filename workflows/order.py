"""OrderWorkflow: one durable workflow per order, from charge to closure.

Deterministic code only: every side effect is an activity, time is `workflow.now()` and `workflow.sleep`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.projection import ProjectionActivities
    from activities.provider import NEEDS_RECONCILIATION, REJECTED, ProviderActivities
    from workflows import policy
    from workflows import search_attributes as sa
    from workflows.models import (
        CheckRun,
        OrderInput,
        OrderState,
        Progress,
        Projection,
        RouteRef,
        RunInFlight,
        RunReconciliation,
        Settlement,
        SubmitRun,
    )

# Provider trouble is ridden out with backoff retries: an outage is an interruption, not a failure.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[REJECTED, NEEDS_RECONCILIATION],
)
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


class RunAbandoned(Exception):
    """A run its route cannot deliver (refused, or never taken as ops confirmed); the next route may try."""


@workflow.defn
class OrderWorkflow:
    def __init__(self) -> None:
        self._state: OrderState | None = None
        self._awaiting_run: int | None = None  # the run ops must reconcile before delivery goes on
        self._started = datetime.min  # when run 1 was due; later runs keep their offsets from it
        self._routes: list[RouteRef] = []  # routes still willing to deliver, best first
        self._delivered = 0  # units of finished runs, and of finished parts of the run in flight
        self._reconciliation: RunReconciliation | None = None

    @workflow.query
    def state(self) -> OrderState:
        if self._state is None:
            raise ApplicationError("the order has not started yet")
        return self._state

    @workflow.update
    async def reconcile_run(self, answer: RunReconciliation) -> OrderState:
        """Ops tell what they found at the provider for a run whose submission fate was unknown.

        Answers once the order has acted on it, so the caller sees the outcome, not the question.
        """
        self._reconciliation = answer
        await workflow.wait_condition(lambda: self._reconciliation is not answer)
        return self.state()

    @reconcile_run.validator
    def _check_reconcile_run(self, answer: RunReconciliation) -> None:
        if self._awaiting_run != answer.run_no or self._reconciliation is not None:
            raise ApplicationError(f"run {answer.run_no} is not awaiting reconciliation", type="NotAwaiting")
        if not answer.actor.strip() or not answer.reason.strip():
            raise ApplicationError("a reconciliation needs who sent it and why", type="MissingReason")

    @workflow.run
    async def run(self, order: OrderInput) -> OrderState:
        plan = policy.plan_runs(
            order.quantity, order.pace_per_hour, runs=order.runs, interval_minutes=order.interval_minutes
        )
        progress = order.progress
        if progress is None:
            self._state = OrderState(
                order_id=order.order_id,
                status=policy.PENDING,
                phase=policy.QUEUED,
                quantity=order.quantity,
                runs_total=len(plan),
            )
            await self._publish()
            self._started, self._routes, self._delivered = workflow.now(), list(order.routes), 0
            first_run, in_flight = 1, None
        else:
            self._state = progress.state
            self._started = datetime.fromisoformat(progress.started_at)
            self._routes, self._delivered = list(progress.routes), progress.delivered
            first_run, in_flight = progress.next_run, progress.in_flight
            self._show_details()  # the Web UI summary does not carry over by itself

        service_failed = False
        for run_no in range(first_run, len(plan) + 1):
            units, offset_minutes = plan[run_no - 1]
            following, in_flight = in_flight, None  # a run this order had submitted before continuing as new
            wait = self._started + timedelta(minutes=offset_minutes) - workflow.now()
            if following is None and wait > timedelta(0):
                await workflow.sleep(wait)
            left = following.units if following else units
            while self._routes and left > 0:
                route = self._routes[0]
                try:
                    got, provider_status = await self._deliver_run(order, route, run_no, left, following)
                except RunAbandoned as why:
                    workflow.logger.warning("route %s gave up run %s: %s", route.provider_id, run_no, why)
                    self._routes.pop(0)
                    continue
                finally:
                    following = None
                self._delivered, left = self._delivered + got, left - got
                if not policy.provider_gave_up(provider_status):
                    break
                self._routes.pop(0)  # the next route may deliver what is left of the run
            if left > 0 and not self._routes:
                # No route can deliver: the service has completely failed for what is left.
                self._state.note = "no provider route could deliver the order"
                service_failed = True
                break
            self._state.runs_done = run_no
            await self._continue_as_new_if_suggested(order, run_no + 1, None)

        await self._settle(order, service_failed=service_failed)
        return self._state

    async def _continue_as_new_if_suggested(
        self, order: OrderInput, next_run: int, in_flight: RunInFlight | None
    ) -> None:
        """Keep the history small: a long order goes on in a fresh run of the same workflow id."""
        if not workflow.info().is_continue_as_new_suggested():
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._state is not None
        progress = Progress(
            state=self._state,
            started_at=self._started.isoformat(),
            next_run=next_run,
            delivered=self._delivered,
            routes=list(self._routes),
            in_flight=in_flight,
        )
        workflow.continue_as_new(dataclasses.replace(order, progress=progress))

    async def _deliver_run(
        self, order: OrderInput, route: RouteRef, run_no: int, units: int, following: RunInFlight | None
    ) -> tuple[int, str]:
        """Submit one run (or follow one submitted before) and poll it to its end.

        Returns the units delivered and the provider's verdict.
        """
        assert self._state is not None
        before = self._delivered
        if following is not None:
            assert following.provider_id == route.provider_id, "routes travel with the order"
            provider_order_id = following.provider_order_id
        else:
            provider_order_id = await self._submit(order, route, run_no, units)
            self._state.provider_id = route.provider_id
            self._state.status, self._state.phase = policy.IN_PROGRESS, policy.DELIVERING
            await self._publish()

        while True:
            await workflow.sleep(timedelta(seconds=route.poll_interval_seconds))
            try:
                seen = await workflow.execute_activity_method(
                    ProviderActivities.check_run,
                    CheckRun(route.provider_id, provider_order_id),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=PROVIDER_RETRY,
                )
            except ActivityError as err:
                # The provider no longer knows the order it accepted: only ops can tell what happened.
                provider_order_id = await self._reconcile(run_no, _reason(err))
                continue
            run_delivered = policy.delivered_in_run(units, seen.status, seen.remains)
            changed = (before + run_delivered, seen.raw_status, seen.start_count) != (
                self._state.delivered,
                self._state.provider_status_raw,
                self._state.start_count,
            )
            self._state.delivered = before + run_delivered
            self._state.provider_status_raw = seen.raw_status
            if self._state.start_count is None:
                self._state.start_count = seen.start_count
            if seen.status in policy.FINAL_STATUSES:
                return run_delivered, seen.status
            if changed:
                await self._publish()
            await self._continue_as_new_if_suggested(
                order, run_no, RunInFlight(run_no, route.provider_id, units, provider_order_id)
            )

    async def _submit(self, order: OrderInput, route: RouteRef, run_no: int, units: int) -> str:
        """Send the run to the route exactly once; returns the provider's order id."""
        try:
            submitted = await workflow.execute_activity_method(
                ProviderActivities.submit_run,
                SubmitRun(
                    order.order_id, run_no, order.link, units, route.provider_id, route.provider_service_id
                ),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=PROVIDER_RETRY,
            )
            return submitted.provider_order_id
        except ActivityError as err:
            if _error_type(err) != NEEDS_RECONCILIATION:
                raise RunAbandoned(_reason(err)) from err
            # The provider may hold the run: sending it anywhere else could deliver it twice.
            return await self._reconcile(run_no, _reason(err))

    async def _reconcile(self, run_no: int, why: str) -> str:
        """Hold delivery until ops reconcile the run; returns the provider order to follow."""
        assert self._state is not None
        self._state.phase = policy.INTERRUPTED
        self._state.note = f"run {run_no} needs reconciliation by ops: {why}"
        await self._publish()
        self._awaiting_run = run_no
        await workflow.wait_condition(lambda: self._reconciliation is not None)
        answer = self._reconciliation
        assert answer is not None
        self._state.note = f"run {run_no} reconciled by {answer.actor}: {answer.reason}"
        self._state.phase = policy.DELIVERING
        self._reconciliation, self._awaiting_run = None, None  # releases the update with this state
        if answer.provider_order_id is None:
            raise RunAbandoned(f"ops found the provider never took run {run_no}")
        await self._publish()
        return answer.provider_order_id

    async def _settle(self, order: OrderInput, *, service_failed: bool) -> None:
        assert self._state is not None
        delivered = self._delivered
        self._state.phase = policy.SETTLING
        await self._publish()
        status, refund = policy.settle_delivery(
            order.quantity,
            order.quantity - delivered,
            order.charge_micros,
            order.tolerance_bp,
            service_failed=service_failed,
        )
        await workflow.execute_activity_method(
            LedgerActivities.settle_order,
            Settlement(
                order_id=order.order_id,
                customer_id=order.customer_id,
                refund_micros=refund,
                refund_no=1,
                revenue_micros=order.charge_micros - refund,
                reason=f"{order.quantity - delivered} of {order.quantity} units not delivered",
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
        )
        self._state.refunded_micros = refund
        self._state.status, self._state.phase = status, policy.CLOSED
        await self._publish(finished=True)

    def _show_details(self) -> None:
        """The one-line summary ops see in the Web UI."""
        state = self._state
        assert state is not None
        workflow.set_current_details(
            f"{state.status} ({state.phase}): {state.delivered}/{state.quantity} delivered, "
            f"run {state.runs_done}/{state.runs_total}"
            + (f", refunded {policy.format_money(state.refunded_micros)}" if state.refunded_micros else "")
        )

    async def _publish(self, *, finished: bool = False) -> None:
        """Project the state into the read model, the search attributes and the Web UI summary."""
        state = self._state
        assert state is not None
        state.version += 1
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.ORDER_STATUS.value_set(state.status),
            sa.ORDER_PHASE.value_set(state.phase),
        ]
        if state.provider_id is not None:
            updates.append(sa.PROVIDER_ID.value_set(state.provider_id))
        workflow.upsert_search_attributes(updates)
        self._show_details()
        await workflow.execute_activity_method(
            ProjectionActivities.project_order,
            Projection(
                order_id=state.order_id,
                version=state.version,
                status=state.status,
                phase=state.phase,
                delivered=state.delivered,
                refunded_micros=state.refunded_micros,
                provider_id=state.provider_id,
                provider_status_raw=state.provider_status_raw,
                start_count=state.start_count,
                finished=finished,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
        )


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _reason(err: ActivityError) -> str:
    cause = err.cause
    return str(cause) if cause is not None else str(err)
