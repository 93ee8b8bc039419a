"""The simulator's subscription services: accounts that publish posts (on a schedule of the simulated
clock, or on request through `/sim/accounts/...`), and subscriptions that watch an account.

A simulated subscription reports the posts it has seen (`links`, oldest first: the `old_posts` latest ones
the account had when it began, then every new one, up to `posts`); it places no orders of its own, the
panel does for each post. Like orders, posts are a function of the clock, so advancing it publishes the
scheduled ones. Kept in memory only: a simulator restart forgets accounts and subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from providers import apiv2
from providers.apiv2 import ProtocolError, integer, scalar
from providers.subscriptions import subscription_answer

if TYPE_CHECKING:
    from providers.simulator.state import SimState

EXISTING_POSTS = 3  # posts an account has before anyone watches it
MAX_POSTS = 10_000


@dataclass(frozen=True)
class SimSubscriptionService:
    id: str
    name: str
    category: str
    rate: str
    min: int
    max: int
    type: str = "Subscriptions"  # the API v2 type, as SimService.type


SUBSCRIPTION_SERVICES = {
    s.id: s
    for s in (
        SimSubscriptionService("201", "Instagram Auto Likes | Subscription", "Instagram", "0.05", 10, 10000),
    )
}


@dataclass
class SimAccount:
    username: str
    published: int = 0  # posts published on request
    every: float | None = None  # seconds between scheduled posts; None: none scheduled
    since: float = 0.0  # when the schedule began

    def count(self, now: float) -> int:
        scheduled = int((now - self.since) // self.every) if self.every else 0
        return min(EXISTING_POSTS + self.published + max(scheduled, 0), MAX_POSTS)

    def link(self, n: int) -> str:
        return f"https://instagram.com/p/{self.username}.{n}"


@dataclass
class SimSubscription:
    id: int
    service: SimSubscriptionService
    username: str
    low: int
    high: int
    posts: int | None
    old_posts: int
    delay: int
    expiry: str | None
    first: int  # the account's posts when it began
    canceled: bool = False

    def links(self, account: SimAccount, now: float) -> list[str]:
        begin = max(self.first - self.old_posts, 0)
        numbers = range(begin + 1, account.count(now) + 1)
        seen = [account.link(n) for n in numbers]
        return seen if self.posts is None else seen[: self.posts]

    def status(self, account: SimAccount, now: float) -> str:
        if self.canceled:
            return "Canceled"
        if self.posts is not None and len(self.links(account, now)) >= self.posts:
            return "Completed"
        return "Active"


@dataclass
class SimSubscriptions:
    services: dict[str, SimSubscriptionService] = field(default_factory=dict)
    accounts: dict[str, SimAccount] = field(default_factory=dict)
    subscriptions: dict[int, SimSubscription] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)  # idempotency keys of `add`

    def offer_built_in(self) -> None:
        self.services.update(SUBSCRIPTION_SERVICES)

    def account(self, username: str) -> SimAccount:
        return self.accounts.setdefault(username.lower(), SimAccount(username.lower()))


# ----- API v2 hooks (providers/simulator/protocol.py)


def services_answer(sim: SimState) -> list[dict[str, Any]]:
    return [
        apiv2.service_answer(
            service=int(s.id),
            name=s.name,
            kind=s.type,
            category=s.category,
            rate=s.rate,
            minimum=s.min,
            maximum=s.max,
            refill=False,
            cancel=True,
            dripfeed=False,
        )
        for s in sim.subscriptions.services.values()
    ]


def is_subscription_add(sim: SimState, p: dict[str, Any]) -> bool:
    return (scalar(p.get("service")) or "") in sim.subscriptions.services


def add(sim: SimState, p: dict[str, Any]) -> dict[str, Any]:
    subs = sim.subscriptions
    key = scalar(p.get("idempotency_key")) or None
    if key is not None and key in subs.keys:
        return {"order": subs.keys[key]}
    service = subs.services[scalar(p.get("service")) or ""]
    username = (scalar(p.get("username")) or "").strip().removeprefix("@")
    if not username or not username.replace("_", "").replace(".", "").isalnum() or len(username) > 30:
        raise ProtocolError(apiv2.BAD_LINK)
    low, high = integer(p.get("min")), integer(p.get("max"))
    if low is None or high is None or low > high:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    if low < service.min:
        raise ProtocolError(apiv2.quantity_below(service.min))
    if high > service.max:
        raise ProtocolError(apiv2.quantity_above(service.max))
    posts_text = scalar(p.get("posts"))
    posts = integer(posts_text) if posts_text else None
    old_posts = integer(scalar(p.get("old_posts")) or "0", low=0) or 0
    delay = integer(scalar(p.get("delay")) or "0", low=0)
    if (posts_text and posts is None) or delay is None:
        raise ProtocolError(apiv2.INCORRECT_REQUEST)
    now = sim.clock.now()
    account = subs.account(username)
    sub = SimSubscription(
        sim.next_order, service, account.username, low, high, posts, old_posts, delay,
        scalar(p.get("expiry")), account.count(now),
    )  # fmt: skip
    sim.next_order += 1  # the orders' numbering: an id names one or the other
    subs.subscriptions[sub.id] = sub
    if key is not None:
        subs.keys[key] = sub.id
    return {"order": sub.id}


def status_of(sim: SimState, number: int | None) -> dict[str, Any] | None:
    """The status answer of the subscription `number` names, or None when it names none."""
    sub = sim.subscriptions.subscriptions.get(number or 0)
    if sub is None:
        return None
    account = sim.subscriptions.account(sub.username)
    now = sim.clock.now()
    links = sub.links(account, now)
    return subscription_answer(
        status=sub.status(account, now), expiry=sub.expiry, posts=len(links), orders=[], links=links
    )


def cancel(sim: SimState, number: int | None) -> int | None:
    """Cancel the subscription `number` names (1), or None when it names none."""
    sub = sim.subscriptions.subscriptions.get(number or 0)
    if sub is None:
        return None
    if sub.canceled:
        raise ProtocolError(apiv2.CANNOT_CANCEL)
    sub.canceled = True
    return 1


def with_subscriptions(
    sim: SimState, texts: list[str], results: list[tuple[str, Any]], act: Any
) -> list[tuple[str, Any]]:
    """`results` with each `Incorrect order ID` that names a subscription replaced by `act`'s answer."""
    out: list[tuple[str, Any]] = []
    for text, result in results:
        if result == apiv2.error(apiv2.INCORRECT_ORDER):
            try:
                answer = act(sim, integer(text))
            except ProtocolError as exc:
                answer = apiv2.error(exc.text)
            out.append((text, result if answer is None else answer))
        else:
            out.append((text, result))
    return out


