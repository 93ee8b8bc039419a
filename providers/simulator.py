"""A provider simulator: a real API v2 HTTP server with a controllable clock and scenarios.

The embedded dev stack and the end-to-end tests run orders against it, so it must speak the protocol the way
real providers do (HTTP 200, errors as `{"error": ...}`, numbers as strings) and misbehave the way they do
(partial delivery, link faults, drops after completion, outages, slow or garbled answers) on demand.

Delivery is a pure function of the clock, so advancing the clock (`POST /sim/clock/advance`) moves every
order forward without any background task. State lives in memory in `app.state.sim`; with a state file it
is also kept in SQLite (providers/sim_store.py), every change committed before its answer leaves, so a
SIGKILL neither loses orders nor lets an order id be handed out twice.

Control endpoints (not API v2) live under `/sim`:
- `POST /sim/clock/advance` `{"seconds": 60}`
- `POST /sim/scenario` `{"link_contains": "acme" | null, "service": "101" | null, "scenario": "partial",
  "value": 0.5 | null, "seconds": 600 | null, "fault": "private"}`
- `PUT /sim/services/{id}`, `DELETE /sim/services/{id}`: offer or withdraw a service
- `GET /sim/requests[?action=add]`: every API v2 request counted by action, and the latest 10 000
- `POST /sim/reset` (orders, refills, scenarios, services, request log; the clock keeps running),
  `GET /sim/orders`

Scenarios apply to calls and orders whose link contains `link_contains` and whose service is `service` (both
null: all, including calls about no order such as `balance`). Delivery scenarios change orders, new and
existing: `instant` (everything delivered at once), `partial` (delivery stops at `value` share, default 0.5,
status Partial), `link_fault` (delivery stops at `value` share, default at once, status Canceled with the
undelivered remains and a `reason` text beside the status, as providers do for private or deleted links;
`fault` picks private, deleted, renamed or invalid, and `invalid` also refuses new orders with `Bad link`),
`drop` (`value` share, default 0.1, of a completed order's units disappears; a refill puts them back). Call
scenarios change answers, for `seconds` of simulated time when given: `outage` (HTTP 503, nothing done),
`slow` (does the work, then answers after `value` seconds, default 2: an `add` is taken even if the client
gave up), `garbled` (`status` answers broken JSON), `lost_answer` (`add` or `refill` takes the order or
refill, then answers HTTP 502). Rules stack; `normal` clears the rules of its scope (none: all) and lets
orders still under way deliver in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from providers.sim_store import SimStore
from workflows.models import Status

CURRENCY = "USD"
BALANCE = "1000.00"
MAX_BATCH = 100
REFILL_COOLDOWN_SECONDS = 24 * 3600

# Standard error texts of api-v2.md.
E_REQUEST = "Incorrect request"
E_KEY = "Invalid API key"
E_SERVICE = "Incorrect service ID"
E_LINK = "Bad link"
E_ORDER = "Incorrect order ID"
E_REFILL_DISABLED = "Refill is disabled for this service"
E_NOT_COMPLETED = "The order is not completed"
E_REFILL_COOLDOWN = "The order was completed or refill was requested less than 24 hours ago"
E_REFILL_NOT_FOUND = "Refill not found"
E_CANNOT_CANCEL = "The order cannot be canceled"

_LINK = re.compile(r"https?://\S+")


class SimClock:
    """Simulated seconds: the monotonic clock plus an offset that tests and demos push forward."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.monotonic() + self.offset

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


