"""Deploying a changed workflow while orders run, on the Temporal dev server: an order started on version A
stays on A's worker (pinned) after B became current, while new orders go to B. The real worker processes
(run_worker, configured by settings as in production), the real API, PostgreSQL and the simulator."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from ops_support import open_sim_shop, settings_for, simulator_process, wait_for_order
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.client import Client
from temporalio.common import VersioningBehavior as TemporalBehavior
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.temporal_client import connect, workflow_id
from backoffice.versioning import deployment_config, set_current_version
from store import keys
from store.db import transaction
from support import LINK, SERVICE
from worker import run_worker


async def _make_current(client: Client, deployment: str, build_id: str) -> None:
    """Current as soon as Temporal has seen the version's worker poll (it refuses an unseen version)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await set_current_version(client, deployment, build_id)
            return
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def _task_build_ids(client: Client, order_id: int) -> list[str]:
    """The build id of the worker that completed each workflow task of the order, in history order."""
    history = await client.get_workflow_handle(workflow_id(order_id)).fetch_history()
    return [
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


async def test_orders_stay_on_their_version_while_new_orders_go_to_the_next(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> None:
    deployment = f"orders-{uuid.uuid4().hex[:8]}"
    settings_a = settings_for(
        db_url, dev_server, worker_deployment_name=deployment, worker_build_id="a", worker_metrics_port=0
    )
    settings_b = settings_a.model_copy(update={"worker_build_id": "b"})  # the same task queue
    client = await connect(settings_a)
    with simulator_process() as sim_url:
        # A refill window keeps each order running after it completed: the long-lived orders of a deploy.
        shop = await open_sim_shop(sessions, api_url=sim_url, refill_days=30, refill_cooldown_hours=0)
        async with transaction(sessions) as session:
            storefront = await keys.create_key(session, "storefront")
            customer = await keys.create_key(session, "customer", customer_id=shop.customer_id)
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        workers = [asyncio.create_task(run_worker(settings_a, stop_a))]
        app = create_app(settings_a)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
            ):

                async def place(key: str) -> int:
                    response = await api.post(
                        "/v1/orders",
                        json={"customer_id": shop.customer_id, "service_id": SERVICE, "link": LINK,
                              "quantity": 200},
                        headers={"Authorization": f"Bearer {storefront}", "Idempotency-Key": key},
                    )  # fmt: skip
                    assert response.status_code == 201, response.text
                    order_id: int = response.json()["id"]
                    await wait_for_order(sessions, order_id, status="Completed", phase="refill_window")
                    return order_id

                await _make_current(client, deployment, "a")
                on_a = await place("on-a")

                # Deploy B beside A, then make it current: A keeps running for the orders it started.
                workers.append(asyncio.create_task(run_worker(settings_b, stop_b)))
                await _make_current(client, deployment, "b")
                on_b = await place("on-b")

                # The order started on A takes a message after the switch: A's worker handles it.
                tasks_before = len(await _task_build_ids(client, on_a))
                refill = await api.post(
                    f"/v1/orders/{on_a}/refills", headers={"Authorization": f"Bearer {customer}"}
                )
                assert refill.status_code == 201, refill.text
        finally:
            stop_a.set()
            stop_b.set()
            await asyncio.wait_for(asyncio.gather(*workers), 30)

    build_ids_a = await _task_build_ids(client, on_a)
    assert len(build_ids_a) > tasks_before  # the refill was a workflow task after B became current
    assert set(build_ids_a) == {"a"}
    assert set(await _task_build_ids(client, on_b)) == {"b"}
    info = (await client.get_workflow_handle(workflow_id(on_a)).describe()).raw_description
    versioning = info.workflow_execution_info.versioning_info
    assert versioning.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
    assert versioning.deployment_version.build_id == "a"
    # The query docs/operations.md gives to find (and move) the orders still on a version.
    query = f'WorkflowType = "OrderWorkflow" AND TemporalWorkerDeploymentVersion = "{deployment}:a"'
    deadline = time.monotonic() + 20
    while True:
        found = {w.id async for w in client.list_workflows(query)}
        if workflow_id(on_a) in found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert found == {workflow_id(on_a)}


def test_a_half_set_version_is_refused() -> None:
    from backoffice.settings import Settings

    assert deployment_config(Settings()) is None  # unversioned: the dev stack
    with pytest.raises(SystemExit, match="WORKER_DEPLOYMENT_NAME is set without WORKER_BUILD_ID"):
        deployment_config(Settings(worker_deployment_name="orders"))
    with pytest.raises(SystemExit, match="WORKER_BUILD_ID is set without WORKER_DEPLOYMENT_NAME"):
        deployment_config(Settings(worker_build_id="b"))
    config = deployment_config(Settings(worker_deployment_name="orders", worker_build_id="7f3c2e1"))
    assert config is not None
    assert config.version.build_id == "7f3c2e1"
    assert config.default_versioning_behavior == TemporalBehavior.PINNED
