"""The books and the orders agree: what `backoffice check` finds about orders, beside the ledger's own
invariants (store/ledger.py `check_invariants`). Each finding names its order; none means they agree.

Whether an order's workflow still runs is asked of Temporal by the CLI; `running_orders` says which orders
should have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from workflows import policy
from workflows.models import Phase

# Phases in which an order waits for something that should come by itself: a slot, a run, a provider.
STUCK_PHASES = (Phase.QUEUED, Phase.DELIVERING, Phase.INTERRUPTED)
SETTLED_PHASES = (Phase.REFILL_WINDOW, Phase.CLOSED)
# A refund is booked a moment before the workflow projects it: newer refunds are not compared yet.
REFUND_GRACE = timedelta(minutes=1)


@dataclass(frozen=True)
class Finding:
    kind: str
    order_id: int
    detail: str


async def order_findings(session: AsyncSession, *, stuck_after: timedelta) -> list[Finding]:
    """Every disagreement between the read model, the ledger and the provider runs, by order then kind.

    - `escrow_after_settlement`: an order in `refill_window` or `closed` still holds money in escrow;
    - `stuck`: a queued, delivering or interrupted order past its next planned step (`next_action_at`, or
      its last change when it plans none) by more than `stuck_after`;
    - `refunded_mismatch`: the read model's `refunded` is not what the ledger refunded for the order;
    - `delivered_mismatch`: a settled order's `delivered` is not the sum its provider orders delivered
      (capped at the quantity);
    - `needs_attention`: a step failed for good and the order waits for ops (the note says why).
    """
    found: list[Finding] = []
    for query in (_escrow, _refunds, _deliveries, _attention):
        found += await query(session)
    found += await _stuck(session, stuck_after)
    return sorted(found, key=lambda f: (f.order_id, f.kind))


async def running_orders(session: AsyncSession) -> list[int]:
    """Orders whose workflow has reported and not closed them: each must have a running workflow."""
    rows = await session.execute(
        text("SELECT id FROM orders WHERE phase <> :closed AND state_version > 0 ORDER BY id"),
        {"closed": Phase.CLOSED},
    )
    return [int(r.id) for r in rows]


async def phases(session: AsyncSession, order_ids: list[int]) -> dict[int, str]:
    rows = await session.execute(
        text("SELECT id, phase FROM orders WHERE id = ANY(:ids)"), {"ids": order_ids}
    )
    return {int(r.id): str(r.phase) for r in rows}


async def _escrow(session: AsyncSession) -> list[Finding]:
    rows = await session.execute(
        text(
            """
            SELECT o.id, o.phase, a.balance_micros
            FROM orders o JOIN ledger_accounts a ON a.name = 'escrow:' || o.id
            WHERE o.phase = ANY(:settled) AND a.balance_micros <> 0
            """
        ),
        {"settled": list(SETTLED_PHASES)},
    )
    return [
        Finding(
            "escrow_after_settlement",
            r.id,
            f"{r.phase} but {policy.format_money(r.balance_micros)} is still in escrow",
        )
        for r in rows
    ]


async def _stuck(session: AsyncSession, stuck_after: timedelta) -> list[Finding]:
    rows = await session.execute(
        text(
            """
            SELECT id, phase, COALESCE(next_action_at, updated_at) AS since, next_action_at IS NULL AS idle
            FROM orders
            WHERE phase = ANY(:phases)
              AND COALESCE(next_action_at, updated_at) < now() - make_interval(secs => :seconds)
            """
        ),
        {"phases": list(STUCK_PHASES), "seconds": stuck_after.total_seconds()},
    )
    return [
        Finding(
            "stuck",
            r.id,
            f"{r.phase}, no progress since {r.since:%Y-%m-%d %H:%M:%S %Z}"
            + (" (its last change)" if r.idle else " (when it meant to act next)"),
        )
        for r in rows
    ]


async def _refunds(session: AsyncSession) -> list[Finding]:
    # What the customer got back is the sum of the order's `refund` transfers (escrow -> customer). A refund
    # after revenue was recognised first takes the money back from revenue into escrow (`reversal`), and the
    # refund transfer then carries the whole amount: reversals are not counted twice.
    rows = await session.execute(
        text(
            """
            WITH refunds AS (
                SELECT order_id, CAST(SUM(amount_micros) AS bigint) AS refunded, MAX(created_at) AS last
                FROM ledger_transfers WHERE kind = 'refund' AND order_id IS NOT NULL GROUP BY order_id
            )
            SELECT o.id, o.refunded_micros, COALESCE(r.refunded, 0) AS ledger
            FROM orders o LEFT JOIN refunds r ON r.order_id = o.id
            WHERE o.refunded_micros <> COALESCE(r.refunded, 0)
              AND (r.last IS NULL OR r.last < now() - make_interval(secs => :grace))
            """
        ),
        {"grace": REFUND_GRACE.total_seconds()},
    )
    return [
        Finding(
            "refunded_mismatch",
            r.id,
            f"the order says {policy.format_money(r.refunded_micros)} refunded, "
            f"the ledger {policy.format_money(r.ledger)}",
        )
        for r in rows
    ]


async def _deliveries(session: AsyncSession) -> list[Finding]:
    rows = await session.execute(
        text(
            """
            SELECT o.id, o.delivered, LEAST(o.quantity, COALESCE(SUM(COALESCE(s.delivered, 0)), 0)) AS runs,
                   COUNT(s.id) AS provider_orders
            FROM orders o LEFT JOIN provider_submissions s ON s.order_id = o.id
            WHERE o.phase = ANY(:settled)
            GROUP BY o.id
            HAVING o.delivered <> LEAST(o.quantity, COALESCE(SUM(COALESCE(s.delivered, 0)), 0))
            """
        ),
        {"settled": list(SETTLED_PHASES)},
    )
    return [
        Finding(
            "delivered_mismatch",
            r.id,
            f"the order says {r.delivered} delivered, its {r.provider_orders} provider order(s) {r.runs}",
        )
        for r in rows
    ]


async def _attention(session: AsyncSession) -> list[Finding]:
    rows = await session.execute(
        text("SELECT id, note FROM orders WHERE phase = :phase"), {"phase": Phase.NEEDS_ATTENTION}
    )
    return [Finding("needs_attention", r.id, r.note or "a step failed for good") for r in rows]
