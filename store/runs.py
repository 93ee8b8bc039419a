"""A drip-feed order's runs as resellers track them: each with an id of its own, taken from the orders' id
sequence so that no order ever has the same id and API v2 `status` can answer a run's id like an order's.

Written at intake (every run Pending); then the order's workflow projects what each run delivered and its
status (store/read_model.project, policy.run_status).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import DripFeedRun, Order
from workflows.models import RunProgress


async def project_runs(session: AsyncSession, order_id: int, progress: Sequence[RunProgress]) -> None:
    """What the order's workflow says its runs delivered, and their status: one executemany."""
    table = cast(Table, DripFeedRun.__table__)
    await session.execute(
        update(table)
        .where(table.c.order_id == order_id, table.c.run_no == bindparam("run"))
        .values(delivered=bindparam("units"), status=bindparam("state"), updated_at=func.now()),
        [{"run": r.run_no, "units": r.delivered, "state": r.status} for r in progress],
    )


async def drip_feed_runs(session: AsyncSession, order_id: int) -> list[DripFeedRun]:
    query = select(DripFeedRun).where(DripFeedRun.order_id == order_id).order_by(DripFeedRun.run_no)
    return list(await session.scalars(query))


async def run_ids(session: AsyncSession, order_ids: Sequence[int]) -> dict[int, list[int]]:
    """The run ids of each drip-feed order among `order_ids`, in run order."""
    rows = await session.execute(
        select(DripFeedRun.order_id, DripFeedRun.id)
        .where(DripFeedRun.order_id.in_(order_ids))
        .order_by(DripFeedRun.order_id, DripFeedRun.run_no)
    )
    found: dict[int, list[int]] = {}
    for order_id, run_id in rows:
        found.setdefault(order_id, []).append(run_id)
    return found


async def runs_of_customer(
    session: AsyncSession, customer_id: int, ids: Sequence[int]
) -> dict[int, tuple[DripFeedRun, Order]]:
    """The customer's drip-feed runs among `ids`, each with its order; another customer's are absent."""
    rows = await session.execute(
        select(DripFeedRun, Order)
        .join(Order, Order.id == DripFeedRun.order_id)
        .where(DripFeedRun.id.in_(ids), Order.customer_id == customer_id)
    )
    return {run.id: (run, order) for run, order in rows}
