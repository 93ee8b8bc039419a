"""Double-entry ledger operations. Every transfer is idempotent by its key and balanced in one transaction.

Callers pass an open session inside a transaction; balances change only here, under row locks taken in a
fixed order (account name), so concurrent transfers on one account serialise instead of deadlocking.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import LedgerAccount, LedgerTransfer

EXTERNAL = "external"
REVENUE = "revenue"


def customer_account(customer_id: int) -> str:
    return f"customer:{customer_id}"


def escrow_account(order_id: int) -> str:
    return f"escrow:{order_id}"


class LedgerError(Exception):
    code = "ledger_error"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class TransferConflict(LedgerError):
    """The idempotency key was already used for a different movement."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class TransferResult:
    transfer_id: int
    replayed: bool  # True when the key had already been applied: nothing moved this time


async def ensure_account(session: AsyncSession, name: str, kind: str) -> None:
    await session.execute(
        insert(LedgerAccount).values(name=name, kind=kind, balance_micros=0).on_conflict_do_nothing()
    )


async def balance(session: AsyncSession, name: str) -> int:
    value = await session.scalar(select(LedgerAccount.balance_micros).where(LedgerAccount.name == name))
    return int(value or 0)


async def transfer(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    debit: str,
    credit: str,
    amount: int,
    actor: str,
    reason: str = "",
    order_id: int | None = None,
) -> TransferResult:
    """Move `amount` micro-units from `debit` to `credit`, exactly once per `key`."""
    if amount <= 0:
        raise ValueError("a transfer moves a positive amount")
    # Lock both accounts first: a concurrent transfer with the same key waits here and then sees ours.
    locked = await session.execute(
        select(LedgerAccount.name, LedgerAccount.kind, LedgerAccount.balance_micros)
        .where(LedgerAccount.name.in_(sorted({debit, credit})))
        .order_by(LedgerAccount.name)
        .with_for_update()
    )
    accounts = {row.name: row for row in locked}
    missing = {debit, credit} - accounts.keys()
    if missing:
        raise LedgerError(f"unknown ledger account(s): {', '.join(sorted(missing))}")

    existing = await session.scalar(select(LedgerTransfer).where(LedgerTransfer.idempotency_key == key))
    if existing is not None:
        same = (existing.debit_account, existing.credit_account, existing.amount_micros, existing.kind) == (
            debit,
            credit,
            amount,
            kind,
        )
        if not same:
            raise TransferConflict(f"transfer key {key!r} was already used for another movement")
        return TransferResult(existing.id, replayed=True)

    source = accounts[debit]
    if source.kind != "external" and source.balance_micros < amount:
        raise InsufficientFunds(f"{debit} holds {source.balance_micros}, needs {amount}")

    row = LedgerTransfer(
        idempotency_key=key,
        kind=kind,
        debit_account=debit,
        credit_account=credit,
        amount_micros=amount,
        order_id=order_id,
        actor=actor,
        reason=reason,
    )
    session.add(row)
    await session.flush()
    await session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.name == debit)
        .values(balance_micros=LedgerAccount.balance_micros - amount)
    )
    await session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.name == credit)
        .values(balance_micros=LedgerAccount.balance_micros + amount)
    )
    return TransferResult(row.id, replayed=False)


@dataclass(frozen=True)
class Breach:
    what: str
    detail: str


async def check_invariants(session: AsyncSession) -> list[Breach]:
    """Prove the ledger's invariants on a live database; an empty list means it is sound."""
    breaches: list[Breach] = []
    rows = await session.execute(
        text(
            """
            WITH moved AS (
                SELECT account, SUM(delta) AS net FROM (
                    SELECT credit_account AS account, amount_micros AS delta FROM ledger_transfers
                    UNION ALL
                    SELECT debit_account, -amount_micros FROM ledger_transfers
                ) t GROUP BY account
            )
            SELECT a.name, a.balance_micros, COALESCE(m.net, 0) AS net
            FROM ledger_accounts a LEFT JOIN moved m ON m.account = a.name
            WHERE a.balance_micros <> COALESCE(m.net, 0)
            """
        )
    )
    for name, bal, net in rows:
        breaches.append(Breach("balance_mismatch", f"{name}: balance {bal} but transfers sum to {net}"))

    negative = await session.execute(
        select(LedgerAccount.name, LedgerAccount.balance_micros).where(
            LedgerAccount.kind != "external", LedgerAccount.balance_micros < 0
        )
    )
    for name, bal in negative:
        breaches.append(Breach("negative_balance", f"{name}: {bal}"))

    total = await session.scalar(text("SELECT COALESCE(SUM(balance_micros), 0) FROM ledger_accounts"))
    if total != 0:
        breaches.append(Breach("unbalanced", f"all balances sum to {total}, not 0"))

    open_escrow = await session.execute(
        text(
            """
            SELECT o.id, a.balance_micros FROM orders o
            JOIN ledger_accounts a ON a.name = 'escrow:' || o.id
            WHERE o.phase = 'closed' AND a.balance_micros <> 0
            """
        )
    )
    for order_id, bal in open_escrow:
        breaches.append(Breach("closed_order_escrow", f"order {order_id} is closed with {bal} in escrow"))

    over_refunded = await session.execute(
        text(
            """
            SELECT o.id, o.charge_micros, SUM(t.amount_micros) FROM orders o
            JOIN ledger_transfers t ON t.order_id = o.id AND t.kind = 'refund'
            GROUP BY o.id, o.charge_micros HAVING SUM(t.amount_micros) > o.charge_micros
            """
        )
    )
    for order_id, charge, refunded in over_refunded:
        breaches.append(
            Breach("over_refunded", f"order {order_id}: refunded {refunded} of a {charge} charge")
        )
    return breaches
