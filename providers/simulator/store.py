"""The simulator's state on disk, so a SIGKILL loses nothing: SQLite in WAL mode, each change committed
before the answer that reports it leaves.

A real provider never hands out an order id twice, even when it crashes: the id counter is written in the
same transaction as the order it numbered. (WAL with synchronous=NORMAL survives the process dying at any
moment; only a power cut may lose the last commits.)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from providers.simulator.model import SimOrder, SimRefill, SimService
from providers.simulator.scenarios import Rule

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refills (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Meta:
    """What is kept beside the orders: the id counters, rules, offered services and the clock."""

    next_order: int
    next_refill: int
    rules: list[Rule]
    services: dict[str, SimService]
    clock_offset: float

    def rows(self) -> list[tuple[str, str]]:
        value: dict[str, Any] = {
            "next_order": self.next_order,
            "next_refill": self.next_refill,
            "rules": [asdict(r) for r in self.rules],
            "services": {k: asdict(v) for k, v in self.services.items()},
            "clock_offset": self.clock_offset,
        }
        return [(name, json.dumps(v)) for name, v in value.items()]

    @classmethod
    def of(cls, value: dict[str, Any]) -> Meta:
        return cls(
            next_order=value["next_order"],
            next_refill=value["next_refill"],
            rules=[Rule(**r) for r in value["rules"]],
            services={k: SimService(**v) for k, v in value["services"].items()},
            clock_offset=value["clock_offset"],
        )


@dataclass
class Saved:
    """The state as the store kept it; empty on a new file (no meta)."""

    orders: dict[int, SimOrder] = field(default_factory=dict)
    refills: dict[int, SimRefill] = field(default_factory=dict)
    idempotency: dict[str, int] = field(default_factory=dict)
    meta: Meta | None = None


def _order(data: dict[str, Any]) -> SimOrder:
    return SimOrder(**(data | {"service": SimService(**data["service"])}))


class SimStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One event loop uses it, whichever thread built the app.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def read(self) -> Saved:
        orders = [_order(json.loads(d)) for (d,) in self._db.execute("SELECT data FROM orders ORDER BY id")]
        refills = [
            SimRefill(**json.loads(d)) for (d,) in self._db.execute("SELECT data FROM refills ORDER BY id")
        ]
        keys = {k: int(i) for k, i in self._db.execute("SELECT key, id FROM idempotency")}
        meta = {n: json.loads(v) for n, v in self._db.execute("SELECT name, value FROM meta")}
        return Saved(
            orders={o.id: o for o in orders},
            refills={r.id: r for r in refills},
            idempotency=keys,
            meta=Meta.of(meta) if meta else None,
        )

    def write(
        self,
        meta: Meta,
        *,
        orders: Iterable[SimOrder] = (),
        refills: Iterable[SimRefill] = (),
        keys: Mapping[str, int] | None = None,
        everything: bool = False,
    ) -> None:
        """Write the given orders, refills and keys and the meta in one transaction; `everything` first
        forgets what was kept (after a reset), so the given ones are the whole state."""
        with self._db:  # BEGIN ... COMMIT, or ROLLBACK on an error
            self._db.execute("BEGIN")
            if everything:
                for table in ("orders", "refills", "idempotency"):
                    self._db.execute(f"DELETE FROM {table}")
            self._db.executemany(
                "INSERT OR REPLACE INTO orders (id, data) VALUES (?, ?)",
                [(o.id, json.dumps(asdict(o))) for o in orders],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO refills (id, data) VALUES (?, ?)",
                [(r.id, json.dumps(asdict(r))) for r in refills],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO idempotency (key, id) VALUES (?, ?)", list((keys or {}).items())
            )
            self._db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", meta.rows())

    def close(self) -> None:
        self._db.close()
