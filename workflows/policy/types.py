"""Service types: what each type's orders carry, how they are counted, priced, split and judged.

The API v2 types (docs/api.md, "Service types"): a Default order counts units, a list type counts its
lines, a package is one order of the service's `max` units at a flat price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workflows.models import OrderParameters, ServiceType
from workflows.text import PARAMETERS

if TYPE_CHECKING:
    from workflows.policy.intake import ServiceTerms


@dataclass(frozen=True)
class TypeRule:
    """How orders of one service type are taken, counted, priced, delivered and settled. `counted_by`:
    "quantity" (the customer says how many), a list parameter (its lines are the quantity), or None (a
    package: one order of the service's `max` units)."""

    needs: tuple[str, ...] = ()  # the type's parameters an order must carry (the link always)
    counted_by: str | None = "quantity"
    flat: bool = False  # one price per order (the service's rate) instead of rate x quantity / 1000
    dripfeed: bool = False  # a customer drip-feed (runs, interval) is for Default only
    orderable: bool = True

    @property
    def splittable(self) -> bool:
        """Only a counted quantity goes in several provider orders (paced runs, a failover's rest); lines
        and packages go whole, and the provider paces them."""
        return self.counted_by == "quantity"

    @property
    def tolerance(self) -> bool:
        """The accuracy tolerance is for counts; each of the customer's own lines is delivered or not."""
        return self.counted_by is None or self.splittable


TYPE_RULES: dict[ServiceType, TypeRule] = {
    ServiceType.DEFAULT: TypeRule(dripfeed=True),
    ServiceType.PACKAGE: TypeRule(counted_by=None, flat=True),
    ServiceType.CUSTOM_COMMENTS: TypeRule(("comments",), counted_by="comments"),
    ServiceType.CUSTOM_COMMENTS_PACKAGE: TypeRule(("comments",), counted_by="comments", flat=True),
    ServiceType.MENTIONS: TypeRule(("usernames",)),
    ServiceType.MENTIONS_WITH_HASHTAGS: TypeRule(("usernames", "hashtags")),
    ServiceType.MENTIONS_CUSTOM_LIST: TypeRule(("usernames",), counted_by="usernames"),
    ServiceType.MENTIONS_HASHTAG: TypeRule(("hashtag",)),
    ServiceType.MENTIONS_USER_FOLLOWERS: TypeRule(("username",)),
    ServiceType.MENTIONS_MEDIA_LIKERS: TypeRule(("media",)),
    ServiceType.COMMENT_LIKES: TypeRule(("username",)),
    ServiceType.COMMENT_REPLIES: TypeRule(("username", "comments"), counted_by="comments"),
    ServiceType.POLL: TypeRule(("answer_number",)),
    ServiceType.SEO: TypeRule(("keywords",)),
    ServiceType.SUBSCRIPTIONS: TypeRule(orderable=False),
}


@dataclass(frozen=True)
class TypedOrder:
    """An order as its type takes it: the quantity (per run for a drip-feed) and what goes upstream."""

    quantity: int
    parameters: OrderParameters


def typed_order(
    terms: ServiceTerms, *, quantity: int | None, parameters: OrderParameters, strict: bool
) -> TypedOrder | tuple[str, str]:
    """The order's quantity and parameters by its service's type, or why they cannot be taken.

    The type's parameters must all be there. A type counted by lines takes its quantity from them, a
    package from the service (its `max` units). `strict` (REST) refuses a parameter the type does not take
    and a quantity that is not the count; otherwise (API v2, liberal) both are ignored and never forwarded.
    """
    kind, rule = terms.kind, TYPE_RULES[terms.kind]
    named = f"service {terms.service_id} ({kind})"
    if not rule.orderable:
        return ("type_not_orderable", f"{named} is a subscription: place it with POST /v1/subscriptions")
    given = [name for name in PARAMETERS if getattr(parameters, name) not in ((), None)]
    missing = [name for name in rule.needs if name not in given]
    if rule.counted_by == "quantity" and quantity is None:
        missing.append("quantity")
    if missing:
        return ("missing_parameter", f"{named} needs {' and '.join(missing)}")
    extra = [name for name in given if name not in rule.needs]
    if extra and strict:
        return ("unexpected_parameter", f"{named} takes no {' and '.join(extra)}")
    taken = OrderParameters(**{name: getattr(parameters, name) for name in rule.needs})
    if rule.counted_by == "quantity":
        assert quantity is not None
        return TypedOrder(quantity, taken)
    counted = terms.max_quantity if rule.counted_by is None else len(getattr(parameters, rule.counted_by))
    if strict and quantity is not None and quantity != counted:
        what = "the package's size" if rule.counted_by is None else f"its number of {rule.counted_by}"
        return ("quantity_mismatch", f"the quantity of a {kind} order is {what} ({counted}), not {quantity}")
    return TypedOrder(counted, taken)


def resend_units(kind: ServiceType, units: int, delivered: int) -> int:
    """What of a run may go to the next route once one has given it up: the undelivered rest of a counted
    quantity; lines and packages only whole (nothing of them arrived), since nobody can tell which of the
    customer's lines a provider delivered, and half a package is no package anyone sells."""
    if TYPE_RULES[kind].splittable or delivered <= 0:
        return max(units - delivered, 0)
    return 0
