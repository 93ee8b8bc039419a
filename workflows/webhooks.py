"""The delivery of one webhook endpoint's events: a small workflow per endpoint (`webhooks-<id>`), apart
from every order's workflow, so a slow or dead receiver never holds up an order.

It sends the endpoint's pending deliveries one at a time in the order their events happened (so an order's
events arrive in order), each by one activity that Temporal retries with exponential backoff for 25 hours,
the same event id on every try. When a delivery's retries run out the endpoint is disabled with the reason
and the workflow ends. With nothing to send it waits for the worker's feeder to wake it, and ends after a
quiet while; the feeder starts it again with the next event. It continues as new after a few hundred
deliveries, so its history stays short.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

# Retries of one delivery: 10 s, 20 s, 40 s ... then hourly, for 25 hours in all (about 33 tries).
FIRST_RETRY = timedelta(seconds=10)
RETRY_BACKOFF = 2.0
LONGEST_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=25)
SEND_RETRY = RetryPolicy(
    initial_interval=FIRST_RETRY, backoff_coefficient=RETRY_BACKOFF, maximum_interval=LONGEST_RETRY
)
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# A try gets this long; the HTTP request itself is cut off sooner (activities/webhooks.py).
TRY_TIMEOUT = timedelta(seconds=30)
QUIET_WHILE = timedelta(minutes=5)
BATCH = 50
DELIVERIES_PER_RUN = 500


def retry_delay(attempt: int) -> timedelta:
    """How long Temporal waits after failed try number `attempt` (1-based) under SEND_RETRY."""
    seconds = FIRST_RETRY.total_seconds() * RETRY_BACKOFF ** min(attempt - 1, 32)
    return min(timedelta(seconds=seconds), LONGEST_RETRY)


@dataclass(frozen=True)
class EndpointFeed:
    endpoint_id: int


@dataclass(frozen=True)
class DueDeliveries:
    endpoint_id: int
    limit: int


@dataclass(frozen=True)
class SendDelivery:
    endpoint_id: int
    delivery_id: int


@dataclass(frozen=True)
class GiveUp:
    endpoint_id: int
    delivery_id: int
    failure: str


def delivery_workflow_id(endpoint_id: int) -> str:
    return f"webhooks-{endpoint_id}"


@workflow.defn(name="WebhookDelivery")
class WebhookDelivery:
    def __init__(self) -> None:
        self._woken = False

    @workflow.signal
    def wake(self) -> None:
        """New deliveries may be waiting (sent by the worker's feeder, and after a manual redelivery)."""
        self._woken = True

    @workflow.run
    async def run(self, feed: EndpointFeed) -> int:
        """Returns how many deliveries this run sent (or saw disabled or deleted meanwhile)."""
        sent = 0
        while sent < DELIVERIES_PER_RUN:
            self._woken = False
            due: list[int] = await workflow.execute_activity(
                "due_webhook_deliveries",
                DueDeliveries(feed.endpoint_id, BATCH),
                result_type=list[int],
                start_to_close_timeout=TRY_TIMEOUT,
                retry_policy=STORE_RETRY,
            )
            if not due:
                try:
                    await workflow.wait_condition(lambda: self._woken, timeout=QUIET_WHILE)
                except TimeoutError:
                    return sent
                continue
            for delivery_id in due:
                try:
                    await workflow.execute_activity(
                        "send_webhook",
                        SendDelivery(feed.endpoint_id, delivery_id),
                        start_to_close_timeout=TRY_TIMEOUT,
                        schedule_to_close_timeout=GIVE_UP_AFTER,
                        retry_policy=SEND_RETRY,
                    )
                except ActivityError as failure:
                    cause = failure.cause or failure
                    await workflow.execute_activity(
                        "give_up_webhook",
                        GiveUp(feed.endpoint_id, delivery_id, str(cause) or type(cause).__name__),
                        start_to_close_timeout=TRY_TIMEOUT,
                        retry_policy=STORE_RETRY,
                    )
                    return sent
                sent += 1
        workflow.continue_as_new(feed)
