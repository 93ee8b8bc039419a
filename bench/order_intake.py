"""Order intake and completion on the embedded stack, as `make run` starts it.

Starts `backoffice dev` on free ports (port 0) in a scratch folder, places N orders with C in flight through
`POST /v1/orders`, then waits for every order to close. Prints intake latency (p50/p95/max), intake
throughput, the time until all orders completed, and the memory (RSS) of the api and worker processes.

    .venv/bin/python bench/order_intake.py --orders 200 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    """For the Temporal CLI only: an external binary that takes no socket, so its port is a guess."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stack(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict]:  # type: ignore[type-arg]
    args = [sys.executable, "-m", "backoffice.cli", "dev", "--data-dir", str(data_dir)]
    # Port 0: `backoffice dev` binds any free port and hands it over; the Temporal CLI binds its own.
    args += ["--api-port", "0", "--simulator-port", "0", "--worker-metrics-port", "0"]
    args += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
    log = open(data_dir / "stack.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env={"LOG_LEVEL": "WARNING", **_env()}
    )
    deadline = time.monotonic() + 120
    while not (data_dir / "dev.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((data_dir / "stack.log").read_text()[-3000:])
        time.sleep(0.2)
    return proc, json.loads((data_dir / "dev.json").read_text())


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "LOG_LEVEL")}


async def run(info: dict, orders: int, concurrency: int) -> None:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {info['keys']['storefront']}"}
    async with httpx.AsyncClient(base_url=info["api_url"], headers=headers, timeout=60) as http:
        customer = (await http.post("/v1/customers", json={"name": "bench"})).json()
        await http.post(
            f"/v1/customers/{customer['id']}/deposits",
            json={"amount": "100000"},
            headers={"Idempotency-Key": "bench"},
        )
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        ids: list[int] = []

        async def place(n: int) -> None:
            body = {
                "customer_id": customer["id"],
                "service_id": 1,
                "link": f"https://instagram.com/bench{n}",
                "quantity": 100,
            }
            async with gate:
                started = time.perf_counter()
                response = await http.post("/v1/orders", json=body, headers={"Idempotency-Key": f"bench-{n}"})
                latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            ids.append(response.json()["id"])

        t0 = time.perf_counter()
        await asyncio.gather(*(place(n) for n in range(orders)))
        intake = time.perf_counter() - t0
        open_ids = set(ids)
        while open_ids:
            for order_id in list(open_ids):
                if (await http.get(f"/v1/orders/{order_id}")).json()["phase"] == "closed":
                    open_ids.discard(order_id)
            await asyncio.sleep(0.5)
        done = time.perf_counter() - t0

    latencies.sort()
    ms = [x * 1000 for x in latencies]
    print(f"orders placed        {orders} with {concurrency} in flight")
    print(
        f"intake latency (ms)  p50 {statistics.median(ms):.1f}  p95 {ms[int(len(ms) * 0.95) - 1]:.1f}  "
        f"max {ms[-1]:.1f}"
    )
    print(f"intake throughput    {orders / intake:.1f} orders/s")
    print(f"all closed after     {done:.1f} s ({orders / done:.1f} orders/s end to end)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        proc, info = start_stack(Path(scratch))
        try:
            asyncio.run(run(info, args.orders, args.concurrency))
            for child in psutil.Process(proc.pid).children():
                cmd = child.cmdline()
                role = (
                    "temporal dev server"
                    if "temporal" in child.name()
                    else cmd[3]
                    if len(cmd) > 3
                    else cmd[0]
                )
                print(f"rss {role:<20} {child.memory_info().rss / 2**20:.0f} MiB")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
