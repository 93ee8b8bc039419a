"""Starting an order's workflow off the request's path.

Intake commits the order and its charge, answers the storefront, and hands the workflow start here: a few
tasks in the API process start the queued workflows on Temporal. The storefront's checkout never waits for
Temporal (nor for a worker that is busy with a burst of orders). What is lost here (the process dies, Temporal
is down for a while, the queue is full) the worker's sweeper starts: an order whose workflow never reported
(store/orders.py:unstarted_orders), and every message sent to an order starts its workflow first too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry import context as otel_context
from temporalio.client import Client

from backoffice.temporal_client import start_order_workflow
from workflows.models import OrderInput

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000  # beyond this many starts waiting (Temporal down), the sweeper's backlog takes over


class WorkflowStarts:
    def __init__(self, temporal: Client, task_queue: str, *, concurrency: int = 8) -> None:
        self._temporal = temporal
        self._task_queue = task_queue
        # Each start carries the request's trace context (empty when tracing is off): the start, the
        # workflow and its provider calls join the trace of the POST that placed the order.
        self._queue: asyncio.Queue[tuple[OrderInput, otel_context.Context]] = asyncio.Queue(
            maxsize=QUEUE_LIMIT
        )
        self._tasks = [asyncio.create_task(self._start_queued()) for _ in range(concurrency)]

    def hand_over(self, order: OrderInput) -> None:
        try:
            self._queue.put_nowait((order, otel_context.get_current()))
        except asyncio.QueueFull:
            log.warning(
                "order %s: start left to the sweeper (%d starts waiting)", order.order_id, QUEUE_LIMIT
            )

    async def _start_queued(self) -> None:
        while True:
            order, trace = await self._queue.get()
            token = otel_context.attach(trace)
            try:
                await start_order_workflow(self._temporal, self._task_queue, order)
            except Exception as exc:  # one order's trouble must not stop the others' starts
                log.error("order %s saved but its workflow did not start (the sweeper will): %s",
                          order.order_id, exc)  # fmt: skip
            finally:
                otel_context.detach(token)
                self._queue.task_done()

    async def close(self, *, within: float = 10.0) -> None:
        """Start what is queued (for a while at most), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
