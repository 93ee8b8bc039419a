"""Webhook endpoints: the storefront (or an admin) registers where order events go, and reads what each
delivery got back. Deliveries themselves are the worker's (workflows/webhooks.py)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from api.auth import role
from api.deps import AppSettings, Session, Temporal
from api.errors import ApiError
from api.schemas import Cursor, Id, error_responses
from api.webhook_schemas import (
    DeliveryLog,
    DeliveryOut,
    DisableWebhook,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookSecret,
)
from backoffice.webhook_feed import wake
from store import webhooks
from store.keys import Caller
from store.models import WebhookEndpoint

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Manager = Annotated[Caller, Depends(role("storefront", "admin"))]
ERRORS = error_responses(401, 403, 404, 422)


async def _endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    found = await webhooks.endpoint(session, endpoint_id)
    if found is None:
        raise ApiError(404, "webhook_not_found", f"webhook endpoint {endpoint_id} does not exist")
    return found


async def _wake(temporal: Temporal, settings: AppSettings, endpoint_id: int) -> None:
    """Tell the endpoint's delivery workflow at once; if Temporal is away, the worker's feeder does later."""
    try:
        await wake(temporal, settings.temporal_task_queue, endpoint_id)
    except Exception:
        log.warning(
            "webhook endpoint %s: delivery not woken now; the feeder will", endpoint_id, exc_info=True
        )


@router.post("", status_code=201, response_model=WebhookCreated, responses=error_responses(401, 403, 422))
async def create_webhook(body: WebhookCreate, session: Session, caller: Manager) -> WebhookCreated:
    """Register a receiver for the given event types. The answer holds the signing secret (`whsec_...`),
    shown this once; every delivery is signed with it (Standard Webhooks)."""
    async with session.begin():
        made = await webhooks.create_endpoint(
            session, body.url, sorted(set(body.event_types)), body.description, caller.actor
        )
    return WebhookCreated(**WebhookOut.of(made).model_dump(), secret=made.secret)


@router.get("", response_model=WebhookList, responses=error_responses(401, 403))
async def list_webhooks(session: Session, _: Manager) -> WebhookList:
    """Every endpoint, enabled or not (no secrets)."""
    return WebhookList(endpoints=[WebhookOut.of(e) for e in await webhooks.endpoints(session)])


@router.get("/{endpoint_id}", response_model=WebhookOut, responses=ERRORS)
async def get_webhook(endpoint_id: Id, session: Session, _: Manager) -> WebhookOut:
    return WebhookOut.of(await _endpoint(session, endpoint_id))


@router.post("/{endpoint_id}/disable", response_model=WebhookOut, responses=ERRORS)
async def disable_webhook(
    endpoint_id: Id,
    session: Session,
    caller: Manager,
    body: Annotated[DisableWebhook | None, Body()] = None,
) -> WebhookOut:
    """Stop sending to the endpoint; events keep collecting for it and go out once it is enabled again."""
    reason = (body.reason if body else "") or "disabled"
    async with session.begin():
        if not await webhooks.set_enabled(session, endpoint_id, False, f"{reason} ({caller.actor})"):
            raise ApiError(404, "webhook_not_found", f"webhook endpoint {endpoint_id} does not exist")
    return WebhookOut.of(await _endpoint(session, endpoint_id))


@router.post("/{endpoint_id}/enable", response_model=WebhookOut, responses=ERRORS)
async def enable_webhook(
    endpoint_id: Id, session: Session, temporal: Temporal, settings: AppSettings, _: Manager
) -> WebhookOut:
    """Send to the endpoint again, starting with what is pending (a given-up delivery: redeliver it)."""
    async with session.begin():
        if not await webhooks.set_enabled(session, endpoint_id, True, None):
            raise ApiError(404, "webhook_not_found", f"webhook endpoint {endpoint_id} does not exist")
    await _wake(temporal, settings, endpoint_id)
    return WebhookOut.of(await _endpoint(session, endpoint_id))


@router.post("/{endpoint_id}/rotate-secret", response_model=WebhookSecret, responses=ERRORS)
async def rotate_webhook_secret(endpoint_id: Id, session: Session, _: Manager) -> WebhookSecret:
    """A new signing secret, shown this once; the old one signs nothing from now on."""
    async with session.begin():
        secret = await webhooks.rotate_secret(session, endpoint_id)
    if secret is None:
        raise ApiError(404, "webhook_not_found", f"webhook endpoint {endpoint_id} does not exist")
    return WebhookSecret(id=endpoint_id, secret=secret)


@router.delete("/{endpoint_id}", status_code=204, responses=ERRORS)
async def delete_webhook(endpoint_id: Id, session: Session, _: Manager) -> Response:
    """The endpoint and its delivery log; nothing more is sent to it."""
    async with session.begin():
        if not await webhooks.delete_endpoint(session, endpoint_id):
            raise ApiError(404, "webhook_not_found", f"webhook endpoint {endpoint_id} does not exist")
    return Response(status_code=204)


def _cursor(cursor: str) -> int:
    if not cursor.isdigit() or len(cursor) > 18:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API gave out")
    return int(cursor)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryLog, responses=ERRORS)
async def webhook_deliveries(
    endpoint_id: Id,
    session: Session,
    _: Manager,
    cursor: Annotated[Cursor | None, Query(description="`next_cursor` of the last page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeliveryLog:
    """The delivery log, newest first: each event's state, attempts, the receiver's answers, the next try."""
    await _endpoint(session, endpoint_id)
    before = _cursor(cursor) if cursor else None
    rows, more = await webhooks.delivery_log(session, endpoint_id, before=before, limit=limit)
    return DeliveryLog(
        deliveries=[DeliveryOut.logged(r) for r in rows],
        next_cursor=str(rows[-1].delivery.id) if more and rows else None,
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    responses=ERRORS,
)
async def redeliver_webhook(
    endpoint_id: Id,
    delivery_id: Id,
    session: Session,
    temporal: Temporal,
    settings: AppSettings,
    _: Manager,
) -> DeliveryOut:
    """Send the event again, with the same `webhook-id`. It takes its place among the endpoint's pending
    deliveries by event order: to keep an order's events in order after a give-up, redeliver the failed
    one before enabling the endpoint."""
    async with session.begin():
        delivery = await webhooks.redeliver(session, endpoint_id, delivery_id)
        if delivery is None:
            raise ApiError(404, "delivery_not_found", f"delivery {delivery_id} is not this endpoint's")
    await _wake(temporal, settings, endpoint_id)
    rows, _more = await webhooks.delivery_log(session, endpoint_id, before=delivery_id + 1, limit=1)
    return DeliveryOut.logged(rows[0])
