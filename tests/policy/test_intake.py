"""Intake's shape (store/orders.py): the checkout's take_order is three round trips (the catalog read, one
write, the wait for its flush), each its own transaction; the write settles replays and races on the
idempotency key, and a refusal writes nothing. place_order does the same inside a caller's transaction.
These are what the checkout's speed rests on (docs/performance.md, intake), so they are pinned here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from sqlalchemy import event, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import ledger, orders, webhooks
from store.db import transaction
from store.ledger import check_invariants
from store.models import DripFeedRun, LedgerAccount, Order, Service, WebhookEvent
from store.orders import OrderRejected, OrderRequest, place_order, take_order
from support import SERVICE, Shop, open_shop

LINK = "https://instagram.com/nasa"
MODES = ["checkout", "in a transaction"]


def request(shop: Shop, quantity: int = 100) -> OrderRequest:
    return OrderRequest(shop.customer_id, SERVICE, LINK, quantity)


async def intake(
    sessions: async_sessionmaker[AsyncSession],
    shop: Shop,
    key: str,
    quantity: int = 100,
    hold: float = 0,
    mode: str = "checkout",
) -> tuple[int, bool]:
    if mode == "checkout":
        async with sessions() as session:
            order, created = await take_order(session, shop.caller, request(shop, quantity), key)
            return order.id, created
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


async def test_a_checkout_takes_three_statements_and_no_transaction_control(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = await open_shop(sessions)
    await intake(sessions, shop, "warm")  # the first use of a connection asks PostgreSQL for type codecs
    began: list[str] = []
    start = asyncpg.transaction.Transaction.start

    async def noted(self: asyncpg.transaction.Transaction) -> None:
        began.append("BEGIN")
        await start(self)

    monkeypatch.setattr(asyncpg.transaction.Transaction, "start", noted)
    with statements(sessions) as sent:
        await intake(sessions, shop, "one")
    # the catalog read (service, price, customer, routes, new id), the write, the wait for its flush
    assert sent == ["SELECT", "WITH", "UPDATE"]
    assert began == []  # autocommit: no BEGIN (nor COMMIT or ROLLBACK) goes to the server


async def test_in_a_transaction_the_write_is_one_statement_in_a_savepoint(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    await intake(sessions, shop, "warm", mode="in a transaction")
    with statements(sessions) as sent:
        await intake(sessions, shop, "one", mode="in a transaction")
    assert sent == ["SELECT", "SAVEPOINT", "WITH", "RELEASE"]


async def test_the_write_does_not_wait_for_the_disk_and_the_checkout_does(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The write's commit returns before its WAL is flushed (the balance row is free at once); take_order
    returns only once it is. Seen in the WAL positions: right after the write the flushed position is
    (almost always) behind the written one, and after take_order it is (almost) never. The cluster's own
    background writes (autovacuum, another session's lazy commit) can put the written position ahead for
    a moment at any time, so each side is counted over 20 orders rather than asserted for every one."""
    shop = await open_shop(sessions)
    behind_the_write = 0
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        for n in range(20):
            await orders._place(session, shop.caller, request(shop), f"w{n}", alone=True)
            behind_the_write += bool(await session.scalar(_BEHIND))
        await session.commit()
    behind_the_checkout = 0
    for n in range(20):
        await intake(sessions, shop, f"t{n}")
        async with sessions() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            behind_the_checkout += bool(await session.scalar(_BEHIND))
    assert behind_the_write >= 10, "the writes waited for their flush: the commit mode did not apply"
    assert behind_the_checkout <= 2, "take_order returned before its orders were on disk"


_BEHIND = text("SELECT pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn()")


