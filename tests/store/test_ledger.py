"""The ledger on a real PostgreSQL: exact, idempotent, never negative, provably balanced."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import ledger
from store.customers import create_customer, deposit
from store.db import transaction


async def _customer(sessions: async_sessionmaker[AsyncSession], funds: int) -> int:
    async with transaction(sessions) as session:
        customer, _ = await create_customer(session, "Alice")
        if funds:
            await deposit(session, customer.id, funds, key="initial", actor="test")
        return customer.id


async def customer_balance(session: AsyncSession, customer_id: int) -> int:
    return await ledger.balance(session, ledger.customer_account(customer_id))


async def _charge(
    sessions: async_sessionmaker[AsyncSession], customer_id: int, order: int, amount: int
) -> bool:
    async with transaction(sessions) as session:
        await ledger.ensure_account(session, ledger.escrow_account(order), "escrow")
        try:
            await ledger.transfer(
                session,
                key=f"order:{order}:charge",
                kind="charge",
                debit=ledger.customer_account(customer_id),
                credit=ledger.escrow_account(order),
                amount=amount,
                actor="test",
            )
        except ledger.InsufficientFunds:
            return False
    return True


async def test_a_replayed_transfer_moves_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer_id = await _customer(sessions, 0)
    for _ in range(3):
        async with transaction(sessions) as session:
            result = await deposit(session, customer_id, 5_000_000, key="pay-1", actor="test")
    assert result.replayed
    async with sessions() as session:
        assert await customer_balance(session, customer_id) == 5_000_000


async def test_a_key_reused_for_another_amount_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer_id = await _customer(sessions, 0)
    async with transaction(sessions) as session:
        await deposit(session, customer_id, 5_000_000, key="pay-1", actor="test")
    with pytest.raises(ledger.TransferConflict):
        async with transaction(sessions) as session:
            await deposit(session, customer_id, 6_000_000, key="pay-1", actor="test")


async def test_a_customer_cannot_spend_more_than_they_hold(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer_id = await _customer(sessions, 1_000_000)
    assert not await _charge(sessions, customer_id, 1, 1_000_001)
    assert await _charge(sessions, customer_id, 1, 1_000_000)
    async with sessions() as session:
        assert await customer_balance(session, customer_id) == 0


async def test_parallel_charges_on_one_account_never_overdraw(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer_id = await _customer(sessions, 10_000_000)
    # 40 orders of 0.30 against 10.00: exactly 33 fit, whatever the interleaving.
    results = await asyncio.gather(*(_charge(sessions, customer_id, n, 300_000) for n in range(1, 41)))
    assert sum(results) == 33
    async with sessions() as session:
        assert await customer_balance(session, customer_id) == 10_000_000 - 33 * 300_000
        assert await ledger.check_invariants(session) == []


async def test_the_same_charge_sent_in_parallel_is_paid_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer_id = await _customer(sessions, 10_000_000)
    await asyncio.gather(*(_charge(sessions, customer_id, 7, 300_000) for _ in range(10)))
    async with sessions() as session:
        assert await customer_balance(session, customer_id) == 9_700_000


async def test_the_database_refuses_a_negative_customer_balance(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer_id = await _customer(sessions, 0)
    with pytest.raises(Exception, match="ledger_accounts_not_negative"):
        async with transaction(sessions) as session:
            await session.execute(
                text("UPDATE ledger_accounts SET balance_micros = -1 WHERE name = :n"),
                {"n": ledger.customer_account(customer_id)},
            )


async def test_the_check_finds_a_tampered_balance(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer_id = await _customer(sessions, 2_000_000)
    async with sessions() as session:
        assert await ledger.check_invariants(session) == []
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE ledger_accounts SET balance_micros = balance_micros + 1 WHERE name = :n"),
            {"n": ledger.customer_account(customer_id)},
        )
    async with sessions() as session:
        found = {b.what for b in await ledger.check_invariants(session)}
    assert found == {"balance_mismatch", "unbalanced"}
