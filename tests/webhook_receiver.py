"""A storefront's webhook receiver for tests: a raw ASGI app served on 127.0.0.1 (tests/simserver.py binds
its socket once), which records every request and answers as the test says: up, down (503), or slowly."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook
from temporalio.testing import WorkflowEnvironment

from backoffice.webhook_feed import WebhookFeeder
from store import read_model
from store.db import transaction
from support import Api, Shop, place
from workflows.models import Phase, Projection, Status


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    body: str
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> Any:
        """The payload, if the signature holds under `secret` (WebhookVerificationError otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    answer: int = 200
    down: bool = False  # answer 503 to everything
    delay: float = 0.0  # seconds before answering
    requests: list[Request] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        arrived = time.monotonic()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.delay:
            await asyncio.sleep(self.delay)
        status = 503 if self.down else self.answer
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Request(headers, body.decode(), status, arrived))
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
        )
        await send(
            {"type": "http.response.body", "body": b"thanks" if status < 300 else b"down for maintenance"}
        )

    def taken(self) -> list[Request]:
        """The requests answered 2xx: what the storefront acted on."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def payloads(self, secret: str) -> list[Any]:
        return [r.verified(secret) for r in self.taken()]


def by_order(payloads: list[Any]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {}
    for p in payloads:
        found.setdefault(p["data"]["order_id"], []).append(p)
    return found


async def order_story(sessions: async_sessionmaker[AsyncSession], shop: Shop) -> int:
    """An order placed, delivering, short 40 units (refunded) and closed Partial, written as the projection
    writes it: four events (created, status changed, refunded, status changed)."""
    order = await place(sessions, shop, 100)
    start = Projection(
        order_id=order.order_id,
        version=1,
        status=Status.IN_PROGRESS,
        phase=Phase.DELIVERING,
        delivered=0,
        refunded_micros=0,
        refunded_units=0,
        provider_id=None,
        provider_status_raw=None,
        start_count=None,
        note="",
        refill_deadline=None,
        next_action_at=None,
    )
    settled = replace(
        start, version=2, status=Status.PARTIAL, phase=Phase.CLOSED, delivered=60, refunded_micros=40_000
    )
    for p in (start, settled):
        async with transaction(sessions) as session:
            await read_model.project(session, p)
    return order.order_id


@dataclass
class Skipping:
    env: WorkflowEnvironment
    sessions: async_sessionmaker[AsyncSession]
    receiver: Receiver
    url: str
    feeder: WebhookFeeder
    task_queue: str


@dataclass
class Live:
    api: Api
    receiver: Receiver
    url: str
    task_queue: str
