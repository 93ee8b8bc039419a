"""Subscriptions over REST: placed by the storefront (or a customer key) on a service of type
`Subscriptions`, read by every role, and canceled, paused or resumed through their workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, Response
from pydantic import BaseModel, Field

from api import subscriptions as api_subscriptions
from api.auth import current_caller, role
from api.deps import AppSettings, Session, Temporal
from api.errors import ApiError, mark_replayed
from api.schemas import (
    Id,
    IdempotencyKey,
    OptionalReason,
    Strict,
    error_responses,
    replayable_responses,
)
from store import subscriptions as store_subscriptions
from store.keys import Caller
from store.models import Subscription
from workflows.policy import DELAYS, SubscriptionStatus
from workflows.subscription_models import SubscriptionAction

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


class SubscriptionCreate(Strict):
    customer_id: Id | None = Field(default=None, description="required unless the key is a customer's")
    service_id: Id
    username: str = Field(min_length=1, max_length=100, description="the account; a leading @ is dropped")
    min: int = Field(ge=1, le=2**31 - 1, description="the least units per post")
    max: int = Field(ge=1, le=2**31 - 1, description="the most units per post")
    posts: int | None = Field(default=None, ge=1, le=10_000, description="posts to serve; unset: unlimited")
    old_posts: int = Field(default=0, ge=0, le=100, description="latest existing posts served too")
    delay: int = Field(default=0, description=f"minutes after a post before its order: one of {DELAYS}")
    expiry: str | None = Field(default=None, max_length=10, description="the last day, d/m/Y")


class SubscriptionOut(BaseModel):
    id: int
    customer_id: int
    service_id: int
    username: str
    min: int
    max: int
    posts: int | None
    old_posts: int
    delay: int
    expiry: str | None
    status: SubscriptionStatus
    posts_used: int = Field(description="posts served: one child order each")
    orders: list[int] = Field(description="the child orders' ids, oldest first; each is an order")
    reason: str = Field(description="why it ended (`Not enough funds on balance`, ...) or what it skipped")
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Subscription, orders: list[int]) -> SubscriptionOut:
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            service_id=row.service_id,
            username=row.username,
            min=row.min_quantity,
            max=row.max_quantity,
            posts=row.posts,
            old_posts=row.old_posts,
            delay=row.delay_minutes,
            expiry=row.expiry,
            status=SubscriptionStatus(row.status),
            posts_used=max(row.posts_used, len(orders)),  # the children are written ahead of the projection
            orders=orders,
            reason=row.reason,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )


async def _visible(session: Session, caller: Caller, subscription_id: int) -> Subscription:
    row = await store_subscriptions.get_subscription(session, subscription_id)
    if row is None or (caller.role == "customer" and row.customer_id != caller.customer_id):
        raise ApiError(404, "subscription_not_found", f"subscription {subscription_id} does not exist")
    return row


async def _out(session: Session, row: Subscription) -> SubscriptionOut:
    children = await store_subscriptions.child_orders(session, [row.id])
    return SubscriptionOut.of(row, children[row.id])


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionOut,
    responses=replayable_responses(SubscriptionOut, 401, 403, 409, 422),
)
async def create_subscription(
    body: SubscriptionCreate,
    response: Response,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    idempotency_key: Annotated[IdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Annotated[Caller, Depends(role("storefront", "admin", "customer"))],
) -> SubscriptionOut:
    """Place a subscription: nothing is charged now; each new post of the account becomes a child order,
    charged when it is placed. Refusals: `bad_link` (username), `quantity_below_min`, `quantity_above_max`,
    `bad_subscription` (posts, old_posts, delay, expiry), `unknown_service`, `service_unavailable`."""
    customer_id = body.customer_id
    if caller.role == "customer":
        if customer_id is not None and customer_id != caller.customer_id:
            raise ApiError(403, "forbidden", "a customer key places subscriptions only for its own customer")
        customer_id = caller.customer_id
    if customer_id is None:
        raise ApiError(422, "invalid_request", "customer_id is required")
    request = store_subscriptions.SubscriptionRequest(
        customer_id,
        body.service_id,
        body.username,
        body.min,
        body.max,
        body.posts,
        body.old_posts,
        body.delay,
        body.expiry,
    )
    row, created = await api_subscriptions.place_and_start(
        session, temporal, settings, caller, request, f"rest:{idempotency_key}"
    )
    if not created:
        mark_replayed(response)
    return await _out(session, row)


@router.get("/{subscription_id}", response_model=SubscriptionOut, responses=error_responses(401, 404, 422))
async def get_subscription(
    subscription_id: Id, session: Session, caller: Annotated[Caller, Depends(current_caller)]
) -> SubscriptionOut:
    """The subscription with its child orders (each readable at /v1/orders/{id})."""
    return await _out(session, await _visible(session, caller, subscription_id))


MESSAGE_ROLES = ("storefront", "support", "ops", "admin", "customer")
MESSAGE_ERRORS = error_responses(401, 403, 404, 409, 422, 503, 504)


async def _message(
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Caller,
    subscription_id: int,
    update: Literal["cancel", "pause", "resume"],
    reason: str,
) -> SubscriptionOut:
    """Send the message; the answer is the workflow's own state (the read model may lag behind it)."""
    row = await _visible(session, caller, subscription_id)
    state = await api_subscriptions.send(
        temporal, settings, row, update, SubscriptionAction(caller.actor, reason)
    )
    shown = await _out(session, row)
    return shown.model_copy(
        update={
            "status": state.status,
            "posts_used": state.posts_used,
            "orders": state.orders,
            "reason": state.reason,
        }
    )


@router.post("/{subscription_id}/cancel", response_model=SubscriptionOut, responses=MESSAGE_ERRORS)
async def cancel_subscription(
    subscription_id: Id,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Annotated[Caller, Depends(role(*MESSAGE_ROLES))],
    body: Annotated[OptionalReason | None, Body()] = None,
) -> SubscriptionOut:
    """No more child orders; those placed go on as orders of their own. `cannot_cancel` once it has ended."""
    reason = body.reason if body else ""
    return await _message(session, temporal, settings, caller, subscription_id, "cancel", reason)


@router.post("/{subscription_id}/pause", response_model=SubscriptionOut, responses=MESSAGE_ERRORS)
async def pause_subscription(
    subscription_id: Id,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Annotated[Caller, Depends(role(*MESSAGE_ROLES))],
    body: Annotated[OptionalReason | None, Body()] = None,
) -> SubscriptionOut:
    """Serve no posts until resumed (posts published meanwhile are skipped); expiry still counts.
    `cannot_pause` unless Active."""
    reason = body.reason if body else ""
    return await _message(session, temporal, settings, caller, subscription_id, "pause", reason)


@router.post("/{subscription_id}/resume", response_model=SubscriptionOut, responses=MESSAGE_ERRORS)
async def resume_subscription(
    subscription_id: Id,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    caller: Annotated[Caller, Depends(role(*MESSAGE_ROLES))],
    body: Annotated[OptionalReason | None, Body()] = None,
) -> SubscriptionOut:
    """Serve new posts again. `not_paused` unless Paused."""
    reason = body.reason if body else ""
    return await _message(session, temporal, settings, caller, subscription_id, "resume", reason)
