"""The back office's processes started one by one, so a test can kill and restart each of them.

`backoffice dev` runs its children itself and stops everything when one dies; fault tests need the opposite:
a Temporal dev server persisted in a file they can restart, and the simulator, worker and API as separate
`backoffice` processes they can SIGKILL. The simulator's, the API's and the worker's metrics sockets are
bound once here and handed to each start of their process (`--fd`), so a restart serves the same port.
A small TCP proxy between the worker and the simulator drops or
stalls connections on demand, the way a flaky network does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from ops_support import temporal_port

from backoffice.devstack import venv_binary
from backoffice.sockets import listen, port_of
from workflows import search_attributes as sa

BACKOFFICE = [sys.executable, "-m", "backoffice.cli"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Component:
    """One child process: started, killed (SIGKILL) or stopped (SIGTERM), and started again alike."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    pass_fds: tuple[int, ...] = ()  # the sockets it serves, handed over at every start
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=self.pass_fds,
        )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, in-flight activities and answers are lost."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


@dataclass
class Running:
    stack: Stack
    link: FlakyLink
    keys: dict[str, str]
    customer_id: int

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


Mode = Literal["pass", "reset", "blackhole"]


@dataclass
class FlakyLink:
    """A TCP proxy: `pass` forwards, `reset` drops every new connection at once after reading the request
    (the client cannot know whether it was processed), `blackhole` reads and never answers (a timeout)."""

    target_port: int
    mode: Mode = "pass"
    port: int = 0
    connections: dict[str, int] = field(default_factory=lambda: {"pass": 0, "reset": 0, "blackhole": 0})
    _server: asyncio.Server | None = None
    _held: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for writer in list(self._held):
            writer.close()
        if self._server is not None:
            self._server.close()

    def set(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "blackhole":
            for writer in list(self._held):  # stalled connections end when the link comes back
                writer.close()
            self._held.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        self.connections[mode] += 1
        if mode == "reset":
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(65536), timeout=1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.close()
            return
        if mode == "blackhole":
            self._held.add(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            self._held.discard(writer)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class Stack:
    """Temporal dev server (persisted in a file), simulator, worker and API against one database."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.database_url = database_url
        # Held for the stack's life: a process killed and started again serves the same socket.
        self.sockets = {name: listen("127.0.0.1", 0) for name in ("simulator", "api", "metrics")}
        self.ports = {"temporal": temporal_port()} | {n: port_of(s) for n, s in self.sockets.items()}
        self.temporal_address = f"127.0.0.1:{self.ports['temporal']}"
        self.api_url = f"http://127.0.0.1:{self.ports['api']}"
        self.simulator_url = f"http://127.0.0.1:{self.ports['simulator']}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
        env |= {
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "PYTHONPATH": str(ROOT),
        }
        self.env = env
        temporal_argv = [
            venv_binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1",
            "--port", str(self.ports["temporal"]), "--headless", "--log-level", "error",
            "--db-filename", str(home / "temporal.db"),
        ]  # fmt: skip
        for key in sa.ALL:
            temporal_argv += ["--search-attribute", f"{key.name}={sa.type_name(key)}"]
        self.temporal = Component("temporal", temporal_argv, env, home / "temporal.log")
        self.simulator = self._serving("simulator", [*BACKOFFICE, "simulator"], "--fd")
        self.worker = self._serving("worker", [*BACKOFFICE, "worker"], "--metrics-fd", "metrics")
        self.api = self._serving("api", [*BACKOFFICE, "api"], "--fd")

    def _serving(self, name: str, argv: list[str], flag: str, sock: str | None = None) -> Component:
        """A component handed its socket as `FLAG N` at every start."""
        fd = self.sockets[sock or name].fileno()
        return Component(name, [*argv, flag, str(fd)], self.env, self.home / f"{name}.log", (fd,))

    @property
    def components(self) -> list[Component]:
        return [self.temporal, self.simulator, self.worker, self.api]

    async def start_temporal(self) -> None:
        self.temporal.start()
        await wait_for_port(self.ports["temporal"], self.temporal)
        # The frontend accepts connections a moment before the namespace answers.
        from temporalio.client import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                client = await Client.connect(self.temporal_address)
                await client.count_workflows()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def start(self) -> None:
        await self.start_temporal()
        self.simulator.start()
        self.worker.start()
        self.api.start()
        await wait_http(f"{self.simulator_url}/api/v2?action=balance&key=probe", self.simulator)
        await wait_http(f"{self.api_url}/healthz", self.api)

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()
        for sock in self.sockets.values():
            sock.close()

    def ledger_check(self) -> subprocess.CompletedProcess[str]:
        return self._backoffice("ledger", "check")

    def check(self) -> subprocess.CompletedProcess[str]:
        """`backoffice check`: the ledger, and the books against the orders and their workflows."""
        return self._backoffice("check")

    def _backoffice(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*BACKOFFICE, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )


async def wait_for_port(port: int, component: Component, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not component.alive:
            raise RuntimeError(f"{component.name} exited:\n{component.tail()}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{component.name} did not listen on {port}:\n{component.tail()}")


async def wait_http(url: str, component: Component, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if not component.alive:
                raise RuntimeError(f"{component.name} exited:\n{component.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{component.name} did not answer at {url}:\n{component.tail()}")


def catalog(provider_url: str) -> dict[str, Any]:
    """Services that reach a terminal state quickly: no refill window (31, 32), or a refill service (33)
    for the idempotency tests. Provider `dedupe` accepts our idempotency key, `plain` does not."""

    def service(sid: int, provider: str, sim_service: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": sid,
            "name": f"Followers {sid} via {provider}",
            "category": "Instagram",
            "rate": "1.00",
            "min": 50,
            "max": 10000,
            "dripfeed": False,
            "cancel": True,
            "refill_days": 0,
            "tolerance_pct": "2",
            "pace_per_hour": 100000,
            "max_interruption_hours": 1,
            "link_fault_refund": "none",
            "link_pattern": r"https://(www\.)?instagram\.com/[A-Za-z0-9_.]{1,30}/?",
            "routes": [{"provider": provider, "service": sim_service}],
        } | extra

    providers = [
        {
            "name": name,
            "api_url": f"{provider_url}/api/v2",
            "api_key": "sim-demo-key",
            "capacity": 200,
            "poll_interval_seconds": 1,
            "accepts_idempotency_key": name == "dedupe",
        }
        for name in ("dedupe", "plain")
    ]
    return {
        "providers": providers,
        "services": [
            service(31, "dedupe", "102"),
            service(32, "plain", "102"),
            service(33, "dedupe", "101", refill_days=30, refill_max=1, refill_cooldown_hours=0),
        ],
    }
