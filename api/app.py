"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import v2
from api.console import install_console
from api.docs import install_docs
from api.errors import install_error_handlers
from api.metrics import install_metrics
from api.route_metrics import RouteMetrics
from api.routes import catalog, customers, mass, meta, ops, orders, prices, subscriptions, support, webhooks
from api.starts import WorkflowStarts
from api.throttle import FailedAuthentications
from backoffice.logs import redact_server_logs
from backoffice.settings import Settings
from backoffice.telemetry import temporal_sdk_metrics
from backoffice.temporal_client import connect
from backoffice.tracing import Tracing, start_tracing
from store.db import make_engine, make_sessionmaker


def create_app(
    settings: Settings, *, temporal: Client | None = None, tracing: Tracing | None = None
) -> FastAPI:
    """Build the app. Tests pass their own Temporal client; otherwise one is connected at startup.
    Traces: `tracing`, else what the OTEL_* variables ask for (backoffice/tracing.py; off when unset)."""
    own_tracing = tracing is None
    tracing = tracing if tracing is not None else start_tracing("backoffice-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.require_database_url(), pool_size=settings.database_pool_size, name="backoffice-api"
        )
        try:
            app.state.sessions = make_sessionmaker(engine)
            # The Temporal client's own metrics join /metrics when the app connects its client itself.
            sdk = temporal_sdk_metrics() if temporal is None and settings.temporal_sdk_metrics else None
            app.state.sdk_metrics = sdk
            interceptors = [tracing.temporal_interceptor()] if tracing else []
            app.state.temporal = temporal or await connect(
                settings, runtime=sdk.runtime if sdk else None, interceptors=interceptors
            )
            app.state.starts = WorkflowStarts(app.state.temporal, settings.temporal_task_queue)
            try:
                yield
            finally:
                await app.state.starts.close()
        finally:
            await engine.dispose()
            if tracing is not None and own_tracing:
                tracing.shutdown()

    app = FastAPI(
        title="SMM order back office",
        version="0.1.0",
        description=(
            "Orders as durable Temporal workflows. REST `/v1`: authenticate with "
            "`Authorization: Bearer <key>` "
            "or `X-Api-Key: <key>`; errors are JSON `{code, message}`. `/api/v2`: the SMM API v2 for "
            "resellers (customer keys). See docs/api.md."
        ),
        lifespan=lifespan,
        # Served from the assets the back office ships (api/docs.py), not FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    redact_server_logs()  # uvicorn's access lines print `GET /api/v2?key=...`
    app.state.failed_authentications = FailedAuthentications(
        burst=settings.auth_failures_burst, per_minute=settings.auth_failures_per_minute
    )
    install_error_handlers(app)
    install_metrics(app)
    install_docs(app)
    if tracing is not None:
        tracing.instrument_app(app)
    app.add_middleware(RouteMetrics)  # outermost: every answer is counted, error handlers' included
    app.include_router(orders.router)
    app.include_router(mass.router)
    app.include_router(subscriptions.router)
    app.include_router(support.router)
    app.include_router(ops.router)
    app.include_router(customers.router)
    app.include_router(prices.router)
    app.include_router(catalog.router)
    app.include_router(webhooks.router)
    app.include_router(meta.router)
    app.include_router(v2.router)
    install_console(app, settings)
    return app
