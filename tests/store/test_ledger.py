"""The ledger on a real PostgreSQL: exact, idempotent, never negative, provably balanced."""

from __future__ import annotations

import pytest
from ledger_steps import recognise, support_refund
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import customers, ledger
from store.customers import create_customer, deposit
from store.db import transaction
from store.models import LedgerTransfer
from support import open_shop, place
from workflows.models import OrderInput


async def _customer(sessions: async_sessionmaker[AsyncSession], funds: int) -> int:
    async with transaction(sessions) as session:
        customer, _ = await create_customer(session, "Alice")
        if funds:
            await deposit(session, customer.id, funds, key="initial", actor="test")
        return customer.id


async def _refund(
    sessions: async_sessionmaker[AsyncSession], order: OrderInput, amount: int, key: str = "r1"
) -> ledger.TransferResult:
    return await support_refund(sessions, order, amount, f"order:{order.order_id}:support-refund:{key}")


async def _transfers(sessions: async_sessionmaker[AsyncSession], order_id: int) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(LedgerTransfer.kind, func.sum(LedgerTransfer.amount_micros))
            .where(LedgerTransfer.order_id == order_id)
            .group_by(LedgerTransfer.kind)
        )
        return {kind: int(total) for kind, total in rows}


async def _sound(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        assert await ledger.check_invariants(session) == []


async def test_a_replayed_transfer_moves_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer_id = await _customer(sessions, 0)
    for _ in range(3):
        async with transaction(sessions) as session:
            result = await deposit(session, customer_id, 5_000_000, key="pay-1", actor="test")
    assert result.replayed
    async with sessions() as session:
        assert await customers.get_balance(session, customer_id) == 5_000_000


async def test_a_caller_key_of_any_allowed_length_is_one_deposit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A 200-character Idempotency-Key (the most the API takes) made a transfer key too long for its column
    once prefixed: the fuzz test's 500. Two long keys that differ only at the end stay two deposits."""
    customer_id = await _customer(sessions, 0)
    first, second = "k" * 199 + "1", "k" * 199 + "2"
    for key in (first, first, second):
        async with transaction(sessions) as session:
            result = await deposit(session, customer_id, 1_000_000, key=key, actor="test")
    assert not result.replayed
    async with transaction(sessions) as session:
        again = await deposit(session, customer_id, 1_000_000, key=second, actor="test")
        await customers.adjust(session, customer_id, -1, key=first, actor="admin", reason="long key")
    assert again.replayed
    async with sessions() as session:
        assert await customers.get_balance(session, customer_id) == 2_000_000 - 1
        keys = list(await session.scalars(select(LedgerTransfer.idempotency_key)))
    assert all(len(k) <= ledger.KEY_LENGTH for k in keys)
    # What fitted the column before keeps its old form (a replay of an old deposit finds it); a refund key
    # that fits may still need its reversal's key fitted.
    assert ledger.caller_key("deposit:1", "k" * 190) == "deposit:1:" + "k" * 190
    long_reversal = ledger.reversal_key("r" * 200)
    assert long_reversal.endswith(":reversal")
    assert len(long_reversal) < 100
    assert ledger.reversal_key("order:1:refund:1") == "order:1:refund:1:reversal"
    await _sound(sessions)


async def test_a_key_reused_for_another_amount_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer_id = await _customer(sessions, 0)
    async with transaction(sessions) as session:
        await deposit(session, customer_id, 5_000_000, key="pay-1", actor="test")
    with pytest.raises(ledger.TransferConflict):
        async with transaction(sessions) as session:
            await deposit(session, customer_id, 6_000_000, key="pay-1", actor="test")


async def test_a_transfer_goes_only_where_its_kind_allows(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer_id = await _customer(sessions, 1_000_000)
    async with transaction(sessions) as session:
        await ledger.ensure_account(session, ledger.REVENUE, "revenue")
    with pytest.raises(ledger.LedgerError, match="cannot move money"):
        async with transaction(sessions) as session:  # a "deposit" straight into revenue
            await ledger.transfer(
                session,
                key="odd",
                kind="deposit",
                debit=ledger.customer_account(customer_id),
                credit=ledger.REVENUE,
                amount=1,
                actor="test",
            )
    with pytest.raises(ValueError, match="unknown transfer kind"):
        async with transaction(sessions) as session:
            await ledger.transfer(
                session,
                key="odd",
                kind="gift",
                debit=ledger.EXTERNAL,
                credit=ledger.customer_account(customer_id),
                amount=1,
                actor="test",
            )
    await _sound(sessions)


async def test_an_order_the_customer_cannot_afford_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, funds=99_999)  # 100 units at 1.00 per 1000 cost 0.100000
    with pytest.raises(Exception, match="not enough funds"):
        await place(sessions, shop, 100)
    async with sessions() as session:
        assert await customers.get_balance(session, shop.customer_id) == 99_999
        assert await session.scalar(text("SELECT count(*) FROM orders")) == 0
    await _sound(sessions)


async def test_a_refund_from_escrow_needs_no_reversal(sessions: async_sessionmaker[AsyncSession]) -> None:
    shop = await open_shop(sessions, funds=1_000_000)
    order = await place(sessions, shop, 1000)  # charge 1.00: all of it
    first = await _refund(sessions, order, 400_000)
    again = await _refund(sessions, order, 400_000)
    assert (first.replayed, again.replayed, again.transfer_id) == (False, True, first.transfer_id)
    assert await _transfers(sessions, order.order_id) == {"charge": 1_000_000, "refund": 400_000}
    async with sessions() as session:
        assert await customers.get_balance(session, shop.customer_id) == 400_000
    await _sound(sessions)


async def test_a_refund_after_revenue_was_recognised_reverses_the_difference(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, funds=1_000_000)
    order = await place(sessions, shop, 1000)
    await recognise(sessions, order, 900_000)  # 0.10 stays in escrow (say, a refill reserve)
    await _refund(sessions, order, 250_000)
    assert await _transfers(sessions, order.order_id) == {
        "charge": 1_000_000,
        "revenue": 900_000,
        "reversal": 150_000,
        "refund": 250_000,
    }
    # Replayed after the escrow ran dry: nothing moves, no second reversal.
    assert (await _refund(sessions, order, 250_000)).replayed
    async with sessions() as session:
        assert await ledger.balance(session, ledger.escrow_account(order.order_id)) == 0
        assert await ledger.balance(session, ledger.REVENUE) == 750_000
        assert await customers.get_balance(session, shop.customer_id) == 250_000
        reversal = await session.scalar(select(LedgerTransfer).where(LedgerTransfer.kind == "reversal"))
        assert reversal is not None
        assert reversal.idempotency_key == f"order:{order.order_id}:support-refund:r1:reversal"
    await _sound(sessions)


async def test_a_refund_key_reused_for_another_refund_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, funds=2_000_000)
    order = await place(sessions, shop, 1000)
    other = await place(sessions, shop, 1000)
    await recognise(sessions, order, 1_000_000)
    await _refund(sessions, order, 100_000)
    with pytest.raises(ledger.TransferConflict):  # another amount
        await _refund(sessions, order, 200_000)
    with pytest.raises(ledger.TransferConflict):  # the same key for other accounts
        async with transaction(sessions) as session:
            await ledger.refund_order(
                session,
                order_id=other.order_id,
                customer_id=other.customer_id,
                amount=100_000,
                key=f"order:{order.order_id}:support-refund:r1",
                actor="support:key1",
                reason="wrong order",
            )
    with pytest.raises(ledger.LedgerError, match="does not belong"):  # another customer's order
        async with transaction(sessions) as session:
            await ledger.refund_order(
                session,
                order_id=order.order_id,
                customer_id=await _customer(sessions, 0),
                amount=100_000,
                key="to-a-stranger",
                actor="support:key1",
                reason="wrong customer",
            )
    assert await _transfers(sessions, order.order_id) == {
        "charge": 1_000_000,
        "revenue": 1_000_000,
        "reversal": 100_000,
        "refund": 100_000,
    }
    await _sound(sessions)


