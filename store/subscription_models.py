"""The subscription tables: each subscription's read model and its child orders (store/subscriptions.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.base import created as _created


class Subscription(Base):
    """The read model of one subscription (store/subscriptions.py). Written at intake, then only by its
    workflow. Its id comes from the orders' id sequence: API v2 `status` tells it from an order by id."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="subscriptions_idempotency"),
        CheckConstraint("min_quantity > 0 AND max_quantity >= min_quantity", name="subscriptions_quantity"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), nullable=False, index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), nullable=False)
    username: Mapped[str] = mapped_column(String(100), nullable=False)
    min_quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    max_quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    posts: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    old_posts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delay_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    expiry: Mapped[str | None] = mapped_column(String(10))  # d/m/Y as the customer sent it
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    posts_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    provider_subscription_id: Mapped[str | None] = mapped_column(String(100))
    workflow_input: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    state_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_by_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), nullable=False)
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubscriptionOrder(Base):
    """A subscription's child order: one per post served, written with the order in one transaction."""

    __tablename__ = "subscription_orders"

    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), primary_key=True)
    post_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, unique=True)
