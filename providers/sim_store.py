"""The simulator's state on disk, so a SIGKILL loses nothing: SQLite in WAL mode, each change committed
before the answer that reports it leaves.

A real provider never hands out an order id twice, even when it crashes: the id counter is written in the
same transaction as the order it numbered. (WAL with synchronous=NORMAL survives the process dying at any
moment; only a power cut may lose the last commits.)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refills (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Saved(Protocol):
    """What the store reads and writes of the simulator's state (providers.simulator.SimState)."""

    orders: dict[int, Any]
    refills: dict[int, Any]
    idempotency: dict[str, int]

    def meta(self) -> dict[str, Any]: ...


class SimStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One event loop uses it, whichever thread built the app.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int], dict[str, Any]]:
        """(orders, refills, idempotency keys, meta) as saved; empty on a new file."""
        orders = [json.loads(d) for (d,) in self._db.execute("SELECT data FROM orders ORDER BY id")]
        refills = [json.loads(d) for (d,) in self._db.execute("SELECT data FROM refills ORDER BY id")]
        keys = {k: int(i) for k, i in self._db.execute("SELECT key, id FROM idempotency")}
        meta = {n: json.loads(v) for n, v in self._db.execute("SELECT name, value FROM meta")}
        return orders, refills, keys, meta

    def write(
        self,
        state: Saved,
        *,
        orders: Iterable[int] = (),
        refills: Iterable[int] = (),
        keys: Iterable[str] = (),
        everything: bool = False,
    ) -> None:
        """Write the named orders, refills and keys, and the meta (counters, rules, services, clock), in one
        transaction; `everything` rewrites the whole state (after a reset)."""
        with self._db:  # BEGIN ... COMMIT, or ROLLBACK on an error
            self._db.execute("BEGIN")
            if everything:
                for table in ("orders", "refills", "idempotency"):
                    self._db.execute(f"DELETE FROM {table}")
                orders, refills, keys = state.orders, state.refills, state.idempotency
            self._db.executemany(
                "INSERT OR REPLACE INTO orders (id, data) VALUES (?, ?)",
                [(i, json.dumps(asdict(state.orders[i]))) for i in orders],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO refills (id, data) VALUES (?, ?)",
                [(i, json.dumps(asdict(state.refills[i]))) for i in refills],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO idempotency (key, id) VALUES (?, ?)",
                [(k, state.idempotency[k]) for k in keys],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                [(name, json.dumps(value)) for name, value in state.meta().items()],
            )

    def close(self) -> None:
        self._db.close()
