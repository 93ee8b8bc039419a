"""Orders of every scenario survive a SIGKILLed worker, a Temporal restart and a flaky provider link.

At the end every order is where its scenario says, the ledger is sound, and the provider got each run at
most once: a run whose submission fate was lost is in `needs_reconciliation`, never sent twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from components import Running
from sqlalchemy import select

from store.db import make_engine, make_sessionmaker
from store.models import ProviderSubmission

pytestmark = pytest.mark.faults

DEDUPE, PLAIN = 31, 32  # services on a provider that deduplicates by our key, and on one that does not
# Scenario -> what the simulator does with links containing it.
RULES: dict[str, dict[str, Any]] = {
    "norm": {"scenario": "normal"},
    "inst": {"scenario": "instant"},
    "part": {"scenario": "partial", "value": 0.5},
    "fault": {"scenario": "link_fault"},
    # Answers to `add` lost for a few seconds: the deduplicating provider gets the run again with the same
    # key once answers come back; the other one's runs wait for ops.
    "lost": {"scenario": "lost_answer", "seconds": 4},
    "lost_32": {"scenario": "lost_answer"},
    "slow": {"scenario": "slow", "value": 3},
}
SCENARIOS = ("norm", "inst", "part", "fault", "lost", "slow")
QUANTITY = 200
# (status, delivered) each scenario ends with once its order closed.
EXPECTED = {
    "norm": ("Completed", QUANTITY),
    "inst": ("Completed", QUANTITY),
    "part": ("Partial", QUANTITY // 2),
    "fault": ("Canceled", 0),
    "lost": ("Completed", QUANTITY),
    "slow": ("Completed", QUANTITY),
}
SETTLE_WITHIN = 170  # seconds after the last fault; a SIGKILLed activity waits out its 60 s timeout


async def _place(
    http: httpx.AsyncClient, run: Running, scenario: str, service: int, n: int
) -> dict[str, Any]:
    body = {
        "customer_id": run.customer_id,
        "service_id": service,
        "link": f"https://instagram.com/{scenario}_{service}_{n}",
        "quantity": QUANTITY,
    }
    headers = {**run.as_("storefront"), "Idempotency-Key": f"{scenario}-{service}-{n}"}
    for _ in range(60):  # while Temporal restarts the API answers 503: the same request again is safe
        response = await http.post("/v1/orders", json=body, headers=headers)
        if response.status_code in (200, 201):
            return dict(response.json()) | {"scenario": scenario}
        assert response.status_code == 503, response.text
        await asyncio.sleep(1)
    raise AssertionError(f"order {body['link']} was never accepted")


async def _submissions(database_url: str) -> dict[int, list[str]]:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = (await session.scalars(select(ProviderSubmission))).all()
            found: dict[int, list[str]] = {}
            for row in rows:
                found.setdefault(row.order_id, []).append(row.state)
            return found
    finally:
        await engine.dispose()


def _waiting_for_ops(order: dict[str, Any], submissions: dict[int, list[str]]) -> bool:
    return order["phase"] == "interrupted" and "needs_reconciliation" in submissions.get(order["id"], [])


async def test_orders_survive_worker_kills_a_temporal_restart_and_a_flaky_link(running: Running) -> None:
    stack, link = running.stack, running.link
    began = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http,
        httpx.AsyncClient(base_url=stack.simulator_url, timeout=30) as sim,
    ):
        for scenario, rule in RULES.items():
            (
                await sim.post("/sim/scenario", json={"link_contains": f"{scenario}_", **rule})
            ).raise_for_status()
        services = (DEDUPE, PLAIN)
        first = [(s, svc, n) for s in SCENARIOS for svc in services for n in range(2)]
        second = [(s, svc, n) for s in SCENARIOS for svc in services for n in range(2, 3)]

        orders = list(await asyncio.gather(*(_place(http, running, *spec) for spec in first)))
        # Faults while the first orders are submitted and delivered.
        await asyncio.sleep(1)
        stack.worker.kill()
        link.set("reset")
        await asyncio.sleep(2)
        stack.worker.start()
        await asyncio.sleep(2)
        link.set("pass")
        await asyncio.sleep(3)
        stack.worker.kill()
        await asyncio.sleep(1)
        stack.worker.start()
        link.set("blackhole")  # requests in flight now time out (15 s) without an answer
        await asyncio.sleep(4)
        link.set("pass")
        stack.temporal.stop()
        await asyncio.sleep(1)
        await stack.start_temporal()
        # More orders through the restarted server, and one more worker crash while they start.
        orders += await asyncio.gather(*(_place(http, running, *spec) for spec in second))
        await asyncio.sleep(1)
        stack.worker.kill()
        await asyncio.sleep(1)
        stack.worker.start()
        faults_done = time.monotonic()

        pending = {o["id"]: o for o in orders}
        final: dict[int, dict[str, Any]] = {}
        while pending and time.monotonic() - faults_done < SETTLE_WITHIN:
            submissions = await _submissions(stack.database_url)
            for order_id, placed in list(pending.items()):
                seen = (await http.get(f"/v1/orders/{order_id}", headers=running.as_("storefront"))).json()
                if seen["phase"] == "closed" or _waiting_for_ops(seen, submissions):
                    final[order_id] = seen | {"scenario": placed["scenario"]}
                    del pending[order_id]
            if not stack.worker.alive:  # a crashed worker would be restarted by its supervisor
                stack.worker.start()
            await asyncio.sleep(1)
        submissions = await _submissions(stack.database_url)
        sim_orders = (await sim.get("/sim/orders")).json()
        adds = (await sim.get("/sim/requests", params={"action": "add"})).json()["requests"]

    assert not pending, f"never settled: {[(o['link'], o['scenario']) for o in pending.values()]}\n" + (
        stack.worker.tail()
    )
    taken = Counter(o["link"] for o in sim_orders)
    sent = Counter(r["params"].get("link") for r in adds)
    problems = []
    for order in final.values():
        link_text, scenario = order["link"], order["scenario"]
        # The provider holds each run at most once, whatever happened on the way.
        if taken[link_text] > 1:
            problems.append(f"{link_text}: the provider took it {taken[link_text]} times")
        if order["service_id"] == PLAIN and sent[link_text] > 1:
            problems.append(f"{link_text}: sent {sent[link_text]} times to a provider that cannot dedupe")
        if _waiting_for_ops(order, submissions):
            # Only where the provider cannot deduplicate, and only with the run marked for ops.
            if order["service_id"] != PLAIN or submissions.get(order["id"]) != ["needs_reconciliation"]:
                problems.append(
                    f"{link_text}: stuck without a reason: {order}, {submissions.get(order['id'])}"
                )
            continue
        if scenario == "lost" and order["service_id"] == PLAIN:
            problems.append(f"{link_text}: a lost answer from a non-deduplicating provider was not held")
        if (order["status"], order["delivered"]) != EXPECTED[scenario]:
            problems.append(f"{link_text}: {order['status']} {order['delivered']} != {EXPECTED[scenario]}")
        if order["delivered"] and taken[link_text] != 1:
            problems.append(f"{link_text}: delivered but the provider holds {taken[link_text]} orders")
    assert problems == [], "\n".join(problems)
    held = sum(1 for o in final.values() if _waiting_for_ops(o, submissions))
    assert held >= 2  # at least the `lost` orders of the plain provider
    check = stack.ledger_check()
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ledger is sound" in check.stdout
    books = stack.check()  # escrow, workflows, stuck orders, refunds and deliveries against the ledger
    assert books.returncode == 0, books.stdout + books.stderr
    print(books.stdout.strip().splitlines()[-1] if books.stdout.strip() else "")
    print(
        f"\n{len(final)} orders, {held} held for reconciliation, link drops {link.connections}, "
        f"{time.monotonic() - began:.0f} s"
    )


async def test_a_nul_reason_is_refused_and_the_order_then_cancels_and_settles(running: Running) -> None:
    stack = running.stack
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        body = {
            "customer_id": running.customer_id,
            "service_id": 33,  # its provider service takes cancels while in progress
            "link": "https://instagram.com/nul_reason",
            "quantity": 10_000,  # a minute at the simulator's pace: still delivering when cancelled
        }
        placed = await http.post(
            "/v1/orders", json=body, headers=running.as_("storefront") | {"Idempotency-Key": "nul"}
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        path, support = f"/v1/orders/{order_id}", running.as_("support")
        deadline = time.monotonic() + 60
        while (await http.get(path, headers=support)).json()["phase"] != "delivering":
            assert time.monotonic() < deadline, "the order never started delivering"
            await asyncio.sleep(0.5)

        refused = await http.post(f"{path}/cancel", json={"reason": "stop\u0000now"}, headers=support)
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request"), refused.text
        cancelled = await http.post(f"{path}/cancel", json={"reason": "stop now"}, headers=support)
        assert cancelled.status_code == 200, cancelled.text
        while (order := (await http.get(path, headers=support)).json())["phase"] != "closed":
            assert time.monotonic() < deadline + 120, f"the order never settled: {order}"
            await asyncio.sleep(1)
    assert order["status"] in ("Canceled", "Partial")
    assert order["refunded"] != "0.000000"
    assert [e["message"] for e in order["timeline"] if e["kind"] == "cancel"] == [
        "cancel requested: stop now"
    ]
    check = stack.ledger_check()
    assert check.returncode == 0, check.stdout + check.stderr
