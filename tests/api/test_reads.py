"""Reading orders: filters and the opaque cursor, the detail with its timeline and refills, the catalog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from api.app import create_app
from backoffice.settings import Settings
from store.catalog import load_catalog
from store.db import transaction
from store.models import Order, OrderEvent, Refill
from support import Api, catalog
from workflows import policy
from workflows.models import Phase, Status

# A read-model version no projection of these tests' workflows reaches: the rows keep what the test wrote.
FROZEN = 10**6


async def _freeze(api: Api, order_id: int, **values: object) -> None:
    async with transaction(api.sessions) as session:
        await session.execute(
            update(Order).where(Order.id == order_id).values(state_version=FROZEN, **values)
        )


async def _ids(api: Api, role: str = "support", **params: object) -> list[int]:
    """Every page of a listing, following the cursor."""
    ids: list[int] = []
    cursor = None
    while True:
        query = {**params, "limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await api.http.get("/v1/orders", params=query, headers=api.as_(role))
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [o["id"] for o in page["orders"]]
        if not (cursor := page["next_cursor"]):
            return ids


async def test_orders_are_filtered_and_paged(api: Api) -> None:
    async with transaction(api.sessions) as session:
        await load_catalog(session, catalog(id=11, name="Likes"))
    a, b, c, d, e = [
        (await api.order(key=f"f{n}", service_id=11 if n == 4 else 10)).json()["id"] for n in range(5)
    ]
    now = datetime.now(UTC)
    await _freeze(api, a, status="Completed", phase="refill_window", created_at=now - timedelta(days=3))
    await _freeze(api, b, status="Completed", phase="closed", created_at=now - timedelta(days=2))
    await _freeze(api, c, status="In progress", phase="paused", created_at=now - timedelta(days=1))
    await _freeze(api, d, status="Pending", phase="queued")
    await _freeze(api, e, status="Pending", phase="queued")
    assert await _ids(api) == [a, b, c, d, e]
    assert await _ids(api, status="Completed") == [a, b]
    assert await _ids(api, phase="paused") == [c]
    assert await _ids(api, service_id=11) == [e]
    assert await _ids(api, customer_id=api.customer_id, status="Pending") == [d, e]
    assert await _ids(api, customer_id=api.other_customer_id) == []
    since = (now - timedelta(days=2, hours=1)).isoformat()
    until = (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert await _ids(api, created_from=since, created_to=until) == [b, c]
    assert await _ids(api, "customer") == [a, b, c, d, e]
    assert await _ids(api, "other_customer") == []


async def test_bad_listing_parameters_are_refused_with_a_code(api: Api) -> None:
    for params, code in [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"cursor": "bzotMQ"}, "invalid_cursor"),  # "o:-1"
        ({"cursor": "x" * 101}, "invalid_request"),
        ({"status": "Done"}, "invalid_request"),
        ({"phase": "flying"}, "invalid_request"),
        ({"limit": 0}, "invalid_request"),
        ({"created_from": "yesterday"}, "invalid_request"),
        ({"service_id": 2**63}, "invalid_request"),
    ]:
        response = await api.http.get("/v1/orders", params=params, headers=api.as_("support"))
        assert (response.status_code, response.json()["code"]) == (422, code), params


async def test_the_order_detail_has_its_timeline_and_refills(api: Api) -> None:
    order_id = (await api.order(role="customer", key="t1", customer_id=None)).json()["id"]
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with transaction(api.sessions) as session:
        session.add_all(
            [
                OrderEvent(
                    order_id=order_id, seq=1, at=at, kind="charged", actor="workflow", message="charged"
                ),
                OrderEvent(
                    order_id=order_id, seq=2, at=at, kind="refund", actor="support:key7", message="goodwill"
                ),
                Refill(order_id=order_id, refill_no=1, status="Completed", requested_by="customer:key5"),
            ]
        )
    await _freeze(api, order_id, note="refill window open", refill_deadline=at + timedelta(days=30))

    detail = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("support"))).json()
    assert [(e["seq"], e["kind"], e["actor"]) for e in detail["timeline"]] == [
        (1, "charged", "workflow"),
        (2, "refund", "support:key7"),
    ]
    assert detail["timeline_truncated"] is False
    assert (detail["note"], detail["refill_deadline"]) == ("refill window open", "2026-02-01T03:04:05Z")
    [refill] = detail["refills"]
    assert (refill["refill_no"], refill["status"], refill["requested_by"]) == (
        1,
        "Completed",
        "customer:key5",
    )

    # A customer sees who acted by role only, never which key.
    mine = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("customer"))).json()
    assert [e["actor"] for e in mine["timeline"]] == ["workflow", "support"]
    listed = await api.http.get(f"/v1/orders/{order_id}/refills", headers=api.as_("customer"))
    assert [(r["id"], r["requested_by"]) for r in listed.json()["refills"]] == [(refill["id"], "customer")]


async def test_the_catalog_shows_terms_not_providers(api: Api) -> None:
    response = await api.http.get("/v1/services", headers=api.as_("customer"))
    assert response.status_code == 200
    [service] = response.json()["services"]
    assert service["id"] == 10
    assert service["rate"] == "1.000000"
    assert service["available"] is True
    assert (service["min"], service["max"], service["tolerance_pct"], service["refill"]) == (
        10,
        100000,
        "2",
        False,
    )
    assert not {"routes", "provider", "providers", "api_url", "api_key"} & set(service)
    assert (await api.http.get("/v1/services")).status_code == 401


def test_the_api_and_the_openapi_spell_statuses_and_phases_as_the_workflow_does() -> None:
    spec = create_app(Settings(database_url="postgresql://x/y", temporal_address="x:1")).openapi()
    schemas_ = spec["components"]["schemas"]
    assert schemas_["Status"]["enum"] == [str(s) for s in Status] == list(policy.STATUSES)
    assert schemas_["Phase"]["enum"] == [str(p) for p in Phase] == list(policy.PHASES)
