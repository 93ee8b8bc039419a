"""Helpers shared by tests: a small catalog, a funded customer, placed orders, and a scripted provider."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from activities.projection import ProjectionActivities
from activities.slots import SlotActivities, route_for
from store import keys, ledger
from store import orders as orders_store
from store.catalog import load_catalog
from store.customers import create_customer, deposit
from store.db import transaction
from store.models import Provider
from store.orders import OrderRequest, order_input, place_order
from workflows.errors import LINK_FAULT, NEEDS_RECONCILIATION, REJECTED
from workflows.models import (
    CancelAnswer,
    CancelRun,
    CheckRefill,
    CheckRun,
    OrderInput,
    OrderState,
    RefillReport,
    RunReport,
    SubmitRefill,
    SubmitRun,
    SubmittedRefill,
    SubmittedRun,
)
from workflows.order import OrderWorkflow

LINK = "https://instagram.com/some.account"
SERVICE = 10


def catalog(**service: Any) -> dict[str, Any]:
    """Two providers; service 10 routes to alpha first, then beta. Rate 1.00 per 1000 units."""
    base = {
        "id": SERVICE,
        "name": "Followers",
        "category": "Instagram",
        "rate": "1.00",
        "min": 10,
        "max": 100000,
        "dripfeed": True,
        "cancel": True,
        "tolerance_pct": "2",
        "pace_per_hour": 1000,
        "link_pattern": r"https://(www\.)?instagram\.com/[A-Za-z0-9_.]{1,30}/?",
        "routes": [{"provider": "alpha", "service": "a1"}, {"provider": "beta", "service": "b1"}],
    }
    base.update(service)
    providers = [
        {"name": name, "api_url": f"http://{name}/api/v2", "api_key": "k", "poll_interval_seconds": 60}
        for name in ("alpha", "beta")
    ]
    return {"providers": providers, "services": [base]}


@dataclass
class Api:
    """The REST API in-process, with a key of each role (see the `api` fixture in tests/api/conftest.py)."""

    http: httpx.AsyncClient
    keys: dict[str, str]
    customer_id: int  # Alice, funded 1.00, who owns the "customer" key
    sessions: async_sessionmaker[AsyncSession]
    other_customer_id: int  # Bob, unfunded, who owns the "other_customer" key
    provider: ScriptedProvider | None = None  # what the fixture's worker delivers with
    providers: dict[str, int] = field(default_factory=dict)  # provider name -> id
    temporal: Client | None = None  # the dev server the fixture's worker polls

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def order(self, role: str = "storefront", key: str = "k1", **body: Any) -> httpx.Response:
        payload = {
            "customer_id": self.customer_id,
            "service_id": SERVICE,
            "link": LINK,
            "quantity": 100,
        } | body
        return await self.http.post(
            "/v1/orders", json=payload, headers={**self.as_(role), "Idempotency-Key": key}
        )


@dataclass
class Shop:
    customer_id: int
    caller: keys.Caller


async def open_shop(
    sessions: async_sessionmaker[AsyncSession], funds: int = 100_000_000, **service: Any
) -> Shop:
    async with transaction(sessions) as session:
        await load_catalog(session, catalog(**service))
        customer, _ = await create_customer(session, "Alice")
        await deposit(session, customer.id, funds, key="initial", actor="test")
        key = await keys.create_key(session, "storefront")
        caller = await keys.authenticate(session, key)
        assert caller is not None
    return Shop(customer.id, caller)


async def place(
    sessions: async_sessionmaker[AsyncSession], shop: Shop, quantity: int, **extra: Any
) -> OrderInput:
    async with transaction(sessions) as session:
        order, _ = await place_order(
            session,
            shop.caller,
            OrderRequest(
                customer_id=shop.customer_id,
                service_id=SERVICE,
                quantity=quantity,
                **({"link": LINK} | extra),
            ),
            idempotency_key=uuid.uuid4().hex,
        )
        return order_input(order)


async def balances(sessions: async_sessionmaker[AsyncSession], order: OrderInput) -> dict[str, int]:
    async with sessions() as session:
        return {
            "customer": await ledger.balance(session, ledger.customer_account(order.customer_id)),
            "escrow": await ledger.balance(session, ledger.escrow_account(order.order_id)),
            "revenue": await ledger.balance(session, ledger.REVENUE),
        }


async def until(
    env: WorkflowEnvironment,
    handle: WorkflowHandle[Any, Any],
    reached: Callable[[OrderState], bool],
    *,
    step: timedelta = timedelta(minutes=1),
    limit: int = 2000,
) -> OrderState:
    """Skip time in `step`s until the order's state satisfies `reached`; returns that state."""
    for _ in range(limit):
        try:
            state: OrderState = await handle.query(OrderWorkflow.state)
        except WorkflowQueryFailedError:
            state = None  # type: ignore[assignment]  # not started yet
        if state is not None and reached(state):
            return state
        await env.sleep(step)
    raise AssertionError(f"the order never got there; last state {state}")


