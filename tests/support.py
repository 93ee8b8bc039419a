"""Helpers shared by tests: a small catalog, a funded customer, placed orders, and a scripted provider."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from activities.projection import ProjectionActivities
from activities.provider import NEEDS_RECONCILIATION, REJECTED
from store import keys, ledger
from store.catalog import load_catalog
from store.customers import create_customer, deposit
from store.db import transaction
from store.orders import OrderRequest, order_input, place_order
from workflows.models import CheckRun, OrderInput, RunStatus, SubmitRun, SubmittedRun
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
                customer_id=shop.customer_id, service_id=SERVICE, link=LINK, quantity=quantity, **extra
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


@dataclass
class ScriptedProvider:
    """An in-process provider behind the same activity names as the real one.

    `script[provider_id]` is the list of (status, remains) answers `check_run` gives in turn (the last one
    repeats); a provider in `rejects` refuses every submission.
    """

    script: dict[int, list[tuple[str, int | None]]] = field(default_factory=dict)
    rejects: set[int] = field(default_factory=set)
    lost_answers: set[int] = field(default_factory=set)  # providers whose submissions need reconciliation
    unavailable_checks: int = 0
    submitted: list[SubmitRun] = field(default_factory=list)
    checks: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    @activity.defn(name="submit_run")
    async def submit_run(self, run: SubmitRun) -> SubmittedRun:
        if run.provider_id in self.rejects:
            raise ApplicationError("Incorrect service ID", type=REJECTED, non_retryable=True)
        if run.provider_id in self.lost_answers:
            raise ApplicationError(
                "no answer to the submission", type=NEEDS_RECONCILIATION, non_retryable=True
            )
        self.submitted.append(run)
        return SubmittedRun(f"{run.provider_id}-{len(self.submitted)}")

    @activity.defn(name="check_run")
    async def check_run(self, check: CheckRun) -> RunStatus:
        if self.unavailable_checks > 0:
            self.unavailable_checks -= 1
            raise RuntimeError("provider unavailable (scripted outage)")
        answers = self.script[check.provider_id]
        n = self.checks[check.provider_id]
        self.checks[check.provider_id] += 1
        status, remains = answers[min(n, len(answers) - 1)]
        return RunStatus(status=status, raw_status=status.upper(), remains=remains, start_count=1000)


@asynccontextmanager
async def order_worker(
    client: Client, sessions: async_sessionmaker[AsyncSession], provider: ScriptedProvider
) -> AsyncIterator[str]:
    task_queue = f"orders-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[OrderWorkflow],
        activities=[
            LedgerActivities(sessions).settle_order,
            ProjectionActivities(sessions).project_order,
            provider.submit_run,
            provider.check_run,
        ],
    ):
        yield task_queue


async def run_order(client: Client, task_queue: str, order: OrderInput) -> Any:
    return await (await start_order(client, task_queue, order)).result()


async def start_order(client: Client, task_queue: str, order: OrderInput) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        OrderWorkflow.run, order, id=f"order-{order.order_id}-{uuid.uuid4().hex[:6]}", task_queue=task_queue
    )
