"""A drip-feed order's runs as resellers track them: API v2 `status` lists their ids in `orders` and answers
each id like an order's; REST shows each run with what it delivered and its status. The order runs on the
time-skipping server (its runs are 30 minutes apart), the API reads what its workflow projected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.settings import Settings
from store import keys
from store.db import transaction
from support import ScriptedProvider, Shop, open_shop, order_worker, place, run_order
from workflows.models import Status


@pytest.fixture
async def http(db_url: str, temporal_env: WorkflowEnvironment) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=db_url, temporal_address="unused", temporal_task_queue="unused")
    app = create_app(settings, temporal=temporal_env.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


async def _key(sessions: async_sessionmaker[AsyncSession], shop: Shop) -> str:
    async with transaction(sessions) as session:
        return await keys.create_key(session, "customer", customer_id=shop.customer_id)


async def test_a_drip_feed_lists_its_runs_and_each_answers_status(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    shop = await open_shop(sessions)  # 1.00 per 1000, no tolerance
    key = await _key(sessions, shop)
    order = await place(sessions, shop, 100, runs=3, interval=30)

    async def v2(**params: Any) -> Any:
        return (await http.post("/api/v2", data={"key": key, **params})).json()

    placed = await v2(action="status", order=order.order_id)
    run_ids = placed["orders"]
    assert (placed["runs"], len(run_ids), placed["status"]) == ("3", 3, "Pending")
    assert len(set(run_ids) | {order.order_id}) == 4  # ids of their own, never an order's
    before = await v2(action="status", orders=",".join(map(str, run_ids)))
    assert [before[str(i)]["status"] for i in run_ids] == ["Pending"] * 3

    # Run 1 delivers in full, run 2 ends Partial at the provider (60 of 100), run 3 in full.
    answers: list[tuple[Any, ...]] = [("Completed", 0), ("Partial", 40), ("Completed", 0)]
    provider = ScriptedProvider(script={order.routes[0].provider_id: answers})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert (state.status, state.delivered, state.refunded_units) == (Status.PARTIAL, 260, 40)

    # The order refunded 40 units; the runs share that out, so a reseller's cron refunding by the protocol's
    # formula over the runs refunds exactly what the panel refunded.
    whole = await v2(action="status", order=order.order_id)
    assert (whole["status"], whole["remains"], whole["charge"], whole["orders"]) == (
        "Partial",
        "40",
        "0.30",
        run_ids,
    )
    each = await v2(action="status", orders=",".join(map(str, run_ids)))
    assert [(each[str(i)]["status"], each[str(i)]["remains"], each[str(i)]["charge"]) for i in run_ids] == [
        ("Completed", "0", "0.10"),
        ("Partial", "40", "0.10"),
        ("Completed", "0", "0.10"),
    ]

    # REST shows each run as it went.
    async with transaction(sessions) as session:
        staff = await keys.create_key(session, "support")
    shown = (
        await http.get(f"/v1/orders/{order.order_id}", headers={"Authorization": f"Bearer {staff}"})
    ).json()
    assert [(r["id"], r["run"], r["delivered"], r["status"]) for r in shown["drip_feed"]] == [
        (run_ids[0], 1, 100, "Completed"),
        (run_ids[1], 2, 60, "Partial"),
        (run_ids[2], 3, 100, "Completed"),
    ]


async def test_a_run_id_is_only_its_customers(
    sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    shop, other = await open_shop(sessions), await open_shop(sessions)
    order = await place(sessions, shop, 100, runs=2, interval=30)
    mine = (
        await http.post(
            "/api/v2", data={"key": await _key(sessions, shop), "action": "status", "order": order.order_id}
        )
    ).json()
    theirs = await _key(sessions, other)
    stranger = await http.post(
        "/api/v2", data={"key": theirs, "action": "status", "order": mine["orders"][0]}
    )
    assert stranger.json() == {"error": "Incorrect order ID"}
    # A plain order lists no runs.
    plain = await place(sessions, shop, 100)
    answer = (
        await http.post(
            "/api/v2", data={"key": await _key(sessions, shop), "action": "status", "order": plain.order_id}
        )
    ).json()
    assert "orders" not in answer
