"""The REST API over HTTP (in-process ASGI), on a real database and the Temporal test server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from store import keys
from store.models import Order, Provider
from support import LINK, SERVICE, Api


async def _order_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def test_an_order_is_charged_and_handed_to_its_workflow(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    response = await api.order()
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["phase"], body["charge"], body["remains"]) == (
        "Pending",
        "queued",
        "0.100000",
        100,
    )
    # The answer does not wait for Temporal: the workflow starts right after it.
    handle = dev_server.client.get_workflow_handle(f"order-{body['id']}")
    for _ in range(100):
        with contextlib.suppress(RPCError):
            described = await handle.describe()
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the order's workflow never started")
    assert described.workflow_type == "OrderWorkflow"
    customer = await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("support"))
    assert customer.json()["balance"] == "0.900000"
    got = (await api.http.get(f"/v1/orders/{body['id']}", headers=api.as_("ops"))).json()
    same = ("id", "customer_id", "service_id", "link", "quantity", "charge", "created_at")
    assert {k: got[k] for k in same} == {k: body[k] for k in same}


async def test_a_replay_returns_the_same_order_and_charges_once(api: Api) -> None:
    first = await api.order(key="same")
    again = await api.order(key="same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    balance = (await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("support"))).json()
    assert balance["balance"] == "0.900000"


async def test_a_key_reused_with_another_body_is_refused(api: Api) -> None:
    assert (await api.order(key="same")).status_code == 201
    response = await api.order(key="same", quantity=200)
    assert (response.status_code, response.json()["code"]) == (422, "idempotency_conflict")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"link": "https://facebook.com/x"}, "bad_link"),
        ({"quantity": 5}, "quantity_below_min"),
        ({"quantity": 100_001}, "quantity_above_max"),
        ({"service_id": 999}, "unknown_service"),
        ({"customer_id": 999}, "customer_not_found"),
        ({"runs": 3}, "bad_dripfeed"),
        ({"runs": 3, "interval": 10, "quantity": 5000}, "run_exceeds_pace"),
        ({"runs": 3, "interval": 10, "quantity": 200}, "run_exceeds_pace"),  # 6 runs an hour: 1200 > 1000
        ({"surprise": 1}, "invalid_request"),
        ({"quantity": "many"}, "invalid_request"),
        ({"quantity": 10**12}, "invalid_request"),
        ({"link": "x" * 5000}, "invalid_request"),
        ({"quantity": 2000}, "insufficient_funds"),
    ],
)
async def test_bad_orders_get_a_stable_code_and_write_nothing(
    api: Api, sessions: async_sessionmaker[AsyncSession], body: dict[str, Any], code: str
) -> None:
    response = await api.order(**body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert await _order_count(sessions) == 0


async def test_an_order_needs_an_idempotency_key(api: Api) -> None:
    response = await api.http.post(
        "/v1/orders",
        json={"customer_id": api.customer_id, "service_id": SERVICE, "link": LINK, "quantity": 100},
        headers=api.as_("storefront"),
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer bo_sf_nope.nope"}, 401), ({"X-Api-Key": "garbage"}, 401)],
)
async def test_without_a_valid_key_nothing_is_served(api: Api, headers: dict[str, str], status: int) -> None:
    response = await api.http.get("/v1/orders", headers=headers)
    assert (response.status_code, response.json()["code"]) == (status, "unauthorized")


async def test_the_key_may_come_in_x_api_key(api: Api) -> None:
    response = await api.http.get("/v1/orders", headers={"X-Api-Key": api.keys["ops"]})
    assert response.status_code == 200


async def test_support_and_ops_cannot_place_orders(api: Api) -> None:
    for role in ("support", "ops"):
        response = await api.order(role=role, key=role)
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")


async def test_a_customer_key_sees_only_its_own(api: Api) -> None:
    mine = await api.order(role="customer", key="c1", customer_id=None)
    assert mine.status_code == 201, mine.text
    order_id = mine.json()["id"]
    assert (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("customer"))).status_code == 200
    stranger = await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("other_customer"))
    assert (stranger.status_code, stranger.json()["code"]) == (404, "order_not_found")
    listed = await api.http.get("/v1/orders", headers=api.as_("other_customer"))
    assert listed.json()["orders"] == []
    other = await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("other_customer"))
    assert other.status_code == 404
    forbidden = await api.order(role="other_customer", key="c2")
    assert forbidden.status_code == 403


async def test_orders_are_listed_page_by_page(api: Api) -> None:
    ids = [(await api.order(key=f"k{n}")).json()["id"] for n in range(3)]
    page = (await api.http.get("/v1/orders?limit=2", headers=api.as_("support"))).json()
    assert [o["id"] for o in page["orders"]] == ids[:2]
    rest = (
        await api.http.get(
            "/v1/orders", params={"limit": 2, "cursor": page["next_cursor"]}, headers=api.as_("support")
        )
    ).json()
    assert ([o["id"] for o in rest["orders"]], rest["next_cursor"]) == (ids[2:], None)


async def test_customers_and_deposits(api: Api) -> None:
    sf = api.as_("storefront")
    made = await api.http.post("/v1/customers", json={"name": "Carol", "external_ref": "shop-42"}, headers=sf)
    again = await api.http.post(
        "/v1/customers", json={"name": "Carol", "external_ref": "shop-42"}, headers=sf
    )
    assert (made.status_code, again.status_code, again.json()["id"]) == (201, 200, made.json()["id"])
    cid = made.json()["id"]
    url = f"/v1/customers/{cid}/deposits"
    first = await api.http.post(url, json={"amount": "12.5"}, headers={**sf, "Idempotency-Key": "d1"})
    replay = await api.http.post(url, json={"amount": "12.5"}, headers={**sf, "Idempotency-Key": "d1"})
    assert (first.status_code, replay.status_code) == (201, 200)
    assert (first.json()["balance"], replay.json()["balance"], replay.json()["replayed"]) == (
        "12.500000",
        "12.500000",
        True,
    )
    clash = await api.http.post(url, json={"amount": "13"}, headers={**sf, "Idempotency-Key": "d1"})
    assert clash.json()["code"] == "idempotency_conflict"
    for amount in ("0", "-1", "1.0000001", "abc"):
        bad = await api.http.post(
            url, json={"amount": amount}, headers={**sf, "Idempotency-Key": f"x{amount}"}
        )
        assert bad.status_code == 422, amount
    missing = await api.http.post(
        "/v1/customers/999/deposits", json={"amount": "1"}, headers={**sf, "Idempotency-Key": "m"}
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "customer_not_found")


async def test_the_policy_is_published(api: Api) -> None:
    response = await api.http.get("/v1/policy")
    assert response.status_code == 200
    assert "Partial" in response.text


async def test_idempotency_keys_belong_to_the_customer(api: Api) -> None:
    """A storefront that rotates its API key between retries still gets the first order back."""
    first = await api.order(key="rotate")
    async with api.sessions() as session, session.begin():
        api.keys["storefront2"] = await keys.create_key(session, "storefront")
    again = await api.order(role="storefront2", key="rotate")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    # The customer's own key shares that key space: same key, same order.
    mine = await api.order(role="customer", key="rotate", customer_id=None)
    assert mine.json()["id"] == first.json()["id"]


async def test_a_service_without_a_provider_takes_no_orders(api: Api) -> None:
    async with api.sessions() as session, session.begin():
        await session.execute(update(Provider).values(active=False))
    response = await api.order(key="no-route")
    assert (response.status_code, response.json()["code"]) == (409, "service_unavailable")
