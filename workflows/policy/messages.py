"""The messages an order takes (refill, cancel, link fault, pause, resume, retry, reconcile, refund): when
each must be refused, with a stable code and the text (API v2's standard text where it has one)."""

from __future__ import annotations

from workflows.models import Phase, RefillStatus, Status
from workflows.policy.states import DELIVERY_OVER, HOLDABLE, Refusal
from workflows.text import text_problem

# Refill request refusals: (stable code, text). API v2's standard texts where it has one.
REFILL_DISABLED = ("refill_disabled", "Refill is disabled for this service")
NOT_COMPLETED = ("not_completed", "The order is not completed")
REFILL_WINDOW_CLOSED = ("refill_window_closed", "The refill window of this order has closed")
REFILL_IN_PROGRESS = ("refill_in_progress", "A refill of this order is already in progress")
REFILL_LIMIT = ("refill_limit", "This order has no refills left")
CANNOT_CANCEL = ("cannot_cancel", "The order cannot be canceled")


def refill_too_soon(cooldown_hours: int) -> tuple[str, str]:
    return (
        "refill_too_soon",
        f"The order was completed or refill was requested less than {cooldown_hours} hours ago",
    )


def refill_refusal(
    *,
    refill_days: int,
    refill_max: int,
    cooldown_hours: int,
    status: Status,
    in_window: bool,
    window_over: bool,
    refills_used: int,
    refill_busy: bool,
    hours_since_last: float,
) -> tuple[str, str] | None:
    """Why a customer's refill request must be refused, or None when it may go to the provider.

    The cooldown counts from completion and from the last request; `refill_max` 0 means no limit.
    """
    if refill_days <= 0:
        return REFILL_DISABLED
    if status != Status.COMPLETED or not (in_window or window_over):
        return NOT_COMPLETED
    if window_over:
        return REFILL_WINDOW_CLOSED
    if refill_busy:
        return REFILL_IN_PROGRESS
    if refill_max > 0 and refills_used >= refill_max:
        return REFILL_LIMIT
    if hours_since_last < cooldown_hours:
        return refill_too_soon(cooldown_hours)
    return None


def refill_outcome(part_statuses: list[RefillStatus]) -> RefillStatus:
    """One refill may go to several provider orders (one per delivering run); its status sums them up."""
    if all(s == RefillStatus.COMPLETED for s in part_statuses):
        return RefillStatus.COMPLETED
    if all(s == RefillStatus.REJECTED for s in part_statuses):
        return RefillStatus.REJECTED
    return RefillStatus.ERROR if RefillStatus.ERROR in part_statuses else RefillStatus.COMPLETED


MISSING_REASON = ("missing_reason", "say who sends this and why")


def words_refusal(actor: str, reason: str | None = None, *more: str) -> Refusal:
    """Every message says who sends it (and, where asked, why), in text the back office can keep."""
    if not actor.strip() or (reason is not None and not reason.strip()):
        return MISSING_REASON
    for words in (actor, reason or "", *more):
        problem = text_problem(words)
        if problem is not None:
            return ("bad_text", f"the text cannot be accepted: {problem}")
    return None


def link_fault_refusal(*, status: Status, phase: Phase, stopping: bool) -> Refusal:
    """Support can stop an order for its link only while it still delivers (or waits to)."""
    ended = phase in DELIVERY_OVER
    if stopping or ended or status not in (Status.PENDING, Status.IN_PROGRESS):
        return ("cannot_report_link_fault", "only an order still delivering can stop for its link")
    return None


def pause_refusal(*, paused: bool, stopping: bool, phase: Phase) -> Refusal:
    if paused or stopping or phase not in HOLDABLE:
        return ("cannot_pause", "only an order waiting or delivering can be paused")
    return None


def resume_refusal(*, paused: bool) -> Refusal:
    return None if paused else ("not_paused", "the order is not paused")


def retry_refusal(*, needs_attention: bool) -> Refusal:
    return None if needs_attention else ("not_needing_attention", "the order does not need attention")


def reconcile_refusal(*, awaiting_run: int | None, run_no: int, answered: bool) -> Refusal:
    if awaiting_run != run_no or answered:
        return ("not_awaiting", f"run {run_no} is not awaiting reconciliation")
    return None


def refund_key_refusal(key: str) -> Refusal:
    if not key.strip() or text_problem(key) is not None:
        return ("bad_refund", "a refund needs an idempotency key")
    return None


def cancel_refusal(*, status: Status, phase: Phase, stopping: bool, cancel_allowed: bool) -> Refusal:
    """Why a cancel must be refused, or None: a Pending order always cancels; one in progress only where
    the service allows it; once delivery has ended (or is already stopping) never."""
    if stopping or phase in DELIVERY_OVER:
        return CANNOT_CANCEL
    if status != Status.PENDING and not cancel_allowed:
        return CANNOT_CANCEL
    return None


def ended_order_refusal(
    message: str, *, status: Status, refill_days: int, cancel_allowed: bool, run_no: int = 0
) -> Refusal:
    """What an order whose workflow has ended answers a message: the same rules as while it ran, for its
    service and its final status (so API v2 clients get the standard texts they match on). A support refund
    is not refused here: it is paid by store/ended.py."""
    closed = Phase.CLOSED
    if message == "request_refill":
        return refill_refusal(
            refill_days=refill_days,
            refill_max=0,
            cooldown_hours=0,
            status=status,
            in_window=False,
            window_over=True,
            refills_used=0,
            refill_busy=False,
            hours_since_last=0.0,
        )
    if message == "cancel":
        return cancel_refusal(status=status, phase=closed, stopping=False, cancel_allowed=cancel_allowed)
    if message == "report_link_fault":
        return link_fault_refusal(status=status, phase=closed, stopping=False)
    if message == "pause":
        return pause_refusal(paused=False, stopping=False, phase=closed)
    if message == "resume":
        return resume_refusal(paused=False)
    if message == "retry":
        return retry_refusal(needs_attention=False)
    if message == "reconcile_run":
        return reconcile_refusal(awaiting_run=None, run_no=run_no, answered=False)
    return ("order_closed", "the order has ended")


def refill_poll_seconds(floor_seconds: int, checks_done: int, *, cap: int = 600) -> int:
    """When to read a refill's status next: at the provider's floor first, then doubling up to 10 minutes,
    so a quick refill shows Completed within a minute and a slow one costs a few calls an hour."""
    return min(floor_seconds << min(checks_done, 20), max(cap, floor_seconds))


def refill_counts(outcome: RefillStatus) -> bool:
    """A refill the provider rejected or erred on does not use up one of the customer's refills."""
    return outcome not in (RefillStatus.REJECTED, RefillStatus.ERROR)
