"""Customers and their money: creation and deposits (external -> customer)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store import ledger
from store.models import Customer


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
        key=f"deposit:{customer_id}:{key}",
        kind="deposit",
        debit=ledger.EXTERNAL,
        credit=ledger.customer_account(customer_id),
        amount=amount_micros,
        actor=actor,
        reason=reason,
    )
