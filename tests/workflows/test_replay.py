"""Recorded order histories replay against the current workflow code, so a change that would break orders
already running fails here first.

To record the histories anew (after a deliberate, versioned change): RECORD_HISTORIES=1 make test
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from support import ScriptedProvider, open_shop, order_worker, place, start_order
from workflows.order import OrderWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="records histories only when asked")
async def test_record_histories(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)
    scenarios = {
        "completed-in-two-runs": (1500, {"script": {0: [("In progress", 400), ("Completed", 0)]}}),
        "partial-refund": (1000, {"script": {0: [("Partial", 300)]}}),
        "failover-then-completed": (500, {"script": {1: [("Completed", 0)]}, "rejects": {0}}),
    }
    for name, (quantity, plan) in scenarios.items():
        order = await place(sessions, shop, quantity)
        ids = [r.provider_id for r in order.routes]
        provider = ScriptedProvider(
            script={ids[i]: answers for i, answers in plan.get("script", {}).items()},
            rejects={ids[i] for i in plan.get("rejects", set())},
        )
        async with order_worker(temporal_env.client, sessions, provider) as queue:
            handle = await start_order(temporal_env.client, queue, order)
            await handle.result()
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=[OrderWorkflow]).replay_workflow(history)