SERVICES: dict[str, SimService] = {
    s.id: s
    for s in (
        SimService(
            "101",
            "Instagram Followers | Refill 30 days",
            "Instagram",
            "0.45",
            50,
            10000,
            refill=True,
            cancel=True,
            dripfeed=False,
            speed=100.0,
            start_delay=1.0,
        ),
        SimService(
            "102",
            "Instagram Followers | No refill",
            "Instagram",
            "0.20",
            50,
            50000,
            refill=False,
            cancel=False,
            dripfeed=True,
            speed=150.0,
            start_delay=1.0,
        ),
        SimService(
            "103",
            "Instagram Likes | Drip-feed",
            "Instagram",
            "0.05",
            10,
            100000,
            refill=False,
            cancel=True,
            dripfeed=True,
            speed=50.0,
            start_delay=1.0,
        ),
        SimService(
            "104",
            "Instagram Reel Views",
            "Instagram",
            "0.005",
            100,
            1000000,
            refill=False,
            cancel=False,
            dripfeed=False,
            speed=500.0,
            start_delay=1.0,
        ),
    )
}

ScenarioName = Literal[
    "normal", "instant", "partial", "outage", "link_fault", "garbled", "slow", "drop", "lost_answer"
]
# Scenarios about how calls are answered; the others (instant, partial, link_fault, drop) change delivery.
CALL_SCENARIOS = frozenset({"outage", "slow", "garbled", "lost_answer"})
LinkFaultKind = Literal["private", "deleted", "renamed", "invalid"]
# What the provider says about a faulty link: beside `status: Canceled` as `reason`, or as the `add` error.
LINK_FAULT_REASONS: dict[str, str] = {
    "private": "Link is private: the account was made private",
    "deleted": "Link is dead: the post or account was deleted",
    "renamed": "Link is dead: the username was changed",
    "invalid": E_LINK,
}
REQUEST_LOG_SIZE = 10_000


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

    def state(self, now: float) -> tuple[str, int]:
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


@dataclass
class Rule:
    """A scenario for the orders and calls whose link contains `link_contains` and whose service is
    `service` (None: any). A call scenario with `until` ends at that simulated time."""

    link_contains: str | None
    scenario: str
    value: float | None
    service: str | None = None
    until: float | None = None
    fault: str = "private"

    @property
    def scope(self) -> tuple[str | None, str | None]:
        return self.link_contains, self.service

    def matches(self, link: str | None, service: str | None = None) -> bool:
        """A rule without a scope matches every call; a scoped one only calls about such links/services."""
        if self.link_contains is not None and (link is None or self.link_contains not in link):
            return False
        return self.service is None or self.service == service

    def matches_order(self, order: SimOrder) -> bool:
        return self.matches(order.link, order.service.id)

    def live(self, now: float) -> bool:
        return self.until is None or now < self.until


Subject = tuple[str | None, str | None]  # (link, service) a call is about; (None, None): about no order


@dataclass
class Logged:
    """One API v2 request as the simulator saw it: tests count submissions and batch calls with these."""

    seq: int
    at: float  # simulated time
    action: str
    params: dict[str, str]  # without the key
    http_status: int  # 0 while the answer is still on its way


