"""Customers and their money: creation and deposits (external -> customer)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger
from store.models import Customer


class CustomerNotFound(LookupError):
    code = "customer_not_found"


async def create_customer(
    session: AsyncSession, name: str, external_ref: str | None = None
) -> tuple[Customer, bool]:
    """Create a customer with its ledger account. An existing `external_ref` returns that customer instead."""
    if external_ref is not None:
        found = await session.scalar(select(Customer).where(Customer.external_ref == external_ref))
        if found is not None:
            return found, False
    customer = Customer(name=name, external_ref=external_ref)
    session.add(customer)
    await session.flush()
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
        key=f"deposit:{customer_id}:{key}",
        kind="deposit",
        debit=ledger.EXTERNAL,
        credit=ledger.customer_account(customer_id),
        amount=amount_micros,
        actor=actor,
        reason=reason,
    )


async def customer_balance(session: AsyncSession, customer_id: int) -> int:
    await get_customer(session, customer_id)
    return await ledger.balance(session, ledger.customer_account(customer_id))
