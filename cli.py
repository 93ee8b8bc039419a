"""The `backoffice` command: the dev stack, the processes of a deployment, and operators' tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from logs import setup_logging
from settings import Settings, get_settings


def _dev_info(settings: Settings) -> dict[str, Any]:
    info = settings.data_dir / "dev.json"
    return dict(json.loads(info.read_text())) if info.exists() else {}


def _database_url(settings: Settings) -> str:
    """DATABASE_URL, or else the running dev stack's (so `backoffice keys create` works beside make run)."""
    return settings.database_url or _dev_info(settings).get("database_url") or settings.require_database_url()


def _temporal_settings(settings: Settings) -> Settings:
    """TEMPORAL_ADDRESS, or else the running dev stack's."""
    if settings.temporal_address:
        return settings
    info = _dev_info(settings)
    return settings.model_copy(update={"temporal_address": info.get("temporal_address")})


async def _with_session(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from store.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(_database_url(settings), pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from devstack import DevPorts, run_dev

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

    upgrade(_database_url(settings))
    print("database is at the latest migration")
    return 0


def cmd_catalog_load(settings: Settings, args: argparse.Namespace) -> int:
    from store.catalog import DEMO_CATALOG, load_catalog, read_catalog

    catalog = read_catalog(args.file or DEMO_CATALOG, simulator_url=args.simulator_url)

    async def work(session: Any) -> int:
        providers, services = await load_catalog(session, catalog)
        print(f"loaded {providers} provider(s) and {services} service(s)")
        return 0

    return asyncio.run(_with_session(settings, work))


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from store.keys import create_key

    async def work(session: Any) -> int:
        key = await create_key(session, args.role, customer_id=args.customer_id, label=args.label)
        print(key)
        return 0

    try:
        return asyncio.run(_with_session(settings, work))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_ledger_check(settings: Settings, args: argparse.Namespace) -> int:
    from store.ledger import check_invariants

    async def work(session: Any) -> int:
        breaches = await check_invariants(session)
        for breach in breaches:
            print(f"BREACH {breach.what}: {breach.detail}")
        print("ledger is sound" if not breaches else f"{len(breaches)} breach(es)")
        return 1 if breaches else 0

    return asyncio.run(_with_session(settings, work))


def cmd_orders_show(settings: Settings, args: argparse.Namespace) -> int:
    from api.schemas import OrderOut
    from store.orders import get_order

    async def work(session: Any) -> int:
        order = await get_order(session, args.order_id)
        if order is None:
            print(f"order {args.order_id} does not exist", file=sys.stderr)
            return 1
        print(OrderOut.of(order).model_dump_json(indent=2))
        return 0

    return asyncio.run(_with_session(settings, work))


def cmd_orders_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from temporalio.client import WorkflowUpdateFailedError

    from temporal_client import connect
    from workflows.models import RunReconciliation
    from workflows.order import OrderWorkflow

    answer = RunReconciliation(args.run, args.provider_order, args.actor, args.reason)

    async def send() -> int:
        client = await connect(_temporal_settings(settings))
        handle = client.get_workflow_handle(f"order-{args.order_id}")
        try:
            state = await handle.execute_update(OrderWorkflow.reconcile_run, answer)
        except WorkflowUpdateFailedError as exc:
            print(f"refused: {exc.cause}", file=sys.stderr)
            return 1
        print(f"order {args.order_id}: {state.note}")
        return 0

    return asyncio.run(send())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backoffice", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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

    catalog = sub.add_parser("catalog", help="the service catalog").add_subparsers(dest="what", required=True)
    load = catalog.add_parser("load", help="load a catalog file (default: the demo catalog)")
    load.add_argument("--file", type=Path)
    load.add_argument("--simulator-url", default="http://127.0.0.1:8100")
    load.set_defaults(func=cmd_catalog_load)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="what", required=True)
    create = keys.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument(
        "--role", required=True, choices=["storefront", "support", "ops", "admin", "customer"]
    )
    create.add_argument("--customer-id", type=int)
    create.add_argument("--label", default="")
    create.set_defaults(func=cmd_keys_create)

    ledger = sub.add_parser("ledger", help="the money ledger").add_subparsers(dest="what", required=True)
    ledger.add_parser("check", help="prove the ledger invariants; exit 1 on a breach").set_defaults(
        func=cmd_ledger_check
    )

    orders = sub.add_parser("orders", help="orders").add_subparsers(dest="what", required=True)
    show = orders.add_parser("show", help="print an order as the API shows it")
    show.add_argument("order_id", type=int)
    show.set_defaults(func=cmd_orders_show)
    reconcile = orders.add_parser(
        "reconcile", help="tell an order waiting on an unknown submission what the provider really holds"
    )
    reconcile.add_argument("order_id", type=int)
    reconcile.add_argument("--run", type=int, required=True, help="the run number the order waits on")
    found = reconcile.add_mutually_exclusive_group(required=True)
    found.add_argument("--provider-order", help="the provider's order id found for the run")
    found.add_argument(
        "--not-placed",
        dest="provider_order",
        action="store_const",
        const=None,
        help="the provider never took the run: send it to the next route",
    )
    reconcile.add_argument("--actor", required=True, help="who checked (ops:<name>)")
    reconcile.add_argument("--reason", required=True, help="what was checked")
    reconcile.set_defaults(func=cmd_orders_reconcile)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    sys.exit(args.func(settings, args))


if __name__ == "__main__":
    main()