@dataclass
class SimState:
    clock: SimClock
    api_key: str
    orders: dict[int, SimOrder] = field(default_factory=dict)
    refills: dict[int, SimRefill] = field(default_factory=dict)
    idempotency: dict[str, int] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    next_order: int = 23501
    next_refill: int = 501
    services: dict[str, SimService] = field(default_factory=lambda: dict(SERVICES))
    requests: list[Logged] = field(default_factory=list)  # the latest REQUEST_LOG_SIZE requests
    request_count: int = 0
    requests_by_action: dict[str, int] = field(default_factory=dict)
    store: SimStore | None = None  # where changes are kept (the request log is not)
    _changed: tuple[set[int], set[int], set[str]] = field(default_factory=lambda: (set(), set(), set()))

    def changed(
        self, orders: Iterable[int] = (), refills: Iterable[int] = (), keys: Iterable[str] = ()
    ) -> None:
        """Note what a call changed; `commit` writes it (and the counters, rules, services and clock)."""
        self._changed[0].update(orders)
        self._changed[1].update(refills)
        self._changed[2].update(keys)

    def commit(self, *, meta: bool = False, everything: bool = False) -> None:
        """Keep what changed before the answer leaves: after a crash no answered id is given out again.

        `meta`: the rules, services or clock changed (control calls); an API v2 call that changed no order
        or refill (a status read) writes nothing.
        """
        if self.store is not None and (meta or everything or any(self._changed)):
            orders, refills, keys = self._changed
            self.store.write(self, orders=orders, refills=refills, keys=keys, everything=everything)
        for noted in self._changed:
            noted.clear()

    def meta(self) -> dict[str, Any]:
        return {
            "next_order": self.next_order,
            "next_refill": self.next_refill,
            "rules": [asdict(r) for r in self.rules],
            "services": {k: asdict(v) for k, v in self.services.items()},
            "clock_offset": self.clock.offset,
        }

    def restore(self) -> None:
        """Take back what the store kept (nothing on a new file)."""
        assert self.store is not None
        orders, refills, keys, meta = self.store.read()
        self.orders = {o["id"]: SimOrder(**(o | {"service": SimService(**o["service"])})) for o in orders}
        self.refills = {r["id"]: SimRefill(**r) for r in refills}
        self.idempotency = keys
        if meta:
            self.next_order, self.next_refill = meta["next_order"], meta["next_refill"]
            self.rules = [Rule(**r) for r in meta["rules"]]
            self.services = {k: SimService(**v) for k, v in meta["services"].items()}
            self.clock.offset = max(self.clock.offset, meta["clock_offset"])  # never backward

    def log_request(self, action: str, params: dict[str, str]) -> Logged:
        """Log a request as it arrives (a slow answer is counted before it leaves); status set later."""
        self.request_count += 1
        self.requests_by_action[action] = self.requests_by_action.get(action, 0) + 1
        shown = {k: v for k, v in params.items() if k not in ("key", "action")}
        entry = Logged(self.request_count, self.clock.now(), action, shown, 0)
        self.requests.append(entry)
        if len(self.requests) > REQUEST_LOG_SIZE:
            del self.requests[: len(self.requests) - REQUEST_LOG_SIZE]
        return entry

    def set_rule(self, rule: Rule) -> None:
        """Rules stack in the order they are set; `normal` clears the rules of its scope (none: all)."""
        if rule.scenario == "normal":
            self.rules = [r for r in self.rules if rule.scope != (None, None) and r.scope != rule.scope]
            if rule.scope != (None, None):
                self.rules.append(rule)  # shields these links from broader rules set before it
        else:
            self.rules = [r for r in self.rules if (r.scope, r.scenario) != (rule.scope, rule.scenario)]
            self.rules.append(rule)
        for order in self.orders.values():
            if rule.matches_order(order):
                self.stamp(order, rule)
                self.changed(orders=[order.id])

    def link_fault(self, link: str, service: str) -> Rule | None:
        """The latest link-fault rule for a link (what a refill or a new order finds)."""
        for rule in reversed(self.rules):
            if rule.matches(link, service) and rule.scenario in ("link_fault", "normal"):
                return rule if rule.scenario == "link_fault" else None
        return None

    def call_rule(self, subjects: list[Subject]) -> Rule | None:
        """The most recent live call scenario for any of the subjects a call is about."""
        now = self.clock.now()
        for rule in reversed(self.rules):
            if rule.live(now) and any(rule.matches(link, service) for link, service in subjects):
                if rule.scenario == "normal":
                    return None
                if rule.scenario in CALL_SCENARIOS:
                    return rule
        return None

    def stamp_new(self, order: SimOrder) -> None:
        """A new order takes every delivery scenario that matches its link, oldest first."""
        for rule in self.rules:
            if rule.matches_order(order):
                self.stamp(order, rule)

    def stamp(self, order: SimOrder, rule: Rule) -> None:
        """Apply a fate-changing scenario to an order, from its present count (orders cannot lose delivery).

        Partial and link faults only touch orders still under way; a drop also hits completed orders.
        `value` is the delivered share where delivery ends (partial: 0.5, link fault: now) or the share that
        drops (0.1). Scenarios about calls (outage, slow, garbled, lost_answer) are looked up per call.
        """
        status, delivered = order.state(self.clock.now())
        final = status in (Status.COMPLETED, Status.PARTIAL, Status.CANCELED)
        share = None if rule.value is None else min(rule.value, 1.0)
        if rule.scenario == "drop":
            order.drop_fraction = 0.1 if share is None else share
        elif final:
            return
        elif rule.scenario == "normal":
            order.stop_at = order.fault_at = order.fault_reason = None
            order.drop_fraction = 0.0
            order.instant = False
        elif rule.scenario == "instant":
            order.instant = True
        elif rule.scenario == "partial":
            order.stop_at = max(int(order.total * (0.5 if share is None else share)), delivered)
        elif rule.scenario == "link_fault":
            order.fault_at = max(int(order.total * (share or 0.0)), delivered)
            order.fault_reason = LINK_FAULT_REASONS.get(rule.fault, LINK_FAULT_REASONS["private"])
        else:
            return
        order.scenario = rule.scenario


