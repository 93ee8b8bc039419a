"""Fault tests run the back office's processes one by one (see components.py) on a database of their own."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from components import FlakyLink, Running, Stack, catalog
from sqlalchemy.engine import make_url

from store import keys
from store.catalog import load_catalog
from store.customers import create_customer, deposit
from store.db import make_engine, make_sessionmaker, transaction

TEMPLATE_DB = "backoffice_template"  # tests/conftest.py's migrated template


def _url(url: str, database: str | None = None, driver: str | None = None) -> str:
    made = make_url(url)
    if database is not None:
        made = made.set(database=database)
    if driver is not None:
        made = made.set(drivername=driver)
    return made.render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return _url(url, driver="postgresql")


def _with_database(url: str, database: str) -> str:
    return _url(url, database=database)


@pytest.fixture(scope="module")
async def running(postgres_url: str, template_url: str) -> AsyncIterator[Running]:
    """The whole back office as separate processes, the worker reaching the simulator through a FlakyLink."""
    name = f"faults_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    url = _with_database(postgres_url, name)
    home = Path(tempfile.mkdtemp(prefix="backoffice-faults-"))
    stack = Stack(home, url)
    link = FlakyLink(stack.ports["simulator"])
    await link.start()
    engine = make_engine(url, pool_size=2)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            await load_catalog(session, catalog(f"http://127.0.0.1:{link.port}"))
            customer, _ = await create_customer(session, "Faulty")
            await deposit(session, customer.id, 1_000_000_000, key="faults-deposit", actor="test")
            made = {role: await keys.create_key(session, role) for role in ("storefront", "support", "ops")}
    finally:
        await engine.dispose()
    try:
        await stack.start()
        yield Running(stack, link, made, customer.id)
    finally:
        stack.stop()
        await link.close()
        admin = await asyncpg.connect(_asyncpg_dsn(postgres_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
