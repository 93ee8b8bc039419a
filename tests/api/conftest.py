"""The `api` fixture: the app in-process over HTTP, on a real database and the Temporal dev server, with a
worker running the real OrderWorkflow against a scripted provider, so order actions reach a real workflow.
`served`: the same app over TCP (uvicorn), for clients that speak real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from simserver import serve
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.settings import Settings
from store import keys
from store.customers import create_customer
from store.db import transaction
from store.models import Provider
from support import Api, ScriptedProvider, open_shop, order_worker


@pytest.fixture
async def api(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> AsyncIterator[Api]:
    shop = await open_shop(sessions, funds=1_000_000)  # 1.00: room for 10 orders of 100 units at 1.00/1000
    made = {}
    async with transaction(sessions) as session:
        for role in ("storefront", "support", "ops", "admin"):
            made[role] = await keys.create_key(session, role)
        made["customer"] = await keys.create_key(session, "customer", customer_id=shop.customer_id)
        other, _ = await create_customer(session, "Bob")
        made["other_customer"] = await keys.create_key(session, "customer", customer_id=other.id)
        providers = {p.name: p.id for p in await session.scalars(select(Provider))}
    # Runs stay in progress at the provider unless a test scripts otherwise.
    provider = ScriptedProvider(script={pid: [("In progress", None)] for pid in providers.values()})
    async with order_worker(dev_server.client, sessions, provider) as task_queue:
        settings = Settings(database_url=db_url, temporal_address="unused", temporal_task_queue=task_queue)
        app = create_app(settings, temporal=dev_server.client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                yield Api(
                    http, made, shop.customer_id, sessions, other.id, provider, providers, dev_server.client
                )


@pytest.fixture
async def served(api: Api) -> AsyncIterator[str]:
    """The same app, served over TCP by uvicorn (on a socket bound once), as resellers reach it."""
    async with serve(api.http._transport.app) as url:  # type: ignore[attr-defined]
        yield url
