"""Subscriptions end to end on the time-skipping server: the simulator's subscription service watches the
account, each new post becomes a child order with its own charge that runs the normal order lifecycle, and
the subscription ends at expiry, when its posts are used up, on cancel, or when the balance runs out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from subscription_stack import Stack, subscription_stack
from temporalio.testing import WorkflowEnvironment

from api.subscriptions import v2_statuses
from backoffice.messaging import Refused
from backoffice.settings import Settings
from backoffice.subscriptions import send_subscription_update
from store import ledger
from store import subscriptions as store_subscriptions
from workflows import policy
from workflows.models import Status
from workflows.order import OrderWorkflow
from workflows.policy import SubscriptionStatus
from workflows.subscription_models import SubscriptionAction

RATE = 1_000_000  # the child service's 1.00 per 1000


def settings(stack: Stack) -> Settings:
    return Settings(database_url="unused", temporal_address="unused", temporal_task_queue=stack.task_queue)


async def cancel(stack: Stack, subscription_id: int) -> None:
    async with stack.sessions() as session:
        row = await store_subscriptions.get_subscription(session, subscription_id)
    assert row is not None
    await send_subscription_update(
        stack.env.client, settings(stack), row, "cancel", SubscriptionAction("support:lee", "test over")
    )


async def test_each_new_post_becomes_a_child_order_that_runs_its_own_lifecycle(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with subscription_stack(temporal_env, sessions) as stack:
        # The account has 3 posts already; old_posts=1 serves the latest of them too.
        handle = await stack.subscribe(old_posts=1)
        first = await stack.until(handle, lambda s: len(s.orders) == 1)
        await stack.publish()
        state = await stack.until(handle, lambda s: len(s.orders) == 2)
        assert state.status == SubscriptionStatus.ACTIVE
        sid = state.subscription_id
        children = await stack.orders()
        assert [o.id for o in children] == state.orders
        assert first.orders == state.orders[:1]
        # Posts are numbered as the provider lists them: the old post served is the first.
        for order, post_no in zip(children, (1, 2), strict=True):
            assert order.link == f"https://instagram.com/p/acct.{post_no + 2}"
            assert order.quantity == policy.child_quantity(sid, post_no, 100, 200)
            assert order.charge_micros == policy.charge_for(order.quantity, RATE)
            # Each child is a normal order: its own workflow delivers and settles it.
            result = await temporal_env.client.get_workflow_handle_for(
                OrderWorkflow.run, f"order-{order.id}"
            ).result()
            assert (result.status, result.delivered) == (Status.COMPLETED, order.quantity)
        assert await stack.balance() == 100_000_000 - sum(o.charge_micros for o in children)
        async with sessions() as session:
            answer = await v2_statuses(session, stack.customer_id, [sid])
        assert answer == {sid: {"status": "Active", "expiry": "", "posts": "2", "orders": state.orders}}
        await cancel(stack, sid)
        assert (await stack.ended(handle)).status == SubscriptionStatus.CANCELED


async def test_a_subscription_expires_at_the_end_of_its_expiry_day(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with subscription_stack(temporal_env, sessions) as stack:
        # The shared server's clock is wherever earlier tests skipped it to. Start just after midnight, so
        # the hourly poll that serves the post comes before the end of the expiry day (after 23:00 it
        # would not, and the subscription rightly expires having served nothing).
        now = await temporal_env.get_current_time()
        await temporal_env.sleep(policy.expiry_moment(now.date()) - now + timedelta(minutes=1))
        today = (await temporal_env.get_current_time()).date()
        assert today > now.date()
        handle = await stack.subscribe(expiry=f"{today.day}/{today.month}/{today.year}")
        await stack.until(handle, lambda s: s.seen is not None)
        await stack.publish()
        state = await stack.ended(handle)  # the time-skipping server skips to the expiry timer
        assert (state.status, state.reason) == (SubscriptionStatus.EXPIRED, "expired")
        assert len(state.orders) == 1
        assert await temporal_env.get_current_time() >= policy.expiry_moment(today)
        async with sessions() as session:
            row = await store_subscriptions.get_subscription(session, state.subscription_id)
        assert row is not None
        assert (row.status, row.expiry, row.finished_at is not None) == (
            "Expired",
            today.strftime("%d/%m/%Y"),
            True,
        )
        # The provider was told: its subscription stops watching.
        assert stack.sim.subscriptions.subscriptions[int(state.provider_subscription_id or 0)].canceled


async def test_a_subscription_completes_when_its_posts_are_used_up(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with subscription_stack(temporal_env, sessions) as stack:
        handle = await stack.subscribe(posts=2)
        await stack.until(handle, lambda s: s.seen is not None)
        await stack.publish(count=3)
        state = await stack.ended(handle)
        assert (state.status, state.posts_used, len(state.orders)) == (SubscriptionStatus.COMPLETED, 2, 2)
        assert len(await stack.orders()) == 2  # the third post is not served


async def test_a_canceled_subscription_places_no_more_orders(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with subscription_stack(temporal_env, sessions) as stack:
        handle = await stack.subscribe()
        await stack.until(handle, lambda s: s.seen is not None)
        await stack.publish()
        state = await stack.until(handle, lambda s: len(s.orders) == 1)
        await cancel(stack, state.subscription_id)
        ended = await stack.ended(handle)
        assert (ended.status, ended.reason) == (SubscriptionStatus.CANCELED, "test over")
        await stack.publish()
        await temporal_env.sleep(timedelta(hours=3))
        assert len(await stack.orders()) == 1
        with pytest.raises(Refused) as refused:  # an ended subscription takes no message
            await cancel(stack, state.subscription_id)
        assert refused.value.code == "cannot_cancel"


async def test_a_subscription_ends_when_the_balance_cannot_pay_the_next_child(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Children of exactly 100 units cost 0.10 each: the balance pays two of them.
    async with subscription_stack(temporal_env, sessions, funds=250_000) as stack:
        handle = await stack.subscribe(min_quantity=100, max_quantity=100)
        await stack.until(handle, lambda s: s.seen is not None)
        await stack.publish(count=3)
        state = await stack.ended(handle)
        assert (state.status, state.reason) == (SubscriptionStatus.CANCELED, "Not enough funds on balance")
        assert state.posts_used == 2
        orders = await stack.orders()
        assert [o.charge_micros for o in orders] == [100_000, 100_000]  # the third was never written
        for order in orders:
            await temporal_env.client.get_workflow_handle_for(OrderWorkflow.run, f"order-{order.id}").result()
        assert await stack.balance() == 50_000  # nothing overdrawn
        async with sessions() as session:
            assert await ledger.check_invariants(session) == []


async def test_a_paused_subscription_skips_the_posts_published_meanwhile(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with subscription_stack(temporal_env, sessions) as stack:
        handle = await stack.subscribe()
        await stack.until(handle, lambda s: s.seen is not None)
        action = SubscriptionAction("ops:kim", "look closer")
        async with sessions() as session:
            row = await store_subscriptions.get_subscription(session, handle_id(handle.id))
        assert row is not None
        paused = await send_subscription_update(temporal_env.client, settings(stack), row, "pause", action)
        assert paused.status == SubscriptionStatus.PAUSED
        await stack.publish()
        await temporal_env.sleep(timedelta(hours=3))
        await send_subscription_update(temporal_env.client, settings(stack), row, "resume", action)
        await temporal_env.sleep(timedelta(hours=3))
        assert await stack.orders() == []
        await stack.publish()
        state = await stack.until(handle, lambda s: len(s.orders) == 1)
        assert (await stack.orders())[0].link == "https://instagram.com/p/acct.5"
        await cancel(stack, state.subscription_id)
        await stack.ended(handle)


def handle_id(workflow_id: str) -> int:
    return int(workflow_id.removeprefix("subscription-"))


async def test_a_long_subscription_continues_as_new_and_keeps_its_posts_and_orders(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with subscription_stack(temporal_env, sessions) as stack:
        handle = await stack.subscribe(polls_per_run=2)
        await stack.until(handle, lambda s: s.seen is not None)
        await stack.publish()
        first = await stack.until(handle, lambda s: len(s.orders) == 1)
        await temporal_env.sleep(timedelta(hours=3))  # a few hourly polls: a new run or two
        await stack.publish()
        state = await stack.until(handle, lambda s: len(s.orders) == 2)
        described = await handle.describe()
        assert described.raw_description.workflow_execution_info.first_run_id != described.run_id
        assert state.orders[:1] == first.orders
        assert (state.seen, state.posts_used) == (2, 2)
        assert len(await stack.orders()) == 2  # no post served twice across runs
        await cancel(stack, state.subscription_id)
        assert (await stack.ended(handle)).status == SubscriptionStatus.CANCELED
