"""Starting subscription workflows (`subscription-<id>`): from the API right after intake, and from the
worker's sweeper for a subscription whose start was lost (its workflow never reported)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from backoffice.messaging import ActionPending, Refused, WorkflowUnavailable
from backoffice.settings import Settings
from store import subscriptions
from store.models import Subscription
from store.subscriptions import subscription_input
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_models import SubscriptionAction, SubscriptionInput, SubscriptionState

log = logging.getLogger(__name__)

UNSTARTED_AFTER_SECONDS = 60


def workflow_id(subscription_id: int) -> str:
    return f"subscription-{subscription_id}"


async def start_subscription_workflow(client: Client, task_queue: str, sub: SubscriptionInput) -> None:
    """Start it; one that already runs is fine, a duplicate is never made."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            SubscriptionWorkflow.run,
            sub,
            id=workflow_id(sub.subscription_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )


async def start_unstarted_subscriptions(
    client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str
) -> int:
    async with sessions() as session:
        found = await subscriptions.unstarted_subscriptions(session, UNSTARTED_AFTER_SECONDS)
        inputs = [subscription_input(row) for row in found]
    for sub in inputs:
        try:
            await start_subscription_workflow(client, task_queue, sub)
        except Exception:  # one subscription's trouble must not hold up the others
            log.exception("sweeper: could not start subscription %s", sub.subscription_id)
    return len(inputs)


async def send_subscription_update(
    client: Client,
    settings: Settings,
    row: Subscription,
    update: Literal["cancel", "pause", "resume"],
    action: SubscriptionAction,
) -> SubscriptionState:
    """One message to the subscription's workflow, within the settings' deadline (started first if its
    start was lost). Raises Refused with the workflow's code (or `cannot_cancel` once it has ended),
    ActionPending, WorkflowUnavailable (backoffice/messaging.py)."""
    seconds = settings.action_timeout_seconds
    try:
        if row.state_version == 0:
            await start_subscription_workflow(client, settings.temporal_task_queue, subscription_input(row))
        async with asyncio.timeout(seconds):
            handle = client.get_workflow_handle(workflow_id(row.id))
            state: SubscriptionState = await handle.execute_update(
                update, action, result_type=SubscriptionState
            )
            return state
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise Refused(cause.type, cause.message) from exc
        raise
    except (TimeoutError, RPCTimeoutOrCancelledError) as exc:
        raise ActionPending(row.id, seconds) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # ended: no message is taken any more
            raise Refused("cannot_cancel", f"subscription {row.id} has ended ({row.status})") from exc
        raise WorkflowUnavailable(row.id, exc) from exc
