"""Mass orders: many orders in one request, each line its own order with its own outcome.

The panels' text form is one `service_id|link|quantity` per line. Each line goes through the single-order
intake on its own (its own transaction, funds checked under the ledger's locks), so a bad line refuses
only itself.
"""

from __future__ import annotations

from dataclasses import dataclass

MASS_ORDER_LIMIT = 100  # lines in one mass order, as API v2 takes up to 100 ids in one call
MASS_TEXT_LIMIT = 300_000  # characters of the text form: 100 lines of the longest links and then some


@dataclass(frozen=True)
class MassLine:
    """One line as written: its number (1-based, as the client counts lines) and its fields as text."""

    line: int
    fields: dict[str, object]


@dataclass(frozen=True)
class MassLineRefusal:
    line: int
    code: str
    message: str


def _number(text: str) -> int | None:
    """An ASCII decimal integer, or None (`int` would also read full-width digits and underscores)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def parse_mass_text(text: str) -> list[MassLine | MassLineRefusal]:
    """The text form's lines, blank lines skipped and numbered as the client sees them.

    The service id is the first field and the quantity the last, so a link that itself holds a `|` is
    kept whole.
    """
    parsed: list[MassLine | MassLineRefusal] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        service, sep, rest = raw.partition("|")
        link, sep2, quantity = rest.rpartition("|")
        if not (sep and sep2):
            parsed.append(MassLineRefusal(n, "bad_line", "a line is service_id|link|quantity"))
            continue
        service_id, units = _number(service), _number(quantity)
        if service_id is None:
            parsed.append(MassLineRefusal(n, "bad_line", "the service id is not a number"))
        elif units is None:
            parsed.append(MassLineRefusal(n, "bad_line", "the quantity is not a number"))
        else:
            parsed.append(MassLine(n, {"service_id": service_id, "link": link.strip(), "quantity": units}))
    return parsed


def mass_size_refusal(lines: int) -> tuple[str, str] | None:
    """Why a mass order of this many lines is refused as a whole, or None."""
    if lines == 0:
        return ("no_lines", "a mass order needs at least one line")
    if lines > MASS_ORDER_LIMIT:
        return ("too_many_lines", f"a mass order takes at most {MASS_ORDER_LIMIT} lines, not {lines}")
    return None


def mass_line_key(batch_key: str, line: int) -> str:
    """The idempotency key of one line: the batch's key and the line's number, so a retried batch
    replays each line's order instead of placing it again."""
    return f"{batch_key}#{line}"
