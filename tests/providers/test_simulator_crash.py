"""The simulator survives SIGKILL: a real `backoffice simulator --state-file` process is killed outright
after answering, restarted, and still holds every order and refill it answered; no id comes out twice.
The test binds the simulator's socket once and hands it to both processes (`--fd`): the restart serves the
same port with no chance for another program to take it in between."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from backoffice.sockets import listen, port_of

ROOT = Path(__file__).resolve().parents[2]
KEY = "sim-demo-key"
LINK = "https://instagram.com/crash.test"


@asynccontextmanager
async def simulator(
    state_file: Path, sock: socket.socket
) -> AsyncIterator[tuple[httpx.AsyncClient, subprocess.Popen[bytes]]]:
    fd = sock.fileno()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [
            sys.executable,
            "-m",
            "backoffice.cli",
            "simulator",
            "--fd",
            str(fd),
            "--state-file",
            str(state_file),
        ],
        pass_fds=(fd,),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_of(sock)}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await http.get("/sim/orders")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, "the simulator exited"
                    assert time.monotonic() < deadline, "the simulator did not start"
                    await asyncio.sleep(0.1)
            yield http, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait, 10)


async def _v2(http: httpx.AsyncClient, **params: str) -> object:
    response = await http.post("/api/v2", data={"key": KEY, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def _add(http: httpx.AsyncClient, **extra: str) -> int:
    answer = await _v2(http, action="add", service="101", link=LINK, quantity="100", **extra)
    assert isinstance(answer, dict), answer
    assert "order" in answer, answer
    return int(answer["order"])


async def test_a_killed_simulator_keeps_its_orders_and_never_reissues_an_id(tmp_path: Path) -> None:
    state_file = tmp_path / "simulator.sqlite3"
    with listen("127.0.0.1", 0) as sock:
        async with simulator(state_file, sock) as (http, proc):
            first = [await _add(http) for _ in range(5)]
            keyed = await _add(http, idempotency_key="crash-1")
            await http.post("/sim/clock/advance", json={"seconds": 3600})  # every order completes
            refill = await _v2(http, action="refill", order=str(first[0]))
            assert isinstance(refill, dict)
            refill_id = int(refill["refill"])
            canceled = await _add(http)
            assert await _v2(http, action="cancel", orders=str(canceled)) == [
                {"order": canceled, "cancel": 1}
            ]
            proc.send_signal(signal.SIGKILL)  # no shutdown hook runs
            await asyncio.to_thread(proc.wait, 10)

        async with simulator(state_file, sock) as (http, _):
            kept = {o["order"]: o for o in (await http.get("/sim/orders")).json()}
            assert set(kept) == {*first, keyed, canceled}
            assert kept[first[1]]["status"] == "Completed"  # the clock kept its advance
            assert kept[canceled]["status"] == "Canceled"
            assert await _add(http, idempotency_key="crash-1") == keyed  # a retried add finds its order
            assert await _v2(http, action="refill_status", refill=str(refill_id)) in (
                {"status": "Pending"}, {"status": "In progress"}, {"status": "Completed"},
            )  # fmt: skip
            more = [await _add(http) for _ in range(5)]
            await http.post("/sim/clock/advance", json={"seconds": 25 * 3600})
            again = await _v2(http, action="refill", order=str(first[0]))
    issued = [*first, keyed, canceled, *more]
    assert len(set(issued)) == len(issued)
    assert min(more) > max([*first, keyed, canceled])
    assert isinstance(again, dict)
    assert int(again["refill"]) > refill_id
