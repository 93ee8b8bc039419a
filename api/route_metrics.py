"""Per-route request counts and latencies of the API, labelled by the route's template
(`/v1/orders/{order_id}`) rather than the raw path, so an order id never becomes a label value and the
series stay few.

A plain ASGI middleware (no BaseHTTPMiddleware): it reads the status from the response's start message and the
route that Starlette's router matched from the request scope, which the router fills in as it dispatches.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"  # a request no route answered (404 or 405): one label, whatever its path
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # anything else: "other"

API_REQUESTS = Counter(
    "backoffice_api_requests",
    "API requests by method, route template and HTTP status code.",
    ["method", "route", "code"],
)
API_REQUEST_SECONDS = Histogram(
    "backoffice_api_request_seconds",
    "Time from receiving an API request to sending the start of its answer, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    return path if isinstance(path, str) else UNMATCHED


class RouteMetrics:
    """Counts every HTTP request and times it up to the first byte of its answer (streamed bodies aside)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler is answered 500 by the server

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = str(scope.get("method", ""))
            method = method if method in METHODS else "other"
            route = route_template(scope)
            API_REQUESTS.labels(method, route, str(status)).inc()
            API_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
