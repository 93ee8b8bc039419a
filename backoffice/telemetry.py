"""Prometheus metrics the API and the worker share: provider calls, the Temporal SDK's own metrics, and the
small HTTP server the worker answers `GET /metrics` with.

Provider calls are measured from outside the provider client, by the transport of the worker's shared httpx
client: every request to a provider is counted by provider (host[:port]), API v2 action and outcome.
The Temporal SDK's metrics come from its Rust core, which serves them on a loopback port of its own; each
process fetches them at scrape time and appends them to its own answer, so Prometheus scrapes one endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger(__name__)

PROVIDER_ACTIONS = frozenset({"add", "status", "services", "balance", "refill", "refill_status", "cancel"})
PROVIDER_REQUESTS = Counter(
    "backoffice_provider_requests",
    "Requests sent to providers, by provider (host[:port]), API v2 action and outcome "
    "(ok, rejected, rate_limited, http_4xx, http_5xx, garbled, timeout, connect_error, error).",
    ["provider", "action", "outcome"],
)
PROVIDER_SECONDS = Histogram(
    "backoffice_provider_request_seconds",
    "Time from sending a request to a provider to having read its whole answer (or given up).",
    ["provider", "action"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)


def _action(request: httpx.Request) -> str:
    """The API v2 action of a provider request (form body or query), from a closed set: labels stay few."""
    values = request.url.params.get_list("action")
    if not values:
        try:
            body = request.content.decode("utf-8", "replace")
        except httpx.RequestNotRead:
            body = ""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            values = [str(data["action"])] if isinstance(data, dict) and "action" in data else []
        else:
            values = parse_qs(body).get("action", [])
    return values[0] if values and values[0] in PROVIDER_ACTIONS else "other"


def _outcome(response: httpx.Response) -> str:
    code = response.status_code
    if code == 429:
        return "rate_limited"
    if code >= 500:
        return "http_5xx"
    if not 200 <= code < 300:
        return "http_4xx" if code >= 400 else f"http_{code // 100}xx"
    try:
        answer = json.loads(response.content)
    except ValueError:
        return "garbled"
    if isinstance(answer, dict) and answer.get("error") not in (None, ""):
        return "rejected"
    return "ok"


class MeteredTransport(httpx.AsyncBaseTransport):
    """Wraps the transport of an httpx client and measures every request that goes through it."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        provider = request.url.netloc.decode("ascii", "replace")
        action = _action(request)
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self._inner.handle_async_request(request)
            await response.aread()  # provider answers are small; the outcome needs the body
            outcome = _outcome(response)
            return response
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        except httpx.ConnectError:
            outcome = "connect_error"
            raise
        finally:
            seconds = time.perf_counter() - started
            PROVIDER_REQUESTS.labels(provider, action, outcome).inc()
            PROVIDER_SECONDS.labels(provider, action).observe(seconds)
            log.log(
                logging.DEBUG if outcome == "ok" else logging.WARNING,
                "provider %s %s: %s in %.3fs",
                provider,
                action,
                outcome,
                seconds,
                extra={
                    "provider": provider,
                    "action": action,
                    "outcome": outcome,
                    "seconds": round(seconds, 3),
                },
            )

    async def aclose(self) -> None:
        await self._inner.aclose()


def metered_http_client(inner: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The worker's one httpx client for every provider, measured."""
    return httpx.AsyncClient(transport=MeteredTransport(inner))


def _free_loopback_port() -> int:
    """A port for the SDK's metrics server. Its Rust core binds the address itself and takes no socket, so
    this is a guess (bound, closed, bound again by the core): the one the project cannot avoid."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporalSdkMetrics:
    """A Temporal runtime whose metrics (client RPCs, workflow and activity task slots, latencies, failures)
    the SDK serves on a loopback port; pass `runtime` to Client.connect."""

    def __init__(self) -> None:
        self.port = _free_loopback_port()
        self.runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{self.port}"))
        )

    async def text(self) -> bytes:
        """The SDK's exposition; empty (and logged) when unreadable, so our own metrics still go out."""
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(f"http://127.0.0.1:{self.port}/metrics")
                response.raise_for_status()
                return response.content
        except httpx.HTTPError as exc:
            log.warning("temporal sdk metrics unavailable: %s", exc)
            return b""


_sdk: TemporalSdkMetrics | None = None


def temporal_sdk_metrics() -> TemporalSdkMetrics:
    """One per process: the runtime owns threads and the port."""
    global _sdk
    if _sdk is None:
        _sdk = TemporalSdkMetrics()
    return _sdk


def join_expositions(*parts: bytes) -> bytes:
    """Several Prometheus text expositions as one (their metric names do not overlap)."""
    return b"".join(part if part.endswith(b"\n") or not part else part + b"\n" for part in parts)


async def process_metrics(sdk: TemporalSdkMetrics | None) -> bytes:
    """This process's registry, and the Temporal SDK's metrics when it has them."""
    return join_expositions(generate_latest(REGISTRY), await sdk.text() if sdk else b"")


async def serve_metrics(sock: socket.socket, render: Callable[[], Awaitable[bytes]]) -> asyncio.Server:
    """A minimal HTTP/1.1 server answering `GET /metrics` on a bound, listening socket, on the worker's
    event loop (no thread). The server owns the socket from now on: closing it closes the socket."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            path = request_line[1].split(b"?", 1)[0] if len(request_line) > 1 else b""
            if request_line[0] == b"GET" and path == b"/metrics":
                status, content_type, body = b"200 OK", CONTENT_TYPE_LATEST.encode(), await render()
            else:
                status, content_type, body = b"404 Not Found", b"text/plain", b"only GET /metrics here\n"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        except Exception:  # anything: a failed scrape must never take the worker down
            log.exception("metrics: scrape failed")
        finally:
            writer.close()

    return await asyncio.start_server(answer, sock=sock)
