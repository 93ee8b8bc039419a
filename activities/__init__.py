"""Side-effect wrappers the worker registers. They hold no business rules (those live in workflows/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.ledger import LedgerActivities
from activities.projection import ProjectionActivities
from activities.provider import ProviderActivities
from activities.slots import SlotActivities


def build_activities(
    sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> list[Callable[..., Any]]:
    ledger = LedgerActivities(sessions)
    projection = ProjectionActivities(sessions)
    provider = ProviderActivities(sessions, http)
    slots = SlotActivities(sessions)
    return [
        ledger.settle_order,
        ledger.refund_order,
        projection.project_order,
        projection.open_refill,
        slots.release_slot,
        provider.submit_run,
        provider.check_run,
        provider.cancel_run,
        provider.submit_refill,
        provider.check_refill,
    ]