async def test_an_order_is_never_refunded_beyond_its_charge(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, funds=2_000_000)
    order = await place(sessions, shop, 1000)
    rich = await place(sessions, shop, 1000)
    await recognise(sessions, order, 600_000)
    await recognise(sessions, rich, 1_000_000)  # revenue holds enough, but not this order's
    await _refund(sessions, order, 700_000, key="a")
    with pytest.raises(ledger.InsufficientFunds):
        await _refund(sessions, order, 300_001, key="b")
    await _refund(sessions, order, 300_000, key="b")
    assert (await _transfers(sessions, order.order_id))["refund"] == 1_000_000
    await _sound(sessions)


async def test_adjustments_credit_and_debit_with_a_reason(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer_id = await _customer(sessions, 1_000_000)
    async with transaction(sessions) as session:
        await customers.adjust(session, customer_id, 250_000, key="a1", actor="admin:key1", reason="goodwill")
        await customers.adjust(session, customer_id, -50_000, key="a2", actor="admin:key1", reason="typo")
        replay = await customers.adjust(
            session, customer_id, -50_000, key="a2", actor="admin:key1", reason="typo"
        )
    assert replay.replayed
    with pytest.raises(ledger.TransferConflict):  # the same key turned into a credit
        async with transaction(sessions) as session:
            await customers.adjust(session, customer_id, 50_000, key="a2", actor="admin:key1", reason="x")
    with pytest.raises(ledger.InsufficientFunds):
        async with transaction(sessions) as session:
            await customers.adjust(session, customer_id, -1_200_001, key="a3", actor="admin", reason="x")
    for amount, reason in ((1, " "), (0, "nothing")):
        with pytest.raises(ValueError, match="an adjustment"):
            async with transaction(sessions) as session:
                await customers.adjust(session, customer_id, amount, key="a4", actor="admin", reason=reason)
    async with sessions() as session:
        assert await customers.get_balance(session, customer_id) == 1_200_000
    await _sound(sessions)


async def test_a_replay_is_answered_as_one_where_the_movement_could_not_happen_now(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The balance is checked before the key (the write is one statement), so a refusal looks the key up
    first: a replayed debit the balance no longer covers moves nothing and is no error."""
    customer_id = await _customer(sessions, 1_000_000)
    async with transaction(sessions) as session:
        first = await customers.adjust(session, customer_id, -800_000, key="d1", actor="admin", reason="x")
    async with transaction(sessions) as session:
        again = await customers.adjust(session, customer_id, -800_000, key="d1", actor="admin", reason="x")
    assert (again.replayed, again.transfer_id) == (True, first.transfer_id)
    with pytest.raises(ledger.TransferConflict):  # the key for another amount, which could not happen either
        async with transaction(sessions) as session:
            await customers.adjust(session, customer_id, -900_000, key="d1", actor="admin", reason="x")
    with pytest.raises(ledger.InsufficientFunds):  # a new key is refused
        async with transaction(sessions) as session:
            await customers.adjust(session, customer_id, -800_000, key="d2", actor="admin", reason="x")
    async with sessions() as session:
        assert await customers.get_balance(session, customer_id) == 200_000
    await _sound(sessions)


async def test_the_balance_of_an_unknown_customer_is_not_zero_but_missing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        with pytest.raises(customers.CustomerNotFound):
            await customers.get_balance(session, 12345)


async def test_a_statement_pages_newest_first_with_running_balances(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, funds=1_000_000)
    order = await place(sessions, shop, 300)  # -0.30
    async with transaction(sessions) as session:
        await customers.adjust(session, shop.customer_id, -100_000, key="a", actor="admin", reason="fee")
        await deposit(session, shop.customer_id, 2_000_000, key="second", actor="test")
    await _refund(sessions, order, 50_000)
    expected = [  # newest first: (kind, amount, balance after)
        ("refund", 50_000, 2_650_000),
        ("deposit", 2_000_000, 2_600_000),
        ("adjustment", -100_000, 600_000),
        ("charge", -300_000, 700_000),
        ("deposit", 1_000_000, 1_000_000),
    ]
    seen: list[tuple[str, int, int]] = []
    before = None
    pages = 0
    async with sessions() as session:
        while True:
            lines, before = await customers.statement(session, shop.customer_id, before=before, limit=2)
            seen += [(line.kind, line.amount_micros, line.balance_after_micros) for line in lines]
            pages += 1
            if before is None:
                break
        assert seen == expected
        assert pages == 3
        newest, *_ = (await customers.statement(session, shop.customer_id, limit=1))[0]
        assert (newest.order_id, newest.actor, newest.reason) == (
            order.order_id,
            "support:key1",
            "customer complaint",
        )
        assert await customers.statement(session, await _empty_customer(session)) == ([], None)
        with pytest.raises(customers.CustomerNotFound):
            await customers.statement(session, 12345)


async def _empty_customer(session: AsyncSession) -> int:
    customer, _ = await create_customer(session, "Nobody")
    return customer.id


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


async def test_the_database_refuses_an_unknown_transfer_kind(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer_id = await _customer(sessions, 5)
    with pytest.raises(Exception, match="ledger_transfers_kind"):
        async with transaction(sessions) as session:
            await session.execute(
                text(
                    "INSERT INTO ledger_transfers (idempotency_key, kind, debit_account, credit_account,"
                    " amount_micros, actor, reason) VALUES ('x', 'gift', 'external', :c, 1, 'test', '')"
                ),
                {"c": ledger.customer_account(customer_id)},
            )