# ---------------------------------------------------------------------------------------------- API v2


class _Error(Exception):
    """An API v2 protocol error, answered as HTTP 200 `{"error": text}`."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.00001"), rounding=ROUND_HALF_UP))


_INT = re.compile(r"-?[0-9]{1,12}")
MAX_RUNS = 1000


def _int(value: str | None) -> int:
    text = (value or "").strip()
    if not _INT.fullmatch(text):
        raise _Error(E_REQUEST)
    return int(text)


def _as_id(raw: str) -> int | None:
    """An id parameter as an int, or None when it is not a plain decimal number."""
    return int(raw) if _INT.fullmatch(raw) and not raw.startswith("-") else None


def _ids(params: dict[str, str], many: str, one: str) -> tuple[list[str], bool]:
    """The ids of a batch parameter (`orders`) or a single one (`order`); the flag says it was a batch."""
    if params.get(many):
        ids = [part.strip() for part in params[many].split(",") if part.strip()]
        if not ids or len(ids) > MAX_BATCH:
            raise _Error(E_REQUEST)
        return ids, True
    if params.get(one):
        return [params[one].strip()], False
    raise _Error(E_REQUEST)


async def _params(request: Request) -> dict[str, str]:
    """Query, form or JSON parameters as strings: existing clients use all three."""
    params = {k: v for k, v in request.query_params.items()}
    body = await request.body()
    if body:
        if "json" in request.headers.get("content-type", ""):
            try:
                data = json.loads(body)
            except ValueError:
                raise _Error(E_REQUEST) from None
            if not isinstance(data, dict):
                raise _Error(E_REQUEST)
            params.update({str(k): _text(v) for k, v in data.items() if v is not None})
        else:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if not params.get("key") and request.headers.get("x-api-key"):
        params["key"] = request.headers["x-api-key"]
    return params


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _order_status(order: SimOrder, now: float) -> dict[str, Any]:
    """The status answer; an order the provider canceled because of its link says why in `reason`."""
    status, delivered = order.state(now)
    answer = {
        "charge": order.charge,
        "start_count": str(order.start_count),
        "status": status,
        "remains": str(order.total - delivered),
        "currency": CURRENCY,
    }
    if status == Status.CANCELED and order.fault_reason and not order.canceled:
        answer["reason"] = order.fault_reason
    return answer


def _refill_status(sim: SimState, refill: SimRefill, now: float) -> str:
    """A refill waits the service's start delay, then restores the dropped units at the service speed."""
    if refill.rejected:
        return "Rejected"
    order = sim.orders[refill.order_id]
    begin = refill.requested_at + order.service.start_delay
    if now < begin:
        return Status.PENDING
    dropped = _dropped(order, refill.requested_at)
    return Status.COMPLETED if order.service.speed * (now - begin) >= dropped else Status.IN_PROGRESS


