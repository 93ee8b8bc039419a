"""`store.checks` finds each kind of disagreement between orders, the ledger and the runs, planted on a real
database beside orders that agree (which it must leave alone)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.ledger import LedgerActivities
from store import ledger
from store.checks import Finding, order_findings, running_orders
from store.db import transaction
from store.models import ProviderSubmission
from support import Shop, open_shop, place
from workflows.models import Settlement


async def _set(sessions: async_sessionmaker[AsyncSession], order_id: int, sql: str, **values: Any) -> None:
    async with transaction(sessions) as session:
        await session.execute(text(f"UPDATE orders SET {sql} WHERE id = :id"), {"id": order_id, **values})


async def _runs(sessions: async_sessionmaker[AsyncSession], order_id: int, *delivered: int | None) -> None:
    async with transaction(sessions) as session:
        for n, units in enumerate(delivered, start=1):
            session.add(
                ProviderSubmission(
                    order_id=order_id,
                    run_no=n,
                    provider_id=1,
                    provider_service_id="a1",
                    quantity=100,
                    client_key=f"k{n}",
                    state="accepted",
                    provider_order_id=f"p{order_id}-{n}",
                    delivered=units,
                )
            )


async def _settled(sessions: async_sessionmaker[AsyncSession], shop: Shop, refund: int = 0) -> int:
    """A 100-unit order (0.10) settled with `refund` back, the rest recognised, and closed."""
    order = await place(sessions, shop, 100)
    await LedgerActivities(sessions).settle_order(
        Settlement(order.order_id, shop.customer_id, refund, 100_000 - refund, "settled")
    )
    delivered = 100 - refund // 1000
    await _set(
        sessions,
        order.order_id,
        "phase = 'closed', status = 'Completed', state_version = 9, delivered = :d, refunded_micros = :r",
        d=delivered,
        r=refund,
    )
    return order.order_id


async def test_each_disagreement_is_found_and_agreement_is_left_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(sessions)
    fine_closed = await _settled(sessions, shop, refund=20_000)
    await _runs(sessions, fine_closed, 50, 30)

    # Settled (refill window) with its charge still in escrow.
    held = (await place(sessions, shop, 100)).order_id
    await _set(
        sessions, held, "phase = 'refill_window', status = 'Completed', state_version = 4, delivered = 100"
    )
    await _runs(sessions, held, 100)

    # In flight: past its next step by a day; idle for 30 h with no step planned; on time.
    late, idle, on_time, paused = [(await place(sessions, shop, 100)).order_id for _ in range(4)]
    await _set(
        sessions,
        late,
        "phase = 'delivering', state_version = 2, next_action_at = now() - interval '25 hours'",
    )
    await _set(
        sessions, idle, "phase = 'queued', state_version = 1, updated_at = now() - interval '30 hours'"
    )
    await _set(
        sessions,
        on_time,
        "phase = 'interrupted', state_version = 3, next_action_at = now() - interval '1 hour'",
    )
    await _set(
        sessions, paused, "phase = 'paused', state_version = 3, updated_at = now() - interval '40 hours'"
    )

    # Refunds: booked an hour ago but not in the read model; in the read model but not booked; a refund
    # taken back from revenue (reversal + refund) that agrees; one booked a second ago, not projected yet.
    unprojected, unbooked, reversed_ok, fresh = [
        (await place(sessions, shop, 100)).order_id for _ in range(4)
    ]
    async with transaction(sessions) as session:
        for order_id in (unprojected, fresh):
            await ledger.refund_order(
                session,
                order_id=order_id,
                customer_id=shop.customer_id,
                amount=30_000,
                key=f"order:{order_id}:refund:1",
                actor="support:key2",
                reason="r",
            )
        await session.execute(
            text("UPDATE ledger_transfers SET created_at = now() - interval '1 hour' WHERE order_id = :id"),
            {"id": unprojected},
        )
    await _set(sessions, unbooked, "refunded_micros = 5000")
    await LedgerActivities(sessions).settle_order(
        Settlement(reversed_ok, shop.customer_id, 0, 100_000, "delivered")
    )
    async with transaction(sessions) as session:
        await ledger.refund_order(
            session,
            order_id=reversed_ok,
            customer_id=shop.customer_id,
            amount=40_000,
            key=f"order:{reversed_ok}:refund:1",
            actor="support:key2",
            reason="goodwill",
        )
    await _set(sessions, reversed_ok, "refunded_micros = 40000")

    # Delivered: the runs say 90 of what the order calls 100; runs that over-delivered agree (capped).
    short_runs = await _settled(sessions, shop)
    await _runs(sessions, short_runs, 60, 30, None)
    over = await _settled(sessions, shop)
    await _runs(sessions, over, 80, 50)

    attention = (await place(sessions, shop, 100)).order_id
    await _set(
        sessions,
        attention,
        "phase = 'needs_attention', state_version = 5, "
        "note = 'project_order failed for good: CharacterNotInRepertoireError (SQLSTATE 22021)'",
    )

    async with sessions() as session:
        found = await order_findings(session, stuck_after=timedelta(hours=24))
        running = await running_orders(session)
    assert found == sorted(
        [
            Finding("escrow_after_settlement", held, "refill_window but 0.100000 is still in escrow"),
            Finding("stuck", late, found_detail(found, late)),
            Finding("stuck", idle, found_detail(found, idle)),
            Finding(
                "refunded_mismatch", unprojected, "the order says 0.000000 refunded, the ledger 0.030000"
            ),
            Finding("refunded_mismatch", unbooked, "the order says 0.005000 refunded, the ledger 0.000000"),
            Finding(
                "delivered_mismatch", short_runs, "the order says 100 delivered, its 3 provider order(s) 90"
            ),
            Finding(
                "needs_attention",
                attention,
                "project_order failed for good: CharacterNotInRepertoireError (SQLSTATE 22021)",
            ),
        ],
        key=lambda f: (f.order_id, f.kind),
    )
    assert "when it meant to act next" in found_detail(found, late)
    assert found_detail(found, idle).startswith("queued, no progress since")
    assert "last change" in found_detail(found, idle)
    # Orders whose workflow should still run: every reported order not closed.
    assert set(running) == {held, late, idle, on_time, paused, attention}

    async with sessions() as session:  # with a longer threshold nothing is stuck
        assert not [
            f for f in await order_findings(session, stuck_after=timedelta(hours=48)) if f.kind == "stuck"
        ]


def found_detail(found: list[Finding], order_id: int) -> str:
    return next(f.detail for f in found if f.order_id == order_id)
