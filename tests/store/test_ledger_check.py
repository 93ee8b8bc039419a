"""The invariant checker finds each kind of breach planted behind the code's back, and the CLI reports it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.ledger import LedgerActivities
from store import ledger
from store.db import transaction
from support import open_shop, place
from workflows.models import Settlement


@dataclass
class World:
    customer: str
    closed: int  # charged 1.00, settled (0.20 refunded, 0.80 recognised), phase closed
    open: int  # charged 0.50, still delivering


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession]) -> World:
    shop = await open_shop(sessions, funds=2_000_000)
    closed = await place(sessions, shop, 1000)
    still_open = await place(sessions, shop, 500)
    await LedgerActivities(sessions).settle_order(
        Settlement(closed.order_id, shop.customer_id, 200_000, 800_000, "short")
    )
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE orders SET phase = 'closed' WHERE id = :id"), {"id": closed.order_id}
        )
    async with sessions() as session:
        assert await ledger.check_invariants(session) == []
    return World(ledger.customer_account(shop.customer_id), closed.order_id, still_open.order_id)


async def _move(
    session: AsyncSession, kind: str, debit: str, credit: str, amount: int, order_id: int | None
) -> None:
    """A transfer written by hand, balances and all, as a buggy tool or a bad manual fix would."""
    await session.execute(
        text(
            """
            INSERT INTO ledger_transfers
                (idempotency_key, kind, debit_account, credit_account, amount_micros, order_id, actor, reason)
            VALUES (gen_random_uuid()::text, :kind, :debit, :credit, :amount, :order_id, 'psql', 'planted')
            """
        ),
        {"kind": kind, "debit": debit, "credit": credit, "amount": amount, "order_id": order_id},
    )
    for name, delta in ((debit, -amount), (credit, amount)):
        await session.execute(
            text("UPDATE ledger_accounts SET balance_micros = balance_micros + :d WHERE name = :n"),
            {"d": delta, "n": name},
        )


async def _allow_negative(session: AsyncSession) -> None:
    await session.execute(text("ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_not_negative"))


Plant = Callable[[AsyncSession, World], Awaitable[None]]


async def _tampered_balance(s: AsyncSession, w: World) -> None:
    await s.execute(
        text("UPDATE ledger_accounts SET balance_micros = balance_micros + 1 WHERE name = :n"),
        {"n": w.customer},
    )


async def _overdrawn_customer(s: AsyncSession, w: World) -> None:
    await _allow_negative(s)
    await _move(s, "adjustment", w.customer, ledger.EXTERNAL, 5_000_000, None)


async def _deposit_out_of_revenue(s: AsyncSession, w: World) -> None:
    await _move(s, "deposit", ledger.REVENUE, w.customer, 100_000, None)


async def _refund_to_a_stranger(s: AsyncSession, w: World) -> None:
    stranger = (
        await s.execute(text("INSERT INTO customers (name) VALUES ('Mallory') RETURNING id"))
    ).scalar()
    await s.execute(
        text("INSERT INTO ledger_accounts (name, kind, balance_micros) VALUES (:n, 'customer', 0)"),
        {"n": ledger.customer_account(int(stranger or 0))},
    )
    await _move(
        s, "refund", ledger.escrow_account(w.open), ledger.customer_account(int(stranger or 0)), 1, w.open
    )


async def _charge_rewritten(s: AsyncSession, w: World) -> None:
    await s.execute(
        text("UPDATE orders SET charge_micros = charge_micros + 1 WHERE id = :id"), {"id": w.open}
    )


async def _refunded_twice(s: AsyncSession, w: World) -> None:
    await _allow_negative(s)
    await _move(s, "refund", ledger.escrow_account(w.closed), w.customer, 900_000, w.closed)


async def _reversed_beyond_revenue(s: AsyncSession, w: World) -> None:
    # Revenue holds the closed order's 0.80, but the open order never recognised any.
    await _move(s, "reversal", ledger.REVENUE, ledger.escrow_account(w.open), 100_000, w.open)


async def _closed_with_escrow(s: AsyncSession, w: World) -> None:
    await s.execute(text("UPDATE orders SET phase = 'closed' WHERE id = :id"), {"id": w.open})


async def _closed_order_emptied_elsewhere(s: AsyncSession, w: World) -> None:
    # The open order's escrow paid out to the outside world, then the order was closed: escrow is 0,
    # but its charge was neither recognised nor refunded.
    await _move(s, "adjustment", ledger.escrow_account(w.open), ledger.EXTERNAL, 500_000, w.open)
    await s.execute(text("UPDATE orders SET phase = 'closed' WHERE id = :id"), {"id": w.open})


@pytest.mark.parametrize(
    ("plant", "found"),
    [
        (_tampered_balance, {"balance_mismatch", "unbalanced"}),
        (_overdrawn_customer, {"negative_balance"}),
        (_deposit_out_of_revenue, {"misdirected_transfer"}),
        (_refund_to_a_stranger, {"misdirected_transfer"}),
        (_charge_rewritten, {"charge_mismatch"}),
        (
            _refunded_twice,
            {"over_refunded", "negative_balance", "closed_order_escrow", "closed_order_unsettled"},
        ),
        (_reversed_beyond_revenue, {"over_reversed"}),
        (_closed_with_escrow, {"closed_order_escrow", "closed_order_unsettled"}),
        (_closed_order_emptied_elsewhere, {"misdirected_transfer", "closed_order_unsettled"}),
    ],
)
async def test_the_check_finds_each_breach(
    sessions: async_sessionmaker[AsyncSession], world: World, plant: Plant, found: set[str]
) -> None:
    async with transaction(sessions) as session:
        await plant(session, world)
    async with sessions() as session:
        breaches = await ledger.check_invariants(session)
    assert {b.what for b in breaches} == found
    assert all(b.detail for b in breaches)


async def test_the_cli_prints_each_breach_and_fails(
    db_url: str, sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    code, out = await _ledger_check(db_url)
    assert (code, out.strip()) == (0, "ledger is sound")
    async with transaction(sessions) as session:
        await _closed_with_escrow(session, world)
        await _tampered_balance(session, world)
    code, out = await _ledger_check(db_url)
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[-1] == "4 breach(es)"
    assert sorted(line.split(":")[0] for line in lines[:-1]) == [
        "BREACH balance_mismatch",
        "BREACH closed_order_escrow",
        "BREACH closed_order_unsettled",
        "BREACH unbalanced",
    ]


async def _ledger_check(db_url: str) -> tuple[int, str]:
    backoffice = Path(sys.executable).parent / "backoffice"
    process = await asyncio.create_subprocess_exec(
        str(backoffice),
        "ledger",
        "check",
        env={**os.environ, "DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()
