"""What text the back office accepts: one rule for every door (REST, API v2, the CLI, workflow messages).

PostgreSQL's UTF-8 text cannot hold NUL, and a lone surrogate cannot be encoded at all; control characters
have no business in names, links or reasons (only multi-line fields such as comments keep line breaks and
tabs). A text that breaks the rule is refused at the door, before anything is written.
"""

from __future__ import annotations

import re
import unicodedata

from workflows.models import OrderParameters, ServiceType

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


# ---------------------------------------------------------------------------------- a type's parameters

LIST_PARAMETERS = ("comments", "usernames", "hashtags", "keywords")  # one item a line
WORD_PARAMETERS = ("hashtag", "username")  # one word
PARAMETERS = (*LIST_PARAMETERS, *WORD_PARAMETERS, "media", "answer_number")
MAX_LINES = 10_000
MAX_LINE = 2_200  # characters in one line (the longest comment Instagram takes)
MAX_ANSWER = 100
_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def service_type(name: str) -> ServiceType | None:
    """A type as a catalog or provider spells it ("custom comments", "Custom Comments"), or None."""
    wanted = " ".join(name.split()).casefold()
    return next((kind for kind in ServiceType if kind.casefold() == wanted), None)


def parse_parameters(texts: dict[str, str]) -> OrderParameters | tuple[str, str]:
    """The type parameters of an order from their texts (a door joins a list it was sent with line
    breaks), or why one cannot be taken. Lists split on `\n` or `\r\n`, each line trimmed, blank lines
    ignored; an empty text is no parameter at all (panels send every field)."""
    found: dict[str, object] = {}
    for name, text in texts.items():
        if name not in PARAMETERS or not text.strip():
            continue
        problem = text_problem(text, multiline=name in LIST_PARAMETERS)
        if problem is not None:
            return ("bad_parameter", f"{name}: the text cannot be accepted: {problem}")
        if name in LIST_PARAMETERS:
            items = tuple(line.strip() for line in _LINE_BREAK.split(text) if line.strip())
            if len(items) > MAX_LINES or any(len(line) > MAX_LINE for line in items):
                return ("bad_parameter", f"{name}: at most {MAX_LINES} lines of {MAX_LINE} characters")
            found[name] = items
        elif name == "answer_number":
            number = text.strip()
            if not (number.isascii() and number.isdigit() and 1 <= int(number) <= MAX_ANSWER):
                return ("bad_parameter", f"answer_number must be a whole number from 1 to {MAX_ANSWER}")
            found[name] = int(number)
        else:
            value = text.strip()
            if len(value) > (2048 if name == "media" else 300) or len(value.split()) != 1:
                return ("bad_parameter", f"{name} must be one {'link' if name == 'media' else 'word'}")
            found[name] = value
    return OrderParameters(**found)  # type: ignore[arg-type]  # each name holds its field's type
