"""The `backoffice` command: the dev stack, the processes of a deployment, and operators' tools."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from backoffice.logs import order_context, setup_logging
from backoffice.settings import Settings, get_settings
from workflows import policy
from workflows.models import Phase, Status

T = TypeVar("T")


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

    async def work(session: Any) -> int:
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


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from store.keys import list_keys

    async def work(session: Any) -> int:
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

    return asyncio.run(_with_session(settings, work))


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from store.keys import revoke_key

    async def work(session: Any) -> int:
        if await revoke_key(session, args.key_id):
            print(f"key {args.key_id} revoked; it is refused from the next request on")
            return 0
        print(f"error: no active key {args.key_id}", file=sys.stderr)
        return 1

    return asyncio.run(_with_session(settings, work))


def cmd_ledger_check(settings: Settings, args: argparse.Namespace) -> int:
    from store.ledger import check_invariants

    async def work(session: Any) -> int:
        breaches = await check_invariants(session)
        for breach in breaches:
            print(f"BREACH {breach.what}: {breach.detail}")
        print("ledger is sound" if not breaches else f"{len(breaches)} breach(es)")
        return 1 if breaches else 0

    return asyncio.run(_with_session(settings, work))


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """The ledger's invariants, then whether the orders agree with the books, the runs and Temporal."""
    from datetime import timedelta

    from store.checks import Finding, order_findings, phases, running_orders
    from store.ledger import Breach, check_invariants

    breaches: list[Breach] = []
    findings: list[Finding] = []
    running: list[int] = []
    ended: list[Finding] = []  # orders in flight whose workflow is missing or has ended

    async def read(session: Any) -> int:
        breaches.extend(await check_invariants(session))
        findings.extend(await order_findings(session, stuck_after=timedelta(hours=args.stuck_hours)))
        running.extend(await running_orders(session))
        return 0

    async def settled_meanwhile(session: Any) -> int:
        # An order may close while we ask: its workflow ended because it is done, not lost.
        now = await phases(session, [f.order_id for f in ended])
        ended[:] = [f for f in ended if now.get(f.order_id) != Phase.CLOSED]
        return 0

    async def main() -> int:
        await _with_session(settings, read)
        if not args.no_workflows and running:
            try:
                ended.extend(await _workflows_gone(settings, running, args.concurrency))
            except Exception as exc:  # noqa: BLE001 - a check that cannot ask Temporal must not pass
                print(
                    f"error: cannot ask Temporal about {len(running)} running order(s): {exc}",
                    file=sys.stderr,
                )
                return 1
            if ended:
                await _with_session(settings, settled_meanwhile)
        found = sorted([*findings, *ended], key=lambda f: (f.order_id, f.kind))
        if args.json:
            _print_json(
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


async def _workflows_gone(settings: Settings, order_ids: list[int], concurrency: int) -> list[Any]:
    """Findings for the orders whose workflow Temporal does not have, or has ended."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    from backoffice.temporal_client import connect, workflow_id
    from store.checks import Finding

    client = await connect(_temporal_settings(settings))
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


# Orders and providers: what ops and support look at and send. Reads come from the read model (DATABASE_URL,
# else dev.json); messages go to the orders' workflows (TEMPORAL_ADDRESS, else dev.json) and are answered
# once the order has acted. Every command prints JSON with --json.

audit = logging.getLogger("backoffice.audit")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _timestamp(text: str) -> datetime:
    """An ISO date or date-time for --from/--to; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text)
        # In UTC, as the database compares it; a time past year 9999 there cannot be queried at all.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time in years 1-9999: {text!r}") from exc


def _text(value: str) -> str:
    """A text argument under the rule every door applies (workflows/text.py): argparse refuses it, exit 2."""
    from workflows.text import text_problem

    if (problem := text_problem(value)) is not None:
        raise argparse.ArgumentTypeError(f"text with {problem} is not accepted")
    return value


_MONEY = re.compile(r"-?[0-9]{1,7}(\.[0-9]{1,6})?")


def _money(value: str) -> str:
    """Money as `--amount` takes it: ASCII digits only (Decimal alone would read "٢٥" as 25)."""
    if not _MONEY.fullmatch(value.strip()):
        raise argparse.ArgumentTypeError(f"not an amount with at most 6 decimals: {value!r}")
    return value


