"""Ops' actions: pause and resume one order, or every order a provider holds."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.actions import send_order_action, visible_order
from api.auth import role
from api.deps import AppSettings, Session, Temporal
from api.errors import ApiError
from api.schemas import ActionRefusal, Id, OrderStateOut, ProviderActionOut, RequiredReason, error_responses
from store import orders as store_orders
from store.keys import Caller
from store.models import Order, Provider

router = APIRouter(tags=["ops"])
Ops = Annotated[Caller, Depends(role("ops", "admin"))]
ACTION_ERRORS = error_responses(401, 403, 404, 409, 422, 503, 504)

# Messages a provider pause sends at once; the rest wait their turn.
PROVIDER_FANOUT = 16


async def _order_action(
    action: Literal["pause", "resume", "retry"],
    order_id: int,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Caller,
) -> OrderStateOut:
    order = await visible_order(session, caller, order_id)
    state = await send_order_action(temporal, settings, order, caller, action, body.reason)
    return OrderStateOut.of(state)


@router.post("/v1/orders/{order_id}/pause", response_model=OrderStateOut, responses=ACTION_ERRORS)
async def pause_order(
    order_id: Id,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Ops,
) -> OrderStateOut:
    """Hold the order: no new run goes out until it is resumed (`cannot_pause` once delivery has ended)."""
    return await _order_action("pause", order_id, body, session, temporal, settings, caller)


@router.post("/v1/orders/{order_id}/resume", response_model=OrderStateOut, responses=ACTION_ERRORS)
async def resume_order(
    order_id: Id,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Ops,
) -> OrderStateOut:
    """Let a paused order deliver again (`not_paused` if it is not paused)."""
    return await _order_action("resume", order_id, body, session, temporal, settings, caller)


@router.post("/v1/orders/{order_id}/retry", response_model=OrderStateOut, responses=ACTION_ERRORS)
async def retry_order(
    order_id: Id,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Ops,
) -> OrderStateOut:
    """Send an order in phase `needs_attention` on once its cause is fixed: the step that failed for good
    runs again (`not_needing_attention` otherwise)."""
    return await _order_action("retry", order_id, body, session, temporal, settings, caller)


async def _provider_action(
    action: Literal["pause", "resume"],
    provider_id: int,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Caller,
) -> ProviderActionOut:
    if await session.get(Provider, provider_id) is None:
        raise ApiError(404, "provider_not_found", f"provider {provider_id} does not exist")
    held = await store_orders.in_flight_at(session, provider_id)
    reason = f"provider {provider_id}: {body.reason}"
    gate = asyncio.Semaphore(PROVIDER_FANOUT)
    refusals: list[ActionRefusal] = []

    async def one(order: Order) -> None:
        async with gate:
            try:
                await send_order_action(temporal, settings, order, caller, action, reason)
            except ApiError as exc:
                refusals.append(ActionRefusal(order_id=order.id, code=exc.code, message=exc.message))

    await asyncio.gather(*(one(order) for order in held))
    refusals.sort(key=lambda r: r.order_id)
    return ProviderActionOut(
        provider_id=provider_id,
        action=action,
        orders=len(held),
        accepted=len(held) - len(refusals),
        refused=len(refusals),
        refusals=refusals,
    )


PROVIDER_ERRORS = error_responses(401, 403, 404, 422)


@router.post("/v1/providers/{provider_id}/pause", response_model=ProviderActionOut, responses=PROVIDER_ERRORS)
async def pause_provider(
    provider_id: Id,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Ops,
) -> ProviderActionOut:
    """Pause every order the provider holds now (queued for it, delivering, interrupted or paused there),
    each through its own workflow; answers how many accepted and why the others refused. Orders placed later
    are not paused: take the provider out of the catalog to stop routing new orders to it."""
    return await _provider_action("pause", provider_id, body, session, temporal, settings, caller)


@router.post(
    "/v1/providers/{provider_id}/resume", response_model=ProviderActionOut, responses=PROVIDER_ERRORS
)
async def resume_provider(
    provider_id: Id,
    body: RequiredReason,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Ops,
) -> ProviderActionOut:
    """Resume every paused order the provider holds; orders that are not paused refuse with `not_paused`."""
    return await _provider_action("resume", provider_id, body, session, temporal, settings, caller)
