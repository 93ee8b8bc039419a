"""The `backoffice` commands for orders and providers, run in process against a real database and, for
messages, the Temporal dev server with the real worker (its providers answered by the simulator)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ops_support import (
    SIM_KEY,
    open_sim_shop,
    place_link,
    sim_worker,
    temporal_address,
    wait_for_end,
    wait_for_order,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from backoffice import cli
from backoffice.settings import get_settings
from backoffice.temporal_client import start_order_workflow, workflow_id
from providers.simulator import create_simulator_app
from store import ledger
from store.db import transaction
from store.models import Order, OrderEvent, Provider, ProviderSubmission, Refill
from support import SERVICE, Shop, balances, open_shop, place
from workflows.models import OrderInput


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Backoffice = Callable[..., Awaitable[Ran]]


@pytest.fixture
def backoffice(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Backoffice]:
    """`backoffice ARGS...` as ops type it, in process (a thread: the CLI runs its own event loop)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_FORMAT", "json")

    def run(*argv: str) -> Ran:
        get_settings.cache_clear()  # the environment as the test left it
        with pytest.raises(SystemExit) as exit_:
            cli.main(list(argv))
        captured = capsys.readouterr()
        return Ran(int(exit_.value.code or 0), captured.out, captured.err)

    async def call(*argv: str) -> Ran:
        return await asyncio.to_thread(run, *argv)

    yield call
    get_settings.cache_clear()


async def test_orders_list_filters_and_pages(
    backoffice: Backoffice, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    other = await open_shop(sessions)  # a second customer (the catalog load is an upsert)
    ids = [(await place(sessions, shop, 100)).order_id for _ in range(3)]
    theirs = (await place(sessions, other, 100)).order_id
    async with transaction(sessions) as session:
        await session.execute(
            update(Order)
            .where(Order.id == ids[1])
            .values(status="In progress", phase="delivering", note="run 1 of 1 at the provider")
        )
        await session.execute(
            update(Order).where(Order.id == ids[0]).values(created_at=datetime(2024, 1, 1, tzinfo=UTC))
        )

    every = await backoffice("orders", "list", "--json")
    assert every.code == 0, every.err
    assert [o["id"] for o in every.json()["orders"]] == sorted([*ids, theirs])
    assert every.json()["next_after"] is None

    def listed(ran: Ran) -> list[int]:
        assert ran.code == 0, ran.err
        return [o["id"] for o in ran.json()["orders"]]

    assert listed(await backoffice("orders", "list", "--json", "--customer", str(shop.customer_id))) == ids
    assert listed(await backoffice("orders", "list", "--json", "--phase", "delivering")) == [ids[1]]
    assert listed(await backoffice("orders", "list", "--json", "--status", "Pending", "--customer",
                                   str(shop.customer_id))) == [ids[0], ids[2]]  # fmt: skip
    assert listed(await backoffice("orders", "list", "--json", "--service", str(SERVICE + 1))) == []
    assert listed(await backoffice("orders", "list", "--json", "--to", "2024-01-02")) == [ids[0]]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert listed(await backoffice("orders", "list", "--json", "--from", "2024-01-02", "--to", tomorrow)) == [
        ids[1], ids[2], theirs,
    ]  # fmt: skip

    # Cursor paging: two at a time, each page says where the next starts.
    first = await backoffice("orders", "list", "--json", "--limit", "2")
    page = first.json()
    assert [o["id"] for o in page["orders"]] == sorted([*ids, theirs])[:2]
    second = await backoffice("orders", "list", "--json", "--limit", "2", "--after", str(page["next_after"]))
    assert [o["id"] for o in second.json()["orders"]] == sorted([*ids, theirs])[2:]
    assert second.json()["next_after"] is None

    text = await backoffice("orders", "list", "--limit", "2")
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0].split()[:5] == ["id", "customer", "service", "status", "phase"]
    assert f"more with --after {page['next_after']}" in lines[-1]
    delivering = next(line for line in lines if line.split()[0] == str(ids[1]))
    assert "In progress" in delivering
    assert "0/100" in delivering
    assert "run 1 of 1" in delivering

    bad = await backoffice("orders", "list", "--phase", "lost")
    assert bad.code == 2
    assert "invalid choice" in bad.err


