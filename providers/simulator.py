"""A provider simulator: a real API v2 HTTP server with a controllable clock and scenarios.

The embedded dev stack and the end-to-end tests run orders against it, so it must speak the protocol the way
real providers do (HTTP 200, errors as `{"error": ...}`, numbers as strings) and misbehave the way they do
(partial delivery, link faults, drops after completion, outages, slow or garbled answers) on demand.

Delivery is a pure function of the clock, so advancing the clock (`POST /sim/clock/advance`) moves every
order forward without any background task. State lives in memory in `app.state.sim`, saved to a state
file at shutdown when one is given.

Control endpoints (not API v2) live under `/sim`:
- `POST /sim/clock/advance` `{"seconds": 60}`
- `POST /sim/scenario` `{"link_contains": "acme" | null, "scenario": "partial", "value": 0.5 | null}`
- `POST /sim/reset` (orders, refills, scenarios; the clock keeps running), `GET /sim/orders`

Scenarios apply to calls and orders whose link contains `link_contains` (null: all, including calls about no
order such as `balance`). Delivery scenarios change orders, new and existing: `partial` (delivery stops at
`value` share, default 0.5, status Partial), `link_fault` (delivery stops at `value` share, default at once,
status Canceled with the undelivered remains, as providers do for private or deleted links), `drop` (`value`
share, default 0.1, of a completed order's units disappears; a refill puts them back). Call scenarios change
answers: `outage` (HTTP 503, nothing done), `slow` (sleep `value` seconds, default 2), `garbled` (`status`
answers broken JSON), `lost_answer` (`add` takes the order, then answers HTTP 502). Rules stack; `normal`
clears the rules of its substring (null: all) and lets orders still under way deliver in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from workflows.policy import CANCELED, COMPLETED, IN_PROGRESS, PARTIAL, PENDING

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

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward; never backward, because delivered units cannot be undelivered."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


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

ScenarioName = Literal["normal", "partial", "outage", "link_fault", "garbled", "slow", "drop", "lost_answer"]
# Scenarios about how calls are answered; the others (partial, link_fault, drop) change orders' delivery.
CALL_SCENARIOS = frozenset({"outage", "slow", "garbled", "lost_answer"})


@dataclass
class SimRefill:
    id: int
    order_id: int
    requested_at: float


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
    drop_fraction: float = 0.0  # drop: this share of the delivered units disappears after completion
    canceled: bool = False
    last_refill_at: float | None = None
    scenario: str = "normal"

    @property
    def total(self) -> int:
        return self.quantity * self.runs

    def _raw_delivered(self, now: float) -> int:
        """Units delivered by the clock alone: each run delivers `quantity` at the service speed."""
        begin = self.created_at + self.service.start_delay
        done = 0.0
        for run in range(self.runs):
            elapsed = now - begin - run * self.interval_minutes * 60
            done += min(float(self.quantity), max(0.0, self.service.speed * elapsed))
        return int(done)

    def state(self, now: float) -> tuple[str, int]:
        """(status, delivered) at `now`."""
        if self.canceled:
            return CANCELED, 0
        raw = self._raw_delivered(now)
        ends = [
            (limit, status)
            for limit, status in ((self.fault_at, CANCELED), (self.stop_at, PARTIAL))
            if limit is not None and limit < self.total
        ]
        for limit, status in sorted(ends, key=lambda pair: pair[0]):
            if raw >= limit:
                return status, limit
        if raw >= self.total:
            return COMPLETED, self.total
        if now < self.created_at + self.service.start_delay:
            return PENDING, raw
        return IN_PROGRESS, raw


@dataclass
class Rule:
    link_contains: str | None
    scenario: str
    value: float | None

    def matches(self, link: str | None) -> bool:
        """A rule without a substring matches every call; one with a substring only calls about such links."""
        return self.link_contains is None or (link is not None and self.link_contains in link)


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

    def set_rule(self, rule: Rule) -> None:
        """Rules stack in the order they are set; `normal` clears the rules of its substring (null: all)."""
        if rule.scenario == "normal":
            self.rules = [r for r in self.rules if rule.link_contains not in (None, r.link_contains)]
            if rule.link_contains is not None:
                self.rules.append(rule)  # shields these links from broader rules set before it
        else:
            self.rules = [
                r for r in self.rules if (r.link_contains, r.scenario) != (rule.link_contains, rule.scenario)
            ]
            self.rules.append(rule)
        for order in self.orders.values():
            if rule.matches(order.link):
                self.stamp(order, rule)

    def call_rule(self, links: list[str | None]) -> Rule | None:
        """The most recent call scenario for any of the links (None stands for a call about no order)."""
        for rule in reversed(self.rules):
            if any(rule.matches(link) for link in links):
                if rule.scenario == "normal":
                    return None
                if rule.scenario in CALL_SCENARIOS:
                    return rule
        return None

    def stamp_new(self, order: SimOrder) -> None:
        """A new order takes every delivery scenario that matches its link, oldest first."""
        for rule in self.rules:
            if rule.matches(order.link):
                self.stamp(order, rule)

    def stamp(self, order: SimOrder, rule: Rule) -> None:
        """Apply a fate-changing scenario to an order, from its present count (orders cannot lose delivery).

        Partial and link faults only touch orders still under way; a drop also hits completed orders.
        `value` is the delivered share where delivery ends (partial: 0.5, link fault: now) or the share that
        drops (0.1). Scenarios about calls (outage, slow, garbled, lost_answer) are looked up per call.
        """
        status, delivered = order.state(self.clock.now())
        final = status in (COMPLETED, PARTIAL, CANCELED)
        share = None if rule.value is None else min(rule.value, 1.0)
        if rule.scenario == "drop":
            order.drop_fraction = 0.1 if share is None else share
        elif final:
            return
        elif rule.scenario == "normal":
            order.stop_at = order.fault_at = None
            order.drop_fraction = 0.0
        elif rule.scenario == "partial":
            order.stop_at = max(int(order.total * (0.5 if share is None else share)), delivered)
        elif rule.scenario == "link_fault":
            order.fault_at = max(int(order.total * (share or 0.0)), delivered)
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
    status, delivered = order.state(now)
    return {
        "charge": order.charge,
        "start_count": str(order.start_count),
        "status": status,
        "remains": str(order.total - delivered),
        "currency": CURRENCY,
    }


def _refill_status(sim: SimState, refill: SimRefill, now: float) -> str:
    """A refill waits the service's start delay, then restores the dropped units at the service speed."""
    order = sim.orders[refill.order_id]
    begin = refill.requested_at + order.service.start_delay
    if now < begin:
        return PENDING
    dropped = _dropped(order, refill.requested_at)
    return COMPLETED if order.service.speed * (now - begin) >= dropped else IN_PROGRESS


