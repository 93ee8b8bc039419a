"""The provider's side of a subscription, as a client (API v2 `add` with the Subscriptions parameters,
`status` of the subscription id, `cancel`) and the shape of the status answer both sides use.

The status answer is the panels' `{"status", "expiry", "posts", "orders"}`, plus `links`: every post of the
account the provider has seen since the subscription began, oldest first (the simulator's extension; the
back office places its own child order for each, docs/api.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.answers import excerpt, id_text
from providers.client import ApiV2Client
from providers.errors import ProviderAmbiguous, ProviderUnavailable


@dataclass(frozen=True)
class ProviderSubscription:
    status: str
    posts: int
    links: list[str]


def subscription_answer(
    *, status: str, expiry: str | None, posts: int, orders: list[int], links: list[str]
) -> dict[str, Any]:
    return {"status": status, "expiry": expiry or "", "posts": str(posts), "orders": orders, "links": links}


class SubscriptionClient(ApiV2Client):
    """ApiV2Client with the subscription calls."""

    async def add_subscription(
        self,
        *,
        service: str,
        username: str,
        min_quantity: int,
        max_quantity: int,
        posts: int | None,
        old_posts: int,
        delay: int,
        expiry: str | None,
        idempotency_key: str,
    ) -> str:
        params = {
            "service": service,
            "username": username,
            "min": str(min_quantity),
            "max": str(max_quantity),
            "old_posts": str(old_posts),
            "delay": str(delay),
            "idempotency_key": idempotency_key,
        }
        if posts is not None:
            params["posts"] = str(posts)
        if expiry is not None:
            params["expiry"] = expiry
        answer = await self._call("add", params, mutating=True)
        found = id_text(answer.get("order") if isinstance(answer, dict) else None)
        if found is None:
            raise ProviderAmbiguous(f"add answered without an id: {excerpt(answer)}")
        return found

    async def subscription(self, subscription_id: str) -> ProviderSubscription:
        answer = await self._call("status", {"order": subscription_id})
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
            raise ProviderUnavailable(f"status answered something else: {excerpt(answer)}")
        links = answer.get("links")
        if not isinstance(links, list) or not all(isinstance(link, str) for link in links):
            raise ProviderUnavailable(f"the subscription's posts are not listed: {excerpt(answer)}")
        try:
            posts = int(str(answer.get("posts", "0")))
        except ValueError:
            posts = len(links)
        return ProviderSubscription(answer["status"], posts, list(links))
