"""The API v2 actions as the simulator answers them, like a real provider: HTTP 200 with `{"error": ...}`
for protocol errors, numbers as strings, money with 5 decimals; and misbehaving on demand (the call
scenarios: outage, slow, garbled, lost_answer).

Parameters, ids, texts and answer shapes come from the shared protocol module (providers/apiv2.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from providers import apiv2
from providers.apiv2 import ProtocolError, integer, scalar
from providers.simulator import subscriptions
from providers.simulator.model import SimOrder, SimRefill, refill_state
from providers.simulator.scenarios import Subject
from providers.simulator.state import SimState
from providers.simulator.types import typed_add
from workflows.models import Status

CURRENCY = "USD"
BALANCE = apiv2.balance_answer(apiv2.money(Decimal(1000)), CURRENCY)
MAX_RUNS = 1000
REFILL_COOLDOWN_SECONDS = 24 * 3600
_LINK = re.compile(r"https?://\S+")

Params = dict[str, Any]


def _number(value: Any) -> int:
    """A whole number the call needs; `Incorrect request` when it is missing or not one."""
    number = integer(value, low=-apiv2.MAX_ID)
    if number is None:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    return number


def _ids(p: Params, action: str) -> tuple[list[str], bool]:
    found = apiv2.ids(p, action)
    if found is None:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    return found


def _each_order(sim: SimState, texts: list[str], act: Callable[[SimOrder], Any]) -> list[tuple[str, Any]]:
    """Each id with `act`'s result for the order it names, or the refusal: `Incorrect order ID` when it names
    none, the text `act` raises otherwise."""
    results: list[tuple[str, Any]] = []
    for text in texts:
        order = sim.orders.get(integer(text) or 0)
        try:
            if order is None:
                raise ProtocolError(apiv2.INCORRECT_ORDER)
            results.append((text, act(order)))
        except ProtocolError as exc:
            results.append((text, apiv2.error(exc.text)))
    return results


def _services(sim: SimState) -> list[dict[str, Any]]:
    return [
        apiv2.service_answer(
            service=int(s.id),
            name=s.name,
            kind=s.type,
            category=s.category,
            rate=s.rate,
            minimum=s.min,
            maximum=s.max,
            refill=s.refill,
            cancel=s.cancel,
            dripfeed=s.dripfeed,
        )
        for s in sim.services.values()
    ] + subscriptions.services_answer(sim)


def _add(sim: SimState, p: Params) -> dict[str, Any]:
    key = scalar(p.get("idempotency_key")) or None
    if key is not None and key in sim.idempotency:
        return {"order": sim.idempotency[key]}
    if subscriptions.is_subscription_add(sim, p):
        return subscriptions.add(sim, p)
    service = sim.services.get(scalar(p.get("service")) or "")
    if service is None:
        raise ProtocolError(apiv2.INCORRECT_SERVICE)
    link = scalar(p.get("link")) or ""
    fault = sim.link_fault(link, service.id)
    if not _LINK.fullmatch(link) or (fault is not None and fault.fault == "invalid"):
        raise ProtocolError(apiv2.BAD_LINK)
    counted, parameters = typed_add(service.type, p, service.max)
    quantity = _number(p.get("quantity")) if counted is None else counted
    if quantity < service.min:
        raise ProtocolError(apiv2.quantity_below(service.min))
    if quantity > service.max:
        raise ProtocolError(apiv2.quantity_above(service.max))
    runs, interval = 1, 0
    if scalar(p.get("runs")) or scalar(p.get("interval")):
        if not service.dripfeed or service.type != "Default":
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
        runs, interval = _number(p.get("runs")), _number(p.get("interval"))
        if not 1 <= runs <= MAX_RUNS or interval < 0:
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
    order = SimOrder.placed(
        sim.next_order, service, link, quantity, runs, interval, sim.clock.now(), parameters
    )
    sim.next_order += 1
    sim.add_order(order, key)
    return {"order": order.id}


def _order_status(order: SimOrder, now: float) -> dict[str, Any]:
    """The status answer; an order the provider canceled because of its link says why in `reason`."""
    status, delivered = order.state(now)
    answer = apiv2.status_answer(
        charge=order.charge,
        start_count=order.start_count,
        status=status,
        remains=order.total - delivered,
        currency=CURRENCY,
    )
    if status == Status.CANCELED and order.fault_reason and not order.canceled:
        answer["reason"] = order.fault_reason
    return answer


def _status(sim: SimState, p: Params) -> Any:
    texts, batch = _ids(p, "status")
    now = sim.clock.now()
    results = _each_order(sim, texts, lambda o: _order_status(o, now))
    results = subscriptions.with_subscriptions(sim, texts, results, subscriptions.status_of)
    return apiv2.answer("status", results, batch=batch)


def _refill_one(sim: SimState, order: SimOrder, key: str | None) -> int:
    if key is not None and key in sim.idempotency:
        return sim.idempotency[key]
    if not order.service.refill:
        raise ProtocolError(apiv2.REFILL_DISABLED)
    now = sim.clock.now()
    if order.state(now)[0] != Status.COMPLETED:
        raise ProtocolError(apiv2.NOT_COMPLETED)
    if order.last_refill_at is not None and now - order.last_refill_at < REFILL_COOLDOWN_SECONDS:
        raise ProtocolError(apiv2.REFILL_TOO_SOON)
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


def _refill(sim: SimState, p: Params) -> Any:
    texts, batch = _ids(p, "refill")
    # The idempotency key is an extension for single refills; refill and order ids share no key space.
    given = None if batch else scalar(p.get("idempotency_key"))
    key = f"refill:{given}" if given else None
    return apiv2.answer("refill", _each_order(sim, texts, lambda o: _refill_one(sim, o, key)), batch=batch)


def _refill_status(sim: SimState, p: Params) -> Any:
    texts, batch = _ids(p, "refill_status")
    now = sim.clock.now()

    def one(text: str) -> Any:
        refill = sim.refills.get(integer(text) or 0)
        if refill is None:
            return apiv2.error(apiv2.REFILL_NOT_FOUND)
        return refill_state(refill, sim.orders[refill.order_id], now)

    return apiv2.answer("refill_status", [(t, one(t)) for t in texts], batch=batch)


def _cancel_one(sim: SimState, order: SimOrder, now: float) -> int:
    """Honoured while the order is Pending (it ends Canceled) or In progress (delivery stops where it is:
    Partial, with the undelivered remains), if its service allows it; never once it has ended."""
    status, delivered = order.state(now)
    if not order.service.cancel or status not in (Status.PENDING, Status.IN_PROGRESS):
        raise ProtocolError(apiv2.CANNOT_CANCEL)
    if delivered == 0:
        order.canceled = True
    else:
        order.cancel_at = delivered
    sim.changed(orders=[order.id])
    return 1


def _cancel(sim: SimState, p: Params) -> Any:
    texts, _ = _ids(p, "cancel")
    now = sim.clock.now()
    results = _each_order(sim, texts, lambda o: _cancel_one(sim, o, now))
    results = subscriptions.with_subscriptions(sim, texts, results, subscriptions.cancel)
    return apiv2.answer("cancel", results, batch=True)


def _subjects(sim: SimState, action: str, p: Params) -> list[Subject]:
    """The (link, service) pairs a call is about, so scoped call scenarios hit only those calls."""
    if action == "add":
        return [(scalar(p.get("link")) or "", scalar(p.get("service")) or "")]
    found = None
    if action in apiv2.ID_PARAMETERS:
        with contextlib.suppress(ProtocolError):  # a malformed list: the action itself refuses it
            found = apiv2.ids(p, action)
    numbers = [n for n in map(integer, found[0] if found else []) if n is not None]
    if action == "refill_status":
        numbers = [sim.refills[n].order_id for n in numbers if n in sim.refills]
    subjects: list[Subject] = [
        (sim.orders[n].link, sim.orders[n].service.id) for n in numbers if n in sim.orders
    ]
    return subjects or [(None, None)]


_ACTIONS: dict[str, Callable[[SimState, Params], Any]] = {
    "services": lambda sim, p: _services(sim),
    "balance": lambda sim, p: BALANCE,
    "add": _add,
    "status": _status,
    "refill": _refill,
    "refill_status": _refill_status,
    "cancel": _cancel,
}


async def api_v2(request: Request) -> Response:
    """The simulator's `/api/v2`: every request is logged, then answered as its scenario says."""
    sim: SimState = request.app.state.sim
    try:
        params = await apiv2.read_parameters(request)
    except ProtocolError as exc:
        sim.log_request("", {}).http_status = 200
        return JSONResponse(apiv2.error(exc.text))
    entry = sim.log_request(scalar(params.get("action")) or "", params)
    try:
        response = await _answer(sim, request, params)
    except ProtocolError as exc:
        response = JSONResponse(apiv2.error(exc.text))
    entry.http_status = response.status_code
    return response


