"""The Temporal worker: runs OrderWorkflow and its activities, and starts orders whose start was lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import build_activities
from activities.webhooks import WebhookActivities
from api.order_view import webhook_snapshot
from backoffice.logs import ActivityOrderContext
from backoffice.settings import Settings
from backoffice.sockets import listen
from backoffice.subscriptions import start_unstarted_subscriptions
from backoffice.telemetry import (
    TemporalSdkMetrics,
    metered_http_client,
    process_metrics,
    serve_metrics,
    temporal_sdk_metrics,
)
from backoffice.temporal_client import connect, start_order_workflow
from backoffice.tracing import Tracing, start_tracing
from backoffice.versioning import deployment_config
from backoffice.webhook_feed import WebhookFeeder
from store import orders
from store.db import make_engine, make_sessionmaker
from workflows.order import OrderWorkflow
from workflows.subscription import SubscriptionWorkflow
from workflows.webhooks import WebhookDelivery

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 30


def build_worker(
    client: Client,
    task_queue: str,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    *,
    cached_orders: int = 500,
    max_workflow_tasks: int = 100,
    max_activities: int = 100,
    deployment: WorkerDeploymentConfig | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        # Webhook deliveries run beside the orders but never in their path (workflows/webhooks.py).
        workflows=[OrderWorkflow, WebhookDelivery, SubscriptionWorkflow],
        activities=[
            *build_activities(sessions, http),
            *WebhookActivities(sessions, http, webhook_snapshot).all(),
        ],
        interceptors=[ActivityOrderContext()],  # activity log lines carry order_id and workflow_id
        # On SIGTERM, running activities get this long to finish before they are cancelled (and retried).
        graceful_shutdown_timeout=timedelta(seconds=20),
        max_cached_workflows=cached_orders,  # bounds memory with thousands of orders waiting
        max_concurrent_workflow_tasks=max_workflow_tasks,
        max_concurrent_activities=max_activities,
        deployment_config=deployment,  # None: unversioned (backoffice/versioning.py)
        # The sandbox re-imports a workflow's modules for every new run; ours are ~40 dataclasses and pure
        # code, and re-importing them took a third of the worker's time per order. They are passed through
        # (imported once); what the sandbox guarded (no I/O, no clock, no module state in workflows/) is
        # held by tests/test_layout.py and the replayed histories (docs/performance.md).
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows")
        ),
    )


async def start_unstarted_orders(
    client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str
) -> int:
    """Start every order that was charged but whose workflow never reported; returns how many were found."""
    async with sessions() as session:
        found = await orders.unstarted_orders(session, orders.UNSTARTED_AFTER_SECONDS)
        inputs = [orders.order_input(order) for order in found]
    for order_input in inputs:
        try:
            await start_order_workflow(client, task_queue, order_input)  # a running one is left alone
        except Exception:  # one order's trouble must not hold up the others
            log.exception("sweeper: could not start order %s", order_input.order_id)
    return len(inputs)


async def _sweep(client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str) -> None:
    while True:
        try:
            if count := await start_unstarted_orders(client, sessions, task_queue):
                log.info("sweeper: %d order(s) without a reporting workflow handed to Temporal", count)
            if count := await start_unstarted_subscriptions(client, sessions, task_queue):
                log.info("sweeper: %d subscription(s) without a reporting workflow started", count)
        except Exception:  # the sweeper must outlive a bad moment of the database or Temporal
            log.exception("sweeper: will try again in %ss", SWEEP_EVERY_SECONDS)
        await asyncio.sleep(SWEEP_EVERY_SECONDS)


async def _serve_metrics(
    settings: Settings, sdk: TemporalSdkMetrics | None, sock: socket.socket | None = None
) -> asyncio.Server | None:
    """The worker's /metrics, on `sock` when one was handed over, else on WORKER_METRICS_HOST:PORT (port 0:
    off). A port that cannot be bound is logged, not fatal: orders matter more, and Prometheus reports the
    missing target (`up == 0`)."""
    if sock is None:
        if not settings.worker_metrics_port:
            return None
        try:
            sock = listen(settings.worker_metrics_host, settings.worker_metrics_port)
        except OSError as exc:
            log.error("worker metrics not served on port %s: %s", settings.worker_metrics_port, exc)
            return None
    host, port = sock.getsockname()[:2]
    server = await serve_metrics(sock, lambda: process_metrics(sdk))
    log.info("worker metrics at http://%s:%s/metrics", host, port)
    return server


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    metrics_socket: socket.socket | None = None,
    tracing: Tracing | None = None,
) -> None:
    """The worker until `stop` is set; /metrics on `metrics_socket` (bound and listening) when given.
    Traces: `tracing`, else what the OTEL_* variables ask for (backoffice/tracing.py; off when unset)."""
    deployment = deployment_config(settings)  # a half-set version stops the worker before it connects
    own_tracing = tracing is None
    tracing = tracing if tracing is not None else start_tracing("backoffice-worker")
    engine = make_engine(
        settings.require_database_url(), pool_size=settings.database_pool_size, name="backoffice-worker"
    )
    sdk = temporal_sdk_metrics() if settings.temporal_sdk_metrics else None
    interceptors = [tracing.temporal_interceptor()] if tracing else []
    client = await connect(settings, runtime=sdk.runtime if sdk else None, interceptors=interceptors)
    sessions = make_sessionmaker(engine)
    metrics = await _serve_metrics(settings, sdk, metrics_socket)
    try:
        async with (
            metered_http_client(tracing.http_transport() if tracing else None) as http,
            build_worker(
                client,
                settings.temporal_task_queue,
                sessions,
                http,
                cached_orders=settings.worker_cached_orders,
                max_workflow_tasks=settings.worker_max_workflow_tasks,
                max_activities=settings.worker_max_activities,
                deployment=deployment,
            ),
        ):
            log.info(
                "worker polling task queue %s%s",
                settings.temporal_task_queue,
                f" as version {settings.worker_deployment_name}:{settings.worker_build_id}"
                if deployment
                else "",
            )
            sweeper = asyncio.create_task(_sweep(client, sessions, settings.temporal_task_queue))
            feeder = asyncio.create_task(WebhookFeeder(client, sessions, settings.temporal_task_queue).run())
            await stop.wait()
            for task in (sweeper, feeder):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        if metrics is not None:
            metrics.close()
            await metrics.wait_closed()
        await engine.dispose()
        if tracing is not None and own_tracing:
            tracing.shutdown()
