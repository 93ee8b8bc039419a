"""When an order acts next by itself: how often it reads a provider's status, how long it waits for a
provider that does not answer. Pure, like the policy (workflows/policy.py)."""

from __future__ import annotations


def refill_poll_seconds(floor_seconds: int, checks_done: int, *, cap: int = 600) -> int:
    """When to read a refill's status next: at the provider's floor first, then doubling up to 10 minutes,
    so a quick refill shows Completed within a minute and a slow one costs a few calls an hour."""
    return min(floor_seconds << min(checks_done, 20), max(cap, floor_seconds))


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
