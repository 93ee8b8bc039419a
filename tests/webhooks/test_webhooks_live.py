"""Webhooks end to end on the Temporal dev server: a storefront registers an endpoint over REST, orders run
through the real OrderWorkflow, and a real HTTP receiver gets their events signed and in order; a slow
receiver does not slow the orders; the endpoints' REST surface keeps its roles and errors."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from webhook_receiver import Live, by_order

from store.catalog import load_catalog
from store.db import transaction
from store.models import Provider
from support import Api, catalog

ALL_TYPES = ["order.created", "order.status_changed", "order.refunded", "refill.finished"]


async def _fast_catalog(api: Api) -> None:
    """Service 10 delivering 100 units in a fraction of a second, providers answering every second."""
    async with transaction(api.sessions) as session:
        await load_catalog(session, catalog(pace_per_hour=3_600_000))
        await session.execute(update(Provider).values(poll_interval_seconds=1))


async def _register(live: Live, types: list[str] | None = None) -> dict[str, Any]:
    made = await live.api.http.post(
        "/v1/webhooks",
        json={"url": live.url, "event_types": types or ALL_TYPES, "description": "shop"},
        headers=live.api.as_("storefront"),
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


async def _eventually(check: Callable[[], Any], seconds: float = 40) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError("never happened")


async def _order(api: Api, key: str) -> int:
    response = await api.order(key=key)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _closed(api: Api, order_id: int) -> bool:
    order = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("storefront"))).json()
    return bool(order["phase"] == "closed")


async def test_events_arrive_signed_and_in_order(live: Live) -> None:
    api = live.api
    await _fast_catalog(api)
    endpoint = await _register(live)
    assert endpoint["secret"].startswith("whsec_")
    order_ids = [await _order(api, f"k{n}") for n in range(3)]
    for order_id in order_ids:
        await _eventually(lambda order_id=order_id: _closed(api, order_id))  # type: ignore[misc]

    async def all_closed_events() -> bool:
        stories = by_order(live.receiver.payloads(endpoint["secret"]))
        return all(
            s[-1]["type"] == "order.status_changed" and s[-1]["data"]["new"]["phase"] == "closed"
            for s in (stories.get(o, [{"type": ""}]) for o in order_ids)
        )

    await _eventually(all_closed_events)
    taken = live.receiver.taken()
    assert len({r.event_id for r in taken}) == len(taken)  # each event once
    for request in taken:
        assert request.headers["webhook-id"].startswith("evt_")
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    stories = by_order(live.receiver.payloads(endpoint["secret"]))
    for order_id in order_ids:
        story = stories[order_id]
        assert story[0]["type"] == "order.created"
        assert story[0]["data"]["status"] == "Pending"
        changes = [p["data"] for p in story if p["type"] == "order.status_changed"]
        # In order: each change starts where the one before it ended.
        assert changes[0]["old"] == {"status": "Pending", "phase": "queued"}
        assert all(a["new"] == b["old"] for a, b in itertools.pairwise(changes))
        assert changes[-1]["new"] == {"status": "Completed", "phase": "closed"}
        # The order as the REST API shows it (as of the event's first sending).
        shown = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("storefront"))).json()
        last = story[-1]["data"]["order"]
        assert set(last) == set(shown)
        assert (last["id"], last["status"], last["charge"]) == (order_id, "Completed", shown["charge"])
        assert [p["timestamp"] for p in story] == sorted(p["timestamp"] for p in story)

    log = await api.http.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=api.as_("storefront"))
    assert log.status_code == 200, log.text
    deliveries = log.json()["deliveries"]
    assert {d["state"] for d in deliveries} == {"delivered"}
    assert all(d["recent_attempts"][0]["status_code"] == 200 for d in deliveries)
    assert all(d["next_try_at"] is None for d in deliveries)

    # A manual redelivery sends the same event (the same webhook-id) once more.
    oldest = deliveries[-1]
    again = await api.http.post(
        f"/v1/webhooks/{endpoint['id']}/deliveries/{oldest['id']}/redeliver", headers=api.as_("admin")
    )
    assert again.status_code == 202, again.text
    assert again.json()["event_id"] == oldest["event_id"]

    async def sent_twice() -> bool:
        return sum(r.event_id == oldest["event_id"] for r in live.receiver.taken()) == 2

    await _eventually(sent_twice)


async def test_a_slow_receiver_does_not_slow_orders(live: Live) -> None:
    api = live.api
    await _fast_catalog(api)
    # Baseline: how long orders take with no endpoint at all.
    started = time.monotonic()
    plain = [await _order(api, f"plain{n}") for n in range(3)]
    for order_id in plain:
        await _eventually(lambda order_id=order_id: _closed(api, order_id))  # type: ignore[misc]
    baseline = time.monotonic() - started

    live.receiver.delay = 3.0  # every answer takes three seconds
    endpoint = await _register(live)
    started = time.monotonic()
    watched = [await _order(api, f"slow{n}") for n in range(3)]
    for order_id in watched:
        await _eventually(lambda order_id=order_id: _closed(api, order_id))  # type: ignore[misc]
    with_hooks = time.monotonic() - started
    answered = len(live.receiver.requests)
    print("slow receiver:", {"orders without hooks s": baseline, "with a 3 s receiver s": with_hooks})
    # Each order makes at least four events (created, queued -> delivering ... -> closed): twelve or more,
    # three seconds each, while the orders were done long before.
    assert answered < 6
    assert with_hooks < baseline + 5
    log = await api.http.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=api.as_("storefront"))
    assert any(d["state"] == "pending" for d in log.json()["deliveries"])


async def test_endpoints_over_rest(live: Live) -> None:
    api = live.api
    storefront = api.as_("storefront")
    made = await _register(live, ["order.refunded", "order.created", "order.refunded"])
    assert made["event_types"] == ["order.created", "order.refunded"]
    assert (made["enabled"], made["disabled_reason"]) == (True, None)
    listed = (await api.http.get("/v1/webhooks", headers=api.as_("admin"))).json()["endpoints"]
    assert [e["id"] for e in listed] == [made["id"]]
    assert all("secret" not in e for e in listed)  # shown once, at creation
    url = f"/v1/webhooks/{made['id']}"
    assert "secret" not in (await api.http.get(url, headers=storefront)).json()

    disabled = await api.http.post(f"{url}/disable", json={"reason": "moving house"}, headers=storefront)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_reason"].startswith("moving house")
    enabled = await api.http.post(f"{url}/enable", headers=storefront)
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)

    rotated = await api.http.post(f"{url}/rotate-secret", headers=storefront)
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != made["secret"]

    for role in ("support", "ops", "customer"):
        refused = await api.http.get("/v1/webhooks", headers=api.as_(role))
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        refused = await api.http.post(
            "/v1/webhooks", json={"url": live.url, "event_types": ALL_TYPES}, headers=api.as_(role)
        )
        assert refused.status_code == 403
    assert (await api.http.get("/v1/webhooks")).status_code == 401

    for body in (
        {"url": "ftp://127.0.0.1/hook", "event_types": ALL_TYPES},
        {"url": "http://user:pw@127.0.0.1/hook", "event_types": ALL_TYPES},
        {"url": live.url, "event_types": []},
        {"url": live.url, "event_types": ["order.deleted"]},
        {"url": live.url, "event_types": ALL_TYPES, "secret": "mine"},
    ):
        bad = await api.http.post("/v1/webhooks", json=body, headers=storefront)
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request"), body
    bad_cursor = await api.http.get(f"{url}/deliveries?cursor=abc", headers=storefront)
    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (422, "invalid_cursor")
    missing = await api.http.post(f"{url}/deliveries/1/redeliver", headers=storefront)
    assert (missing.status_code, missing.json()["code"]) == (404, "delivery_not_found")

    assert (await api.http.delete(url, headers=storefront)).status_code == 204
    for gone in (
        await api.http.get(url, headers=storefront),
        await api.http.delete(url, headers=storefront),
        await api.http.post(f"{url}/rotate-secret", headers=storefront),
        await api.http.get(f"{url}/deliveries", headers=storefront),
    ):
        assert (gone.status_code, gone.json()["code"]) == (404, "webhook_not_found")
