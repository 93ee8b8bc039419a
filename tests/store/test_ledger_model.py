"""Random sequences of money movements against a plain in-memory model of the books.

Hypothesis draws deposits, orders, recognitions, refunds (with reversal), adjustments and closings, with
idempotency keys drawn from a small pool so replays and conflicts come up. After every step the database
agrees with the model to the micro-unit and `check_invariants` finds nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import customers, ledger
from store.db import transaction
from store.orders import OrderRejected, OrderRequest, place_order
from support import LINK, SERVICE, Shop, open_shop
from workflows import policy

RATE = 1_000_000  # the test service: 1.00 per 1000 units

KEYS = st.sampled_from(["k0", "k1", "k2"])
ORDER = st.integers(0, 3)  # which of the example's orders (modulo how many there are)
Step = tuple[Any, ...]
STEPS = st.one_of(
    st.tuples(st.just("deposit"), st.integers(1, 3_000_000), KEYS),
    st.tuples(st.just("order"), st.integers(10, 3000)),
    st.tuples(st.just("recognise"), ORDER, st.integers(1, 100)),
    st.tuples(st.just("refund"), ORDER, st.integers(1, 2_500_000), KEYS),
    st.tuples(st.just("adjust"), st.integers(-2_000_000, 2_000_000).filter(bool), KEYS),
    st.tuples(st.just("close"), ORDER),
)


@dataclass
class OrderBook:
    charge: int
    escrow: int
    recognised: int = 0  # net of reversals
    recognitions: int = 0
    closed: bool = False


@dataclass
class Model:
    customer_id: int
    balance: int = 0
    revenue: int = 0  # what this example added to the shared revenue account
    orders: dict[int, OrderBook] = field(default_factory=dict)
    used: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # ledger key -> what it moved

    def order_at(self, index: int) -> int | None:
        ids = sorted(self.orders)
        return ids[index % len(ids)] if ids else None


@pytest.fixture
async def shop(sessions: async_sessionmaker[AsyncSession]) -> Shop:
    return await open_shop(
        sessions, funds=1
    )  # the catalog and a storefront key; each example has its own customer


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEPS, min_size=1, max_size=25))
async def test_the_books_follow_the_model(
    sessions: async_sessionmaker[AsyncSession], shop: Shop, steps: list[Step]
) -> None:
    async with transaction(sessions) as session:
        customer, _ = await customers.create_customer(session, f"c-{uuid.uuid4().hex[:8]}")
        await ledger.ensure_account(session, ledger.REVENUE, "revenue")
        revenue_before = await ledger.balance(session, ledger.REVENUE)
    model = Model(customer.id)
    # Every example starts with money and an order, so most steps have something to move.
    for step in [("deposit", 5_000_000, "k0"), ("order", 2000), *steps]:
        await _apply(sessions, shop, model, step)
        async with sessions() as session:
            assert await customers.get_balance(session, model.customer_id) == model.balance, step
            assert await ledger.balance(session, ledger.REVENUE) - revenue_before == model.revenue, step
            for order_id, book in model.orders.items():
                assert await ledger.balance(session, ledger.escrow_account(order_id)) == book.escrow, step
            assert await ledger.check_invariants(session) == [], step


async def _apply(sessions: async_sessionmaker[AsyncSession], shop: Shop, m: Model, step: Step) -> None:
    match step:
        case ("deposit", amount, key):
            await _keyed(
                sessions, m, f"deposit:{m.customer_id}:{key}", ("deposit", amount), _deposit, amount, key
            )
        case ("order", quantity):
            await _order(sessions, shop, m, quantity)
        case ("recognise", index, percent):
            await _recognise(sessions, m, m.order_at(index), percent)
        case ("refund", index, amount, key):
            order_id = m.order_at(index)
            if order_id is not None:
                signature = ("refund", order_id, amount)
                await _keyed(
                    sessions, m, f"refund:{m.customer_id}:{key}", signature, _refund, order_id, amount, key
                )
        case ("adjust", amount, key):
            signature = ("adjust", amount)
            await _keyed(sessions, m, f"adjustment:{m.customer_id}:{key}", signature, _adjust, amount, key)
        case ("close", index):
            await _close(sessions, m, m.order_at(index))


async def _keyed(
    sessions: async_sessionmaker[AsyncSession],
    m: Model,
    ledger_key: str,
    signature: tuple[Any, ...],
    move: Any,
    *args: Any,
) -> None:
    """Run an idempotent movement: a replay must move nothing, a reused key for another movement must fail."""
    seen = m.used.get(ledger_key)
    try:
        async with transaction(sessions) as session:
            result: ledger.TransferResult = await move(session, m, *args, dry=seen is not None)
    except ledger.TransferConflict:
        assert seen is not None
        assert seen != signature
        return
    except ledger.InsufficientFunds:
        assert seen is None
        return
    if seen is None:
        assert not result.replayed
        m.used[ledger_key] = signature
    else:
        assert seen == signature
        assert result.replayed


async def _deposit(
    session: AsyncSession, m: Model, amount: int, key: str, *, dry: bool
) -> ledger.TransferResult:
    result = await customers.deposit(session, m.customer_id, amount, key=key, actor="test")
    if not dry:
        m.balance += amount
    return result


async def _adjust(
    session: AsyncSession, m: Model, amount: int, key: str, *, dry: bool
) -> ledger.TransferResult:
    if not dry and amount < 0 and -amount > m.balance:
        with pytest.raises(ledger.InsufficientFunds):
            await customers.adjust(session, m.customer_id, amount, key=key, actor="admin", reason="model")
        raise ledger.InsufficientFunds("as the model expects")
    result = await customers.adjust(session, m.customer_id, amount, key=key, actor="admin", reason="model")
    if not dry:
        m.balance += amount
    return result


async def _refund(
    session: AsyncSession, m: Model, order_id: int, amount: int, key: str, *, dry: bool
) -> ledger.TransferResult:
    book = m.orders[order_id]
    call = ledger.refund_order(
        session,
        order_id=order_id,
        customer_id=m.customer_id,
        amount=amount,
        key=f"refund:{m.customer_id}:{key}",
        actor="support",
        reason="model",
    )
    if not dry and amount > book.escrow + book.recognised:
        with pytest.raises(ledger.InsufficientFunds):
            await call
        raise ledger.InsufficientFunds("as the model expects")
    result = await call
    if not dry:
        reversal = max(amount - book.escrow, 0)
        book.recognised -= reversal
        m.revenue -= reversal
        book.escrow += reversal - amount
        m.balance += amount
    return result


async def _order(sessions: async_sessionmaker[AsyncSession], shop: Shop, m: Model, quantity: int) -> None:
    charge = policy.charge_for(quantity, RATE)
    request = OrderRequest(customer_id=m.customer_id, service_id=SERVICE, link=LINK, quantity=quantity)
    refused: OrderRejected | None = None
    try:
        async with transaction(sessions) as session:
            order, _ = await place_order(session, shop.caller, request, uuid.uuid4().hex)
    except OrderRejected as exc:
        refused = exc
    if refused is not None:  # the model says whether the balance covers it
        assert (refused.code, charge > m.balance) == ("insufficient_funds", True)
        return
    assert charge <= m.balance
    m.balance -= charge
    m.orders[order.id] = OrderBook(charge=charge, escrow=charge)


async def _recognise(
    sessions: async_sessionmaker[AsyncSession], m: Model, order_id: int | None, percent: int
) -> None:
    if order_id is None:
        return
    book = m.orders[order_id]
    amount = book.escrow * percent // 100
    if amount == 0:
        return
    book.recognitions += 1
    async with transaction(sessions) as session:
        await ledger.transfer(
            session,
            key=f"order:{order_id}:revenue:{book.recognitions}",
            kind="revenue",
            debit=ledger.escrow_account(order_id),
            credit=ledger.REVENUE,
            amount=amount,
            actor="workflow",
            order_id=order_id,
        )
    book.escrow -= amount
    book.recognised += amount
    m.revenue += amount


async def _close(sessions: async_sessionmaker[AsyncSession], m: Model, order_id: int | None) -> None:
    """Settle what is left in escrow as revenue and close the order, as its workflow would."""
    if order_id is None or m.orders[order_id].closed:
        return
    await _recognise(sessions, m, order_id, 100)
    async with transaction(sessions) as session:
        await session.execute(text("UPDATE orders SET phase = 'closed' WHERE id = :id"), {"id": order_id})
    m.orders[order_id].closed = True
