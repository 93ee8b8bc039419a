"""What REST and API v2 share about subscriptions: placing one and starting its workflow, messages to it,
and its API v2 answers (`add`, `status`, `cancel` of a subscription id)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.actions import api_error
from backoffice.messaging import NotAccepted, Refused
from backoffice.settings import Settings
from backoffice.subscriptions import send_subscription_update, start_subscription_workflow
from providers import apiv2
from providers.apiv2 import ProtocolError, integer, scalar
from store import subscriptions as store_subscriptions
from store.keys import Caller
from store.models import Subscription
from store.orders import OrderRejected
from workflows.subscription_models import SubscriptionAction, SubscriptionState

log = logging.getLogger(__name__)

# Refusal codes of subscription intake as API v2 words them (the policy already gives the standard texts).
V2_TEXTS = {
    "unknown_service": apiv2.INCORRECT_SERVICE,
    "idempotency_conflict": apiv2.INCORRECT_REQUEST,
    "customer_not_found": apiv2.INVALID_KEY,
}


async def place_and_start(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    caller: Caller,
    request: store_subscriptions.SubscriptionRequest,
    idempotency_key: str,
) -> tuple[Subscription, bool]:
    """Write the subscription (its own transaction), then start its workflow; a lost start is the
    sweeper's (worker.py). Refusals raise OrderRejected."""
    async with session.begin():
        row, created = await store_subscriptions.place_subscription(
            session, caller, request, idempotency_key, datetime.now(UTC).date()
        )
    if row.state_version == 0:
        try:
            frozen = store_subscriptions.subscription_input(row)
            await start_subscription_workflow(temporal, settings.temporal_task_queue, frozen)
        except Exception as exc:  # the subscription is saved: the sweeper starts it
            log.error("subscription %s saved but its workflow did not start: %s", row.id, exc)
    return row, created


async def send(
    temporal: Client,
    settings: Settings,
    row: Subscription,
    update: Literal["cancel", "pause", "resume"],
    action: SubscriptionAction,
) -> SubscriptionState:
    """The message, its outcomes other than accepted as ApiError (409 with the code, 504, 503)."""
    try:
        return await send_subscription_update(temporal, settings, row, update, action)
    except NotAccepted as exc:
        raise api_error(exc) from exc


def status_answer(row: Subscription, orders: list[int]) -> dict[str, Any]:
    """API v2 `status` of a subscription, as panels answer it; `posts` counts the posts served, each a child
    order (counted from the children, which are written with the order, ahead of the status projection)."""
    return {"status": row.status, "expiry": row.expiry or "", "posts": str(len(orders)), "orders": orders}


# ----- API v2 hooks (api/v2.py)


async def v2_add(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    caller: Caller,
    params: dict[str, Any],
    service: int,
) -> dict[str, Any]:
    """`add` of a Subscriptions service: `username`, `min`, `max`; optional `posts`, `old_posts`,
    `delay`, `expiry` (d/m/Y)."""
    assert caller.customer_id is not None
    given = scalar(params.get("idempotency_key"))  # the same extension as an order's `add`
    if given is not None and not (0 < len(given) <= 150 and given.isprintable()):
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    key = f"apiv2:{given or uuid.uuid4()}"
    low, high = integer(params.get("min")), integer(params.get("max"))
    posts_text = scalar(params.get("posts"))
    posts = integer(posts_text) if posts_text not in (None, "", "0") else None
    old_posts = integer(scalar(params.get("old_posts")) or "0", low=0)
    delay = integer(scalar(params.get("delay")) or "0", low=0)
    expiry = scalar(params.get("expiry")) or None
    username = scalar(params.get("username")) or ""
    if low is None or high is None or old_posts is None or delay is None:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    if (posts_text not in (None, "", "0") and posts is None) or len(username) > 100 or len(expiry or "") > 10:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    request = store_subscriptions.SubscriptionRequest(
        caller.customer_id, service, username, low, high, posts, old_posts, delay, expiry
    )
    async with sessions() as session:
        try:
            row, _ = await place_and_start(session, temporal, settings, caller, request, key)
        except OrderRejected as exc:
            raise ProtocolError(V2_TEXTS.get(exc.code, exc.message)) from exc
    return {"order": row.id}


async def v2_statuses(
    session: AsyncSession, customer_id: int, numbers: list[int]
) -> dict[int, dict[str, Any]]:
    """The status answers of the caller's subscriptions among `numbers`."""
    found = await store_subscriptions.subscriptions_of_customer(session, customer_id, numbers)
    children = await store_subscriptions.child_orders(session, list(found))
    return {i: status_answer(row, children[i]) for i, row in found.items()}


async def v2_cancels(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    caller: Caller,
    results: list[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """`cancel` results with each `Incorrect order ID` that names one of the caller's subscriptions
    replaced by the subscription's answer (1, or `The order cannot be canceled`)."""
    assert caller.customer_id is not None
    unknown = [n for t, r in results if r == apiv2.error(apiv2.INCORRECT_ORDER) and (n := integer(t))]
    if not unknown:
        return results
    found = await store_subscriptions.subscriptions_of_customer(session, caller.customer_id, unknown)
    out: list[tuple[str, Any]] = []
    for text, result in results:
        row = found.get(integer(text) or 0)
        if row is None:
            out.append((text, result))
            continue
        action = SubscriptionAction(caller.actor, "API v2 cancel")
        try:
            await send_subscription_update(temporal, settings, row, "cancel", action)
            out.append((text, 1))
        except Refused:
            out.append((text, apiv2.error(apiv2.CANNOT_CANCEL)))
        except NotAccepted as exc:  # no answer in time, or Temporal unreachable: say so, not "cannot"
            out.append((text, apiv2.error(exc.message)))
    return out
