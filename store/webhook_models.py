"""The webhook tables: endpoints, the event outbox, deliveries and their attempts (store/webhooks.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.base import created as _created

WEBHOOK_DELIVERY_STATES = ("pending", "delivered", "failed")


class WebhookEndpoint(Base):
    """A storefront's receiver of order events (store/webhooks.py). The secret signs every delivery, so it is
    kept as given out (`whsec_...`); the API shows it once, at creation and at each rotation."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False)
    description: Mapped[str] = mapped_column(String(200), nullable=False, default="", server_default="")
    secret: Mapped[str] = mapped_column(String(100), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = _created()
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookEvent(Base):
    """The outbox: one event, written in the transaction of the read-model change that caused it, and only
    when an enabled endpoint wants its type. `order_snapshot` is frozen the first time the event is sent."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # evt_<uuid>: webhook-id on every try
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    order_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class WebhookDelivery(Base):
    """One event for one endpoint. Sent in `id` order per endpoint, so an order's events arrive in order."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="webhook_deliveries_event"),
        CheckConstraint(f"state IN {WEBHOOK_DELIVERY_STATES!r}", name="webhook_deliveries_state"),
        # What the delivery workflows and the worker's feeder look for.
        Index("webhook_deliveries_pending", "endpoint_id", "id", postgresql_where=text("state = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
    )
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), nullable=False)
    state: Mapped[str] = mapped_column(
        String(20), nullable=False, default="pending", server_default="pending"
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_answer: Mapped[str | None] = mapped_column(Text)
    next_try_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class WebhookAttempt(Base):
    """One HTTP request of a delivery: the delivery log (what was answered, when the next try is)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at: Mapped[datetime] = _created()
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no answer (refused, timed out)
    answer: Mapped[str] = mapped_column(Text, nullable=False)  # the body's start, or what went wrong
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    next_try_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
