"""Which failures of a step no retry can mend: one classifier for every activity's database work.

Temporal retries an activity until it succeeds. That is right for a lost connection, a serialization
failure or a deadlock, and wrong for a row PostgreSQL will never take (a NUL byte, a number out of range, a
broken check constraint) or for a bug: those would retry forever while the order holds its money lock. They
are raised as a non-retryable `ApplicationError` of type STEP_FAILED, and the workflow sends the order to
`needs_attention`. Anything not known to be permanent stays retryable: the workflow's retry policies cap
the interval, and a transient fault must not park an order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from sqlalchemy import exc as sa_exc
from temporalio.exceptions import ApplicationError

from workflows.errors import STEP_FAILED
from workflows.text import text_problem

Kind = Literal["permanent", "transient"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# SQLSTATE classes (the first two characters) whose errors repeat on every retry.
_PERMANENT_CLASSES = {
    "0A",  # feature not supported
    "21",  # cardinality violation
    "22",  # data exception: invalid byte sequence (NUL), numeric out of range, string too long, ...
    "23",  # integrity constraint violation, except the races below
    "2F",  # SQL routine exception
    "42",  # syntax error or access rule violation: undefined column or table, a bad statement
    "44",  # WITH CHECK OPTION violation
    "54",  # program limit exceeded: the same statement exceeds it again
    "P0",  # a PL/pgSQL RAISE (a trigger refusing the row)
}
# Integrity violations that a concurrent writer causes: the retry finds the other's row and goes on.
_RACES = {"23505", "23P01"}  # unique violation, exclusion violation
# Python errors that mean the code or its input is wrong (a UnicodeEncodeError, a pydantic or asyncpg
# DataError are ValueErrors too).
_PROGRAMMING = (TypeError, AttributeError, LookupError, ValueError, AssertionError, NotImplementedError)
# SQLAlchemy's own refusals of a statement before it reaches the database.
_STATEMENT = (sa_exc.ArgumentError, sa_exc.CompileError, sa_exc.NoResultFound, sa_exc.MultipleResultsFound)
_MESSAGE_LIMIT = 300
# asyncpg quotes the value it could not send ("invalid input for query argument $1: 'the text' (...)").
_ARGUMENT = re.compile(r"(invalid input for query argument \$\d+).*")


def _driver_chain(error: BaseException) -> list[BaseException]:
    """The error and, for a database error, what SQLAlchemy wrapped (`orig`) and the driver's causes. Only
    these: a provider error raised `from` a JSON ValueError is not a programming error of ours."""
    chain = [error]
    current = getattr(error, "orig", None) if isinstance(error, sa_exc.StatementError) else None
    while isinstance(current, BaseException) and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def sqlstate(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind an error, if a server answered one."""
    for link in _driver_chain(error):
        code = getattr(link, "sqlstate", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def classify(error: BaseException) -> Kind:
    """Permanent: no retry can succeed. Transient: a retry may (and unknown errors are given that chance)."""
    code = sqlstate(error)
    if code is not None:
        return "permanent" if code[:2] in _PERMANENT_CLASSES and code not in _RACES else "transient"
    chain = _driver_chain(error)
    if any(isinstance(link, sa_exc.DisconnectionError | sa_exc.TimeoutError | OSError) for link in chain):
        return "transient"  # a dropped connection, a timeout, an exhausted pool
    if any(isinstance(link, (*_PROGRAMMING, *_STATEMENT)) for link in chain):
        return "permanent"  # a bug, or a value the driver cannot even encode (a lone surrogate)
    if isinstance(error, sa_exc.StatementError) and not isinstance(error, sa_exc.DBAPIError):
        return "permanent"  # refused while the statement was being built: the same input fails again
    return "transient"


def _printable(text: str) -> str:
    """The message as the read model can hold it: it reaches the order's timeline and search attributes."""
    shown = "".join(c if text_problem(c) is None else f"\\x{ord(c):02x}" for c in text)
    return shown[:_MESSAGE_LIMIT]


def describe(error: BaseException) -> str:
    """A short account of the error: its kind and first line; never the statement or its parameters, which
    SQLAlchemy appends and which may hold customer data."""
    code = sqlstate(error)
    answered = [link for link in _driver_chain(error) if getattr(link, "sqlstate", None)]
    if answered:
        root = answered[-1]  # the driver's own error, under SQLAlchemy's wrappers
    elif isinstance(error, sa_exc.StatementError) and error.orig is not None:
        root = error.orig
    else:
        root = error
    first = _ARGUMENT.sub(r"\1", str(root).split("\n", 1)[0])
    return _printable(f"{type(root).__name__}{f' (SQLSTATE {code})' if code else ''}: {first}")


def step_failed(step: str, error: BaseException) -> ApplicationError:
    return ApplicationError(
        f"{step} failed for good: {describe(error)}", type=STEP_FAILED, non_retryable=True
    )


@contextmanager
def permanent_failures(step: str) -> Iterator[None]:
    """Around a step's database work: a permanent failure leaves as non-retryable STEP_FAILED, everything
    else (ApplicationErrors the step raises on purpose, transient faults) as it came."""
    try:
        yield
    except ApplicationError:
        raise
    except Exception as error:
        if classify(error) == "permanent":
            raise step_failed(step, error) from error
        raise


def fails_for_good(step: str) -> Callable[[F], F]:
    """permanent_failures around a whole activity (under `@activity.defn`, which reads its signature)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            with permanent_failures(step):
                return await fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
