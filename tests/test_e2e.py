"""End to end: the embedded stack as `make run` starts it, driven through HTTP only. Its API, simulator
and worker metrics run on port 0 (any free port: `backoffice dev` binds them and hands the sockets to its
children); the ports they got are read from dev.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from ops_support import temporal_port

pytestmark = pytest.mark.e2e
BACKOFFICE = [sys.executable, "-m", "backoffice.cli"]


def _stack_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    return env | {"LOG_LEVEL": "WARNING"}


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("stack")
    args = [
        *BACKOFFICE, "dev", "--data-dir", str(data_dir),
        "--api-port", "0", "--simulator-port", "0", "--worker-metrics-port", "0",
        "--temporal-port", str(temporal_port()), "--ui-port", str(temporal_port()),
    ]  # fmt: skip
    log = open(data_dir / "stack.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_stack_env())
    info_path = data_dir / "dev.json"
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not info_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the stack did not start:\n{(data_dir / 'stack.log').read_text()[-4000:]}")
            time.sleep(0.25)
        family = _family(psutil.Process(proc.pid))
        info = json.loads(info_path.read_text())
        yield {"info": info, "proc": proc, "data_dir": data_dir, "family": family, "args": args}
    finally:
        family = family or _family(psutil.Process(proc.pid))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for p in family:
                    p.kill()
        log.close()


def _poll(http: httpx.Client, url: str, headers: dict[str, str], until: set[str], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(url, headers=headers).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def test_an_order_travels_through_every_layer(stack: dict[str, Any]) -> None:
    info = stack["info"]
    assert set(info) >= {
        "api_url", "docs_url", "console_url", "simulator_url", "worker_metrics_url", "temporal_ui_url",
        "temporal_address", "namespace", "task_queue", "database_url", "keys", "demo_customer_id",
    }  # fmt: skip
    assert set(info["keys"]) == {"storefront", "support", "ops", "admin", "customer"}
    storefront = {"Authorization": f"Bearer {info['keys']['storefront']}"}
    with httpx.Client(base_url=info["api_url"], timeout=10) as http:
        assert http.get("/docs").status_code == 200
        assert info["console_url"] == f"{info['api_url']}/console"
        assert "API key" in http.get(info["console_url"], follow_redirects=True).text  # its sign-in page
        customer = http.post("/v1/customers", json={"name": "E2E"}, headers=storefront).json()
        deposit = http.post(
            f"/v1/customers/{customer['id']}/deposits",
            json={"amount": "5.00"},
            headers={**storefront, "Idempotency-Key": "e2e-deposit"},
        )
        assert deposit.status_code == 201, deposit.text

        placed = http.post(
            "/v1/orders",
            json={
                "customer_id": customer["id"],
                "service_id": 1,
                "link": "https://instagram.com/e2e.test",
                "quantity": 300,
            },
            headers={**storefront, "Idempotency-Key": "e2e-order-1"},
        )
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["charge"] == "0.270000"  # 300 at 0.90 per 1000

        done = _poll(http, f"/v1/orders/{order['id']}", storefront, {"Completed", "Partial", "Canceled"})
        # Service 1 refills for 30 days: the order waits in its refill window, its money settled.
        assert (done["status"], done["phase"], done["delivered"], done["remains"]) == (
            "Completed",
            "refill_window",
            300,
            0,
        )
        balance = http.get(f"/v1/customers/{customer['id']}", headers=storefront).json()["balance"]
        assert balance == "4.730000"

        demo = {"Authorization": f"Bearer {info['keys']['customer']}"}
        mine = http.get(f"/v1/customers/{info['demo_customer_id']}", headers=demo)
        assert mine.status_code == 200

    env = _stack_env() | {"DATABASE_URL": info["database_url"]}
    check = subprocess.run(
        [*BACKOFFICE, "ledger", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ledger is sound" in check.stdout


def test_the_ports_it_reports_are_the_ones_that_answer(stack: dict[str, Any]) -> None:
    """Asked for port 0, `backoffice dev` reports the ports the kernel chose, in dev.json and its banner."""
    info = stack["info"]
    urls = (info["api_url"], info["simulator_url"], info["worker_metrics_url"])
    assert all(not url.split("/")[2].endswith(":0") for url in urls), urls
    banner = (Path(stack["data_dir"]) / "stack.log").read_text()
    assert all(url in banner for url in urls), banner
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{info['api_url']}/healthz").status_code == 200
        probe = {"action": "balance", "key": "sim-demo-key"}
        assert "balance" in http.get(f"{info['simulator_url']}/api/v2", params=probe).json()
        metrics = http.get(info["worker_metrics_url"])
        assert metrics.status_code == 200
        assert "# TYPE backoffice_provider_requests" in metrics.text  # the worker's own registry


def _role(proc: psutil.Process) -> str:
    """`api`, `worker`, ... for `python -m backoffice.cli <role>`; "" for anything else."""
    command = proc.cmdline()
    return command[command.index("backoffice.cli") + 1] if "backoffice.cli" in command[:-1] else ""


def test_two_api_processes_share_the_socket_and_the_worker_yields_the_cpu(stack: dict[str, Any]) -> None:
    """The dev stack's intake shape (docs/performance.md): two API processes on the one socket, which accept
    each other's console cookies, and a worker that runs at a lower CPU priority than the API."""
    family = [p for p in stack["family"] if p.is_running()]
    apis = [p for p in family if _role(p) == "api"]
    workers = [p for p in family if _role(p) == "worker"]
    assert len(apis) == 2
    assert [w.nice() for w in workers] == [10]
    assert {a.nice() for a in apis} == {0}
    info = stack["info"]
    fresh = httpx.Limits(max_keepalive_connections=0)  # each request on a new connection: either process
    with httpx.Client(base_url=info["api_url"], timeout=10, limits=fresh) as http:
        form = http.get("/console/sign-in")
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = http.post("/console/sign-in", data={"key": info["keys"]["support"], "csrf": csrf})
        assert signed.status_code == 303, signed.text
        pages = [http.get("/console/orders") for _ in range(20)]
    assert [p.status_code for p in pages] == [200] * 20


def test_a_second_instance_says_it_is_already_running(stack: dict[str, Any]) -> None:
    second = subprocess.run(stack["args"], env=_stack_env(), capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert "already running" in second.stderr + second.stdout


def test_stopping_leaves_no_process_behind(stack: dict[str, Any]) -> None:
    proc, family = stack["proc"], stack["family"]
    assert len(family) >= 5  # temporal dev server, simulator, worker, two APIs (postgres is its own daemon)
    postgres_pid = int((Path(stack["data_dir"]) / "postgres" / "postmaster.pid").read_text().split()[0])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []
    deadline = time.monotonic() + 10  # pg_ctl stop returns when the pid file goes, a moment before the exit
    while psutil.pid_exists(postgres_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(postgres_pid)