async def event_times(sessions: async_sessionmaker[AsyncSession], order_id: int, kind: str) -> list[datetime]:
    """When the order's timeline recorded events of `kind` (workflow time)."""
    async with sessions() as session:
        return [e.at for e in await orders_store.timeline(session, order_id) if e.kind == kind]


async def set_capacity(sessions: async_sessionmaker[AsyncSession], provider_id: int, capacity: int) -> None:
    async with transaction(sessions) as session:
        await session.execute(update(Provider).where(Provider.id == provider_id).values(capacity=capacity))


async def timeline(sessions: async_sessionmaker[AsyncSession], order_id: int) -> list[tuple[str, str, str]]:
    """The order's timeline as (kind, actor, message), oldest first."""
    async with sessions() as session:
        return [(e.kind, e.actor, e.message) for e in await orders_store.timeline(session, order_id)]


@dataclass(frozen=True)
class SentRun:
    """A run as the scripted provider received it."""

    order_id: int
    run_no: int
    link: str
    quantity: int
    provider_id: int
    provider_service_id: str


@dataclass
class ScriptedProvider:
    """An in-process provider behind the same activity names as the real one.

    `script[provider_id]` is the list of answers `check_run` gives in turn (the last one repeats): (status,
    remains) or (status, remains, link fault text). A provider in `rejects` refuses every submission, one in
    `bad_links` refuses the link, one in `down` never answers. After an accepted cancel, the run answers
    Canceled with the remains it last reported.
    """

    script: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)
    rejects: set[int] = field(default_factory=set)
    bad_links: set[int] = field(default_factory=set)
    down: set[int] = field(default_factory=set)
    lost_answers: set[int] = field(default_factory=set)  # providers whose submissions need reconciliation
    unavailable_checks: int = 0
    forgets_after: dict[int, int] = field(default_factory=dict)  # provider -> checks before it forgets orders
    cancel_allowed: bool = True
    cancel_seconds: float = 0.0  # how long a cancel takes to answer (a slow provider)
    refill_answers: list[str] = field(default_factory=lambda: ["In progress", "Completed"])
    refill_rejects: int = 0  # the next refills the provider refuses (its own cooldown, say)
    submitted: list[SentRun] = field(default_factory=list)
    sessions: async_sessionmaker[AsyncSession] | None = None  # where the slot queue lives
    checks: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    canceled: list[CancelRun] = field(default_factory=list)
    refills: list[SubmitRefill] = field(default_factory=list)
    refill_checks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _runs: dict[str, SentRun] = field(default_factory=dict)
    _last_remains: dict[str, int | None] = field(default_factory=dict)

    @activity.defn(name="submit_run")
    async def submit_run(self, run: SubmitRun) -> SubmittedRun:
        """The real slot claim (the provider queue lives in the test's database), then the script."""
        assert self.sessions is not None, "order_worker hands the provider its sessions"
        route = await route_for(self.sessions, run)
        if isinstance(route, int):
            return SubmittedRun(None, None, queue_position=route)
        provider = route.provider_id

        def refused(text: str, kind: str) -> ApplicationError:
            return ApplicationError(text, provider, type=kind, non_retryable=True)

        if provider in self.down:
            raise ApplicationError(
                "provider unavailable (scripted outage)", provider, type="ProviderUnavailable"
            )
        if provider in self.rejects:
            raise refused("Incorrect service ID", REJECTED)
        if provider in self.bad_links:
            raise refused("Bad link", LINK_FAULT)
        if provider in self.lost_answers:
            raise refused("no answer to the submission", NEEDS_RECONCILIATION)
        sent = SentRun(run.order_id, run.run_no, run.link, run.quantity, provider, route.provider_service_id)
        self.submitted.append(sent)
        provider_order_id = f"{provider}-{len(self.submitted)}"
        self._runs[provider_order_id] = sent
        return SubmittedRun(provider, provider_order_id)

    @activity.defn(name="check_run")
    async def check_run(self, check: CheckRun) -> RunReport:
        if check.provider_id in self.down:
            raise RuntimeError("provider unavailable (scripted outage)")
        if self.unavailable_checks > 0:
            self.unavailable_checks -= 1
            raise RuntimeError("provider unavailable (scripted outage)")
        if self.checks[check.provider_id] >= self.forgets_after.get(check.provider_id, 10**9):
            raise ApplicationError("Incorrect order ID", type=REJECTED, non_retryable=True)
        if any(c.provider_order_id == check.provider_order_id for c in self.canceled):
            remains = self._last_remains.get(check.provider_order_id)
            if remains is None:
                remains = self._runs[check.provider_order_id].quantity
            return RunReport("Canceled", "Canceled", remains, 1000)
        answers = self.script[check.provider_id]
        n = self.checks[check.provider_id]
        self.checks[check.provider_id] += 1
        status, remains, *fault = answers[min(n, len(answers) - 1)]
        self._last_remains[check.provider_order_id] = remains
        return RunReport(status, status.upper(), remains, 1000, link_fault=fault[0] if fault else None)

    @activity.defn(name="cancel_run")
    async def cancel_run(self, cancel: CancelRun) -> CancelAnswer:
        await asyncio.sleep(self.cancel_seconds)
        if not self.cancel_allowed:
            return CancelAnswer(False, "The order cannot be canceled")
        self.canceled.append(cancel)
        return CancelAnswer(True, "")

    @activity.defn(name="submit_refill")
    async def submit_refill(self, refill: SubmitRefill) -> SubmittedRefill:
        if self.refill_rejects > 0:
            self.refill_rejects -= 1
            raise ApplicationError("Refill is disabled for a while", type=REJECTED, non_retryable=True)
        self.refills.append(refill)
        return SubmittedRefill(f"refill-{len(self.refills)}")

    @activity.defn(name="check_refill")
    async def check_refill(self, check: CheckRefill) -> RefillReport:
        n = self.refill_checks[check.provider_refill_id]
        self.refill_checks[check.provider_refill_id] += 1
        status = self.refill_answers[min(n, len(self.refill_answers) - 1)]
        return RefillReport(status, status)

    def activities(self) -> list[Any]:
        return [
            self.submit_run,
            self.check_run,
            self.cancel_run,
            self.submit_refill,
            self.check_refill,
        ]


