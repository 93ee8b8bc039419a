"""Engine and session factory. One dialect everywhere: PostgreSQL through asyncpg."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def async_url(url: str) -> str:
    """Accept a plain `postgresql://` URL (as ops write it) and pick the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


# A pooled connection idle for longer than this is pinged before use (a dead one is replaced); one used
# more recently is handed out as it is. SQLAlchemy's own pre-ping costs every checkout three round trips
# (BEGIN, a ping, ROLLBACK), and a request takes a connection two or three times: under load the pings
# were a third of intake's round trips. HikariCP skips validation the same way (aliveBypassWindowMs).
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(url: str, *, pool_size: int = 10, name: str = "backoffice") -> AsyncEngine:
    """The engine of one process; `name` is its application_name (pg_stat_activity, the server's log)."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": {"application_name": name}},
    )
    event.listen(engine.sync_engine, "connect", _note_use)
    event.listen(engine.sync_engine, "checkin", _note_use)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


def _note_use(_dbapi_connection: Any, record: Any) -> None:
    record.info["last_used"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if time.monotonic() - record.info.get("last_used", 0.0) <= PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as exc:  # the pool discards this connection and hands out another
        raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on any error."""
    async with sessions() as session, session.begin():
        yield session


async def autocommit(session: AsyncSession) -> None:
    """Run the session's statements until its next commit each as a transaction of its own: no BEGIN and
    no COMMIT or ROLLBACK round trips. For single statements that need no transaction around them."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
