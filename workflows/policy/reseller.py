"""How API v2 reports an order to resellers, so that the protocol's own refund formula gives back what the
panel refunded."""

from __future__ import annotations

from workflows.models import Status
from workflows.policy.delivery import remains
from workflows.policy.money import price_of_units
from workflows.policy.states import FINAL_STATUSES


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


def drip_feed_view(
    runs: list[tuple[int, int, Status]], *, order_status: Status, order_remains: int
) -> list[tuple[Status, int]]:
    """(status, remains) of each run of a drip-feed order as API v2 reports them; `runs` are (quantity,
    delivered, status) in run order, `order_remains` what reseller_view reports for the whole order.

    While the order delivers, each run shows its own progress. Once it has ended, the order's reported
    remains (what it refunded, in units) are shared out over its runs, the latest runs' shortfalls first,
    then any rest over the runs' delivered units: the protocol's refund formula over the runs then adds up
    to what the order refunded, and a run that ended short with nothing refunded shows Completed.
    """
    if order_status not in FINAL_STATUSES:
        return [(status, remains(quantity, delivered)) for quantity, delivered, status in runs]
    left = order_remains
    shares = [0] * len(runs)
    for pass_short in (True, False):
        for i in reversed(range(len(runs))):
            quantity, delivered, _ = runs[i]
            room = (quantity - max(delivered, 0) if pass_short else quantity) - shares[i]
            take = max(0, min(room, left))
            shares[i] += take
            left -= take
    whole = Status.REFUNDED if order_status == Status.REFUNDED else Status.CANCELED
    view = []
    for (quantity, _, _), share in zip(runs, shares, strict=True):
        status = Status.COMPLETED if share == 0 else whole if share >= quantity else Status.PARTIAL
        view.append((status, share))
    return view
