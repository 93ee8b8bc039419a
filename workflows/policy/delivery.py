"""Delivery: how an order is split into runs, what a provider's answer means, and when to look again."""

from __future__ import annotations

from workflows.models import Status


def clamp_remains(remains: int, quantity: int) -> int:
    """Provider `remains` as refundable units: negative (over-delivery) counts as 0, never above quantity."""
    return min(max(remains, 0), quantity)


def remains(quantity: int, delivered: int) -> int:
    """Units not delivered, as API v2's `remains` reports them (over-delivery shows as 0)."""
    return max(quantity - delivered, 0)


def delivered_in_run(units: int, status: Status | None, remains: int | None) -> int:
    """Units a run has delivered, from the provider's status and `remains`.

    A provider that leaves `remains` out is taken at its word only for Completed; over-delivery counts as
    the units asked for.
    """
    if remains is None:
        remains = 0 if status == Status.COMPLETED else units
    return units - clamp_remains(remains, units)


def provider_gave_up(status: Status | None) -> bool:
    """A run ended by the provider without delivering it all: what is left may go to the next route.

    (Partial is not giving up: it is a shortfall the settlement judges by the tolerance.)
    """
    return status in (Status.CANCELED, Status.REFUNDED)


def run_link_fault(status: Status | None, fault_text: str | None) -> str | None:
    """The link fault a provider's status reports, or None. It counts only when the provider has ended the
    run (Canceled, Partial, Refunded): a remark beside a run still delivering does not stop the order."""
    return fault_text if status in (Status.CANCELED, Status.PARTIAL, Status.REFUNDED) else None


def plan_runs(
    quantity: int, pace_per_hour: int, *, runs: int | None = None, interval_minutes: int | None = None
) -> list[tuple[int, int]]:
    """Split an order into runs: (units, minutes after the order starts) each.

    A customer drip-feed sends `runs` runs every `interval_minutes` (the first runs take the remainder of an
    uneven split). Otherwise the order is split into hourly runs of at most `pace_per_hour` units, so no
    run delivers faster than the service's pace.
    """
    if quantity <= 0 or pace_per_hour <= 0:
        raise ValueError("quantity and pace must be positive")
    if runs:
        base, extra = divmod(quantity, runs)
        every = interval_minutes or 0
        return [(base + (1 if i < extra else 0), i * every) for i in range(runs) if base or i < extra]
    full, rest = divmod(quantity, pace_per_hour)
    plan = [(pace_per_hour, hour * 60) for hour in range(full)]
    if rest:
        plan.append((rest, full * 60))
    return plan


def run_status(*, units: int, delivered: int, sent: bool, over: bool) -> Status:
    """A drip-feed run's status as resellers read it: Pending until it is sent, In progress while it
    delivers; once the order is past it (it delivered, or the order stopped delivering) Completed, Partial,
    or Canceled when it delivered nothing (never sent, or sent and dropped)."""
    if not over:
        return Status.IN_PROGRESS if sent else Status.PENDING
    if delivered >= units:
        return Status.COMPLETED
    return Status.PARTIAL if delivered > 0 else Status.CANCELED


def follow_deadline_hours(max_interruption_hours: int) -> int:
    """How long the settlement waits for provider orders the order gave up to end: the patience the service
    gives a provider that does not answer. Past it the order settles on what was reported."""
    return max(max_interruption_hours, 1)


def interruption_backoff_seconds(attempt: int, *, first: int = 60, cap: int = 1800) -> int:
    """How long an interrupted order waits before trying the provider again: doubling, capped."""
    return min(first << min(max(attempt, 0), 20), cap)


def poll_interval_seconds(units: int, pace_per_hour: int, floor_seconds: int, checks_done: int) -> int:
    """When to read a run's status next: soon at first, then less and less often.

    The wait doubles from the provider's floor with each check, up to a quarter of the run's expected
    duration at the service's pace (and never beyond 30 minutes): a fast provider is seen finishing at once,
    a slow run costs a few calls per expected duration.
    """
    expected = units * 3600 // max(pace_per_hour, 1)
    ceiling = max(floor_seconds, min(expected // 4, 1800))
    return min(floor_seconds << min(checks_done, 20), ceiling)
