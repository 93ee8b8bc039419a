"""(4) What one order costs: history events, activity executions and provider calls, for a one-run order
(on the dev server) and for a 10-run drip-feed with a 30-day refill window (on the time-skipping test
server, with the worker's activities against the same database and simulator, so 30 days pass in seconds)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from backoffice.devstack import venv_binary
from bench.stack import NO_REFILL, Bench, add_service, say, storefront, until
from store.db import transaction
from store.orders import OrderRequest, order_input, place_order
from workflows import search_attributes as sa
from workflows.order import OrderWorkflow

DRIP_REFILL = 90  # added by the bench: drip-feed with a 30-day refill window


@dataclass
class Footprint:
    runs: int  # workflow runs (continue-as-new)
    events: int
    activities: int
    provider_calls: int
    kinds: Counter[str] = field(default_factory=Counter)  # history events by type
    steps: list[str] = field(default_factory=list)  # the activities, in the order they were scheduled

    def breakdown(self) -> str:
        """Where the events come from: `N x type`, most first; then the activities in order."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.kinds.most_common())
        return f"{kinds}; activities: {', '.join(self.steps)}"


async def footprint(client: Client, handle: WorkflowHandle[Any, Any], first_run_id: str) -> Footprint:
    """Runs, history events (by type) and activity executions over every run of the order's chain; its
    provider calls are counted apart (provider_calls)."""
    found = Footprint(0, 0, 0, 0)
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        found.runs += 1
        run_id = None
        for event in history.events:
            found.events += 1
            found.kinds[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()] += 1
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                found.activities += 1
                found.steps.append(event.activity_task_scheduled_event_attributes.activity_type.name)
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return found


async def provider_calls(b: Bench, link: str, order_id: int) -> int:
    """API v2 requests about this order: its `add`s, and every status/refill call naming its provider ids."""
    provider_ids = {
        str(r["provider_order_id"])
        for r in await b.db.fetch(
            "SELECT provider_order_id FROM provider_submissions"
            " WHERE order_id = $1 AND provider_order_id IS NOT NULL",
            order_id,
        )
    }
    log = (await b.sim.get("/sim/requests")).json()["requests"]
    count = 0
    for entry in log:
        params = entry["params"]
        named = {part.strip() for key in ("order", "orders") for part in params.get(key, "").split(",")}
        if params.get("link") == link or named & provider_ids:
            count += 1
        elif entry["action"] == "refill_status":
            count += 1 if provider_ids else 0  # the bench asks for one order's refills only
    return count


async def one_run_order(b: Bench) -> Footprint:
    response = await b.place(NO_REFILL, "single", quantity=500)
    order = response.json()

    async def closed() -> bool:
        return await b.open_orders([order["id"]]) == 0

    await until(closed, 120, "the one-run order to close")
    handle = b.client.get_workflow_handle(f"order-{order['id']}")
    first = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    found = await footprint(b.client, handle, first or (await handle.describe()).run_id or "")
    found.provider_calls = await provider_calls(b, order["link"], order["id"])
    return found


async def drip_feed_order(b: Bench) -> Footprint:
    """10 runs an hour apart, then a 30-day refill window: on the time-skipping server, same activities."""
    # The no-refill drip-feed followers, given a 30-day window.
    await add_service(b, 1, id=DRIP_REFILL, name="Bench drip-feed with refill", refill_days=30, refill_max=3)
    caller = await storefront(b)
    link = "https://instagram.com/bdrip"
    async with transaction(b.sessions) as session:
        order, _ = await place_order(
            session,
            caller,
            OrderRequest(
                customer_id=b.customer_id,
                service_id=DRIP_REFILL,
                quantity=1000,
                link=link,
                runs=10,
                interval=60,
            ),
            idempotency_key="bench-drip",
        )
        started = order_input(order)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in sa.ALL
                },
            )
        )
        async with httpx.AsyncClient() as http:
            queue = "bench-drip"
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[OrderWorkflow],
                activities=build_activities(b.sessions, http),
            ):
                handle = await env.client.start_workflow(
                    OrderWorkflow.run, started, id=f"order-{started.order_id}", task_queue=queue
                )
                await handle.result()
                found = await footprint(env.client, handle, handle.first_execution_run_id or "")
        found.provider_calls = await provider_calls(b, link, started.order_id)
    finally:
        await env.shutdown()
    return found


async def part_4(b: Bench, args: Any) -> None:
    say("(4) per order ...")
    await b.sim.post("/sim/reset")
    await b.sim.post("/sim/scenario", json={"scenario": "instant"})
    single = await one_run_order(b)
    say(
        f"    one run:  {single.events} history events, {single.activities} activity executions, "
        f"{single.provider_calls} provider calls, {single.runs} workflow run(s) "
        "(targets <= 36 events, <= 3 activity tasks, <= 2 provider calls)"
    )
    say(f"      {single.breakdown()}")
    drip = await drip_feed_order(b)
    say(
        "    10-run drip-feed + 30-day refill window (time-skipping server): "
        f"{drip.events} history events "
        f"over {drip.runs} workflow run(s), {drip.activities} activity executions, "
        f"{drip.provider_calls} provider calls"
    )
