"""User responsibility: a link the service cannot take is refused at intake; a link the provider finds
private, deleted, renamed or invalid (or support reports) stops delivery, and the refund follows the
service's `link_fault_refund`: `none` keeps the money, `remaining` refunds what was not delivered."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from store.orders import OrderRejected
from support import (
    ScriptedProvider,
    balances,
    open_shop,
    order_worker,
    place,
    run_order,
    start_order,
    timeline,
    until,
)
from workflows.models import OrderAction, Status
from workflows.order import OrderWorkflow


async def test_a_link_that_does_not_fit_the_service_is_refused_at_intake(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    with pytest.raises(OrderRejected) as refused:
        await place(sessions, shop, 500, link="https://example.com/not-instagram")
    assert refused.value.code == "bad_link"


async def test_a_link_the_provider_refuses_stops_the_order_without_compensation(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions)  # link_fault_refund: none (the default)
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(bad_links={alpha})
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert provider.submitted == []  # not tried at the next route: the link is the problem, not the route
    assert (state.status, state.refunded_micros, state.link_fault) == (Status.CANCELED, 0, "Bad link")
    assert await balances(sessions, order) == {"customer": 99_500_000, "escrow": 0, "revenue": 500_000}


async def test_a_private_account_mid_delivery_refunds_the_rest_where_the_service_says_so(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await open_shop(sessions, link_fault_refund="remaining")
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(
        script={alpha: [("In progress", 400), ("Canceled", 300, "the account is private")]}
    )
    async with order_worker(temporal_env.client, sessions, provider) as queue:
        state = await run_order(temporal_env.client, queue, order)
    assert [run.provider_id for run in provider.submitted] == [alpha]
    assert (state.status, state.delivered, state.refunded_micros) == (Status.PARTIAL, 200, 300_000)
    assert state.link_fault == "the account is private"
    assert await balances(sessions, order) == {"customer": 99_800_000, "escrow": 0, "revenue": 200_000}


async def test_support_reports_a_link_fault_and_delivery_stops(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 500)
    alpha = order.routes[0].provider_id
    provider = ScriptedProvider(script={alpha: [("In progress", 350)]})
    async with order_worker(env.client, sessions, provider) as queue:
        handle = await start_order(env.client, queue, order)
        await until(env, handle, lambda s: s.delivered == 150)
        reported = await handle.execute_update(
            OrderWorkflow.report_link_fault, OrderAction("support:lee", "customer renamed the account")
        )
        assert reported.link_fault == "customer renamed the account"
        state = await handle.result()
    assert len(provider.canceled) == 1  # the provider was asked to stop the run
    assert (state.status, state.delivered, state.refunded_micros) == (Status.PARTIAL, 150, 0)
    assert ("link_fault", "support:lee") in [(k, a) for k, a, _ in await timeline(sessions, order.order_id)]
