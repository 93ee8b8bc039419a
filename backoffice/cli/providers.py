"""`backoffice provider pause|resume`: one message to every order a provider holds, a few at a time, through
the messaging service's provider-wide fan-out; each order answers for itself."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from backoffice.cli.common import Command, message_command, print_json, with_session
from backoffice.cli.messages import cli_outcome, connect_messages, problem_fields
from backoffice.settings import Settings
from workflows.models import OrderAction
from workflows.order import OrderWorkflow

if TYPE_CHECKING:
    from backoffice.cli.common import Subcommands
    from backoffice.messaging import OrderOutcome, StateUpdate


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


def _shown(outcome: OrderOutcome) -> dict[str, Any]:
    from backoffice.messaging import NotAccepted

    if isinstance(outcome.answer, NotAccepted):
        return problem_fields(outcome.order_id, outcome.answer)
    return {"order_id": outcome.order_id, "outcome": "accepted", "phase": outcome.answer.phase}


async def _send(
    settings: Settings, args: argparse.Namespace, update: StateUpdate
) -> list[OrderOutcome] | None:
    """Every order's outcome; None when there is no such provider."""
    from backoffice.messaging import ProviderNotFound, message_name, orders_held

    try:
        held = await with_session(settings, lambda session: orders_held(session, args.provider_id))
    except ProviderNotFound:
        return None
    messages = await connect_messages(settings, args.timeout)
    progress = _Progress(len(held), f"{message_name(update)} provider {args.provider_id}")
    return await messages.send_to_provider(
        args.provider_id,
        held,
        update,
        OrderAction(args.actor, args.reason),
        via="cli",
        concurrency=args.concurrency,
        on_each=lambda outcome: progress.step(cli_outcome(outcome.answer)),
    )


def _provider_command(update: StateUpdate) -> Command:
    """Prints each order that did not act and a summary (exit 1 when any got no verdict)."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        from backoffice.messaging import message_name

        outcomes = asyncio.run(_send(settings, args, update))
        if outcomes is None:
            print(f"provider {args.provider_id} does not exist", file=sys.stderr)
            return 1
        name = message_name(update)
        results = [_shown(o) for o in outcomes]
        summary = {k: sum(1 for r in results if r["outcome"] == k) for k in ("accepted", "refused", "failed")}
        if args.json:
            print_json({"provider_id": args.provider_id, "action": name, "orders": results} | summary)
        else:
            for r in results:
                if r["outcome"] != "accepted":
                    print(f"order {r['order_id']}: {r['outcome']} ({r['code']}): {r['message']}")
            print(
                f"provider {args.provider_id}: {name} sent to {len(results)} order(s): "
                f"{summary['accepted']} accepted, {summary['refused']} refused, {summary['failed']} failed"
            )
        return 1 if summary["failed"] else 0

    return command


def add_commands(sub: Subcommands) -> None:
    provider = sub.add_parser("provider", help="act on every order a provider holds").add_subparsers(
        dest="what", required=True
    )
    for name, update, what in (
        ("pause", OrderWorkflow.pause, "pause every order the provider holds (an outage, a bad batch)"),
        ("resume", OrderWorkflow.resume, "resume the provider's paused orders"),
    ):
        command = message_command(
            provider,
            name,
            what,
            _provider_command(update),
            target="provider_id",
            why="why (each order's timeline shows it)",
        )
        command.add_argument("--concurrency", type=int, default=8, help="orders messaged at once")