async def test_one_write_makes_the_order_its_charge_runs_and_webhook_event(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    async with transaction(sessions) as session:
        await webhooks.create_endpoint(
            session, "https://127.0.0.1:9/hook", [webhooks.ORDER_CREATED], "", "test"
        )
    drip = OrderRequest(shop.customer_id, SERVICE, LINK, 100, runs=3, interval=10)
    async with sessions() as session:
        order, created = await take_order(session, shop.caller, drip, "drip")
    assert created
    assert (order.quantity, order.charge_micros) == (300, 300_000)
    async with sessions() as session:
        runs = list(await session.scalars(select(DripFeedRun).where(DripFeedRun.order_id == order.id)))
        assert [(r.run_no, r.quantity) for r in sorted(runs, key=lambda r: r.id)] == [
            (1, 100),
            (2, 100),
            (3, 100),
        ]
        events = list(await session.scalars(select(WebhookEvent).where(WebhookEvent.order_id == order.id)))
        assert [(e.type, e.data) for e in events] == [
            ("order.created", {"status": "Pending", "phase": "queued"})
        ]
        assert await ledger.balance(session, ledger.escrow_account(order.id)) == 300_000
        assert (
            await ledger.balance(session, ledger.customer_account(shop.customer_id)) == 100_000_000 - 300_000
        )
        assert await check_invariants(session) == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_replay_returns_the_order_even_where_the_catalog_now_refuses_it(
    sessions: async_sessionmaker[AsyncSession], mode: str
) -> None:
    shop = await open_shop(sessions)
    first, created = await intake(sessions, shop, "k", mode=mode)
    assert created
    async with transaction(sessions) as session:
        await session.execute(update(Service).where(Service.id == SERVICE).values(active=False))
    assert await intake(sessions, shop, "k", mode=mode) == (first, False)
    with pytest.raises(OrderRejected) as other:
        await intake(sessions, shop, "k", quantity=200, mode=mode)
    assert other.value.code == "idempotency_conflict"
    with pytest.raises(OrderRejected) as unknown:
        await intake(sessions, shop, "another", mode=mode)
    assert unknown.value.code == "unknown_service"


@pytest.mark.parametrize("mode", MODES)
async def test_a_replay_on_a_guarded_link_is_the_order_not_a_duplicate(
    sessions: async_sessionmaker[AsyncSession], mode: str
) -> None:
    shop = await open_shop(sessions, deny_link_duplicates=True)
    first, _ = await intake(sessions, shop, "k", mode=mode)
    assert await intake(sessions, shop, "k", mode=mode) == (first, False)
    with pytest.raises(OrderRejected) as duplicate:
        await intake(sessions, shop, "another", mode=mode)
    assert duplicate.value.code == "duplicate_link"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("funds", [100_000_000, 100_000])  # plenty, and exactly one order's
async def test_one_key_at_once_makes_one_order_charged_once(
    sessions: async_sessionmaker[AsyncSession], mode: str, funds: int
) -> None:
    """With funds for one order only, the second of two requests with one key waits on the balance the
    first spends, finds nothing to debit and is still answered with the first order, not refused."""
    shop = await open_shop(sessions, funds=funds)
    outcomes = await asyncio.gather(*(intake(sessions, shop, "same", hold=0.2, mode=mode) for _ in range(5)))
    assert len({order_id for order_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, False, False, False, True]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
        balance = await ledger.balance(session, ledger.customer_account(shop.customer_id))
        assert balance == funds - 100_000
        assert await check_invariants(session) == []


@pytest.mark.parametrize("mode", MODES)
async def test_an_order_the_balance_cannot_pay_leaves_nothing_behind(
    sessions: async_sessionmaker[AsyncSession], mode: str
) -> None:
    shop = await open_shop(sessions, funds=99_999)  # 100 units cost 0.100000
    with pytest.raises(OrderRejected) as refused:
        await intake(sessions, shop, "k", mode=mode)
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
    assert (await intake(sessions, shop, "k", mode=mode))[1]


@pytest.mark.parametrize("mode", MODES)
async def test_a_replay_is_the_order_even_once_the_balance_no_longer_covers_it(
    sessions: async_sessionmaker[AsyncSession], mode: str
) -> None:
    shop = await open_shop(sessions, funds=100_000)  # exactly one order of 100 units
    first, created = await intake(sessions, shop, "k", mode=mode)
    assert created
    assert await intake(sessions, shop, "k", mode=mode) == (first, False)
    with pytest.raises(OrderRejected) as other:
        await intake(sessions, shop, "k", quantity=200, mode=mode)
    assert other.value.code == "idempotency_conflict"
    with pytest.raises(OrderRejected) as unpaid:
        await intake(sessions, shop, "another", mode=mode)
    assert unpaid.value.code == "insufficient_funds"
