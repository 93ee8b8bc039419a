"""Provider answers in the panel's own words.

Providers spell statuses and numbers in many ways (`COMPLETE`, `In Progress`, `Cancelled`, `"157.0"`). The
workflow branches on a handful of canonical statuses, so every variant is mapped here by rules, and anything
unrecognised becomes `Unknown` instead of being guessed; callers keep the raw text beside it.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from workflows.policy import CANCELED, COMPLETED, IN_PROGRESS, PARTIAL, PENDING, REFUNDED

UNKNOWN = "Unknown"
REJECTED = "Rejected"
ERROR = "Error"

ORDER_STATUSES = frozenset({PENDING, IN_PROGRESS, COMPLETED, PARTIAL, CANCELED, REFUNDED, UNKNOWN})
REFILL_STATUSES = frozenset({PENDING, IN_PROGRESS, COMPLETED, REJECTED, ERROR, UNKNOWN})

_SEPARATORS = re.compile(r"[\s_\-.]+")

# Negated words would otherwise match the stem they contain ("incomplete" holds "complet").
_NEGATED: tuple[tuple[str, str], ...] = (
    ("incomplet", UNKNOWN),
    ("uncomplet", UNKNOWN),
    ("notcomplet", UNKNOWN),
    ("unprocess", PENDING),
    ("notprocess", PENDING),
    ("notstarted", PENDING),
)

# Exact spellings first (after lower-casing and removing separators), then word-stem rules in priority order:
# "partially refunded" must be Partial, not Refunded; "canceled and refunded" must be Canceled.
_ORDER_EXACT = {
    "pending": PENDING,
    "queued": PENDING,
    "awaiting": PENDING,
    "new": PENDING,
    "inprogress": IN_PROGRESS,
    "processing": IN_PROGRESS,
    "active": IN_PROGRESS,
    "running": IN_PROGRESS,
    "started": IN_PROGRESS,
    "complete": COMPLETED,
    "completed": COMPLETED,
    "done": COMPLETED,
    "success": COMPLETED,
    "successful": COMPLETED,
    "finished": COMPLETED,
    "partial": PARTIAL,
    "partiallyrefunded": PARTIAL,
    "partiallycompleted": PARTIAL,
    "canceled": CANCELED,
    "cancelled": CANCELED,
    "cancel": CANCELED,
    "refunded": REFUNDED,
    "refund": REFUNDED,
}
_ORDER_STEMS: tuple[tuple[str, str], ...] = _NEGATED + (
    ("partial", PARTIAL),
    ("cancel", CANCELED),
    ("refund", REFUNDED),
    ("complet", COMPLETED),
    ("progress", IN_PROGRESS),
    ("process", IN_PROGRESS),
    ("pend", PENDING),
    ("queue", PENDING),
    ("await", PENDING),
    ("wait", PENDING),
)

_REFILL_EXACT = {
    "pending": PENDING,
    "queued": PENDING,
    "awaiting": PENDING,
    "inprogress": IN_PROGRESS,
    "processing": IN_PROGRESS,
    "active": IN_PROGRESS,
    "complete": COMPLETED,
    "completed": COMPLETED,
    "done": COMPLETED,
    "success": COMPLETED,
    "rejected": REJECTED,
    "declined": REJECTED,
    "refused": REJECTED,
    "canceled": REJECTED,
    "cancelled": REJECTED,
    "error": ERROR,
    "failed": ERROR,
    "fail": ERROR,
}
_REFILL_STEMS: tuple[tuple[str, str], ...] = _NEGATED + (
    ("reject", REJECTED),
    ("declin", REJECTED),
    ("cancel", REJECTED),
    ("error", ERROR),
    ("fail", ERROR),
    ("complet", COMPLETED),
    ("progress", IN_PROGRESS),
    ("process", IN_PROGRESS),
    ("pend", PENDING),
    ("queue", PENDING),
    ("await", PENDING),
)


def _squash(raw: object) -> str:
    """Lower-case and drop spaces, underscores, hyphens and dots, so `In_Progress` and `in progress` agree."""
    if raw is None:
        return ""
    return _SEPARATORS.sub("", str(raw)).lower()


def _normalise(raw: object, exact: dict[str, str], stems: tuple[tuple[str, str], ...]) -> str:
    key = _squash(raw)
    if not key:
        return UNKNOWN
    if key in exact:
        return exact[key]
    for stem, status in stems:
        if stem in key:
            return status
    return UNKNOWN


def normalise_order_status(raw: str | None) -> str:
    """A provider's order status: Pending, In progress, Completed, Partial, Canceled, Refunded, Unknown."""
    return _normalise(raw, _ORDER_EXACT, _ORDER_STEMS)


def normalise_refill_status(raw: str | None) -> str:
    """A provider's refill status as one of Pending, In progress, Completed, Rejected, Error, Unknown."""
    return _normalise(raw, _REFILL_EXACT, _REFILL_STEMS)


def parse_int(value: object) -> int | None:
    """A provider number (`"157"`, `157`, `"157.0"`, `"-5"`) as an int; None if absent or not a whole number.

    The sign is kept: a negative `remains` means over-delivery, which the policy treats on its own.
    A fractional or malformed value gives None rather than a rounded guess.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)
