"""OpenTelemetry traces: one trace from `POST /v1/orders` through the order's workflow to each provider call.

Off unless the standard variables ask for it: `OTEL_TRACES_EXPORTER` (`otlp` or `console`; `none` keeps
it off), or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
`OTEL_SDK_DISABLED=true` wins over both. When off nothing is instrumented, so requests, queries and
workflows pay nothing. The exporter reads the rest of its `OTEL_EXPORTER_OTLP_*` settings itself (OTLP over
HTTP/protobuf, port 4318), the resource `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` (the default name
is the process's: backoffice-api, backoffice-worker).

What is traced: the API's requests (FastAPI), every PostgreSQL statement (asyncpg), the Temporal client's
calls and the workflow and its activities (temporalio's TracingInterceptor, which carries the context in
Temporal headers), and the worker's requests to providers (httpx, which also sends them a `traceparent`
header).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

TRACER_NAME = "backoffice"
EXPORTERS = frozenset({"otlp", "console"})


class TracingSettingsError(ValueError):
    """An OTEL_* variable the back office cannot act on (named in the message)."""


def exporter_from_env(env: dict[str, str] | None = None) -> SpanExporter | None:
    """The span exporter the OTEL_* variables ask for, or None when tracing is off."""
    env = dict(os.environ) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        # The spec's default exporter is otlp; here an endpoint must say where, so an unset stack stays quiet.
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = ["otlp"] if endpoint else []
    names = [n for n in names if n != "none"]
    if not names:
        return None
    if len(names) > 1 or names[0] not in EXPORTERS:
        raise TracingSettingsError(
            f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: one of otlp, console or none"
        )
    if names[0] == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


@dataclass
class Tracing:
    """A tracer provider and what instruments the process's parts with it."""

    provider: TracerProvider
    _instrumented_asyncpg: bool = field(default=False, init=False)

    def temporal_interceptor(self) -> TracingInterceptor:
        """For Client.connect: the client's calls, and (the worker inherits it) workflows and activities."""
        return TracingInterceptor(self.provider.get_tracer(TRACER_NAME))

    def instrument_app(self, app: FastAPI) -> None:
        # /metrics is scraped every few seconds: a span for each would bury the orders' traces.
        FastAPIInstrumentor.instrument_app(app, tracer_provider=self.provider, excluded_urls="/metrics")

    def instrument_database(self) -> None:
        """asyncpg's statements, process-wide (the driver is patched once)."""
        instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=self.provider)
            self._instrumented_asyncpg = True

    def http_transport(self, inner: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncBaseTransport:
        """A transport that gives every request a client span and a `traceparent` header."""
        return AsyncOpenTelemetryTransport(inner or httpx.AsyncHTTPTransport(), tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Flush what is buffered and stop (the end of the process, or of a test)."""
        if self._instrumented_asyncpg:
            AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
            self._instrumented_asyncpg = False
        self.provider.shutdown()


def start_tracing(service: str, processor: SpanProcessor | None = None) -> Tracing | None:
    """Tracing for this process, or None when the OTEL_* variables leave it off. `processor` (tests: a
    SimpleSpanProcessor over an InMemorySpanExporter) turns it on whatever the variables say."""
    if processor is None:
        try:
            exporter = exporter_from_env()
        except TracingSettingsError as exc:
            raise SystemExit(str(exc)) from None  # the CLI prints it and exits 1, like a bad setting
        if exporter is None:
            return None
        processor = BatchSpanProcessor(exporter)
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; ours is only the default.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    tracing = Tracing(provider)
    tracing.instrument_database()
    return tracing
