"""Provider capacity: each provider delivers at most `capacity` orders at once; the others wait FIFO.

A row per (order, provider) the order may use: waiting (`granted_at` null) or holding a slot. Claims on one
provider serialise on an advisory lock taken in provider-id order, so two orders never take the last slot
together and a newer order never jumps the queue. A release only deletes rows and names the waiters to
wake; they take the freed slot by claiming, under the lock.

The statements are plain SQL (the worker runs them for every order; docs/performance.md): the session's
pending objects are flushed first, as the ORM would, but objects it has loaded are not refreshed.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Free slots at :provider_id (0 for an inactive or unknown provider): its capacity and the slots held, read
# from one snapshot.
_ROOM = """
    greatest(
        coalesce((SELECT capacity FROM providers WHERE id = :provider_id AND active), 0)
        - (SELECT count(*) FROM provider_slots WHERE provider_id = :provider_id AND granted_at IS NOT NULL),
        0
    )
"""
# How many of the orders that queued at :provider_id before row :row_id would still wait if the free slots
# went to them first, FIFO. Negative: the row itself gets a slot; otherwise its place is this + 1.
_BEYOND_ROOM = (
    """
    (SELECT count(*) FROM provider_slots
     WHERE provider_id = :provider_id AND granted_at IS NULL AND id < :row_id)
    - """
    + _ROOM
)

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# The order's rows at the providers of its route, each written where missing, unless the order already
# holds a slot at one of them (a retried claim finds the slot it was granted, and joins no queue).
_JOIN = text(
    """
    WITH joined AS (
        INSERT INTO provider_slots (order_id, provider_id, workflow_id)
        SELECT :order_id, provider_id, :workflow_id
        FROM unnest(CAST(:provider_ids AS bigint[])) AS provider_id
        WHERE NOT EXISTS (
            SELECT FROM provider_slots
            WHERE order_id = :order_id AND provider_id = ANY(CAST(:provider_ids AS bigint[]))
                AND granted_at IS NOT NULL
        )
        ON CONFLICT ON CONSTRAINT provider_slots_order DO NOTHING
        RETURNING provider_id, id, granted_at
    )
    SELECT provider_id, id, granted_at FROM joined
    UNION ALL
    SELECT provider_id, id, granted_at FROM provider_slots
    WHERE order_id = :order_id AND provider_id = ANY(CAST(:provider_ids AS bigint[]))
    """
)
# The row's place at the provider; where that is a slot, the slot taken and the order's places at its other
# providers given up, in the same statement.
_TAKE = text(
    """
    WITH place AS (SELECT """
    + _BEYOND_ROOM
    + """ AS beyond
    ), taken AS (
        UPDATE provider_slots SET granted_at = now()
        WHERE id = :row_id AND (SELECT beyond FROM place) < 0
        RETURNING order_id
    ), given_up AS (
        DELETE FROM provider_slots
        WHERE order_id IN (SELECT order_id FROM taken) AND provider_id <> :provider_id
    )
    SELECT beyond FROM place
    """
)
_PLACE = text("SELECT " + _BEYOND_ROOM)
_LEAVE = text(
    "DELETE FROM provider_slots WHERE order_id = :order_id"
    " AND (provider_id = :provider_id OR CAST(:provider_id AS bigint) IS NULL) RETURNING provider_id"
)
# The first waiters at :provider_id that its free slots now admit.
_ADMITTED = text(
    "SELECT workflow_id FROM provider_slots WHERE provider_id = :provider_id AND granted_at IS NULL"
    " ORDER BY id LIMIT (SELECT " + _ROOM + ")"
)
_ROWS = text("SELECT provider_id, id, granted_at FROM provider_slots WHERE order_id = :order_id")


async def claim(
    session: AsyncSession, order_id: int, workflow_id: str, provider_ids: list[int]
) -> tuple[int | None, int]:
    """Take a slot at the first provider (in route order) with room for this order, or keep its place.

    Returns (provider granted, 0) or (None, queue position). A provider's free slots go to its first
    waiters in FIFO order. Idempotent: a retried claim finds the slot it was granted.
    """
    await session.flush()
    for provider_id in sorted(set(provider_ids)):
        await session.execute(_LOCK, {"key": f"slots:{provider_id}"})
    rows = (
        await session.execute(
            _JOIN, {"order_id": order_id, "workflow_id": workflow_id, "provider_ids": provider_ids}
        )
    ).all()
    held = [row.provider_id for row in rows if row.granted_at is not None]
    if held:
        return int(held[0]), 0
    row_ids = {row.provider_id: row.id for row in rows}
    positions: list[int] = []
    for provider_id in provider_ids:
        beyond = int(
            await session.scalar(_TAKE, {"provider_id": provider_id, "row_id": row_ids[provider_id]}) or 0
        )
        if beyond < 0:
            return provider_id, 0
        positions.append(beyond + 1)
    return None, min(positions)


async def release(session: AsyncSession, order_id: int, provider_id: int | None) -> list[str]:
    """Give up the order's slot (and places) at a provider, or everywhere; returns the workflow ids of the
    waiters that now have room, so they can be woken at once."""
    freed = await session.scalars(_LEAVE, {"order_id": order_id, "provider_id": provider_id})
    wake: list[str] = []
    for freed_provider in sorted(set(freed)):
        wake += list(await session.scalars(_ADMITTED, {"provider_id": freed_provider}))
    return wake


async def queue_position(session: AsyncSession, order_id: int) -> int | None:
    """The order's place in line for a provider slot (1 = next), or None when it is not waiting."""
    rows = (await session.execute(_ROWS, {"order_id": order_id})).all()
    if not rows or any(row.granted_at is not None for row in rows):
        return None
    places = [
        await session.scalar(_PLACE, {"provider_id": row.provider_id, "row_id": row.id}) for row in rows
    ]
    return min(max(int(place or 0), 0) + 1 for place in places)
