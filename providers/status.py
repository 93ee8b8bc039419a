"""Provider answers in the panel's own words.

Providers spell statuses and numbers in many ways (`COMPLETE`, `In Progress`, `Cancelled`, `"157.0"`). The
workflow branches on a handful of canonical statuses, so every variant is mapped here by rules, and anything
unrecognised becomes None (unknown) instead of being guessed; callers keep the raw text beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from workflows.models import RefillStatus, Status

E = TypeVar("E", Status, RefillStatus)

_SEPARATORS = re.compile(r"[\s_\-.]+")

# Negated words would otherwise match the stem they contain ("incomplete" holds "complet"): unknown.
_NEGATED_COMPLETE = ("incomplet", "uncomplet", "notcomplet")
_NOT_STARTED = ("unprocess", "notprocess", "notstarted")

# Exact spellings first (after lower-casing and removing separators), then word-stem rules in priority order:
# "partially refunded" must be Partial, not Refunded; "canceled and refunded" must be Canceled.
_ORDER_EXACT = {
    "pending": Status.PENDING,
    "queued": Status.PENDING,
    "awaiting": Status.PENDING,
    "new": Status.PENDING,
    "inprogress": Status.IN_PROGRESS,
    "processing": Status.IN_PROGRESS,
    "active": Status.IN_PROGRESS,
    "running": Status.IN_PROGRESS,
    "started": Status.IN_PROGRESS,
    "complete": Status.COMPLETED,
    "completed": Status.COMPLETED,
    "done": Status.COMPLETED,
    "success": Status.COMPLETED,
    "successful": Status.COMPLETED,
    "finished": Status.COMPLETED,
    "partial": Status.PARTIAL,
    "partiallyrefunded": Status.PARTIAL,
    "partiallycompleted": Status.PARTIAL,
    "canceled": Status.CANCELED,
    "cancelled": Status.CANCELED,
    "cancel": Status.CANCELED,
    "refunded": Status.REFUNDED,
    "refund": Status.REFUNDED,
}
_ORDER_STEMS: tuple[tuple[str, Status], ...] = (
    *((stem, Status.PENDING) for stem in _NOT_STARTED),
    ("partial", Status.PARTIAL),
    ("cancel", Status.CANCELED),
    ("refund", Status.REFUNDED),
    ("complet", Status.COMPLETED),
    ("progress", Status.IN_PROGRESS),
    ("process", Status.IN_PROGRESS),
    ("pend", Status.PENDING),
    ("queue", Status.PENDING),
    ("await", Status.PENDING),
    ("wait", Status.PENDING),
)

_REFILL_EXACT = {
    "pending": RefillStatus.PENDING,
    "queued": RefillStatus.PENDING,
    "awaiting": RefillStatus.PENDING,
    "inprogress": RefillStatus.IN_PROGRESS,
    "processing": RefillStatus.IN_PROGRESS,
    "active": RefillStatus.IN_PROGRESS,
    "complete": RefillStatus.COMPLETED,
    "completed": RefillStatus.COMPLETED,
    "done": RefillStatus.COMPLETED,
    "success": RefillStatus.COMPLETED,
    "rejected": RefillStatus.REJECTED,
    "declined": RefillStatus.REJECTED,
    "refused": RefillStatus.REJECTED,
    "canceled": RefillStatus.REJECTED,
    "cancelled": RefillStatus.REJECTED,
    "error": RefillStatus.ERROR,
    "failed": RefillStatus.ERROR,
    "fail": RefillStatus.ERROR,
}
_REFILL_STEMS: tuple[tuple[str, RefillStatus], ...] = (
    *((stem, RefillStatus.PENDING) for stem in _NOT_STARTED),
    ("reject", RefillStatus.REJECTED),
    ("declin", RefillStatus.REJECTED),
    ("cancel", RefillStatus.REJECTED),
    ("error", RefillStatus.ERROR),
    ("fail", RefillStatus.ERROR),
    ("complet", RefillStatus.COMPLETED),
    ("progress", RefillStatus.IN_PROGRESS),
    ("process", RefillStatus.IN_PROGRESS),
    ("pend", RefillStatus.PENDING),
    ("queue", RefillStatus.PENDING),
    ("await", RefillStatus.PENDING),
)


def _squash(raw: object) -> str:
    """Lower-case and drop spaces, underscores, hyphens and dots, so `In_Progress` and `in progress` agree."""
    if raw is None:
        return ""
    return _SEPARATORS.sub("", str(raw)).lower()


def _normalise(raw: object, exact: Mapping[str, E], stems: tuple[tuple[str, E], ...]) -> E | None:
    key = _squash(raw)
    if not key or any(negated in key for negated in _NEGATED_COMPLETE):
        return None
    if key in exact:
        return exact[key]
    for stem, status in stems:
        if stem in key:
            return status
    return None


def normalise_order_status(raw: str | None) -> Status | None:
    """A provider's order status as one of ours; None when it says something we do not recognise."""
    return _normalise(raw, _ORDER_EXACT, _ORDER_STEMS)


def normalise_refill_status(raw: str | None) -> RefillStatus | None:
    """A provider's refill status as one of ours; None when it says something we do not recognise."""
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
