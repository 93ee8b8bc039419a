"""What text the back office accepts: one rule for every door (REST, API v2, the CLI, workflow messages).

PostgreSQL's UTF-8 text cannot hold NUL, and a lone surrogate cannot be encoded at all; control characters
have no business in names, links or reasons (only multi-line fields such as comments keep line breaks and
tabs). A text that breaks the rule is refused at the door, before anything is written.
"""

from __future__ import annotations

import unicodedata

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
