"""The processes of a deployment: the whole dev stack, the API, the worker, the provider simulator, and the
database migrations they need."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from backoffice.cli.common import database_url
from backoffice.settings import Settings

if TYPE_CHECKING:
    from backoffice.cli.common import Subcommands


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from backoffice.devstack import DevPorts, run_dev

    ports = DevPorts(
        api=args.api_port or settings.api_port,
        simulator=args.simulator_port or settings.simulator_port,
        temporal=args.temporal_port,
        temporal_ui=args.ui_port,
    )
    asyncio.run(run_dev(settings, args.data_dir or settings.data_dir, ports))
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    # log_config=None: uvicorn's lines go through the process's own (JSON) logging.
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,
    )
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker import run_worker

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())
    return 0


def cmd_simulator(settings: Settings, args: argparse.Namespace) -> int:
    from providers.simulator import main

    main(host=args.host, port=args.port or settings.simulator_port, state_file=args.state_file)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from store.migrate import upgrade

    upgrade(database_url(settings))
    print("database is at the latest migration")
    return 0


def add_commands(sub: Subcommands) -> None:
    dev = sub.add_parser("dev", help="run the whole back office on the embedded stack (make run)")
    dev.add_argument("--data-dir", type=Path, help="where data persists (default .data)")
    dev.add_argument("--api-port", type=int)
    dev.add_argument("--simulator-port", type=int)
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.set_defaults(func=cmd_dev)

    sub.add_parser("api", help="serve the HTTP API").set_defaults(func=cmd_api)
    sub.add_parser("worker", help="run the Temporal worker").set_defaults(func=cmd_worker)
    sim = sub.add_parser("simulator", help="serve the provider simulator (API v2)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int)
    sim.add_argument("--state-file", type=Path, help="keep the simulator's orders across restarts here")
    sim.set_defaults(func=cmd_simulator)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