def _order_fields(order: Any, cost_micros: int | None = None) -> dict[str, Any]:
    from api.schemas import OrderOut

    shown = OrderOut.of(order, for_customer=False, cost_micros=cost_micros)
    return shown.model_dump(mode="json") | {
        "provider_id": order.provider_id,
        "note": order.note,
        "refill_deadline": order.refill_deadline.isoformat() if order.refill_deadline else None,
    }


def cmd_orders_list(settings: Settings, args: argparse.Namespace) -> int:
    from store.orders import OrderFilter, costs_of, list_orders

    where = OrderFilter(
        customer_id=args.customer,
        status=args.status,
        phase=args.phase,
        service_id=args.service,
        created_from=args.created_from,
        created_to=args.created_to,
    )

    async def work(session: Any) -> int:
        rows, more = await list_orders(session, where, after=args.after, limit=args.limit)
        next_after = rows[-1].id if more else None
        if args.json:
            costs = await costs_of(session, [o.id for o in rows])
            orders = [_order_fields(o, costs.get(o.id)) for o in rows]
            _print_json({"orders": orders, "next_after": next_after})
            return 0
        print(
            f"{'id':>8} {'customer':>8} {'service':>7}  {'status':<11} {'phase':<13} "
            f"{'delivered':>19}  {'charge':>12} {'refunded':>12}  {'created (UTC)':<19}  note"
        )
        for o in rows:
            print(
                f"{o.id:>8} {o.customer_id:>8} {o.service_id:>7}  {o.status:<11} {o.phase:<13} "
                f"{f'{o.delivered}/{o.quantity}':>19}  {policy.format_money(o.charge_micros):>12} "
                f"{policy.format_money(o.refunded_micros):>12}  {_when(o.created_at):<19}  {o.note[:60]}"
            )
        print(f"{len(rows)} order(s)" + (f"; more with --after {next_after}" if more else ""))
        return 0

    return asyncio.run(_with_session(settings, work))


def cmd_orders_show(settings: Settings, args: argparse.Namespace) -> int:
    from store import orders as store_orders

    async def work(session: Any) -> int:
        order = await store_orders.get_order(session, args.order_id)
        if order is None:
            print(f"order {args.order_id} does not exist", file=sys.stderr)
            return 1
        events = await store_orders.timeline(session, order.id)
        refills = await store_orders.refills(session, order.id)
        runs = await store_orders.submissions_of(session, order.id)
        costs = [r.cost_micros for r in runs if r.cost_micros is not None]
        shown: dict[str, Any] = {
            "order": _order_fields(order, sum(costs) if costs else None),
            "timeline": [
                {
                    "seq": e.seq,
                    "at": e.at,
                    "kind": e.kind,
                    "actor": e.actor,
                    "message": e.message,
                    "detail": e.detail,
                }
                for e in events
            ],
            "runs": [
                {
                    "run": r.run_no,
                    "provider_id": r.provider_id,
                    "provider_service_id": r.provider_service_id,
                    "quantity": r.quantity,
                    "state": r.state,
                    "provider_order_id": r.provider_order_id,
                    "delivered": r.delivered,
                    "provider_status": r.provider_status,
                    "cost": policy.format_money(r.cost_micros) if r.cost_micros is not None else None,
                    "given_up_at": r.abandoned_at,
                    "finished_at": r.finished_at,
                    "error": r.error,
                    "created_at": r.created_at,
                }
                for r in runs
            ],
            "refills": [
                {
                    "refill_id": r.id,
                    "refill_no": r.refill_no,
                    "status": r.status,
                    "requested_by": r.requested_by,
                    "created_at": r.created_at,
                    "finished_at": r.finished_at,
                }
                for r in refills
            ],
        }
        if args.json:
            _print_json(shown)
            return 0
        o = shown["order"]
        print(
            f"order {o['id']}  {o['status']} ({o['phase']})  "
            f"customer {o['customer_id']}  service {o['service_id']}"
        )
        print(f"  link        {o['link']}")
        print(
            f"  quantity    {o['quantity']}  delivered {o['delivered']}  remains {o['remains']}"
            + (f"  (drip-feed {o['runs']} runs every {o['interval']} min)" if o["runs"] else "")
        )
        print(
            f"  money       charge {o['charge']}  refunded {o['refunded']} ({o['refunded_units']} units)  "
            f"cost {o['cost'] or '-'}  margin {o['margin'] or '-'}"
        )
        print(
            f"  provider    {o['provider_id'] or '-'}  status {o['provider_status'] or '-'}  "
            f"start count {o['start_count'] if o['start_count'] is not None else '-'}"
        )
        print(
            f"  times (UTC) created {_when(order.created_at)}  updated {_when(order.updated_at)}  "
            f"finished {_when(order.finished_at)}  refill window until {_when(order.refill_deadline)}"
        )
        if order.note:
            print(f"  note        {order.note}")
        print(f"timeline ({len(events)}):")
        for e in events:
            detail = f"  [{e.detail}]" if e.detail else ""
            print(f"  {e.seq:>4}  {_when(e.at)}  {e.kind:<18} {e.actor:<22} {e.message}{detail}")
        if runs:
            print(f"runs ({len(runs)}):")
            for r in runs:
                # What the run really did: the provider's last word, not just that it was accepted.
                outcome = r.provider_status or r.state
                if r.delivered is not None:
                    outcome += f", {r.delivered} delivered"
                if r.cost_micros is not None:
                    outcome += f", cost {policy.format_money(r.cost_micros)}"
                if r.abandoned_at is not None:
                    outcome += f", given up {_when(r.abandoned_at)}"
                print(
                    f"  run {r.run_no:<3} provider {r.provider_id} ({r.provider_service_id})  "
                    f"{r.quantity} units  {outcome:<40} provider order {r.provider_order_id or '-'}"
                    + (f"  {r.error}" if r.error else "")
                )
        print(f"refills ({len(refills)}):")
        for f in refills:
            print(
                f"  #{f.refill_no} (refill id {f.id})  {f.status:<11} requested by {f.requested_by} "
                f"at {_when(f.created_at)}  finished {_when(f.finished_at)}"
            )
        return 0

    return asyncio.run(_with_session(settings, work))


