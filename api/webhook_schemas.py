"""Request and response shapes of the webhook endpoints (`/v1/webhooks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from api.schemas import OptionalText, Strict
from store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from store.webhooks import LoggedDelivery

EventType = Literal["order.created", "order.status_changed", "order.refunded", "refill.finished"]


def _receiver_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host is required")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not accepted; the signature authenticates the sender")
    return value


ReceiverUrl = Annotated[
    str,
    StringConstraints(min_length=8, max_length=2000, pattern=r"^[\x21-\x7e]+$"),
    AfterValidator(_receiver_url),
]


class WebhookCreate(Strict):
    url: ReceiverUrl = Field(examples=["https://shop.example/hooks/smm"])
    event_types: list[EventType] = Field(min_length=1, max_length=4)
    description: OptionalText = ""


class WebhookOut(BaseModel):
    id: int
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(description="why the endpoint is disabled: by hand, or given up on")
    created_by: str
    created_at: datetime
    secret_rotated_at: datetime | None

    @classmethod
    def of(cls, e: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=e.id,
            url=e.url,
            event_types=e.event_types,
            description=e.description,
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            created_by=e.created_by,
            created_at=e.created_at,
            secret_rotated_at=e.secret_rotated_at,
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="`whsec_...`: shown only now; verify signatures with it")


class WebhookSecret(BaseModel):
    id: int
    secret: str = Field(description="the new `whsec_...` secret, shown only now; the next try signs with it")


class WebhookList(BaseModel):
    endpoints: list[WebhookOut]


class DisableWebhook(Strict):
    reason: OptionalText = ""


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null: no answer")
    answer: str = Field(description="the start of the receiver's answer, or what went wrong")
    duration_ms: int
    next_try_at: datetime | None = Field(description="when Temporal tries again; null once taken")

    @classmethod
    def of(cls, a: WebhookAttempt) -> AttemptOut:
        return cls(
            at=a.at,
            status_code=a.status_code,
            answer=a.answer,
            duration_ms=a.duration_ms,
            next_try_at=a.next_try_at,
        )


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="`webhook-id` on every try: receivers deduplicate by it")
    event_type: str
    order_id: int
    occurred_at: datetime
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_answer: str | None
    next_try_at: datetime | None
    delivered_at: datetime | None
    recent_attempts: list[AttemptOut] = Field(description="the latest tries first (at most 20)")

    @classmethod
    def of(cls, d: WebhookDelivery, e: WebhookEvent, attempts: list[WebhookAttempt]) -> DeliveryOut:
        return cls(
            id=d.id,
            event_id=e.id,
            event_type=e.type,
            order_id=e.order_id,
            occurred_at=e.occurred_at,
            state=d.state,  # type: ignore[arg-type]  # the table's check holds it to the three
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            last_answer=d.last_answer,
            next_try_at=d.next_try_at,
            delivered_at=d.delivered_at,
            recent_attempts=[AttemptOut.of(a) for a in attempts],
        )

    @classmethod
    def logged(cls, row: LoggedDelivery) -> DeliveryOut:
        return cls.of(row.delivery, row.event, row.attempts)


class DeliveryLog(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for older deliveries")
