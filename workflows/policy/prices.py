"""Per-customer prices: the rate one customer pays for one service, set by an admin as a rate of its own
or as a percentage off the catalog's rate. Intake charges by it (policy.charge_for) and freezes the charge
on the order, so a later change of price never touches an order already placed."""

from __future__ import annotations

from workflows.policy.states import Refusal

FULL_BP = 10_000  # 100 %


def customer_rate(catalog_rate_micros: int, *, rate_micros: int | None, discount_bp: int | None) -> int:
    """The rate per 1000 units the customer pays: their own rate, else the catalog's less the discount,
    rounded down to a micro-unit (a discount never costs the customer a fraction more than it says), else
    the catalog's rate. The order's charge is then rounded half up from it like every charge."""
    if rate_micros is not None:
        return rate_micros
    if discount_bp is not None:
        return catalog_rate_micros * (FULL_BP - discount_bp) // FULL_BP
    return catalog_rate_micros


def price_refusal(*, rate_micros: int | None, discount_bp: int | None) -> Refusal:
    """Why an admin's price cannot be set, or None: exactly one of a rate and a discount, a discount of
    more than 0 and at most 100 %."""
    if (rate_micros is None) == (discount_bp is None):
        return ("invalid_request", "set either a rate or a discount, not both")
    if discount_bp is not None and not 0 < discount_bp <= FULL_BP:
        return ("invalid_request", "a discount is more than 0 % and at most 100 %")
    if rate_micros is not None and rate_micros < 0:
        return ("invalid_request", "a rate is not negative")
    return None
