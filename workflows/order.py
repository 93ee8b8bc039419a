"""OrderWorkflow: one durable workflow per order, from charge to closure.

The skeleton: the order is placed (charged at intake), delivered (workflows/delivery.py), settled with the
accuracy tolerance (workflows/money.py), kept open for refills during the service's window
(workflows/refills.py) and closed. Customers, support and ops steer it with updates whose validators refuse
at once, with a stable code and the standard text, and write nothing.

Deterministic code only: every side effect is an activity (workflows/steps.py), time is `workflow.now()`
and timers. The order's whole state is one object (`OrderState`), handed whole to continue-as-new.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import policy
from workflows.delivery import Delivery
from workflows.errors import refused
from workflows.models import (
    OrderAction,
    OrderInput,
    OrderState,
    Phase,
    ProviderUpdate,
    RefillRequest,
    RefillTicket,
    RefundReceipt,
    RunReconciliation,
    Status,
    StopKind,
    StopRequest,
    SupportRefund,
)
from workflows.money import Money
from workflows.record import OrderRecord, reason
from workflows.refills import Refills


def _refuse(refusal: policy.Refusal) -> None:
    """A validator's verdict: refused with the rule's stable code and text, or nothing."""
    if refusal is not None:
        raise refused(*refusal)


def _new_state(order: OrderInput, runs_total: int) -> OrderState:
    return OrderState(
        order_id=order.order_id,
        status=Status.PENDING,
        phase=Phase.QUEUED,
        quantity=order.quantity,
        runs_total=runs_total,
        working_phase=Phase.QUEUED,
        routes=list(order.routes),
    )


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: OrderInput) -> None:
        # Built from the input before any message is handled: an update may arrive with the first task.
        plan_size = len(
            policy.plan_runs(
                order.quantity, order.pace_per_hour, runs=order.runs, interval_minutes=order.interval_minutes
            )
        )
        state = order.state if order.state is not None else _new_state(order, plan_size)
        self._record = OrderRecord(order, state)
        self._delivery = Delivery(self._record)
        self._money = Money(self._record)
        self._refills = Refills(self._record)

    @property
    def _state(self) -> OrderState:
        return self._record.state

    # ----- the lifecycle

    @workflow.run
    async def run(self, order: OrderInput) -> OrderState:
        record, state = self._record, self._state
        if order.state is None:
            # The run's start as history records it: the first clock reading of a workflow task can differ
            # between live and replay (seen when a first task was split), the start event cannot.
            state.started_at = workflow.info().start_time.isoformat()
            record.event(
                "placed",
                f"{order.quantity} units of {order.service_name or f'service {order.service_id}'} "
                f"for {policy.format_money(order.charge_micros)}, in {state.runs_total} run(s)",
                f"customer:{order.customer_id}",
            )  # written with the first step (the slot claim), not on its own
        else:
            record.show_details()  # the Web UI summary does not carry over by itself
        if state.settled_at is None:
            await self._delivery.run()
            await self._money.settle(then=self._after_settlement)
        await self._refills.window()
        await workflow.wait_condition(workflow.all_handlers_finished)  # answer every message first
        if state.working_phase != Phase.CLOSED:
            self._close()
        if record.changed():
            await record.publish(finished=True)
        record.sync_search_attributes()
        return state

    def _after_settlement(self) -> None:
        if self._refills.opens():
            self._refills.open_window()
        else:
            self._close()

    def _close(self) -> None:
        self._record.set_phase(Phase.CLOSED)
        self._state.note = ""
        self._record.plan_next_action(None)
        self._record.event("closed", f"closed as {self._state.status}")

    # ----- reading and waking

    @workflow.query
    def state(self) -> OrderState:
        return self._state

    @workflow.signal
    def provider_update(self, update: ProviderUpdate) -> None:
        """A push from the provider only wakes the order; the status it acts on is always read back."""
        self._record.wake = True

    @workflow.signal
    def slot_freed(self) -> None:
        self._record.wake = True

    # ----- cancel and link faults

    @workflow.update
    async def cancel(self, action: OrderAction) -> OrderState:
        """Cancel: at once while Pending (full refund); in progress only where the service allows it, by
        asking the provider first. What was not delivered is refunded once the provider has ended it."""
        self._check_cancel(action)
        po = self._delivery.in_flight
        if po is not None:
            try:
                answer = await self._delivery.cancel_at_provider(po, "cancel")
            except ActivityError as err:
                raise refused("provider_unavailable", f"the provider did not answer: {reason(err)}") from err
            if not answer.accepted:
                raise refused("cannot_cancel", policy.CANNOT_CANCEL[1])
            self._check_cancel(action)  # the order may have moved on while the provider answered
        self._delivery.stop(StopRequest(StopKind.CANCEL, action.actor, action.reason), "cancel requested")
        await self._record.publish()
        return self._state

    @cancel.validator
    def _check_cancel(self, action: OrderAction) -> None:
        s = self._state
        _refuse(policy.words_refusal(action.actor, None, action.reason))
        _refuse(
            policy.cancel_refusal(
                status=s.status,
                phase=s.working_phase,
                stopping=s.stop is not None,
                cancel_allowed=self._record.order.cancel_allowed,
            )
        )

    @workflow.update
    async def report_link_fault(self, action: OrderAction) -> OrderState:
        """Support found the link private, deleted, renamed or invalid: delivery stops (the provider is
        asked to stop too), and the refund follows the service's `link_fault_refund`."""
        self._check_link_fault(action)
        self._delivery.stop(
            StopRequest(StopKind.LINK_FAULT, action.actor, action.reason), "link fault reported"
        )
        await self._record.publish()
        return self._state

    @report_link_fault.validator
    def _check_link_fault(self, action: OrderAction) -> None:
        _refuse(policy.words_refusal(action.actor, action.reason))
        s = self._state
        _refuse(
            policy.link_fault_refusal(status=s.status, phase=s.working_phase, stopping=s.stop is not None)
        )

    # ----- ops: pause, resume, reconcile, send on

    @workflow.update
    async def pause(self, action: OrderAction) -> OrderState:
        """Ops hold the order: no new run is sent and no slot taken until resumed. A run already at the
        provider goes on there (API v2 cannot hold it) and is still followed."""
        self._check_pause(action)
        self._state.paused_by = action.actor
        self._record.set_phase(self._state.working_phase)
        self._record.event("paused", action.reason, action.actor)
        await self._record.publish()
        return self._state

    @pause.validator
    def _check_pause(self, action: OrderAction) -> None:
        s = self._state
        _refuse(policy.words_refusal(action.actor, action.reason))
        _refuse(
            policy.pause_refusal(
                paused=s.paused_by is not None, stopping=s.stop is not None, phase=s.working_phase
            )
        )

    @workflow.update
    async def resume(self, action: OrderAction) -> OrderState:
        self._check_resume(action)
        self._state.paused_by = None
        self._record.set_phase(self._state.working_phase)
        self._record.event("resumed", action.reason, action.actor)
        self._record.wake = True
        await self._record.publish()
        return self._state

    @resume.validator
    def _check_resume(self, action: OrderAction) -> None:
        _refuse(policy.words_refusal(action.actor, action.reason))
        _refuse(policy.resume_refusal(paused=self._state.paused_by is not None))

    @workflow.update
    async def reconcile_run(self, answer: RunReconciliation) -> OrderState:
        """Ops tell what they found at the provider for a run whose submission fate was unknown.

        Answers once the order has acted on it, so the caller sees the outcome, not the question.
        """
        self._delivery.interruptions.reconciliation = answer
        await workflow.wait_condition(lambda: self._delivery.interruptions.reconciliation is not answer)
        return self._state

    @reconcile_run.validator
    def _check_reconcile_run(self, answer: RunReconciliation) -> None:
        _refuse(policy.words_refusal(answer.actor, answer.reason, answer.provider_order_id or ""))
        _refuse(
            policy.reconcile_refusal(
                awaiting_run=self._state.awaiting_run,
                run_no=answer.run_no,
                answered=self._delivery.interruptions.reconciliation is not None,
            )
        )

    @workflow.update
    async def retry(self, action: OrderAction) -> OrderState:
        """Ops fixed what made a step fail for good: the order runs the step again (phase needs_attention)."""
        self._check_retry(action)
        self._record.event("sent_on", action.reason, action.actor)
        self._record.retry_asked = True
        return self._state

    @retry.validator
    def _check_retry(self, action: OrderAction) -> None:
        _refuse(policy.words_refusal(action.actor, action.reason))
        _refuse(policy.retry_refusal(needs_attention=self._state.attention is not None))

    # ----- support refunds

    @workflow.update
    async def refund(self, request: SupportRefund) -> RefundReceipt:
        """A support refund, by idempotency key: the same key answers with the first refund's receipt."""
        receipt = await self._money.refund(request)
        state = self._state
        if receipt.refunded_micros and state.refunded_micros >= self._record.order.charge_micros:
            if state.settled_at is not None:
                state.status = Status.REFUNDED
                self._record.wake = True
            elif state.stop is None:
                self._delivery.stop(
                    StopRequest(StopKind.REFUNDED, request.actor, request.reason), "refunded in full"
                )
            receipt = RefundReceipt(
                receipt.refunded_micros, receipt.total_refunded_micros, state.status, receipt.refunded_units
            )
        await self._record.publish()
        return receipt

    @refund.validator
    def _check_refund(self, request: SupportRefund) -> None:
        _refuse(policy.words_refusal(request.actor, request.reason))
        _refuse(policy.refund_key_refusal(request.idempotency_key))
        self._money.check_refund(request)

    # ----- refills

    @workflow.update
    async def request_refill(self, request: RefillRequest) -> RefillTicket:
        """A customer asks to restore drops inside the refill window; forwarded to the provider order(s)
        that delivered and followed to its end."""
        return await self._refills.request(request)

    @request_refill.validator
    def _check_refill(self, request: RefillRequest) -> None:
        _refuse(policy.words_refusal(request.actor, None, request.reason))
        self._refills.check(request)
