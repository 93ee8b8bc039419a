"""OpenTelemetry: one trace from `POST /v1/orders` through the workflow to each provider call, on the real
API, worker, Temporal dev server, PostgreSQL and simulator (over HTTP); off when no OTEL_* variable asks."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from ops_support import open_sim_shop, settings_for, simulator_process, wait_for_order
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.tracing import TracingSettingsError, exporter_from_env, start_tracing
from store import keys
from store.db import transaction
from support import LINK, SERVICE
from worker import run_worker


def _url(span: ReadableSpan) -> object:
    attributes = span.attributes or {}
    return attributes.get("url.full", attributes.get("http.url", ""))  # new and old HTTP conventions


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_one_trace_from_the_order_post_to_each_provider_call(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> None:
    exporter = InMemorySpanExporter()
    tracing = start_tracing("backoffice-test", SimpleSpanProcessor(exporter))
    assert tracing is not None
    settings = settings_for(db_url, dev_server)
    try:
        with simulator_process() as sim_url:
            shop = await open_sim_shop(sessions, api_url=sim_url)
            async with transaction(sessions) as session:
                storefront = await keys.create_key(session, "storefront")
            stop = asyncio.Event()
            worker = asyncio.create_task(run_worker(settings, stop, tracing=tracing))
            app = create_app(settings, tracing=tracing)  # connects its own client, with the interceptor
            try:
                async with (
                    app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
                ):
                    response = await api.post(
                        "/v1/orders",
                        json={"customer_id": shop.customer_id, "service_id": SERVICE, "link": LINK,
                              "quantity": 200},
                        headers={"Authorization": f"Bearer {storefront}", "Idempotency-Key": "traced"},
                    )  # fmt: skip
                    assert response.status_code == 201, response.text
                    order_id = response.json()["id"]
                    await wait_for_order(sessions, order_id, status="Completed", phase="closed")
                    await api.get("/metrics")  # scraped, and left out of the traces
            finally:
                stop.set()
                await asyncio.wait_for(worker, 30)
    finally:
        tracing.shutdown()
    spans = exporter.get_finished_spans()
    sim_host = sim_url.split("/")[2]

    posts = [s for s in spans if s.kind == SpanKind.SERVER and s.name == "POST /v1/orders"]
    assert len(posts) == 1
    post = posts[0]
    assert post.attributes is not None
    assert post.attributes.get("http.route") == "/v1/orders"
    trace = [s for s in spans if s.context is not None and s.context.trace_id == post.context.trace_id]
    by_id = {s.context.span_id: s for s in trace if s.context is not None}
    names = [s.name for s in trace]
    assert "StartWorkflow:OrderWorkflow" in names
    assert "RunWorkflow:OrderWorkflow" in names
    activities = [s for s in trace if s.name.startswith("RunActivity:")]
    assert activities
    # The intake's SQL (asyncpg), in the same trace.
    assert any((s.attributes or {}).get("db.system") == "postgresql" for s in trace)

    # Every request the worker sent the provider (the submission and its polls) sits in the POST's trace,
    # under an activity, under the workflow's start of it, under the workflow's start, under the POST.
    provider_calls = [s for s in spans if s.kind == SpanKind.CLIENT and sim_host in str(_url(s))]
    assert len(provider_calls) >= 2  # add, then at least one status poll
    for call in provider_calls:
        assert call.context is not None
        assert call.context.trace_id == post.context.trace_id, call.name
        chain = [s.name for s in _ancestors(call, by_id)]
        # TracingInterceptor hangs the workflow's spans (RunWorkflow, StartActivity) on the start's span.
        assert chain[0].startswith("RunActivity:")
        assert chain[1] == chain[0].replace("RunActivity:", "StartActivity:")
        assert chain[2:] == ["StartWorkflow:OrderWorkflow", "POST /v1/orders"]
    assert not [s for s in spans if "/metrics" in s.name]


def test_tracing_is_off_unless_the_otel_variables_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert start_tracing("backoffice-api") is None
    assert exporter_from_env({}) is None
    assert exporter_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert (
        exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"})
        is None
    )
    assert isinstance(exporter_from_env({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    assert isinstance(exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}), OTLPSpanExporter)
    assert isinstance(exporter_from_env({"OTEL_TRACES_EXPORTER": "otlp"}), OTLPSpanExporter)
    with pytest.raises(TracingSettingsError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        exporter_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(SystemExit, match="one of otlp, console or none"):
        start_tracing("backoffice-api")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    # An app built with tracing off is not instrumented at all.
    from backoffice.settings import Settings

    app = create_app(Settings(database_url="postgresql://unused/x", temporal_address="unused"))
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
