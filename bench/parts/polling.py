"""(7) What following orders costs the provider: with N orders in flight on a slow service (1 000 by
default), the `status` calls the worker sent per order per hour (batched, up to 100 ids a call) against
what one call per poll would have been (the order ids those calls carried).

The simulator offers a service that delivers a unit every 100 simulated seconds, so every order stays In
progress for the whole measurement; a catalog service of the bench routes to it. The figures come from the
simulator's request log over a window of simulated time (its clock is not advanced here, so it runs at the
pace of the workflows' timers). Runs last: its orders are left in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.stack import Bench, add_service, say, until
from workflows import policy

SIM_SERVICE = "191"  # offered by the bench at the simulator
SLOW = 91  # the bench's catalog service routed to it
QUANTITY = 1000
SPEED = 0.01  # units per simulated second: 1 000 units take 28 hours


async def offer_slow_service(b: Bench) -> dict[str, Any]:
    """The simulator's slow service and a catalog service (the demo's 30-day refill followers, at its
    pace) delivered by it. The bench's `instant` scenario is cleared: a scoped `normal` rule does not shield
    new orders from it (the simulator stamps `instant` first, and then leaves a finished order alone)."""
    offered = {"name": "Bench slow followers", "rate": "0.45", "min": 10, "max": 100_000}
    put = await b.sim.put(f"/sim/services/{SIM_SERVICE}", json=offered | {"speed": SPEED, "start_delay": 0})
    put.raise_for_status()
    (await b.sim.post("/sim/scenario", json={"scenario": "normal"})).raise_for_status()
    await add_service(
        b, 0, id=SLOW, name="Bench slow followers", routes=[{"provider": "simulator", "service": SIM_SERVICE}]
    )
    row = await b.db.fetchrow(
        "SELECT s.pace_per_hour, p.poll_interval_seconds FROM services s"
        " JOIN routes r ON r.service_id = s.id JOIN providers p ON p.id = r.provider_id WHERE s.id = $1",
        SLOW,
    )
    assert row is not None
    return dict(row)


def _ids(params: dict[str, Any]) -> list[str]:
    """The order ids one status call carried (`orders`: a batch, comma-separated; `order`: one)."""
    named = params.get("orders") or params.get("order") or ""
    return [part.strip() for part in str(named).split(",") if part.strip()]


async def part_7(b: Bench, args: Any) -> None:
    count, window = int(args.in_flight), float(args.poll_window)
    say(
        f"(7) polling: {count} orders in flight at a slow provider service, "
        f"{window:.0f} s of simulated time ..."
    )
    service = await offer_slow_service(b)
    ids = await b.place_many(SLOW, [f"poll{n}" for n in range(count)], args.concurrency, quantity=QUANTITY)

    async def delivering() -> bool:
        return await b.count_in("delivering", ids) == count

    await until(delivering, max(1200.0, count), f"{count} orders delivering")
    ours = {
        str(r["provider_order_id"])
        for r in await b.db.fetch(
            "SELECT provider_order_id FROM provider_submissions WHERE order_id = ANY($1)"
            " AND provider_order_id IS NOT NULL",
            ids,
        )
    }
    log_before = (await b.sim.get("/sim/requests", params={"action": "-"})).json()["total"]
    t0 = await b.sim_now()
    await asyncio.sleep(window)
    t1 = await b.sim_now()
    log = (await b.sim.get("/sim/requests", params={"action": "status"})).json()
    calls = carried = 0
    for entry in log["requests"]:
        if not t0 <= entry["at"] < t1:
            continue
        mine = [i for i in _ids(entry["params"]) if i in ours]
        if mine:
            calls += 1
            carried += len(mine)
    if log["total"] - log_before > 10_000:
        say("    (the simulator keeps its latest 10 000 requests: the window lost some; shorten it)")
    hours = (t1 - t0) / 3600
    floor, pace = service["poll_interval_seconds"], service["pace_per_hour"]
    ceiling = policy.poll_interval_seconds(QUANTITY, pace, floor, 20)
    say(
        f"    status calls sent:  {calls / count / hours:.1f} per order per hour "
        f"({calls} calls, {carried / max(calls, 1):.1f} order ids per call)"
    )
    say(
        f"    one call per poll:  {carried / count / hours:.1f} per order per hour "
        f"(polls back off from {floor} s to one per {ceiling} s: {3600 / ceiling:.0f} an hour at the ceiling)"
    )