@asynccontextmanager
async def order_worker(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    provider: ScriptedProvider,
    *,
    replace: dict[str, Callable[..., Any]] | None = None,
) -> AsyncIterator[str]:
    """A worker with the real store activities and the scripted provider; `replace` swaps activities by
    name (a step made to fail on purpose)."""
    task_queue = f"orders-{uuid.uuid4().hex[:8]}"
    provider.sessions = sessions
    ledger_activities = LedgerActivities(sessions)
    projection = ProjectionActivities(sessions)
    slots = SlotActivities(sessions)
    activities: dict[str, Callable[..., Any]] = {
        "settle_order": ledger_activities.settle_order,
        "refund_order": ledger_activities.refund_order,
        "project_order": projection.project_order,
        "open_refill": projection.open_refill,
        "release_slot": slots.release_slot,
        **{a.__name__: a for a in provider.activities()},
        **(replace or {}),
    }
    async with Worker(
        client, task_queue=task_queue, workflows=[OrderWorkflow], activities=list(activities.values())
    ):
        yield task_queue


async def run_order(client: Client, task_queue: str, order: OrderInput) -> Any:
    return await (await start_order(client, task_queue, order)).result()


async def start_order(client: Client, task_queue: str, order: OrderInput) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        OrderWorkflow.run, order, id=f"order-{order.order_id}-{uuid.uuid4().hex[:6]}", task_queue=task_queue
    )
