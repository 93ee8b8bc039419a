"""The SMM "API v2" server at `/api/v2` for resellers and existing panel software (`customer` keys only).

Liberal in what it takes: POST form (urlencoded or multipart), POST JSON, or GET query, the key in the
parameters, in `X-Api-Key` or as a Bearer token. Always HTTP 200 with JSON, errors as `{"error": <standard
text>}`; numbers as strings, money with up to 5 decimals. It is the same back office as REST: orders are
placed by `store.orders.place_order` and started like REST's, status comes from the read model, refill and
cancel go to the order's workflow.

API v2 has no Idempotency-Key: each `add` is a new order (idempotency key `apiv2:<fresh uuid>`), unless the
client sends the optional `idempotency_key` parameter (as the simulator's upstream extension does), which
makes a retried `add` return the first order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.actions import HttpMessages, place_and_start
from api.auth import throttled
from api.errors import ApiError
from api.starts import WorkflowStarts
from backoffice.settings import Settings
from store import ledger
from store import orders as store_orders
from store.catalog import public_services
from store.keys import Caller, authenticate
from store.models import Order
from workflows import policy
from workflows.models import OrderAction, RefillRequest
from workflows.order import OrderWorkflow
from workflows.policy import MICROS
from workflows.text import text_problem

router = APIRouter(tags=["api v2"])
log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_BATCH = 100
MAX_ID = 2**63 - 1
FANOUT = 16
INTEGER = re.compile(r"-?[0-9]{1,19}")  # ASCII digits: `\d` would take Arabic-Indic or full-width ones
# Parameters of the other service types that hold one item a line (api-v2.md); every other one is one line.
MULTILINE = frozenset({"comments", "usernames", "keywords", "hashtags"})

INCORRECT_REQUEST = "Incorrect request"
INVALID_KEY = "Invalid API key"
INCORRECT_SERVICE = "Incorrect service ID"
INCORRECT_ORDER = "Incorrect order ID"
REFILL_NOT_FOUND = "Refill not found"
CANNOT_CANCEL = "The order cannot be canceled"
UNAVAILABLE = "Service temporarily unavailable, try again later"
# The order did not answer in time but may still act: a client must look before it sends the request again.
PENDING = "Request pending: it may still take effect, check the order status before sending it again"

# Intake refusals (store.orders.OrderRejected codes) as API v2's standard texts; the rest keep their message.
INTAKE_TEXTS = {
    "unknown_service": INCORRECT_SERVICE,
    "bad_link": "Bad link",
    "insufficient_funds": "Not enough funds on balance",
    "bad_dripfeed": INCORRECT_REQUEST,
    "idempotency_conflict": INCORRECT_REQUEST,
    "customer_not_found": INVALID_KEY,
}
# Workflow refusals of a refill; others keep the workflow's own text.
# API v2 clients know the standard texts: the cooldown refusal keeps its "24 hours" wording whatever
# the service's cooldown.
REFILL_TEXTS = dict((policy.REFILL_DISABLED, policy.NOT_COMPLETED, policy.refill_too_soon(24)))

PARAMETERS = [
    ("key", "the customer's API key (or send it in `X-Api-Key`)"),
    ("action", "services, add, status, refill, refill_status, cancel, balance"),
    ("service", "add: service id"),
    ("link", "add: the target link"),
    ("quantity", "add: units (per run for a drip-feed)"),
    ("runs", "add: drip-feed runs"),
    ("interval", "add: drip-feed minutes between runs"),
    ("idempotency_key", "add (optional extension): a retried add with the same key returns the same order"),
    ("order", "status, refill, cancel: one order id"),
    ("orders", "status, refill, cancel: up to 100 comma-separated order ids"),
    ("refill", "refill_status: one refill id"),
    ("refills", "refill_status: up to 100 comma-separated refill ids"),
]
OPENAPI = {
    "description": "SMM API v2 (see docs/api.md). Parameters may also come as a form or JSON body. "
    'Every answer is HTTP 200 JSON; errors are `{"error": "<standard text>"}`.',
    "parameters": [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "string", "maxLength": 2048},
            "description": text,
        }
        for name, text in PARAMETERS
    ],
    "responses": {
        "200": {
            "description": 'the action\'s answer, or `{"error": ...}`',
            "content": {"application/json": {"schema": {}}},
        },
        "429": {
            "description": "too many failed authentications from this address: "
            '`{"error": "Invalid API key"}` with Retry-After',
            "content": {"application/json": {"schema": {}}},
        },
    },
}


class V2Error(Exception):
    """A protocol error: answered as HTTP 200 `{"error": text}`."""

    def __init__(self, text: str, *, retry_after: int | None = None) -> None:
        super().__init__(text)
        self.text, self.retry_after = text, retry_after


def _invalid_key(request: Request) -> V2Error:
    """`Invalid API key`; once the client has failed too often, with the wait for a 429 (docs/api.md)."""
    return V2Error(INVALID_KEY, retry_after=throttled(request))


def money(micros: int, rounding: str = ROUND_HALF_UP) -> str:
    """Micro-units as API v2 money: at most 5 decimals, at least 2 ("0.90", "0.27819", "100.84292")."""
    value = (Decimal(micros) / MICROS).quantize(Decimal("0.00001"), rounding=rounding)
    text = f"{value:f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac:0<2}"


def _scalar(value: Any) -> str | None:
    """One parameter value as text; JSON numbers and booleans are taken as their text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return str(value).strip()
    return None


