"""The simulator's control endpoints under `/sim` (not API v2, no key): move the clock, set scenarios,
offer or withdraw services, read the request log and the orders, reset."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from providers.simulator.model import SimOrder, SimService
from providers.simulator.scenarios import CALL_SCENARIOS, LinkFaultKind, Rule, ScenarioName
from providers.simulator.state import SimState
from providers.simulator.types import TYPES


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
    type: str = Field(default="Default", description="the API v2 type: what `add` must carry")


def _sim(request: Request) -> SimState:
    sim: SimState = request.app.state.sim  # replaced whole by a reset: looked up on every call
    return sim


def _order_view(order: SimOrder, now: float) -> dict[str, Any]:
    status, delivered = order.state(now)
    dropped, restored = order.dropped(now), order.restored(now)
    return {
        "order": order.id,
        "service": order.service.id,
        "type": order.service.type,
        "link": order.link,
        "parameters": order.parameters,
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


async def advance(request: Request, body: AdvanceIn) -> dict[str, float]:
    sim = _sim(request)
    sim.clock.advance(body.seconds)
    sim.commit(meta=True)
    return {"now": sim.clock.now()}


async def scenario(request: Request, body: ScenarioIn) -> dict[str, Any]:
    """Set a scenario for later calls and new orders, and apply it to the existing orders it matches."""
    sim = _sim(request)
    if body.seconds is not None and body.scenario not in CALL_SCENARIOS:
        raise HTTPException(422, "`seconds` is for call scenarios (outage, slow, garbled, lost_answer)")
    until = None if body.seconds is None else sim.clock.now() + body.seconds
    rule = Rule(body.link_contains, body.scenario, body.value, body.service, until, body.fault)
    matched = sim.set_rule(rule)
    sim.commit(meta=True)
    return {
        "scenario": rule.scenario,
        "link_contains": rule.link_contains,
        "service": rule.service,
        "until": rule.until,
        "orders": matched,
    }


async def put_service(request: Request, service_id: str, body: ServiceIn) -> dict[str, Any]:
    """Offer a service (new, or changed: existing orders keep the terms they were placed with)."""
    if not service_id.isdigit() or body.max < body.min:
        raise HTTPException(422, "service ids are numbers and max >= min")
    if body.type not in TYPES:
        raise HTTPException(422, f"type is one of {', '.join(sorted(TYPES))}")
    sim = _sim(request)
    sim.services[service_id] = SimService(service_id, **body.model_dump())
    sim.commit(meta=True)
    return {"service": int(service_id), "services": len(sim.services)}


async def withdraw_service(request: Request, service_id: str) -> dict[str, Any]:
    """Withdraw a service: it leaves `services`, new orders for it get `Incorrect service ID`."""
    sim = _sim(request)
    if sim.services.pop(service_id, None) is None:
        raise HTTPException(404, "no such service")
    sim.commit(meta=True)
    return {"withdrawn": int(service_id), "services": len(sim.services)}


async def requests(request: Request, action: str | None = None) -> dict[str, Any]:
    """Every API v2 request counted by action, and the latest ones (optionally of one action)."""
    sim = _sim(request)
    shown = [asdict(r) for r in sim.requests if action is None or r.action == action]
    return {"total": sim.request_count, "by_action": sim.requests_by_action, "requests": shown}


async def reset(request: Request) -> dict[str, bool]:
    """Forget orders, refills, scenarios, offered services and the request log; the clock keeps its time."""
    sim = _sim(request)
    request.app.state.sim = fresh = SimState(clock=sim.clock, api_key=sim.api_key, store=sim.store)
    fresh.subscriptions.services = dict(sim.subscriptions.services)  # the subscription services it offers
    fresh.commit(everything=True)
    return {"reset": True}


async def orders(request: Request) -> list[dict[str, Any]]:
    sim = _sim(request)
    now = sim.clock.now()
    return [_order_view(o, now) for o in sim.orders.values()]


def add_routes(app: FastAPI) -> None:
    """The endpoints, on the app itself: an included router's routes would only be built at their first
    request, and a scenario's first call would then take long enough to change what orders deliver."""
    app.add_api_route("/sim/clock/advance", advance, methods=["POST"])
    app.add_api_route("/sim/scenario", scenario, methods=["POST"])
    app.add_api_route("/sim/services/{service_id}", put_service, methods=["PUT"])
    app.add_api_route("/sim/services/{service_id}", withdraw_service, methods=["DELETE"])
    app.add_api_route("/sim/requests", requests, methods=["GET"])
    app.add_api_route("/sim/reset", reset, methods=["POST"])
    app.add_api_route("/sim/orders", orders, methods=["GET"])
