"""Order actions end to end: REST and API v2 calls reach the real OrderWorkflow (on the Temporal dev server,
with a scripted provider), which accepts or refuses them; the read model, the timeline and the ledger show
the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from temporalio.client import WorkflowExecutionStatus

from backoffice.temporal_client import workflow_id
from store.catalog import load_catalog
from store.db import transaction
from store.ledger import check_invariants
from store.models import Provider
from support import LINK, SERVICE, Api, catalog

# 100 units at this pace take a fraction of a second: the first status check comes at once.
FAST = {"pace_per_hour": 3_600_000}


async def _catalog(api: Api, *, capacity: int = 100, **service: Any) -> None:
    """Service 10 with these terms; providers that answer every second and hold `capacity` orders each."""
    async with transaction(api.sessions) as session:
        await load_catalog(session, catalog(**FAST, **service))
        await session.execute(update(Provider).values(poll_interval_seconds=1, capacity=capacity))


async def _order(api: Api, role: str = "customer", key: str = "o1", **body: Any) -> int:
    response = await api.order(
        role=role, key=key, customer_id=None if role == "customer" else api.customer_id, **body
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _eventually(
    api: Api, order_id: int, ok: Callable[[dict[str, Any]], bool], seconds: float = 30
) -> dict[str, Any]:
    order: dict[str, Any] = {}
    for _ in range(int(seconds * 5)):
        order = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("admin"))).json()
        if ok(order):
            return order
        await asyncio.sleep(0.2)
    raise AssertionError(f"order never got there: {order}")


async def _balance(api: Api) -> str:
    return str(
        (await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("support"))).json()["balance"]
    )


def _script(api: Api, *answers: tuple[Any, ...]) -> None:
    for provider_id in api.providers.values():
        api.provider.script[provider_id] = list(answers)


async def test_a_customer_cancels_a_waiting_order_and_gets_the_charge_back(api: Api) -> None:
    await _catalog(api, capacity=0)  # no provider has room: the order waits its turn, Pending
    order_id = await _order(api)
    waiting = await _eventually(api, order_id, lambda o: o["queue_position"] is not None)
    assert (waiting["phase"], waiting["queue_position"]) == ("queued", 1)
    assert await _balance(api) == "0.900000"
    response = await api.http.post(
        f"/v1/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=api.as_("customer")
    )
    assert response.status_code == 200, response.text
    order = await _eventually(api, order_id, lambda o: o["status"] == "Canceled")
    assert order["refunded"] == order["charge"] == "0.100000"
    assert order["queue_position"] is None  # it left the line
    assert await _balance(api) == "1.000000"
    [cancel] = [e for e in order["timeline"] if e["kind"] == "cancel"]
    assert cancel["actor"].startswith("customer:key")
    mine = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("customer"))).json()
    assert {e["actor"] for e in mine["timeline"]} == {"customer", "workflow"}
    again = await api.http.post(f"/v1/orders/{order_id}/cancel", headers=api.as_("customer"))
    assert again.status_code == 409
    assert again.json()["code"] in ("cannot_cancel", "order_closed")


async def test_support_refunds_once_per_key_and_never_more_than_the_charge(api: Api) -> None:
    await _catalog(api)
    _script(api, ("In progress", None))
    order_id = await _order(api, role="storefront")
    await _eventually(api, order_id, lambda o: o["status"] == "In progress")
    support = api.as_("support")

    async def refund(key: str, **body: Any) -> Any:
        return await api.http.post(
            f"/v1/orders/{order_id}/refunds",
            json={"reason": "ticket 4411", **body},
            headers=support | {"Idempotency-Key": key},
        )

    first = await refund("r1", amount="0.02")
    assert (first.status_code, first.json()["refunded"], first.json()["replayed"]) == (201, "0.020000", False)
    replay = await refund("r1", amount="0.02")
    assert (replay.status_code, replay.json()["refunded"], replay.json()["replayed"]) == (
        200,
        "0.000000",
        True,
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    by_units = await refund("r2", units=10)  # 10 of 100 units of a 0.10 order
    assert (by_units.status_code, by_units.json()["refunded"]) == (201, "0.010000")
    capped = await refund("r3", amount="5")
    assert (capped.status_code, capped.json()["refunded"], capped.json()["total_refunded"]) == (
        201,
        "0.070000",
        "0.100000",
    )
    # Refunded in full, the order stops delivering and settles: nothing more is refunded, whatever it says.
    nothing = await refund("r4", amount="0.01")
    assert nothing.status_code == 409
    assert nothing.json()["code"] in ("nothing_refundable", "order_settling", "order_closed")
    assert await _balance(api) == "1.000000"
    order = await _eventually(api, order_id, lambda o: o["refunded"] == "0.100000")
    refunds = [e for e in order["timeline"] if e["kind"] == "refund"]
    assert len(refunds) == 3
    assert all(e["actor"].startswith("support:key") for e in refunds)


async def test_ops_pause_and_resume_an_order(api: Api) -> None:
    await _catalog(api)
    _script(api, ("In progress", None))
    order_id = await _order(api, role="storefront")
    await _eventually(api, order_id, lambda o: o["phase"] == "delivering")
    ops = api.as_("ops")
    url = f"/v1/orders/{order_id}"
    paused = await api.http.post(f"{url}/pause", json={"reason": "provider incident 12"}, headers=ops)
    assert (paused.status_code, paused.json()["phase"]) == (200, "paused"), paused.text
    twice = await api.http.post(f"{url}/pause", json={"reason": "again"}, headers=ops)
    assert (twice.status_code, twice.json()["code"]) == (409, "cannot_pause")
    await _eventually(api, order_id, lambda o: o["phase"] == "paused")
    resumed = await api.http.post(f"{url}/resume", json={"reason": "incident over"}, headers=ops)
    assert (resumed.status_code, resumed.json()["phase"]) == (200, "delivering"), resumed.text
    not_paused = await api.http.post(f"{url}/resume", json={"reason": "again"}, headers=ops)
    assert (not_paused.status_code, not_paused.json()["code"]) == (409, "not_paused")
    order = await _eventually(
        api, order_id, lambda o: {"paused", "resumed"} <= {e["kind"] for e in o["timeline"]}
    )
    held = {e["kind"]: e for e in order["timeline"] if e["kind"] in ("paused", "resumed")}
    assert held["paused"]["actor"].startswith("ops:key")
    assert "provider incident 12" in held["paused"]["message"]


async def test_ops_pause_and_resume_a_whole_provider(api: Api) -> None:
    await _catalog(api)
    _script(api, ("In progress", None))
    ids = [await _order(api, role="storefront", key=f"p{n}") for n in range(3)]
    for order_id in ids:
        await _eventually(api, order_id, lambda o: o["phase"] == "delivering")
    alpha = api.providers["alpha"]
    paused = await api.http.post(
        f"/v1/providers/{alpha}/pause", json={"reason": "outage"}, headers=api.as_("ops")
    )
    assert paused.json() | {"refusals": []} == {
        "provider_id": alpha,
        "action": "pause",
        "orders": 3,
        "accepted": 3,
        "refused": 0,
        "refusals": [],
    }
    for order_id in ids:
        await _eventually(api, order_id, lambda o: o["phase"] == "paused")
    # Resume one by hand first: the provider-wide resume counts its refusal.
    await api.http.post(f"/v1/orders/{ids[0]}/resume", json={"reason": "vip"}, headers=api.as_("ops"))
    resumed = await api.http.post(
        f"/v1/providers/{alpha}/resume", json={"reason": "back"}, headers=api.as_("admin")
    )
    body = resumed.json()
    assert (body["orders"], body["accepted"], body["refused"]) == (3, 2, 1)
    assert body["refusals"] == [
        {"order_id": ids[0], "code": "not_paused", "message": "the order is not paused"}
    ]


async def test_support_reports_a_link_fault(api: Api) -> None:
    await _catalog(api)
    _script(api, ("In progress", 60))
    order_id = await _order(api, role="storefront")
    await _eventually(api, order_id, lambda o: o["phase"] == "delivering")
    url = f"/v1/orders/{order_id}/link-fault"
    reported = await api.http.post(url, json={"reason": "account is private"}, headers=api.as_("support"))
    assert reported.status_code == 200, reported.text
    order = await _eventually(api, order_id, lambda o: o["status"] in ("Partial", "Canceled", "Completed"))
    assert any(e["actor"].startswith("support:key") and e["kind"] == "link_fault" for e in order["timeline"])
    again = await api.http.post(url, json={"reason": "again"}, headers=api.as_("support"))
    assert again.status_code == 409
    assert again.json()["code"] in ("cannot_report_link_fault", "order_closed")


async def test_refills_over_rest_and_api_v2(api: Api) -> None:
    await _catalog(api, refill_days=30, refill_max=3, refill_cooldown_hours=0)
    _script(api, ("Completed", 0))
    order_id = await _order(api)
    await _eventually(api, order_id, lambda o: o["phase"] == "refill_window")
    customer = api.as_("customer")
    made = await api.http.post(f"/v1/orders/{order_id}/refills", json={"reason": "dropped"}, headers=customer)
    assert made.status_code == 201, made.text
    first = made.json()
    assert (first["order_id"], first["refill_no"]) == (order_id, 1)
    assert first["status"] in ("Pending", "In progress")  # the order may have forwarded it already
    busy = await api.http.post(f"/v1/orders/{order_id}/refills", headers=customer)
    assert (busy.status_code, busy.json()["code"]) == (409, "refill_in_progress")
    key = api.keys["customer"]

    async def refill_status(refill_id: object) -> object:
        form = {"key": key, "action": "refill_status", "refill": refill_id}
        return (await api.http.post("/api/v2", data=form)).json()

    # The provider's progress is read every 10 minutes of workflow time (the refill-window tests follow a
    # refill to its end on the time-skipping server); here the refill is open and API v2 sees it.
    assert await refill_status(first["id"]) in ({"status": "Pending"}, {"status": "In progress"})
    second = (await api.http.post("/api/v2", data={"key": key, "action": "refill", "order": order_id})).json()
    assert second == {"error": busy.json()["message"]}
    listed = (await api.http.get(f"/v1/orders/{order_id}/refills", headers=customer)).json()["refills"]
    assert [(r["id"], r["refill_no"], r["requested_by"]) for r in listed] == [(first["id"], 1, "customer")]
    order = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("support"))).json()
    assert any(
        e["kind"] == "refill_requested" and e["actor"].startswith("customer:key") for e in order["timeline"]
    )


async def test_refills_are_refused_with_the_standard_texts(api: Api) -> None:
    async with transaction(api.sessions) as session:  # service 11 refills, at most once a day
        await load_catalog(session, catalog(id=11, refill_days=30, refill_max=3, **FAST))
    await _catalog(api)  # service 10: no refill
    _script(api, ("Completed", 0))
    completed = await _order(api, key="c", service_id=11)
    await _eventually(api, completed, lambda o: o["phase"] == "refill_window")
    key = api.keys["customer"]
    soon = await api.http.post("/api/v2", data={"key": key, "action": "refill", "order": completed})
    assert soon.json() == {"error": "The order was completed or refill was requested less than 24 hours ago"}
    _script(api, ("In progress", None))
    delivering = await _order(api, key="d")
    await _eventually(api, delivering, lambda o: o["phase"] == "delivering")
    refused = await api.http.post(f"/v1/orders/{delivering}/refills", headers=api.as_("customer"))
    assert refused.status_code == 409
    assert refused.json()["code"] in ("refill_disabled", "not_completed")
    v2 = await api.http.post("/api/v2", data={"key": key, "action": "refill", "orders": f"{delivering},1"})
    assert v2.json()[0]["refill"]["error"] in (
        "Refill is disabled for this service",
        "The order is not completed",
    )
    assert v2.json()[1] == {"order": 1, "refill": {"error": "Incorrect order ID"}}


async def test_api_v2_cancel_reaches_the_workflow(api: Api) -> None:
    await _catalog(api, capacity=0)
    key = api.keys["customer"]
    placed = (
        await api.http.post(
            "/api/v2", data={"key": key, "action": "add", "service": SERVICE, "link": LINK, "quantity": 100}
        )
    ).json()
    order_id = placed["order"]
    await _eventually(api, order_id, lambda o: o["updated_at"] != o["created_at"])
    answer = (
        await api.http.post("/api/v2", data={"key": key, "action": "cancel", "orders": str(order_id)})
    ).json()
    assert answer == [{"order": order_id, "cancel": 1}]
    await _eventually(api, order_id, lambda o: o["status"] == "Canceled")
    again = (await api.http.post("/api/v2", data={"key": key, "action": "cancel", "order": order_id})).json()
    assert again == [{"order": order_id, "cancel": {"error": "The order cannot be canceled"}}]
    status = (
        await api.http.get("/api/v2", params={"key": key, "action": "status", "order": order_id})
    ).json()
    assert status["status"] == "Canceled"


async def _ended(api: Api, order_id: int) -> None:
    """Wait until the order's workflow has ended (the read model says closed a moment before)."""
    assert api.temporal is not None
    handle = api.temporal.get_workflow_handle(workflow_id(order_id))
    for _ in range(100):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id}'s workflow still runs")


