"""Orders parked in `needs_attention` are easy to find: a gauge of their own and a series by phase on
/metrics, the REST list and the CLI's `orders list --phase needs_attention`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from ops_support import samples, value
from sqlalchemy import update

from store.db import transaction
from store.models import Order
from support import Api

BIN = Path(sys.executable).parent


async def test_orders_needing_attention_are_counted_and_listed(api: Api, db_url: str) -> None:
    ids = [(await api.order(key=f"attention-{n}")).json()["id"] for n in range(3)]
    before = samples((await api.http.get("/metrics")).text)
    assert value(before, "backoffice_orders_needing_attention") == 0
    async with transaction(api.sessions) as session:  # ahead of the workflows' own versions: kept as planted
        await session.execute(
            update(Order)
            .where(Order.id.in_(ids[:2]))
            .values(
                status="In progress",
                phase="needs_attention",
                note="project_order failed for good",
                state_version=10**6,
            )
        )
    after = samples((await api.http.get("/metrics")).text)
    assert value(after, "backoffice_orders_needing_attention") == 2
    assert value(after, "backoffice_orders", status="In progress", phase="needs_attention") == 2

    listed = await api.http.get("/v1/orders", params={"phase": "needs_attention"}, headers=api.as_("ops"))
    assert [o["id"] for o in listed.json()["orders"]] == ids[:2]

    env = {**os.environ, "DATABASE_URL": db_url, "DATA_DIR": "/nonexistent"}
    cli = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "backoffice"), "orders", "list", "--phase", "needs_attention", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)["orders"]
    assert [(o["id"], o["note"]) for o in shown] == [(i, "project_order failed for good") for i in ids[:2]]
