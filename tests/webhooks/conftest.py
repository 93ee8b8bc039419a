"""Webhook fixtures: a real receiver over HTTP on 127.0.0.1, and the delivery workflow on Temporal.

`skipping`: the time-skipping server runs WebhookDelivery and its real activities (events come from the
store, as the projection writes them), for backoff measured in hours. `live`: the REST API, the worker
(the real OrderWorkflow with a scripted provider, and WebhookDelivery) and the feeder on the dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from simserver import serve
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from webhook_receiver import Live, Receiver, Skipping

from activities.webhooks import WebhookActivities
from api.app import create_app
from api.order_view import webhook_snapshot
from backoffice.settings import Settings
from backoffice.webhook_feed import WebhookFeeder
from store import keys, webhooks
from store.customers import create_customer
from store.db import transaction
from store.models import Provider
from support import Api, ScriptedProvider, open_shop, order_worker
from workflows.webhooks import WebhookDelivery, delivery_workflow_id

Sessions = async_sessionmaker[AsyncSession]


@contextlib.asynccontextmanager
async def feeding(feeder: WebhookFeeder) -> AsyncIterator[None]:
    task = asyncio.create_task(feeder.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _endpoint_ids_of_our_own(sessions: Sessions) -> None:
    """Endpoint ids name delivery workflows (webhooks-<id>) on a Temporal server shared by the whole run."""
    async with transaction(sessions) as session:
        start = uuid.uuid4().int % 10**12 + 1
        await session.execute(text(f"ALTER TABLE webhook_endpoints ALTER COLUMN id RESTART WITH {start}"))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    async with serve(app) as url:
        yield app, f"{url}/hooks/smm"


@pytest.fixture
async def skipping(
    temporal_env: WorkflowEnvironment, sessions: Sessions, receiver: tuple[Receiver, str]
) -> AsyncIterator[Skipping]:
    task_queue = f"webhooks-{uuid.uuid4().hex[:8]}"
    await _endpoint_ids_of_our_own(sessions)
    async with (
        httpx.AsyncClient() as http,
        Worker(
            temporal_env.client,
            task_queue=task_queue,
            workflows=[WebhookDelivery],
            activities=WebhookActivities(sessions, http, webhook_snapshot).all(),
        ),
    ):
        feeder = WebhookFeeder(temporal_env.client, sessions, task_queue)
        yield Skipping(temporal_env, sessions, *receiver, feeder, task_queue)
        # A delivery workflow left waiting would fire its timer with no worker to run it, and the
        # time-skipping server stops skipping time until that task is done: end them with the test.
        async with sessions() as session:
            for endpoint in await webhooks.endpoints(session):
                handle = temporal_env.client.get_workflow_handle(delivery_workflow_id(endpoint.id))
                with contextlib.suppress(RPCError):
                    await handle.terminate("the test is over")


@pytest.fixture
async def live(
    db_url: str, sessions: Sessions, dev_server: WorkflowEnvironment, receiver: tuple[Receiver, str]
) -> AsyncIterator[Live]:
    client: Client = dev_server.client
    await _endpoint_ids_of_our_own(sessions)
    shop = await open_shop(sessions, funds=10_000_000)
    made = {}
    async with transaction(sessions) as session:
        for role in ("storefront", "support", "ops", "admin"):
            made[role] = await keys.create_key(session, role)
        made["customer"] = await keys.create_key(session, "customer", customer_id=shop.customer_id)
        other, _ = await create_customer(session, "Bob")
        providers = {p.name: p.id for p in await session.scalars(select(Provider))}
    provider = ScriptedProvider(script={pid: [("Completed", 0)] for pid in providers.values()})
    async with httpx.AsyncClient() as http:
        hooks = {a.__name__: a for a in WebhookActivities(sessions, http, webhook_snapshot).all()}
        async with order_worker(
            client, sessions, provider, replace=hooks, workflows=[WebhookDelivery]
        ) as queue:
            settings = Settings(database_url=db_url, temporal_address="unused", temporal_task_queue=queue)
            app = create_app(settings, temporal=client)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api_http,
                feeding(WebhookFeeder(client, sessions, queue)),
            ):
                api = Api(api_http, made, shop.customer_id, sessions, other.id, provider, providers, client)
                yield Live(api, *receiver, queue)