class _Unanswered(Exception):
    """An order message that got no verdict: timed out, or Temporal could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _send(
    client: Any, order_id: int, update: str, arg: Any, result_type: type[T], actor: str, wait_seconds: float
) -> T:
    """Send one order message and wait for its answer; every outcome is one audit log line.

    Raises OrderActionRefused (the order said no: nothing was written) or _Unanswered.
    """
    from temporalio.client import RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from backoffice.temporal_client import OrderActionRefused, send_order_update

    fields = {"event": "order_action", "action": update, "actor": actor, "via": "cli"}
    with order_context(order_id=order_id):
        try:
            async with asyncio.timeout(wait_seconds):
                result = await send_order_update(client, order_id, update, arg, result_type)
        except OrderActionRefused as exc:
            audit.info(
                "%s refused: %s", update, exc.code, extra=fields | {"outcome": "refused", "code": exc.code}
            )
            raise
        # The SDK answers a cancelled update poll with its own error, not CancelledError: the same timeout.
        except (TimeoutError, RPCTimeoutOrCancelledError) as exc:
            audit.warning(
                "%s unanswered", update, extra=fields | {"outcome": "timeout", "code": "action_pending"}
            )
            raise _Unanswered(
                "action_pending",
                f"no answer within {wait_seconds:.0f} s; it may still take effect: "
                f"see `backoffice orders show {order_id}`",
            ) from exc
        except WorkflowUpdateFailedError as exc:
            audit.warning("%s failed", update, extra=fields | {"outcome": "failed"})
            raise _Unanswered("action_failed", str(exc.cause or exc)) from exc
        except RPCError as exc:
            audit.warning("%s: Temporal unreachable", update, extra=fields | {"outcome": "failed"})
            raise _Unanswered("workflow_unavailable", f"Temporal cannot be reached: {exc}") from exc
        audit.info("%s accepted", update, extra=fields | {"outcome": "accepted"})
        return result


def _order_message(
    settings: Settings,
    args: argparse.Namespace,
    update: str,
    arg: Any,
    result_type: type[T],
    describe: Callable[[T], str],
) -> int:
    """One message to one order: prints the order's answer (exit 0) or why there is none (exit 1)."""
    from backoffice.temporal_client import OrderActionRefused, connect

    async def send() -> int:
        client = await connect(_temporal_settings(settings))
        try:
            result = await _send(client, args.order_id, update, arg, result_type, args.actor, args.timeout)
        except (OrderActionRefused, _Unanswered) as exc:
            if args.json:
                _print_json(
                    {
                        "order_id": args.order_id,
                        "outcome": "refused" if isinstance(exc, OrderActionRefused) else "failed",
                        "code": exc.code,
                        "message": exc.message,
                    }
                )
            else:
                print(f"order {args.order_id}: {update} refused ({exc.code}): {exc.message}", file=sys.stderr)
            return 1
        if args.json:
            _print_json(
                {
                    "order_id": args.order_id,
                    "outcome": "accepted",
                    "answer": dataclasses.asdict(_dataclass(result)),
                }
            )
        else:
            print(f"order {args.order_id}: {describe(result)}")
        return 0

    return asyncio.run(send())


