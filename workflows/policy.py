"""Pure rules and money math of the panel's refund and cancellation policy.

No I/O and no clock: the workflow and the API both call these, and tests prove them directly.
Money is integer micro-units (1e-6 of the currency); nothing here touches a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workflows.models import OrderInput, OrderParameters, Phase, RefillStatus, ServiceType, Status, StopKind
from workflows.text import PARAMETERS

Refusal = tuple[str, str] | None  # (stable code, text) when a request must be refused

STATUSES = tuple(Status)
FINAL_STATUSES = frozenset({Status.COMPLETED, Status.PARTIAL, Status.CANCELED, Status.REFUNDED})
PHASES = tuple(Phase)
HOLDABLE = (Phase.QUEUED, Phase.DELIVERING, Phase.INTERRUPTED)  # phases ops may pause
IN_FLIGHT = (*HOLDABLE, Phase.PAUSED)  # phases in which an order is at a provider or waiting for one

# Refill statuses that end a refill.
REFILL_FINAL = frozenset({RefillStatus.COMPLETED, RefillStatus.REJECTED, RefillStatus.ERROR})


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


def clamp_remains(remains: int, quantity: int) -> int:
    """Provider `remains` as refundable units: negative (over-delivery) counts as 0, never above quantity."""
    return min(max(remains, 0), quantity)


def remains(quantity: int, delivered: int) -> int:
    """Units not delivered, as API v2's `remains` reports them (over-delivery shows as 0)."""
    return max(quantity - delivered, 0)


