"""Deliveries ride out a receiver that is down, for hours if need be (on the time-skipping server): every
event arrives once by id, in order per order, signed; one that keeps failing for 25 hours disables its
endpoint with the reason, and a redelivery afterwards sends the same event id again."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from temporalio.client import WorkflowExecutionStatus
from webhook_receiver import Skipping, by_order, order_story

from backoffice.webhook_feed import wake
from store import webhooks
from store.db import transaction
from store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from support import open_shop
from workflows.webhooks import delivery_workflow_id

STORY = ["order.created", "order.status_changed", "order.refunded", "order.status_changed"]


async def _endpoint(hooks: Skipping) -> WebhookEndpoint:
    async with transaction(hooks.sessions) as session:
        return await webhooks.create_endpoint(session, hooks.url, webhooks.EVENT_TYPES, "shop", "test")


async def _states(hooks: Skipping) -> Counter[str]:
    async with hooks.sessions() as session:
        rows = await session.execute(
            select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
        )
        return Counter({state: int(n) for state, n in rows})


async def _skip_until_settled(hooks: Skipping, step: timedelta, limit: int) -> None:
    """Skip time in `step`s (the feeder looking each time) until no delivery is pending."""
    for _ in range(limit):
        await hooks.feeder.feed_once()
        if (await _states(hooks))["pending"] == 0:
            return
        await hooks.env.sleep(step)
    raise AssertionError(f"deliveries still pending: {await _states(hooks)}")


async def test_a_receiver_down_for_hours_then_back_gets_every_event_once(skipping: Skipping) -> None:
    hooks = skipping
    endpoint = await _endpoint(hooks)
    shop = await open_shop(hooks.sessions)
    hooks.receiver.down = True
    order_ids = [await order_story(hooks.sessions, shop) for _ in range(4)]
    await hooks.feeder.feed_once()
    for _ in range(18):  # three hours of skipped time, ten minutes at a time, while the receiver is down
        await hooks.env.sleep(timedelta(minutes=10))
    refused = len(hooks.receiver.requests)
    await hooks.feeder.feed_once()
    assert REGISTRY.get_sample_value("backoffice_webhook_backlog") == 16
    assert (REGISTRY.get_sample_value("backoffice_webhook_oldest_pending_seconds") or 0) > 0
    assert refused >= 8
    assert not hooks.receiver.taken()
    hooks.receiver.down = False
    await _skip_until_settled(hooks, timedelta(minutes=10), limit=30)
    await hooks.feeder.feed_once()
    assert REGISTRY.get_sample_value("backoffice_webhook_backlog") == 0

    taken = hooks.receiver.taken()
    ids = Counter(r.event_id for r in taken)
    sent = len(order_ids) * len(STORY)
    figures = {
        "events": sent,
        "attempts": len(hooks.receiver.requests),
        "refused while down": refused,
        "duplicates by id": sum(n - 1 for n in ids.values()),
    }
    print("webhook fault test:", figures)
    assert len(ids) == sent
    assert figures["duplicates by id"] == 0
    payloads = [r.verified(endpoint.secret) for r in taken]
    stories = by_order(payloads)
    assert sorted(stories) == sorted(order_ids)
    assert all([p["type"] for p in story] == STORY for story in stories.values())
    # Every try of an event carried its one id: the refused tries were all for the first event.
    assert {r.event_id for r in hooks.receiver.requests[:refused]} == {taken[0].event_id}
    async with hooks.sessions() as session:
        logged = await session.scalar(select(func.count()).select_from(WebhookAttempt))
        log, _ = await webhooks.delivery_log(session, endpoint.id, before=None, limit=100)
    assert logged == len(hooks.receiver.requests)
    first = log[-1]  # newest first: the last is the first event
    assert first.delivery.state == "delivered"
    assert first.delivery.attempts == refused + 1
    assert [a.status_code for a in first.attempts[1:]] == [503] * min(refused, 19)
    assert all(a.next_try_at is not None and a.next_try_at > a.at for a in first.attempts[1:])


async def test_a_wrong_secret_is_detected(skipping: Skipping) -> None:
    hooks = skipping
    endpoint = await _endpoint(hooks)
    await order_story(hooks.sessions, await open_shop(hooks.sessions))
    await _skip_until_settled(hooks, timedelta(seconds=1), limit=60)
    request = hooks.receiver.taken()[0]
    assert request.verified(endpoint.secret)["type"] == "order.created"
    for secret in (webhooks.new_secret(), endpoint.secret.replace("whsec_", "whsec_A", 1)):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(request.body, request.headers)
    tampered = request.body.replace('"order.created"', '"order.refunded"')
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(tampered, request.headers)


async def test_an_endpoint_that_keeps_failing_is_disabled_and_redelivered_later(skipping: Skipping) -> None:
    hooks = skipping
    endpoint = await _endpoint(hooks)
    hooks.receiver.answer = 500
    order_id = await order_story(hooks.sessions, await open_shop(hooks.sessions))
    await hooks.feeder.feed_once()
    handle = hooks.env.client.get_workflow_handle(delivery_workflow_id(endpoint.id))
    for _ in range(180):  # 30 hours, ten minutes at a time (a longer skip times out on the test server)
        await hooks.env.sleep(timedelta(minutes=10))
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
    async with hooks.sessions() as session:
        found = await webhooks.endpoint(session, endpoint.id)
        log, _ = await webhooks.delivery_log(session, endpoint.id, before=None, limit=10)
    assert found is not None
    assert not found.enabled
    assert found.disabled_reason is not None
    assert "answered 500" in found.disabled_reason
    failed = [d for d in log if d.delivery.state == "failed"]
    assert len(failed) == 1
    assert failed[0].event.type == "order.created"
    tries = len(hooks.receiver.requests)
    print("webhook give-up test:", {"tries": tries, "reason": found.disabled_reason})
    assert 25 <= tries <= 40
    assert failed[0].delivery.attempts == tries
    assert {r.event_id for r in hooks.receiver.requests} == {failed[0].event.id}
    assert all(d.delivery.state == "pending" for d in log if d is not failed[0])  # kept, in order

    hooks.receiver.answer = 200
    async with transaction(hooks.sessions) as session:
        await webhooks.redeliver(session, endpoint.id, failed[0].delivery.id)  # first, as ops are told
        await webhooks.set_enabled(session, endpoint.id, True, None)
    await wake(hooks.env.client, hooks.task_queue, endpoint.id)
    await _skip_until_settled(hooks, timedelta(seconds=1), limit=60)
    payloads = hooks.receiver.payloads(endpoint.secret)
    assert [p["type"] for p in payloads] == ["order.created", *STORY[1:]]
    assert payloads[0]["data"]["order_id"] == order_id
    assert hooks.receiver.taken()[0].event_id == failed[0].event.id
