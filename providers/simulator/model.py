"""The simulator's orders, refills, services and clock: pure state and delivery math.

Delivery is a function of the clock alone, so advancing the clock moves every order forward without any
background task. Scenario effects that change an order's fate are stamped on it as unit thresholds
(`scenarios.stamp`); everything here only reads them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from providers.apiv2 import money
from workflows.models import RefillStatus, Status

FINAL = frozenset({Status.COMPLETED, Status.PARTIAL, Status.CANCELED})
FLAT = frozenset({"Package", "Custom Comments Package"})  # priced per order, not per 1000


class SimClock:
    """Simulated seconds: the monotonic clock plus an offset that tests and demos push forward. A frozen clock
    moves only when pushed, so a test's figures do not depend on how busy the machine is."""

    def __init__(self, offset: float = 0.0, *, frozen: bool = False) -> None:
        self.offset = offset
        self._frozen_at = time.monotonic() if frozen else None

    def now(self) -> float:
        base = time.monotonic() if self._frozen_at is None else self._frozen_at
        return base + self.offset

    def advance(self, seconds: float) -> None:
        """Move time forward; never backward, because delivered units cannot be undelivered."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds


@dataclass(frozen=True)
class SimService:
    """A simulated service: `speed` units per simulated second after `start_delay` seconds in Pending."""

    id: str
    name: str
    category: str
    rate: str
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool
    speed: float
    start_delay: float
    type: str = "Default"  # the API v2 type: what `add` must carry (providers/simulator/types.py)


def _instagram(
    id: str,
    name: str,
    rate: str,
    low: int,
    high: int,
    refill: bool,
    cancel: bool,
    dripfeed: bool,
    speed: float,
    kind: str = "Default",
) -> SimService:
    return SimService(
        id, name, "Instagram", rate, low, high, refill, cancel, dripfeed, speed, start_delay=1.0, type=kind
    )


# The built-in services: id, name, rate, min, max, refill, cancel, drip-feed, units per second (, type).
SERVICES: dict[str, SimService] = {
    s.id: s
    for s in (
        _instagram(
            "101", "Instagram Followers | Refill 30 days", "0.45", 50, 10000, True, True, False, 100.0
        ),
        _instagram("102", "Instagram Followers | No refill", "0.20", 50, 50000, False, False, True, 150.0),
        _instagram("103", "Instagram Likes | Drip-feed", "0.05", 10, 100000, False, True, True, 50.0),
        _instagram("104", "Instagram Reel Views", "0.005", 100, 1000000, False, False, False, 500.0),
    )
}
# One service of each other type: id, type, rate, min, max, units per second (cancel allowed; the package
# refills). A package's size is its min = max, and its rate is its price.
TYPED = (
    ("301", "Package", "4.00", 1000, 1000, 100.0),
    ("302", "Custom Comments", "10.00", 5, 1000, 5.0),
    ("303", "Custom Comments Package", "3.00", 1, 10, 5.0),
    ("304", "Mentions", "2.00", 100, 10000, 50.0),
    ("305", "Mentions with Hashtags", "2.50", 100, 10000, 50.0),
    ("306", "Mentions Custom List", "3.00", 5, 5000, 20.0),
    ("307", "Mentions Hashtag", "2.00", 100, 10000, 50.0),
    ("308", "Mentions User Followers", "2.00", 100, 10000, 50.0),
    ("309", "Mentions Media Likers", "2.00", 100, 10000, 50.0),
    ("310", "Comment Likes", "1.50", 20, 20000, 50.0),
    ("311", "Comment Replies", "12.00", 1, 500, 5.0),
    ("312", "Poll", "1.00", 50, 50000, 100.0),
    ("313", "SEO", "0.80", 100, 100000, 100.0),
)
SERVICES |= {
    id: _instagram(id, f"Instagram {kind}", rate, low, high, kind == "Package", True, False, speed, kind)
    for id, kind, rate, low, high, speed in TYPED
}


@dataclass
class SimRefill:
    id: int
    order_id: int
    requested_at: float
    rejected: bool = False  # the link had a fault when the refill was asked for: nothing to refill


@dataclass
class SimOrder:
    """One accepted order. Scenario effects that change its fate are stamped on it as unit thresholds."""

    id: int
    service: SimService
    link: str
    quantity: int  # per run for drip-feed orders
    runs: int
    interval_minutes: int
    created_at: float
    start_count: int
    charge: str
    stop_at: int | None = None  # partial: delivery ends here, status Partial
    fault_at: int | None = None  # link fault: delivery ends here, status Canceled
    fault_reason: str | None = None  # what the status answer says about the link fault
    cancel_at: int | None = None  # canceled while in progress: delivery ends here, status Partial
    instant: bool = False  # delivers everything at once, without the start delay
    drop_fraction: float = 0.0  # drop: this share of the delivered units disappears after completion
    canceled: bool = False
    last_refill_at: float | None = None
    scenario: str = "normal"
    # The type's parameters as the order received them (lists one item an element): what tests check was
    # forwarded.
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def placed(
        cls,
        id: int,
        service: SimService,
        link: str,
        quantity: int,
        runs: int,
        interval: int,
        now: float,
        parameters: dict[str, Any] | None = None,
    ) -> SimOrder:
        """A new order, charged rate x units / 1000 (a package: its rate); its target's counter is a number
        fixed by its id."""
        price = (
            Decimal(service.rate) if service.type in FLAT else Decimal(service.rate) * quantity * runs / 1000
        )
        start_count = random.Random(id).randint(100, 50_000)
        charge = money(price, places=5)
        return cls(
            id, service, link, quantity, runs, interval, now, start_count, charge, parameters=parameters or {}
        )

    @property
    def total(self) -> int:
        return self.quantity * self.runs

    def _raw_delivered(self, now: float) -> int:
        """Units delivered by the clock alone: each run delivers `quantity` at the service speed."""
        if self.instant:
            return self.total
        begin = self.created_at + self.service.start_delay
        done = 0.0
        for run in range(self.runs):
            elapsed = now - begin - run * self.interval_minutes * 60
            done += min(float(self.quantity), max(0.0, self.service.speed * elapsed))
        return int(done)

    def state(self, now: float) -> tuple[Status, int]:
        """(status, delivered) at `now`."""
        if self.canceled:
            return Status.CANCELED, 0
        raw = self._raw_delivered(now)
        limits = (
            (self.fault_at, Status.CANCELED),
            (self.cancel_at, Status.PARTIAL),
            (self.stop_at, Status.PARTIAL),
        )
        ends = [(limit, status) for limit, status in limits if limit is not None and limit < self.total]
        for limit, status in sorted(ends, key=lambda pair: pair[0]):
            if raw >= limit:
                return status, limit
        if raw >= self.total:
            return Status.COMPLETED, self.total
        if now < self.created_at + self.service.start_delay and not self.instant:
            return Status.PENDING, raw
        return Status.IN_PROGRESS, raw

    def dropped(self, now: float) -> int:
        """Units lost after completion at `now`, before any refill restores them."""
        status, delivered = self.state(now)
        return int(delivered * self.drop_fraction) if status == Status.COMPLETED else 0

    def restored(self, now: float) -> int:
        """Dropped units a refill has put back by `now`."""
        delay = self.service.start_delay
        if self.last_refill_at is None or now < self.last_refill_at + delay:
            return 0
        return min(self.dropped(now), int(self.service.speed * (now - self.last_refill_at - delay)))


def refill_state(refill: SimRefill, order: SimOrder, now: float) -> RefillStatus:
    """A refill waits the service's start delay, then restores the dropped units at the service speed."""
    if refill.rejected:
        return RefillStatus.REJECTED
    begin = refill.requested_at + order.service.start_delay
    if now < begin:
        return RefillStatus.PENDING
    done = order.service.speed * (now - begin) >= order.dropped(refill.requested_at)
    return RefillStatus.COMPLETED if done else RefillStatus.IN_PROGRESS
