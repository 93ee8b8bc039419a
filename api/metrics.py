"""`GET /metrics` (Prometheus text) and the API's own instruments.

Served without an API key, like most exporters: keep the port off the public internet (the numbers hold no
personal data). Read-model counts are queried at scrape time; every API process answers the same numbers
for them, so aggregate them with max(), not sum().
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backoffice.logs import order_context
from backoffice.telemetry import TemporalSdkMetrics, join_expositions
from store import stats
from workflows import policy

INTAKE_SECONDS = Histogram(
    "backoffice_order_intake_seconds",
    "Time to answer POST /v1/orders (validate, write and charge; the workflow starts after), by HTTP status.",
    ["code"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_ORDER_PATH = re.compile(r"/v1/orders/(\d+)(?:/.*)?")

router = APIRouter(include_in_schema=False)


class _ReadModel(Collector):
    """One scrape's counts from the database, as metric families."""

    def __init__(self, snap: stats.Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self._snap
        orders = GaugeMetricFamily(
            "backoffice_orders", "Orders by status and phase (read model).", labels=["status", "phase"]
        )
        # Every known pair, zeros included, so a series drops to 0 rather than vanishing.
        for status, phase in sorted(
            {(s, p) for s in policy.STATUSES for p in policy.PHASES} | set(snap.orders)
        ):
            orders.add_metric([status, phase], snap.orders.get((status, phase), 0))
        yield orders
        yield GaugeMetricFamily(
            "backoffice_orders_needing_attention",
            "Orders in phase needs_attention: a step failed for good; ops fix the cause and send them on.",
            value=snap.needing_attention,
        )
        yield GaugeMetricFamily(
            "backoffice_orders_unstarted",
            "Charged orders whose workflow has not reported a minute after intake (the sweeper's work).",
            value=snap.unstarted,
        )
        yield CounterMetricFamily("backoffice_refunds", "Refund transfers in the ledger.", value=snap.refunds)
        yield CounterMetricFamily(
            "backoffice_refunded_micros", "Money refunded, in micro-units.", value=snap.refunded_micros
        )
        yield CounterMetricFamily(
            "backoffice_refills_requested", "Refills requested.", value=sum(snap.refills.values())
        )
        refills = GaugeMetricFamily("backoffice_refills", "Refills by status.", labels=["status"])
        for status, count in sorted(snap.refills.items()):
            refills.add_metric([status], count)
        yield refills
        yield CounterMetricFamily(
            "backoffice_units_bought_beyond_need",
            "Units providers delivered beyond what orders needed (a given-up route that delivered late).",
            value=snap.units_beyond_need,
        )
        yield CounterMetricFamily(
            "backoffice_provider_cost_micros",
            "What providers charged for the provider orders, in micro-units (their reported `charge`).",
            value=snap.provider_cost_micros,
        )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    async with request.app.state.sessions() as session:
        snap = await stats.snapshot(session)
    read_model = CollectorRegistry(auto_describe=False)
    read_model.register(_ReadModel(snap))
    sdk: TemporalSdkMetrics | None = request.app.state.sdk_metrics
    body = join_expositions(
        generate_latest(REGISTRY), generate_latest(read_model), await sdk.text() if sdk else b""
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class OrderObservation:
    """Times intake (`POST /v1/orders`, by status) and puts the order id on the log lines of order routes.

    A plain ASGI middleware: BaseHTTPMiddleware runs every request in a task of its own and costs intake
    about a millisecond of CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if scope.get("method") == "POST" and path == "/v1/orders":
            await self._timed(scope, receive, send)
        elif match := _ORDER_PATH.fullmatch(path):
            with order_context(order_id=int(match.group(1))):
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def send_and_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                INTAKE_SECONDS.labels(str(message["status"])).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_and_time)


def install_metrics(app: FastAPI) -> None:
    """`/metrics`, the intake timer, and order ids on the log lines of order routes."""
    app.add_middleware(OrderObservation)
    app.include_router(router)
