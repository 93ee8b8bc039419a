"""(5) The worker's memory with N orders waiting in their refill windows (10 000 by default).

Two ways to put the orders there (`--waiting-path`):

- `real`: every order through `POST /v1/orders`, delivered by the simulator and settled by the worker, as
  a storefront's orders are. Slow: a few orders per second on a small machine.
- `fast` (the default): one order goes the real way to its refill window and its workflow state, read with
  the `state` query, is the template. Every other order is placed in this process with the API's own
  intake (`store.orders.place_order`), given its provider submission, settled by the worker's own
  settlement (`store.settlement.settle`: ledger, read model and timeline in one transaction, as the real
  order's was), and
  its workflow is started with that state in its input: what `continue_as_new` hands the next run of an
  order waiting in its window (workflows/record.py), and what `OrderWorkflow.run` takes up there
  (`settled_at` set: straight to `Refills.window`). docs/performance.md explains why that is the same.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from functools import partial
from typing import Any

import psutil

from backoffice.settings import Settings
from backoffice.temporal_client import start_order_workflow, workflow_id
from bench.stack import REFILL, Bench, rss_mib, say, storefront, until, worker_process
from store import settlement
from store.db import transaction
from store.keys import Caller
from store.models import ProviderSubmission
from store.orders import OrderRequest, order_input, place_order
from workflows.models import OrderEvent, OrderInput, OrderState, Phase, Projection, Settlement, Status
from workflows.order import OrderWorkflow
from workflows.record import projection_of

TARGET_MIB = 500
STARTS_IN_FLIGHT = 32
ORDERS_PER_TRANSACTION = 100
# Provider order ids of the fast path: far above the simulator's own (from 23501), so none is shared.
FAST_PROVIDER_IDS = 900_000_000
WAITING = "OrderPhase = 'refill_window' AND ExecutionStatus = 'Running'"


# ------------------------------------------------------------------------------------------ the real path


async def real_batch(b: Bench, start: int, stop: int, concurrency: int) -> None:
    """Orders of the refill service through the API, until each is in its refill window."""
    before = await b.count_in("refill_window")
    await b.place_many(REFILL, [f"wait{n}" for n in range(start, stop)], concurrency)

    async def waiting() -> bool:
        return await b.count_in("refill_window") >= before + stop - start

    await until(waiting, 1800, f"{stop} orders in their refill windows")


# ------------------------------------------------------------------------------------------ the fast path


@dataclasses.dataclass
class Template:
    """A real order in its refill window: its workflow state, timeline and provider submissions."""

    order_id: int
    state: OrderState
    events: list[OrderEvent]
    submissions: list[dict[str, Any]]


async def settled_template(b: Bench) -> Template:
    """One order of the refill service the real way, read once it waits in its refill window."""
    (order_id,) = await b.place_many(REFILL, ["waittemplate"], 1)

    async def waiting() -> bool:
        return await b.count_in("refill_window", [order_id]) == 1

    await until(waiting, 120, "the template order's refill window")
    state = await b.client.get_workflow_handle(workflow_id(order_id)).query(OrderWorkflow.state)
    problems = [
        what
        for what, ok in (
            ("Completed", state.status == Status.COMPLETED),
            ("in its refill window", state.phase == state.working_phase == Phase.REFILL_WINDOW),
            ("settled", state.settled_at is not None and state.refill_deadline is not None),
            ("all published", not state.pending_events and not state.pending_refills),
            ("delivered", all(po.final and po.delivered > 0 for po in state.provider_orders)),
        )
        if not ok
    ]
    if problems or not state.provider_orders:
        raise SystemExit(f"the template order is not as expected: not {', '.join(problems)}: {state}")
    rows = await b.db.fetch(
        "SELECT seq, at, kind, actor, message, detail FROM order_events WHERE order_id = $1 ORDER BY seq",
        order_id,
    )
    events = [
        OrderEvent(r["seq"], r["at"].isoformat(), r["kind"], r["actor"], r["message"], r["detail"])
        for r in rows
    ]
    submissions = [
        dict(r)
        for r in await b.db.fetch(
            "SELECT run_no, provider_id, provider_service_id, quantity, provider_order_id"
            " FROM provider_submissions WHERE order_id = $1 AND state = 'accepted'",
            order_id,
        )
    ]
    return Template(order_id, state, events, submissions)


def settled_state(template: OrderState, order_id: int, renamed: dict[str, str]) -> OrderState:
    """The template's state for another order: its id and its provider orders' ids, nothing else."""
    state = copy.deepcopy(template)
    state.order_id = order_id
    for po in state.provider_orders:
        po.provider_order_id = renamed[po.provider_order_id]
    return state


def settlement_record(state: OrderState, events: list[OrderEvent]) -> Projection:
    """The read model's write at settlement, as `OrderRecord.draft` builds it from the state."""
    return dataclasses.replace(
        projection_of(state),
        events=events,
        provider_orders=[dataclasses.replace(po) for po in state.provider_orders],
    )


