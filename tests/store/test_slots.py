"""Provider slots on a real PostgreSQL (store/slots.py): FIFO places, one slot an order, a retried claim
that changes nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import slots
from store.db import transaction
from store.models import ProviderSlot
from support import open_shop, place, set_capacity
from workflows.models import OrderInput


async def _claim(sessions: async_sessionmaker[AsyncSession], order: OrderInput) -> tuple[int | None, int]:
    async with transaction(sessions) as session:
        return await slots.claim(
            session, order.order_id, f"order-{order.order_id}", [r.provider_id for r in order.routes]
        )


async def _rows(sessions: async_sessionmaker[AsyncSession], order: OrderInput) -> set[tuple[int, bool]]:
    async with sessions() as session:
        result = await session.execute(
            select(ProviderSlot.provider_id, ProviderSlot.granted_at).where(
                ProviderSlot.order_id == order.order_id
            )
        )
        return {(provider_id, granted is not None) for provider_id, granted in result}


async def test_a_slot_at_the_first_route_with_room_and_no_place_elsewhere(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 100)
    alpha, beta = (r.provider_id for r in order.routes)
    await set_capacity(sessions, alpha, 0)
    assert await _claim(sessions, order) == (beta, 0)  # alpha is full: the second route takes it
    assert await _rows(sessions, order) == {(beta, True)}
    await set_capacity(sessions, alpha, 5)  # a retried claim keeps its slot and joins no queue
    assert await _claim(sessions, order) == (beta, 0)
    assert await _rows(sessions, order) == {(beta, True)}


async def test_waiters_keep_their_places_and_a_release_wakes_the_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, routes=[{"provider": "alpha", "service": "a1"}])
    first, second, third = [await place(sessions, shop, 100) for _ in range(3)]
    alpha = first.routes[0].provider_id
    await set_capacity(sessions, alpha, 1)
    assert await _claim(sessions, first) == (alpha, 0)
    assert await _claim(sessions, second) == (None, 1)
    assert await _claim(sessions, third) == (None, 2)
    assert await _claim(sessions, third) == (None, 2)  # asking again keeps the place
    async with sessions() as session:
        assert await slots.queue_position(session, third.order_id) == 2
        assert await slots.queue_position(session, first.order_id) is None  # holding, not waiting
    async with transaction(sessions) as session:
        woken = await slots.release(session, first.order_id, None)
    assert woken == [f"order-{second.order_id}"]  # one slot freed: the first in line, not the third
    assert await _claim(sessions, third) == (None, 1)  # the second has not taken it yet: still ahead
    assert await _claim(sessions, second) == (alpha, 0)
    assert await _rows(sessions, first) == set()