def _dropped(order: SimOrder, now: float) -> int:
    """Units lost after completion at `now`, before any refill restores them."""
    status, delivered = order.state(now)
    return int(delivered * order.drop_fraction) if status == COMPLETED else 0


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
    service = SERVICES.get(p.get("service", "").strip())
    if service is None:
        raise _Error(E_SERVICE)
    link = p.get("link", "").strip()
    if not _LINK.fullmatch(link):
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


def _refill_one(sim: SimState, raw: str) -> int:
    order = sim.orders.get(_as_id(raw) or 0)
    if order is None:
        raise _Error(E_ORDER)
    if not order.service.refill:
        raise _Error(E_REFILL_DISABLED)
    now = sim.clock.now()
    if order.state(now)[0] != COMPLETED:
        raise _Error(E_NOT_COMPLETED)
    if order.last_refill_at is not None and now - order.last_refill_at < REFILL_COOLDOWN_SECONDS:
        raise _Error(E_REFILL_COOLDOWN)
    refill = SimRefill(id=sim.next_refill, order_id=order.id, requested_at=now)
    sim.next_refill += 1
    sim.refills[refill.id] = refill
    order.last_refill_at = now
    return refill.id


def _refill(sim: SimState, p: dict[str, str]) -> Any:
    ids, batch = _ids(p, "orders", "order")
    if not batch:
        return {"refill": str(_refill_one(sim, ids[0]))}
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
    """Cancel is honoured only while an order is Pending and its service allows it, as most providers do."""
    ids, _ = _ids(p, "orders", "order")
    now = sim.clock.now()
    answers: list[dict[str, Any]] = []
    for raw in ids:
        order = sim.orders.get(_as_id(raw) or 0)
        result: Any
        if order is None:
            result = {"error": E_ORDER}
        elif not order.service.cancel or order.state(now)[0] != PENDING:
            result = {"error": E_CANNOT_CANCEL}
        else:
            order.canceled = True
            result = 1
        answers.append({"order": _id_out(raw), "cancel": result})
    return answers


def _services() -> list[dict[str, Any]]:
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
        for s in SERVICES.values()
    ]


def _id_out(raw: str) -> int | str:
    """Ids are echoed as ints in batch answers, like providers do; anything else as sent."""
    as_id = _as_id(raw)
    return raw if as_id is None else as_id


