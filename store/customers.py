"""Customers and their money: creation, balance, deposits and admin adjustments, and the statement."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger
from store.models import Customer, LedgerAccount


class CustomerNotFound(LookupError):
    code = "customer_not_found"


async def create_customer(
    session: AsyncSession, name: str, external_ref: str | None = None
) -> tuple[Customer, bool]:
    """Create a customer with its ledger account. An existing `external_ref` returns that customer instead."""
    created_id = await session.scalar(
        insert(Customer)
        .values(name=name, external_ref=external_ref)
        .on_conflict_do_nothing(index_elements=[Customer.external_ref])
        .returning(Customer.id)
    )
    if created_id is None:  # that external_ref exists (perhaps created by a concurrent request)
        found = await session.scalar(select(Customer).where(Customer.external_ref == external_ref))
        assert found is not None
        return found, False
    customer = await session.get_one(Customer, created_id)
    await ledger.ensure_account(session, ledger.customer_account(customer.id), "customer")
    return customer, True


async def get_customer(session: AsyncSession, customer_id: int) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise CustomerNotFound(f"customer {customer_id} does not exist")
    return customer


async def deposit(
    session: AsyncSession, customer_id: int, amount_micros: int, *, key: str, actor: str, reason: str = ""
) -> ledger.TransferResult:
    """Money in from outside, once per `key` (the caller's idempotency key)."""
    await get_customer(session, customer_id)
    await ledger.ensure_account(session, ledger.EXTERNAL, "external")
    return await ledger.transfer(
        session,
        key=ledger.caller_key(f"deposit:{customer_id}", key),
        kind="deposit",
        debit=ledger.EXTERNAL,
        credit=ledger.customer_account(customer_id),
        amount=amount_micros,
        actor=actor,
        reason=reason,
    )


async def get_balance(session: AsyncSession, customer_id: int) -> int:
    """The customer's balance in micro-units; CustomerNotFound for an unknown customer."""
    value = await session.scalar(
        select(LedgerAccount.balance_micros).where(LedgerAccount.name == ledger.customer_account(customer_id))
    )
    if value is None:
        await get_customer(session, customer_id)  # raises for an unknown customer
        return 0
    return int(value)


async def adjust(
    session: AsyncSession, customer_id: int, amount_micros: int, *, key: str, actor: str, reason: str
) -> ledger.TransferResult:
    """An admin's correction, once per `key`: positive credits the customer, negative debits them.

    A reason is mandatory. A debit is refused (InsufficientFunds) beyond what the customer holds.
    """
    if not reason.strip():
        raise ValueError("an adjustment needs a reason")
    if amount_micros == 0:
        raise ValueError("an adjustment moves a non-zero amount")
    await get_customer(session, customer_id)
    await ledger.ensure_account(session, ledger.EXTERNAL, "external")
    account = ledger.customer_account(customer_id)
    debit, credit = (ledger.EXTERNAL, account) if amount_micros > 0 else (account, ledger.EXTERNAL)
    return await ledger.transfer(
        session,
        key=ledger.caller_key(f"adjustment:{customer_id}", key),
        kind="adjustment",
        debit=debit,
        credit=credit,
        amount=abs(amount_micros),
        actor=actor,
        reason=reason,
    )


async def statement(
    session: AsyncSession, customer_id: int, *, before: int | None = None, limit: int = 50
) -> tuple[list[ledger.StatementLine], int | None]:
    """The customer's transfers newest first with the balance after each; see `ledger.statement`."""
    await get_customer(session, customer_id)
    return await ledger.statement(session, ledger.customer_account(customer_id), before=before, limit=limit)
