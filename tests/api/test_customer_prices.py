"""Per-customer prices over REST (admin), on a real database and the Temporal dev server: intake charges by
the customer's own rate (frozen on the order), API v2 `services` and a customer key's GET /v1/services show
it, and other customers keep the catalog's rate."""

from __future__ import annotations

from typing import Any

import httpx

from support import LINK, SERVICE, Api


async def _put(
    api: Api,
    body: dict[str, Any],
    *,
    customer: int | None = None,
    service: int = SERVICE,
    role: str = "admin",
) -> httpx.Response:
    path = f"/v1/customers/{customer or api.customer_id}/prices/{service}"
    return await api.http.put(path, json=body, headers=api.as_(role))


async def _v2_rate(api: Api, key: str) -> str:
    response = await api.http.post("/api/v2", data={"key": api.keys[key], "action": "services"})
    [service] = response.json()
    return str(service["rate"])


async def test_an_admin_sets_lists_and_removes_a_customers_price(api: Api) -> None:
    set_ = await _put(api, {"rate": "0.8"})
    assert set_.status_code == 200, set_.text
    body = set_.json()
    assert {k: body[k] for k in ("service_id", "catalog_rate", "rate", "own_rate", "discount_pct")} == {
        "service_id": SERVICE,
        "catalog_rate": "1.000000",
        "rate": "0.800000",
        "own_rate": "0.800000",
        "discount_pct": None,
    }
    assert body["set_by"].startswith("admin")
    # A discount replaces the rate: the catalog's 1.00 less 12.5 %.
    replaced = (await _put(api, {"discount_pct": "12.5"})).json()
    assert (replaced["rate"], replaced["own_rate"], replaced["discount_pct"]) == ("0.875000", None, "12.5")
    listed = await api.http.get(f"/v1/customers/{api.customer_id}/prices", headers=api.as_("admin"))
    assert [p["rate"] for p in listed.json()["prices"]] == ["0.875000"]
    path = f"/v1/customers/{api.customer_id}/prices/{SERVICE}"
    removed = await api.http.delete(path, headers=api.as_("admin"))
    assert removed.status_code == 204
    again = await api.http.delete(path, headers=api.as_("admin"))
    assert (again.status_code, again.json()["code"]) == (404, "price_not_found")
    listed = await api.http.get(f"/v1/customers/{api.customer_id}/prices", headers=api.as_("admin"))
    assert listed.json() == {"prices": []}


async def test_intake_charges_the_customers_rate_and_freezes_it_on_the_order(api: Api) -> None:
    assert (await _put(api, {"rate": "0.5"})).status_code == 200
    first = await api.order(key="cheap")
    assert first.json()["charge"] == "0.050000"  # 100 units at 0.50 per 1000
    # Bob has no price of his own: the catalog's rate.
    deposit = await api.http.post(
        f"/v1/customers/{api.other_customer_id}/deposits",
        json={"amount": "1"},
        headers={**api.as_("storefront"), "Idempotency-Key": "bob-funds"},
    )
    assert deposit.status_code == 201, deposit.text
    bob = await api.http.post(
        "/v1/orders",
        json={"service_id": SERVICE, "link": LINK, "quantity": 100},
        headers={**api.as_("other_customer"), "Idempotency-Key": "bob"},
    )
    assert (bob.status_code, bob.json()["charge"]) == (201, "0.100000")
    # A new price applies to the next order only; the first keeps what it was charged.
    assert (await _put(api, {"discount_pct": "25"})).status_code == 200
    second = await api.order(key="discounted")
    assert second.json()["charge"] == "0.075000"
    shown = await api.http.get(f"/v1/orders/{first.json()['id']}", headers=api.as_("support"))
    assert shown.json()["charge"] == "0.050000"
    statement = await api.http.get(f"/v1/customers/{api.customer_id}/statement", headers=api.as_("support"))
    assert statement.json()["balance"] == "0.875000"
    # Mass orders go through the same intake.
    mass = await api.http.post(
        "/v1/orders/mass",
        json={"customer_id": api.customer_id, "text": f"{SERVICE}|{LINK}|200"},
        headers={**api.as_("storefront"), "Idempotency-Key": "mass"},
    )
    assert mass.json()["lines"][0]["charge"] == "0.150000"
    # Removed: the catalog's rate again.
    await api.http.delete(f"/v1/customers/{api.customer_id}/prices/{SERVICE}", headers=api.as_("admin"))
    assert (await api.order(key="full")).json()["charge"] == "0.100000"


async def test_services_show_the_customers_own_rate(api: Api) -> None:
    assert await _v2_rate(api, "customer") == "1.00"
    assert (await _put(api, {"rate": "0.71234"})).status_code == 200
    assert await _v2_rate(api, "customer") == "0.71234"
    assert await _v2_rate(api, "other_customer") == "1.00"
    rest = {}
    for who in ("customer", "other_customer", "storefront"):
        [service] = (await api.http.get("/v1/services", headers=api.as_(who))).json()["services"]
        rest[who] = service["rate"]
    assert rest == {"customer": "0.712340", "other_customer": "1.000000", "storefront": "1.000000"}


async def test_bad_prices_are_refused_with_a_stable_code(api: Api) -> None:
    cases = [
        ({}, 422, "invalid_request"),
        ({"rate": "1", "discount_pct": "5"}, 422, "invalid_request"),
        ({"discount_pct": "0"}, 422, "invalid_request"),
        ({"discount_pct": "100.01"}, 422, "invalid_request"),
        ({"discount_pct": "12.345"}, 422, "invalid_request"),
        ({"rate": "-1"}, 422, "invalid_request"),
        ({"rate": "0.0000001"}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        response = await _put(api, body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    unknown_service = await _put(api, {"rate": "1"}, service=999)
    assert (unknown_service.status_code, unknown_service.json()["code"]) == (404, "service_not_found")
    unknown_customer = await _put(api, {"rate": "1"}, customer=999_999)
    assert (unknown_customer.status_code, unknown_customer.json()["code"]) == (404, "customer_not_found")
    listed = await api.http.get(f"/v1/customers/{api.customer_id}/prices", headers=api.as_("admin"))
    assert listed.json() == {"prices": []}


async def test_only_an_admin_manages_prices(api: Api) -> None:
    path = f"/v1/customers/{api.customer_id}/prices"
    for who in ("storefront", "support", "ops", "customer"):
        calls = [
            await api.http.get(path, headers=api.as_(who)),
            await _put(api, {"rate": "0.1"}, role=who),
            await api.http.delete(f"{path}/{SERVICE}", headers=api.as_(who)),
        ]
        assert [c.status_code for c in calls] == [403, 403, 403], who
    assert (await api.http.get(path)).status_code == 401
    listed = await api.http.get(path, headers=api.as_("admin"))
    assert listed.json() == {"prices": []}
