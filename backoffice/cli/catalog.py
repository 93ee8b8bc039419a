"""`backoffice catalog`: load a catalog file, or import a provider's service list at its rate plus markup."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from backoffice.cli.common import text, with_session
from backoffice.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from backoffice.cli.common import Subcommands


def cmd_catalog_load(settings: Settings, args: argparse.Namespace) -> int:
    from store.catalog import DEMO_CATALOG, CatalogError, load_catalog, read_catalog

    catalog = read_catalog(args.file or DEMO_CATALOG, simulator_url=args.simulator_url)

    async def work(session: AsyncSession) -> int:
        providers, services = await load_catalog(session, catalog)
        print(f"loaded {providers} provider(s) and {services} service(s)")
        return 0

    try:
        return asyncio.run(with_session(settings, work))
    except CatalogError as exc:  # the transaction rolled back: nothing of the file was loaded
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_catalog_import(settings: Settings, args: argparse.Namespace) -> int:
    import httpx
    from sqlalchemy import select

    from providers.client import ApiV2Client, ProviderError
    from store.catalog import CatalogError, import_services, parse_markup_bp
    from store.models import Provider

    try:
        markup_bp = parse_markup_bp(args.markup)
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"  {done}/{total} services", file=sys.stderr, flush=True)

    async def work(session: AsyncSession) -> int:
        provider = await session.scalar(select(Provider).where(Provider.name == args.provider))
        if provider is None:
            print(f"error: unknown provider {args.provider!r}", file=sys.stderr)
            return 1
        print(f"asking {provider.name} for its services ...", file=sys.stderr, flush=True)
        async with httpx.AsyncClient() as http:
            client = ApiV2Client(provider.api_url, provider.api_key, http=http, timeout=args.timeout)
            try:
                offered = await client.services()
            except ProviderError as exc:
                print(f"error: {provider.name} answered: {exc.message}", file=sys.stderr)
                return 1
        print(f"{len(offered)} service(s) offered; importing with {args.markup} % markup", file=sys.stderr)
        report = await import_services(session, provider.name, offered, markup_bp, progress)
        print(
            f"created {len(report.created)}, updated {len(report.updated)}, "
            f"route dropped from {len(report.routes_dropped)}, unavailable {len(report.unavailable)}"
        )
        for what, ids in (("created", report.created), ("unavailable", report.unavailable)):
            if ids:
                print(f"{what}: {', '.join(map(str, ids))}")
        for provider_service, kind in report.skipped:
            print(
                f"skipped: service {provider_service} of type {kind!r}, which the back office does not sell"
            )
        return 0

    try:
        return asyncio.run(with_session(settings, work))
    except CatalogError as exc:  # the transaction rolled back: nothing was imported
        print(f"error: {exc}", file=sys.stderr)
        return 1


def add_commands(sub: Subcommands) -> None:
    catalog = sub.add_parser("catalog", help="the service catalog").add_subparsers(dest="what", required=True)
    load = catalog.add_parser("load", help="load a catalog file (default: the demo catalog)")
    load.add_argument("--file", type=Path)
    load.add_argument("--simulator-url", default="http://127.0.0.1:8100")
    load.set_defaults(func=cmd_catalog_load)
    imp = catalog.add_parser(
        "import", help="create or update services from a provider's service list, at its rate plus a markup"
    )
    imp.add_argument("provider", type=text, help="the provider's name in the catalog")
    imp.add_argument("--markup", default="0", metavar="PCT", help="percent added to the provider's rate")
    imp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the service list")
    imp.set_defaults(func=cmd_catalog_import)