async def test_an_ended_order_answers_by_its_rules_and_still_takes_a_support_refund(api: Api) -> None:
    await _catalog(api)  # no refill window: a completed order closes and its workflow ends
    _script(api, ("Completed", 0))
    order_id = await _order(api, role="storefront")
    await _eventually(api, order_id, lambda o: o["phase"] == "closed")
    await _ended(api, order_id)

    # The same refusals as while it ran, for its service and its status: never a generic "closed".
    cancel = await api.http.post(f"/v1/orders/{order_id}/cancel", headers=api.as_("storefront"))
    assert (cancel.status_code, cancel.json()["code"]) == (409, "cannot_cancel")
    refill = await api.http.post(f"/v1/orders/{order_id}/refills", json={}, headers=api.as_("storefront"))
    assert (refill.status_code, refill.json()["code"]) == (409, "refill_disabled")
    key = api.keys["customer"]
    v2 = (await api.http.post("/api/v2", data={"key": key, "action": "refill", "order": order_id})).json()
    assert v2 == {"error": "Refill is disabled for this service"}
    v2_cancel = await api.http.post("/api/v2", data={"key": key, "action": "cancel", "order": order_id})
    assert v2_cancel.json() == [{"order": order_id, "cancel": {"error": "The order cannot be canceled"}}]

    # Support still refunds it: from revenue, once per key, never beyond the charge.
    support = api.as_("support")

    async def refund(key: str, **body: Any) -> Any:
        return await api.http.post(
            f"/v1/orders/{order_id}/refunds",
            json={"reason": "ticket 5120: drop after the order closed", **body},
            headers=support | {"Idempotency-Key": key},
        )

    first = await refund("late-1", amount="0.03")
    assert (first.status_code, first.json()["refunded"], first.json()["replayed"]) == (201, "0.030000", False)
    replay = await refund("late-1", amount="0.03")
    replayed = (replay.status_code, replay.json()["refunded"], replay.json()["replayed"])
    assert replayed == (200, "0.000000", True)
    conflict = await refund("late-1", amount="0.04")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "idempotency_conflict")
    capped = await refund("late-2", amount="5")
    assert (capped.status_code, capped.json()["refunded"], capped.json()["total_refunded"]) == (
        201,
        "0.070000",
        "0.100000",
    )
    assert capped.json()["status"] == "Refunded"
    nothing = await refund("late-3", units=1)
    assert (nothing.status_code, nothing.json()["code"]) == (409, "nothing_refundable")
    assert await _balance(api) == "1.000000"

    order = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("admin"))).json()
    assert (order["status"], order["refunded"]) == ("Refunded", "0.100000")
    refunds = [e["message"] for e in order["timeline"] if e["kind"] == "refund"]
    assert refunds == [
        "refunded 0.030000 after the order ended: ticket 5120: drop after the order closed",
        "refunded 0.070000 after the order ended: ticket 5120: drop after the order closed",
    ]
    async with api.sessions() as session:
        assert await check_invariants(session) == []


