"""The embedded stack the benchmark measures, and what every part shares: the clients, the demo customer,
waiting on the read model, an extra worker process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from store import keys
from store.catalog import load_catalog
from store.db import transaction
from store.keys import Caller

ROOT = Path(__file__).resolve().parent.parent

NO_REFILL = 2  # demo catalog: Instagram Followers, no refill, 100..50000
REFILL = 1  # demo catalog: 30-day refill
# The stack's own variables, which must not leak from the caller's shell into it.
STACK_VARIABLES = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE")


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    """For the Temporal CLI only: an external binary that takes no socket, so its port is a guess."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}


def start_stack(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`backoffice dev` on free ports in `data_dir`; returns the process and its dev.json."""
    args = [sys.executable, "-m", "backoffice.cli", "dev", "--data-dir", str(data_dir)]
    # Port 0: `backoffice dev` binds any free port and hands it over; the Temporal CLI binds its own.
    args += ["--api-port", "0", "--simulator-port", "0", "--worker-metrics-port", "0"]
    args += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
    log = open(data_dir / "stack.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_clean_env() | {"LOG_LEVEL": "WARNING"},
    )
    deadline = time.monotonic() + 120
    while not (data_dir / "dev.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((data_dir / "stack.log").read_text()[-3000:])
        time.sleep(0.2)
    return proc, json.loads((data_dir / "dev.json").read_text())


def stop_stack(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def stack_processes(stack: subprocess.Popen[bytes], role: str) -> list[psutil.Process]:
    """The stack's processes of one role: children of `backoffice dev`, `python -m backoffice.cli <role>`."""
    found = []
    for child in psutil.Process(stack.pid).children():
        try:
            command = child.cmdline()
        except psutil.Error:  # a short-lived child that ended since the listing
            continue
        if "backoffice.cli" in command and command[command.index("backoffice.cli") + 1 :][:1] == [role]:
            found.append(child)
    return found


def worker_process(stack: subprocess.Popen[bytes]) -> psutil.Process:
    """The stack's worker (`python -m backoffice.cli worker --metrics-fd N`)."""
    workers = stack_processes(stack, "worker")
    if not workers:
        raise SystemExit("no worker process under the dev stack")
    return workers[0]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system CPU the processes have used so far."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def cpu_by_role(stack: subprocess.Popen[bytes], data_dir: Path) -> dict[str, float]:
    """CPU seconds used so far by each part of the stack, and by the bench itself: where a figure's CPU
    went. PostgreSQL is its server process (from `postmaster.pid`; it detaches from `backoffice dev`), the
    backends alive now and those it has reaped, so a connection that closed keeps its CPU counted."""
    used: dict[str, float] = {}

    def add(role: str, processes: list[psutil.Process], *, reaped: bool = False) -> None:
        used.setdefault(role, 0.0)
        for process in processes:
            with contextlib.suppress(psutil.Error):  # a process that ended since the listing
                used[role] += cpu_seconds([process])
                if reaped:
                    times = process.cpu_times()
                    used[role] += times.children_user + times.children_system

    add("bench", [psutil.Process()])
    for role in ("api", "worker", "simulator"):
        add(role, stack_processes(stack, role))
    children = psutil.Process(stack.pid).children(recursive=True)
    add("temporal", [p for p in children if _name(p) == "temporal"])
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(psutil.Error, ValueError):
            server = psutil.Process(int(pid_file.read_text().split()[0]))
            add("postgres", [server], reaped=True)
            add("postgres", server.children())
    return used


def _name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return ""


def rss_mib(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Bench:
    """What the parts measure with: the stack's API, simulator, database and Temporal."""

    info: dict[str, Any]
    stack: subprocess.Popen[bytes]
    data_dir: Path
    http: httpx.AsyncClient
    sim: httpx.AsyncClient
    db: asyncpg.Pool
    sessions: async_sessionmaker[AsyncSession]  # the back office's own store code, in this process
    client: Client
    customer_id: int

    @property
    def task_queue(self) -> str:
        return str(self.info["task_queue"])

    @property
    def simulator_url(self) -> str:
        return str(self.sim.base_url).rstrip("/")

    async def place(self, service: int, n: str, quantity: int = 100, **extra: Any) -> httpx.Response:
        body = {
            "customer_id": self.customer_id,
            "service_id": service,
            "link": f"https://instagram.com/b{n}",
            "quantity": quantity,
        } | extra
        headers = {"Idempotency-Key": f"bench-{n}"}
        try:
            return await self.http.post("/v1/orders", json=body, headers=headers)
        except httpx.TransportError as exc:  # the key makes a second send the same order, as for a storefront
            say(f"    order bench-{n}: {type(exc).__name__} ({exc}); sent again under its key")
            return await self.http.post("/v1/orders", json=body, headers=headers)

    async def place_many(self, service: int, names: list[str], concurrency: int, **extra: Any) -> list[int]:
        """Place orders through the API, `concurrency` at a time; their ids."""
        gate = asyncio.Semaphore(concurrency)
        ids: list[int] = []

        async def one(n: str) -> None:
            async with gate:
                response = await self.place(service, n, **extra)
            response.raise_for_status()
            ids.append(response.json()["id"])

        await asyncio.gather(*(one(n) for n in names))
        return ids

    async def open_orders(self, ids: list[int] | None = None) -> int:
        if ids is None:
            return int(await self.db.fetchval("SELECT count(*) FROM orders WHERE phase <> 'closed'"))
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM orders WHERE phase <> 'closed' AND id = ANY($1)", ids
            )
        )

    async def count_in(self, phase: str, ids: list[int] | None = None) -> int:
        if ids is None:
            return int(await self.db.fetchval("SELECT count(*) FROM orders WHERE phase = $1", phase))
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM orders WHERE phase = $1 AND id = ANY($2)", phase, ids
            )
        )

    async def until_closed(self, ids: list[int] | None, what: str) -> None:
        async def closed() -> bool:
            return await self.open_orders(ids) == 0

        await until(closed, max(600.0, len(ids or ()) / 2), what)

    async def sim_now(self) -> float:
        """The simulator's clock (simulated seconds): advancing it by nothing is how its API reads it."""
        response = await self.sim.post("/sim/clock/advance", json={"seconds": 0})
        response.raise_for_status()
        return float(response.json()["now"])


