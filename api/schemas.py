"""Request and response shapes. Requests refuse unknown fields; every size is bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from store.ledger import StatementLine
from store.models import Customer, Order
from workflows.policy import format_money

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
# At most 10 million a movement keeps every balance far inside a bigint of micro-units.
Money = Annotated[str, StringConstraints(pattern=r"^\d{1,7}(\.\d{1,6})?$")]
SignedMoney = Annotated[str, StringConstraints(pattern=r"^-?\d{1,7}(\.\d{1,6})?$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderCreate(Strict):
    customer_id: Id | None = Field(default=None, description="required unless the caller is a customer key")
    service_id: Id
    link: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    quantity: Annotated[int, Field(ge=1, le=100_000_000, description="units; per run for a drip-feed")]
    runs: Annotated[int, Field(ge=2, le=1000)] | None = Field(default=None, description="drip-feed runs")
    interval: Annotated[int, Field(ge=1, le=10080)] | None = Field(
        default=None, description="drip-feed minutes between runs"
    )


class OrderOut(BaseModel):
    id: int
    customer_id: int
    service_id: int
    link: str
    status: str
    phase: str
    quantity: int
    delivered: int
    remains: int
    charge: str
    refunded: str
    runs: int | None
    interval: int | None
    start_count: int | None
    provider_status: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, o: Order) -> OrderOut:
        return cls(
            id=o.id,
            customer_id=o.customer_id,
            service_id=o.service_id,
            link=o.link,
            status=o.status,
            phase=o.phase,
            quantity=o.quantity,
            delivered=o.delivered,
            remains=max(o.quantity - o.delivered, 0),
            charge=format_money(o.charge_micros),
            refunded=format_money(o.refunded_micros),
            runs=o.runs,
            interval=o.interval_minutes,
            start_count=o.start_count,
            provider_status=o.provider_status_raw,
            created_at=o.created_at,
            updated_at=o.updated_at,
            finished_at=o.finished_at,
        )


class OrderList(BaseModel):
    orders: list[OrderOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class CustomerCreate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    external_ref: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class CustomerOut(BaseModel):
    id: int
    name: str
    external_ref: str | None
    balance: str
    created_at: datetime

    @classmethod
    def of(cls, c: Customer, balance_micros: int) -> CustomerOut:
        return cls(
            id=c.id,
            name=c.name,
            external_ref=c.external_ref,
            balance=format_money(balance_micros),
            created_at=c.created_at,
        )


class DepositCreate(Strict):
    amount: Money = Field(description='decimal string, up to 6 decimals, e.g. "25.00"')
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class DepositOut(BaseModel):
    customer_id: int
    amount: str
    balance: str
    replayed: bool


class AdjustmentCreate(Strict):
    amount: SignedMoney = Field(description='decimal string, negative to debit the customer, e.g. "-2.50"')
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class AdjustmentOut(BaseModel):
    customer_id: int
    transfer_id: int
    amount: str
    reason: str
    balance: str
    replayed: bool


class StatementEntry(BaseModel):
    transfer_id: int
    created_at: datetime
    kind: str = Field(description="deposit, charge, refund or adjustment (as seen from the customer)")
    amount: str = Field(description="signed: positive credits the balance, negative debits it")
    balance_after: str
    order_id: int | None
    actor: str
    reason: str

    @classmethod
    def of(cls, line: StatementLine) -> StatementEntry:
        return cls(
            transfer_id=line.transfer_id,
            created_at=line.created_at,
            kind=line.kind,
            amount=format_money(line.amount_micros),
            balance_after=format_money(line.balance_after_micros),
            order_id=line.order_id,
            actor=line.actor,
            reason=line.reason,
        )


class Statement(BaseModel):
    customer_id: int
    balance: str
    entries: list[StatementEntry] = Field(description="newest first")
    next_before: int | None = Field(
        description="pass as `before` for the next (older) page; null on the last page"
    )
