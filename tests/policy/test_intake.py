"""Intake's shape (store/orders.py:place_order): five statements for a Default order, the insert settles
replays and races on the idempotency key, and a refusal writes nothing. These are what the checkout's
speed rests on (docs/performance.md, intake), so they are pinned here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import ledger
from store.db import transaction
from store.ledger import check_invariants
from store.models import LedgerAccount, Order, Service
from store.orders import OrderRejected, OrderRequest, place_order
from support import SERVICE, Shop, open_shop

LINK = "https://instagram.com/nasa"


def request(shop: Shop, quantity: int = 100) -> OrderRequest:
    return OrderRequest(shop.customer_id, SERVICE, LINK, quantity)


async def intake(
    sessions: async_sessionmaker[AsyncSession], shop: Shop, key: str, quantity: int = 100, hold: float = 0
) -> tuple[int, bool]:
    async with transaction(sessions) as session:
        order, created = await place_order(session, shop.caller, request(shop, quantity), key)
        await asyncio.sleep(hold)  # keep the transaction open, so another intake overlaps it
        return order.id, created


@contextmanager
def statements(sessions: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """The SQL statements sent meanwhile (transaction control aside)."""
    sent: list[str] = []
    engine = sessions.kw["bind"].sync_engine

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement.split(None, 1)[0])

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def test_a_default_order_takes_five_statements(sessions: async_sessionmaker[AsyncSession]) -> None:
    shop = await open_shop(sessions)
    await intake(sessions, shop, "warm")  # the first use of a connection asks PostgreSQL for type codecs
    with statements(sessions) as sent:
        await intake(sessions, shop, "one")
    # catalog read (service, price, customer, new id), routes, the order, its webhook event, the charge
    assert sent == ["SELECT", "SELECT", "INSERT", "WITH", "WITH"]


async def test_a_replay_returns_the_order_even_where_the_catalog_now_refuses_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    first, created = await intake(sessions, shop, "k")
    assert created
    async with transaction(sessions) as session:
        await session.execute(update(Service).where(Service.id == SERVICE).values(active=False))
    assert await intake(sessions, shop, "k") == (first, False)
    with pytest.raises(OrderRejected) as other:
        await intake(sessions, shop, "k", quantity=200)
    assert other.value.code == "idempotency_conflict"
    with pytest.raises(OrderRejected) as unknown:
        await intake(sessions, shop, "another")
    assert unknown.value.code == "unknown_service"


async def test_a_replay_on_a_guarded_link_is_the_order_not_a_duplicate(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, deny_link_duplicates=True)
    first, _ = await intake(sessions, shop, "k")
    assert await intake(sessions, shop, "k") == (first, False)
    with pytest.raises(OrderRejected) as duplicate:
        await intake(sessions, shop, "another")
    assert duplicate.value.code == "duplicate_link"


async def test_one_key_at_once_makes_one_order_charged_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    outcomes = await asyncio.gather(*(intake(sessions, shop, "same", hold=0.2) for _ in range(5)))
    assert len({order_id for order_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, False, False, False, True]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
        balance = await ledger.balance(session, ledger.customer_account(shop.customer_id))
        assert balance == 100_000_000 - 100_000
        assert await check_invariants(session) == []


async def test_an_order_the_balance_cannot_pay_leaves_nothing_behind(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, funds=99_999)  # 100 units cost 0.100000
    with pytest.raises(OrderRejected) as refused:
        await intake(sessions, shop, "k")
    assert (refused.value.status, refused.value.code) == (402, "insufficient_funds")
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 0
        escrows = select(func.count()).select_from(LedgerAccount).where(LedgerAccount.kind == "escrow")
        assert await session.scalar(escrows) == 0
        assert await ledger.balance(session, ledger.customer_account(shop.customer_id)) == 99_999
        assert await check_invariants(session) == []
    # and the same key is free for the order once the balance covers it
    async with transaction(sessions) as session:
        await ledger.transfer(
            session,
            key="top-up",
            kind="deposit",
            debit=ledger.EXTERNAL,
            credit=ledger.customer_account(shop.customer_id),
            amount=1,
            actor="test",
        )
    assert (await intake(sessions, shop, "k"))[1]
