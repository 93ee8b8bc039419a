"""The order as `GET /v1/orders/{id}` shows it: the route answers with it, and every webhook event carries
it (the worker hands `webhook_snapshot` to the delivery activities)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas import DripFeedRunOut, OrderDetail, OrderOut, ProviderOrderOut, RefillOut, TimelineEvent
from store import orders as store_orders
from store import runs as store_runs
from store import slots
from store.models import Order

TIMELINE_LIMIT = 1000


async def order_detail(session: AsyncSession, order: Order, *, for_customer: bool) -> OrderDetail:
    events = await store_orders.timeline(session, order.id, TIMELINE_LIMIT + 1)
    refills = await store_orders.refills(session, order.id)
    submissions = [] if for_customer else await store_orders.submissions_of(session, order.id)
    costs = [s.cost_micros for s in submissions if s.cost_micros is not None]
    shown = OrderOut.of(order, for_customer=for_customer, cost_micros=sum(costs) if costs else None)
    position = await slots.queue_position(session, order.id)
    if position is not None:  # the live place in line, never a number that has aged
        shown.note = f"waiting for a provider slot: number {position} in line"
    return OrderDetail(
        **shown.model_dump(),
        timeline=[TimelineEvent.of(e, for_customer=for_customer) for e in events[:TIMELINE_LIMIT]],
        timeline_truncated=len(events) > TIMELINE_LIMIT,
        refills=[RefillOut.of(r, for_customer=for_customer) for r in refills],
        queue_position=position,
        provider_orders=None if for_customer else [ProviderOrderOut.of(s) for s in submissions],
        drip_feed=[DripFeedRunOut.of(r) for r in await store_runs.drip_feed_runs(session, order.id)]
        if order.runs
        else [],
    )


async def webhook_snapshot(session: AsyncSession, order_id: int) -> dict[str, Any]:
    """The order as a storefront key reads it, as JSON: what a webhook event's `data.order` is."""
    order = await store_orders.get_order(session, order_id)
    if order is None:  # events reference orders by foreign key: never seen, but never a crash either
        return {"id": order_id}
    return (await order_detail(session, order, for_customer=False)).model_dump(mode="json")
