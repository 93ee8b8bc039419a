"""What text the back office accepts: one rule for every door (REST, API v2, the CLI, workflow messages).

PostgreSQL's UTF-8 text cannot hold NUL, and a lone surrogate cannot be encoded at all; control characters
have no business in names, links or reasons (only multi-line fields such as comments keep line breaks and
tabs). A text that breaks the rule is refused at the door, before anything is written.
"""

from __future__ import annotations

import unicodedata
from decimal import ROUND_DOWN, Decimal, InvalidOperation

MICROS = 1_000_000  # money is integer micro-units (1e-6 of the currency) everywhere inside

_MULTILINE_CONTROLS = frozenset("\n\r\t")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` cannot be accepted, or None when it can."""
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if category == "Cs":
            return f"a lone surrogate (U+{ord(char):04X}) at position {position}"
        if category == "Cc" and not (multiline and char in _MULTILINE_CONTROLS):
            return f"a control character (U+{ord(char):04X}) at position {position}"
    return None


def is_ascii_digits(value: str) -> bool:
    """Digits 0-9 only: `str.isdigit` and the regex `\\d` also take Arabic-Indic or full-width digits."""
    return value.isascii() and value.isdigit()


def format_money(micros: int) -> str:
    """Micro-units as an exact decimal string with 6 decimals ("0.278190")."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    return f"{sign}{whole}.{frac:06d}"


def parse_money(text: str) -> int:
    """A decimal string ("12.5") as micro-units; refuses more than 6 decimals instead of rounding money,
    and digits other than ASCII 0-9 (`Decimal` would read Arabic-Indic or full-width digits)."""
    if not isinstance(text, str) or not text.strip().lstrip("+-").replace(".", "", 1).isascii():
        raise ValueError(f"not a decimal amount: {text!r}")
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise ValueError(f"not a decimal amount: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a decimal amount: {text!r}")
    micros = value * MICROS
    if micros != micros.to_integral_value(rounding=ROUND_DOWN):
        raise ValueError(f"more than 6 decimals: {text!r}")
    return int(micros)


def parse_percent_bp(text: str) -> int:
    """A percentage ("2.5") as basis points (250)."""
    value = Decimal(str(text)) * 100
    if value != value.to_integral_value() or not 0 <= value <= 10_000:
        raise ValueError(f"not a percentage with at most 2 decimals: {text!r}")
    return int(value)
