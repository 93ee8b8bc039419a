"""Sockets bound once and handed over: a `backoffice` process serves the listening socket its parent bound
(`--fd N`), and `backoffice dev`'s check that a port is free is the bind that keeps it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backoffice.sockets import inherited, listen, port_of

BACKOFFICE = [sys.executable, "-m", "backoffice.cli"]


def test_a_request_sent_before_the_simulator_starts_is_answered_on_the_handed_socket() -> None:
    with listen("127.0.0.1", 0) as sock, socket.create_connection(("127.0.0.1", port_of(sock))) as early:
        # Nothing serves yet: the kernel holds the connection in the socket's backlog.
        early.sendall(b"GET /api/v2?action=balance&key=sim-demo-key HTTP/1.1\r\nHost: sim\r\n"
                      b"Connection: close\r\n\r\n")  # fmt: skip
        proc = subprocess.Popen(
            [*BACKOFFICE, "simulator", "--fd", str(sock.fileno())],
            pass_fds=(sock.fileno(),),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            early.settimeout(30)
            answer = b""
            while chunk := early.recv(65536):  # to the end: the server closes the connection
                answer += chunk
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b'{"balance":"1000.00","currency":"USD"}'), answer


def test_only_a_listening_tcp_socket_is_taken() -> None:
    file = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(SystemExit, match="not an open socket"):
            inherited(file)
    finally:
        os.close(file)
    with socket.socket() as idle:
        idle.bind(("127.0.0.1", 0))  # bound, not listening
        with pytest.raises(SystemExit, match="not a listening TCP socket"):
            inherited(idle.fileno())
    with listen("127.0.0.1", 0) as sock:
        taken = inherited(os.dup(sock.fileno()))
        assert port_of(taken) == port_of(sock)
        taken.close()


def _dev(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A Temporal address and a database that are never reached: the ports are bound before anything starts.
    env = os.environ | {"TEMPORAL_ADDRESS": "127.0.0.1:9", "DATABASE_URL": "postgresql+asyncpg://nowhere/x"}
    return subprocess.run(
        [*BACKOFFICE, "dev", "--data-dir", str(tmp_path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dev_refuses_a_busy_port_before_it_starts_anything(tmp_path: Path) -> None:
    with listen("127.0.0.1", 0) as taken:
        port = port_of(taken)
        refused = _dev(tmp_path, "--api-port", str(port), "--simulator-port", "0")
    assert refused.returncode == 1
    assert f"Cannot start: API port {port} already in use by another program." in refused.stderr
    assert not (tmp_path / "postgres").exists()


def test_dev_wants_a_number_for_the_temporal_ports(tmp_path: Path) -> None:
    refused = _dev(tmp_path, "--temporal-port", "0")
    assert refused.returncode == 1
    assert "--temporal-port and --ui-port need a port number" in refused.stderr
