"""Listening sockets bound once and handed over.

A port picked by binding, closing and binding again later is a race with every other program on the
machine. Instead the process that chooses the port binds it and keeps the socket: a parent hands it to a
child (`subprocess.Popen(pass_fds=...)` and `--fd N`), a test hands it to the server it starts in process.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: any free port) and listening; OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def port_of(sock: socket.socket) -> int:
    """The port a socket is bound to: the one the kernel chose when it was bound to port 0."""
    return int(sock.getsockname()[1])


def inherited(fd: int) -> socket.socket:
    """The listening socket a parent handed over as file descriptor `fd`."""
    try:
        sock = socket.socket(fileno=fd)  # family and type read from the descriptor itself
    except OSError as exc:
        raise SystemExit(f"--fd {fd}: not an open socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise SystemExit(f"--fd {fd}: not a listening TCP socket")
    return sock


def serve_asgi(app: Any, *, host: str, port: int, fd: int | None = None, **options: Any) -> None:
    """Serve an ASGI app with uvicorn on the inherited socket `fd`, or else on host:port.

    `uvicorn.run(fd=...)` would label the socket AF_UNIX and so misread client addresses (the API throttles
    by them): the socket is rebuilt from its descriptor here and passed to uvicorn as a socket.
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, **options)
    server = uvicorn.Server(config)
    sockets = None
    if fd is not None:
        sockets = [inherited(fd)]
        host, port = sockets[0].getsockname()[:2]
        log.info("serving on http://%s:%s (socket handed over as fd %s)", host, port, fd)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
        server.run(sockets=sockets)
    if not server.started:  # as uvicorn.run: a start-up that failed is a failed process
        raise SystemExit(3)
