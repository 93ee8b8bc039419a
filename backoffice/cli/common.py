"""What the command groups share: where the database and Temporal are, argument types, JSON output."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from backoffice.settings import Settings

if TYPE_CHECKING:
    from typing import TypeAlias

    from sqlalchemy.ext.asyncio import AsyncSession

    # What add_subparsers() returns, which each group adds its commands to (argparse names no public type).
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")
Command = Callable[[Settings, argparse.Namespace], int]


def _dev_info(settings: Settings) -> dict[str, Any]:
    info = settings.data_dir / "dev.json"
    return dict(json.loads(info.read_text())) if info.exists() else {}


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or else the running dev stack's (so `backoffice keys create` works beside make run)."""
    return settings.database_url or _dev_info(settings).get("database_url") or settings.require_database_url()


def temporal_settings(settings: Settings) -> Settings:
    """TEMPORAL_ADDRESS, or else the running dev stack's."""
    if settings.temporal_address:
        return settings
    info = _dev_info(settings)
    return settings.model_copy(update={"temporal_address": info.get("temporal_address")})


async def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work` in one transaction on its own engine, closed after."""
    from store.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(database_url(settings), pool_size=1, name="backoffice-cli")
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def timestamp(text: str) -> datetime:
    """An ISO date or date-time for --from/--to; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text)
        # In UTC, as the database compares it; a time past year 9999 there cannot be queried at all.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time in years 1-9999: {text!r}") from exc


def text(value: str) -> str:
    """A text argument under the rule every door applies (workflows/text.py): argparse refuses it, exit 2."""
    from workflows.text import text_problem

    if (problem := text_problem(value)) is not None:
        raise argparse.ArgumentTypeError(f"text with {problem} is not accepted")
    return value


def idempotency_key(value: str) -> str:
    """An idempotency key under the API's rule (api/schemas.py: 1-200 printable ASCII characters, no
    spaces), so a key from the command line fits where the API's keys go."""
    from pydantic import TypeAdapter, ValidationError

    from api.schemas import IdempotencyKey

    try:
        return str(TypeAdapter(IdempotencyKey).validate_python(value))
    except ValidationError:
        raise argparse.ArgumentTypeError(
            "an idempotency key is 1-200 printable ASCII characters without spaces"
        ) from None


_MONEY = re.compile(r"-?[0-9]{1,7}(\.[0-9]{1,6})?")


def money(value: str) -> str:
    """Money as `--amount` takes it: ASCII digits only (Decimal alone would read "٢٥" as 25)."""
    if not _MONEY.fullmatch(value.strip()):
        raise argparse.ArgumentTypeError(f"not an amount with at most 6 decimals: {value!r}")
    return value


def message_command(
    parent: Subcommands,
    name: str,
    help: str,
    func: Command,
    *,
    target: str,
    why: str,
) -> argparse.ArgumentParser:
    """A command that sends a message to an order (`target` order_id) or to a provider's orders
    (provider_id): who sends it and why are required, as every door requires them."""
    command = parent.add_parser(name, help=help)
    command.add_argument(target, type=int)
    command.add_argument(
        "--actor", required=True, type=text, help="who sends it (ops:<name>, support:<name>)"
    )
    command.add_argument("--reason", required=True, type=text, help=why)
    command.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer")
    command.add_argument("--json", action="store_true")
    command.set_defaults(func=func)
    return command
