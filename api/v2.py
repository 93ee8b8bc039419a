"""The SMM "API v2" server at `/api/v2` for resellers and existing panel software (`customer` keys only).

Liberal in what it takes: POST form (urlencoded or multipart), POST JSON, or GET query, the key in the
parameters, in `X-Api-Key` or as a Bearer token. Always HTTP 200 with JSON, errors as `{"error": <standard
text>}`; numbers as strings, money with up to 5 decimals. It is the same back office as REST: orders are
placed by `store.orders.take_order` and started like REST's, status comes from the read model, refill and
cancel go to the order's workflow.

API v2 has no Idempotency-Key: each `add` is a new order (idempotency key `apiv2:<fresh uuid>`), unless the
client sends the optional `idempotency_key` parameter (as the simulator's upstream extension does), which
makes a retried `add` return the first order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api import subscriptions as api_subscriptions
from api.actions import HttpMessages, place_and_start
from api.auth import throttled
from api.errors import ApiError
from api.starts import WorkflowStarts
from backoffice.settings import Settings
from providers import apiv2
from providers.apiv2 import ProtocolError, integer, scalar
from store import ledger, prices
from store import orders as store_orders
from store import runs as store_runs
from store import subscriptions as store_subscriptions
from store.catalog import public_services
from store.keys import Caller, authenticate
from store.models import Order
from workflows import policy
from workflows.models import OrderAction, OrderParameters, RefillRequest, Status
from workflows.order import OrderWorkflow
from workflows.text import LIST_PARAMETERS, parse_parameters, text_problem
from workflows.text import PARAMETERS as TYPE_PARAMETERS

router = APIRouter(tags=["api v2"])
log = logging.getLogger(__name__)

FANOUT = 16
T = TypeVar("T")

UNAVAILABLE = "Service temporarily unavailable, try again later"
# The order did not answer in time but may still act: a client must look before it sends the request again.
PENDING = "Request pending: it may still take effect, check the order status before sending it again"

# Refusals of the store's intake (store.orders.OrderRejected) and of the order's workflow (workflows.policy)
# by code, as the standard texts API v2 clients know; a code not here keeps its own message. The refill
# cooldown keeps the standard "24 hours" wording whatever the service's cooldown.
STANDARD_TEXTS = {
    "unknown_service": apiv2.INCORRECT_SERVICE,
    "bad_link": apiv2.BAD_LINK,
    "insufficient_funds": apiv2.NOT_ENOUGH_FUNDS,
    "bad_dripfeed": apiv2.INCORRECT_REQUEST,
    "idempotency_conflict": apiv2.INCORRECT_REQUEST,
    # A service type's parameters missing or malformed, or a type not taken as an order (Subscriptions).
    "missing_parameter": apiv2.INCORRECT_REQUEST,
    "bad_parameter": apiv2.INCORRECT_REQUEST,
    "type_not_orderable": apiv2.INCORRECT_REQUEST,
    "customer_not_found": apiv2.INVALID_KEY,
    policy.DUPLICATE_LINK[0]: apiv2.ACTIVE_ORDER,
    policy.REFILL_DISABLED[0]: apiv2.REFILL_DISABLED,
    policy.NOT_COMPLETED[0]: apiv2.NOT_COMPLETED,
    policy.refill_too_soon(24)[0]: apiv2.REFILL_TOO_SOON,
}

PARAMETERS = [
    ("key", "the customer's API key (or send it in `X-Api-Key`)"),
    ("action", "services, add, status, refill, refill_status, cancel, balance"),
    ("service", "add: service id"),
    ("link", "add: the target link"),
    ("quantity", "add: units (per run for a drip-feed); not for types that count it (lines, packages)"),
    ("runs", "add: drip-feed runs"),
    ("interval", "add: drip-feed minutes between runs"),
    ("comments", "add (Custom Comments, Comment Replies): one a line"),
    ("usernames", "add (Mentions, Mentions with Hashtags, Mentions Custom List): one a line"),
    ("hashtags", "add (Mentions with Hashtags): one a line"),
    ("keywords", "add (SEO): one a line"),
    ("hashtag", "add (Mentions Hashtag)"),
    ("username", "add (Mentions User Followers, Comment Likes, Comment Replies)"),
    ("media", "add (Mentions Media Likers): the media's link"),
    ("answer_number", "add (Poll)"),
    ("idempotency_key", "add (optional extension): a retried add with the same key returns the same order"),
    ("username", "add (Subscriptions): the account whose new posts get an order each"),
    ("min", "add (Subscriptions): the least units per post"),
    ("max", "add (Subscriptions): the most units per post"),
    ("posts", "add (Subscriptions, optional): how many new posts to serve; unset: unlimited"),
    ("old_posts", "add (Subscriptions, optional): the latest existing posts to serve too"),
    ("delay", "add (Subscriptions, optional): minutes after a post before its order (0, 5, 10, ... 600)"),
    ("expiry", "add (Subscriptions, optional): the last day, d/m/Y"),
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


class KeyRefused(ProtocolError):
    """`Invalid API key`; once the client has failed too often, with the wait for a 429 (docs/api.md)."""

    def __init__(self, request: Request) -> None:
        super().__init__(apiv2.INVALID_KEY)
        self.retry_after = throttled(request)


async def _parameters(request: Request) -> dict[str, Any]:
    """The call's parameters, however they came (providers/apiv2.py); every text in them must pass the back
    office's text rule (workflows/text.py)."""
    params = await apiv2.read_parameters(request)
    for name, value in params.items():
        items = value if isinstance(value, list) else [value]
        if text_problem(name) is not None or any(
            isinstance(item, str) and text_problem(item, multiline=name in LIST_PARAMETERS) is not None
            for item in items
        ):
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
    return params


