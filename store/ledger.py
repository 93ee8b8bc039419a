"""Double-entry ledger operations. Every transfer is idempotent by its key and balanced in one transaction.

Callers pass an open session inside a transaction; balances change only here, under row locks taken in a
fixed order (account name), so concurrent transfers on one account serialise instead of deadlocking.
Balances move by conditional `UPDATE ... SET balance = balance +/- amount` under those locks, never by
writing back a value read earlier; the database's CHECK refuses a negative customer, escrow or revenue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import TRANSFER_KINDS, LedgerAccount, LedgerTransfer, Order

EXTERNAL = "external"
REVENUE = "revenue"

# Which kind of account each kind of transfer may debit and credit. `transfer` refuses anything else and
# `check_invariants` reports any row that slipped past it.
TRANSFER_ROUTES: dict[str, frozenset[tuple[str, str]]] = {
    "deposit": frozenset({("external", "customer")}),
    "charge": frozenset({("customer", "escrow")}),
    "revenue": frozenset({("escrow", "revenue")}),  # delivery recognised
    "refund": frozenset({("escrow", "customer")}),
    "reversal": frozenset({("revenue", "escrow")}),  # recognised revenue taken back to refund it
    "adjustment": frozenset({("external", "customer"), ("customer", "external")}),  # admin, with a reason
}
assert set(TRANSFER_ROUTES) == set(TRANSFER_KINDS)

_LAST_ID = 2**63 - 1
KEY_LENGTH = 200  # ledger_transfers.idempotency_key


def _digest(key: str) -> str:
    return f"sha256 {hashlib.sha256(key.encode()).hexdigest()}"


def _fitted(key: str) -> str:
    """`key` where the column holds it, else `sha256 <its digest>`. The digest form has a space, which no
    key of ours or a caller's has (api/schemas.py:IdempotencyKey, applied by the API, the console and the
    CLI), so it never equals a plain key; and every key that fitted before keeps its form, so a replay of
    a transfer written before this rule still finds it."""
    return key if len(key) <= KEY_LENGTH else _digest(key)


def caller_key(scope: str, key: str) -> str:
    """A transfer's key made from a caller's idempotency key (up to 200 characters itself): `<scope>:<key>`,
    or its digest form where that is too long for the column."""
    return _fitted(f"{scope}:{key}")


def reversal_key(key: str) -> str:
    """The key of the reversal that pays for the refund with key `key`: `<key>:reversal`, or the digest of
    `key` with the suffix where that is too long (a refund key of up to 200 characters fits; its reversal
    may not)."""
    plain = f"{key}:reversal"
    return plain if len(plain) <= KEY_LENGTH else f"{_digest(key)}:reversal"


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


_ENSURE = text(
    "INSERT INTO ledger_accounts (name, kind, balance_micros) VALUES (:name, :kind, 0) ON CONFLICT DO NOTHING"
)


async def ensure_account(session: AsyncSession, name: str, kind: str) -> None:
    await session.execute(_ENSURE, {"name": name, "kind": kind})


async def balance(session: AsyncSession, name: str) -> int:
    value = await session.scalar(select(LedgerAccount.balance_micros).where(LedgerAccount.name == name))
    return int(value or 0)


# Each account once, in name order, locked; what they hold once locked.
_LOCK = text(
    "SELECT name, kind, balance_micros FROM ledger_accounts WHERE name = ANY(CAST(:names AS text[]))"
    " ORDER BY name FOR UPDATE"
)


async def _lock(session: AsyncSession, names: Iterable[str]) -> dict[str, Any]:
    """Lock accounts in name order (the one global order, so no two transactions wait on each other).

    Returns each account's row (name, kind, balance_micros) as it is once locked.
    """
    wanted = sorted(set(names))
    locked = await session.execute(_LOCK, {"names": wanted})
    accounts = {row.name: row for row in locked}
    missing = set(wanted) - accounts.keys()
    if missing:
        raise LedgerError(f"unknown ledger account(s): {', '.join(sorted(missing))}")
    return accounts


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
    if kind not in TRANSFER_ROUTES:
        raise ValueError(f"unknown transfer kind {kind!r}")
    await session.flush()  # plain SQL below: what the caller added (an account, an order) goes first
    # Lock both accounts first: a concurrent transfer with the same key waits here and then sees ours.
    accounts = await _lock(session, (debit, credit))
    source, target = accounts[debit], accounts[credit]
    refused: LedgerError | None = None
    if (source.kind, target.kind) not in TRANSFER_ROUTES[kind]:
        refused = LedgerError(f"a {kind} cannot move money from {debit} to {credit}")
    elif source.kind != "external" and source.balance_micros < amount:
        refused = InsufficientFunds(f"{debit} holds {source.balance_micros}, needs {amount}")
    if refused is not None:
        # A replay is answered as one even where the movement could not happen now.
        if (replayed := await _replayed(session, key, debit, credit, amount, kind)) is not None:
            return replayed
        raise refused
    moved = await session.scalar(
        _MOVE,
        {
            "key": key,
            "kind": kind,
            "debit": debit,
            "credit": credit,
            "amount": amount,
            "order_id": order_id,
            "actor": actor,
            "reason": reason,
        },
    )
    if moved is None:  # the key was used before: a replay, or a transfer this one waited for
        if (replayed := await _replayed(session, key, debit, credit, amount, kind)) is None:
            raise LedgerError(f"transfer key {key!r} conflicts but names no transfer")
        return replayed
    return TransferResult(int(moved), replayed=False)


# The transfer row and both balances in one statement; nothing at all when the key was used before.
_MOVE = text(
    """
    WITH moved AS (
        INSERT INTO ledger_transfers
            (idempotency_key, kind, debit_account, credit_account, amount_micros, order_id, actor, reason)
        VALUES (:key, :kind, :debit, :credit, CAST(:amount AS bigint), :order_id, :actor, :reason)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    ), debited AS (
        UPDATE ledger_accounts SET balance_micros = balance_micros - CAST(:amount AS bigint)
        WHERE name = :debit AND EXISTS (SELECT FROM moved)
    ), credited AS (
        UPDATE ledger_accounts SET balance_micros = balance_micros + CAST(:amount AS bigint)
        WHERE name = :credit AND EXISTS (SELECT FROM moved)
    )
    SELECT id FROM moved
    """
)
_APPLIED = text(
    "SELECT id, debit_account, credit_account, amount_micros, kind FROM ledger_transfers"
    " WHERE idempotency_key = :key"
)


async def _replayed(
    session: AsyncSession, key: str, debit: str, credit: str, amount: int, kind: str
) -> TransferResult | None:
    """The transfer already made under `key`, if any; TransferConflict when it moved something else."""
    applied = (await session.execute(_APPLIED, {"key": key})).first()
    if applied is None:
        return None
    if tuple(applied)[1:] != (debit, credit, amount, kind):
        raise TransferConflict(f"transfer key {key!r} was already used for another movement")
    return TransferResult(int(applied.id), replayed=True)


async def refund_order(
    session: AsyncSession,
    *,
    order_id: int,
    customer_id: int,
    amount: int,
    key: str,
    actor: str,
    reason: str,
) -> TransferResult:
    """Refund `amount` of an order to its customer, once per `key`, also after its revenue was recognised.

    When the escrow holds less than `amount`, the difference first comes back from revenue (kind
    "reversal", key `<key>:reversal`), but never more than this order's own recognised revenue: an order
    cannot be refunded beyond its charge. Both transfers happen in the caller's transaction. The order
    must be the customer's (LedgerError otherwise).
    """
    owner = await session.scalar(select(Order.customer_id).where(Order.id == order_id))
    if owner != customer_id:
        raise LedgerError(f"order {order_id} does not belong to customer {customer_id}")
    escrow, customer = escrow_account(order_id), customer_account(customer_id)
    await ensure_account(session, REVENUE, "revenue")
    # All three accounts up front, in the global order: the refund locks `customer:` after `escrow:` and
    # `revenue`, which would otherwise be out of order.
    accounts = await _lock(session, (customer, escrow, REVENUE))
    done = await session.scalar(select(LedgerTransfer.id).where(LedgerTransfer.idempotency_key == key))
    shortfall = amount - accounts[escrow].balance_micros
    if done is None and shortfall > 0:
        recognised = await session.scalar(
            text(
                """
                SELECT COALESCE(SUM(CASE kind WHEN 'revenue' THEN amount_micros ELSE -amount_micros END), 0)
                FROM ledger_transfers WHERE order_id = :order_id AND kind IN ('revenue', 'reversal')
                """
            ),
            {"order_id": order_id},
        )
        if shortfall > int(recognised or 0):
            raise InsufficientFunds(
                f"order {order_id} holds {accounts[escrow].balance_micros} in escrow and {recognised} "
                f"recognised; cannot refund {amount}"
            )
        await transfer(
            session,
            key=reversal_key(key),
            kind="reversal",
            debit=REVENUE,
            credit=escrow,
            amount=shortfall,
            actor=actor,
            reason=reason,
            order_id=order_id,
        )
    return await transfer(
        session,
        key=key,
        kind="refund",
        debit=escrow,
        credit=customer,
        amount=amount,
        actor=actor,
        reason=reason,
        order_id=order_id,
    )


@dataclass(frozen=True)
class StatementLine:
    transfer_id: int
    created_at: datetime
    kind: str
    amount_micros: int  # signed: positive credits the account, negative debits it
    balance_after_micros: int
    order_id: int | None
    actor: str
    reason: str


async def statement(
    session: AsyncSession, account: str, *, before: int | None = None, limit: int = 50
) -> tuple[list[StatementLine], int | None]:
    """One page of an account's transfers, newest first, each with the balance right after it.

    Page by transfer id: pass the returned cursor as `before` for the next (older) page; None on the last.
    The running balance is the account's balance less every later transfer, in one statement (one
    snapshot). Transfers on one account are written under its row lock, so their ids follow the order in
    which they were applied.
    """
    rows = await session.execute(
        text(
            """
            WITH page AS (
                SELECT * FROM (
                    (SELECT id, created_at, kind, order_id, actor, reason, amount_micros AS delta
                     FROM ledger_transfers WHERE credit_account = :account AND id < :before
                     ORDER BY id DESC LIMIT :n)
                    UNION ALL
                    (SELECT id, created_at, kind, order_id, actor, reason, -amount_micros AS delta
                     FROM ledger_transfers WHERE debit_account = :account AND id < :before
                     ORDER BY id DESC LIMIT :n)
                ) both_sides
                ORDER BY id DESC LIMIT :n
            ),
            later AS (
                SELECT COALESCE(SUM(CASE WHEN credit_account = :account
                                         THEN amount_micros ELSE -amount_micros END), 0) AS net
                FROM ledger_transfers
                WHERE (credit_account = :account OR debit_account = :account) AND id >= :before
            )
            SELECT page.id, page.created_at, page.kind, page.delta, page.order_id, page.actor, page.reason,
                   a.balance_micros - later.net - COALESCE(SUM(page.delta) OVER (
                       ORDER BY page.id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                   AS balance_after
            FROM page CROSS JOIN later JOIN ledger_accounts a ON a.name = :account
            ORDER BY page.id DESC
            """
        ),
        {"account": account, "before": _LAST_ID if before is None else before, "n": limit + 1},
    )
    lines = [
        StatementLine(
            transfer_id=r.id,
            created_at=r.created_at,
            kind=r.kind,
            amount_micros=int(r.delta),
            balance_after_micros=int(r.balance_after),
            order_id=r.order_id,
            actor=r.actor,
            reason=r.reason,
        )
        for r in rows
    ]
    more = len(lines) > limit
    lines = lines[:limit]
    return lines, (lines[-1].transfer_id if more else None)


@dataclass(frozen=True)
class Breach:
    what: str
    detail: str


async def check_invariants(session: AsyncSession) -> list[Breach]:
    """Prove the ledger's invariants on a live database; an empty list means it is sound.

    - `balance_mismatch`: an account's balance is not the sum of its transfers;
    - `negative_balance`: a customer, escrow or revenue account below 0;
    - `unbalanced`: all balances together are not 0 (each transfer is one debit and one equal credit);
    - `misdirected_transfer`: a transfer between the wrong kinds of account for its kind, or touching an
      escrow other than its order's, or a customer other than its order's;
    - `charge_mismatch`: an order's charge transfer differs from the charge on the order;
    - `over_refunded` / `over_reversed`: an order's refunds exceed its charge, or its reversals its revenue;
    - `closed_order_escrow`: a closed order still holds money in escrow;
    - `closed_order_unsettled`: a closed order's charge is not revenue - reversals + refunds.
    """
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
            ORDER BY a.name
            """
        )
    )
    for name, bal, net in rows:
        breaches.append(Breach("balance_mismatch", f"{name}: balance {bal} but transfers sum to {net}"))

    negative = await session.execute(
        select(LedgerAccount.name, LedgerAccount.balance_micros)
        .where(LedgerAccount.kind != "external", LedgerAccount.balance_micros < 0)
        .order_by(LedgerAccount.name)
    )
    for name, bal in negative:
        breaches.append(Breach("negative_balance", f"{name}: {bal}"))

    total = await session.scalar(text("SELECT COALESCE(SUM(balance_micros), 0) FROM ledger_accounts"))
    if total != 0:
        breaches.append(Breach("unbalanced", f"all balances sum to {total}, not 0"))

    routes = [(kind, d, c) for kind, pairs in TRANSFER_ROUTES.items() for d, c in sorted(pairs)]
    misdirected = await session.execute(
        text(
            """
            SELECT t.id, t.kind, t.debit_account, t.credit_account, t.order_id
            FROM ledger_transfers t
            JOIN ledger_accounts d ON d.name = t.debit_account
            JOIN ledger_accounts c ON c.name = t.credit_account
            LEFT JOIN orders o ON o.id = t.order_id
            WHERE NOT EXISTS (
                    SELECT 1 FROM unnest(CAST(:kinds AS text[]), CAST(:debits AS text[]),
                                         CAST(:credits AS text[])) AS r(kind, debit, credit)
                    WHERE r.kind = t.kind AND r.debit = d.kind AND r.credit = c.kind)
               OR (d.kind = 'escrow' AND t.debit_account IS DISTINCT FROM 'escrow:' || t.order_id)
               OR (c.kind = 'escrow' AND t.credit_account IS DISTINCT FROM 'escrow:' || t.order_id)
               OR (d.kind = 'customer' AND t.debit_account <> 'customer:' || o.customer_id)
               OR (c.kind = 'customer' AND t.credit_account <> 'customer:' || o.customer_id)
            ORDER BY t.id
            """
        ),
        {
            "kinds": [r[0] for r in routes],
            "debits": [r[1] for r in routes],
            "credits": [r[2] for r in routes],
        },
    )
    for tid, kind, debit, credit, order_id in misdirected:
        breaches.append(
            Breach(
                "misdirected_transfer",
                f"transfer {tid}: a {kind} from {debit} to {credit} (order {order_id})",
            )
        )

    orders = await session.execute(
        text(
            """
            WITH per_order AS (
                SELECT order_id,
                       COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'charge'), 0) AS charged,
                       COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'revenue'), 0) AS recognised,
                       COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'reversal'), 0) AS reversed,
                       COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'refund'), 0) AS refunded
                FROM ledger_transfers WHERE order_id IS NOT NULL GROUP BY order_id
            ),
            books AS (
                SELECT o.id, o.phase, o.charge_micros AS charge,
                       COALESCE(p.charged, 0) AS charged, COALESCE(p.recognised, 0) AS recognised,
                       COALESCE(p.reversed, 0) AS reversed, COALESCE(p.refunded, 0) AS refunded,
                       COALESCE(a.balance_micros, 0) AS escrow
                FROM orders o
                LEFT JOIN per_order p ON p.order_id = o.id
                LEFT JOIN ledger_accounts a ON a.name = 'escrow:' || o.id
            )
            SELECT * FROM books
            WHERE charged <> charge OR refunded > charge OR reversed > recognised
               OR (phase = 'closed' AND (escrow <> 0 OR charge <> recognised - reversed + refunded))
            ORDER BY id
            """
        )
    )
    for o in orders:
        if o.charged != o.charge:
            breaches.append(
                Breach("charge_mismatch", f"order {o.id}: charged {o.charged} but the order says {o.charge}")
            )
        if o.refunded > o.charge:
            breaches.append(
                Breach("over_refunded", f"order {o.id}: refunded {o.refunded} of a {o.charge} charge")
            )
        if o.reversed > o.recognised:
            breaches.append(
                Breach("over_reversed", f"order {o.id}: reversed {o.reversed} of {o.recognised} recognised")
            )
        if o.phase == "closed" and o.escrow != 0:
            breaches.append(
                Breach("closed_order_escrow", f"order {o.id} is closed with {o.escrow} in escrow")
            )
        if o.phase == "closed" and o.charge != o.recognised - o.reversed + o.refunded:
            breaches.append(
                Breach(
                    "closed_order_unsettled",
                    f"order {o.id} is closed: charge {o.charge} but revenue {o.recognised} - reversals "
                    f"{o.reversed} + refunds {o.refunded} = {o.recognised - o.reversed + o.refunded}",
                )
            )
    return breaches