async def _answer(sim: SimState, request: Request, p: Params) -> Response:
    """One API v2 call, with the call scenario that applies to it.

    `slow` does the work first and answers late: an `add` is taken even when the client has given up waiting.
    """
    if apiv2.api_key(request, p) != sim.api_key:
        raise ProtocolError(apiv2.INVALID_KEY)
    action = scalar(p.get("action")) or ""
    act = _ACTIONS.get(action)
    if act is None:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    rule = sim.call_rule(_subjects(sim, action, p))
    scenario = rule.scenario if rule else "normal"
    if scenario == "outage":
        return PlainTextResponse("503 Service Unavailable", status_code=503)
    response: Response
    if scenario == "garbled" and action == "status":
        response = Response('{"charge": "0.2781", "status": "In pro', media_type="application/json")
    elif scenario == "lost_answer" and action in ("add", "refill"):
        with contextlib.suppress(ProtocolError):
            act(sim, p)
        # The order (refill) was taken, but the answer is lost on the way back: the case idempotency is for.
        response = PlainTextResponse("502 Bad Gateway", status_code=502)
    else:
        try:
            response = JSONResponse(act(sim, p))
        except ProtocolError as exc:
            response = JSONResponse(apiv2.error(exc.text))
    sim.commit()  # before any answer, slow ones included: the work is done whether the client waits or not
    if scenario == "slow":
        await asyncio.sleep(2.0 if rule is None or rule.value is None else max(rule.value, 0.0))
    return response