class FastPath:
    def __init__(self, b: Bench, template: Template, caller: Caller) -> None:
        self.b = b
        self.t = template
        self.caller = caller

    async def settled_orders(self, start: int, stop: int) -> list[OrderInput]:
        """Orders `start`..`stop` placed, submitted and settled in one transaction; their workflow inputs."""
        b, t = self.b, self.t
        quantity = t.state.quantity
        made: list[OrderInput] = []
        async with transaction(b.sessions) as session:
            for n in range(start, stop):
                order, created = await place_order(
                    session,
                    self.caller,
                    OrderRequest(b.customer_id, REFILL, _link(n), quantity),
                    idempotency_key=f"bench-fast-{n}",
                )
                if not created:
                    continue  # a replay: settled before
                renamed = self.renamed(order.id)
                for sub in t.submissions:
                    session.add(
                        ProviderSubmission(
                            order_id=order.id,
                            run_no=sub["run_no"],
                            provider_id=sub["provider_id"],
                            provider_service_id=sub["provider_service_id"],
                            quantity=sub["quantity"],
                            client_key=f"order-{order.id}-run-{sub['run_no']}-p{sub['provider_id']}",
                            state="accepted",
                            provider_order_id=renamed[sub["provider_order_id"]],
                        )
                    )
                await session.flush()  # the settlement's projection updates the submission rows
                state = settled_state(t.state, order.id, renamed)
                events = [dataclasses.replace(e, detail=_renamed(e.detail, renamed)) for e in t.events]
                refund = state.refunded_micros
                await settlement.settle(
                    session,
                    Settlement(
                        order_id=order.id,
                        customer_id=order.customer_id,
                        refund_micros=refund,
                        revenue_micros=order.charge_micros - refund,
                        reason=f"{quantity - state.delivered} of {quantity} units not delivered",
                        record=settlement_record(state, events),
                    ),
                )
                made.append(dataclasses.replace(order_input(order), state=state))
        return made

    async def batch(self, start: int, stop: int) -> None:
        """Orders made a hundred per transaction while the ones made before are started on Temporal."""
        queue: asyncio.Queue[OrderInput | None] = asyncio.Queue(maxsize=2 * ORDERS_PER_TRANSACTION)

        async def make() -> None:
            for lo in range(start, stop, ORDERS_PER_TRANSACTION):
                for started in await self.settled_orders(lo, min(lo + ORDERS_PER_TRANSACTION, stop)):
                    await queue.put(started)
            for _ in range(STARTS_IN_FLIGHT):
                await queue.put(None)

        async def start_them() -> None:
            while (started := await queue.get()) is not None:
                await start_order_workflow(self.b.client, self.b.task_queue, started)

        await asyncio.gather(make(), *(start_them() for _ in range(STARTS_IN_FLIGHT)))

    def renamed(self, order_id: int) -> dict[str, str]:
        """The template's provider order ids, and this order's in their place."""
        return {
            s["provider_order_id"]: str(FAST_PROVIDER_IDS + order_id * 10 + i)
            for i, s in enumerate(self.t.submissions)
        }

    async def check(self, n: int) -> tuple[int, int]:
        """The fast order's workflow holds exactly the template's state, but for its identity. Returns the
        history events of its run and of the template's, so far."""
        order_id = int(await self.b.db.fetchval("SELECT id FROM orders WHERE link = $1", _link(n)))
        handle = self.b.client.get_workflow_handle(workflow_id(order_id))
        seen = await handle.query(OrderWorkflow.state)
        expected = settled_state(self.t.state, order_id, self.renamed(order_id))
        if seen != expected:
            raise SystemExit(f"fast order {order_id} differs from the template:\n{seen}\n{expected}")
        template = self.b.client.get_workflow_handle(workflow_id(self.t.order_id))
        return (
            len((await handle.fetch_history()).events),
            len((await template.fetch_history()).events),
        )


