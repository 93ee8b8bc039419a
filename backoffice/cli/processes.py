"""The processes of a deployment: the whole dev stack, the API, the worker, the provider simulator, and the
database migrations they need."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from backoffice.cli.common import database_url
from backoffice.settings import Settings
from backoffice.sockets import inherited, serve_asgi

if TYPE_CHECKING:
    from backoffice.cli.common import Subcommands


FD_HELP = "an already bound, listening socket inherited as this file descriptor (instead of a port)"


def _given(flag: int | None, setting: int) -> int:
    """A port flag, else its setting; 0 is a port (any free one), not "unset"."""
    return setting if flag is None else flag


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from backoffice.devstack import DevPorts, run_dev

    if 0 in (args.temporal_port, args.ui_port):
        # The Temporal CLI binds its ports itself and cannot say which one it took.
        raise SystemExit("--temporal-port and --ui-port need a port number (0 works for the others)")
    metrics = args.worker_metrics_port
    ports = DevPorts(
        api=_given(args.api_port, settings.api_port),
        simulator=_given(args.simulator_port, settings.simulator_port),
        temporal=args.temporal_port,
        temporal_ui=args.ui_port,
        # Unset: WORKER_METRICS_PORT, where 0 turns the metrics off; the flag's 0 is any free port.
        worker_metrics=(settings.worker_metrics_port or None) if metrics is None else metrics,
    )
    asyncio.run(run_dev(settings, args.data_dir or settings.data_dir, ports))
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from api.app import create_app

    app = create_app(settings)
    # What is loaded by now (modules, the app, its routes and schemas) lives as long as the process: moved
    # out of the collector's sight, a full collection no longer walks it, and such a pause (about 100 ms
    # on a busy 2-core machine) no longer lands on the requests in flight.
    gc.collect()
    gc.freeze()
    # log_config=None: uvicorn's lines go through the process's own (JSON) logging.
    serve_asgi(
        app,
        host=settings.api_host,
        port=_given(args.port, settings.api_port),
        fd=args.fd,
        log_level="info",
        log_config=None,
    )
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker import run_worker

    metrics = inherited(args.metrics_fd) if args.metrics_fd is not None else None
    if settings.worker_niceness:  # before any thread starts: the SDK's threads inherit it
        os.nice(settings.worker_niceness)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop, metrics_socket=metrics)

    asyncio.run(main())
    return 0


def cmd_simulator(settings: Settings, args: argparse.Namespace) -> int:
    from providers.simulator import main

    main(
        host=args.host,
        port=_given(args.port, settings.simulator_port),
        fd=args.fd,
        state_file=args.state_file,
    )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from store.migrate import upgrade

    upgrade(database_url(settings))
    print("database is at the latest migration")
    return 0


def add_commands(sub: Subcommands) -> None:
    dev = sub.add_parser("dev", help="run the whole back office on the embedded stack (make run)")
    dev.add_argument("--data-dir", type=Path, help="where data persists (default .data)")
    dev.add_argument("--api-port", type=int, help="default API_PORT (8000); 0: any free port")
    dev.add_argument("--simulator-port", type=int, help="default SIMULATOR_PORT (8100); 0: any free port")
    dev.add_argument(
        "--worker-metrics-port", type=int, help="default WORKER_METRICS_PORT (9464); 0: any free port"
    )
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.set_defaults(func=cmd_dev)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--port", type=int, help="default API_PORT (8000), on API_HOST")
    api.add_argument("--fd", type=int, help=FD_HELP)
    api.set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="run the Temporal worker")
    worker.add_argument("--metrics-fd", type=int, help=f"serve /metrics there: {FD_HELP}")
    worker.set_defaults(func=cmd_worker)
    sim = sub.add_parser("simulator", help="serve the provider simulator (API v2)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, help="default SIMULATOR_PORT (8100)")
    sim.add_argument("--fd", type=int, help=FD_HELP)
    sim.add_argument("--state-file", type=Path, help="keep the simulator's orders across restarts here")
    sim.set_defaults(func=cmd_simulator)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
