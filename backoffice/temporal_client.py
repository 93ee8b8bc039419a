"""Connecting to Temporal (the embedded dev server, a self-hosted cluster with mTLS, or Temporal Cloud), and
starting order workflows. Messages to orders go through backoffice/messaging.py."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from backoffice.settings import Settings
from backoffice.web_ui import order_details, order_summary
from workflows import search_attributes as sa
from workflows.models import OrderInput, Phase, Status
from workflows.order import OrderWorkflow
from workflows.payloads import DATA_CONVERTER


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """A client for the settings' Temporal; `runtime` carries the process's metrics (telemetry.py),
    `interceptors` its tracing (tracing.py; a worker on this client inherits them)."""
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
        interceptors=interceptors,
        data_converter=DATA_CONVERTER,  # None as JSON null: readable in the Web UI
    )


def workflow_id(order_id: int) -> str:
    return f"order-{order_id}"


async def start_order_workflow(client: Client, task_queue: str, order: OrderInput) -> None:
    """Start the order's workflow; one that already runs (a replay) is fine, a duplicate is never made."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            OrderWorkflow.run,
            order,
            id=workflow_id(order.order_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # What the Web UI shows at the top of the order's page, in money and words ops read.
            static_summary=order_summary(order),
            static_details=order_details(order),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.ORDER_STATUS, Status.PENDING),
                    SearchAttributePair(sa.ORDER_PHASE, Phase.QUEUED),
                    SearchAttributePair(sa.CUSTOMER_ID, order.customer_id),
                    SearchAttributePair(sa.SERVICE_ID, order.service_id),
                ]
            ),
        )