def delivered_in_run(units: int, status: Status | None, remains: int | None) -> int:
    """Units a run has delivered, from the provider's status and `remains`.

    A provider that leaves `remains` out is taken at its word only for Completed; over-delivery counts as
    the units asked for. So a run without `remains` is all or nothing (a package's rule, for every type).
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


def within_tolerance(shortfall: int, quantity: int, tolerance_bp: int) -> bool:
    """A shortfall of at most tolerance (basis points of the quantity) is normal variation, not a failure."""
    return shortfall * 10_000 <= quantity * tolerance_bp


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
    kind: ServiceType = ServiceType.DEFAULT


# ---------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class TypeRule:
    """How orders of one service type are taken, counted, priced, delivered and settled. `counted_by`:
    "quantity" (the customer says how many), a list parameter (its lines are the quantity), or None (a
    package: one order of the service's `max` units)."""

    needs: tuple[str, ...] = ()  # the type's parameters an order must carry (the link always)
    counted_by: str | None = "quantity"
    flat: bool = False  # one price per order (the service's rate) instead of rate x quantity / 1000
    dripfeed: bool = False  # a customer drip-feed (runs, interval) is for Default only
    orderable: bool = True

    @property
    def splittable(self) -> bool:
        """Only a counted quantity goes in several provider orders (paced runs, a failover's rest); lines
        and packages go whole, and the provider paces them."""
        return self.counted_by == "quantity"

    @property
    def tolerance(self) -> bool:
        """The accuracy tolerance is for counts; each of the customer's own lines is delivered or not."""
        return self.counted_by is None or self.splittable


TYPE_RULES: dict[ServiceType, TypeRule] = {
    ServiceType.DEFAULT: TypeRule(dripfeed=True),
    ServiceType.PACKAGE: TypeRule(counted_by=None, flat=True),
    ServiceType.CUSTOM_COMMENTS: TypeRule(("comments",), counted_by="comments"),
    ServiceType.CUSTOM_COMMENTS_PACKAGE: TypeRule(("comments",), counted_by="comments", flat=True),
    ServiceType.MENTIONS: TypeRule(("usernames",)),
    ServiceType.MENTIONS_WITH_HASHTAGS: TypeRule(("usernames", "hashtags")),
    ServiceType.MENTIONS_CUSTOM_LIST: TypeRule(("usernames",), counted_by="usernames"),
    ServiceType.MENTIONS_HASHTAG: TypeRule(("hashtag",)),
    ServiceType.MENTIONS_USER_FOLLOWERS: TypeRule(("username",)),
    ServiceType.MENTIONS_MEDIA_LIKERS: TypeRule(("media",)),
    ServiceType.COMMENT_LIKES: TypeRule(("username",)),
    ServiceType.COMMENT_REPLIES: TypeRule(("username", "comments"), counted_by="comments"),
    ServiceType.POLL: TypeRule(("answer_number",)),
    ServiceType.SEO: TypeRule(("keywords",)),
    ServiceType.SUBSCRIPTIONS: TypeRule(orderable=False),
}


@dataclass(frozen=True)
class TypedOrder:
    """An order as its type takes it: the quantity (per run for a drip-feed) and what goes upstream."""

    quantity: int
    parameters: OrderParameters


def typed_order(
    terms: ServiceTerms, *, quantity: int | None, parameters: OrderParameters, strict: bool
) -> TypedOrder | tuple[str, str]:
    """The order's quantity and parameters by its service's type, or why they cannot be taken.

    The type's parameters must all be there. A type counted by lines takes its quantity from them, a
    package from the service (its `max` units). `strict` (REST) refuses a parameter the type does not take
    and a quantity that is not the count; otherwise (API v2, liberal) both are ignored and never forwarded.
    """
    kind, rule = terms.kind, TYPE_RULES[terms.kind]
    named = f"service {terms.service_id} ({kind})"
    if not rule.orderable:
        return ("type_not_orderable", f"{named} is a subscription: subscriptions are not taken yet")
    given = [name for name in PARAMETERS if getattr(parameters, name) not in ((), None)]
    missing = [name for name in rule.needs if name not in given]
    if rule.counted_by == "quantity" and quantity is None:
        missing.append("quantity")
    if missing:
        return ("missing_parameter", f"{named} needs {' and '.join(missing)}")
    extra = [name for name in given if name not in rule.needs]
    if extra and strict:
        return ("unexpected_parameter", f"{named} takes no {' and '.join(extra)}")
    taken = OrderParameters(**{name: getattr(parameters, name) for name in rule.needs})
    if rule.counted_by == "quantity":
        assert quantity is not None
        return TypedOrder(quantity, taken)
    counted = terms.max_quantity if rule.counted_by is None else len(getattr(parameters, rule.counted_by))
    if strict and quantity is not None and quantity != counted:
        what = "the package's size" if rule.counted_by is None else f"its number of {rule.counted_by}"
        return ("quantity_mismatch", f"the quantity of a {kind} order is {what} ({counted}), not {quantity}")
    return TypedOrder(counted, taken)


def order_charge(kind: ServiceType, quantity: int, rate_micros: int) -> int:
    """What an order costs, frozen at intake: the rate per 1000 units (or lines), or flat for a package."""
    return rate_micros if TYPE_RULES[kind].flat else charge_for(quantity, rate_micros)


def resend_units(kind: ServiceType, units: int, delivered: int) -> int:
    """What of a run may go to the next route once one has given it up: the undelivered rest of a counted
    quantity; lines and packages only whole (nothing of them arrived), since nobody can tell which of the
    customer's lines a provider delivered, and half a package is no package anyone sells."""
    if TYPE_RULES[kind].splittable or delivered <= 0:
        return max(units - delivered, 0)
    return 0


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
        if not terms.dripfeed or not TYPE_RULES[terms.kind].dripfeed:
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


def order_plan(order: OrderInput) -> list[tuple[int, int]]:
    """The order's runs by its type: a counted quantity is paced (or drip-fed), the rest goes whole."""
    return plan_runs(
        order.quantity,
        order.pace_per_hour,
        runs=order.runs,
        interval_minutes=order.interval_minutes,
        splittable=TYPE_RULES[order.service_type].splittable,
    )


def plan_runs(
    quantity: int, pace_per_hour: int, *, runs: int | None = None, interval_minutes: int | None = None,
    splittable: bool = True,
) -> list[tuple[int, int]]:  # fmt: skip
    """Split an order into runs: (units, minutes after the order starts) each.

    A customer drip-feed sends `runs` runs every `interval_minutes` (the first runs take the remainder of an
    uneven split). Otherwise the order is split into hourly runs of at most `pace_per_hour` units, so no
    run delivers faster than the service's pace; an order that cannot be split is one run.
    """
    if quantity <= 0 or pace_per_hour <= 0:
        raise ValueError("quantity and pace must be positive")
    if not splittable:
        return [(quantity, 0)]
    if runs:
        base, extra = divmod(quantity, runs)
        every = interval_minutes or 0
        return [(base + (1 if i < extra else 0), i * every) for i in range(runs) if base or i < extra]
    full, rest = divmod(quantity, pace_per_hour)
    plan = [(pace_per_hour, hour * 60) for hour in range(full)]
    if rest:
        plan.append((rest, full * 60))
    return plan


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


def refundable_units(
    *,
    quantity: int,
    delivered: int,
    tolerance_bp: int,
    stop_kind: StopKind | None,
    link_fault_refund: str,
    service_failed: bool,
    service_type: ServiceType = ServiceType.DEFAULT,
) -> int:
    """The undelivered units the policy refunds once delivery has ended, however it ended.

    A delivery that ran its course is judged by the tolerance (a shortfall within it is normal variation);
    when the service failed completely the tolerance does not apply, nor to a type counted by lines (each
    missing line is refunded). A cancel refunds all that was not delivered; a link fault only where the
    service's `link_fault_refund` says `remaining`. An order support refunded in full has nothing left to
    refund. A package is all or nothing unless its provider reports `remains` (delivered_in_run): then the
    units it lacks count like any shortfall.
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
    tolerated = TYPE_RULES[service_type].tolerance and within_tolerance(shortfall, quantity, tolerance_bp)
    if not service_failed and tolerated:
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
    service_type: ServiceType = ServiceType.DEFAULT,
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
        service_type=service_type,
    )
    new_units = max(owed_units - refunded_units, 0)
    worth = price_of_units(refunded_units + new_units, charge, quantity)
    refund = worth - price_of_units(refunded_units, charge, quantity)
    refund = max(min(refund, charge - refunded), 0)
    status = final_status(
        quantity=quantity, delivered=delivered, refund_units=owed_units, stop_kind=stop_kind
    )
    return status, refund, new_units, charge - refunded - refund


def link_fault_refusal(*, status: Status, phase: Phase, stopping: bool) -> Refusal:
    """Support can stop an order for its link only while it still delivers (or waits to)."""
    ended = phase in (Phase.SETTLING, Phase.REFILL_WINDOW, Phase.CLOSED)
    if stopping or ended or status not in (Status.PENDING, Status.IN_PROGRESS):
        return ("cannot_report_link_fault", "only an order still delivering can stop for its link")
    return None


def cancel_refusal(*, status: Status, phase: Phase, stopping: bool, cancel_allowed: bool) -> Refusal:
    """Why a cancel must be refused, or None: a Pending order always cancels; one in progress only where
    the service allows it; once delivery has ended (or is already stopping) never."""
    if stopping or phase in (Phase.SETTLING, Phase.REFILL_WINDOW, Phase.CLOSED):
        return CANNOT_CANCEL
    if status != Status.PENDING and not cancel_allowed:
        return CANNOT_CANCEL
    return None


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


def reseller_view(
    *, status: Status, quantity: int, delivered: int, charge: int, refunded: int, refunded_units: int
) -> tuple[Status, int]:
    """(status, remains) as API v2 reports them, so that the protocol's own formula
    `refund = charge * remains / quantity` gives back what the order refunded.

    While delivery goes on, `remains` is what is still to deliver. Once it has ended, `remains` is the
    refunded units (refunds by amount counted at the order's price per unit), and an order that ended short
    with nothing refunded is Completed: showing it Partial or Canceled would tell the reseller's software to
    refund its own customer money the panel kept.
    """
    if status not in FINAL_STATUSES:
        return status, remains(quantity, delivered)
    if refunded <= 0:
        return Status.COMPLETED, 0
    if refunded >= charge:
        return (Status.REFUNDED if status == Status.REFUNDED else Status.CANCELED), quantity
    goodwill = refunded - price_of_units(refunded_units, charge, quantity)
    extra = -(-goodwill * quantity // charge) if goodwill > 0 else 0  # ceiling: any refund shows
    return Status.PARTIAL, min(refunded_units + extra, quantity)


def refill_counts(outcome: RefillStatus) -> bool:
    """A refill the provider rejected or erred on does not use up one of the customer's refills."""
    return outcome not in (RefillStatus.REJECTED, RefillStatus.ERROR)
