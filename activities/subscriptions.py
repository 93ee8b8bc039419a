"""A subscription's side effects: forwarding it to the provider's subscription service, reading the posts
the provider has seen, placing a post's child order (the normal intake, in one transaction) and starting
its workflow, projecting the subscription's state, and ending it at the provider.

The forwarding carries the idempotency key `subscription:<id>`, so a retry after a lost answer finds the
same provider subscription at a provider that deduplicates (the simulator does); a provider's refusal is
final (REJECTED), other trouble is retried and then asked again by the workflow at its next poll.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import fails_for_good
from backoffice.temporal_client import start_order_workflow
from providers.errors import ProviderRejected
from providers.subscriptions import SubscriptionClient
from store import subscriptions
from store.db import transaction
from store.models import Provider
from workflows.errors import REJECTED
from workflows.subscription_models import (
    CheckSubscription,
    ChildPlaced,
    EndAtProvider,
    ForwardSubscription,
    PlaceChild,
    SubscriptionProjection,
    SubscriptionReport,
)


class SubscriptionActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient) -> None:
        self._sessions = sessions
        self._http = http

    async def _client(self, provider_id: int) -> SubscriptionClient:
        async with self._sessions() as session:
            provider = await session.get(Provider, provider_id)
        if provider is None:
            raise ApplicationError(
                f"provider {provider_id} does not exist", type=REJECTED, non_retryable=True
            )
        return SubscriptionClient(provider.api_url, provider.api_key, http=self._http)

    @activity.defn(name="forward_subscription")
    async def forward_subscription(self, forward: ForwardSubscription) -> str:
        client = await self._client(forward.route.provider_id)
        try:
            return await client.add_subscription(
                service=forward.route.provider_service_id,
                username=forward.username,
                min_quantity=forward.min_quantity,
                max_quantity=forward.max_quantity,
                posts=forward.posts,
                old_posts=forward.old_posts,
                delay=forward.delay_minutes,
                expiry=forward.expiry,
                idempotency_key=f"subscription:{forward.subscription_id}",
            )
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc

    @activity.defn(name="check_subscription")
    async def check_subscription(self, check: CheckSubscription) -> SubscriptionReport:
        client = await self._client(check.provider_id)
        try:
            found = await client.subscription(check.provider_subscription_id)
        except ProviderRejected as exc:
            raise ApplicationError(exc.message, type=REJECTED, non_retryable=True) from exc
        return SubscriptionReport(found.status, found.links)

    @activity.defn(name="end_subscription_at_provider")
    async def end_subscription_at_provider(self, end: EndAtProvider) -> None:
        client = await self._client(end.provider_id)
        await client.cancel([end.provider_subscription_id])  # a refusal (already ended) is fine

    @activity.defn(name="place_child_order")
    @fails_for_good("place_child_order")
    async def place_child_order(self, child: PlaceChild) -> ChildPlaced:
        """Place and charge the post's order, then start its workflow as the API does (on this worker's task
        queue). A retry finds the same order (its idempotency key) and starts nothing twice."""
        async with transaction(self._sessions) as session:
            placed = await subscriptions.place_child(session, child)
        if placed.order is not None:
            await start_order_workflow(activity.client(), activity.info().task_queue, placed.order)
        return placed

    @activity.defn(name="project_subscription")
    @fails_for_good("project_subscription")
    async def project_subscription(self, projection: SubscriptionProjection) -> None:
        async with transaction(self._sessions) as session:
            await subscriptions.project(session, projection)
