"""Provider status spellings map to the canonical statuses by rules; numbers parse tolerantly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.status import normalise_order_status, normalise_refill_status, parse_int
from workflows.models import RefillStatus, Status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Pending", "Pending"),
        ("pending", "Pending"),
        ("PENDING", "Pending"),
        (" Pending ", "Pending"),
        ("queued", "Pending"),
        ("Queue", "Pending"),
        ("awaiting", "Pending"),
        ("Awaiting start", "Pending"),
        ("In progress", "In progress"),
        ("In Progress", "In progress"),
        ("IN_PROGRESS", "In progress"),
        ("in-progress", "In progress"),
        ("inprogress", "In progress"),
        ("Processing", "In progress"),
        ("processing", "In progress"),
        ("active", "In progress"),
        ("Active", "In progress"),
        ("Completed", "Completed"),
        ("COMPLETE", "Completed"),
        ("completed", "Completed"),
        ("Complete", "Completed"),
        ("done", "Completed"),
        ("Success", "Completed"),
        ("Partial", "Partial"),
        ("partial", "Partial"),
        ("PARTIAL", "Partial"),
        ("Partially refunded", "Partial"),
        ("partially_refunded", "Partial"),
        ("Partially Completed", "Partial"),
        ("Canceled", "Canceled"),
        ("Cancelled", "Canceled"),
        ("CANCELED", "Canceled"),
        ("cancelled", "Canceled"),
        ("Canceled and refunded", "Canceled"),
        ("Refunded", "Refunded"),
        ("refunded", "Refunded"),
        ("REFUNDED", "Refunded"),
        ("Incomplete", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("banana", None),
        ("Error", None),
    ],
)
def test_order_status_spellings(raw: str | None, expected: str) -> None:
    assert normalise_order_status(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Pending", "Pending"),
        ("pending", "Pending"),
        ("queued", "Pending"),
        ("In progress", "In progress"),
        ("In Progress", "In progress"),
        ("IN_PROGRESS", "In progress"),
        ("Processing", "In progress"),
        ("Completed", "Completed"),
        ("COMPLETE", "Completed"),
        ("done", "Completed"),
        ("Rejected", "Rejected"),
        ("rejected", "Rejected"),
        ("Declined", "Rejected"),
        ("Cancelled", "Rejected"),
        ("Error", "Error"),
        ("ERROR", "Error"),
        ("Failed", "Error"),
        ("", None),
        (None, None),
        ("whatever", None),
    ],
)
def test_refill_status_spellings(raw: str | None, expected: str) -> None:
    assert normalise_refill_status(raw) == expected


@given(st.text(max_size=40))
def test_any_text_gives_a_canonical_status(raw: str) -> None:
    assert normalise_order_status(raw) in (*Status, None)
    assert normalise_refill_status(raw) in (*RefillStatus, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("157", 157),
        (157, 157),
        ("157.0", 157),
        (157.0, 157),
        (" 157 ", 157),
        ("0", 0),
        ("-5", -5),
        (-5, -5),
        ("-5.00", -5),
        ("", None),
        ("  ", None),
        (None, None),
        ("abc", None),
        ("157.5", None),
        ("NaN", None),
        ("inf", None),
        (True, None),
    ],
)
def test_parse_int(value: object, expected: int | None) -> None:
    assert parse_int(value) == expected


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_parse_int_round_trips_printed_ints(number: int) -> None:
    assert parse_int(str(number)) == number
    assert parse_int(f"{number}.0") == number