async def _v2_status(api: Api, order_id: int) -> dict[str, Any]:
    key = api.keys["customer"]
    answer = await api.http.post("/api/v2", data={"key": key, "action": "status", "order": order_id})
    return dict(answer.json())


async def test_customers_never_see_upstream_and_staff_see_everything(api: Api) -> None:
    await _catalog(api)
    _script(api, ("In progress", 60))
    order_id = await _order(api)
    await _eventually(api, order_id, lambda o: o["delivered"] == 40)
    mine = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("customer"))).json()
    assert (mine["provider_status"], mine["cost"], mine["margin"], mine["provider_orders"]) == (None,) * 4
    for event in mine["timeline"]:
        assert event["detail"] is None
        assert "provider" not in event["message"]
        assert "their order" not in event["message"]
    assert "provider" not in mine["note"]
    listed = (await api.http.get("/v1/orders", headers=api.as_("customer"))).json()["orders"]
    assert all(o["provider_status"] is None and o["cost"] is None for o in listed)
    assert set(await _v2_status(api, order_id)) == {"charge", "start_count", "status", "remains", "currency"}
    staff = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("support"))).json()
    assert staff["provider_status"] == "IN PROGRESS"
    submitted = next(e for e in staff["timeline"] if e["kind"] == "run_submitted")
    assert submitted["detail"].startswith("provider ")
    assert "their order" in submitted["detail"]
    assert [p["run_no"] for p in staff["provider_orders"]] == []  # the scripted provider keeps no rows


