"""Subscriptions' rules: what intake takes (with the protocol's standard texts), each child order's size,
which posts are served, and when a subscription ends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows import policy
from workflows.policy import SubscriptionStatus

TERMS = policy.SubscriptionTerms(service_id=51, min_quantity=10, max_quantity=10000)
TODAY = date(2026, 12, 1)


def refusal(**fields: object) -> policy.Refusal:
    given_fields: dict[str, object] = {
        "username": "some.account",
        "low": 100,
        "high": 200,
        "posts": None,
        "old_posts": 0,
        "delay": 0,
        "expiry": None,
        "today": TODAY,
    } | fields
    return policy.subscription_refusal(TERMS, **given_fields)  # type: ignore[arg-type]


def test_a_plain_subscription_is_taken() -> None:
    assert refusal() is None
    assert refusal(username="@some.account", posts=5, old_posts=2, delay=30, expiry=TODAY) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"username": "not an account"}, ("bad_link", "Bad link")),
        ({"username": "https://instagram.com/x"}, ("bad_link", "Bad link")),
        ({"username": ""}, ("bad_link", "Bad link")),
        ({"low": 300, "high": 200}, ("bad_subscription", "Incorrect request")),
        ({"low": 5}, ("quantity_below_min", "Quantity less than minimal 10")),
        ({"high": 10001}, ("quantity_above_max", "Quantity more than maximum 10000")),
        ({"posts": 0}, ("bad_subscription", "Incorrect request")),
        ({"old_posts": 101}, ("bad_subscription", "Incorrect request")),
        ({"posts": 2, "old_posts": 3}, ("bad_subscription", "Incorrect request")),
        ({"delay": 7}, ("bad_subscription", "Incorrect request")),
        ({"expiry": TODAY - timedelta(days=1)}, ("bad_subscription", "Incorrect request")),
    ],
)
def test_bad_fields_get_the_standard_texts(fields: dict[str, object], expected: policy.Refusal) -> None:
    assert refusal(**fields) == expected


def test_every_standard_delay_is_taken() -> None:
    assert policy.DELAYS[0] == 0
    assert policy.DELAYS[-1] == 600
    assert all(refusal(delay=d) is None for d in policy.DELAYS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("31/12/2026", date(2026, 12, 31)), ("1/2/2027", date(2027, 2, 1)), ("05.06.2027", date(2027, 6, 5))],
)
def test_expiry_is_day_month_year(text: str, expected: date) -> None:
    assert policy.parse_expiry(text) == expected
    assert policy.format_expiry(expected) == f"{expected.day:02d}/{expected.month:02d}/{expected.year}"


@pytest.mark.parametrize("text", ["2026-12-31", "31/13/2026", "30/02/2027", "tomorrow", "", "٣١/١٢/٢٠٢٦"])
def test_an_expiry_that_is_no_date_is_refused(text: str) -> None:
    assert policy.parse_expiry(text) is None


def test_the_expiry_day_is_included() -> None:
    assert policy.expiry_moment(date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)


@given(
    sid=st.integers(1, 10**12),
    post=st.integers(1, 10**4),
    low=st.integers(1, 10**6),
    span=st.integers(0, 10**6),
)
def test_a_child_quantity_is_between_min_and_max_and_always_the_same(
    sid: int, post: int, low: int, span: int
) -> None:
    quantity = policy.child_quantity(sid, post, low, low + span)
    assert low <= quantity <= low + span
    assert quantity == policy.child_quantity(sid, post, low, low + span)


def test_child_quantities_spread_over_the_range() -> None:
    quantities = {policy.child_quantity(7, post, 100, 200) for post in range(1, 201)}
    assert len(quantities) > 50
    assert min(quantities) < 120
    assert max(quantities) > 180


def test_new_posts_are_those_after_the_seen_ones_and_no_more_than_are_left() -> None:
    links = ["p1", "p2", "p3", "p4"]
    assert policy.new_posts(links, 2, None, 0) == [(3, "p3"), (4, "p4")]
    assert policy.new_posts(links, 1, 3, 2) == [(2, "p2")]
    assert policy.new_posts(links, 4, None, 4) == []
    assert policy.new_posts(links, 0, 2, 2) == []


def test_a_subscription_ends_at_expiry_first_then_when_posts_are_used_up() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    later = now + timedelta(hours=1)
    assert policy.subscription_end(posts=None, used=100, expires_at=None, now=now) is None
    assert policy.subscription_end(posts=3, used=2, expires_at=later, now=now) is None
    assert policy.subscription_end(posts=3, used=3, expires_at=later, now=now) == SubscriptionStatus.COMPLETED
    assert policy.subscription_end(posts=3, used=3, expires_at=now, now=now) == SubscriptionStatus.EXPIRED


def test_messages_by_status() -> None:
    for ended in policy.SUBSCRIPTION_ENDED:
        assert policy.subscription_cancel_refusal(ended) == ("cannot_cancel", "The order cannot be canceled")
        assert policy.subscription_pause_refusal(ended) is not None
    assert policy.subscription_cancel_refusal(SubscriptionStatus.PAUSED) is None
    assert policy.subscription_pause_refusal(SubscriptionStatus.ACTIVE) is None
    assert policy.subscription_pause_refusal(SubscriptionStatus.PAUSED) is not None
    assert policy.subscription_resume_refusal(SubscriptionStatus.PAUSED) is None
    assert policy.subscription_resume_refusal(SubscriptionStatus.ACTIVE) == (
        "not_paused",
        "the subscription is not paused",
    )