def _dropped(order: SimOrder, now: float) -> int:
    """Units lost after completion at `now`, before any refill restores them."""
    status, delivered = order.state(now)
    return int(delivered * order.drop_fraction) if status == Status.COMPLETED else 0


def _restored(order: SimOrder, now: float) -> int:
    """Dropped units a refill has put back by `now`."""
    dropped = _dropped(order, now)
    if order.last_refill_at is None or now < order.last_refill_at + order.service.start_delay:
        return 0
    return min(dropped, int(order.service.speed * (now - order.last_refill_at - order.service.start_delay)))


def _add(sim: SimState, p: dict[str, str]) -> dict[str, Any]:
    key = p.get("idempotency_key") or None
    if key is not None and key in sim.idempotency:
        return {"order": sim.idempotency[key]}
    service = sim.services.get(p.get("service", "").strip())
    if service is None:
        raise _Error(E_SERVICE)
    link = p.get("link", "").strip()
    fault = sim.link_fault(link, service.id)
    if not _LINK.fullmatch(link) or (fault is not None and fault.fault == "invalid"):
        raise _Error(E_LINK)
    quantity = _int(p.get("quantity"))
    if quantity < service.min:
        raise _Error(f"Quantity less than minimal {service.min}")
    if quantity > service.max:
        raise _Error(f"Quantity more than maximum {service.max}")
    runs, interval = 1, 0
    if p.get("runs") or p.get("interval"):
        if not service.dripfeed:
            raise _Error(E_REQUEST)
        runs, interval = _int(p.get("runs")), _int(p.get("interval"))
        if not 1 <= runs <= MAX_RUNS or interval < 0:
            raise _Error(E_REQUEST)
    order_id = sim.next_order
    sim.next_order += 1
    order = SimOrder(
        id=order_id,
        service=service,
        link=link,
        quantity=quantity,
        runs=runs,
        interval_minutes=interval,
        created_at=sim.clock.now(),
        start_count=random.Random(order_id).randint(100, 50_000),
        charge=_money(Decimal(service.rate) * quantity * runs / 1000),
    )
    sim.stamp_new(order)
    sim.orders[order_id] = order
    if key is not None:
        sim.idempotency[key] = order_id
    sim.changed(orders=[order_id], keys=[key] if key is not None else [])
    return {"order": order_id}


def _status(sim: SimState, p: dict[str, str]) -> Any:
    ids, batch = _ids(p, "orders", "order")
    now = sim.clock.now()
    answers: dict[str, Any] = {}
    for raw in ids:
        order = sim.orders.get(_as_id(raw) or 0)
        answers[raw] = _order_status(order, now) if order else {"error": E_ORDER}
    if not batch:
        answer = answers[ids[0]]
        if "error" in answer:
            raise _Error(E_ORDER)
        return answer
    return answers


def _refill_one(sim: SimState, raw: str, key: str | None = None) -> int:
    if key is not None and key in sim.idempotency:
        return sim.idempotency[key]
    order = sim.orders.get(_as_id(raw) or 0)
    if order is None:
        raise _Error(E_ORDER)
    if not order.service.refill:
        raise _Error(E_REFILL_DISABLED)
    now = sim.clock.now()
    if order.state(now)[0] != Status.COMPLETED:
        raise _Error(E_NOT_COMPLETED)
    if order.last_refill_at is not None and now - order.last_refill_at < REFILL_COOLDOWN_SECONDS:
        raise _Error(E_REFILL_COOLDOWN)
    rejected = sim.link_fault(order.link, order.service.id) is not None
    refill = SimRefill(id=sim.next_refill, order_id=order.id, requested_at=now, rejected=rejected)
    sim.next_refill += 1
    sim.refills[refill.id] = refill
    if not rejected:
        order.last_refill_at = now
    if key is not None:
        sim.idempotency[key] = refill.id
    sim.changed(orders=[order.id], refills=[refill.id], keys=[key] if key is not None else [])
    return refill.id


