"""`backoffice check`: the ledger's invariants plus the orders' agreement with the books, their runs and
Temporal, against a real database and the Temporal dev server; `ledger check` keeps working as it did."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from test_cli_orders import Backoffice, backoffice, with_temporal  # noqa: F401 - the fixtures

from backoffice.temporal_client import start_order_workflow, workflow_id
from store.db import transaction
from support import open_shop, place


async def test_check_finds_orders_whose_workflow_is_missing_or_ended(
    backoffice: Backoffice,  # noqa: F811
    with_temporal: WorkflowEnvironment,  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    missing, ended, running, closed = [await place(sessions, shop, 100) for _ in range(4)]
    queue = f"nobody-{uuid.uuid4().hex[:8]}"  # no worker: a started workflow just runs (waits)
    client = with_temporal.client
    for order in (ended, running):
        await start_order_workflow(client, queue, order)
    await client.get_workflow_handle(workflow_id(ended.order_id)).terminate("planted by the test")
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE orders SET phase = 'delivering', status = 'In progress', state_version = 3, "
                 "next_action_at = now() + interval '1 minute' WHERE id = ANY(:ids)"),
            {"ids": [missing.order_id, ended.order_id, running.order_id]},
        )  # fmt: skip
        # Closed for good: its workflow is gone and should be.
        await session.execute(
            text("UPDATE orders SET phase = 'closed', state_version = 9 WHERE id = :id"),
            {"id": closed.order_id},
        )
    try:
        found = await backoffice("check", "--json")
        text_run = await backoffice("check")
        db_only = await backoffice("check", "--no-workflows")
        ledger_only = await backoffice("ledger", "check")
    finally:
        await client.get_workflow_handle(workflow_id(running.order_id)).terminate("test over")

    assert found.code == 1, found.err
    findings = found.json()["findings"]
    assert [(f["kind"], f["order_id"]) for f in findings] == [
        ("workflow_missing", missing.order_id),
        ("workflow_ended", ended.order_id),
        ("escrow_after_settlement", closed.order_id),
    ]
    assert findings[1]["detail"] == f"in flight, but order-{ended.order_id} is TERMINATED"
    # The closed order's charge is still in escrow: the ledger's own breaches and the order check agree.
    assert {b["what"] for b in found.json()["breaches"]} == {"closed_order_escrow", "closed_order_unsettled"}
    assert text_run.code == 1
    lines = text_run.out.splitlines()
    assert f"FINDING workflow_missing order {missing.order_id}: in flight, but Temporal has no " \
           f"order-{missing.order_id}" in lines  # fmt: skip
    assert lines[-1] == "2 breach(es), 3 finding(s)"
    assert db_only.code == 1
    assert db_only.out.splitlines()[-1] == "2 breach(es), 1 finding(s)"
    assert ledger_only.code == 1
    assert ledger_only.out.splitlines()[-1] == "2 breach(es)"


async def test_check_passes_on_orders_that_agree(
    backoffice: Backoffice,  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    await place(sessions, shop, 100)  # charged, its workflow not reported yet: nothing to ask Temporal
    passed = await backoffice("check")
    assert passed.code == 0, passed.out + passed.err
    assert passed.out.strip() == "the ledger is sound and the orders agree with it"
    bad = await backoffice("check", "--stuck-hours", "soon")
    assert bad.code == 2
    assert "--stuck-hours" in bad.err
