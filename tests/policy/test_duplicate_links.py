"""The duplicate-link guard (docs/policy.md, "Duplicate links"): where a service denies link duplicates, a
link takes one active order of it at a time. Links are compared normalised (policy.link_key); the database
decides between intakes at once (the `orders_active_link` index), so two can never both pass."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import ledger
from store.db import transaction
from store.ledger import check_invariants
from store.models import Order
from store.orders import OrderRejected, OrderRequest, place_order
from support import SERVICE, Shop, open_shop
from workflows import policy

LOOSE = r"https?://(www\.)?instagram\.com/[A-Za-z0-9_.]{1,30}/?"


@pytest.mark.parametrize(
    "link",
    [
        "https://instagram.com/nasa",
        "http://instagram.com/nasa",
        "https://www.instagram.com/nasa",
        "https://instagram.com/nasa/",
        "HTTP://WWW.Instagram.COM/nasa//",
        "  https://instagram.com/nasa ",
    ],
)
def test_scheme_www_and_trailing_slashes_do_not_make_another_link(link: str) -> None:
    assert policy.link_key(link) == "instagram.com/nasa"


def test_the_path_and_query_still_tell_targets_apart() -> None:
    keys = {
        policy.link_key(link)
        for link in (
            "https://instagram.com/nasa",
            "https://instagram.com/NASA",
            "https://instagram.com/nasa.gov",
            "https://instagram.com/p/Abc123",
            "https://instagram.com/p/Abc123?img_index=2",
            "https://wwwx.instagram.com/nasa",
        )
    }
    assert len(keys) == 6


async def _attempt(
    sessions: async_sessionmaker[AsyncSession], shop: Shop, link: str, key: str, hold: float
) -> int | str:
    """One intake in a transaction of its own, kept open for `hold` seconds so the others overlap it."""
    try:
        async with transaction(sessions) as session:
            order, _ = await place_order(
                session, shop.caller, OrderRequest(shop.customer_id, SERVICE, link, 100), key
            )
            await asyncio.sleep(hold)
            return order.id
    except OrderRejected as refused:
        return f"{refused.status} {refused.code}: {refused.message}"


async def test_intakes_at_once_for_one_link_take_exactly_one_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, deny_link_duplicates=True, link_pattern=LOOSE)
    links = ["https://instagram.com/nasa", "http://www.instagram.com/nasa/", "https://instagram.com/nasa/"]
    outcomes = await asyncio.gather(
        *(_attempt(sessions, shop, links[i % 3], f"k{i}", hold=0.3) for i in range(6))
    )
    placed = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, str)]
    assert (len(placed), refused) == (1, [f"409 duplicate_link: {policy.DUPLICATE_LINK[1]}"] * 5)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
        assert await check_invariants(session) == []
        customer = await ledger.balance(session, ledger.customer_account(shop.customer_id))
    assert customer == 100_000_000 - 100_000  # charged once: 100 units at 1.00 per 1000


async def test_the_guard_is_per_service_and_only_where_it_is_asked_for(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions, link_pattern=LOOSE)  # service 10 allows duplicates
    first = await _attempt(sessions, shop, "https://instagram.com/nasa", "a", hold=0)
    second = await _attempt(sessions, shop, "https://instagram.com/nasa/", "b", hold=0)
    assert isinstance(first, int)
    assert isinstance(second, int)
    async with sessions() as session:
        keys = list(await session.scalars(select(Order.link_key)))
    assert keys == [None, None]  # no key is kept where no guard needs it
