"""Subscriptions: what a subscription must be at intake, how big each child order is, and when it ends.

A subscription (service type `Subscriptions`) watches an account for new posts and places one child order per
post, each a normal order of the subscription's child service with its own charge (docs/policy.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from workflows.policy.states import Refusal

SUBSCRIPTIONS = "Subscriptions"  # the service type that marks a subscription service in the catalogue

# The `delay` values (minutes) panels offer; anything else is refused.
DELAYS = (0, 5, 10, 15, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 360, 420, 480, 540, 600)
MAX_POSTS = 10_000
MAX_OLD_POSTS = 100
# Instagram-like account names; a leading "@" is what people type and is dropped.
_USERNAME = re.compile(r"[A-Za-z0-9_.]{1,30}")


class SubscriptionStatus(StrEnum):
    ACTIVE = "Active"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    EXPIRED = "Expired"
    CANCELED = "Canceled"


SUBSCRIPTION_ENDED = frozenset(
    {SubscriptionStatus.COMPLETED, SubscriptionStatus.EXPIRED, SubscriptionStatus.CANCELED}
)


@dataclass(frozen=True)
class SubscriptionTerms:
    """The subscription service's terms as the catalogue has them now."""

    service_id: int
    min_quantity: int
    max_quantity: int


def username_of(text: str) -> str | None:
    """The account name as the provider wants it, or None when it is not one."""
    name = text.strip().removeprefix("@")
    return name if _USERNAME.fullmatch(name) else None


def parse_expiry(text: str) -> date | None:
    """`expiry` as panels send it, `d/m/Y` (also `d.m.Y`); None when it is not a date."""
    match = re.fullmatch(r"([0-9]{1,2})[/.]([0-9]{1,2})[/.]([0-9]{4})", text.strip())
    if match is None:
        return None
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def expiry_moment(expiry: date) -> datetime:
    """A subscription expires at the end of its `expiry` day (UTC): the day is included."""
    return datetime(expiry.year, expiry.month, expiry.day, tzinfo=UTC) + timedelta(days=1)


def format_expiry(expiry: date | None) -> str | None:
    return None if expiry is None else f"{expiry.day:02d}/{expiry.month:02d}/{expiry.year}"


def subscription_refusal(
    terms: SubscriptionTerms,
    *,
    username: str,
    low: int,
    high: int,
    posts: int | None,
    old_posts: int,
    delay: int,
    expiry: date | None,
    today: date,
) -> Refusal:
    """Why a subscription cannot be taken on these terms, or None. Texts are the protocol's standard ones
    (providers/apiv2.py), so API v2 clients can match them."""
    if username_of(username) is None:
        return ("bad_link", "Bad link")
    if low > high:
        return ("bad_subscription", "Incorrect request")
    if low < terms.min_quantity:
        return ("quantity_below_min", f"Quantity less than minimal {terms.min_quantity}")
    if high > terms.max_quantity:
        return ("quantity_above_max", f"Quantity more than maximum {terms.max_quantity}")
    if posts is not None and not 1 <= posts <= MAX_POSTS:
        return ("bad_subscription", "Incorrect request")
    if not 0 <= old_posts <= MAX_OLD_POSTS or (posts is not None and old_posts > posts):
        return ("bad_subscription", "Incorrect request")
    if delay not in DELAYS:
        return ("bad_subscription", "Incorrect request")
    if expiry is not None and expiry < today:
        return ("bad_subscription", "Incorrect request")
    return None


def child_quantity(subscription_id: int, post_no: int, low: int, high: int) -> int:
    """The quantity of the child order for post number `post_no`: spread between `low` and `high` as panels
    do (a post should not get the same round number every time), and fixed by the subscription and the post,
    so that a retried placement asks for the same order (its idempotency fingerprint matches)."""
    if low >= high:
        return low
    return low + _mix(subscription_id * 1_000_003 + post_no) % (high - low + 1)


def _mix(seed: int) -> int:
    """splitmix64: a well-spread 64-bit number from a seed, the same on every machine and every replay."""
    mask = (1 << 64) - 1
    z = (seed + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def posts_left(posts: int | None, used: int) -> int | None:
    """Posts the subscription may still serve; None: unlimited."""
    return None if posts is None else max(posts - used, 0)


def new_posts(links: list[str], seen: int, posts: int | None, used: int) -> list[tuple[int, str]]:
    """The posts to serve now, numbered from 1 in the order the provider reported them: those after the
    `seen` first ones, no more than the posts left."""
    fresh = list(enumerate(links, start=1))[seen:]
    left = posts_left(posts, used)
    return fresh if left is None else fresh[:left]


def subscription_cancel_refusal(status: SubscriptionStatus) -> Refusal:
    if status in SUBSCRIPTION_ENDED:
        return ("cannot_cancel", "The order cannot be canceled")
    return None


def subscription_pause_refusal(status: SubscriptionStatus) -> Refusal:
    if status != SubscriptionStatus.ACTIVE:
        return ("cannot_pause", f"a subscription that is {status} cannot be paused")
    return None


def subscription_resume_refusal(status: SubscriptionStatus) -> Refusal:
    if status != SubscriptionStatus.PAUSED:
        return ("not_paused", "the subscription is not paused")
    return None


def subscription_end(
    *, posts: int | None, used: int, expires_at: datetime | None, now: datetime
) -> SubscriptionStatus | None:
    """The status a running subscription ends with by its own terms now, or None while it goes on: expiry
    first (a post seen after it is not served), then the posts used up."""
    if expires_at is not None and now >= expires_at:
        return SubscriptionStatus.EXPIRED
    if posts is not None and used >= posts:
        return SubscriptionStatus.COMPLETED
    return None
