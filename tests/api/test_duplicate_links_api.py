"""The duplicate-link guard at the doors: REST answers 409 `duplicate_link`, API v2 the standard text; a
refusal writes nothing and charges nothing; the link takes a new order once its order has ended."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from test_v2 import v2

from providers import apiv2
from store.catalog import load_catalog
from store.db import transaction
from store.models import Order, Provider
from support import LINK, Api

GUARDED, ALSO_GUARDED, OPEN = 40, 41, 42


@pytest.fixture
async def guarded(api: Api) -> Api:
    """Services 40 and 41 deny link duplicates, 42 does not; all route to alpha, 1.00 per 1000."""
    services = [
        {
            "id": sid,
            "name": f"Followers {sid}",
            "category": "Instagram",
            "rate": "1.00",
            "min": 10,
            "max": 10_000,
            "pace_per_hour": 100_000,
            "link_pattern": r"https?://(www\.)?instagram\.com/[A-Za-z0-9_.]{1,30}/?",
            "deny_link_duplicates": sid != OPEN,
            "routes": [{"provider": "alpha", "service": f"a{sid}"}],
        }
        for sid in (GUARDED, ALSO_GUARDED, OPEN)
    ]
    async with transaction(api.sessions) as session:
        await load_catalog(session, {"services": services})
        await session.execute(update(Provider).values(poll_interval_seconds=1))  # an order ends in seconds
    return api


async def _post(api: Api, service: int, link: str, key: str) -> httpx.Response:
    return await api.http.post(
        "/v1/orders",
        json={"service_id": service, "link": link, "quantity": 100},
        headers=api.as_("customer") | {"Idempotency-Key": key},
    )


async def _books(api: Api) -> tuple[int, str]:
    async with api.sessions() as session:
        count = int(await session.scalar(select(func.count()).select_from(Order)) or 0)
    balance = await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("support"))
    return count, balance.json()["balance"]


async def _eventually(api: Api, order_id: int, status: str) -> dict[str, Any]:
    order: dict[str, Any] = {}
    for _ in range(150):
        order = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("admin"))).json()
        if order["status"] == status:
            return order
        await asyncio.sleep(0.2)
    raise AssertionError(f"order never got to {status}: {order}")


async def test_rest_refuses_a_second_active_order_for_the_link_and_writes_nothing(guarded: Api) -> None:
    first = await _post(guarded, GUARDED, LINK, "first")
    assert first.status_code == 201, first.text
    services = (await guarded.http.get("/v1/services", headers=guarded.as_("customer"))).json()["services"]
    assert {s["id"]: s["deny_link_duplicates"] for s in services if s["id"] >= GUARDED} == {
        GUARDED: True,
        ALSO_GUARDED: True,
        OPEN: False,
    }
    before = await _books(guarded)
    for n, same in enumerate(
        (LINK, "http://www.instagram.com/some.account/", "http://instagram.com/some.account")
    ):
        again = await _post(guarded, GUARDED, same, f"again-{n}")
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "duplicate_link"
        assert again.json()["message"] == apiv2.ACTIVE_ORDER
    assert await _books(guarded) == before
    # The first request again under its own key is the first order, not a duplicate.
    replay = await _post(guarded, GUARDED, LINK, "first")
    assert (replay.status_code, replay.json()["id"]) == (200, first.json()["id"])
    # Another service, guarded or not, takes the link.
    assert (await _post(guarded, ALSO_GUARDED, LINK, "other")).status_code == 201
    assert (await _post(guarded, OPEN, LINK, "open-1")).status_code == 201
    assert (await _post(guarded, OPEN, LINK, "open-2")).status_code == 201


async def test_api_v2_answers_the_standard_text(guarded: Api) -> None:
    placed = await v2(guarded, action="add", service=GUARDED, link=LINK, quantity=100)
    assert set(placed) == {"order"}
    before = await _books(guarded)
    again = await v2(
        guarded, action="add", service=GUARDED, link="http://www.instagram.com/some.account/", quantity=50
    )
    assert again == {"error": apiv2.ACTIVE_ORDER}
    assert await _books(guarded) == before


async def test_the_link_takes_a_new_order_once_its_order_has_ended(guarded: Api) -> None:
    assert guarded.provider is not None
    guarded.provider.script[guarded.providers["alpha"]] = [("Completed", 0)]
    first = await _post(guarded, GUARDED, LINK, "first")
    assert first.status_code == 201, first.text
    await _eventually(guarded, first.json()["id"], "Completed")
    second = await _post(guarded, GUARDED, LINK, "second")
    assert second.status_code == 201, second.text
