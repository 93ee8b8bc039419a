"""The `api` fixture: the app in-process over HTTP, on a real database and the Temporal dev server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from settings import Settings
from store import keys
from store.customers import create_customer
from store.db import transaction
from support import Api, open_shop


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
    app = create_app(Settings(database_url=db_url, temporal_address="unused"), temporal=dev_server.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield Api(http, made, shop.customer_id, sessions, other.id)
