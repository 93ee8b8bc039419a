"""A provider's rate limit holds across worker processes: the token bucket lives in PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.catalog import load_catalog
from store.db import make_engine, make_sessionmaker, transaction
from store.models import Provider
from store.ratelimit import SharedTokenBucket
from support import catalog


async def test_two_workers_together_send_no_more_than_the_rate(
    db_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(sessions) as session:
        await load_catalog(session, catalog())
        provider_id = await session.scalar(select(Provider.id).where(Provider.name == "alpha"))
    assert provider_id is not None
    # Two workers: two engines (two connection pools), each with its own bucket object for the provider.
    engines = [make_engine(db_url, pool_size=4) for _ in range(2)]
    buckets = [SharedTokenBucket(make_sessionmaker(e), provider_id, rate=20, burst=2) for e in engines]
    try:
        started = time.monotonic()
        await asyncio.gather(*(bucket.acquire() for bucket in buckets for _ in range(12)))
        elapsed = time.monotonic() - started
    finally:
        for engine in engines:
            await engine.dispose()
    # 24 requests at 20 a second with a burst of 2: at least 1.1 s together. Two buckets of their own
    # would have let them through in about half that.
    assert elapsed >= 1.05, elapsed


def test_a_rate_must_be_positive(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        SharedTokenBucket(sessions, 1, rate=0)