def _refill(sim: SimState, p: dict[str, str]) -> Any:
    ids, batch = _ids(p, "orders", "order")
    if not batch:
        key = p.get("idempotency_key") or None
        return {"refill": str(_refill_one(sim, ids[0], None if key is None else f"refill:{key}"))}
    answers: list[dict[str, Any]] = []
    for raw in ids:
        try:
            answers.append({"order": _id_out(raw), "refill": _refill_one(sim, raw)})
        except _Error as exc:
            answers.append({"order": _id_out(raw), "refill": {"error": exc.text}})
    return answers


def _refill_status_action(sim: SimState, p: dict[str, str]) -> Any:
    ids, batch = _ids(p, "refills", "refill")
    now = sim.clock.now()
    answers: list[dict[str, Any]] = []
    for raw in ids:
        refill = sim.refills.get(_as_id(raw) or 0)
        status: Any = _refill_status(sim, refill, now) if refill else {"error": E_REFILL_NOT_FOUND}
        answers.append({"refill": _id_out(raw), "status": status})
    if not batch:
        if isinstance(answers[0]["status"], dict):
            raise _Error(E_REFILL_NOT_FOUND)
        return {"status": answers[0]["status"]}
    return answers


def _cancel(sim: SimState, p: dict[str, str]) -> Any:
    """Cancel is honoured while the order is Pending (it ends Canceled) or In progress (delivery stops where
    it is: Partial, with the undelivered remains), if its service allows it; never once it has ended."""
    ids, _ = _ids(p, "orders", "order")
    now = sim.clock.now()
    answers: list[dict[str, Any]] = []
    for raw in ids:
        order = sim.orders.get(_as_id(raw) or 0)
        result: Any
        if order is None:
            result = {"error": E_ORDER}
        elif not order.service.cancel or order.state(now)[0] not in (Status.PENDING, Status.IN_PROGRESS):
            result = {"error": E_CANNOT_CANCEL}
        else:
            status, delivered = order.state(now)
            if delivered == 0:
                order.canceled = True
            else:
                order.cancel_at = delivered
            sim.changed(orders=[order.id])
            result = 1
        answers.append({"order": _id_out(raw), "cancel": result})
    return answers


def _services(sim: SimState) -> list[dict[str, Any]]:
    return [
        {
            "service": int(s.id),
            "name": s.name,
            "type": "Default",
            "category": s.category,
            "rate": s.rate,
            "min": str(s.min),
            "max": str(s.max),
            "refill": s.refill,
            "cancel": s.cancel,
            "dripfeed": s.dripfeed,
        }
        for s in sim.services.values()
    ]


def _id_out(raw: str) -> int | str:
    """Ids are echoed as ints in batch answers, like providers do; anything else as sent."""
    as_id = _as_id(raw)
    return raw if as_id is None else as_id


def _subjects(sim: SimState, action: str, p: dict[str, str]) -> list[Subject]:
    """The (link, service) pairs a call is about, so scoped call scenarios hit only those calls."""
    if action == "add":
        return [(p.get("link", "").strip(), p.get("service", "").strip())]

    def ids(*names: str) -> list[int]:
        raw = ",".join(p.get(name, "") for name in names).split(",")
        return [i for i in (_as_id(part.strip()) for part in raw) if i is not None]

    orders = [sim.orders[i] for i in ids("order", "orders") if i in sim.orders]
    if action == "refill_status":
        orders += [sim.orders[sim.refills[i].order_id] for i in ids("refill", "refills") if i in sim.refills]
    subjects: list[Subject] = [(order.link, order.service.id) for order in orders]
    return subjects or [(None, None)]


_ACTIONS = {"services", "add", "status", "refill", "refill_status", "cancel", "balance"}


