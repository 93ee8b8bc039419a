"""The Temporal worker: runs OrderWorkflow and the activities it calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities import build_activities
from settings import Settings, get_settings
from store.db import make_engine, make_sessionmaker
from temporal_client import connect
from workflows.order import OrderWorkflow

WORKFLOWS: Sequence[type] = (OrderWorkflow,)


def build_worker(client: Client, task_queue: str, sessions, http: httpx.AsyncClient) -> Worker:  # type: ignore[no-untyped-def]
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=build_activities(sessions, http),
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    engine = make_engine(settings.require_database_url())
    client = await connect(settings)
    try:
        async with httpx.AsyncClient() as http:
            worker = build_worker(client, settings.temporal_task_queue, make_sessionmaker(engine), http)
            logging.getLogger(__name__).info("worker polling task queue %s", settings.temporal_task_queue)
            if stop is None:
                await worker.run()
            else:
                async with worker:
                    await stop.wait()
    finally:
        await engine.dispose()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
