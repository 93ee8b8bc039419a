"""`backoffice keys`: create API keys (printed once), list them (never their secrets), revoke them."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from backoffice.cli.common import text, with_session
from backoffice.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from backoffice.cli.common import Subcommands


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from store.keys import create_key

    async def work(session: AsyncSession) -> int:
        key = await create_key(session, args.role, customer_id=args.customer_id, label=args.label)
        print(key)
        return 0

    try:
        return asyncio.run(with_session(settings, work))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from store.keys import list_keys

    async def work(session: AsyncSession) -> int:
        rows = await list_keys(session, include_revoked=args.all)
        header = ("id", "role", "customer", "key prefix", "created", "revoked", "name")
        print("{:>6}  {:<10} {:>8}  {:<26} {:<20} {:<20} {}".format(*header))
        for k in rows:
            print(
                f"{k.id:>6}  {k.role:<10} {k.customer_id or '-':>8}  {k.prefix:<26} "
                f"{k.created_at:%Y-%m-%d %H:%M:%S}  "
                f"{f'{k.revoked_at:%Y-%m-%d %H:%M:%S}' if k.revoked_at else '-':<20} {k.label}"
            )
        return 0

    return asyncio.run(with_session(settings, work))


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from store.keys import revoke_key

    async def work(session: AsyncSession) -> int:
        if await revoke_key(session, args.key_id):
            print(f"key {args.key_id} revoked; it is refused from the next request on")
            return 0
        print(f"error: no active key {args.key_id}", file=sys.stderr)
        return 1

    return asyncio.run(with_session(settings, work))


def add_commands(sub: Subcommands) -> None:
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="what", required=True)
    create = keys.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument(
        "--role", required=True, choices=["storefront", "support", "ops", "admin", "customer"]
    )
    create.add_argument("--customer-id", "--customer", dest="customer_id", type=int)
    create.add_argument(
        "--name", "--label", dest="label", default="", type=text, help="who or what the key is for"
    )
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key at once (by the id `keys list` shows)")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(func=cmd_keys_revoke)
