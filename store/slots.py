"""Provider capacity: each provider delivers at most `capacity` orders at once; the others wait FIFO.

A row per (order, provider) the order may use: waiting (`granted_at` null) or holding a slot. Claims and
releases on one provider serialise on an advisory lock taken in provider-id order, so two orders never take
the last slot together and a newer order never jumps the queue.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Provider, ProviderSlot


async def _lock(session: AsyncSession, provider_ids: list[int]) -> None:
    for provider_id in sorted(set(provider_ids)):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"slots:{provider_id}"}
        )


def _room_expr(provider_id: int) -> ColumnElement[int]:
    """Free slots at the provider (0 for an inactive or unknown one), as one expression: its capacity and
    the slots held are read from the same snapshot."""
    capacity = (
        select(Provider.capacity)
        .where(Provider.id == provider_id, Provider.active.is_(True))
        .scalar_subquery()
    )
    held = (
        select(func.count())
        .select_from(ProviderSlot)
        .where(ProviderSlot.provider_id == provider_id, ProviderSlot.granted_at.is_not(None))
        .scalar_subquery()
    )
    return func.greatest(func.coalesce(capacity, 0) - held, 0)


async def _room(session: AsyncSession, provider_id: int) -> int:
    return int(await session.scalar(select(_room_expr(provider_id))) or 0)


async def _beyond_room(session: AsyncSession, provider_id: int, row_id: int) -> int:
    """How many of the orders that queued at the provider before this row would still wait if the free
    slots went to them first, FIFO. Negative: this row itself gets a slot; otherwise its place is this + 1.
    One statement (under the claim's lock, the fewer round trips the shorter the queue behind it)."""
    ahead = (
        select(func.count())
        .select_from(ProviderSlot)
        .where(
            ProviderSlot.provider_id == provider_id,
            ProviderSlot.granted_at.is_(None),
            ProviderSlot.id < row_id,
        )
        .scalar_subquery()
    )
    return int(await session.scalar(select(ahead - _room_expr(provider_id))) or 0)


async def claim(
    session: AsyncSession, order_id: int, workflow_id: str, provider_ids: list[int]
) -> tuple[int | None, int]:
    """Take a slot at the first provider (in route order) with room for this order, or keep its place.

    Returns (provider granted, 0) or (None, queue position). A provider's free slots go to its first
    waiters in FIFO order. Idempotent: a retried claim finds the slot it was granted.
    """
    held = await session.scalar(
        select(ProviderSlot.provider_id).where(
            ProviderSlot.order_id == order_id,
            ProviderSlot.provider_id.in_(provider_ids),
            ProviderSlot.granted_at.is_not(None),
        )
    )
    if held is not None:
        return int(held), 0
    await _lock(session, provider_ids)
    for provider_id in provider_ids:
        await session.execute(
            insert(ProviderSlot)
            .values(order_id=order_id, provider_id=provider_id, workflow_id=workflow_id)
            .on_conflict_do_nothing()
        )
    result = await session.execute(
        select(ProviderSlot.provider_id, ProviderSlot.id).where(
            ProviderSlot.order_id == order_id, ProviderSlot.provider_id.in_(provider_ids)
        )
    )
    rows = {row.provider_id: row.id for row in result}
    positions: list[int] = []
    for provider_id in provider_ids:
        beyond = await _beyond_room(session, provider_id, rows[provider_id])
        if beyond < 0:
            await session.execute(
                update(ProviderSlot).where(ProviderSlot.id == rows[provider_id]).values(granted_at=func.now())
            )
            await session.execute(
                delete(ProviderSlot).where(
                    ProviderSlot.order_id == order_id, ProviderSlot.provider_id != provider_id
                )
            )
            return provider_id, 0
        positions.append(beyond + 1)
    return None, min(positions)


async def release(session: AsyncSession, order_id: int, provider_id: int | None) -> list[str]:
    """Give up the order's slot (and places) at a provider, or everywhere; returns the workflow ids of the
    waiters that now have room, so they can be woken at once."""
    where = [ProviderSlot.order_id == order_id]
    if provider_id is not None:
        where.append(ProviderSlot.provider_id == provider_id)
    freed = list(
        await session.scalars(delete(ProviderSlot).where(*where).returning(ProviderSlot.provider_id))
    )
    wake: list[str] = []
    for freed_provider in sorted(set(freed)):
        room = await _room(session, freed_provider)
        if room:
            wake += list(
                await session.scalars(
                    select(ProviderSlot.workflow_id)
                    .where(ProviderSlot.provider_id == freed_provider, ProviderSlot.granted_at.is_(None))
                    .order_by(ProviderSlot.id)
                    .limit(room)
                )
            )
    return wake


async def queue_position(session: AsyncSession, order_id: int) -> int | None:
    """The order's place in line for a provider slot (1 = next), or None when it is not waiting."""
    rows = (
        await session.execute(
            select(ProviderSlot.provider_id, ProviderSlot.id, ProviderSlot.granted_at).where(
                ProviderSlot.order_id == order_id
            )
        )
    ).all()
    if not rows or any(granted is not None for _, _, granted in rows):
        return None
    return min(
        [max(await _beyond_room(session, provider_id, row_id), 0) + 1 for provider_id, row_id, _ in rows]
    )
