"""Intake: what an order must be for the service it is placed on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from workflows.policy.states import Refusal


def link_is_valid(link: str, pattern: str) -> bool:
    """A link is accepted when the service's pattern matches all of it."""
    return re.fullmatch(pattern, link) is not None


MAX_ORDER_UNITS = 2**31 - 1  # orders.quantity is an integer column: a drip-feed's runs x quantity stays in it


@dataclass(frozen=True)
class ServiceTerms:
    """What intake checks an order against: the service's terms as the catalog has them now."""

    service_id: int
    name: str
    link_pattern: str
    min_quantity: int
    max_quantity: int
    dripfeed: bool
    pace_per_hour: int


def intake_refusal(
    terms: ServiceTerms, *, link: str, quantity: int, runs: int | None, interval: int | None
) -> Refusal:
    """Why an order cannot be taken on these terms, or None. `quantity` is per run for a drip-feed."""
    sid = terms.service_id
    if not link_is_valid(link, terms.link_pattern):
        return ("bad_link", f"the link does not fit service {sid} ({terms.name})")
    if quantity < terms.min_quantity:
        return ("quantity_below_min", f"quantity less than minimal {terms.min_quantity}")
    if quantity > terms.max_quantity:
        return ("quantity_above_max", f"quantity more than maximum {terms.max_quantity}")
    if quantity * (runs or 1) > MAX_ORDER_UNITS:
        return ("quantity_above_max", f"quantity more than maximum {MAX_ORDER_UNITS} in all")
    if (runs is None) != (interval is None):
        return ("bad_dripfeed", "a drip-feed order needs both runs and interval")
    if runs is not None:
        if not terms.dripfeed:
            return ("dripfeed_not_allowed", f"service {sid} does not allow drip-feed")
        per_hour = dripfeed_units_per_hour(quantity, interval or 1)
        if per_hour > terms.pace_per_hour:
            return (
                "run_exceeds_pace",
                f"these runs would deliver up to {per_hour} units an hour; "
                f"service {sid} delivers at most {terms.pace_per_hour}",
            )
    return None


def dripfeed_units_per_hour(run_quantity: int, interval_minutes: int) -> int:
    """The most units a drip-feed starts within any hour: the runs that fit in 60 minutes, each in full."""
    runs_in_an_hour = -(-60 // interval_minutes)  # ceiling
    return run_quantity * runs_in_an_hour
