"""`backoffice provider pause|resume`: one message to every order a provider holds, a few at a time."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from backoffice.cli.common import message_command, print_json, temporal_settings, with_session
from backoffice.cli.messages import _send, _Unanswered
from backoffice.settings import Settings

if TYPE_CHECKING:
    from backoffice.cli.common import Subcommands


class _Progress:
    """`[done/total]` on stderr: one line rewritten in a terminal, a line every tenth otherwise."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done = total, what, 0
        self.counts: dict[str, int] = {}
        self.tty = sys.stderr.isatty()
        self.every = max(1, total // 10)

    def step(self, outcome: str) -> None:
        self.done += 1
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.tty or self.done % self.every == 0 or self.done == self.total:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            line = f"[{self.done}/{self.total}] {self.what}: {counts}"
            print(
                f"\r{line}" if self.tty else line,
                end="\n" if not self.tty or self.done == self.total else "",
                file=sys.stderr,
                flush=True,
            )


def _provider_message(settings: Settings, args: argparse.Namespace, update: str) -> int:
    """Send pause or resume to every order the provider holds (queued for it, delivering, interrupted or
    paused there), a few at a time; each order answers for itself."""
    from backoffice.temporal_client import OrderActionRefused, connect
    from store.models import Provider
    from store.orders import in_flight_at
    from workflows.models import OrderAction, OrderState

    async def held() -> tuple[bool, list[int]]:
        found: list[int] = []

        async def work(session: Any) -> int:
            if await session.get(Provider, args.provider_id) is None:
                return 1
            found.extend(o.id for o in await in_flight_at(session, args.provider_id))
            return 0

        return await with_session(settings, work) == 0, found

    async def send() -> int:
        exists, order_ids = await held()
        if not exists:
            print(f"provider {args.provider_id} does not exist", file=sys.stderr)
            return 1
        client = await connect(temporal_settings(settings))
        action = OrderAction(args.actor, f"provider {args.provider_id}: {args.reason}")
        progress = _Progress(len(order_ids), f"{update} provider {args.provider_id}")
        gate = asyncio.Semaphore(args.concurrency)
        results: list[dict[str, Any]] = []

        async def one(order_id: int) -> None:
            result: dict[str, Any]
            async with gate:
                try:
                    state = await _send(
                        client, order_id, update, action, OrderState, args.actor, args.timeout
                    )
                    result = {"order_id": order_id, "outcome": "accepted", "phase": state.phase}
                except OrderActionRefused as exc:
                    result = {
                        "order_id": order_id,
                        "outcome": "refused",
                        "code": exc.code,
                        "message": exc.message,
                    }
                except _Unanswered as exc:
                    result = {
                        "order_id": order_id,
                        "outcome": "failed",
                        "code": exc.code,
                        "message": exc.message,
                    }
            results.append(result)
            progress.step(result["outcome"])

        await asyncio.gather(*(one(order_id) for order_id in order_ids))
        results.sort(key=lambda r: r["order_id"])
        failed = [r for r in results if r["outcome"] == "failed"]
        summary = {k: sum(1 for r in results if r["outcome"] == k) for k in ("accepted", "refused", "failed")}
        if args.json:
            print_json({"provider_id": args.provider_id, "action": update, "orders": results} | summary)
        else:
            for r in results:
                if r["outcome"] != "accepted":
                    print(f"order {r['order_id']}: {r['outcome']} ({r['code']}): {r['message']}")
            print(
                f"provider {args.provider_id}: {update} sent to {len(results)} order(s): "
                f"{summary['accepted']} accepted, {summary['refused']} refused, {summary['failed']} failed"
            )
        return 1 if failed else 0

    return asyncio.run(send())


def cmd_provider_pause(settings: Settings, args: argparse.Namespace) -> int:
    return _provider_message(settings, args, "pause")


def cmd_provider_resume(settings: Settings, args: argparse.Namespace) -> int:
    return _provider_message(settings, args, "resume")


def add_commands(sub: Subcommands) -> None:
    provider = sub.add_parser("provider", help="act on every order a provider holds").add_subparsers(
        dest="what", required=True
    )
    for name, func, what in (
        ("pause", cmd_provider_pause, "pause every order the provider holds (an outage, a bad batch)"),
        ("resume", cmd_provider_resume, "resume the provider's paused orders"),
    ):
        command = message_command(
            provider, name, what, func, target="provider_id", why="why (each order's timeline shows it)"
        )
        command.add_argument("--concurrency", type=int, default=8, help="orders messaged at once")
