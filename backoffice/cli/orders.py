"""`backoffice orders list` and `show`: orders as the read model has them, with their timeline, runs and
refills. What ops send to orders is in messages.py."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from backoffice.cli.common import print_json, timestamp, when, with_session
from backoffice.settings import Settings
from workflows import policy
from workflows.models import Phase, Status

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from backoffice.cli.common import Subcommands
    from store.models import Order


def _order_fields(order: Order, cost_micros: int | None = None) -> dict[str, Any]:
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

    async def work(session: AsyncSession) -> int:
        rows, more = await list_orders(session, where, after=args.after, limit=args.limit)
        next_after = rows[-1].id if more else None
        if args.json:
            costs = await costs_of(session, [o.id for o in rows])
            orders = [_order_fields(o, costs.get(o.id)) for o in rows]
            print_json({"orders": orders, "next_after": next_after})
            return 0
        print(
            f"{'id':>8} {'customer':>8} {'service':>7}  {'status':<11} {'phase':<13} "
            f"{'delivered':>19}  {'charge':>12} {'refunded':>12}  {'created (UTC)':<19}  note"
        )
        for o in rows:
            print(
                f"{o.id:>8} {o.customer_id:>8} {o.service_id:>7}  {o.status:<11} {o.phase:<13} "
                f"{f'{o.delivered}/{o.quantity}':>19}  {policy.format_money(o.charge_micros):>12} "
                f"{policy.format_money(o.refunded_micros):>12}  {when(o.created_at):<19}  {o.note[:60]}"
            )
        print(f"{len(rows)} order(s)" + (f"; more with --after {next_after}" if more else ""))
        return 0

    return asyncio.run(with_session(settings, work))


def cmd_orders_show(settings: Settings, args: argparse.Namespace) -> int:
    from store import orders as store_orders

    async def work(session: AsyncSession) -> int:
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
            print_json(shown)
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
            f"  times (UTC) created {when(order.created_at)}  updated {when(order.updated_at)}  "
            f"finished {when(order.finished_at)}  refill window until {when(order.refill_deadline)}"
        )
        if order.note:
            print(f"  note        {order.note}")
        print(f"timeline ({len(events)}):")
        for e in events:
            detail = f"  [{e.detail}]" if e.detail else ""
            print(f"  {e.seq:>4}  {when(e.at)}  {e.kind:<18} {e.actor:<22} {e.message}{detail}")
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
                    outcome += f", given up {when(r.abandoned_at)}"
                print(
                    f"  run {r.run_no:<3} provider {r.provider_id} ({r.provider_service_id})  "
                    f"{r.quantity} units  {outcome:<40} provider order {r.provider_order_id or '-'}"
                    + (f"  {r.error}" if r.error else "")
                )
        print(f"refills ({len(refills)}):")
        for f in refills:
            print(
                f"  #{f.refill_no} (refill id {f.id})  {f.status:<11} requested by {f.requested_by} "
                f"at {when(f.created_at)}  finished {when(f.finished_at)}"
            )
        return 0

    return asyncio.run(with_session(settings, work))


def add_commands(orders: Subcommands) -> None:
    listing = orders.add_parser("list", help="orders page by page, by ascending id, with filters")
    listing.add_argument("--customer", type=int, help="customer id")
    listing.add_argument("--status", choices=[str(s) for s in Status])
    listing.add_argument("--phase", choices=[str(p) for p in Phase])
    listing.add_argument("--service", type=int, help="service id")
    listing.add_argument("--from", dest="created_from", type=timestamp, help="created at or after (ISO, UTC)")
    listing.add_argument("--to", dest="created_to", type=timestamp, help="created before (ISO, UTC)")
    listing.add_argument("--after", type=int, default=0, help="the cursor: orders with ids above this")
    listing.add_argument("--limit", type=int, default=50, choices=range(1, 1001), metavar="1..1000")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_orders_list)
    show = orders.add_parser("show", help="an order with its timeline, runs and refills")
    show.add_argument("order_id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_orders_show)