def _links_of(sim: SimState, action: str, p: dict[str, str]) -> list[str | None]:
    """The links a call is about, so link-scoped call scenarios hit only those calls."""
    if action == "add":
        return [p.get("link", "").strip()]

    def ids(*names: str) -> list[int]:
        raw = ",".join(p.get(name, "") for name in names).split(",")
        return [i for i in (_as_id(part.strip()) for part in raw) if i is not None]

    orders = [sim.orders[i] for i in ids("order", "orders") if i in sim.orders]
    if action == "refill_status":
        orders += [sim.orders[sim.refills[i].order_id] for i in ids("refill", "refills") if i in sim.refills]
    links: list[str | None] = [order.link for order in orders]
    return links or [None]


_ACTIONS = {"services", "add", "status", "refill", "refill_status", "cancel", "balance"}


async def _api_v2(request: Request) -> Response:
    sim: SimState = request.app.state.sim
    try:
        p = await _params(request)
        if p.get("key") != sim.api_key:
            raise _Error(E_KEY)
        action = p.get("action", "").strip()
        if action not in _ACTIONS:
            raise _Error(E_REQUEST)
        rule = sim.call_rule(_links_of(sim, action, p))
        scenario = rule.scenario if rule else "normal"
        if scenario == "slow":
            await asyncio.sleep(2.0 if rule is None or rule.value is None else max(rule.value, 0.0))
        if scenario == "outage":
            return PlainTextResponse("503 Service Unavailable", status_code=503)
        if scenario == "garbled" and action == "status":
            return Response('{"charge": "0.2781", "status": "In pro', media_type="application/json")
        if action == "services":
            answer: Any = _services()
        elif action == "balance":
            answer = {"balance": BALANCE, "currency": CURRENCY}
        elif action == "add":
            answer = _add(sim, p)
            if scenario == "lost_answer":
                # The order was taken, but the answer is lost on the way back: the case idempotency is for.
                return PlainTextResponse("502 Bad Gateway", status_code=502)
        elif action == "status":
            answer = _status(sim, p)
        elif action == "refill":
            answer = _refill(sim, p)
        elif action == "refill_status":
            answer = _refill_status_action(sim, p)
        else:
            answer = _cancel(sim, p)
    except _Error as exc:
        answer = {"error": exc.text}
    return JSONResponse(answer)


# ---------------------------------------------------------------------------------------------- control


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=10 * 365 * 24 * 3600)


class ScenarioIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link_contains: str | None = None
    scenario: ScenarioName
    value: float | None = Field(default=None, ge=0)


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


PERSISTED = ("orders", "refills", "idempotency", "rules", "next_order", "next_refill")


def _load(state: SimState, path: Path) -> None:
    """Orders of an earlier run: a real provider does not forget orders when it restarts, nor should this."""
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError):
        saved = pickle.loads(path.read_bytes())
        for name in PERSISTED:
            setattr(state, name, saved[name])


def _save(state: SimState, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({name: getattr(state, name) for name in PERSISTED}))
    tmp.replace(path)


def create_simulator_app(
    *, api_key: str = "sim-demo-key", clock: SimClock | None = None, state_file: Path | None = None
) -> FastAPI:
    """A fresh simulator with its own state; tests create one per test.

    With `state_file` its orders survive a restart (the dev stack keeps it under its data folder).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state_file is not None:
            _load(app.state.sim, state_file)
        yield
        if state_file is not None:
            _save(app.state.sim, state_file)

    app = FastAPI(
        title="API v2 provider simulator",
        docs_url="/sim/docs",
        openapi_url="/sim/openapi.json",
        lifespan=lifespan,
    )
    app.state.sim = SimState(clock=clock or SimClock(), api_key=api_key)

    app.add_api_route("/api/v2", _api_v2, methods=["GET", "POST"], include_in_schema=False)

    @app.post("/sim/clock/advance")
    async def advance(body: AdvanceIn) -> dict[str, float]:
        sim: SimState = app.state.sim
        sim.clock.advance(body.seconds)
        return {"now": sim.clock.now()}

    @app.post("/sim/scenario")
    async def scenario(body: ScenarioIn) -> dict[str, Any]:
        """Set a scenario for later calls and new orders, and apply it to the existing orders it matches."""
        sim: SimState = app.state.sim
        rule = Rule(body.link_contains, body.scenario, body.value)
        sim.set_rule(rule)
        matched = sum(1 for o in sim.orders.values() if rule.matches(o.link))
        return {"scenario": rule.scenario, "link_contains": rule.link_contains, "orders": matched}

    @app.post("/sim/reset")
    async def reset() -> dict[str, bool]:
        sim: SimState = app.state.sim
        app.state.sim = SimState(clock=sim.clock, api_key=sim.api_key)
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