def _dataclass(value: Any) -> Any:
    """Message answers are dataclasses (workflows/models.py)."""
    assert dataclasses.is_dataclass(value)
    return value


def _state_line(state: Any) -> str:
    line = f"{state.status} ({state.phase}), {state.delivered}/{state.quantity} delivered"
    return line + (f"; {state.note}" if state.note else "")


def cmd_orders_pause(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(settings, args, "pause", action, OrderState, lambda s: f"paused: {_state_line(s)}")


def cmd_orders_retry(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(settings, args, "retry", action, OrderState, lambda s: f"sent on: {_state_line(s)}")


def cmd_orders_resume(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(
        settings, args, "resume", action, OrderState, lambda s: f"resumed: {_state_line(s)}"
    )


def cmd_orders_link_fault(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderAction, OrderState

    action = OrderAction(args.actor, args.reason)
    return _order_message(
        settings,
        args,
        "report_link_fault",
        action,
        OrderState,
        lambda s: f"link fault noted: {_state_line(s)}",
    )


def cmd_orders_refund(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import RefundReceipt, SupportRefund

    amount = None
    if args.amount is not None:
        try:
            amount = policy.parse_money(args.amount)
        except ValueError as exc:
            print(f"error: --amount: {exc}", file=sys.stderr)
            return 2
    refund = SupportRefund(
        args.actor, args.reason, args.idempotency_key, amount_micros=amount, units=args.units
    )

    def describe(receipt: RefundReceipt) -> str:
        total = policy.format_money(receipt.total_refunded_micros)
        if receipt.refunded_micros == 0:
            return f"this idempotency key was used already, nothing moved; {total} in all ({receipt.status})"
        return f"refunded {policy.format_money(receipt.refunded_micros)}; {total} in all ({receipt.status})"

    return _order_message(settings, args, "refund", refund, RefundReceipt, describe)


def cmd_orders_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from workflows.models import OrderState, RunReconciliation

    answer = RunReconciliation(args.run, args.provider_order, args.actor, args.reason)
    return _order_message(settings, args, "reconcile_run", answer, OrderState, lambda s: s.note)


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

        return await _with_session(settings, work) == 0, found

    async def send() -> int:
        exists, order_ids = await held()
        if not exists:
            print(f"provider {args.provider_id} does not exist", file=sys.stderr)
            return 1
        client = await connect(_temporal_settings(settings))
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
            _print_json({"provider_id": args.provider_id, "action": update, "orders": results} | summary)
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
    imp = catalog.add_parser(
        "import", help="create or update services from a provider's service list, at its rate plus a markup"
    )
    imp.add_argument("provider", type=_text, help="the provider's name in the catalog")
    imp.add_argument("--markup", default="0", metavar="PCT", help="percent added to the provider's rate")
    imp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the service list")
    imp.set_defaults(func=cmd_catalog_import)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="what", required=True)
    create = keys.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument(
        "--role", required=True, choices=["storefront", "support", "ops", "admin", "customer"]
    )
    create.add_argument("--customer-id", "--customer", dest="customer_id", type=int)
    create.add_argument(
        "--name", "--label", dest="label", default="", type=_text, help="who or what the key is for"
    )
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key at once (by the id `keys list` shows)")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(func=cmd_keys_revoke)

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

    orders = sub.add_parser("orders", help="find, read and steer orders").add_subparsers(
        dest="what", required=True
    )
    listing = orders.add_parser("list", help="orders page by page, by ascending id, with filters")
    listing.add_argument("--customer", type=int, help="customer id")
    listing.add_argument("--status", choices=[str(s) for s in Status])
    listing.add_argument("--phase", choices=[str(p) for p in Phase])
    listing.add_argument("--service", type=int, help="service id")
    listing.add_argument(
        "--from", dest="created_from", type=_timestamp, help="created at or after (ISO, UTC)"
    )
    listing.add_argument("--to", dest="created_to", type=_timestamp, help="created before (ISO, UTC)")
    listing.add_argument("--after", type=int, default=0, help="the cursor: orders with ids above this")
    listing.add_argument("--limit", type=int, default=50, choices=range(1, 1001), metavar="1..1000")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_orders_list)
    show = orders.add_parser("show", help="an order with its timeline, runs and refills")
    show.add_argument("order_id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_orders_show)

    def message(
        parent: Any, name: str, help: str, func: Callable[..., int], why: str
    ) -> argparse.ArgumentParser:
        command = parent.add_parser(name, help=help)
        command.add_argument("order_id" if parent is orders else "provider_id", type=int)
        command.add_argument(
            "--actor", required=True, type=_text, help="who sends it (ops:<name>, support:<name>)"
        )
        command.add_argument("--reason", required=True, type=_text, help=why)
        command.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer")
        command.add_argument("--json", action="store_true")
        command.set_defaults(func=func)
        return command

    message(
        orders, "pause", "hold an order: no new run goes out until it is resumed", cmd_orders_pause, "why"
    )
    message(orders, "resume", "let a paused order deliver again", cmd_orders_resume, "why")
    message(
        orders,
        "retry",
        "send an order in phase needs_attention on, once the cause is fixed: the failed step runs again",
        cmd_orders_retry,
        "what was fixed",
    )
    message(
        orders,
        "link-fault",
        "report that the order's link is private, deleted or wrong: delivery stops",
        cmd_orders_link_fault,
        "what is wrong with the link",
    )
    refund = message(
        orders, "refund", "refund part of an order (capped at what is refundable)", cmd_orders_refund, "why"
    )
    how_much = refund.add_mutually_exclusive_group(required=True)
    how_much.add_argument("--amount", type=_money, help="money, e.g. 1.50")
    how_much.add_argument("--units", type=int, help="undelivered units, refunded at the order's price")
    refund.add_argument(
        "--idempotency-key",
        required=True,
        type=_text,
        help="the same key again refunds nothing twice (e.g. a ticket id)",
    )
    reconcile = message(
        orders,
        "reconcile",
        "tell an order waiting on an unknown submission what the provider really holds",
        cmd_orders_reconcile,
        "what was checked",
    )
    reconcile.add_argument("--run", type=int, required=True, help="the run number the order waits on")
    found = reconcile.add_mutually_exclusive_group(required=True)
    found.add_argument("--provider-order", type=_text, help="the provider's order id found for the run")
    found.add_argument(
        "--not-placed",
        dest="provider_order",
        action="store_const",
        const=None,
        help="the provider never took the run: send it to the next route",
    )

    provider = sub.add_parser("provider", help="act on every order a provider holds").add_subparsers(
        dest="what", required=True
    )
    for name, func, what in (
        ("pause", cmd_provider_pause, "pause every order the provider holds (an outage, a bad batch)"),
        ("resume", cmd_provider_resume, "resume the provider's paused orders"),
    ):
        command = message(provider, name, what, func, "why (each order's timeline shows it)")
        command.add_argument("--concurrency", type=int, default=8, help="orders messaged at once")
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the command; its exit status."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return int(args.func(settings, args))


def main(argv: list[str] | None = None) -> None:
    """The commands in process (tests): SystemExit with the command's status."""
    sys.exit(run(argv))


_exit_status = 0


def _exit_before_finalizing() -> None:
    """The last exit handler: flush, then end the process before the interpreter finalizes.

    The Temporal SDK's Rust runtime keeps threads that call into Python while the interpreter tears itself
    down; now and then that aborts the process (`Fatal Python error: PyGILState_Release`, exit 134) after
    the command has printed its result, and a script reads a failure for an action that succeeded. By now
    the command has closed its engines and clients, and the exit handlers registered after this one (the
    embedded PostgreSQL's cleanup, for one) have run: nothing is left for finalization to do but crash.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(_exit_status)


def console() -> None:
    """`backoffice` and `python -m backoffice.cli`: exits with the command's own status, always."""
    global _exit_status
    atexit.register(_exit_before_finalizing)  # before the command registers its own: so it runs last
    try:
        _exit_status = run()
    except SystemExit as exc:  # argparse (2), or a SystemExit("message") from the settings
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        _exit_status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _exit_status = 130
    except BaseException:  # noqa: BLE001 - printed, and the status says it failed
        traceback.print_exc()
        _exit_status = 1
    sys.exit(_exit_status)


if __name__ == "__main__":
    console()