async def add_service(b: Bench, base: int, **changes: Any) -> int:
    """A catalog service of the bench's own: demo service `base` (its index in the demo catalog) with
    `changes`, on the demo providers with room for every order (as `run` set them). Returns its id."""
    demo = json.loads(
        (ROOT / "store" / "demo_catalog.json").read_text().replace("{simulator_url}", b.simulator_url)
    )
    service = dict(demo["services"][base]) | changes
    providers = [p | {"capacity": 100_000} for p in demo["providers"]]
    async with transaction(b.sessions) as session:
        await load_catalog(session, {"providers": providers, "services": [service]})
    return int(service["id"])


async def storefront(b: Bench) -> Caller:
    """A storefront key's caller, for intake in this process (store.orders.place_order)."""
    async with transaction(b.sessions) as session:
        secret = await keys.create_key(session, "storefront", label="bench")
        caller = await keys.authenticate(session, secret)
    assert caller is not None
    return caller


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def pct(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# ------------------------------------------------------------------------------------------ more workers


async def workflow_pollers(b: Bench) -> set[str]:
    """The identities (pid@host) polling the order task queue for workflow tasks."""
    answer = await b.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=b.client.namespace,
            task_queue=TaskQueue(name=b.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {p.identity for p in answer.pollers}


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115
    argv = [sys.executable, "-m", "backoffice.cli", *command]
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


class ExtraWorker:
    """Another `backoffice worker` process against the stack's PostgreSQL and Temporal, as a deployment
    would add one: the same command and settings, pointed at the addresses in dev.json."""

    def __init__(self, b: Bench, name: str) -> None:
        self.b = b
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> psutil.Process:
        info = self.b.info
        env = _clean_env() | {
            "DATABASE_URL": info["database_url"],
            "TEMPORAL_ADDRESS": info["temporal_address"],
            "TEMPORAL_NAMESPACE": info["namespace"],
            "TEMPORAL_TASK_QUEUE": info["task_queue"],
            "WORKER_METRICS_PORT": "0",  # no /metrics: the stack's worker serves them
            "LOG_LEVEL": "WARNING",
        }
        before = await workflow_pollers(self.b)
        self.proc = await asyncio.to_thread(_spawn, ["worker"], env, self.b.data_dir / f"{self.name}.log")
        me = f"{self.proc.pid}@"

        async def polling() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit((self.b.data_dir / f"{self.name}.log").read_text()[-3000:])
            return any(p.startswith(me) for p in await workflow_pollers(self.b) - before)

        await until(polling, 60, f"{self.name} to poll the task queue")
        return psutil.Process(self.proc.pid)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful: running activities finish first
        await asyncio.to_thread(self.proc.wait, 60)
