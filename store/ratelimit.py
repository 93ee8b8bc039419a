"""A provider's rate limit, held across every worker process: one token bucket row per provider.

Each request takes a token in one statement under the row's lock: the bucket refills at `rate` per second
up to `burst`, and a request that finds it empty reserves the next token anyway (the count goes below
zero) and waits until that token is due. So N workers together send at most `rate` requests a second, in
the order they asked, and no caller polls the database while it waits.
"""

from __future__ import annotations

import asyncio
import math

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import autocommit

_TAKE = text(
    """
    INSERT INTO provider_rate_limits AS b (provider_id, tokens, refreshed_at)
    VALUES (:provider, :burst - 1, clock_timestamp())
    ON CONFLICT (provider_id) DO UPDATE SET
        tokens = LEAST(:burst, b.tokens + :rate * EXTRACT(EPOCH FROM clock_timestamp() - b.refreshed_at)) - 1,
        refreshed_at = clock_timestamp()
    RETURNING tokens
    """
)


async def take_token(session: AsyncSession, provider_id: int, rate: float, burst: int) -> float:
    """Take a token (or reserve the next one); returns how many seconds to wait before sending."""
    tokens = float(await session.scalar(_TAKE, {"provider": provider_id, "rate": rate, "burst": burst}) or 0)
    return -tokens / rate if tokens < 0 else 0.0


class SharedTokenBucket:
    """At most `rate` requests a second to one provider, from all workers together (bursts of `burst`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider_id: int,
        rate: float,
        burst: int | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._sessions, self.provider_id, self.rate = sessions, provider_id, rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate))

    async def acquire(self) -> None:
        async with self._sessions() as session:
            await autocommit(session)  # one statement: its own transaction, one round trip
            wait = await take_token(session, self.provider_id, self.rate, self.burst)
        if wait > 0:
            await asyncio.sleep(wait)
