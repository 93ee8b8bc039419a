"""A subscription's workflow input, its one state object, and its activities' inputs, outputs and options.

Plain dataclasses, deterministic and serialisable by the SDK, like workflows/models.py (kept apart so the
order's models stay as they are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from workflows.models import OrderInput, RouteRef
from workflows.policy.subscriptions import SubscriptionStatus
from workflows.steps import PROVIDER_RETRY, STORE_RETRY, Step


@dataclass(frozen=True)
class SubscriptionInput:
    """Everything the subscription needs, frozen at intake; `state` carries it across continue-as-new."""

    subscription_id: int
    customer_id: int
    service_id: int  # the subscription service
    child_service_id: int  # the service each child order is placed on
    username: str
    min_quantity: int
    max_quantity: int
    posts: int | None  # posts to serve; None: unlimited
    old_posts: int
    delay_minutes: int
    expiry: str | None  # `d/m/Y` as the customer sent it (forwarded as such)
    expires_at: str | None  # ISO time the subscription expires (the end of the expiry day, UTC)
    route: RouteRef  # the provider's subscription service that watches the account
    state: SubscriptionState | None = None
    # Polls per run before it continues as new even if the server has not suggested it: a subscription may
    # live for months, and each poll adds a few events.
    polls_per_run: int = 500


@dataclass
class SubscriptionState:
    """What the subscription shows (status, posts served, its child orders) and its working memory."""

    subscription_id: int
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    posts_used: int = 0  # posts served: one child order each
    orders: list[int] = field(default_factory=list)  # the child orders' ids, in the order they were placed
    reason: str = ""  # why it ended, or what it last skipped
    provider_subscription_id: str | None = None
    seen: int | None = None  # the provider's posts already dealt with; None before its first report
    skip_seen: bool = False  # resumed: posts published while paused are not served
    paused_by: str | None = None
    version: int = 0


@dataclass(frozen=True)
class SubscriptionAction:
    actor: str
    reason: str = ""


# Activity inputs and outputs.


@dataclass(frozen=True)
class ForwardSubscription:
    subscription_id: int
    route: RouteRef
    username: str
    min_quantity: int
    max_quantity: int
    posts: int | None
    old_posts: int
    delay_minutes: int
    expiry: str | None


@dataclass(frozen=True)
class CheckSubscription:
    provider_id: int
    provider_subscription_id: str


@dataclass(frozen=True)
class SubscriptionReport:
    """The provider's subscription as it reports it: its status and every post link it has seen, oldest
    first (the simulator's `links`; docs/api.md)."""

    status: str
    links: list[str]


@dataclass(frozen=True)
class PlaceChild:
    subscription_id: int
    post_no: int
    link: str
    quantity: int


@dataclass(frozen=True)
class ChildPlaced:
    """The child order placed and charged (its workflow input), or the intake's refusal."""

    order: OrderInput | None
    refusal_code: str = ""
    refusal_text: str = ""


@dataclass(frozen=True)
class SubscriptionProjection:
    subscription_id: int
    version: int
    status: SubscriptionStatus
    posts_used: int
    reason: str
    provider_subscription_id: str | None
    finished: bool = False


@dataclass(frozen=True)
class EndAtProvider:
    provider_id: int
    provider_subscription_id: str


_PROVIDER = timedelta(seconds=60)
_STORE = timedelta(seconds=30)

FORWARD_SUBSCRIPTION = Step[ForwardSubscription, str]("forward_subscription", str, _PROVIDER, PROVIDER_RETRY)
CHECK_SUBSCRIPTION = Step[CheckSubscription, SubscriptionReport](
    "check_subscription", SubscriptionReport, _PROVIDER, PROVIDER_RETRY
)
END_AT_PROVIDER = Step[EndAtProvider, None](
    "end_subscription_at_provider", type(None), _PROVIDER, PROVIDER_RETRY
)
PLACE_CHILD = Step[PlaceChild, ChildPlaced]("place_child_order", ChildPlaced, _STORE, STORE_RETRY)
PROJECT_SUBSCRIPTION = Step[SubscriptionProjection, None](
    "project_subscription", type(None), _STORE, STORE_RETRY
)