def _link(n: int) -> str:
    return f"https://instagram.com/bfast{n}"


async def _waiting(b: Bench, at_least: int) -> bool:
    return (await b.client.count_workflows(WAITING)).count >= at_least


def _renamed(text: str | None, renamed: dict[str, str]) -> str | None:
    if text is None:
        return None
    for old, new in renamed.items():
        text = text.replace(old, new)
    return text


# ------------------------------------------------------------------------------------------ the part


async def part_5(b: Bench, args: Any) -> None:
    count, path = args.waiting, args.waiting_path
    say(f"(5) worker RSS with {count} orders waiting in refill windows ({path} path) ...")
    worker: psutil.Process = worker_process(b.stack)
    points = [(0, rss_mib(worker))]
    say(f"  {0:>6} waiting: worker RSS {points[0][1]:.0f} MiB")
    fast: FastPath | None = None
    if path == "fast":
        template = await settled_template(b)
        fast = FastPath(b, template, await storefront(b))
    step = max(count // 4, 1)
    placed = 0
    while placed < count:
        stop = min(placed + step, count)
        t0 = time.perf_counter()
        if fast is None:
            await real_batch(b, placed, stop, args.concurrency)
            rate = f"{(stop - placed) / (time.perf_counter() - t0):.0f} orders/s through the API"
        else:
            await fast.batch(placed, stop)
            made = time.perf_counter() - t0
            # Every workflow's first task has run once its search attributes show the window (the first
            # wait upserts them; the start set Pending/queued, as the API's start does).
            await until(partial(_waiting, b, stop + 1), 1800, f"{stop} workflows' first tasks")
            rate = (
                f"{(stop - placed) / made:.0f} orders/s created, every first task run "
                f"{time.perf_counter() - t0 - made:.0f} s later"
            )
        placed = stop
        await asyncio.sleep(3)  # let the worker settle after the last tasks
        points.append((placed, rss_mib(worker)))
        say(f"  {placed:>6} waiting: worker RSS {points[-1][1]:.0f} MiB ({rate})")
    if fast is not None:
        events, real = await fast.check(count - 1)
        say(
            "    the last fast order's workflow holds the template order's state, but for their ids; "
            f"its run has {events} history events so far, the template's {real}"
        )
    (n0, r0), (n1, r1) = points[0], points[-1]
    per_order = (r1 - r0) / max(n1 - n0, 1) * 1024
    met = "met" if r1 <= TARGET_MIB else "missed"
    say(
        f"    {n1} waiting: worker RSS {r1:.0f} MiB (idle {r0:.0f} MiB, {per_order:.1f} KiB per order; "
        f"the worker caches {Settings().worker_cached_orders} orders) target <= {TARGET_MIB} MiB at "
        f"10 000: {met if n1 >= 10_000 else 'not measured at 10 000'}"
    )
