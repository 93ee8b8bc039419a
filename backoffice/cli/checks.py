"""`backoffice ledger check` and `backoffice check`: prove the books and the orders sound on a live system;
exit 1 on any breach or finding."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import TYPE_CHECKING

from backoffice.cli.common import print_json, temporal_settings, with_session
from backoffice.settings import Settings
from workflows.models import Phase

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from backoffice.cli.common import Subcommands
    from store.checks import Finding


def cmd_ledger_check(settings: Settings, args: argparse.Namespace) -> int:
    from store.ledger import check_invariants

    async def work(session: AsyncSession) -> int:
        breaches = await check_invariants(session)
        for breach in breaches:
            print(f"BREACH {breach.what}: {breach.detail}")
        print("ledger is sound" if not breaches else f"{len(breaches)} breach(es)")
        return 1 if breaches else 0

    return asyncio.run(with_session(settings, work))


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """The ledger's invariants, then whether the orders agree with the books, the runs and Temporal."""
    from datetime import timedelta

    from store.checks import order_findings, phases, running_orders
    from store.ledger import Breach, check_invariants

    breaches: list[Breach] = []
    findings: list[Finding] = []
    running: list[int] = []
    ended: list[Finding] = []  # orders in flight whose workflow is missing or has ended

    async def read(session: AsyncSession) -> None:
        breaches.extend(await check_invariants(session))
        findings.extend(await order_findings(session, stuck_after=timedelta(hours=args.stuck_hours)))
        running.extend(await running_orders(session))

    async def settled_meanwhile(session: AsyncSession) -> None:
        # An order may close while we ask: its workflow ended because it is done, not lost.
        now = await phases(session, [f.order_id for f in ended])
        ended[:] = [f for f in ended if now.get(f.order_id) != Phase.CLOSED]

    async def main() -> int:
        await with_session(settings, read)
        if not args.no_workflows and running:
            try:
                ended.extend(await _workflows_gone(settings, running, args.concurrency))
            except Exception as exc:  # a check that cannot ask Temporal must not pass
                print(
                    f"error: cannot ask Temporal about {len(running)} running order(s): {exc}",
                    file=sys.stderr,
                )
                return 1
            if ended:
                await with_session(settings, settled_meanwhile)
        found = sorted([*findings, *ended], key=lambda f: (f.order_id, f.kind))
        if args.json:
            print_json(
                {
                    "breaches": [dataclasses.asdict(b) for b in breaches],
                    "findings": [dataclasses.asdict(f) for f in found],
                }
            )
        else:
            for breach in breaches:
                print(f"BREACH {breach.what}: {breach.detail}")
            for f in found:
                print(f"FINDING {f.kind} order {f.order_id}: {f.detail}")
            print(
                "the ledger is sound and the orders agree with it"
                if not (breaches or found)
                else f"{len(breaches)} breach(es), {len(found)} finding(s)"
            )
        return 1 if breaches or found else 0

    return asyncio.run(main())


async def _workflows_gone(settings: Settings, order_ids: list[int], concurrency: int) -> list[Finding]:
    """Findings for the orders whose workflow Temporal does not have, or has ended."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    from backoffice.temporal_client import connect, workflow_id
    from store.checks import Finding

    client = await connect(temporal_settings(settings))
    gate = asyncio.Semaphore(concurrency)

    async def one(order_id: int) -> Finding | None:
        async with gate:
            try:
                described = await client.get_workflow_handle(workflow_id(order_id)).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                return Finding(
                    "workflow_missing", order_id, f"in flight, but Temporal has no {workflow_id(order_id)}"
                )
        if described.status == WorkflowExecutionStatus.RUNNING:
            return None
        status = described.status.name if described.status else "unknown"
        return Finding("workflow_ended", order_id, f"in flight, but {workflow_id(order_id)} is {status}")

    return [f for f in await asyncio.gather(*(one(i) for i in order_ids)) if f is not None]


def add_commands(sub: Subcommands) -> None:
    ledger = sub.add_parser("ledger", help="the money ledger").add_subparsers(dest="what", required=True)
    ledger.add_parser("check", help="prove the ledger invariants; exit 1 on a breach").set_defaults(
        func=cmd_ledger_check
    )
    check = sub.add_parser(
        "check",
        help="the ledger's invariants, and whether orders agree with the ledger, their runs and Temporal; "
        "exit 1 on any finding",
    )
    check.add_argument(
        "--stuck-hours", type=float, default=24.0, help="in flight with no progress for this long is stuck"
    )
    check.add_argument("--no-workflows", action="store_true", help="do not ask Temporal about workflows")
    check.add_argument("--concurrency", type=int, default=16, help="workflows described at once")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check)