async def test_api_v2_status_tells_resellers_what_was_refunded(api: Api) -> None:
    """The protocol's formula refund = charge * remains / quantity gives back what the order refunded."""
    await _catalog(api, link_fault_refund="none", tolerance_pct="0")
    _script(api, ("Partial", 30))
    partial = await _order(api, key="p")
    await _eventually(api, partial, lambda o: o["phase"] == "closed")
    assert await _v2_status(api, partial) | {"start_count": ""} == {
        "charge": "0.10", "start_count": "", "status": "Partial", "remains": "30", "currency": "USD",
    }  # fmt: skip
    # A link fault on a service that refunds nothing: shown as done with nothing to refund, never Partial.
    _script(api, ("Canceled", 70, "Link is private"))
    faulty = await _order(api, key="f")
    shown = await _eventually(api, faulty, lambda o: o["phase"] == "closed")
    assert (shown["status"], shown["refunded"]) == ("Partial", "0.000000")
    assert (await _v2_status(api, faulty))["status"] == "Completed"
    assert (await _v2_status(api, faulty))["remains"] == "0"
    _script(api, ("Completed", 0))
    done = await _order(api, key="d")
    await _eventually(api, done, lambda o: o["phase"] == "closed")
    assert ((await _v2_status(api, done))["status"], (await _v2_status(api, done))["remains"]) == (
        "Completed",
        "0",
    )


async def test_the_queue_note_and_the_place_in_line_agree(api: Api) -> None:
    await _catalog(api, capacity=1, routes=[{"provider": "alpha", "service": "a1"}])
    _script(api, ("In progress", 60))
    first = await _order(api, key="q1")
    await _eventually(api, first, lambda o: o["phase"] == "delivering")
    second = await _order(api, key="q2")
    waiting = await _eventually(api, second, lambda o: o["queue_position"] == 1)
    assert waiting["note"] == "waiting for a provider slot: number 1 in line"
