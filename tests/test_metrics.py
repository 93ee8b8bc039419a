"""`/metrics` on the API and on the worker, parsed as Prometheus text, moving as orders move."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import httpx
from ops_support import (
    open_sim_shop,
    samples,
    settings_for,
    simulator_process,
    value,
    wait_for_order,
)
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice.settings import Settings
from backoffice.sockets import listen, port_of
from backoffice.telemetry import metered_http_client, serve_metrics
from providers.simulator import create_simulator_app
from store import keys
from store.db import transaction
from support import LINK, SERVICE
from worker import _serve_metrics, run_worker

PARTIAL_LINK = "https://instagram.com/partial.one"


async def _scrape(http: httpx.AsyncClient, url: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            response = await http.get(url)
            response.raise_for_status()
            assert response.headers["content-type"].startswith("text/plain")
            return response.text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_api_and_worker_metrics_move_when_orders_move(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> None:
    metrics_socket = listen("127.0.0.1", 0)  # handed to the worker, which serves and closes it
    settings = settings_for(db_url, dev_server)
    with simulator_process() as sim_url:
        shop = await open_sim_shop(sessions, api_url=sim_url)
        async with transaction(sessions) as session:
            storefront = await keys.create_key(session, "storefront")
        sim_host = sim_url.split("/")[2]
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop, metrics_socket=metrics_socket))
        app = create_app(settings)  # connects its own Temporal client, with the SDK's metrics
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
                httpx.AsyncClient(timeout=10) as http,
            ):
                worker_url = f"http://127.0.0.1:{port_of(metrics_socket)}/metrics"
                api_before = samples(await _scrape(api, "/metrics"))
                worker_before = samples(await _scrape(http, worker_url))
                assert value(api_before, "backoffice_orders", status="Pending", phase="queued") == 0
                # Every pair of status and phase is there from the start, at 0.
                assert value(api_before, "backoffice_orders", status="Partial", phase="closed") == 0
                assert len([name for name, _ in api_before if name == "backoffice_orders"]) >= 42
                scenario = {"scenario": "partial", "link_contains": "partial.one", "value": 0.5}
                control = sim_url.replace("/api/v2", "/sim/scenario")
                (await http.post(control, json=scenario)).raise_for_status()

                placed = []
                for n, link in enumerate((LINK, PARTIAL_LINK)):
                    response = await api.post(
                        "/v1/orders",
                        json={
                            "customer_id": shop.customer_id,
                            "service_id": SERVICE,
                            "link": link,
                            "quantity": 200,
                        },
                        headers={"Authorization": f"Bearer {storefront}", "Idempotency-Key": f"k{n}"},
                    )
                    assert response.status_code == 201, response.text
                    placed.append(response.json()["id"])
                await wait_for_order(sessions, placed[0], status="Completed", phase="closed")
                await wait_for_order(sessions, placed[1], status="Partial", phase="closed")

                api_after = samples(await _scrape(api, "/metrics"))
                worker_after = samples(await _scrape(http, worker_url))
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)

    # The read model, counted at scrape time.
    assert value(api_after, "backoffice_orders", status="Completed", phase="closed") == 1
    assert value(api_after, "backoffice_orders", status="Partial", phase="closed") == 1
    assert value(api_after, "backoffice_orders", status="Pending", phase="queued") == 0
    assert value(api_after, "backoffice_refunds_total") == value(api_before, "backoffice_refunds_total") + 1
    assert value(api_after, "backoffice_refunded_micros_total") == 100_000  # 100 of 200 units at 1.00/1000
    # What the provider charged for the two provider orders (its `charge`), and no unit bought twice.
    assert value(api_after, "backoffice_provider_cost_micros_total") > 0
    assert value(api_after, "backoffice_units_bought_beyond_need_total") == 0
    # Intake latency: two more answers with 201.
    intake = "backoffice_order_intake_seconds_count"
    assert value(api_after, intake, code="201") == value(api_before, intake, code="201") + 2
    # The API's own Temporal client reports through the SDK's metrics (e.g. its start_workflow RPCs).
    assert any(name.startswith("temporal_request") for name, _ in api_after)

    # Provider calls, labelled by provider host, action and outcome, measured in the worker.
    requests = "backoffice_provider_requests_total"
    added = value(worker_after, requests, provider=sim_host, action="add", outcome="ok")
    assert added - value(worker_before, requests, provider=sim_host, action="add", outcome="ok") == 2
    assert value(worker_after, requests, provider=sim_host, action="status", outcome="ok") >= 2
    assert (
        value(worker_after, "backoffice_provider_request_seconds_count", provider=sim_host, action="add") >= 2
    )
    # The Temporal SDK's worker metrics, merged into the same answer.
    assert any(name.startswith("temporal_activity_execution_latency") for name, _ in worker_after)
    assert any(name.startswith("temporal_workflow_completed") for name, _ in worker_after)


async def test_provider_outcomes_are_told_apart() -> None:
    sim = create_simulator_app(api_key="k")
    outcomes = []
    async with (
        metered_http_client(httpx.ASGITransport(app=sim)) as http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as control,
    ):

        async def call(**form: str) -> None:
            await http.post("http://outcomes.test/api/v2", data={"key": "k", **form})

        def count(action: str, outcome: str) -> float:
            labels = {"provider": "outcomes.test", "action": action, "outcome": outcome}
            return REGISTRY.get_sample_value("backoffice_provider_requests_total", labels) or 0.0

        expected = [("add", "rejected"), ("balance", "ok"), ("status", "http_5xx"), ("other", "rejected")]
        before = {(a, o): count(a, o) for a, o in expected}
        await call(action="add", service="999", link=LINK, quantity="100")  # unknown service: an API v2 error
        await call(action="balance")
        await call(action="frobnicate")  # not an action: labelled "other", never the raw value
        await control.post("/sim/scenario", json={"scenario": "outage"})
        await call(action="status", order="1")
        for action, outcome in before:
            outcomes.append((action, outcome, count(action, outcome) - before[(action, outcome)]))
    assert outcomes == [(action, outcome, 1) for action, outcome in expected]


async def test_worker_metrics_server_answers_only_metrics() -> None:
    async def render() -> bytes:
        return b"# HELP x_total x\n# TYPE x_total counter\nx_total 1.0\n"

    sock = listen("127.0.0.1", 0)
    server = await serve_metrics(sock, render)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_of(sock)}") as http:
            ok = await http.get("/metrics")
            assert ok.status_code == 200
            assert samples(ok.text) == {("x_total", frozenset()): 1.0}
            assert (await http.get("/")).status_code == 404
            assert (await http.post("/metrics")).status_code == 404
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_a_worker_whose_metrics_port_is_taken_still_runs() -> None:
    """Orders matter more than a scrape target: the worker logs the failed bind and carries on."""
    assert await _serve_metrics(Settings(worker_metrics_port=0), None) is None  # 0: turned off
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert await _serve_metrics(Settings(worker_metrics_port=taken.getsockname()[1]), None) is None


async def test_a_worker_serves_metrics_on_the_socket_it_was_handed() -> None:
    """`backoffice worker --metrics-fd N`: the socket is served whatever WORKER_METRICS_PORT says."""
    sock = listen("127.0.0.1", 0)
    server = await _serve_metrics(Settings(worker_metrics_port=0), None, sock)
    assert server is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_of(sock)}") as http:
            assert "python_info" in (await http.get("/metrics")).text  # this process's own registry
    finally:
        server.close()
        await server.wait_closed()
