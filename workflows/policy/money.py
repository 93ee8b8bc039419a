"""Money math: charges, refunds by units, the settlement of delivery, support refunds. Integer micro-units
(1e-6 of the currency); nothing here touches a float."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

from workflows.models import Status, StopKind
from workflows.policy.delivery import clamp_remains
from workflows.policy.states import MICROS


def charge_for(quantity: int, rate_micros_per_1000: int) -> int:
    """What an order costs: quantity * rate / 1000, rounded half up to a micro-unit."""
    if quantity < 0 or rate_micros_per_1000 < 0:
        raise ValueError("quantity and rate must not be negative")
    return (quantity * rate_micros_per_1000 * 2 + 1000) // 2000


def refund_for_shortfall(shortfall: int, charge: int, quantity: int) -> int:
    """The refund for `shortfall` undelivered units: floor(shortfall * charge / quantity).

    Rounded down, so the refunds of one order can never add up to more than its charge.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    shortfall = min(max(shortfall, 0), quantity)
    return shortfall * charge // quantity


def within_tolerance(shortfall: int, quantity: int, tolerance_bp: int) -> bool:
    """A shortfall of at most tolerance (basis points of the quantity) is normal variation, not a failure."""
    return shortfall * 10_000 <= quantity * tolerance_bp


def format_money(micros: int) -> str:
    """Micro-units as an exact decimal string with 6 decimals ("0.278190")."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    return f"{sign}{whole}.{frac:06d}"


def parse_money(text: str) -> int:
    """A decimal string ("12.5") as micro-units; refuses more than 6 decimals instead of rounding money,
    and digits other than ASCII 0-9 (`Decimal` would read Arabic-Indic or full-width digits)."""
    if not isinstance(text, str) or not text.strip().lstrip("+-").replace(".", "", 1).isascii():
        raise ValueError(f"not a decimal amount: {text!r}")
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise ValueError(f"not a decimal amount: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a decimal amount: {text!r}")
    micros = value * MICROS
    if micros != micros.to_integral_value(rounding=ROUND_DOWN):
        raise ValueError(f"more than 6 decimals: {text!r}")
    return int(micros)


def parse_percent_bp(text: str) -> int:
    """A percentage ("2.5") as basis points (250)."""
    value = Decimal(str(text)) * 100
    if value != value.to_integral_value() or not 0 <= value <= 10_000:
        raise ValueError(f"not a percentage with at most 2 decimals: {text!r}")
    return int(value)


def refundable_units(
    *,
    quantity: int,
    delivered: int,
    tolerance_bp: int,
    stop_kind: StopKind | None,
    link_fault_refund: str,
    service_failed: bool,
) -> int:
    """The undelivered units the policy refunds once delivery has ended, however it ended.

    A delivery that ran its course is judged by the tolerance (a shortfall within it is normal variation);
    when the service failed completely the tolerance does not apply. A cancel refunds all that was not
    delivered; a link fault only where the service's `link_fault_refund` says `remaining`. An order support
    refunded in full has nothing left to refund.
    """
    shortfall = clamp_remains(quantity - delivered, quantity)
    if stop_kind == StopKind.REFUNDED:
        return 0
    if stop_kind == StopKind.CANCEL or (
        stop_kind == StopKind.LINK_FAULT and link_fault_refund == "remaining"
    ):
        return shortfall
    if stop_kind == StopKind.LINK_FAULT:
        return 0
    if not service_failed and within_tolerance(shortfall, quantity, tolerance_bp):
        return 0
    return shortfall


def final_status(*, quantity: int, delivered: int, refund_units: int, stop_kind: StopKind | None) -> Status:
    """What the customer sees once delivery has ended: Completed, Partial, Canceled or Refunded."""
    if stop_kind == StopKind.REFUNDED:
        return Status.REFUNDED
    if delivered == 0 and (stop_kind is not None or refund_units > 0):
        return Status.CANCELED
    if stop_kind is not None:
        return Status.COMPLETED if delivered >= quantity else Status.PARTIAL
    return Status.PARTIAL if refund_units > 0 else Status.COMPLETED


def price_of_units(units: int, charge: int, quantity: int) -> int:
    """The money `units` refunded units are worth. Refunds by units always move the difference between
    the worth of all units refunded after and before, so rounding never drifts: n refunds of one unit each
    move exactly what one refund of n units would."""
    return refund_for_shortfall(units, charge, quantity)


def final_settlement(
    *,
    quantity: int,
    delivered: int,
    charge: int,
    refunded: int,
    refunded_units: int,
    tolerance_bp: int,
    stop_kind: StopKind | None,
    link_fault_refund: str,
    service_failed: bool,
) -> tuple[Status, int, int, int]:
    """(status, refund, units it pays for, revenue) when delivery has ended, however it ended.

    One accounting for units: units support already refunded count against the shortfall, so no unit is
    refunded twice; refunds by amount are goodwill on top. The order never pays out more than its charge,
    and what is left is revenue.
    """
    owed_units = refundable_units(
        quantity=quantity,
        delivered=delivered,
        tolerance_bp=tolerance_bp,
        stop_kind=stop_kind,
        link_fault_refund=link_fault_refund,
        service_failed=service_failed,
    )
    new_units = max(owed_units - refunded_units, 0)
    worth = price_of_units(refunded_units + new_units, charge, quantity)
    refund = worth - price_of_units(refunded_units, charge, quantity)
    refund = max(min(refund, charge - refunded), 0)
    status = final_status(
        quantity=quantity, delivered=delivered, refund_units=owed_units, stop_kind=stop_kind
    )
    return status, refund, new_units, charge - refunded - refund


def support_refund(
    *,
    amount_micros: int | None,
    units: int | None,
    charge: int,
    quantity: int,
    refunded: int,
    refunded_units: int,
) -> tuple[int, int]:
    """(money, units) a support refund moves: an amount (goodwill), or `units` priced as a shortfall and
    marked refunded, so the settlement will not refund them again. Capped at the units not yet refunded and
    at what is still refundable. Raises ValueError for a malformed request."""
    if (amount_micros is None) == (units is None):
        raise ValueError("give either an amount or a number of units")
    left = max(charge - refunded, 0)
    if amount_micros is not None:
        if amount_micros <= 0:
            raise ValueError("the amount must be positive")
        return min(amount_micros, left), 0
    assert units is not None
    if units <= 0:
        raise ValueError("the number of units must be positive")
    units = min(units, quantity - refunded_units)
    worth = price_of_units(refunded_units + units, charge, quantity)
    money = worth - price_of_units(refunded_units, charge, quantity)
    return min(money, left), units
