"""Structured logs: JSON lines that carry order_id and workflow_id, from the API, the worker and workflows."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from ops_support import SIM_SERVICE, open_sim_shop, sim_worker, wait_for_order
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, workflow
from temporalio.testing import WorkflowEnvironment

from backoffice.logs import order_context, setup_logging
from backoffice.temporal_client import start_order_workflow, workflow_id
from providers.simulator import create_simulator_app
from support import place


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The process's logging set up as the api/worker/cli do, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    saved_on_message = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    buffer = io.StringIO()
    setup_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = saved_on_message


def _parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is one JSON object


def test_a_line_names_its_order_from_context_extra_or_temporal_details(log_lines: io.StringIO) -> None:
    log = logging.getLogger("backoffice.test")
    log.info("no order here")
    with order_context(order_id=42):
        log.info("inside order %s", 42)
    with order_context(workflow_id="order-7"):
        log.warning("inside a workflow id", extra={"run_no": 2})
    log.info("explicit", extra={"order_id": 9})
    log.info("from the sdk", extra={"temporal_workflow": {"workflow_id": "order-5", "run_id": "r"}})
    log.info("another workflow", extra={"temporal_activity": {"workflow_id": "sweep-1"}})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    lines = _parsed(log_lines)
    ids = [(line["message"], line.get("order_id"), line.get("workflow_id")) for line in lines]
    assert ids == [
        ("no order here", None, None),
        ("inside order 42", 42, "order-42"),
        ("inside a workflow id", 7, "order-7"),
        ("explicit", 9, "order-9"),
        ("from the sdk", 5, "order-5"),
        ("another workflow", None, "sweep-1"),
        ("failed", None, None),
    ]
    assert lines[2]["run_no"] == 2
    assert lines[2]["level"] == "WARNING"
    assert lines[2]["logger"] == "backoffice.test"
    assert "ValueError: boom" in lines[-1]["exc"]
    assert lines[0]["ts"].endswith("+00:00")


async def test_worker_activity_and_workflow_lines_carry_the_order(
    log_lines: io.StringIO, dev_server: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # alpha refuses the run (a service it does not have): the workflow logs that the route gave up, then
    # beta delivers. Provider calls are logged from inside the activities.
    routes = [{"provider": "alpha", "service": "999"}, {"provider": "beta", "service": SIM_SERVICE}]
    shop = await open_sim_shop(sessions, routes=routes)
    order = await place(sessions, shop, 200)
    sim = create_simulator_app(api_key="sim-demo-key")
    async with sim_worker(dev_server.client, sessions, sim, "logs-test") as queue:
        await start_order_workflow(dev_server.client, queue, order)
        await wait_for_order(sessions, order.order_id, status="Completed", phase="closed")

    lines = _parsed(log_lines)
    mine = [line for line in lines if line.get("order_id") == order.order_id]
    assert all(line["workflow_id"] == workflow_id(order.order_id) for line in mine)
    refused = [line for line in mine if line.get("action") == "add" and line.get("outcome") == "rejected"]
    assert refused
    assert refused[0]["level"] == "WARNING"
    assert refused[0]["logger"] == "backoffice.telemetry"
    assert any(line.get("action") == "status" and line["outcome"] == "ok" for line in mine)
    alpha = order.routes[0].provider_id
    gave_up = [line for line in mine if line["message"].startswith(f"route {alpha} gave up")]
    assert gave_up
    assert gave_up[0]["logger"] == "temporalio.workflow"
    assert "{" not in gave_up[0]["message"]  # the SDK's details are fields, not glued to the message