async def test_orders_show_prints_the_timeline_runs_and_refills(
    backoffice: Backoffice, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    async with transaction(sessions) as session:
        events = [
            ("placed", "storefront:key:1", "order placed, charged 0.100000"),
            ("run_submitted", "workflow", "run 1 of 1 (100 units) sent to provider 1"),
            ("paused", "ops:ann", "provider outage"),
        ]
        for seq, (kind, actor, message) in enumerate(events, start=1):
            session.add(
                OrderEvent(order_id=order.order_id, seq=seq, at=at + timedelta(minutes=seq), kind=kind,
                           actor=actor, message=message)
            )  # fmt: skip
        session.add(
            ProviderSubmission(order_id=order.order_id, run_no=1, provider_id=1, provider_service_id="a1",
                               quantity=100, client_key="k", state="accepted", provider_order_id="777")
        )  # fmt: skip
        session.add(Refill(order_id=order.order_id, refill_no=1, status="Pending", requested_by="customer:1"))

    shown = await backoffice("orders", "show", str(order.order_id), "--json")
    assert shown.code == 0, shown.err
    body = shown.json()
    assert body["order"]["id"] == order.order_id
    assert body["order"]["status"] == "Pending"
    assert [(e["seq"], e["kind"], e["actor"], e["message"]) for e in body["timeline"]] == [
        (seq, *event) for seq, event in enumerate(events, start=1)
    ]
    assert body["timeline"][0]["at"].startswith("2025-03-01 12:01:00")
    assert [(r["run"], r["state"], r["provider_order_id"]) for r in body["runs"]] == [(1, "accepted", "777")]
    assert [(r["refill_no"], r["status"], r["requested_by"]) for r in body["refills"]] == [
        (1, "Pending", "customer:1")
    ]

    text = await backoffice("orders", "show", str(order.order_id))
    assert text.code == 0
    assert text.out.startswith(f"order {order.order_id}  Pending (queued)")
    assert "timeline (3):" in text.out
    assert "ops:ann" in text.out
    assert "provider outage" in text.out
    assert "provider order 777" in text.out
    assert "refills (1):" in text.out

    missing = await backoffice("orders", "show", "1")
    assert missing.code == 1
    assert "does not exist" in missing.err


@pytest.fixture
def with_temporal(monkeypatch: pytest.MonkeyPatch, dev_server: WorkflowEnvironment) -> WorkflowEnvironment:
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_address(dev_server))
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_server.client.namespace)
    return dev_server


async def test_orders_reconcile_answers_a_run_whose_fate_was_unknown(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_sim_shop(sessions)
    order = await place_link(sessions, shop, 200, "https://instagram.com/lost.one")
    sim = create_simulator_app(api_key=SIM_KEY)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as control,
        sim_worker(with_temporal.client, sessions, sim, f"cli-{uuid.uuid4().hex[:8]}") as queue,
    ):
        # The provider takes the run but its answer is lost: the order waits for ops.
        await control.post("/sim/scenario", json={"scenario": "lost_answer", "link_contains": "lost.one"})
        await start_order_workflow(with_temporal.client, queue, order)
        await wait_for_order(sessions, order.order_id, phase="interrupted")
        await control.post("/sim/scenario", json={"scenario": "normal", "link_contains": "lost.one"})
        taken = [o for o in (await control.get("/sim/orders")).json() if "lost.one" in o["link"]]
        provider_order = str(taken[0]["order"])

        wrong = await backoffice(
            "orders", "reconcile", str(order.order_id), "--run", "2", "--provider-order", provider_order,
            "--actor", "ops:ann", "--reason", "found in the panel", "--json",
        )  # fmt: skip
        assert wrong.code == 1
        assert wrong.json() | {"message": ""} == {
            "order_id": order.order_id, "outcome": "refused", "code": "not_awaiting", "message": "",
        }  # fmt: skip

        right = await backoffice(
            "orders", "reconcile", str(order.order_id), "--run", "1", "--provider-order", provider_order,
            "--actor", "ops:ann", "--reason", "found in the panel",
        )  # fmt: skip
        assert right.code == 0, right.err
        assert right.out.strip() == f"order {order.order_id}: run 1 reconciled by ops"
        await wait_for_end(with_temporal.client, sessions, order.order_id, status="Completed")

    # The audit trail: one line per message, refused or accepted, with the actor and the order.
    audit = [
        json.loads(line) for line in (wrong.err + right.err).splitlines() if '"backoffice.audit"' in line
    ]
    assert [(a["outcome"], a["actor"], a["order_id"], a["via"]) for a in audit] == [
        ("refused", "ops:ann", order.order_id, "cli"), ("accepted", "ops:ann", order.order_id, "cli"),
    ]  # fmt: skip

    # An order whose workflow has ended answers by the same rules as while it ran: it is past pausing.
    closed = await backoffice(
        "orders", "pause", str(order.order_id), "--actor", "ops:ann", "--reason", "too late"
    )
    assert closed.code == 1
    assert "(cannot_pause)" in closed.err


