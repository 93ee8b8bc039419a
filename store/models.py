"""Tables. Money columns are integer micro-units (`*_micros`); every schema change is an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from workflows.models import RefillStatus


class Base(DeclarativeBase):
    pass


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # The storefront's own id for this customer; lets it create customers idempotently.
    external_ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _created()


ROLES = ("storefront", "support", "ops", "admin", "customer")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="api_keys_role"),
        CheckConstraint("(role = 'customer') = (customer_id IS NOT NULL)", name="api_keys_customer_role"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Public part of the key, used to find the row; the secret part is only stored hashed.
    lookup: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    label: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Provider(Base):
    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    api_url: Mapped[str] = mapped_column(Text, nullable=False)
    api_key: Mapped[str] = mapped_column(Text, nullable=False)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    poll_interval_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    # Providers that deduplicate `add` by a client key may safely get the same run again after a lost answer.
    accepts_idempotency_key: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Requests per second the provider tolerates from us, enforced per worker process; NULL: no limit.
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float)


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("min_quantity > 0 AND max_quantity >= min_quantity", name="services_quantity_bounds"),
        CheckConstraint("rate_micros >= 0", name="services_rate"),
        CheckConstraint("link_fault_refund IN ('none', 'remaining')", name="services_link_fault_refund"),
        CheckConstraint("tolerance_bp BETWEEN 0 AND 10000", name="services_tolerance"),
    )

    # Public service id (the one resellers see in API v2), assigned by the catalog.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str] = mapped_column(String(100), nullable=False)
    type: Mapped[str] = mapped_column(String(40), nullable=False, default="Default")
    rate_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)  # price per 1000 units
    min_quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    max_quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    dripfeed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    cancel: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    refill_days: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    refill_cooldown_hours: Mapped[int] = mapped_column(Integer, nullable=False, default=24)
    refill_max: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tolerance_bp: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # basis points of quantity
    pace_per_hour: Mapped[int] = mapped_column(Integer, nullable=False)
    max_interruption_hours: Mapped[int] = mapped_column(Integer, nullable=False, default=24)
    link_fault_refund: Mapped[str] = mapped_column(String(20), nullable=False, default="none")
    link_pattern: Mapped[str] = mapped_column(Text, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Route(Base):
    """One way to deliver a service: a provider and its service id there. Lower position is tried first."""

    __tablename__ = "routes"

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), nullable=False)
    provider_service_id: Mapped[str] = mapped_column(String(100), nullable=False)


class Order(Base):
    """The read model of one order. Written by the API at intake, then only by the order's workflow."""

    __tablename__ = "orders"
    __table_args__ = (
        # Idempotency keys are the customer's: a storefront that rotates its API key between retries still
        # finds the first order.
        UniqueConstraint("customer_id", "idempotency_key", name="orders_idempotency"),
        # Orders whose workflow has not reported yet: the worker's sweeper looks here for unstarted ones.
        Index("orders_unstarted", "created_at", postgresql_where=text("state_version = 0")),
        CheckConstraint("quantity > 0", name="orders_quantity"),
        CheckConstraint(
            "charge_micros >= 0 AND refunded_micros BETWEEN 0 AND charge_micros", name="orders_money"
        ),
        CheckConstraint("refunded_units BETWEEN 0 AND quantity", name="orders_refunded_units"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), nullable=False, index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), nullable=False)
    link: Mapped[str] = mapped_column(Text, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    runs: Mapped[int | None] = mapped_column(Integer)
    interval_minutes: Mapped[int | None] = mapped_column(Integer)
    charge_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refunded_micros: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Units refunded as such (support refunds by units, shortfall refunds): API v2 reports them as `remains`.
    refunded_units: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    phase: Mapped[str] = mapped_column(String(20), nullable=False)
    delivered: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    start_count: Mapped[int | None] = mapped_column(Integer)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"))
    provider_status_raw: Mapped[str | None] = mapped_column(String(100))
    # What the workflow starts with, frozen at intake: a late start (replay, sweeper) uses the same catalog.
    workflow_input: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # Bumped by every workflow projection; an older write never overwrites a newer one.
    state_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_by_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), nullable=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the order waits for or does next, in the panel's words ("run 3 of 10 at 14:00").
    note: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    refill_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the workflow next means to act by itself (a status check, the next run, the end of a backoff): an
    # order long past it has made no progress (`backoffice check`). None while it waits for someone.
    next_action_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OrderEvent(Base):
    """The order's timeline: runs, interruptions, refunds, refills, messages and who sent them.

    Written by the order's workflow through the projection activity; `seq` makes a retried write harmless.
    """

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("order_id", "seq", name="order_events_seq"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)  # workflow time
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)  # what anyone may read, customers included
    # For staff only: the provider, its order id, its raw texts. Customers never see upstream.
    detail: Mapped[str | None] = mapped_column(Text)


REFILL_STATUSES = tuple(str(s) for s in RefillStatus)  # the SQL check spells them as the enum does