# ----- control (/sim/accounts/...)


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=1, ge=1, le=100)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every: float | None = Field(default=None, gt=0, description="simulated seconds between posts; null stops")


def _account_view(account: SimAccount, now: float) -> dict[str, Any]:
    count = account.count(now)
    return {
        "username": account.username,
        "posts": count,
        "latest": account.link(count) if count else None,
        "every": account.every,
    }


async def publish(request: Request, username: str, body: PublishIn) -> dict[str, Any]:
    """The account publishes `count` posts now."""
    sim: SimState = request.app.state.sim
    account = sim.subscriptions.account(username)
    account.published += body.count
    return _account_view(account, sim.clock.now())


async def schedule(request: Request, username: str, body: ScheduleIn) -> dict[str, Any]:
    """The account publishes a post every `every` simulated seconds from now (what it published stays)."""
    sim: SimState = request.app.state.sim
    account = sim.subscriptions.account(username)
    now = sim.clock.now()
    account.published = account.count(now) - EXISTING_POSTS  # keep what the old schedule published
    account.every, account.since = body.every, now
    return _account_view(account, now)


async def account(request: Request, username: str) -> dict[str, Any]:
    sim: SimState = request.app.state.sim
    return _account_view(sim.subscriptions.account(username), sim.clock.now())


def add_routes(app: FastAPI) -> None:
    app.add_api_route("/sim/accounts/{username}/posts", publish, methods=["POST"])
    app.add_api_route("/sim/accounts/{username}/schedule", schedule, methods=["PUT"])
    app.add_api_route("/sim/accounts/{username}", account, methods=["GET"])
