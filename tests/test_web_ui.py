"""What the Temporal Web UI shows of an order: its static summary and details set at start, readable
payloads (no `binary/null`), and its own status as search attributes that list queries find. The real API,
worker, dev server, PostgreSQL and simulator (over HTTP), connected as the processes connect."""

from __future__ import annotations

import asyncio
import time

import httpx
from ops_support import open_sim_shop, settings_for, simulator_process, wait_for_order
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.temporal_client import connect, workflow_id
from store import keys
from store.db import transaction
from support import LINK, SERVICE
from worker import run_worker
from workflows import search_attributes as sa


async def test_the_web_ui_tells_the_order_story(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> None:
    settings = settings_for(db_url, dev_server)
    with simulator_process() as sim_url:
        shop = await open_sim_shop(sessions, api_url=sim_url)
        async with transaction(sessions) as session:
            storefront = await keys.create_key(session, "storefront")
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop))
        app = create_app(settings)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
            ):
                response = await api.post(
                    "/v1/orders",
                    json={
                        "customer_id": shop.customer_id,
                        "service_id": SERVICE,
                        "link": LINK,
                        "quantity": 200,
                    },
                    headers={"Authorization": f"Bearer {storefront}", "Idempotency-Key": "web-ui"},
                )
                assert response.status_code == 201, response.text
                order_id = response.json()["id"]
                await wait_for_order(sessions, order_id, status="Completed", phase="closed")
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)

    client = await connect(settings)
    handle = client.get_workflow_handle(workflow_id(order_id))
    await handle.result()
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    # 200 units at 1.00 per 1000: charged 0.200000, in decimal money, never micro-units.
    summary = await described.static_summary()
    assert (
        summary
        == f"Order {order_id}: 200 units of Followers for customer {shop.customer_id}, charged 0.200000"
    )
    details = await described.static_details()
    assert details is not None
    assert f"**Order {order_id}** for customer {shop.customer_id}" in details
    assert f"- **Link**: {LINK}" in details
    assert "- **Charged**: 0.200000" in details
    assert "micros" not in details
    # The order's own status beside Temporal's: Completed and closed.
    attributes = described.typed_search_attributes
    assert attributes.get(sa.ORDER_STATUS) == "Completed"
    assert attributes.get(sa.ORDER_PHASE) == "closed"

    # Every payload the order wrote is readable: activities that return nothing wrote JSON null.
    encodings = set()
    history = await handle.fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            payloads = event.activity_task_completed_event_attributes.result.payloads
            encodings |= {p.metadata["encoding"] for p in payloads}
    assert b"json/plain" in encodings
    assert b"binary/null" not in encodings

    # The list query ops use finds it (visibility is eventually consistent: poll a little).
    query = f'OrderStatus = "Completed" AND OrderPhase = "closed" AND CustomerId = {shop.customer_id}'
    deadline = time.monotonic() + 20
    while True:
        found = [w.id async for w in client.list_workflows(query)]
        if workflow_id(order_id) in found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert workflow_id(order_id) in found
