"""Many transactions on one customer at once: never overdrawn, never paid twice, never deadlocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from ledger_steps import recognise, support_refund
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.ledger import LedgerActivities
from store import ledger
from store.customers import get_balance
from store.db import make_engine, make_sessionmaker, transaction
from store.models import LedgerAccount, LedgerTransfer, Order
from store.orders import OrderRejected, OrderRequest, place_order
from support import LINK, SERVICE, Shop, open_shop, place
from workflows.models import Settlement


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """At most 20 connections, however many tasks want one."""
    engine = make_engine(db_url, pool_size=10)  # plus 10 overflow
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _order(pool: async_sessionmaker[AsyncSession], shop: Shop, key: str) -> int | str:
    """The new order's id, or the refusal's code."""
    try:
        async with transaction(pool) as session:
            order, _ = await place_order(
                session,
                shop.caller,
                OrderRequest(customer_id=shop.customer_id, service_id=SERVICE, link=LINK, quantity=100),
                idempotency_key=key,
            )
            return order.id
    except OrderRejected as exc:
        return exc.code


async def test_200_parallel_orders_against_funds_for_100(pool: async_sessionmaker[AsyncSession]) -> None:
    shop = await open_shop(pool, funds=10_000_000)  # 100 units at 1.00 per 1000 cost 0.10: 100 fit
    results = await asyncio.gather(*(_order(pool, shop, f"parallel-{n}") for n in range(200)))
    placed = {r for r in results if isinstance(r, int)}
    refused = [r for r in results if not isinstance(r, int)]
    assert (len(placed), refused) == (100, ["insufficient_funds"] * 100)
    async with pool() as session:
        assert await get_balance(session, shop.customer_id) == 0
        assert set(await session.scalars(select(Order.id))) == placed  # a refused order left no row
        escrows = await session.scalar(
            select(func.count()).select_from(LedgerAccount).where(LedgerAccount.kind == "escrow")
        )
        charges = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.kind == "charge")
        )
        assert (escrows, charges) == (100, 100)
        assert await ledger.check_invariants(session) == []


async def test_50_parallel_refunds_with_one_key_refund_once(pool: async_sessionmaker[AsyncSession]) -> None:
    shop = await open_shop(pool, funds=1_000_000)
    order = await place(pool, shop, 1000)  # charge 1.00
    await recognise(pool, order, 1_000_000)  # so every attempt would need a reversal first
    results = await asyncio.gather(*(support_refund(pool, order, 400_000, "refund:once") for _ in range(50)))
    assert len({r.transfer_id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    async with pool() as session:
        moved = await session.execute(
            select(LedgerTransfer.kind, func.count(), func.sum(LedgerTransfer.amount_micros))
            .where(LedgerTransfer.order_id == order.order_id)
            .group_by(LedgerTransfer.kind)
        )
        assert {kind: (n, total) for kind, n, total in moved} == {
            "charge": (1, 1_000_000),
            "revenue": (1, 1_000_000),
            "reversal": (1, 400_000),
            "refund": (1, 400_000),
        }
        assert await get_balance(session, shop.customer_id) == 400_000
        assert await ledger.check_invariants(session) == []


async def test_the_same_charge_sent_in_parallel_is_paid_once(pool: async_sessionmaker[AsyncSession]) -> None:
    shop = await open_shop(pool, funds=10_000_000)
    order = await place(pool, shop, 300)  # charged 0.30 at intake

    async def charge_again() -> bool:
        async with transaction(pool) as session:
            result = await ledger.transfer(
                session,
                key=f"order:{order.order_id}:charge",
                kind="charge",
                debit=ledger.customer_account(shop.customer_id),
                credit=ledger.escrow_account(order.order_id),
                amount=300_000,
                actor="test",
                order_id=order.order_id,
            )
            return result.replayed

    assert await asyncio.gather(*(charge_again() for _ in range(10))) == [True] * 10
    async with pool() as session:
        assert await get_balance(session, shop.customer_id) == 9_700_000


async def test_charges_refunds_and_recognitions_at_once_never_deadlock(
    pool: async_sessionmaker[AsyncSession],
) -> None:
    """Each takes its locks in one global order (customer:, escrow:, revenue), whatever it moves.

    (A support refund that locked `customer:` last would deadlock against a settlement here.)
    """
    shop = await open_shop(pool, funds=10_000_000)
    orders = [await place(pool, shop, 1000) for _ in range(10)]  # 10.00 charged: the balance is 0
    for o in orders[:5]:
        await recognise(pool, o, 1_000_000)  # their refunds reverse revenue first
    # These settle (refund 0.20, recognise 0.30, as the workflow's activity does) while support refunds.
    settle = LedgerActivities(pool).settle_order
    work = [settle(Settlement(o.order_id, o.customer_id, 200_000, 300_000, "short")) for o in orders[5:]]
    work += [support_refund(pool, o, 500_000, f"order:{o.order_id}:support-refund:1") for o in orders]
    work += [_order(pool, shop, f"later-{n}") for n in range(20)]  # paid from refunds, when they land
    results = await asyncio.wait_for(asyncio.gather(*work, return_exceptions=True), timeout=20)
    assert [r for r in results if isinstance(r, BaseException)] == []
    async with pool() as session:
        placed = await session.scalar(select(func.count()).select_from(Order))
        refunded = 10 * 500_000 + 5 * 200_000
        assert await get_balance(session, shop.customer_id) == refunded - (int(placed or 0) - 10) * 100_000
        assert await ledger.check_invariants(session) == []