def _type_texts(params: dict[str, Any]) -> dict[str, str]:
    """The service types' parameters as texts: a JSON list is one item a line, like the form's text."""
    texts: dict[str, str] = {}
    for name in TYPE_PARAMETERS:
        value = params.get(name)
        items = value if isinstance(value, list) else [value]
        if value is None:
            continue
        if any(scalar(item) is None for item in items):
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
        texts[name] = "\n".join(str(scalar(item)) for item in items)
    return texts


def _ids(params: dict[str, Any], action: str, missing: str) -> tuple[list[str], bool]:
    """The ids the call names; a call that names none is refused with `missing`."""
    found = apiv2.ids(params, action)
    if found is None:
        raise ProtocolError(missing)
    return found


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
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.session, self.temporal, self.settings = session, temporal, settings
        self.caller, self.params, self.starts, self.sessions = caller, params, starts, sessions

    @property
    def customer_id(self) -> int:
        assert self.caller.customer_id is not None
        return self.caller.customer_id

    async def services(self) -> Any:
        listed = await public_services(self.session)
        rates = await prices.rates_for(self.session, self.customer_id, [s for s, _ in listed])
        return [
            apiv2.service_answer(
                service=s.id,
                name=s.name,
                kind=s.type,
                category=s.category,
                rate=apiv2.money_from_micros(rates[s.id]),  # the customer's own rate where one is set
                minimum=s.min_quantity,
                maximum=s.max_quantity,
                refill=s.refill_days > 0,
                cancel=s.cancel,
                dripfeed=s.dripfeed,
            )
            for s, _available in listed
        ]

    async def balance(self) -> Any:
        micros = await ledger.balance(self.session, ledger.customer_account(self.customer_id))
        return apiv2.balance_answer(apiv2.money_from_micros(micros, ROUND_DOWN), self.settings.currency)

    async def add(self) -> Any:
        p = self.params
        service = integer(p.get("service"))
        if service is None:
            raise ProtocolError(apiv2.INCORRECT_SERVICE)
        async with self.sessions() as session:  # self.session must not begin a transaction before intake
            subscription = await store_subscriptions.is_subscription_service(session, service)
        if subscription:  # its own parameters (api/subscriptions.py)
            return await api_subscriptions.v2_add(
                self.sessions, self.temporal, self.settings, self.caller, p, service
            )
        link = scalar(p.get("link"))
        if not link or len(link) > 2048:
            raise ProtocolError(apiv2.BAD_LINK)
        quantity: int | None = None  # the types that count their own (lines, packages) need none
        if scalar(p.get("quantity")) not in (None, ""):
            quantity = integer(p.get("quantity"), low=-(10**9), high=10**9)
            if quantity is None:
                raise ProtocolError(apiv2.INCORRECT_REQUEST)
        runs: int | None = None
        interval: int | None = None
        runs_text, interval_text = scalar(p.get("runs")), scalar(p.get("interval"))
        if runs_text not in (None, "", "0", "1"):  # 0 or 1 run is a plain order, as panels read it
            runs = integer(runs_text, low=2, high=1000)
            interval = integer(interval_text, low=1, high=10080)
            if runs is None or interval is None:
                raise ProtocolError(apiv2.INCORRECT_REQUEST)
        given = scalar(p.get("idempotency_key"))
        if given is not None and not (0 < len(given) <= 150 and given.isprintable()):
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
        key = f"apiv2:{given or uuid.uuid4()}"
        parameters = parse_parameters(_type_texts(p))
        if not isinstance(parameters, OrderParameters):
            raise ProtocolError(apiv2.INCORRECT_REQUEST)
        request = store_orders.OrderRequest(
            customer_id=self.customer_id,
            service_id=service,
            link=link,
            quantity=quantity,
            runs=runs,
            interval=interval,
            parameters=parameters,
            liberal=True,
        )
        try:
            order, _created = await place_and_start(self.session, self.starts, self.caller, request, key)
        except store_orders.OrderRejected as exc:
            text = STANDARD_TEXTS.get(exc.code) or exc.message[:1].upper() + exc.message[1:]
            raise ProtocolError(text) from exc
        return {"order": order.id}

    def _status_of(self, o: Order, run_ids: list[int]) -> dict[str, Any]:
        status, remains = _reseller_view(o)
        answer = self._answer(o, o.charge_micros, status, remains)
        if o.runs:
            # A drip-feed lists its runs: each has an id of its own that `status` answers (store/runs.py).
            answer |= {"runs": str(o.runs), "interval": str(o.interval_minutes), "orders": run_ids}
        return answer

    def _answer(self, o: Order, charge: int, status: Status, remains: int) -> dict[str, Any]:
        return apiv2.status_answer(
            charge=apiv2.money_from_micros(charge),
            start_count=o.start_count or 0,
            status=status,
            remains=remains,
            currency=self.settings.currency,
        )

    async def _run_statuses(self, numbers: list[int]) -> dict[int, dict[str, Any]]:
        """`status` of drip-feed runs by their ids: each run's share of its order (policy.drip_feed_view)."""
        found = await store_runs.runs_of_customer(self.session, self.customer_id, numbers)
        answers: dict[int, dict[str, Any]] = {}
        for order in {o.id: o for _, o in found.values()}.values():
            runs = await store_runs.drip_feed_runs(self.session, order.id)
            status, remains = _reseller_view(order)
            view = policy.drip_feed_view(
                [(r.quantity, r.delivered, Status(r.status)) for r in runs],
                order_status=status,
                order_remains=remains,
            )
            for run, (run_status, run_remains) in zip(runs, view, strict=True):
                if run.id in found:
                    charge = policy.price_of_units(run.quantity, order.charge_micros, order.quantity)
                    answers[run.id] = self._answer(order, charge, run_status, run_remains)
        return answers

    async def _mine(
        self, texts: list[str], fetch: Callable[[AsyncSession, int, list[int]], Awaitable[dict[int, T]]]
    ) -> dict[str, T | None]:
        """The caller's orders (or refills) by the ids as sent; None where an id names none of them."""
        numbers = {t: integer(t) for t in texts}
        found = await fetch(self.session, self.customer_id, [n for n in numbers.values() if n is not None])
        return {t: found.get(n) if n is not None else None for t, n in numbers.items()}

    async def status(self) -> Any:
        texts, batch = _ids(self.params, "status", apiv2.INCORRECT_ORDER)
        mine = await self._mine(texts, store_orders.orders_of_customer)
        drip_feeds = [o.id for o in mine.values() if o is not None and o.runs]
        run_ids = await store_runs.run_ids(self.session, drip_feeds) if drip_feeds else {}
        # An id that names none of the caller's orders may name a run of one of their drip-feeds.
        others = [n for t in texts if mine[t] is None and (n := integer(t)) is not None]
        runs = await self._run_statuses(others) if others else {}
        # What names neither may name one of the caller's subscriptions (api/subscriptions.py).
        rest = [n for n in others if n not in runs]
        subs = await api_subscriptions.v2_statuses(self.session, self.customer_id, rest) if rest else {}
        results = []
        for t in texts:
            if (o := mine[t]) is not None:
                results.append((t, self._status_of(o, run_ids.get(o.id, []))))
            elif (n := integer(t)) is not None and n in runs:
                results.append((t, runs[n]))
            elif n is not None and n in subs:
                results.append((t, subs[n]))
            else:
                results.append((t, apiv2.error(apiv2.INCORRECT_ORDER)))
        return apiv2.answer("status", results, batch=batch)

    async def _each_order(
        self,
        texts: list[str],
        act: Callable[[Order], Awaitable[Any]],
        refusal_text: Callable[[ApiError], str],
    ) -> list[tuple[str, Any]]:
        """Run `act` on each of the caller's orders among `texts`, a few at a time: (text, answer). An order
        that did not answer in time is `UNAVAILABLE` or `PENDING`; `refusal_text` words its refusals."""
        mine = await self._mine(texts, store_orders.orders_of_customer)
        gate = asyncio.Semaphore(FANOUT)

        async def one(text: str) -> tuple[str, Any]:
            order = mine[text]
            if order is None:
                return text, apiv2.error(apiv2.INCORRECT_ORDER)
            async with gate:
                try:
                    return text, await act(order)
                except ApiError as exc:
                    late = {503: UNAVAILABLE, 504: PENDING}.get(exc.status)
                    return text, apiv2.error(late or refusal_text(exc))

        return list(await asyncio.gather(*(one(t) for t in texts)))

    async def refill(self) -> Any:
        texts, batch = _ids(self.params, "refill", apiv2.INCORRECT_ORDER)

        async def act(order: Order) -> int:
            request = RefillRequest(actor=self.caller.actor, reason="API v2 refill")
            messages = HttpMessages(self.temporal, self.settings, self.sessions)
            ticket = await messages.send(order, OrderWorkflow.request_refill, request, via="api_v2")
            return ticket.refill_id

        def text_of(exc: ApiError) -> str:
            return STANDARD_TEXTS.get(exc.code, exc.message)

        results = await self._each_order(texts, act, text_of)
        return apiv2.answer("refill", results, batch=batch)

    async def refill_status(self) -> Any:
        texts, batch = _ids(self.params, "refill_status", apiv2.REFILL_NOT_FOUND)
        mine = await self._mine(texts, store_orders.refills_of_customer)
        results = [
            (t, r.status if (r := mine[t]) is not None else apiv2.error(apiv2.REFILL_NOT_FOUND))
            for t in texts
        ]
        return apiv2.answer("refill_status", results, batch=batch)

    async def cancel(self) -> Any:
        texts, _batch = _ids(self.params, "cancel", apiv2.INCORRECT_ORDER)

        async def act(order: Order) -> int:
            cancel = OrderAction(actor=self.caller.actor, reason="API v2 cancel")
            messages = HttpMessages(self.temporal, self.settings, self.sessions)
            await messages.send(order, OrderWorkflow.cancel, cancel, via="api_v2")
            return 1

        def text_of(exc: ApiError) -> str:
            return apiv2.CANNOT_CANCEL

        results = await self._each_order(texts, act, text_of)
        results = await api_subscriptions.v2_cancels(
            self.session, self.temporal, self.settings, self.caller, results
        )
        return apiv2.answer("cancel", results, batch=True)  # the batch shape, also for `order`


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
    except ProtocolError as exc:
        if isinstance(exc, KeyRefused) and exc.retry_after is not None:
            # Only clients sending wrong keys see this: the usual text, and the status and header HTTP
            # clients back off on.
            headers = {"Retry-After": str(exc.retry_after)}
            return JSONResponse(apiv2.error(exc.text), status_code=429, headers=headers)
        answer = apiv2.error(exc.text)
    except Exception:  # clients read the body, not the status: even our own failure answers 200
        log.exception("API v2 call failed")
        answer = apiv2.error(UNAVAILABLE)
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


def _reseller_view(o: Order) -> tuple[Status, int]:
    # The protocol's formula refund = charge * remains / quantity gives back what the order refunded
    # (docs/api.md, "API v2 status"); `charge` is the price paid at intake.
    return policy.reseller_view(
        status=Status(o.status),
        quantity=o.quantity,
        delivered=o.delivered,
        charge=o.charge_micros,
        refunded=o.refunded_micros,
        refunded_units=o.refunded_units,
    )


async def _answer(request: Request) -> Any:
    params = await _parameters(request)
    key = apiv2.api_key(request, params)
    if not key or len(key) > 300:
        raise KeyRefused(request)
    async with request.app.state.sessions() as session:
        caller = await authenticate(session, key)
    if caller is None or caller.role != "customer":
        raise KeyRefused(request)
    action = ACTIONS.get(scalar(params.get("action")) or "")
    if action is None:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    async with request.app.state.sessions() as session:  # fresh: `add` begins its own transaction
        state = request.app.state
        call = Api2(session, state.temporal, state.settings, caller, params, state.starts, state.sessions)
        return await action(call)
