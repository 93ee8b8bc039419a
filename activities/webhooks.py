"""Webhook delivery's side effects: read what is due, send one signed request, log what came back.

A request is signed by the Standard Webhooks scheme (`standardwebhooks`): `webhook-id` is the event's id on
every try (receivers deduplicate by it), `webhook-timestamp` the moment of this try (receivers refuse old
ones), `webhook-signature` an HMAC of both and the body under the endpoint's current secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from store import webhooks
from store.db import transaction
from store.models import WebhookEvent
from workflows.webhooks import DueDeliveries, GiveUp, SendDelivery, retry_delay

OrderSnapshot = Callable[[AsyncSession, int], Awaitable[dict[str, Any]]]

# A receiver gets this long to answer; it should answer at once and do its work afterwards.
ANSWER_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
USER_AGENT = "smm-backoffice-webhooks/1"


def payload(event: WebhookEvent, order: dict[str, Any]) -> str:
    """The body: the Standard Webhooks shape (`type`, `timestamp`, `data`), the same bytes on every try."""
    data = {"event_id": event.id, "order_id": event.order_id, **event.data, "order": order}
    body = {"type": event.type, "timestamp": event.occurred_at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def signed_headers(secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
    }


class WebhookActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, snapshot: OrderSnapshot
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._snapshot = snapshot  # the REST view of an order (api/order_view.py), handed in by the worker

    def all(self) -> list[Callable[..., Any]]:
        return [self.due_webhook_deliveries, self.send_webhook, self.give_up_webhook]

    @activity.defn(name="due_webhook_deliveries")
    async def due_webhook_deliveries(self, due: DueDeliveries) -> list[int]:
        async with self._sessions() as session:
            return await webhooks.due_deliveries(session, due.endpoint_id, due.limit)

    @activity.defn(name="send_webhook")
    async def send_webhook(self, send: SendDelivery) -> None:
        """One try; raises (and Temporal retries) unless the receiver answered 2xx. A delivery no longer
        wanted (endpoint disabled or deleted, delivery redone) is skipped."""
        async with transaction(self._sessions) as session:
            out = await webhooks.outgoing(session, send.delivery_id)
            if out is None:
                return
            order = out.event.order_snapshot
            if order is None:
                order = await webhooks.freeze_snapshot(
                    session, out.event.id, await self._snapshot(session, out.event.order_id)
                )
        body = payload(out.event, order)
        now = datetime.now(UTC)
        started = time.monotonic()
        attempt = activity.info().attempt
        try:
            response = await self._http.post(
                out.url,
                content=body.encode(),
                headers=signed_headers(out.secret, out.event.id, body, now),
                timeout=ANSWER_TIMEOUT,
                follow_redirects=False,
            )
            answer = webhooks.Answer(
                response.status_code, response.text, _ms(started), now + retry_delay(attempt)
            )
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            answer = webhooks.Answer(None, problem, _ms(started), now + retry_delay(attempt))
        async with transaction(self._sessions) as session:
            await webhooks.log_attempt(session, send.delivery_id, answer)
        if not answer.taken:
            said = f"answered {answer.status_code}" if answer.status_code else answer.answer
            raise ApplicationError(f"{out.url} {said}", type="WebhookRefused")

    @activity.defn(name="give_up_webhook")
    async def give_up_webhook(self, give_up: GiveUp) -> None:
        async with transaction(self._sessions) as session:
            await webhooks.give_up(session, give_up.endpoint_id, give_up.delivery_id, give_up.failure)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