async def _delivering_orders(
    with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], queue: str, count: int
) -> tuple[Shop, list[int]]:
    """Orders of 3000 units at a pace of 1000 an hour: run 1 goes out at once, runs 2 and 3 an hour apart."""
    shop = await open_sim_shop(sessions)
    placed = [await place(sessions, shop, 3000) for _ in range(count)]
    for order in placed:
        await start_order_workflow(with_temporal.client, queue, order)
    for order in placed:
        await wait_for_order(sessions, order.order_id, phase="delivering")
    return shop, [order.order_id for order in placed]


async def test_orders_pause_and_resume(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sim = create_simulator_app(api_key=SIM_KEY)
    async with sim_worker(with_temporal.client, sessions, sim, f"cli-{uuid.uuid4().hex[:8]}") as queue:
        _, (order_id,) = await _delivering_orders(with_temporal, sessions, queue, 1)
        paused = await backoffice(
            "orders", "pause", str(order_id), "--actor", "ops:ann", "--reason", "customer asked", "--json"
        )
        assert paused.code == 0, paused.err
        assert paused.json()["answer"]["phase"] == "paused"
        await wait_for_order(sessions, order_id, phase="paused")
        again = await backoffice("orders", "pause", str(order_id), "--actor", "ops:ann", "--reason", "twice")
        assert again.code == 1
        assert "refused" in again.err

        resumed = await backoffice(
            "orders", "resume", str(order_id), "--actor", "ops:bob", "--reason", "go on"
        )
        assert resumed.code == 0, resumed.err
        assert resumed.out.startswith(f"order {order_id}: resumed: In progress (delivering)")
        await wait_for_order(sessions, order_id, phase="delivering")

    shown = (await backoffice("orders", "show", str(order_id), "--json")).json()
    actions = [(e["actor"], e["message"]) for e in shown["timeline"] if e["actor"].startswith("ops:")]
    assert [actor for actor, _ in actions] == ["ops:ann", "ops:bob"]
    assert "customer asked" in actions[0][1]
    assert "go on" in actions[1][1]


async def test_provider_pause_and_resume_reach_every_order_it_holds(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sim = create_simulator_app(api_key=SIM_KEY)
    async with sim_worker(with_temporal.client, sessions, sim, f"cli-{uuid.uuid4().hex[:8]}") as queue:
        _, order_ids = await _delivering_orders(with_temporal, sessions, queue, 4)
        async with sessions() as session:
            alpha = await session.scalar(select(Provider.id).where(Provider.name == "alpha"))

        paused = await backoffice(
            "provider",
            "pause",
            str(alpha),
            "--actor",
            "ops:ann",
            "--reason",
            "maintenance",
            "--concurrency",
            "2",
        )
        assert paused.code == 0, paused.err
        assert paused.out.splitlines()[-1] == (
            f"provider {alpha}: pause sent to 4 order(s): 4 accepted, 0 refused, 0 failed"
        )
        progress = [line for line in paused.err.splitlines() if line.startswith("[")]
        assert progress[-1] == f"[4/4] pause provider {alpha}: accepted 4"
        for order_id in order_ids:
            await wait_for_order(sessions, order_id, phase="paused")

        resumed = await backoffice(
            "provider", "resume", str(alpha), "--actor", "ops:ann", "--reason", "back", "--json"
        )
        assert resumed.code == 0, resumed.err
        body = resumed.json()
        assert (body["accepted"], body["refused"], body["failed"]) == (4, 0, 0)
        assert sorted(r["order_id"] for r in body["orders"]) == order_ids
        for order_id in order_ids:
            await wait_for_order(sessions, order_id, phase="delivering")

    missing = await backoffice("provider", "pause", "999999", "--actor", "ops:ann", "--reason", "x")
    assert missing.code == 1
    assert "does not exist" in missing.err


async def _waiting_and_completed(
    with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], queue: str, shop: Shop
) -> tuple[OrderInput, OrderInput]:
    """Two orders on distinct links: 3000 units (3.00) that delivered run 1 and waits an hour for run 2, and
    200 units (0.20) completed and in its refill window (the shop's service keeps one)."""
    waiting = await place_link(sessions, shop, 3000, "https://instagram.com/waiting.one")
    completed = await place_link(sessions, shop, 200, "https://instagram.com/completed.one")
    for order in (waiting, completed):
        await start_order_workflow(with_temporal.client, queue, order)
    await wait_for_order(sessions, waiting.order_id, delivered=1000, phase="delivering")
    await wait_for_order(sessions, completed.order_id, status="Completed", phase="refill_window")
    return waiting, completed


def _audit(*ran: Ran) -> list[tuple[str, str | None]]:
    """The audit lines of the runs, as (outcome, code)."""
    lines = [json.loads(line) for r in ran for line in r.err.splitlines() if '"backoffice.audit"' in line]
    return [(a["outcome"], a.get("code")) for a in lines]


async def _sound_ledger(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        assert await ledger.check_invariants(session) == []


async def test_orders_refund_in_part_replayed_capped_and_in_full(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_sim_shop(sessions, refill_days=30)
    sim = create_simulator_app(api_key=SIM_KEY)
    async with sim_worker(with_temporal.client, sessions, sim, f"cli-{uuid.uuid4().hex[:8]}") as queue:
        waiting, completed = await _waiting_and_completed(with_temporal, sessions, queue, shop)
        refund = ("orders", "refund", str(waiting.order_id), "--actor", "support:lee")
        why = ("--reason", "ticket 81: slow delivery")

        part = await backoffice(*refund, *why, "--units", "500", "--idempotency-key", "T-81", "--json")
        assert part.code == 0, part.err
        assert part.json() == {
            "order_id": waiting.order_id,
            "outcome": "accepted",
            "answer": {
                "refunded_micros": 500_000,
                "total_refunded_micros": 500_000,
                "status": "In progress",
                "refunded_units": 500,  # marked refunded: the settlement will not refund them again
            },
        }
        replay = await backoffice(*refund, *why, "--units", "500", "--idempotency-key", "T-81")
        assert replay.code == 0, replay.err
        assert replay.out.strip() == (
            f"order {waiting.order_id}: this idempotency key was used already, nothing moved; "
            "0.500000 in all (In progress)"
        )
        zero = await backoffice(*refund, *why, "--amount", "0", "--idempotency-key", "T-82", "--json")
        assert zero.code == 1
        assert (zero.json()["outcome"], zero.json()["code"]) == ("refused", "bad_refund")
        blank = await backoffice(*refund, "--reason", " ", "--amount", "1", "--idempotency-key", "T-83")
        assert blank.code == 1
        assert "(missing_reason)" in blank.err
        unparsable = await backoffice(*refund, *why, "--amount", "lots", "--idempotency-key", "T-84")
        assert unparsable.code == 2
        assert "--amount" in unparsable.err
        both = await backoffice(*refund, *why, "--amount", "1", "--units", "5", "--idempotency-key", "T-85")
        assert both.code == 2
        assert "not allowed with" in both.err

        # More than is left is capped at what is left; refunded in full, the order stops delivering.
        rest = await backoffice(*refund, *why, "--amount", "99", "--idempotency-key", "T-86")
        assert rest.code == 0, rest.err
        assert rest.out.strip().startswith(f"order {waiting.order_id}: refunded 2.500000; 3.000000 in all")
        await wait_for_order(sessions, waiting.order_id, status="Refunded", phase="closed")
        late = await backoffice(*refund, *why, "--amount", "1", "--idempotency-key", "T-87")
        assert late.code == 1  # after it ended, support can still refund it, but nothing is left
        assert "(nothing_refundable)" in late.err

        # A completed order inside its refill window, refunded in full, is Refunded and closes.
        whole = await backoffice(
            "orders", "refund", str(completed.order_id), "--actor", "support:lee", "--reason", "goodwill",
            "--amount", "0.2", "--idempotency-key", "T-90", "--json",
        )  # fmt: skip
        assert whole.code == 0, whole.err
        assert whole.json()["answer"] == {
            "refunded_micros": 200_000, "total_refunded_micros": 200_000, "status": "Refunded",
            "refunded_units": 0,
        }  # fmt: skip
        await wait_for_order(sessions, completed.order_id, status="Refunded", phase="closed")

    assert _audit(part, replay, zero, blank, unparsable, both, rest, late, whole) == [
        ("accepted", None), ("accepted", None), ("refused", "bad_refund"), ("refused", "missing_reason"),
        ("accepted", None), ("refused", "nothing_refundable"), ("accepted", None),
    ]  # fmt: skip
    shown = (await backoffice("orders", "show", str(waiting.order_id), "--json")).json()
    assert (shown["order"]["status"], shown["order"]["refunded"]) == ("Refunded", "3.000000")
    refunds = [(e["actor"], e["message"]) for e in shown["timeline"] if e["kind"] == "refund"]
    assert refunds == [
        ("support:lee", "refunded 500 units, 0.500000: ticket 81: slow delivery"),
        ("support:lee", "refunded 2.500000: ticket 81: slow delivery"),
    ]
    # Every cent came back: the customer holds what they were funded with, nothing stays in escrow.
    after = await balances(sessions, waiting)
    assert after["customer"] == 100_000_000
    assert after["escrow"] == 0
    assert after["revenue"] == 0
    assert (await balances(sessions, completed))["escrow"] == 0
    await _sound_ledger(sessions)


async def test_orders_link_fault_stops_delivery_and_refunds_by_the_service_rule(
    backoffice: Backoffice, with_temporal: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_sim_shop(sessions, refill_days=30, link_fault_refund="remaining")
    sim = create_simulator_app(api_key=SIM_KEY)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as control,
        sim_worker(with_temporal.client, sessions, sim, f"cli-{uuid.uuid4().hex[:8]}") as queue,
    ):
        waiting, completed = await _waiting_and_completed(with_temporal, sessions, queue, shop)
        fault = ("orders", "link-fault", str(waiting.order_id), "--actor", "support:lee")

        blank = await backoffice(*fault, "--reason", " ", "--json")
        assert blank.code == 1
        assert blank.json()["code"] == "missing_reason"
        noted = await backoffice(*fault, "--reason", "the account went private", "--json")
        assert noted.code == 0, noted.err
        answer = noted.json()["answer"]
        assert (answer["link_fault"], answer["delivered"]) == ("the account went private", 1000)
        # The answer is the order as it is once the report is recorded: still In progress, or already
        # settled if the order (between its runs) wound down meanwhile.
        assert answer["status"] in ("In progress", "Partial")
        # The service refunds what was not delivered after a link fault: 2000 of 3000 units, 2.00.
        order = await wait_for_order(sessions, waiting.order_id, status="Partial", phase="closed")
        assert (order.delivered, order.refunded_micros) == (1000, 2_000_000)
        again = await backoffice(*fault, "--reason", "still private")
        assert again.code == 1
        assert "(cannot_report_link_fault)" in again.err

        # An order that has delivered can no longer stop for its link.
        done = await backoffice(
            "orders", "link-fault", str(completed.order_id), "--actor", "support:lee", "--reason", "deleted"
        )
        assert done.code == 1
        assert "(cannot_report_link_fault)" in done.err
        # Run 2 never went out to the provider.
        taken = [o for o in (await control.get("/sim/orders")).json() if "waiting.one" in o["link"]]
        assert len(taken) == 1
        await with_temporal.client.get_workflow_handle(workflow_id(completed.order_id)).terminate("test over")

    assert _audit(blank, noted, again, done) == [
        ("refused", "missing_reason"), ("accepted", None), ("refused", "cannot_report_link_fault"),
        ("refused", "cannot_report_link_fault"),
    ]  # fmt: skip
    shown = (await backoffice("orders", "show", str(waiting.order_id), "--json")).json()
    events = [(e["kind"], e["actor"], e["message"]) for e in shown["timeline"]]
    assert ("link_fault", "support:lee", "link fault reported: the account went private") in events
    assert ("settled", "workflow", "1000 of 3000 delivered: Partial, refunded 2.000000") in events
    after = await balances(sessions, waiting)
    assert after["customer"] == 100_000_000 - 3_000_000 - 200_000 + 2_000_000
    assert after["escrow"] == 0
    await _sound_ledger(sessions)
