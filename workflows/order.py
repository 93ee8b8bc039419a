"""OrderWorkflow: one durable workflow per order, from charge to closure.

The order waits for a provider slot, delivers in runs (riding out interruptions, failing over between
routes), settles with the accuracy tolerance, keeps its refill window open and closes. Customers, support
and ops steer it with updates whose validators refuse at once, with a stable code and the standard text.

Deterministic code only: every side effect is an activity, time is `workflow.now()` and timers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.projection import ProjectionActivities
    from activities.provider import ProviderActivities
    from activities.slots import SlotActivities
    from workflows import policy
    from workflows import search_attributes as sa
    from workflows.errors import LINK_FAULT, NEEDS_RECONCILIATION, REJECTED
    from workflows.models import (
        CancelAnswer,
        CancelRun,
        CheckRefill,
        CheckRun,
        ClaimSlot,
        DeliveredRun,
        OpenRefill,
        OrderAction,
        OrderEvent,
        OrderInput,
        OrderState,
        Progress,
        Projection,
        ProviderUpdate,
        RefillProgress,
        RefillRequest,
        RefillTicket,
        RefundMoney,
        RefundReceipt,
        ReleaseSlot,
        RouteRef,
        RunInFlight,
        RunReconciliation,
        Settlement,
        StopRequest,
        SubmitRefill,
        SubmitRun,
        SupportRefund,
    )

# A few quick retries absorb a blip; longer trouble is an interruption the workflow rides out itself, with
# its own backoff and a visible phase, so it can count the hours and fail over.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=[REJECTED, NEEDS_RECONCILIATION, LINK_FAULT],
)
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
QUEUE_RECHECK = timedelta(minutes=5)  # a waiting order looks again even if no wake-up signal came
REFILL_POLL = timedelta(minutes=10)
REFILL_GIVE_UP = timedelta(hours=72)  # a provider that never answers about a refill: the refill errs

WORKFLOW_ACTOR = "workflow"


class RunAbandoned(Exception):
    """A run its route cannot deliver (refused, unreachable too long, or never taken as ops confirmed)."""

    def __init__(self, why: str, delivered: int = 0) -> None:
        super().__init__(why)
        self.delivered = delivered  # units the route had delivered before it was given up


def _refused(code_and_text: tuple[str, str]) -> ApplicationError:
    code, text = code_and_text
    return ApplicationError(text, type=code, non_retryable=True)


def _require_actor(actor: str, reason: str | None = None) -> None:
    if not actor.strip() or (reason is not None and not reason.strip()):
        raise _refused(("missing_reason", "say who sends this and why"))


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: OrderInput) -> None:
        # Built from the input before any message is handled: an update may arrive with the first task.
        self._order = order
        self._phase = policy.QUEUED  # the working phase; shown as `paused` while ops hold the order
        self._started = datetime.min  # when run 1 was due; later runs keep their offsets from it
        self._routes: list[RouteRef] = []  # routes still willing to deliver, best first
        self._delivered = 0  # units of finished runs, and of finished parts of the run in flight
        self._delivered_runs: list[DeliveredRun] = []
        self._in_flight: RunInFlight | None = None
        self._slot_provider: int | None = None
        self._awaiting_run: int | None = None  # the run ops must reconcile before delivery goes on
        self._reconciliation: RunReconciliation | None = None
        self._stop: StopRequest | None = None
        self._wake = False  # a message, a freed slot or a provider push: look again now
        self._interruption_attempt = 0
        self._money = asyncio.Lock()  # settlement and support refunds never compute amounts concurrently
        self._refunds: dict[str, RefundReceipt | None] = {}  # by support's key; None while in progress
        self._events: list[OrderEvent] = []  # not yet projected
        self._event_seq = 0
        self._refill_queue: list[RefillTicket] = []
        self._refill_busy = False
        self._refill_progress: list[RefillProgress] = []  # not yet projected
        self._completed_at: datetime | None = None
        self._last_refill_at: datetime | None = None
        self._deadline: datetime | None = None
        self._projected: tuple[Any, ...] = ()  # what the read model last got, to skip empty writes
        # The search attributes as last set (the start sets status and phase already).
        self._searchable: tuple[Any, ...] = (policy.PENDING, policy.QUEUED, None)
        self._plan = policy.plan_runs(
            order.quantity, order.pace_per_hour, runs=order.runs, interval_minutes=order.interval_minutes
        )
        if order.progress is None:
            self._state = OrderState(
                order_id=order.order_id,
                status=policy.PENDING,
                phase=policy.QUEUED,
                quantity=order.quantity,
                runs_total=len(self._plan),
            )
            self._started, self._routes = workflow.now(), list(order.routes)
        else:
            self._state = order.progress.state
            self._restore(order.progress)

    # ----- messages -----

    @workflow.query
    def state(self) -> OrderState:
        return self._state

    @workflow.signal
    def provider_update(self, update: ProviderUpdate) -> None:
        """A push from the provider only wakes the order; the status it acts on is always read back."""
        self._wake = True

    @workflow.signal
    def slot_freed(self) -> None:
        self._wake = True

    @workflow.update
    async def cancel(self, action: OrderAction) -> OrderState:
        """Cancel: at once while Pending (full refund); in progress only where the service allows it, by
        asking the provider first. What was not delivered is refunded when the provider confirms."""
        self._check_cancel(action)
        run = self._in_flight
        if run is not None:
            try:
                answer = await self._cancel_at_provider(run, "cancel")
            except ActivityError as err:
                raise _refused(
                    ("provider_unavailable", f"the provider did not answer: {_reason(err)}")
                ) from err
            if not answer.accepted:
                raise _refused(("cannot_cancel", answer.message or policy.CANNOT_CANCEL[1]))
            self._check_cancel(action)  # the order may have moved on while the provider answered
        self._stop_delivery(StopRequest("cancel", action.actor, action.reason), "cancel requested")
        await self._publish()
        return self.state()

    @cancel.validator
    def _validate_cancel(self, action: OrderAction) -> None:
        self._check_cancel(action)

    def _check_cancel(self, action: OrderAction) -> None:
        _require_actor(action.actor)
        refusal = policy.cancel_refusal(
            status=self._state.status,
            phase=self._state.phase,
            stopping=self._stop is not None,
            cancel_allowed=self._order.cancel_allowed,
        )
        if refusal is not None:
            raise _refused(refusal)

    @workflow.update
    async def report_link_fault(self, action: OrderAction) -> OrderState:
        """Support found the link private, deleted, renamed or invalid: delivery stops, and the refund follows
        the service's `link_fault_refund`."""
        self._check_link_fault(action)
        await self._ask_provider_to_stop("the link is broken")
        self._stop_delivery(StopRequest("link_fault", action.actor, action.reason), "link fault reported")
        await self._publish()
        return self.state()

    @report_link_fault.validator
    def _validate_link_fault(self, action: OrderAction) -> None:
        self._check_link_fault(action)

    def _check_link_fault(self, action: OrderAction) -> None:
        _require_actor(action.actor, action.reason)
        if self._stop is not None or self.state().status not in (policy.PENDING, policy.IN_PROGRESS):
            raise _refused(
                ("cannot_report_link_fault", "only an order still delivering can stop for its link")
            )

    @workflow.update
    async def pause(self, action: OrderAction) -> OrderState:
        """Ops hold the order: no new runs, no provider calls, until resumed."""
        self._check_pause(action)
        state = self.state()
        state.paused_by = action.actor
        self._set_phase(self._phase)
        self._event("paused", action.reason, action.actor)
        await self._publish()
        return state

    @pause.validator
    def _validate_pause(self, action: OrderAction) -> None:
        self._check_pause(action)

    def _check_pause(self, action: OrderAction) -> None:
        _require_actor(action.actor, action.reason)
        state = self.state()
        if state.paused_by is not None or self._stop is not None or self._phase not in policy.HOLDABLE:
            raise _refused(("cannot_pause", "only an order waiting or delivering can be paused"))

    @workflow.update
    async def resume(self, action: OrderAction) -> OrderState:
        self._check_resume(action)
        state = self.state()
        state.paused_by = None
        self._set_phase(self._phase)
        self._event("resumed", action.reason, action.actor)
        self._wake = True
        await self._publish()
        return state

    @resume.validator
    def _validate_resume(self, action: OrderAction) -> None:
        self._check_resume(action)

    def _check_resume(self, action: OrderAction) -> None:
        _require_actor(action.actor, action.reason)
        if self.state().paused_by is None:
            raise _refused(("not_paused", "the order is not paused"))

    @workflow.update
    async def refund(self, request: SupportRefund) -> RefundReceipt:
        """A support refund, by idempotency key: the same key answers with the first refund's receipt."""
        if request.idempotency_key in self._refunds:
            await workflow.wait_condition(lambda: self._refunds.get(request.idempotency_key) is not None)
            receipt = self._refunds[request.idempotency_key]
            assert receipt is not None
            return dataclasses.replace(receipt, refunded_micros=0)
        self._refunds[request.idempotency_key] = None
        order, state = self._order, self.state()
        try:
            async with self._money:
                amount = self._support_refund_amount(request)
                number = sum(1 for r in self._refunds.values() if r is not None) + 1
                await workflow.execute_activity_method(
                    LedgerActivities.refund_order,
                    RefundMoney(
                        order.order_id,
                        order.customer_id,
                        amount,
                        f"order:{order.order_id}:refund:{number}",
                        request.actor,
                        request.reason,
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=STORE_RETRY,
                    summary=f"support refund {number}",
                )
                state.refunded_micros += amount
        except BaseException:
            del self._refunds[request.idempotency_key]
            raise
        self._event("refund", f"refunded {policy.format_money(amount)}: {request.reason}", request.actor)
        if state.refunded_micros >= order.charge_micros:
            if self._phase in (policy.REFILL_WINDOW, policy.CLOSED):
                state.status = policy.REFUNDED
                self._wake = True
            elif self._stop is None:
                self._stop_delivery(
                    StopRequest("refunded", request.actor, request.reason), "refunded in full"
                )
                await self._ask_provider_to_stop("the order was refunded in full")
        receipt = RefundReceipt(amount, state.refunded_micros, state.status)
        self._refunds[request.idempotency_key] = receipt
        await self._publish()
        return receipt

    @refund.validator
    def _validate_refund(self, request: SupportRefund) -> None:
        _require_actor(request.actor, request.reason)
        if not request.idempotency_key.strip():
            raise _refused(("bad_refund", "a refund needs an idempotency key"))
        if request.idempotency_key not in self._refunds:
            self._support_refund_amount(request)

    def _support_refund_amount(self, request: SupportRefund) -> int:
        order, state = self._order, self.state()
        if self._phase == policy.SETTLING:
            raise _refused(("order_settling", "the order is settling; send the refund again in a moment"))
        try:
            amount = policy.support_refund_amount(
                amount_micros=request.amount_micros,
                units=request.units,
                charge=order.charge_micros,
                quantity=order.quantity,
                refunded=state.refunded_micros,
            )
        except ValueError as exc:
            raise _refused(("bad_refund", str(exc))) from exc
        if amount <= 0:
            raise _refused(("nothing_refundable", "nothing is left to refund on this order"))
        return amount

    @workflow.update
    async def request_refill(self, request: RefillRequest) -> RefillTicket:
        """A customer asks to restore drops inside the refill window; forwarded to the provider(s) that
        delivered and followed to its end."""
        self._check_refill(request)
        state = self.state()
        state.refills_used += 1
        refill_no = state.refills_used
        self._refill_busy = True
        self._last_refill_at = workflow.now()
        refill_id = await workflow.execute_activity_method(
            ProjectionActivities.open_refill,
            OpenRefill(self._order.order_id, refill_no, request.actor),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
            summary=f"record refill {refill_no}",
        )
        ticket = RefillTicket(refill_id, refill_no)
        self._event(
            "refill_requested", f"refill {refill_no} (id {refill_id}) {request.reason}", request.actor
        )
        self._refill_queue.append(ticket)
        return ticket

    @request_refill.validator
    def _validate_refill(self, request: RefillRequest) -> None:
        self._check_refill(request)

    def _check_refill(self, request: RefillRequest) -> None:
        _require_actor(request.actor)
        order, state, now = self._order, self.state(), workflow.now()
        since = max(filter(None, (self._completed_at, self._last_refill_at)), default=now)
        refusal = policy.refill_refusal(
            refill_days=order.refill_days,
            refill_max=order.refill_max,
            cooldown_hours=order.refill_cooldown_hours,
            status=state.status,
            in_window=self._phase == policy.REFILL_WINDOW
            and self._deadline is not None
            and now < self._deadline,
            window_over=self._deadline is not None and now >= self._deadline,
            refills_used=state.refills_used,
            refill_busy=self._refill_busy,
            hours_since_last=(now - since).total_seconds() / 3600,
        )
        if refusal is not None:
            raise _refused(refusal)

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

    # ----- the lifecycle -----

    @workflow.run
    async def run(self, order: OrderInput) -> OrderState:
        plan, progress = self._plan, order.progress
        if progress is None:
            self._event(
                "placed",
                f"{order.quantity} units of {order.service_name or f'service {order.service_id}'} "
                f"for {policy.format_money(order.charge_micros)}, in {len(plan)} run(s)",
                f"customer:{order.customer_id}",
            )
            await self._publish()
            first_run, in_flight = 1, None
        else:
            first_run, in_flight = progress.next_run, progress.in_flight
            self._show_details()  # the Web UI summary does not carry over by itself

        service_failed = await self._deliver(order, plan, first_run, in_flight)
        await self._settle(order, service_failed=service_failed)
        await self._refill_window(order)
        await workflow.wait_condition(workflow.all_handlers_finished)  # answer every message first
        self._set_phase(policy.CLOSED)
        self.state().note = ""
        self._event("closed", f"closed as {self.state().status}")
        await self._publish(finished=True)
        return self.state()

    async def _deliver(
        self, order: OrderInput, plan: list[tuple[int, int]], first_run: int, in_flight: RunInFlight | None
    ) -> bool:
        """Deliver the runs from `first_run` on; returns True when no route could deliver what was left."""
        state = self.state()
        service_failed = False
        for run_no in range(first_run, len(plan) + 1):
            units, offset_minutes = plan[run_no - 1]
            following, in_flight = in_flight, None  # a run this order had submitted before continuing as new
            if following is None:
                due = self._started + timedelta(minutes=offset_minutes)
                if due > workflow.now():
                    state.note = f"run {run_no} of {len(plan)} at {due:%Y-%m-%d %H:%M} UTC"
                    await self._publish()
                    await self._wait(
                        lambda: self._stop is not None,
                        due - workflow.now(),
                        f"wait {_minutes(due - workflow.now())} before run {run_no} of {len(plan)}",
                    )
            left = following.units if following else units
            while left > 0 and self._stop is None and self._routes:
                route = self._routes[0]
                if self._slot_provider != route.provider_id:
                    if not await self._take_slot(order, [r.provider_id for r in self._routes]):
                        break  # stopped while waiting
                    route = self._routes[0]
                try:
                    got, provider_status = await self._deliver_run(order, route, run_no, left, following)
                except RunAbandoned as why:
                    following = None
                    self._delivered, left = self._delivered + why.delivered, left - why.delivered
                    await self._drop_route(route, str(why))
                    continue
                following = None
                self._delivered, left = self._delivered + got, left - got
                if self._stop is not None or not policy.provider_gave_up(provider_status):
                    break
                await self._drop_route(route, f"the provider ended run {run_no} as {provider_status}")
            if self._stop is not None:
                break
            if left > 0 and not self._routes:
                state.note = "no provider route could deliver the order"
                self._event("service_failed", f"no route left for {left} units of run {run_no}")
                service_failed = True
                break
            state.runs_done = run_no
            await self._continue_as_new_if_suggested(order, run_no + 1, None)
        return service_failed  # the settlement frees the provider slot

    async def _take_slot(self, order: OrderInput, provider_ids: list[int]) -> bool:
        """Wait FIFO for a slot at the first of these providers with room; False when delivery was stopped."""
        state = self.state()
        while self._stop is None:
            await self._until_resumed()
            if self._stop is not None:
                break
            answer = await workflow.execute_activity_method(
                SlotActivities.claim_slot,
                ClaimSlot(order.order_id, workflow.info().workflow_id, provider_ids),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=STORE_RETRY,
                summary="ask for a provider slot",
            )
            if answer.provider_id is not None:
                self._slot_provider = answer.provider_id
                # The first route with room takes the order; the others stay behind it for failover.
                self._routes.sort(key=lambda r: r.provider_id != answer.provider_id)
                if state.queue_position is not None:
                    self._event("slot", f"provider {answer.provider_id} has room")
                state.queue_position = None
                return True
            if state.queue_position != answer.position:
                state.queue_position = answer.position
                state.note = f"waiting for a provider slot: number {answer.position} in line"
                await self._publish()
            await self._nap(QUEUE_RECHECK, "wait for a provider slot")
        return False

    async def _release_slot(self, provider_id: int) -> None:
        """Leave the provider's slot (a failover) and wake the orders that may now take it."""
        wake = await workflow.execute_activity_method(
            SlotActivities.release_slot,
            ReleaseSlot(self._order.order_id, provider_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
            summary="free the provider slot",
        )
        self._slot_provider = None
        await self._wake_waiters(wake)

    async def _wake_waiters(self, wake: list[str]) -> None:
        for workflow_id in wake:
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(OrderWorkflow.slot_freed)
            except Exception as exc:  # a waiter that ended meanwhile: nothing to wake
                workflow.logger.info("could not wake %s: %s", workflow_id, exc)

    async def _drop_route(self, route: RouteRef, why: str) -> None:
        workflow.logger.warning("route %s gave up: %s", route.provider_id, why)
        self._event("failover", f"provider {route.provider_id}: {why}")
        self._routes.remove(route)
        await self._release_slot(route.provider_id)

    async def _deliver_run(
        self, order: OrderInput, route: RouteRef, run_no: int, units: int, following: RunInFlight | None
    ) -> tuple[int, str]:
        """Submit one run (or follow one submitted before) and poll it to its end.

        Returns the units delivered and the provider's verdict ("" when delivery was stopped first).
        """
        state = self.state()
        before = self._delivered
        runs_total = state.runs_total
        if following is not None:
            assert following.provider_id == route.provider_id, "routes travel with the order"
            provider_order_id = following.provider_order_id
        else:
            submitted = await self._submit(order, route, run_no, units)
            if submitted is None:
                return 0, ""
            provider_order_id = submitted
            state.provider_id = route.provider_id
            state.status = policy.IN_PROGRESS
            self._set_phase(policy.DELIVERING)
            self._event(
                "run_submitted",
                f"run {run_no} of {runs_total}: {units} units sent to provider {route.provider_id} "
                f"(their order {provider_order_id})",
            )
        self._in_flight = RunInFlight(run_no, route.provider_id, units, provider_order_id)
        run_delivered, checks = 0, 0
        while True:
            interval = policy.poll_interval_seconds(
                units, order.pace_per_hour, route.poll_interval_seconds, checks
            )
            checks += 1
            state.note = f"run {run_no} of {runs_total} at provider {route.provider_id}"
            await self._publish_if_changed()
            await self._nap(timedelta(seconds=interval), f"check run {run_no} of {runs_total}")
            await self._until_resumed()
            try:
                seen = await workflow.execute_activity_method(
                    ProviderActivities.check_run,
                    CheckRun(route.provider_id, provider_order_id),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=PROVIDER_RETRY,
                    summary=f"status of run {run_no} of {runs_total}",
                )
            except ActivityError as err:
                if _error_type(err) == REJECTED:
                    # The provider no longer knows the order it accepted: only ops can tell what happened.
                    provider_order_id = await self._reconcile(run_no, _reason(err))
                    self._in_flight = RunInFlight(run_no, route.provider_id, units, provider_order_id)
                    continue
                if not await self._interrupted(order, route, _reason(err)):
                    self._in_flight = None
                    self._record_run(route, provider_order_id, run_delivered)
                    raise RunAbandoned(
                        f"no answer for {order.max_interruption_hours} hours", run_delivered
                    ) from err
                continue
            self._end_interruption()
            run_delivered = policy.delivered_in_run(units, seen.status, seen.remains)
            state.delivered = before + run_delivered
            state.provider_status_raw = seen.raw_status
            if state.start_count is None:
                state.start_count = seen.start_count
            ended = seen.status in policy.FINAL_STATUSES
            if seen.link_fault and self._stop is None:
                self._stop_delivery(
                    StopRequest("link_fault", f"provider:{route.provider_id}", seen.link_fault)
                )
            if ended or (self._stop is not None and self._stop.kind != "cancel"):
                # A cancel waits for the provider's confirmation; a link fault or a full refund does not.
                self._in_flight = None
                self._record_run(route, provider_order_id, run_delivered)
                self._event(
                    "run_finished",
                    f"run {run_no}: {run_delivered} of {units} delivered ({seen.raw_status})",
                    f"provider:{route.provider_id}",
                )
                return run_delivered, seen.status if ended else ""
            await self._continue_as_new_if_suggested(order, run_no, self._in_flight)

    def _record_run(self, route: RouteRef, provider_order_id: str, delivered: int) -> None:
        if delivered > 0:
            self._delivered_runs.append(DeliveredRun(route.provider_id, provider_order_id))

    async def _submit(self, order: OrderInput, route: RouteRef, run_no: int, units: int) -> str | None:
        """Send the run to the route exactly once; returns the provider's order id, or None when the
        provider refused the link (delivery then stops)."""
        while True:
            await self._until_resumed()
            if self._stop is not None:
                return None
            try:
                submitted = await workflow.execute_activity_method(
                    ProviderActivities.submit_run,
                    SubmitRun(
                        order.order_id,
                        run_no,
                        order.link,
                        units,
                        route.provider_id,
                        route.provider_service_id,
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=PROVIDER_RETRY,
                    summary=f"send run {run_no} ({units} units) to provider {route.provider_id}",
                )
                self._end_interruption()
                return submitted.provider_order_id
            except ActivityError as err:
                kind = _error_type(err)
                if kind == LINK_FAULT:
                    self._stop_delivery(
                        StopRequest("link_fault", f"provider:{route.provider_id}", _reason(err))
                    )
                    return None
                if kind == REJECTED:
                    raise RunAbandoned(_reason(err)) from err
                if kind == NEEDS_RECONCILIATION:
                    # The provider may hold the run: sending it anywhere else could deliver it twice.
                    return await self._reconcile(run_no, _reason(err))
                if not await self._interrupted(order, route, _reason(err)):
                    raise RunAbandoned(f"no answer for {order.max_interruption_hours} hours") from err

    async def _interrupted(self, order: OrderInput, route: RouteRef, why: str) -> bool:
        """The provider is not answering: wait with a capped, doubling backoff. False once the interruption
        has lasted `max_interruption_hours`: the route is then given up. Never refunds by itself."""
        state, now = self.state(), workflow.now()
        if state.interrupted_since is None:
            state.interrupted_since = now.isoformat()
            self._interruption_attempt = 0
            self._set_phase(policy.INTERRUPTED)
            self._event("interrupted", f"provider {route.provider_id}: {why}")
        since = datetime.fromisoformat(state.interrupted_since)
        if now - since >= timedelta(hours=order.max_interruption_hours):
            self._end_interruption(f"given up after {order.max_interruption_hours} hours")
            return False
        delay = timedelta(seconds=policy.interruption_backoff_seconds(self._interruption_attempt))
        self._interruption_attempt += 1
        state.note = f"provider {route.provider_id} not answering since {since:%Y-%m-%d %H:%M} UTC"
        await self._publish_if_changed()
        await self._nap(delay, f"try provider {route.provider_id} again in {_minutes(delay)}")
        return True

    def _end_interruption(self, how: str = "") -> None:
        state = self.state()
        if state.interrupted_since is None:
            return
        lasted = workflow.now() - datetime.fromisoformat(state.interrupted_since)
        state.interrupted_since = None
        self._set_phase(policy.DELIVERING)
        self._event("interruption_over", how or f"the provider answers again after {_minutes(lasted)}")

    async def _reconcile(self, run_no: int, why: str) -> str:
        """Hold delivery until ops reconcile the run; returns the provider order to follow."""
        state = self.state()
        self._set_phase(policy.INTERRUPTED)
        state.note = f"run {run_no} needs reconciliation by ops: {why}"
        self._event("needs_reconciliation", state.note)
        await self._publish()
        self._awaiting_run = run_no
        await workflow.wait_condition(lambda: self._reconciliation is not None)
        answer = self._reconciliation
        assert answer is not None
        state.note = f"run {run_no} reconciled by {answer.actor}: {answer.reason}"
        self._event("reconciled", state.note, answer.actor)
        self._set_phase(policy.DELIVERING)
        self._reconciliation, self._awaiting_run = None, None  # releases the update with this state
        if answer.provider_order_id is None:
            raise RunAbandoned(f"ops found the provider never took run {run_no}")
        await self._publish()
        return answer.provider_order_id

    async def _settle(self, order: OrderInput, *, service_failed: bool) -> None:
        state = self.state()
        async with self._money:
            self._set_phase(policy.SETTLING)  # a moment only: shown by the query, not worth a projection
            state.note = ""
            delivered = self._delivered
            status, refund, revenue = policy.final_settlement(
                quantity=order.quantity,
                delivered=delivered,
                charge=order.charge_micros,
                refunded=state.refunded_micros,
                tolerance_bp=order.tolerance_bp,
                stop_kind=self._stop.kind if self._stop is not None else None,
                link_fault_refund=order.link_fault_refund,
                service_failed=service_failed,
            )
            wake = await workflow.execute_activity_method(
                LedgerActivities.settle_order,
                Settlement(
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    refund_micros=refund,
                    refund_no=0,
                    revenue_micros=revenue,
                    reason=f"{order.quantity - delivered} of {order.quantity} units not delivered",
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=STORE_RETRY,
                summary="settle: refund the shortfall, recognise the rest, free the provider slot",
            )
            self._slot_provider = None
            await self._wake_waiters(wake)
            state.refunded_micros += refund
            state.status = status
            self._completed_at = workflow.now()
            self._event(
                "settled",
                f"{delivered} of {order.quantity} delivered: {status}, "
                f"refunded {policy.format_money(refund)}",
            )

    async def _refill_window(self, order: OrderInput) -> None:
        """Keep the order open for refills until the window ends; a refill under way runs to its end."""
        state = self.state()
        if order.refill_days <= 0 or state.status != policy.COMPLETED:
            return
        assert self._completed_at is not None
        deadline = self._deadline = self._completed_at + timedelta(days=order.refill_days)
        state.refill_deadline = deadline.isoformat()
        workflow.upsert_search_attributes([sa.REFILL_DEADLINE.value_set(deadline)])
        self._set_phase(policy.REFILL_WINDOW)
        until = f"refill window until {deadline:%Y-%m-%d %H:%M} UTC"
        state.note = until
        self._event("refill_window", until)
        await self._publish()
        while state.status != policy.REFUNDED:
            if self._refill_queue:
                await self._refill(order, self._refill_queue.pop(0))
                state.note = until
                await self._publish()
                continue
            if workflow.now() >= deadline:
                break
            await self._wait(
                lambda: bool(self._refill_queue) or state.status == policy.REFUNDED,
                deadline - workflow.now(),
                until,
            )

    async def _refill(self, order: OrderInput, ticket: RefillTicket) -> None:
        """Send the refill to every provider order that delivered, and follow each to its end."""
        state = self.state()
        targets = list(dict.fromkeys(self._delivered_runs))
        parts: dict[DeliveredRun, tuple[str | None, str]] = {}
        self._refill_status(ticket, "In progress", finished=False)
        state.note = f"refill {ticket.refill_no} under way"
        await self._publish()
        for target in targets:
            try:
                sent = await workflow.execute_activity_method(
                    ProviderActivities.submit_refill,
                    SubmitRefill(
                        order.order_id, ticket.refill_no, target.provider_id, target.provider_order_id
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=PROVIDER_RETRY,
                    summary=f"send refill {ticket.refill_no} to provider {target.provider_id}",
                )
                parts[target] = (sent.provider_refill_id, "Pending")
            except ActivityError as err:
                parts[target] = (None, "Rejected" if _error_type(err) == REJECTED else "Error")
                self._event("refill_refused", f"provider {target.provider_id}: {_reason(err)}")
        began = workflow.now()
        while any(status not in policy.REFILL_FINAL for _, status in parts.values()):
            if workflow.now() - began > REFILL_GIVE_UP:
                parts = {
                    t: (rid, s if s in policy.REFILL_FINAL else "Error") for t, (rid, s) in parts.items()
                }
                break
            await workflow.sleep(REFILL_POLL, summary=f"check refill {ticket.refill_no}")
            for target, (refill_id, status) in list(parts.items()):
                if status in policy.REFILL_FINAL or refill_id is None:
                    continue
                try:
                    seen = await workflow.execute_activity_method(
                        ProviderActivities.check_refill,
                        CheckRefill(target.provider_id, refill_id),
                        start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=PROVIDER_RETRY,
                        summary=f"status of refill {ticket.refill_no} at provider {target.provider_id}",
                    )
                except ActivityError as err:
                    workflow.logger.info("refill status unavailable: %s", _reason(err))
                    continue
                parts[target] = (refill_id, seen.status)
        outcome = policy.refill_outcome([status for _, status in parts.values()]) if parts else "Rejected"
        self._refill_status(ticket, outcome, finished=True)
        self._event("refill_finished", f"refill {ticket.refill_no}: {outcome}")
        self._refill_busy = False

    def _refill_status(self, ticket: RefillTicket, status: str, *, finished: bool) -> None:
        self._refill_progress.append(RefillProgress(ticket.refill_no, status, finished))

    # ----- helpers -----

    async def _cancel_at_provider(self, run: RunInFlight, why: str) -> CancelAnswer:
        return await workflow.execute_activity_method(
            ProviderActivities.cancel_run,
            CancelRun(self._order.order_id, run.provider_id, run.provider_order_id),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=PROVIDER_RETRY,
            summary=f"ask provider {run.provider_id} to stop run {run.run_no}: {why}",
        )

    async def _ask_provider_to_stop(self, why: str) -> None:
        """A courtesy cancel of the run at the provider when delivery stops for a reason of our own; what
        the provider answers changes nothing here."""
        run = self._in_flight
        if run is None:
            return
        try:
            await self._cancel_at_provider(run, why)
        except ActivityError as err:
            workflow.logger.warning(
                "provider %s did not stop run %s: %s", run.provider_id, run.run_no, _reason(err)
            )

    def _stop_delivery(self, stop: StopRequest, message: str | None = None) -> None:
        self._stop = stop
        self._wake = True
        said = f"{message}: {stop.reason}" if message and stop.reason else message or stop.reason
        self._event(stop.kind, said, stop.actor)
        if stop.kind == "link_fault":
            self.state().link_fault = stop.reason

    def _set_phase(self, phase: str) -> None:
        """Set the working phase; while ops hold the order it shows as paused."""
        self._phase = phase
        state = self.state()
        held = state.paused_by is not None and phase in policy.HOLDABLE
        state.phase = policy.PAUSED if held else phase

    async def _until_resumed(self) -> None:
        if self.state().paused_by is not None:
            await workflow.wait_condition(lambda: self.state().paused_by is None or self._stop is not None)

    async def _nap(self, within: timedelta, summary: str) -> None:
        """Wait `within`, or less when something wakes the order (a message, a freed slot, a push).

        The wake-up is consumed after the wait, never before it: one that came while the order was busy
        (in an activity) still cuts the next wait short instead of being lost.
        """
        await self._wait(lambda: self._wake, within, summary)
        self._wake = False

    async def _wait(self, done: Callable[[], bool], within: timedelta, summary: str) -> bool:
        """Wait until `done()`, at most `within`; True when `done()` came first."""
        if within <= timedelta(0):
            return done()
        try:
            await workflow.wait_condition(done, timeout=within, timeout_summary=summary)
            return True
        except TimeoutError:
            return False

    def _event(self, kind: str, message: str, actor: str = WORKFLOW_ACTOR) -> None:
        self._event_seq += 1
        self._events.append(OrderEvent(self._event_seq, workflow.now().isoformat(), kind, actor, message))

    def _restore(self, progress: Progress) -> None:
        self._phase = progress.state.phase if progress.state.phase != policy.PAUSED else policy.DELIVERING
        self._started = datetime.fromisoformat(progress.started_at)
        self._routes, self._delivered = list(progress.routes), progress.delivered
        self._slot_provider = progress.slot_provider_id
        self._delivered_runs = list(progress.delivered_runs)
        self._refunds = dict(progress.refunds)
        self._stop = progress.stop
        self._event_seq = progress.event_seq

    async def _continue_as_new_if_suggested(
        self, order: OrderInput, next_run: int, in_flight: RunInFlight | None
    ) -> None:
        """Keep the history small: a long order goes on in a fresh run of the same workflow id."""
        if not workflow.info().is_continue_as_new_suggested():
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._publish()  # timeline events still pending go out with this run
        progress = Progress(
            state=self.state(),
            started_at=self._started.isoformat(),
            next_run=next_run,
            delivered=self._delivered,
            routes=list(self._routes),
            in_flight=in_flight,
            slot_provider_id=self._slot_provider,
            delivered_runs=list(self._delivered_runs),
            refunds={k: v for k, v in self._refunds.items() if v is not None},
            stop=self._stop,
            event_seq=self._event_seq,
        )
        workflow.continue_as_new(dataclasses.replace(order, progress=progress))

    def _show_details(self) -> None:
        """The summary ops see in the Web UI: where the order is and what comes next."""
        state = self.state()
        lines = [
            f"**{state.status}** ({state.phase}): {state.delivered} of {state.quantity} delivered, "
            f"run {state.runs_done} of {state.runs_total}"
        ]
        if state.refunded_micros:
            lines.append(f"refunded {policy.format_money(state.refunded_micros)}")
        if state.paused_by:
            lines.append(f"paused by {state.paused_by}")
        if state.note:
            lines.append(f"next: {state.note}")
        workflow.set_current_details("\n\n".join(lines))

    async def _publish_if_changed(self) -> None:
        if self._events or self._refill_progress or self._projected != self._projection_key():
            await self._publish()

    def _projection_key(self) -> tuple[Any, ...]:
        s = self.state()
        return (
            s.status,
            s.phase,
            s.delivered,
            s.refunded_micros,
            s.provider_id,
            s.provider_status_raw,
            s.note,
        )

    async def _publish(self, *, finished: bool = False) -> None:
        """Project the state into the read model, the search attributes and the Web UI summary."""
        state = self.state()
        state.version += 1
        searchable = (state.status, state.phase, state.provider_id)
        if searchable != self._searchable:  # each upsert is a history event: only when something changed
            updates: list[SearchAttributeUpdate[Any]] = [
                sa.ORDER_STATUS.value_set(state.status),
                sa.ORDER_PHASE.value_set(state.phase),
            ]
            if state.provider_id is not None:
                updates.append(sa.PROVIDER_ID.value_set(state.provider_id))
            workflow.upsert_search_attributes(updates)
            self._searchable = searchable
        self._show_details()
        events, self._events = self._events, []
        refills, self._refill_progress = self._refill_progress, []
        self._projected = self._projection_key()
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
                note=state.note,
                refill_deadline=state.refill_deadline,
                events=events,
                refills=refills,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
            summary=f"record {state.status} ({state.phase})",
        )


def _minutes(span: timedelta) -> str:
    minutes = max(int(span.total_seconds() // 60), 0)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause) if cause is not None else str(err)
