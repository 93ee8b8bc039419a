"""The service catalog: load a catalog file (providers, services and their routes) idempotently."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Provider, Route, Service
from workflows.policy import parse_money, parse_percent_bp

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")


class CatalogError(ValueError):
    pass


def read_catalog(path: Path, **substitutions: str) -> dict[str, Any]:
    raw = path.read_text()
    for name, value in substitutions.items():
        raw = raw.replace("{" + name + "}", value)
    data: dict[str, Any] = json.loads(raw)
    return data


async def load_catalog(session: AsyncSession, catalog: dict[str, Any]) -> tuple[int, int]:
    """Upsert providers and services; a service's routes are replaced by the file's. Returns the counts."""
    provider_ids: dict[str, int] = {}
    for p in catalog.get("providers", []):
        values = {
            "name": p["name"],
            "api_url": p["api_url"],
            "api_key": p["api_key"],
            "capacity": int(p.get("capacity", 100)),
            "poll_interval_seconds": int(p.get("poll_interval_seconds", 60)),
            "accepts_idempotency_key": bool(p.get("accepts_idempotency_key", False)),
        }
        upsert = (
            insert(Provider)
            .values(**values)
            .on_conflict_do_update(index_elements=[Provider.name], set_=values)
            .returning(Provider.id)
        )
        provider_ids[p["name"]] = int((await session.execute(upsert)).scalar_one())

    for s in catalog.get("services", []):
        try:
            re.compile(s["link_pattern"])
        except re.error as exc:
            raise CatalogError(f"service {s['id']}: bad link_pattern: {exc}") from exc
        values = {
            "id": int(s["id"]),
            "name": s["name"],
            "category": s["category"],
            "type": s.get("type", "Default"),
            "rate_micros": parse_money(str(s["rate"])),
            "min_quantity": int(s["min"]),
            "max_quantity": int(s["max"]),
            "dripfeed": bool(s.get("dripfeed", False)),
            "cancel": bool(s.get("cancel", False)),
            "refill_days": int(s.get("refill_days", 0)),
            "refill_cooldown_hours": int(s.get("refill_cooldown_hours", 24)),
            "refill_max": int(s.get("refill_max", 0)),
            "tolerance_bp": parse_percent_bp(str(s.get("tolerance_pct", "0"))),
            "pace_per_hour": int(s["pace_per_hour"]),
            "max_interruption_hours": int(s.get("max_interruption_hours", 24)),
            "link_fault_refund": s.get("link_fault_refund", "none"),
            "link_pattern": s["link_pattern"],
            "active": bool(s.get("active", True)),
        }
        stmt = insert(Service).values(**values)
        await session.execute(stmt.on_conflict_do_update(index_elements=[Service.id], set_=values))
        await session.execute(delete(Route).where(Route.service_id == values["id"]))
        for position, route in enumerate(s.get("routes", [])):
            provider_id = provider_ids.get(route["provider"])
            if provider_id is None:
                provider_id = await session.scalar(
                    select(Provider.id).where(Provider.name == route["provider"])
                )
            if provider_id is None:
                raise CatalogError(f"service {values['id']}: unknown provider {route['provider']!r}")
            session.add(
                Route(
                    service_id=values["id"],
                    position=position,
                    provider_id=provider_id,
                    provider_service_id=str(route["service"]),
                )
            )
    await session.flush()
    return len(catalog.get("providers", [])), len(catalog.get("services", []))


async def public_services(session: AsyncSession) -> list[tuple[Service, bool]]:
    """The active services as customers see them, each with whether some active provider can deliver it now.

    Routes and providers stay inside: the flag is all a customer learns about them.
    """
    deliverable = (
        exists()
        .where(Route.service_id == Service.id, Route.provider_id == Provider.id, Provider.active.is_(True))
        .correlate(Service)
    )
    rows = await session.execute(
        select(Service, deliverable.label("available")).where(Service.active.is_(True)).order_by(Service.id)
    )
    return [(row[0], bool(row[1])) for row in rows]
