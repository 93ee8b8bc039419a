"""Subscriptions over API v2 (`add` with the standard subscription parameters, `status` answering like the
panels, `cancel`) and REST, on a real database, the Temporal dev server, the simulator over HTTP and a
worker running both workflows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from simserver import serve
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from subscription_stack import SUBSCRIPTION_SERVICE, stack_worker, subscription_catalog
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.settings import Settings
from providers.simulator.app import create_simulator_app
from store import keys
from store.catalog import load_catalog
from store.customers import create_customer, deposit
from store.db import transaction
from store.models import Provider, Subscription
from support import ScriptedProvider


@dataclass
class Door:
    http: httpx.AsyncClient
    keys: dict[str, str]
    sessions: async_sessionmaker[AsyncSession]

    async def v2(self, key: str = "customer", **params: Any) -> Any:
        response = await self.http.post("/api/v2", data={"key": self.keys[key], **params})
        assert response.status_code == 200, response.text
        return response.json()

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def until(self, subscription_id: int, reached: Any, *, seconds: float = 30) -> dict[str, Any]:
        """Read `status` until the answer satisfies `reached` (real time: the dev server)."""
        for _ in range(int(seconds * 10)):
            answer: dict[str, Any] = await self.v2(action="status", order=subscription_id)
            if reached(answer):
                return answer
            await asyncio.sleep(0.1)
        raise AssertionError(f"the subscription never got there: {answer}")


@pytest.fixture
async def door(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> AsyncIterator[Door]:
    async with serve(create_simulator_app(api_key="sim-key", subscription_services=True)) as sim_url:
        made: dict[str, str] = {}
        async with transaction(sessions) as session:
            await load_catalog(session, subscription_catalog(sim_url))
            customer, _ = await create_customer(session, "Alice")
            await deposit(session, customer.id, 1_000_000, key="initial", actor="test")
            made["customer"] = await keys.create_key(session, "customer", customer_id=customer.id)
            made["storefront"] = await keys.create_key(session, "storefront")
            other, _ = await create_customer(session, "Bob")
            made["other_customer"] = await keys.create_key(session, "customer", customer_id=other.id)
            alpha = await session.scalar(select(Provider.id).where(Provider.name == "alpha"))
        assert alpha is not None
        provider = ScriptedProvider(script={alpha: [("Completed", 0)]})
        task_queue = f"subs-api-{uuid.uuid4().hex[:8]}"
        settings = Settings(database_url=db_url, temporal_address="unused", temporal_task_queue=task_queue)
        app = create_app(settings, temporal=dev_server.client)
        async with (
            httpx.AsyncClient() as upstream,
            stack_worker(dev_server.client, task_queue, sessions, provider, upstream),
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
        ):
            yield Door(http, made, sessions)


async def _subscriptions(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Subscription)) or 0)


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"min": "100", "max": "200"}, "Bad link"),  # no username
        ({"username": "two words", "min": "100", "max": "200"}, "Bad link"),
        ({"username": "acct", "min": "300", "max": "200"}, "Incorrect request"),
        ({"username": "acct", "min": "5", "max": "200"}, "Quantity less than minimal 10"),
        ({"username": "acct", "min": "100", "max": "5000"}, "Quantity more than maximum 1000"),
        ({"username": "acct", "min": "100"}, "Incorrect request"),
        ({"username": "acct", "min": "100", "max": "200", "delay": "7"}, "Incorrect request"),
        ({"username": "acct", "min": "100", "max": "200", "expiry": "2026-12-31"}, "Incorrect request"),
        ({"username": "acct", "min": "100", "max": "200", "expiry": "01/01/2020"}, "Incorrect request"),
        ({"username": "acct", "min": "100", "max": "200", "posts": "many"}, "Incorrect request"),
    ],
)
async def test_add_refuses_bad_subscription_fields_with_the_standard_texts(
    door: Door, params: dict[str, str], text: str
) -> None:
    answer = await door.v2(action="add", service=SUBSCRIPTION_SERVICE, **params)
    assert answer == {"error": text}
    assert await _subscriptions(door.sessions) == 0  # nothing written


async def test_a_subscription_over_api_v2_answers_like_the_panels_and_cancels(door: Door) -> None:
    placed = await door.v2(
        action="add", service=SUBSCRIPTION_SERVICE, username="@acct", min="100", max="200", old_posts="1"
    )
    sid = placed["order"]
    assert isinstance(sid, int)
    # old_posts=1: the account's latest post is served at the first poll, as a child order of its own.
    status = await door.until(sid, lambda a: len(a.get("orders", [])) == 1)
    [child] = status["orders"]
    assert status == {"status": "Active", "expiry": "", "posts": "1", "orders": [child]}
    child_status = await door.v2(action="status", order=child)
    assert child_status["currency"] == "USD"
    assert child_status["status"] in ("Pending", "In progress", "Completed")
    both = await door.v2(action="status", orders=f"{sid},{child}")
    assert both[str(sid)]["orders"] == [child]
    assert "charge" in both[str(child)]
    # Another customer's key sees none of it.
    assert await door.v2("other_customer", action="status", order=sid) == {"error": "Incorrect order ID"}

    assert await door.v2(action="cancel", orders=str(sid)) == [{"order": sid, "cancel": 1}]
    ended = await door.until(sid, lambda a: a["status"] == "Canceled")
    assert ended["orders"] == [child]  # the child goes on as the order it is
    again = await door.v2(action="cancel", order=str(sid))
    assert again == [{"order": sid, "cancel": {"error": "The order cannot be canceled"}}]


async def test_rest_places_reads_pauses_resumes_and_cancels_a_subscription(door: Door) -> None:
    body = {"service_id": SUBSCRIPTION_SERVICE, "username": "acct", "min": 50, "max": 60, "posts": 3}
    headers = {**door.as_("customer"), "Idempotency-Key": "sub-1"}
    created = await door.http.post("/v1/subscriptions", json=body, headers=headers)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    replay = await door.http.post("/v1/subscriptions", json=body, headers=headers)
    assert (replay.status_code, replay.json()["id"]) == (200, sid)
    other = await door.http.get(f"/v1/subscriptions/{sid}", headers=door.as_("other_customer"))
    assert other.status_code == 404
    bad = await door.http.post(
        "/v1/subscriptions", json=body | {"delay": 7}, headers={**headers, "Idempotency-Key": "sub-2"}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "bad_subscription")

    await door.until(sid, lambda a: a["status"] == "Active")
    paused = await door.http.post(f"/v1/subscriptions/{sid}/pause", headers=door.as_("customer"))
    assert (paused.status_code, paused.json()["status"]) == (200, "Paused"), paused.text
    twice = await door.http.post(f"/v1/subscriptions/{sid}/pause", headers=door.as_("customer"))
    assert (twice.status_code, twice.json()["code"]) == (409, "cannot_pause")
    resumed = await door.http.post(f"/v1/subscriptions/{sid}/resume", headers=door.as_("customer"))
    assert resumed.json()["status"] == "Active"
    canceled = await door.http.post(
        f"/v1/subscriptions/{sid}/cancel", json={"reason": "no longer needed"}, headers=door.as_("storefront")
    )
    assert canceled.json()["status"] == "Canceled"
    await door.until(sid, lambda a: a["status"] == "Canceled")
    shown = (await door.http.get(f"/v1/subscriptions/{sid}", headers=door.as_("customer"))).json()
    assert (shown["status"], shown["reason"], shown["posts"], shown["orders"]) == (
        "Canceled",
        "no longer needed",
        3,
        [],
    )
    late = await door.http.post(f"/v1/subscriptions/{sid}/cancel", headers=door.as_("customer"))
    assert (late.status_code, late.json()["code"]) == (409, "cannot_cancel")