async def _parameters(request: Request) -> dict[str, Any]:
    """Query parameters, overlaid by the body's (form or JSON), whichever the client sent; every text in
    them must pass the back office's text rule (workflows/text.py)."""
    params = await _raw_parameters(request)
    for name, value in params.items():
        items = value if isinstance(value, list) else [value]
        if text_problem(name) is not None or any(
            isinstance(item, str) and text_problem(item, multiline=name in MULTILINE) is not None
            for item in items
        ):
            raise V2Error(INCORRECT_REQUEST)
    return params


async def _raw_parameters(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method != "POST":
        return params
    body = await request.body()
    if len(body) > MAX_BODY:
        raise V2Error(INCORRECT_REQUEST)
    if not body.strip():
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as exc:  # a malformed multipart body is the client's mistake, not ours
            raise V2Error(INCORRECT_REQUEST) from exc
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params
    text = body.decode("utf-8", errors="replace")
    if content_type == "application/json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        # A body nested thousands of levels deep exhausts the parser's recursion: a bad request too, never
        # "try again later".
        except (ValueError, RecursionError) as exc:
            raise V2Error(INCORRECT_REQUEST) from exc
        if not isinstance(data, dict):
            raise V2Error(INCORRECT_REQUEST)
        params.update(data)
        return params
    params.update(dict(parse_qsl(text, keep_blank_values=True)))
    return params


def _key(request: Request, params: dict[str, Any]) -> str | None:
    key = _scalar(params.get("key")) or request.headers.get("x-api-key")
    if not key:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = value.strip()
    return key or None


def _int(value: Any, *, low: int = 1, high: int = MAX_ID) -> int | None:
    text = _scalar(value)
    if text is None or not INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if low <= number <= high else None


def _ids(params: dict[str, Any], one: str, many: str) -> tuple[list[str], bool] | None:
    """The ids of a single (`one`) or batch (`many`) call as raw texts, and whether it was a batch."""
    raw = params.get(many)
    if raw is not None:
        items = raw if isinstance(raw, list) else str(raw).split(",")
        texts = [t for t in (_scalar(i) for i in items) if t]
        if not texts or len(texts) > MAX_BATCH:
            raise V2Error(INCORRECT_REQUEST)
        return texts, True
    single = _scalar(params.get(one))
    if single:
        return [single], False
    return None


class Api2:
    """One API v2 call: the caller, its parameters, and the app's session, Temporal client and settings."""

    def __init__(
        self,
        session: AsyncSession,
        temporal: Client,
        settings: Settings,
        caller: Caller,
        params: dict[str, Any],
        starts: WorkflowStarts,
    ) -> None:
        self.session, self.temporal, self.settings = session, temporal, settings
        self.caller, self.params, self.starts = caller, params, starts

    @property
    def customer_id(self) -> int:
        assert self.caller.customer_id is not None
        return self.caller.customer_id

    async def services(self) -> Any:
        return [
            {
                "service": s.id,
                "name": s.name,
                "type": s.type,
                "category": s.category,
                "rate": money(s.rate_micros),
                "min": str(s.min_quantity),
                "max": str(s.max_quantity),
                "refill": s.refill_days > 0,
                "cancel": s.cancel,
                "dripfeed": s.dripfeed,
            }
            for s, _available in await public_services(self.session)
        ]

    async def balance(self) -> Any:
        micros = await ledger.balance(self.session, ledger.customer_account(self.customer_id))
        return {"balance": money(micros, ROUND_DOWN), "currency": self.settings.currency}

    async def add(self) -> Any:
        p = self.params
        service = _int(p.get("service"))
        if service is None:
            raise V2Error(INCORRECT_SERVICE)
        link = _scalar(p.get("link"))
        if not link or len(link) > 2048:
            raise V2Error("Bad link")
        quantity = _int(p.get("quantity"), low=-(10**9), high=10**9)
        if quantity is None:
            raise V2Error(INCORRECT_REQUEST)
        runs: int | None = None
        interval: int | None = None
        runs_text, interval_text = _scalar(p.get("runs")), _scalar(p.get("interval"))
        if runs_text not in (None, "", "0", "1"):  # 0 or 1 run is a plain order, as panels read it
            runs = _int(runs_text, low=2, high=1000)
            interval = _int(interval_text, low=1, high=10080)
            if runs is None or interval is None:
                raise V2Error(INCORRECT_REQUEST)
        given = _scalar(p.get("idempotency_key"))
        if given is not None and not (0 < len(given) <= 150 and given.isprintable()):
            raise V2Error(INCORRECT_REQUEST)
        key = f"apiv2:{given or uuid.uuid4()}"
        request = store_orders.OrderRequest(
            customer_id=self.customer_id,
            service_id=service,
            link=link,
            quantity=quantity,
            runs=runs,
            interval=interval,
        )
        try:
            order, _created = await place_and_start(self.session, self.starts, self.caller, request, key)
        except store_orders.OrderRejected as exc:
            raise V2Error(INTAKE_TEXTS.get(exc.code) or exc.message[:1].upper() + exc.message[1:]) from exc
        return {"order": order.id}

    def _status_of(self, o: Order) -> dict[str, Any]:
        # The protocol's formula refund = charge * remains / quantity gives back what the order refunded
        # (docs/api.md, "API v2 status"); `charge` is the price paid at intake.
        status, remains = policy.reseller_view(
            status=o.status,
            quantity=o.quantity,
            delivered=o.delivered,
            charge=o.charge_micros,
            refunded=o.refunded_micros,
            refunded_units=o.refunded_units,
        )
        answer: dict[str, Any] = {
            "charge": money(o.charge_micros),
            "start_count": str(o.start_count or 0),
            "status": status,
            "remains": str(remains),
            "currency": self.settings.currency,
        }
        if o.runs:
            # The back office runs a drip-feed as one order: its runs are not orders of their own.
            answer |= {"runs": str(o.runs), "interval": str(o.interval_minutes), "orders": []}
        return answer

    async def status(self) -> Any:
        ids = _ids(self.params, "order", "orders")
        if ids is None:
            raise V2Error(INCORRECT_ORDER)
        texts, batch = ids
        numbers = {t: _int(t) for t in texts}
        found = await store_orders.orders_of_customer(
            self.session, self.customer_id, [n for n in numbers.values() if n is not None]
        )

        def one(text: str) -> dict[str, Any]:
            number = numbers[text]
            order = found.get(number) if number is not None else None
            return self._status_of(order) if order is not None else {"error": INCORRECT_ORDER}

        if not batch:
            answer = one(texts[0])
            if "error" in answer:
                raise V2Error(INCORRECT_ORDER)
            return answer
        return {text: one(text) for text in texts}

    async def _each_order(
        self,
        texts: list[str],
        act: Callable[[Order], Awaitable[Any]],
        refusal_text: Callable[[ApiError], str],
    ) -> list[tuple[str, Any]]:
        """Run `act` on each of the caller's orders among `texts`, a few at a time: (text, answer)."""
        numbers = {t: _int(t) for t in texts}
        found = await store_orders.orders_of_customer(
            self.session, self.customer_id, [n for n in numbers.values() if n is not None]
        )
        gate = asyncio.Semaphore(FANOUT)

        async def one(text: str) -> tuple[str, Any]:
            number = numbers[text]
            order = found.get(number) if number is not None else None
            if order is None:
                return text, {"error": INCORRECT_ORDER}
            async with gate:
                try:
                    return text, await act(order)
                except ApiError as exc:
                    return text, {"error": refusal_text(exc)}

        return list(await asyncio.gather(*(one(t) for t in texts)))

    def _id_of(self, text: str) -> int | str:
        number = _int(text)
        return number if number is not None else text

    async def refill(self) -> Any:
        ids = _ids(self.params, "order", "orders")
        if ids is None:
            raise V2Error(INCORRECT_ORDER)
        texts, batch = ids

        async def act(order: Order) -> int:
            request = RefillRequest(actor=self.caller.actor, reason="API v2 refill")
            messages = HttpMessages(self.temporal, self.settings)
            ticket = await messages.send(order, OrderWorkflow.request_refill, request, via="api_v2")
            return ticket.refill_id

        def text_of(exc: ApiError) -> str:
            if exc.status in (503, 504):
                return UNAVAILABLE if exc.status == 503 else PENDING
            return REFILL_TEXTS.get(exc.code, exc.message)

        results = await self._each_order(texts, act, text_of)
        if not batch:
            result = results[0][1]
            if isinstance(result, dict):
                raise V2Error(result["error"])
            return {"refill": str(result)}
        return [{"order": self._id_of(text), "refill": result} for text, result in results]

    async def refill_status(self) -> Any:
        ids = _ids(self.params, "refill", "refills")
        if ids is None:
            raise V2Error(REFILL_NOT_FOUND)
        texts, batch = ids
        numbers = {t: _int(t) for t in texts}
        found = await store_orders.refills_of_customer(
            self.session, self.customer_id, [n for n in numbers.values() if n is not None]
        )

        def status(text: str) -> str | None:
            number = numbers[text]
            refill = found.get(number) if number is not None else None
            return refill.status if refill is not None else None

        if not batch:
            single = status(texts[0])
            if single is None:
                raise V2Error(REFILL_NOT_FOUND)
            return {"status": single}
        return [
            {
                "refill": self._id_of(t),
                "status": s if (s := status(t)) is not None else {"error": REFILL_NOT_FOUND},
            }
            for t in texts
        ]

    async def cancel(self) -> Any:
        ids = _ids(self.params, "order", "orders")
        if ids is None:
            raise V2Error(INCORRECT_ORDER)
        texts, _batch = ids

        async def act(order: Order) -> int:
            cancel = OrderAction(actor=self.caller.actor, reason="API v2 cancel")
            messages = HttpMessages(self.temporal, self.settings)
            await messages.send(order, OrderWorkflow.cancel, cancel, via="api_v2")
            return 1

        def text_of(exc: ApiError) -> str:
            return {503: UNAVAILABLE, 504: PENDING}.get(exc.status, CANNOT_CANCEL)

        results = await self._each_order(texts, act, text_of)
        # Always the batch shape: clients that send `order` read the same list.
        return [{"order": self._id_of(text), "cancel": result} for text, result in results]


ACTIONS: dict[str, Callable[[Api2], Awaitable[Any]]] = {
    "services": Api2.services,
    "add": Api2.add,
    "status": Api2.status,
    "refill": Api2.refill,
    "refill_status": Api2.refill_status,
    "cancel": Api2.cancel,
    "balance": Api2.balance,
}


async def api_v2(request: Request) -> JSONResponse:
    """The SMM API v2 endpoint: `key` + `action`, answered with HTTP 200 JSON whatever happens."""
    try:
        answer = await _answer(request)
    except V2Error as exc:
        if exc.retry_after is not None:
            # Only clients sending wrong keys see this: the usual text, and the status and header HTTP
            # clients back off on.
            headers = {"Retry-After": str(exc.retry_after)}
            return JSONResponse({"error": exc.text}, status_code=429, headers=headers)
        answer = {"error": exc.text}
    except Exception:  # clients read the body, not the status: even our own failure answers 200
        log.exception("API v2 call failed")
        answer = {"error": UNAVAILABLE}
    return JSONResponse(answer)


for _method in ("GET", "POST"):
    router.add_api_route(
        "/api/v2",
        api_v2,
        methods=[_method],
        operation_id=f"api_v2_{_method.lower()}",
        openapi_extra=OPENAPI,
        response_model=None,
        summary=f"SMM API v2 ({_method})",
    )


async def _answer(request: Request) -> Any:
    params = await _parameters(request)
    key = _key(request, params)
    if not key or len(key) > 300:
        raise _invalid_key(request)
    async with request.app.state.sessions() as session:
        caller = await authenticate(session, key)
    if caller is None or caller.role != "customer":
        raise _invalid_key(request)
    action = ACTIONS.get(_scalar(params.get("action")) or "")
    if action is None:
        raise V2Error(INCORRECT_REQUEST)
    async with request.app.state.sessions() as session:  # fresh: `add` begins its own transaction
        state = request.app.state
        call = Api2(session, state.temporal, state.settings, caller, params, state.starts)
        return await action(call)