async def _api_v2(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    try:
        p = await _params(request)
    except _Error as exc:
        sim.log_request("", {}).http_status = 200
        return JSONResponse({"error": exc.text})
    entry = sim.log_request(p.get("action", "").strip(), p)
    try:
        response = await _answer(sim, p)
    except _Error as exc:
        response = JSONResponse({"error": exc.text})
    entry.http_status = response.status_code
    return response


async def _answer(sim: SimState, p: dict[str, str]) -> Response:
    """One API v2 call, with the call scenario that applies to it.

    `slow` does the work first and answers late: an `add` is taken even when the client has given up waiting.
    """
    if p.get("key") != sim.api_key:
        raise _Error(E_KEY)
    action = p.get("action", "").strip()
    if action not in _ACTIONS:
        raise _Error(E_REQUEST)
    rule = sim.call_rule(_subjects(sim, action, p))
    scenario = rule.scenario if rule else "normal"
    if scenario == "outage":
        return PlainTextResponse("503 Service Unavailable", status_code=503)
    response: Response
    if scenario == "garbled" and action == "status":
        response = Response('{"charge": "0.2781", "status": "In pro', media_type="application/json")
    elif scenario == "lost_answer" and action in ("add", "refill"):
        with contextlib.suppress(_Error):
            _dispatch(sim, action, p)
        # The order (refill) was taken, but the answer is lost on the way back: the case idempotency is for.
        response = PlainTextResponse("502 Bad Gateway", status_code=502)
    else:
        try:
            response = JSONResponse(_dispatch(sim, action, p))
        except _Error as exc:
            response = JSONResponse({"error": exc.text})
    sim.commit()  # before any answer, slow ones included: the work is done whether the client waits or not
    if scenario == "slow":
        await asyncio.sleep(2.0 if rule is None or rule.value is None else max(rule.value, 0.0))
    return response


def _dispatch(sim: SimState, action: str, p: dict[str, str]) -> Any:
    if action == "services":
        return _services(sim)
    if action == "balance":
        return {"balance": BALANCE, "currency": CURRENCY}
    if action == "add":
        return _add(sim, p)
    if action == "status":
        return _status(sim, p)
    if action == "refill":
        return _refill(sim, p)
    if action == "refill_status":
        return _refill_status_action(sim, p)
    return _cancel(sim, p)


# ---------------------------------------------------------------------------------------------- control


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=10 * 365 * 24 * 3600)


class ScenarioIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link_contains: str | None = None
    service: str | None = None
    scenario: ScenarioName
    value: float | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, gt=0, description="call scenarios: ends after this long")
    fault: LinkFaultKind = "private"


class ServiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(default="Instagram", max_length=100)
    rate: str = Field(pattern=r"^[0-9]{1,6}(\.[0-9]{1,5})?$")
    min: int = Field(ge=1)
    max: int = Field(ge=1)
    refill: bool = False
    cancel: bool = False
    dripfeed: bool = False
    speed: float = Field(default=100.0, gt=0)
    start_delay: float = Field(default=1.0, ge=0)


def _order_view(order: SimOrder, now: float) -> dict[str, Any]:
    status, delivered = order.state(now)
    dropped = _dropped(order, now)
    restored = _restored(order, now)
    return {
        "order": order.id,
        "service": order.service.id,
        "link": order.link,
        "quantity": order.quantity,
        "runs": order.runs,
        "interval": order.interval_minutes,
        "total": order.total,
        "status": status,
        "delivered": delivered,
        "remains": order.total - delivered,
        "start_count": order.start_count,
        "dropped": dropped - restored,
        "current_count": order.start_count + delivered - dropped + restored,
        "charge": order.charge,
        "scenario": order.scenario,
    }


