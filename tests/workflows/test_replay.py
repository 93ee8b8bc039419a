"""Recorded order histories replay against the current workflow code, so a change that would break orders
already running fails here first.

To record the histories anew (see docs/policy.md, "Changing the workflow"):
RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/workflows/test_replay.py -k record
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from store.db import transaction
from store.models import Provider
from support import ScriptedProvider, open_shop, order_worker, place, set_capacity, start_order, until
from workflows.models import OrderAction, Phase, RefillRequest, RunReconciliation, Status, SupportRefund
from workflows.order import OrderWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
Sessions = async_sessionmaker[AsyncSession]


async def _refill_and_refund(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions
) -> None:
    await until(env, handle, lambda s: s.phase == Phase.REFILL_WINDOW)
    await env.sleep(timedelta(hours=25))
    await handle.execute_update(OrderWorkflow.request_refill, RefillRequest("customer:1", "drops"))
    await handle.execute_update(
        OrderWorkflow.refund, SupportRefund("support:lee", "goodwill", "k-1", amount_micros=100_000)
    )


async def _reconcile(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions) -> None:
    await until(env, handle, lambda s: s.awaiting_run == 1)
    await handle.execute_update(
        OrderWorkflow.reconcile_run, RunReconciliation(1, "found-1", "ops:ann", "found in their panel")
    )


async def _support_link_fault(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions
) -> None:
    await until(env, handle, lambda s: s.delivered > 0)
    await handle.execute_update(
        OrderWorkflow.report_link_fault, OrderAction("support:lee", "the account was renamed")
    )


async def _refund_units(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions
) -> None:
    await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
    await handle.execute_update(
        OrderWorkflow.refund, SupportRefund("support:lee", "ticket 7", "k-7", units=300)
    )


async def _slot_opens(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions) -> None:
    """Every provider is full: the order waits in line until one gets room and it is woken."""
    await until(env, handle, lambda s: s.queue_position is not None)
    await env.sleep(timedelta(minutes=12))  # two rechecks in line
    state = await handle.query(OrderWorkflow.state)
    await set_capacity(sessions, state.routes[0].provider_id, 1)
    await handle.signal(OrderWorkflow.slot_freed)


async def _cancel(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions) -> None:
    await until(env, handle, lambda s: s.delivered > 0)
    await handle.execute_update(OrderWorkflow.cancel, OrderAction("customer:1", "changed my mind"))


async def _pause_and_resume(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], sessions: Sessions
) -> None:
    await until(env, handle, lambda s: s.status == Status.IN_PROGRESS)
    await handle.execute_update(OrderWorkflow.pause, OrderAction("ops:kim", "provider outage"))
    await env.sleep(timedelta(hours=2))
    await handle.execute_update(OrderWorkflow.resume, OrderAction("ops:kim", "outage over"))


Driver = Callable[[WorkflowEnvironment, WorkflowHandle[Any, Any], Sessions], Awaitable[None]]

# name: (quantity, extra order fields, provider script by route index, provider faults, driver)
SCENARIOS: dict[str, tuple[int, dict[str, Any], dict[str, Any], Driver | None]] = {
    "completed-in-two-runs": (1500, {}, {"script": {0: [("In progress", 400), ("Completed", 0)]}}, None),
    "partial-refund": (1000, {}, {"script": {0: [("Partial", 300)]}}, None),
    "failover-then-completed": (500, {}, {"script": {1: [("Completed", 0)]}, "rejects": {0}}, None),
    "interrupted-then-failover": (500, {}, {"script": {1: [("Completed", 0)]}, "down": {0}}, None),
    "link-fault-mid-delivery": (
        500,
        {},
        {"script": {0: [("In progress", 400), ("Canceled", 300, "account is private")]}},
        None,
    ),
    "drip-feed-refill-and-refund": (
        200,
        {"runs": 3, "interval": 30},
        {"script": {0: [("In progress", 100), ("Completed", 0)]}},
        _refill_and_refund,
    ),
    "canceled-in-progress": (500, {}, {"script": {0: [("In progress", 350)]}}, _cancel),
    "paused-and-resumed": (
        500,
        {},
        {"script": {0: [("In progress", 300), ("In progress", 200), ("Completed", 0)]}},
        _pause_and_resume,
    ),
    "reconciled-run": (500, {}, {"script": {0: [("Completed", 0)]}, "lost": {0}}, _reconcile),
    "link-fault-reported-by-support": (
        500,
        {},
        {"script": {0: [("In progress", 400), ("In progress", 350)]}},
        _support_link_fault,
    ),
    "refund-by-units-then-partial": (
        1000,
        {},
        {"script": {0: [("In progress", 800), ("Partial", 300)]}},
        _refund_units,
    ),
    "waited-for-a-slot": (500, {}, {"script": {0: [("Completed", 0)]}, "full": {0, 1}}, _slot_opens),
}


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="records histories only when asked")
async def test_record_histories(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions, refill_days=2, cancel=True, link_fault_refund="remaining")
    for name, (quantity, extra, faults, drive) in SCENARIOS.items():
        order = await place(sessions, shop, quantity, **extra)
        ids = [r.provider_id for r in order.routes]
        for provider_id in ids:
            await set_capacity(
                sessions, provider_id, 0 if ids.index(provider_id) in faults.get("full", ()) else 100
            )
        provider = ScriptedProvider(
            script={ids[i]: answers for i, answers in faults.get("script", {}).items()},
            rejects={ids[i] for i in faults.get("rejects", set())},
            down={ids[i] for i in faults.get("down", set())},
            lost_answers={ids[i] for i in faults.get("lost", set())},
        )
        async with order_worker(temporal_env.client, sessions, provider) as queue:
            handle = await start_order(temporal_env.client, queue, order)
            if drive is not None:
                await drive(temporal_env, handle, sessions)
            await handle.result()
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="records histories only when asked")
async def test_record_a_history_that_continues_as_new(
    short_history_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A dev server that suggests continue-as-new after a few dozen events: the first run's history ends in
    ContinueAsNew, the last run's starts from the state handed over."""
    client = short_history_server.client
    shop = await open_shop(sessions, pace_per_hour=10**9)
    async with transaction(sessions) as session:
        await session.execute(update(Provider).values(poll_interval_seconds=0))
    order = await place(sessions, shop, 600)
    answers = [("In progress", 600 - 20 * i) for i in range(25)]
    provider = ScriptedProvider(script={order.routes[0].provider_id: [*answers, ("Completed", 0)]})
    async with order_worker(client, sessions, provider) as queue:
        handle = await start_order(client, queue, order)
        await handle.result()
    described = await handle.describe()
    first = client.get_workflow_handle(
        handle.id, run_id=described.raw_description.workflow_execution_info.first_run_id
    )
    assert first.run_id != described.run_id, "the order never continued as new"
    (HISTORIES / "continued-as-new-first-run.json").write_text((await first.fetch_history()).to_json())
    (HISTORIES / "continued-as-new-last-run.json").write_text((await handle.fetch_history()).to_json())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    # A replay takes well under a second. One CI run once sat idle in a replay for minutes (cause not
    # found): a hang fails here instead of stalling the suite.
    async with asyncio.timeout(60):
        await Replayer(workflows=[OrderWorkflow]).replay_workflow(history)
