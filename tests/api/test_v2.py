"""API v2 at /api/v2: liberal transport, customer keys only, HTTP 200 with the standard error texts, and a
third-party API v2 client library (babismm, from PyPI) used unchanged against it over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import smm
from sqlalchemy import select

from store.db import transaction
from store.models import Order, Refill
from support import LINK, SERVICE, Api


async def v2(api: Api, how: str = "form", key: str | None = None, **params: Any) -> Any:
    """One API v2 call, sent the way `how` says; the answer must be HTTP 200 JSON whatever it holds."""
    key = api.keys["customer"] if key is None else key
    if how == "form":
        response = await api.http.post("/api/v2", data={"key": key, **params})
    elif how == "json":
        response = await api.http.post("/api/v2", json={"key": key, **params})
    elif how == "query":
        response = await api.http.get("/api/v2", params={"key": key, **params})
    elif how == "header":
        response = await api.http.post("/api/v2", data=params, headers={"X-Api-Key": key})
    elif how == "multipart":
        response = await api.http.post(
            "/api/v2", files={k: (None, str(v)) for k, v in {"key": key, **params}.items()}
        )
    else:
        raise ValueError(how)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("how", ["form", "json", "query", "header", "multipart"])
async def test_every_transport_places_and_reads_an_order(api: Api, how: str) -> None:
    placed = await v2(api, how, action="add", service=SERVICE, link=LINK, quantity=100)
    order_id = placed["order"]
    assert isinstance(order_id, int)
    status = await v2(api, how, action="status", order=order_id)
    assert status["charge"] == "0.10"
    assert status["currency"] == "USD"
    assert status["remains"] == "100"
    assert status["status"] in ("Pending", "In progress")
    assert (await v2(api, how, action="balance")) == {"balance": "0.90", "currency": "USD"}
    # The same order REST shows: one order, whichever door it came in by.
    rest = await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("customer"))
    assert (rest.json()["charge"], rest.json()["customer_id"]) == ("0.100000", api.customer_id)


async def test_services_as_resellers_read_them(api: Api) -> None:
    [service] = await v2(api, action="services")
    assert service == {
        "service": SERVICE,
        "name": "Followers",
        "type": "Default",
        "category": "Instagram",
        "rate": "1.00",
        "min": "10",
        "max": "100000",
        "refill": False,
        "cancel": True,
        "dripfeed": True,
    }


async def test_a_drip_feed_order_shows_its_runs(api: Api) -> None:
    order_id = (await v2(api, action="add", service=SERVICE, link=LINK, quantity=50, runs=3, interval=60))[
        "order"
    ]
    status = await v2(api, action="status", order=order_id)
    assert (status["charge"], status["remains"], status["runs"]) == ("0.15", "150", "3")
    assert len(status["orders"]) == 3  # its runs' ids (tests/api/test_drip_feed_runs.py follows them)
    assert all(isinstance(i, int) for i in status["orders"])


async def test_status_of_many_orders(api: Api) -> None:
    mine = (await v2(api, action="add", service=SERVICE, link=LINK, quantity=100))["order"]
    funded = await api.http.post(  # Bob starts with nothing: without funds his order would never exist
        f"/v1/customers/{api.other_customer_id}/deposits",
        json={"amount": "1"},
        headers=api.as_("storefront") | {"Idempotency-Key": "bob-funds"},
    )
    assert funded.status_code == 201, funded.text
    placed = await api.order(key="bob", customer_id=api.other_customer_id)
    assert placed.status_code == 201, placed.text
    theirs = placed.json()["id"]
    many = await v2(api, action="status", orders=f"{mine},{theirs},x,99")
    assert set(many) == {str(mine), str(theirs), "x", "99"}
    assert many[str(mine)]["remains"] == "100"
    assert all(many[k] == {"error": "Incorrect order ID"} for k in many if k != str(mine))
    too_many = await v2(api, action="status", orders=",".join(str(n) for n in range(1, 102)))
    assert too_many == {"error": "Incorrect request"}


async def test_refill_status_one_and_many(api: Api) -> None:
    order_id = (await v2(api, action="add", service=SERVICE, link=LINK, quantity=100))["order"]
    async with transaction(api.sessions) as session:
        refill = Refill(order_id=order_id, refill_no=1, status="Completed", requested_by="customer:key1")
        session.add(refill)
        await session.flush()
        refill_id = refill.id
    assert await v2(api, action="refill_status", refill=refill_id) == {"status": "Completed"}
    assert await v2(api, action="refill_status", refill=refill_id + 1) == {"error": "Refill not found"}
    assert await v2(api, action="refill_status", refills=f"{refill_id},{refill_id + 1}") == [
        {"refill": refill_id, "status": "Completed"},
        {"refill": refill_id + 1, "status": {"error": "Refill not found"}},
    ]
    # Another customer's refill does not exist for this key.
    other = await v2(api, key=api.keys["other_customer"], action="refill_status", refill=refill_id)
    assert other == {"error": "Refill not found"}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"action": "add", "service": 999, "link": LINK, "quantity": 100}, "Incorrect service ID"),
        ({"action": "add", "service": "abc", "link": LINK, "quantity": 100}, "Incorrect service ID"),
        ({"action": "add", "link": LINK, "quantity": 100}, "Incorrect service ID"),
        ({"action": "add", "service": SERVICE, "link": "https://x.com/a", "quantity": 100}, "Bad link"),
        ({"action": "add", "service": SERVICE, "link": LINK, "quantity": 5}, "Quantity less than minimal 10"),
        (
            {"action": "add", "service": SERVICE, "link": LINK, "quantity": -5},
            "Quantity less than minimal 10",
        ),
        (
            {"action": "add", "service": SERVICE, "link": LINK, "quantity": 100_001},
            "Quantity more than maximum 100000",
        ),
        (
            {"action": "add", "service": SERVICE, "link": LINK, "quantity": 5000},
            "Not enough funds on balance",
        ),
        ({"action": "add", "service": SERVICE, "link": LINK, "quantity": "lots"}, "Incorrect request"),
        ({"action": "add", "service": SERVICE, "link": LINK, "quantity": 10, "runs": 3}, "Incorrect request"),
        ({"action": "status", "order": 12345}, "Incorrect order ID"),
        ({"action": "status", "order": "abc"}, "Incorrect order ID"),
        ({"action": "status"}, "Incorrect order ID"),
        ({"action": "refill_status", "refill": "nope"}, "Refill not found"),
        ({"action": "refill", "order": 12345}, "Incorrect order ID"),
        ({"action": "fly"}, "Incorrect request"),
        ({}, "Incorrect request"),
    ],
)
async def test_protocol_errors_are_200_with_the_standard_text(
    api: Api, params: dict[str, Any], error: str
) -> None:
    assert await v2(api, **params) == {"error": error}


async def test_only_customer_keys_are_let_in(api: Api) -> None:
    for key in ("", "garbage", "bo_cus_nope.nope", api.keys["storefront"], api.keys["admin"]):
        assert await v2(api, key=key, action="balance") == {"error": "Invalid API key"}
    no_key = await api.http.post("/api/v2", data={"action": "balance"})
    assert (no_key.status_code, no_key.json()) == (200, {"error": "Invalid API key"})


async def test_malformed_bodies_get_incorrect_request(api: Api) -> None:
    key = api.keys["customer"]
    for content, content_type in [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b"k" * 70_000, "application/x-www-form-urlencoded"),
    ]:
        response = await api.http.post(
            "/api/v2", content=content, headers={"Content-Type": content_type, "X-Api-Key": key}
        )
        assert response.status_code == 200
        assert response.json()["error"] in ("Incorrect request", "Invalid API key"), content[:20]


async def test_cancel_answers_in_the_batch_shape(api: Api) -> None:
    """Cancel goes to the order's workflow; orders that are not the caller's are an error per item."""
    order_id = (await v2(api, action="add", service=SERVICE, link=LINK, quantity=100))["order"]
    answer = await v2(api, action="cancel", orders=f"{order_id},abc,12345")
    assert [a["order"] for a in answer] == [order_id, "abc", 12345]
    assert answer[1]["cancel"] == answer[2]["cancel"] == {"error": "Incorrect order ID"}
    assert answer[0]["cancel"] == 1 or answer[0]["cancel"] == {"error": "The order cannot be canceled"}
    single = await v2(api, action="cancel", order=order_id)
    assert [a["order"] for a in single] == [order_id]


async def test_an_add_with_an_idempotency_key_is_placed_once(api: Api) -> None:
    first = await v2(api, action="add", service=SERVICE, link=LINK, quantity=100, idempotency_key="r-1")
    again = await v2(api, action="add", service=SERVICE, link=LINK, quantity=100, idempotency_key="r-1")
    other = await v2(api, action="add", service=SERVICE, link=LINK, quantity=100)
    assert first == again
    assert other["order"] != first["order"]
    async with api.sessions() as session:
        keys = list(await session.scalars(select(Order.idempotency_key).order_by(Order.id)))
    assert keys[0] == "apiv2:r-1"
    assert keys[1].startswith("apiv2:")


# A third-party client, unchanged, over real HTTP.


async def test_a_third_party_api_v2_client_works_unchanged(api: Api, served: str) -> None:
    client = smm.SMM(f"{served}/api/v2", api.keys["customer"], timeout=30)

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(client, method), *args, **kwargs)

    try:
        [service] = await call("get_services")
        assert service["service"] == SERVICE
        first = (await call("add_order", SERVICE, LINK, 100))["order"]
        drip = (await call("add_order", SERVICE, LINK, 20, runs=2, interval=60))["order"]
        assert (await call("get_status", first))["remains"] == "100"
        many = await call("get_multi_status", [first, drip])
        assert (many[str(drip)]["runs"], many[str(drip)]["remains"]) == ("2", "40")
        assert (await call("get_balance")) == {"balance": "0.86", "currency": "USD"}
        with pytest.raises(smm.SMMAPIError, match="Incorrect order ID"):
            await call("get_status", 1)
        refills = await call("create_multi_refill", [first, 1])
        assert refills[1] == {"order": 1, "refill": {"error": "Incorrect order ID"}}
        assert (await call("get_multi_refill_status", [1])) == [
            {"refill": 1, "status": {"error": "Refill not found"}}
        ]
        cancels = await call("cancel_orders", [drip])
        assert cancels[0]["order"] == drip
    finally:
        client.close()
