"""Service interruption, money side: a provider order the order gives up is still followed to its end.

On the simulator over HTTP, with the real worker: route 1 goes down after taking the order, the order fails
over with the remainder to route 2, and route 1 then comes back and delivers everything. Those late units
count as delivered (the customer is not refunded for units that arrived), the panel sees what it bought
from each provider, and what the order cost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
from ops_support import open_sim_shop
from simserver import serve
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from backoffice.telemetry import metered_http_client
from providers.simulator import create_simulator_app
from store.models import ProviderSubmission
from support import balances, place, start_order
from worker import build_worker
from workflows.models import OrderState, Phase, Status
from workflows.order import OrderWorkflow

SLOW, FAST = "901", "902"  # route 1 delivers a unit a simulated second; route 2 at once


async def _until(
    env: WorkflowEnvironment, handle: object, reached: Callable[[OrderState], bool], *, step: timedelta
) -> OrderState:
    for _ in range(400):
        state: OrderState = await handle.query(OrderWorkflow.state)  # type: ignore[attr-defined]
        if reached(state):
            return state
        await env.sleep(step)
    raise AssertionError(f"never reached; last {state}")


async def test_a_route_given_up_in_an_outage_delivers_late_and_its_units_count(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    env = temporal_env
    sim = create_simulator_app(api_key="sim-demo-key")
    async with serve(sim) as sim_url, httpx.AsyncClient(base_url=sim_url) as control:
        for service_id, speed in ((SLOW, 1.0), (FAST, 10_000.0)):
            body = {"name": f"followers {service_id}", "rate": "0.50", "min": 10, "max": 10_000,
                    "cancel": True, "speed": speed, "start_delay": 0}  # fmt: skip
            (await control.put(f"/sim/services/{service_id}", json=body)).raise_for_status()
        shop = await open_sim_shop(
            sessions,
            api_url=f"{sim_url}/api/v2",
            routes=[{"provider": "alpha", "service": SLOW}, {"provider": "beta", "service": FAST}],
            max_interruption_hours=1,
            pace_per_hour=1000,
        )
        order = await place(sessions, shop, 400)
        alpha, beta = (r.provider_id for r in order.routes)
        queue = f"given-up-{uuid.uuid4().hex[:8]}"
        async with (
            metered_http_client() as http,
            build_worker(env.client, queue, sessions, http),
        ):
            with env.auto_time_skipping_disabled():  # the test moves workflow time itself
                handle = await start_order(env.client, queue, order)
                await _until(env, handle, lambda s: s.provider_id == alpha, step=timedelta(seconds=1))
                (await control.post("/sim/clock/advance", json={"seconds": 86})).raise_for_status()
                await _until(env, handle, lambda s: s.delivered >= 80, step=timedelta(seconds=5))
                # Route 1 goes down with about 86 of 400 delivered.
                outage = {"service": SLOW, "scenario": "outage"}
                (await control.post("/sim/scenario", json=outage)).raise_for_status()
                await _until(env, handle, lambda s: s.phase == Phase.INTERRUPTED, step=timedelta(minutes=1))
                failed_over = await _until(
                    env, handle, lambda s: s.provider_id == beta, step=timedelta(minutes=5)
                )
                sent_to_beta = failed_over.provider_orders[-1].units
                assert 300 <= sent_to_beta <= 320  # the remainder: route 1 had delivered 80-100
                # Route 2 is done; the order waits for route 1's final word instead of settling on a guess.
                settling = await _until(
                    env, handle, lambda s: s.phase == Phase.SETTLING, step=timedelta(seconds=2)
                )
                assert settling.status == Status.IN_PROGRESS
                assert settling.refunded_micros == 0
                # Route 1 comes back and has delivered everything meanwhile.
                (
                    await control.post("/sim/scenario", json={"service": SLOW, "scenario": "normal"})
                ).raise_for_status()
                (await control.post("/sim/clock/advance", json={"seconds": 400})).raise_for_status()
                await _until(env, handle, lambda s: s.phase == Phase.CLOSED, step=timedelta(minutes=1))
                state = await handle.result()
        cancels = (await control.get("/sim/requests", params={"action": "cancel"})).json()["requests"]

    # Every unit arrived: Completed, nothing refunded; the panel bought 400 + the remainder.
    assert (state.status, state.delivered, state.refunded_micros) == (Status.COMPLETED, 400, 0)
    assert await balances(sessions, order) == {"customer": 99_600_000, "escrow": 0, "revenue": 400_000}
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(ProviderSubmission).where(ProviderSubmission.order_id == order.order_id)
            )
        )
    bought = {
        r.provider_id: (r.quantity, r.delivered, r.abandoned_at is not None, r.finished_at is not None)
        for r in rows
    }
    assert bought == {alpha: (400, 400, True, True), beta: (sent_to_beta, sent_to_beta, False, True)}
    assert sum(r.cost_micros or 0 for r in rows) == (400 + sent_to_beta) * 500  # 0.50 per 1000 units
    assert cancels, "the order asked route 1 to cancel the run it gave up"
    bought_units = 400 + sent_to_beta
    print(f"failover: ordered 400, bought {bought_units} from providers, refunded {state.refunded_micros}")
