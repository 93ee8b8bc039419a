"""Accuracy and quantity: a shortfall within tolerance is Completed with no refund; beyond it the order is
Partial and the shortfall is refunded; over-delivery is never charged."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from store import ledger
from store.orders import get_order
from support import ScriptedProvider, balances, open_shop, order_worker, place, run_order
from workflows import policy
from workflows.models import Phase, Status


def _settle(delivered: int, tolerance_bp: int, *, service_failed: bool = False) -> tuple[Status, int]:
    status, refund, _units, _revenue = policy.final_settlement(
        quantity=1000,
        delivered=delivered,
        charge=1_000_000,
        refunded=0,
        refunded_units=0,
        tolerance_bp=tolerance_bp,
        stop_kind=None,
        link_fault_refund="none",
        service_failed=service_failed,
    )
    return status, refund


def test_tolerance_is_a_share_of_the_quantity() -> None:
    assert _settle(980, 200) == (Status.COMPLETED, 0)
    assert _settle(979, 200) == (Status.PARTIAL, 21_000)
    assert _settle(1050, 200) == (Status.COMPLETED, 0)  # over-delivery: nothing more is charged
    assert _settle(0, 0) == (Status.CANCELED, 1_000_000)
    # A complete failure refunds what is missing even within the tolerance.
    assert _settle(980, 200, service_failed=True) == (Status.PARTIAL, 20_000)


async def _deliver(
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], remains: int
) -> tuple[object, dict[str, int], int]:
    shop = await open_shop(sessions)
    order = await place(sessions, shop, 1000)  # 1.00 per 1000: charge 1_000_000 micros
    provider = ScriptedProvider(
        script={
            order.routes[0].provider_id: [
                ("In progress", 600),
                ("Partial" if remains > 0 else "Completed", remains),
            ]
        }
    )
    async with order_worker(env.client, sessions, provider) as queue:
        state = await run_order(env.client, queue, order)
    async with sessions() as session:
        row = await get_order(session, order.order_id)
        assert row is not None
        assert await ledger.check_invariants(session) == []
    return state, await balances(sessions, order), row.refunded_micros


async def test_a_shortfall_within_tolerance_completes_without_refund(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    state, money, refunded = await _deliver(temporal_env, sessions, remains=20)
    assert (state.status, state.phase, state.delivered) == (Status.COMPLETED, Phase.CLOSED, 980)
    assert refunded == 0
    assert money == {"customer": 99_000_000, "escrow": 0, "revenue": 1_000_000}


async def test_a_shortfall_beyond_tolerance_is_partial_and_refunded(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    state, money, refunded = await _deliver(temporal_env, sessions, remains=300)
    assert (state.status, state.delivered) == (Status.PARTIAL, 700)
    assert refunded == 300_000
    assert money == {"customer": 99_300_000, "escrow": 0, "revenue": 700_000}


async def test_over_delivery_is_never_charged(
    temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]
) -> None:
    state, money, _refunded = await _deliver(temporal_env, sessions, remains=-40)
    assert (state.status, state.delivered) == (Status.COMPLETED, 1000)
    assert money == {"customer": 99_000_000, "escrow": 0, "revenue": 1_000_000}


def test_what_a_run_delivered_is_read_from_remains() -> None:
    assert policy.delivered_in_run(500, Status.IN_PROGRESS, 120) == 380
    assert policy.delivered_in_run(500, Status.COMPLETED, None) == 500  # no remains: trusted only when done
    assert policy.delivered_in_run(500, Status.CANCELED, None) == 0
    assert policy.delivered_in_run(500, Status.COMPLETED, -30) == 500  # over-delivery is not counted
    assert policy.delivered_in_run(500, Status.PARTIAL, 900) == 0