class Refill(Base):
    """A customer's refill request on a completed order; `id` is the refill id API v2 clients see."""

    __tablename__ = "refills"
    __table_args__ = (
        UniqueConstraint("order_id", "refill_no", name="refills_order_no"),
        CheckConstraint(f"status IN {REFILL_STATUSES!r}", name="refills_status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    refill_no: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    requested_by: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProviderSlot(Base):
    """An order's place at a provider: waiting (granted_at null, FIFO by `id`) or holding one of its
    `capacity` slots while it delivers there."""

    __tablename__ = "provider_slots"
    __table_args__ = (
        UniqueConstraint("order_id", "provider_id", name="provider_slots_order"),
        Index("provider_slots_waiting", "provider_id", "id", postgresql_where=text("granted_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), nullable=False)
    workflow_id: Mapped[str] = mapped_column(String(100), nullable=False)  # woken when a slot frees
    granted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


ACCOUNT_KINDS = ("customer", "escrow", "revenue", "external")


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(f"kind IN {ACCOUNT_KINDS!r}", name="ledger_accounts_kind"),
        # The money invariant lives in the database too: only the outside world can be overdrawn.
        CheckConstraint("kind = 'external' OR balance_micros >= 0", name="ledger_accounts_not_negative"),
    )

    name: Mapped[str] = mapped_column(String(80), primary_key=True)  # customer:<id>, escrow:<order>, ...
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    balance_micros: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = _created()


# revenue: delivery recognised; reversal: revenue back to escrow for a refund; adjustment: by an admin
TRANSFER_KINDS = ("deposit", "charge", "revenue", "refund", "reversal", "adjustment")


class LedgerTransfer(Base):
    """Append-only: rows are never updated or deleted."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount_micros > 0", name="ledger_transfers_positive"),
        CheckConstraint("debit_account <> credit_account", name="ledger_transfers_distinct"),
        CheckConstraint(f"kind IN {TRANSFER_KINDS!r}", name="ledger_transfers_kind"),
        # An account's transfers by id, from either side: statements page through them newest first.
        Index("ledger_transfers_debit_account_id", "debit_account", "id"),
        Index("ledger_transfers_credit_account_id", "credit_account", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    debit_account: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.name"), nullable=False)
    credit_account: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.name"), nullable=False)
    amount_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = _created()


SUBMISSION_STATES = ("sending", "accepted", "rejected", "link_fault", "needs_reconciliation")


class ProviderSubmission(Base):
    """One run sent to a provider, written before the request leaves: a lost answer is never re-sent."""

    __tablename__ = "provider_submissions"
    __table_args__ = (
        UniqueConstraint("order_id", "run_no", "provider_id", name="provider_submissions_run"),
        CheckConstraint(f"state IN {SUBMISSION_STATES!r}", name="provider_submissions_state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    run_no: Mapped[int] = mapped_column(Integer, nullable=False)
    # A run failed over to another route gets a row of its own there.
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), nullable=False)
    provider_service_id: Mapped[str] = mapped_column(String(100), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    client_key: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[str] = mapped_column(String(30), nullable=False)
    provider_order_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    # What the provider last reported for this provider order: units delivered (clamped to `quantity`), its
    # `charge` (what the panel pays for it), its status. Followed until final, also after the order gave the
    # provider order up (`abandoned_at`: failover, cancel, link fault, full refund).
    delivered: Mapped[int | None] = mapped_column(Integer)
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    provider_status: Mapped[str | None] = mapped_column(String(20))
    provider_status_raw: Mapped[str | None] = mapped_column(String(100))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    abandoned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class DripFeedRun(Base):
    """One run of a drip-feed order, as resellers track it: an id of its own from the orders' id sequence
    (so API v2 `status` answers it like an order), written at intake, then projected by the order's
    workflow (what the run delivered and its status)."""

    __tablename__ = "drip_feed_runs"
    __table_args__ = (UniqueConstraint("order_id", "run_no", name="drip_feed_runs_run"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    run_no: Mapped[int] = mapped_column(Integer, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    delivered: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, default="Pending", server_default="Pending"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class EndedOrderRefund(Base):
    """A support refund of an order whose workflow has ended (store/ended.py), by its idempotency key."""

    __tablename__ = "ended_order_refunds"
    __table_args__ = (UniqueConstraint("order_id", "idempotency_key", name="ended_order_refunds_key"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    request: Mapped[str] = mapped_column(String(100), nullable=False)  # SupportRefund.fingerprint()
    refunded_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refunded_units: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _created()


class ProviderRateLimit(Base):
    """A provider's token bucket, shared by every worker process (store/ratelimit.py)."""

    __tablename__ = "provider_rate_limits"

    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


REFILL_STATES = ("sending", "accepted", "rejected", "needs_reconciliation")


class ProviderRefill(Base):
    """One refill request forwarded to a provider, written before the request leaves (like submissions)."""

    __tablename__ = "provider_refills"
    __table_args__ = (
        UniqueConstraint("order_id", "refill_no", "provider_order_id", name="provider_refills_refill"),
        CheckConstraint(f"state IN {REFILL_STATES!r}", name="provider_refills_state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    refill_no: Mapped[int] = mapped_column(Integer, nullable=False)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), nullable=False)
    provider_order_id: Mapped[str] = mapped_column(String(100), nullable=False)
    client_key: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[str] = mapped_column(String(30), nullable=False)
    provider_refill_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
