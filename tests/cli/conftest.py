"""`backoffice` commands as ops type them, in process, against a real database and (for messages) the
Temporal dev server with the real worker, its provider the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ops_support import temporal_address
from temporalio.testing import WorkflowEnvironment

from backoffice import cli
from backoffice.settings import get_settings


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def said(self) -> str:
        """What the command told the operator on stderr, without the log lines (JSON objects)."""
        return "\n".join(line for line in self.err.splitlines() if not line.startswith("{")).strip()

    def audit(self) -> list[dict[str, Any]]:
        """The `backoffice.audit` lines the command logged (LOG_FORMAT=json, on stderr)."""
        return [json.loads(line) for line in self.err.splitlines() if '"backoffice.audit"' in line]


Backoffice = Callable[..., Awaitable[Ran]]


@pytest.fixture
def backoffice(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Backoffice]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_FORMAT", "json")

    def run(*argv: str) -> Ran:
        get_settings.cache_clear()  # the environment as the test left it
        with pytest.raises(SystemExit) as exit_:
            cli.main(list(argv))
        captured = capsys.readouterr()
        return Ran(int(exit_.value.code or 0), captured.out, captured.err)

    async def call(*argv: str) -> Ran:
        return await asyncio.to_thread(run, *argv)  # the CLI runs its own event loop

    yield call
    get_settings.cache_clear()


@pytest.fixture
def with_temporal(monkeypatch: pytest.MonkeyPatch, dev_server: WorkflowEnvironment) -> WorkflowEnvironment:
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_address(dev_server))
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_server.client.namespace)
    return dev_server
