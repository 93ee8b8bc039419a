"""Request and response shapes of customers, their money and their statements (api/schemas.py has the
rest and the shared field types)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas import Money, Name, OptionalText, Reason, SignedMoney, Strict
from store.ledger import StatementLine
from store.models import Customer
from workflows.policy import format_money


class CustomerCreate(Strict):
    name: Name
    external_ref: Name | None = None


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
    reason: OptionalText = ""


class DepositOut(BaseModel):
    customer_id: int
    amount: str
    balance: str
    replayed: bool


class AdjustmentCreate(Strict):
    amount: SignedMoney = Field(description='decimal string, negative to debit the customer, e.g. "-2.50"')
    reason: Reason


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
    actor: str = Field(description="who: `<role>:key<id>`, `workflow`; a customer key sees only the role")
    reason: str

    @classmethod
    def of(cls, line: StatementLine, *, for_customer: bool) -> StatementEntry:
        return cls(
            transfer_id=line.transfer_id,
            created_at=line.created_at,
            kind=line.kind,
            amount=format_money(line.amount_micros),
            balance_after=format_money(line.balance_after_micros),
            order_id=line.order_id,
            actor=line.actor.split(":", 1)[0] if for_customer else line.actor,  # staff keys stay staff's
            reason=line.reason,
        )


class Statement(BaseModel):
    customer_id: int
    balance: str
    entries: list[StatementEntry] = Field(description="newest first")
    next_before: int | None = Field(
        description="pass as `before` for the next (older) page; null on the last page"
    )
