"""A subscription's whole path for tests: the simulator served over HTTP (its subscription service watches
accounts), a catalogue with a Subscriptions service whose child orders go to a scripted provider, a funded
customer, and a worker running SubscriptionWorkflow and OrderWorkflow with the real store activities."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from simserver import serve
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from activities.projection import ProjectionActivities
from activities.slots import SlotActivities
from activities.subscriptions import SubscriptionActivities
from backoffice.subscriptions import start_subscription_workflow, workflow_id
from providers.simulator.app import create_simulator_app
from providers.simulator.state import SimState
from store import keys, ledger
from store import subscriptions as store_subscriptions
from store.catalog import load_catalog
from store.customers import create_customer, deposit
from store.db import transaction
from store.models import Order, Provider
from support import ScriptedProvider, catalog
from workflows import policy
from workflows.order import OrderWorkflow
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_models import SubscriptionState

SUBSCRIPTION_SERVICE = 60
CHILD_SERVICE = 10  # support.SERVICE: rate 1.00 per 1000, routed to the scripted provider
POST_LINKS = r"https://instagram\.com/p/[A-Za-z0-9_.]{1,60}"


@dataclass
class Stack:
    env: WorkflowEnvironment
    sessions: async_sessionmaker[AsyncSession]
    sim_url: str
    sim: SimState
    task_queue: str
    customer_id: int
    caller: keys.Caller
    provider: ScriptedProvider

    async def subscribe(
        self, username: str = "acct", *, polls_per_run: int = 500, **fields: Any
    ) -> WorkflowHandle[Any, SubscriptionState]:
        """Place a subscription (as the storefront) and start its workflow (continuing as new after
        `polls_per_run` polls)."""
        values: dict[str, Any] = {"min_quantity": 100, "max_quantity": 200} | fields
        request = store_subscriptions.SubscriptionRequest(
            self.customer_id, SUBSCRIPTION_SERVICE, username, **values
        )
        today = (await self.env.get_current_time()).date()
        async with transaction(self.sessions) as session:
            row, _ = await store_subscriptions.place_subscription(
                session, self.caller, request, uuid.uuid4().hex, today
            )
            frozen = store_subscriptions.subscription_input(row)
        frozen = dataclasses.replace(frozen, polls_per_run=polls_per_run)
        await start_subscription_workflow(self.env.client, self.task_queue, frozen)
        return self.env.client.get_workflow_handle_for(
            SubscriptionWorkflow.run, workflow_id(frozen.subscription_id)
        )

    async def publish(self, username: str = "acct", count: int = 1) -> None:
        """The account posts, through the simulator's control API."""
        async with httpx.AsyncClient(base_url=self.sim_url) as http:
            answer = await http.post(f"/sim/accounts/{username}/posts", json={"count": count})
            assert answer.status_code == 200, answer.text

    async def until(
        self,
        handle: WorkflowHandle[Any, SubscriptionState],
        reached: Callable[[SubscriptionState], bool],
        *,
        step: timedelta = timedelta(minutes=30),
        limit: int = 200,
    ) -> SubscriptionState:
        """Skip time in `step`s until the subscription's state satisfies `reached`."""
        for _ in range(limit):
            state: SubscriptionState = await handle.query(SubscriptionWorkflow.state)
            if reached(state):
                return state
            await self.env.sleep(step)
        raise AssertionError(f"the subscription never got there; last state {state}")

    async def ended(self, handle: WorkflowHandle[Any, SubscriptionState]) -> SubscriptionState:
        """Skip time until the subscription has ended; its workflow's result."""
        await self.until(handle, lambda s: s.status in policy.SUBSCRIPTION_ENDED, step=timedelta(hours=1))
        return await handle.result()

    async def balance(self) -> int:
        async with self.sessions() as session:
            return await ledger.balance(session, ledger.customer_account(self.customer_id))

    async def orders(self) -> list[Order]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Order).where(Order.customer_id == self.customer_id).order_by(Order.id)
            )
            return list(rows)


def subscription_catalog(sim_url: str) -> dict[str, Any]:
    """support.catalog's child service (for post links) and a Subscriptions service on the simulator."""
    shop = catalog(link_pattern=POST_LINKS, min=10, max=1000)
    # Hourly polls: a day of skipped time is a couple of dozen polls.
    shop["providers"].append(
        {"name": "sim", "api_url": f"{sim_url}/api/v2", "api_key": "sim-key", "poll_interval_seconds": 3600}
    )
    shop["services"].append(
        {
            "id": SUBSCRIPTION_SERVICE,
            "name": "Auto likes",
            "category": "Instagram",
            "type": "Subscriptions",
            "child_service": CHILD_SERVICE,
            "rate": "1.00",
            "min": 10,
            "max": 1000,
            "pace_per_hour": 1000,
            "link_pattern": ".*",
            "routes": [{"provider": "sim", "service": "201"}],
        }
    )
    return shop


def stack_worker(
    client: Client,
    task_queue: str,
    sessions: async_sessionmaker[AsyncSession],
    provider: ScriptedProvider,
    http: httpx.AsyncClient,
) -> Worker:
    """One worker for both workflows (a subscription's child orders start on its task queue): the real store
    and subscription activities, the scripted provider for the child orders' deliveries."""
    provider.sessions = sessions
    ledger_steps, projection, slots = (
        LedgerActivities(sessions),
        ProjectionActivities(sessions),
        SlotActivities(sessions),
    )
    subs = SubscriptionActivities(sessions, http)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SubscriptionWorkflow, OrderWorkflow],
        activities=[
            ledger_steps.settle_order,
            ledger_steps.refund_order,
            projection.project_order,
            projection.open_refill,
            slots.release_slot,
            *provider.activities(),
            subs.forward_subscription,
            subs.check_subscription,
            subs.end_subscription_at_provider,
            subs.place_child_order,
            subs.project_subscription,
        ],
    )


@asynccontextmanager
async def subscription_stack(
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], *, funds: int = 100_000_000
) -> AsyncIterator[Stack]:
    app = create_simulator_app(api_key="sim-key", subscription_services=True)
    async with serve(app) as url:
        async with transaction(sessions) as session:
            await load_catalog(session, subscription_catalog(url))
            customer, _ = await create_customer(session, "Alice")
            await deposit(session, customer.id, funds, key="initial", actor="test")
            caller = await keys.authenticate(session, await keys.create_key(session, "storefront"))
            assert caller is not None
            alpha = await session.scalar(select(Provider.id).where(Provider.name == "alpha"))
        assert alpha is not None
        provider = ScriptedProvider(script={alpha: [("Completed", 0)]})
        task_queue = f"subs-{uuid.uuid4().hex[:8]}"
        async with (
            httpx.AsyncClient() as http,
            stack_worker(env.client, task_queue, sessions, provider, http),
        ):
            yield Stack(env, sessions, url, app.state.sim, task_queue, customer.id, caller, provider)
