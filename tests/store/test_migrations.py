"""The migrations build exactly the schema the models describe, so every schema change needs a migration."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from store.db import async_url
from store.models import Base


async def test_models_and_migrations_agree(db_url: str) -> None:
    engine = create_async_engine(async_url(db_url))
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
