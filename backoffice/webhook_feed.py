"""The worker's webhook feeder: wakes each endpoint's delivery workflow when its outbox has new deliveries
(starting the workflow when none runs), so events go out within about a second of their commit.

It only reads the outbox and signals: the order workflows never wait for it. Each worker process runs one;
two feeders only wake a workflow twice. A workflow that ended just as a wake arrived is woken again after
REKICK_SECONDS while its endpoint still has deliveries pending.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from store import webhooks
from workflows.webhooks import EndpointFeed, WebhookDelivery, delivery_workflow_id

log = logging.getLogger(__name__)

FEED_EVERY_SECONDS = 1.0
REKICK_SECONDS = 120.0

# On the worker's /metrics; read from the database, so every worker reports the same (aggregate by max()).
BACKLOG = Gauge("backoffice_webhook_backlog", "webhook deliveries waiting to be taken by enabled endpoints")
OLDEST = Gauge(
    "backoffice_webhook_oldest_pending_seconds", "age of the oldest delivery waiting for an enabled endpoint"
)


class WebhookFeeder:
    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str) -> None:
        self._client = client
        self._sessions = sessions
        self._task_queue = task_queue
        self._woken: dict[int, tuple[int, float]] = {}  # endpoint -> (newest delivery seen, when woken)

    async def feed_once(self) -> int:
        """Wake the endpoints with deliveries they have not been woken for; returns how many were woken."""
        async with self._sessions() as session:
            work = await webhooks.endpoints_with_work(session)
            pending, oldest = await webhooks.backlog(session) if work else (0, 0.0)
        BACKLOG.set(pending)
        OLDEST.set(oldest)
        woken = 0
        for endpoint_id, newest in work.items():
            seen, at = self._woken.get(endpoint_id, (0, 0.0))
            if newest <= seen and time.monotonic() - at < REKICK_SECONDS:
                continue
            await wake(self._client, self._task_queue, endpoint_id)
            self._woken[endpoint_id] = (newest, time.monotonic())
            woken += 1
        return woken

    async def run(self) -> None:
        while True:
            try:
                await self.feed_once()
            except Exception:  # a bad moment of the database or Temporal: the next round tries again
                log.exception("webhook feeder: will try again")
            await asyncio.sleep(FEED_EVERY_SECONDS)


async def wake(client: Client, task_queue: str, endpoint_id: int) -> None:
    """Signal the endpoint's delivery workflow, starting it if none runs."""
    await client.start_workflow(
        WebhookDelivery.run,
        EndpointFeed(endpoint_id),
        id=delivery_workflow_id(endpoint_id),
        task_queue=task_queue,
        start_signal="wake",
    )
