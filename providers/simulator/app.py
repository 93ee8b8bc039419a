"""The simulator as an ASGI app and as a process of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from providers.simulator import control
from providers.simulator.model import SimClock
from providers.simulator.protocol import api_v2
from providers.simulator.state import SimState
from providers.simulator.store import SimStore


def create_simulator_app(
    *, api_key: str = "sim-demo-key", clock: SimClock | None = None, state_file: Path | None = None
) -> FastAPI:
    """A fresh simulator with its own state; tests create one per test.

    With `state_file` its orders survive a restart (the dev stack keeps it under its data folder).
    """
    store = SimStore(state_file) if state_file is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if store is not None:
            store.close()

    app = FastAPI(
        title="API v2 provider simulator",
        docs_url="/sim/docs",
        openapi_url="/sim/openapi.json",
        lifespan=lifespan,
    )
    sim = SimState(clock=clock or SimClock(), api_key=api_key, store=store)
    if store is not None:
        sim.restore()
    app.state.sim = sim
    app.add_api_route("/api/v2", api_v2, methods=["GET", "POST"], include_in_schema=False)
    control.add_routes(app)
    return app


def main(
    host: str = "127.0.0.1",
    port: int = 8100,
    api_key: str = "sim-demo-key",
    state_file: Path | None = None,
    fd: int | None = None,
) -> None:
    """Run the simulator as its own HTTP server on host:port, or on the inherited listening socket `fd`
    (the dev stack starts it this way)."""
    from backoffice.sockets import serve_asgi

    app = create_simulator_app(api_key=api_key, state_file=state_file)
    serve_asgi(app, host=host, port=port, fd=fd, log_level="warning")
