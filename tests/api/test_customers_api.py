"""Customers' money over HTTP: statements (every role, a customer key only its own) and admin adjustments."""

from __future__ import annotations

import pytest

from store import ledger
from support import Api


async def _adjust(api: Api, amount: str, key: str, role: str = "admin", **body: str) -> dict[str, object]:
    response = await api.http.post(
        f"/v1/customers/{api.customer_id}/adjustments",
        json={"amount": amount, "reason": "goodwill"} | body,
        headers={**api.as_(role), "Idempotency-Key": key},
    )
    return {"status": response.status_code, **response.json()}


async def test_an_admin_adjusts_a_balance_once_per_key(api: Api) -> None:
    credit = await _adjust(api, "0.25", "adj-1")
    assert (credit["status"], credit["amount"], credit["balance"], credit["replayed"]) == (
        201,
        "0.250000",
        "1.250000",
        False,
    )
    replay = await _adjust(api, "0.25", "adj-1")
    assert (replay["status"], replay["balance"], replay["replayed"]) == (200, "1.250000", True)
    assert replay["transfer_id"] == credit["transfer_id"]
    debit = await _adjust(api, "-1.000001", "adj-2", reason="charged twice by the old panel")
    assert (debit["status"], debit["amount"], debit["balance"]) == (201, "-1.000001", "0.249999")
    clash = await _adjust(api, "-0.25", "adj-1")
    assert (clash["status"], clash["code"]) == (422, "idempotency_conflict")
    overdraw = await _adjust(api, "-0.25", "adj-3")
    assert (overdraw["status"], overdraw["code"]) == (402, "insufficient_funds")
    async with api.sessions() as session:
        assert await ledger.check_invariants(session) == []


@pytest.mark.parametrize(
    ("amount", "body", "code"),
    [
        ("0", {}, "invalid_amount"),
        ("-0.000000", {}, "invalid_amount"),
        ("1.0000001", {}, "invalid_request"),
        ("--1", {}, "invalid_request"),
        ("1", {"reason": ""}, "invalid_request"),
        ("1", {"reason": "   "}, "invalid_request"),
        ("1", {"extra": "x"}, "invalid_request"),
    ],
)
async def test_bad_adjustments_are_refused(api: Api, amount: str, body: dict[str, str], code: str) -> None:
    refused = await _adjust(api, amount, "bad", **body)
    assert (refused["status"], refused["code"]) == (422, code)


async def test_only_an_admin_adjusts(api: Api) -> None:
    for role in ("storefront", "support", "ops", "customer"):
        refused = await _adjust(api, "5", f"by-{role}", role=role)
        assert (refused["status"], refused["code"]) == (403, "forbidden"), role
    no_key = await api.http.post(
        f"/v1/customers/{api.customer_id}/adjustments",
        json={"amount": "5", "reason": "x"},
        headers=api.as_("admin"),
    )
    assert (no_key.status_code, no_key.json()["code"]) == (422, "invalid_request")
    unknown = await api.http.post(
        "/v1/customers/99999/adjustments",
        json={"amount": "5", "reason": "x"},
        headers={**api.as_("admin"), "Idempotency-Key": "u"},
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "customer_not_found")


async def test_a_statement_shows_every_movement_with_the_balance_after_it(api: Api) -> None:
    order = (await api.order(quantity=300)).json()  # 0.30
    await _adjust(api, "-0.05", "fee", reason="wire fee")
    url = f"/v1/customers/{api.customer_id}/statement"
    first = (await api.http.get(f"{url}?limit=2", headers=api.as_("support"))).json()
    assert first["balance"] == "0.650000"
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in first["entries"]] == [
        ("adjustment", "-0.050000", "0.650000"),
        ("charge", "-0.300000", "0.700000"),
    ]
    assert first["entries"][0]["reason"] == "wire fee"
    assert first["entries"][1]["order_id"] == order["id"]
    rest = (await api.http.get(f"{url}?limit=2&before={first['next_before']}", headers=api.as_("ops"))).json()
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in rest["entries"]] == [
        ("deposit", "1.000000", "1.000000")
    ]
    assert rest["next_before"] is None


async def test_a_customer_key_reads_only_its_own_statement(api: Api) -> None:
    own = await api.http.get(f"/v1/customers/{api.customer_id}/statement", headers=api.as_("customer"))
    assert (own.status_code, own.json()["balance"], len(own.json()["entries"])) == (200, "1.000000", 1)
    for role in ("storefront", "support", "ops", "admin"):
        seen = await api.http.get(f"/v1/customers/{api.customer_id}/statement", headers=api.as_(role))
        assert seen.status_code == 200, role
    stranger = await api.http.get(
        f"/v1/customers/{api.customer_id}/statement", headers=api.as_("other_customer")
    )
    assert (stranger.status_code, stranger.json()["code"]) == (404, "customer_not_found")
    empty = await api.http.get(
        f"/v1/customers/{api.other_customer_id}/statement", headers=api.as_("other_customer")
    )
    assert (empty.status_code, empty.json()["entries"], empty.json()["next_before"]) == (200, [], None)
    unknown = await api.http.get("/v1/customers/99999/statement", headers=api.as_("support"))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "customer_not_found")
    for query in ("limit=0", "limit=201", "before=0", "before=x"):
        bad = await api.http.get(f"/v1/customers/{api.customer_id}/statement?{query}", headers=api.as_("ops"))
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request"), query
    anonymous = await api.http.get(f"/v1/customers/{api.customer_id}/statement")
    assert anonymous.status_code == 401
