"""SubscriptionWorkflow: one long-lived workflow per subscription.

It forwards the subscription to the provider's subscription service, then follows it: every poll reads the
posts the provider has seen on the account, and each new post (after the subscription's `delay`) becomes a
child order, placed and charged by the normal intake (its own charge under the ledger's locks) and started
by the normal order start path (`order-<id>`, as the API starts one), so it runs its own OrderWorkflow,
outlives the subscription and takes messages like any order. It ends at `expiry` (a durable timer), when
`posts` are used up, on cancel, or when the balance cannot pay the next child. The whole state is one
object, carried by continue-as-new.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import policy
from workflows.errors import refused
from workflows.policy import SubscriptionStatus
from workflows.subscription_models import (
    CHECK_SUBSCRIPTION,
    END_AT_PROVIDER,
    FORWARD_SUBSCRIPTION,
    PLACE_CHILD,
    PROJECT_SUBSCRIPTION,
    CheckSubscription,
    EndAtProvider,
    ForwardSubscription,
    PlaceChild,
    SubscriptionAction,
    SubscriptionInput,
    SubscriptionProjection,
    SubscriptionState,
)

# The provider is asked about new posts this often (at least its polite interval).
MIN_POLL_SECONDS = 60
NOT_ENOUGH_FUNDS = "Not enough funds on balance"


def _refuse(refusal: policy.Refusal) -> None:
    if refusal is not None:
        raise refused(*refusal)


@workflow.defn
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, sub: SubscriptionInput) -> None:
        self._sub = sub
        self._state = sub.state if sub.state is not None else SubscriptionState(sub.subscription_id)
        self._wake = False
        self._polls = 0

    @workflow.run
    async def run(self, sub: SubscriptionInput) -> SubscriptionState:
        s = self._state
        if s.provider_subscription_id is None and not self._over():
            await self._forward()
        while not self._over():
            if s.status == SubscriptionStatus.ACTIVE:
                await self._serve_new_posts()
            if self._over():
                break
            if workflow.info().is_continue_as_new_suggested() or self._polls >= sub.polls_per_run:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(dataclasses.replace(sub, state=s))
            await self._sleep(self._poll_seconds())
        await workflow.wait_condition(workflow.all_handlers_finished)
        if s.provider_subscription_id is not None:
            try:  # the provider stops watching; if it does not answer, nothing here depends on it
                await END_AT_PROVIDER(
                    EndAtProvider(sub.route.provider_id, s.provider_subscription_id), "end at the provider"
                )
            except ActivityError:
                workflow.logger.warning(
                    "subscription %s: the provider did not take the end", s.subscription_id
                )
        await self._publish(finished=True)
        return s

    # ----- the parts of the run

    def _over(self) -> bool:
        """Ended, by a message or by its own terms (expiry, posts used up) as of now."""
        s = self._state
        if s.status in policy.SUBSCRIPTION_ENDED:
            return True
        end = policy.subscription_end(
            posts=self._sub.posts, used=s.posts_used, expires_at=self._expires_at(), now=workflow.now()
        )
        if end is not None:
            self._end(end, "expired" if end == SubscriptionStatus.EXPIRED else "every post served")
            return True
        return False

    def _end(self, status: SubscriptionStatus, reason: str) -> None:
        self._state.status = status
        self._state.reason = reason
        self._wake = True

    def _expires_at(self) -> datetime | None:
        return datetime.fromisoformat(self._sub.expires_at) if self._sub.expires_at else None

    def _poll_seconds(self) -> int:
        return max(self._sub.route.poll_interval_seconds, MIN_POLL_SECONDS)

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, less if the subscription expires first (the durable timer of `expiry`), or until
        a message wakes it."""
        expires_at = self._expires_at()
        if expires_at is not None:
            seconds = min(seconds, max((expires_at - workflow.now()).total_seconds(), 0))
        self._wake = False
        try:
            await workflow.wait_condition(lambda: self._wake, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            return  # the time was up: nothing woke it

    async def _forward(self) -> None:
        """Place the subscription at the provider; a provider that does not answer is asked again later."""
        sub, s = self._sub, self._state
        forward = ForwardSubscription(
            sub.subscription_id,
            sub.route,
            sub.username,
            sub.min_quantity,
            sub.max_quantity,
            sub.posts,
            sub.old_posts,
            sub.delay_minutes,
            sub.expiry,
        )
        while not self._over():
            try:
                s.provider_subscription_id = await FORWARD_SUBSCRIPTION(forward, f"watch @{sub.username}")
                await self._publish()
                return
            except ActivityError as err:
                s.reason = f"the provider did not take the subscription yet: {err.cause or err}"
                await self._publish()
                await self._sleep(self._poll_seconds())

    async def _serve_new_posts(self) -> None:
        """One poll: read the provider's posts and place a child order for each new one."""
        sub, s = self._sub, self._state
        assert s.provider_subscription_id is not None
        self._polls += 1
        try:
            report = await CHECK_SUBSCRIPTION(
                CheckSubscription(sub.route.provider_id, s.provider_subscription_id), "new posts?"
            )
        except ActivityError:
            return  # asked again at the next poll
        if s.seen is None:  # the provider lists only the posts to serve: the old_posts ones, then new ones
            s.seen = 0
        if s.skip_seen:
            s.seen, s.skip_seen = max(s.seen, len(report.links)), False
        fresh = policy.new_posts(report.links, s.seen, sub.posts, s.posts_used)
        if not fresh:
            return
        if sub.delay_minutes:
            await self._sleep(sub.delay_minutes * 60)
        for post_no, link in fresh:
            if self._over() or s.status == SubscriptionStatus.PAUSED:  # paused during the delay: skipped
                return
            await self._place_child(post_no, link)
        await self._publish()

    async def _place_child(self, post_no: int, link: str) -> None:
        sub, s = self._sub, self._state
        quantity = policy.child_quantity(sub.subscription_id, post_no, sub.min_quantity, sub.max_quantity)
        placed = await PLACE_CHILD(
            PlaceChild(sub.subscription_id, post_no, link, quantity), f"order for post {post_no}"
        )
        s.seen = post_no
        if placed.order is None:
            if placed.refusal_code == "insufficient_funds":
                self._end(SubscriptionStatus.CANCELED, NOT_ENOUGH_FUNDS)
            else:  # this post cannot be ordered (its link, the service's limits): the next ones still can
                s.reason = f"post {post_no} not served: {placed.refusal_text}"
            return
        s.posts_used += 1
        s.orders.append(placed.order.order_id)

    async def _publish(self, *, finished: bool = False) -> None:
        s = self._state
        s.version += 1
        projection = SubscriptionProjection(
            s.subscription_id,
            s.version,
            s.status,
            s.posts_used,
            s.reason,
            s.provider_subscription_id,
            finished,
        )
        await PROJECT_SUBSCRIPTION(projection, f"subscription {s.status}")

    # ----- reading and messages

    @workflow.query
    def state(self) -> SubscriptionState:
        return self._state

    @workflow.signal
    def posts_published(self) -> None:
        """The provider pushed news: poll now rather than at the next interval."""
        self._wake = True

    @workflow.update
    async def cancel(self, action: SubscriptionAction) -> SubscriptionState:
        """No new child orders from now on; the ones placed go on as the orders they are."""
        self._check_cancel(action)
        self._end(SubscriptionStatus.CANCELED, action.reason or f"canceled by {action.actor}")
        return self._state

    @cancel.validator
    def _check_cancel(self, action: SubscriptionAction) -> None:
        _refuse(policy.subscription_cancel_refusal(self._state.status))

    @workflow.update
    async def pause(self, action: SubscriptionAction) -> SubscriptionState:
        """No posts are served while paused (those published meanwhile are skipped); expiry still counts."""
        self._check_pause(action)
        self._state.status, self._state.paused_by = SubscriptionStatus.PAUSED, action.actor
        await self._publish()
        return self._state

    @pause.validator
    def _check_pause(self, action: SubscriptionAction) -> None:
        _refuse(policy.subscription_pause_refusal(self._state.status))

    @workflow.update
    async def resume(self, action: SubscriptionAction) -> SubscriptionState:
        self._check_resume(action)
        s = self._state
        s.status, s.paused_by, s.skip_seen = SubscriptionStatus.ACTIVE, None, True
        self._wake = True
        await self._publish()
        return s

    @resume.validator
    def _check_resume(self, action: SubscriptionAction) -> None:
        _refuse(policy.subscription_resume_refusal(self._state.status))
