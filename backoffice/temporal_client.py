"""Connecting to Temporal (the embedded dev server, a self-hosted cluster with mTLS, or Temporal Cloud), and
starting order workflows."""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from backoffice.settings import Settings
from workflows import search_attributes as sa
from workflows.models import OrderInput, Phase, Status
from workflows.order import OrderWorkflow

T = TypeVar("T")


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client for the settings' Temporal; `runtime` carries the process's metrics (telemetry.py)."""
    tls: bool | TLSConfig = False
    if settings.temporal_tls_cert or settings.temporal_tls_ca:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
            client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
        )
    elif settings.temporal_api_key:
        tls = True  # Temporal Cloud's API keys only travel over TLS
    return await Client.connect(
        settings.require_temporal_address(),
        namespace=settings.temporal_namespace,
        tls=tls,
        api_key=settings.temporal_api_key,
        runtime=runtime,
    )


def workflow_id(order_id: int) -> str:
    return f"order-{order_id}"


async def start_order_workflow(client: Client, task_queue: str, order: OrderInput) -> None:
    """Start the order's workflow; one that already runs (a replay) is fine, a duplicate is never made."""
    try:
        await client.start_workflow(
            OrderWorkflow.run,
            order,
            id=workflow_id(order.order_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.ORDER_STATUS, Status.PENDING),
                    SearchAttributePair(sa.ORDER_PHASE, Phase.QUEUED),
                    SearchAttributePair(sa.CUSTOMER_ID, order.customer_id),
                    SearchAttributePair(sa.SERVICE_ID, order.service_id),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass


class OrderActionRefused(Exception):
    """An order refused a message (its validator said no, or it has ended); `code` is stable for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


ORDER_MESSAGES = (
    "cancel",
    "request_refill",
    "refund",
    "pause",
    "resume",
    "report_link_fault",
    "reconcile_run",
    "retry",
)


async def send_order_update(client: Client, order_id: int, update: str, arg: Any, result_type: type[T]) -> T:
    """Send one of the order's updates and wait for its answer.

    A refusal comes back as OrderActionRefused with the validator's code and text (API v2's standard text
    where it has one); an order whose workflow has ended refuses with `order_closed`.
    """
    if update not in ORDER_MESSAGES:
        raise ValueError(f"orders take no {update!r} message")
    handle = client.get_workflow_handle(workflow_id(order_id))
    try:
        return await handle.execute_update(update, arg, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise OrderActionRefused(cause.type, cause.message) from exc
        raise
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise OrderActionRefused("order_closed", f"order {order_id} has ended") from exc
        raise
