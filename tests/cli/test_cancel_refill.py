"""`backoffice orders cancel` and `orders refill`: the order's own answers through the messaging service as
REST gets them (accepted, or refused with the order's code), each one audited line; and `orders show` says
what each run really did."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from conftest import Backoffice, Ran
from ops_support import SIM_KEY, open_sim_shop, place_link, sim_worker, wait_for_order
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from backoffice.temporal_client import start_order_workflow
from providers.simulator import create_simulator_app
from store.models import Refill
from support import balances
from workflows.models import OrderInput


@asynccontextmanager
async def simulated(
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The simulator (its control API as a client) and a worker delivering through it, on its own queue."""
    sim = create_simulator_app(api_key=SIM_KEY)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as control,
        sim_worker(env.client, sessions, sim, f"cli-{uuid.uuid4().hex[:8]}") as queue,
    ):
        yield control, queue


async def started(env: WorkflowEnvironment, queue: str, *orders: OrderInput) -> None:
    for order in orders:
        await start_order_workflow(env.client, queue, order)


def outcomes(*ran: Ran) -> list[tuple[str, str, str | None]]:
    """(action, outcome, code) of every audit line the commands logged."""
    return [(a["action"], a["outcome"], a.get("code")) for r in ran for a in r.audit()]


async def test_orders_cancel_stops_delivery_and_refunds_what_was_not_delivered(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_sim_shop(sessions, refill_days=30)  # the service allows canceling in progress
    async with simulated(with_temporal, sessions) as (_, queue):
        # 3000 units at 1000 an hour: run 1 delivers, run 2 waits an hour. 200 units: completed at once.
        waiting = await place_link(sessions, shop, 3000, "https://instagram.com/waiting.one")
        completed = await place_link(sessions, shop, 200, "https://instagram.com/completed.one")
        await started(with_temporal, queue, waiting, completed)
        await wait_for_order(sessions, waiting.order_id, delivered=1000, phase="delivering")
        await wait_for_order(sessions, completed.order_id, status="Completed", phase="refill_window")
        cancel = ("orders", "cancel", str(waiting.order_id), "--actor", "support:lee")

        done = await backoffice(
            "orders", "cancel", str(completed.order_id), "--actor", "support:lee", "--reason", "changed mind"
        )
        assert done.code == 1
        assert done.said() == (
            f"order {completed.order_id}: cancel refused (cannot_cancel): The order cannot be canceled"
        )

        accepted = await backoffice(*cancel, "--reason", "ticket 90: customer asked", "--json")
        assert accepted.code == 0, accepted.err
        body = accepted.json()
        assert (body["order_id"], body["outcome"]) == (waiting.order_id, "accepted")
        assert body["answer"]["delivered"] == 1000
        # Stopped with 1000 of 3000 delivered: the 2000 undelivered units (2.00) come back.
        order = await wait_for_order(sessions, waiting.order_id, phase="closed")
        assert (order.status, order.delivered, order.refunded_micros) == ("Partial", 1000, 2_000_000)

        again = await backoffice(*cancel, "--reason", "twice")
        assert again.code == 1
        assert "(cannot_cancel)" in again.err  # the ended order answers by the same rule

    missing = await backoffice("orders", "cancel", "999999", "--actor", "ops:ann", "--reason", "x", "--json")
    assert missing.code == 1
    assert missing.json()["code"] == "order_not_found"

    assert outcomes(done, accepted, again, missing) == [
        ("cancel", "refused", "cannot_cancel"),
        ("cancel", "accepted", None),
        ("cancel", "refused", "cannot_cancel"),
    ]  # a missing order is never asked, as REST's 404: no audit line
    shown = (await backoffice("orders", "show", str(waiting.order_id), "--json")).json()
    asked = [e for e in shown["timeline"] if e["actor"] == "support:lee"]
    assert [e["message"] for e in asked] == ["cancel requested: ticket 90: customer asked"]
    after = await balances(sessions, waiting)
    assert after["escrow"] == 0


async def test_orders_refill_forwards_it_to_the_provider_and_refuses_by_the_rules(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The simulator's service 101 refills (100 units a second); no cooldown here, so a second may follow.
    routes = [{"provider": "alpha", "service": "101"}]
    shop = await open_sim_shop(sessions, routes=routes, refill_days=30, refill_cooldown_hours=0)
    async with simulated(with_temporal, sessions) as (control, queue):
        waiting = await place_link(sessions, shop, 3000, "https://instagram.com/still.going")
        completed = await place_link(sessions, shop, 200, "https://instagram.com/dropped.some")
        await started(with_temporal, queue, waiting, completed)
        await wait_for_order(sessions, waiting.order_id, phase="delivering")
        await wait_for_order(sessions, completed.order_id, status="Completed", phase="refill_window")

        early = await backoffice(
            "orders", "refill", str(waiting.order_id), "--actor", "support:lee", "--reason", "dropped"
        )
        assert early.code == 1
        refused = f"order {waiting.order_id}: request_refill refused (not_completed)"
        assert early.said().startswith(refused)

        # Some followers drop; support asks for the refill the customer would.
        dropped = await control.post(
            "/sim/scenario", json={"scenario": "drop", "link_contains": "dropped.some", "value": 0.2}
        )
        assert dropped.status_code == 200, dropped.text
        refill = ("orders", "refill", str(completed.order_id), "--actor", "support:lee")
        asked = await backoffice(*refill, "--reason", "ticket 12: 40 dropped", "--json")
        assert asked.code == 0, asked.err
        body = asked.json()
        assert (body["order_id"], body["outcome"]) == (completed.order_id, "accepted")
        assert body["answer"]["refill_no"] == 1
        async with sessions() as session:
            row = await session.scalar(select(Refill).where(Refill.id == body["answer"]["refill_id"]))
        assert row is not None
        assert (row.order_id, row.refill_no, row.requested_by) == (completed.order_id, 1, "support:lee")

        # The provider refills it; then a second one may be asked.
        assert await refill_status(sessions, row.id, "Completed") == "Completed"
        second = await backoffice(*refill, "--reason", "ticket 13")
        assert second.code == 0, second.err
        assert second.out.strip() == (
            f"order {completed.order_id}: refill #2 requested (refill id {second_id(second.out)}); "
            f"follow it with `backoffice orders show {completed.order_id}`"
        )

    shown = await backoffice("orders", "show", str(completed.order_id))
    assert "refills (2):" in shown.out
    assert "requested by support:lee" in shown.out
    assert outcomes(early, asked, second) == [
        ("request_refill", "refused", "not_completed"),
        ("request_refill", "accepted", None),
        ("request_refill", "accepted", None),
    ]


async def refill_status(
    sessions: async_sessionmaker[AsyncSession], refill_id: int, wanted: str
) -> str | None:
    """The refill's status once it is `wanted`, or the last one seen within 20 s."""
    status = None
    for _ in range(200):
        async with sessions() as session:
            status = await session.scalar(select(Refill.status).where(Refill.id == refill_id))
        if status == wanted:
            break
        await asyncio.sleep(0.1)
    return status


def second_id(out: str) -> str:
    return out.split("(refill id ", 1)[1].split(")", 1)[0]


async def test_orders_show_says_what_each_run_did(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A run the provider ended Partial reads Partial with what it delivered, not `accepted`; so does the
    JSON's `outcome` beside the submission's `state`."""
    shop = await open_sim_shop(sessions)
    async with simulated(with_temporal, sessions) as (control, queue):
        partial = await control.post(
            "/sim/scenario", json={"scenario": "partial", "link_contains": "half.done", "value": 0.5}
        )
        assert partial.status_code == 200, partial.text
        order = await place_link(sessions, shop, 200, "https://instagram.com/half.done")
        await started(with_temporal, queue, order)
        ended = await wait_for_order(sessions, order.order_id, status="Partial", phase="closed")
        assert ended.delivered == 100

    body = (await backoffice("orders", "show", str(order.order_id), "--json")).json()
    (run,) = body["runs"]
    assert (run["state"], run["provider_status"], run["delivered"]) == ("accepted", "Partial", 100)
    assert run["outcome"] == "Partial"
    text = await backoffice("orders", "show", str(order.order_id))
    (line,) = [line for line in text.out.splitlines() if line.lstrip().startswith("run 1 ")]
    assert "Partial, 100/200 delivered" in line
    assert "accepted" not in line
