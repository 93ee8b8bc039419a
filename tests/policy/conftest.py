"""Every lifecycle test ends with the ledger's invariants proven on its database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import ledger
from store.db import make_engine, make_sessionmaker


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The database's sessions, as everywhere; the test fails if it left the ledger unsound."""
    engine = make_engine(db_url, pool_size=20)
    try:
        made = make_sessionmaker(engine)
        yield made
        async with made() as session:
            assert await ledger.check_invariants(session) == []
    finally:
        await engine.dispose()
