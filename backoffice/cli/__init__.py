"""The `backoffice` command: the dev stack, the processes of a deployment, and operators' tools.

A module a command group (processes, catalog, keys, checks, orders, messages, providers), each adding its
commands to the parser; this one parses, runs the command and exits with its status.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import traceback

from backoffice.cli import catalog, checks, keys, messages, orders, processes, providers
from backoffice.logs import setup_logging
from backoffice.settings import get_settings

DESCRIPTION = "The `backoffice` command: the dev stack, the processes of a deployment, and operators' tools."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backoffice", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    processes.add_commands(sub)
    catalog.add_commands(sub)
    keys.add_commands(sub)
    checks.add_commands(sub)
    steer = sub.add_parser("orders", help="find, read and steer orders").add_subparsers(
        dest="what", required=True
    )
    orders.add_commands(steer)
    messages.add_commands(steer)
    providers.add_commands(sub)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the command; its exit status."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return int(args.func(settings, args))


def main(argv: list[str] | None = None) -> None:
    """The commands in process (tests): SystemExit with the command's status."""
    sys.exit(run(argv))


_exit_status = 0


def _exit_before_finalizing() -> None:
    """The last exit handler: flush, then end the process before the interpreter finalizes.

    The Temporal SDK's Rust runtime keeps threads that call into Python while the interpreter tears itself
    down; now and then that aborts the process (`Fatal Python error: PyGILState_Release`, exit 134) after
    the command has printed its result, and a script reads a failure for an action that succeeded. By now
    the command has closed its engines and clients, and the exit handlers registered after this one (the
    embedded PostgreSQL's cleanup, for one) have run: nothing is left for finalization to do but crash.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(_exit_status)


def console() -> None:
    """`backoffice` and `python -m backoffice.cli`: exits with the command's own status, always."""
    global _exit_status
    atexit.register(_exit_before_finalizing)  # before the command registers its own: so it runs last
    try:
        _exit_status = run()
    except SystemExit as exc:  # argparse (2), or a SystemExit("message") from the settings
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        _exit_status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _exit_status = 130
    except BaseException:  # anything at all: printed, and the status says it failed
        traceback.print_exc()
        _exit_status = 1
    sys.exit(_exit_status)


if __name__ == "__main__":
    console()
