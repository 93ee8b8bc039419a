"""The Temporal worker: runs OrderWorkflow and its activities, and starts orders whose start was lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities import build_activities
from settings import Settings
from store import orders
from store.db import make_engine, make_sessionmaker
from temporal_client import connect, start_order_workflow
from workflows.order import OrderWorkflow

log = logging.getLogger(__name__)

# An order whose workflow has not reported this long after intake lost its start (the API died between the
# commit and the start, or Temporal was down and the client never replayed): the sweeper starts it.
UNSTARTED_AFTER_SECONDS = 60
SWEEP_EVERY_SECONDS = 30


def build_worker(
    client: Client, task_queue: str, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[OrderWorkflow],
        activities=build_activities(sessions, http),
        # On SIGTERM, running activities get this long to finish before they are cancelled (and retried).
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


async def start_unstarted_orders(
    client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str
) -> int:
    """Start every order that was charged but whose workflow never reported; returns how many were found."""
    async with sessions() as session:
        found = await orders.unstarted_orders(session, UNSTARTED_AFTER_SECONDS)
        inputs = [orders.order_input(order) for order in found]
    for order_input in inputs:
        try:
            await start_order_workflow(client, task_queue, order_input)  # a running one is left alone
        except Exception:  # noqa: BLE001 - one order's trouble must not hold up the others
            log.exception("sweeper: could not start order %s", order_input.order_id)
    return len(inputs)


async def _sweep(client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str) -> None:
    while True:
        try:
            if count := await start_unstarted_orders(client, sessions, task_queue):
                log.info("sweeper: %d order(s) without a reporting workflow handed to Temporal", count)
        except Exception:  # noqa: BLE001 - the sweeper must outlive a bad moment of the database or Temporal
            log.exception("sweeper: will try again in %ss", SWEEP_EVERY_SECONDS)
        await asyncio.sleep(SWEEP_EVERY_SECONDS)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    engine = make_engine(settings.require_database_url())
    client = await connect(settings)
    sessions = make_sessionmaker(engine)
    try:
        async with (
            httpx.AsyncClient() as http,
            build_worker(client, settings.temporal_task_queue, sessions, http),
        ):
            log.info("worker polling task queue %s", settings.temporal_task_queue)
            sweeper = asyncio.create_task(_sweep(client, sessions, settings.temporal_task_queue))
            await stop.wait()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
    finally:
        await engine.dispose()