def create_simulator_app(
    *, api_key: str = "sim-demo-key", clock: SimClock | None = None, state_file: Path | None = None
) -> FastAPI:
    """A fresh simulator with its own state; tests create one per test.

    With `state_file` its orders survive a restart (the dev stack keeps it under its data folder).
    """

    store = SimStore(state_file) if state_file is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if store is not None:
            store.close()

    app = FastAPI(
        title="API v2 provider simulator",
        docs_url="/sim/docs",
        openapi_url="/sim/openapi.json",
        lifespan=lifespan,
    )
    app.state.sim = SimState(clock=clock or SimClock(), api_key=api_key, store=store)
    if store is not None:
        app.state.sim.restore()

    app.add_api_route("/api/v2", _api_v2, methods=["GET", "POST"], include_in_schema=False)

    @app.post("/sim/clock/advance")
    async def advance(body: AdvanceIn) -> dict[str, float]:
        sim: SimState = app.state.sim
        sim.clock.advance(body.seconds)
        sim.commit(meta=True)
        return {"now": sim.clock.now()}

    @app.post("/sim/scenario")
    async def scenario(body: ScenarioIn) -> dict[str, Any]:
        """Set a scenario for later calls and new orders, and apply it to the existing orders it matches."""
        sim: SimState = app.state.sim
        if body.seconds is not None and body.scenario not in CALL_SCENARIOS:
            raise HTTPException(422, "`seconds` is for call scenarios (outage, slow, garbled, lost_answer)")
        until = None if body.seconds is None else sim.clock.now() + body.seconds
        rule = Rule(body.link_contains, body.scenario, body.value, body.service, until, body.fault)
        sim.set_rule(rule)
        sim.commit(meta=True)
        matched = sum(1 for o in sim.orders.values() if rule.matches_order(o))
        return {
            "scenario": rule.scenario,
            "link_contains": rule.link_contains,
            "service": rule.service,
            "until": rule.until,
            "orders": matched,
        }

    @app.put("/sim/services/{service_id}")
    async def put_service(service_id: str, body: ServiceIn) -> dict[str, Any]:
        """Offer a service (new, or changed: existing orders keep the terms they were placed with)."""
        if not service_id.isdigit() or body.max < body.min:
            raise HTTPException(422, "service ids are numbers and max >= min")
        sim: SimState = app.state.sim
        sim.services[service_id] = SimService(service_id, **body.model_dump())
        sim.commit(meta=True)
        return {"service": int(service_id), "services": len(sim.services)}

    @app.delete("/sim/services/{service_id}")
    async def withdraw_service(service_id: str) -> dict[str, Any]:
        """Withdraw a service: it leaves `services`, new orders for it get `Incorrect service ID`."""
        sim: SimState = app.state.sim
        if sim.services.pop(service_id, None) is None:
            raise HTTPException(404, "no such service")
        sim.commit(meta=True)
        return {"withdrawn": int(service_id), "services": len(sim.services)}

    @app.get("/sim/requests")
    async def requests(action: str | None = None) -> dict[str, Any]:
        """Every API v2 request counted by action, and the latest ones (optionally of one action)."""
        sim: SimState = app.state.sim
        shown = [asdict(r) for r in sim.requests if action is None or r.action == action]
        return {"total": sim.request_count, "by_action": sim.requests_by_action, "requests": shown}

    @app.post("/sim/reset")
    async def reset() -> dict[str, bool]:
        sim: SimState = app.state.sim
        app.state.sim = SimState(clock=sim.clock, api_key=sim.api_key, store=sim.store)  # built-in services
        app.state.sim.commit(everything=True)
        return {"reset": True}

    @app.get("/sim/orders")
    async def orders() -> list[dict[str, Any]]:
        sim: SimState = app.state.sim
        now = sim.clock.now()
        return [_order_view(o, now) for o in sim.orders.values()]

    return app


def main(
    host: str = "127.0.0.1", port: int = 8100, api_key: str = "sim-demo-key", state_file: Path | None = None
) -> None:
    """Run the simulator as its own HTTP server (the dev stack starts it this way)."""
    import uvicorn

    app = create_simulator_app(api_key=api_key, state_file=state_file)
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
