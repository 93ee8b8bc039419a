"""The service catalog: load a catalog file (providers, services and their routes) idempotently, and import
a provider's service list with a markup."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from providers.client import ProviderService
from store.db import autocommit
from store.models import Provider, Route, Service
from workflows.models import ServiceType
from workflows.policy import parse_money, parse_percent_bp
from workflows.text import service_type

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")


class CatalogError(ValueError):
    pass


def read_catalog(path: Path, **substitutions: str) -> dict[str, Any]:
    raw = path.read_text()
    for name, value in substitutions.items():
        raw = raw.replace("{" + name + "}", value)
    data: dict[str, Any] = json.loads(raw)
    return data


def _known_type(what: str, name: str) -> ServiceType:
    kind = service_type(name)
    if kind is None:
        raise CatalogError(f"{what}: unknown type {name!r}; the types are {', '.join(ServiceType)}")
    return kind


def _mismatch(service: int, kind: str, provider: str, provider_service: str, theirs: str) -> str:
    return (
        f"service {service} is {kind}, but {provider} lists its service {provider_service} as {theirs}: "
        "an order would reach the provider without the parameters its type needs"
    )


def _optional_rate(value: object) -> float | None:
    if value is None:
        return None
    rate = float(str(value))
    if not rate > 0:
        raise CatalogError(f"rate_limit_per_second must be positive, not {value!r}")
    return rate


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
            "rate_limit_per_second": _optional_rate(p.get("rate_limit_per_second")),
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
        kind = _known_type(f"service {s['id']}", str(s.get("type", ServiceType.DEFAULT)))
        values = {
            "id": int(s["id"]),
            "name": s["name"],
            "category": s["category"],
            "type": kind,
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
            "deny_link_duplicates": bool(s.get("deny_link_duplicates", False)),
            "active": bool(s.get("active", True)),
            # A Subscriptions service's child orders are placed on this service (listed before it).
            "child_service_id": int(s["child_service"]) if s.get("child_service") else None,
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
            # A route may say the type its provider lists the service with: it must be the service's own.
            theirs = _known_type(f"service {values['id']}'s route", str(route.get("type", kind)))
            if theirs != kind:
                raise CatalogError(_mismatch(values["id"], kind, route["provider"], route["service"], theirs))
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


# ---------------------------------------------------------------------------------------------- import

# A new service gets the panel's usual refill terms when the provider refills, and checks links loosely
# until ops set a pattern; a pace of its max quantity delivers an order in one run.
IMPORT_REFILL_DAYS = 30
IMPORT_REFILL_MAX = 3
IMPORT_LINK_PATTERN = r"https?://\S{1,500}"


@dataclass
class ImportReport:
    created: list[int] = field(default_factory=list)  # our new service ids
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (provider service, type) of unknown type
    updated: list[int] = field(default_factory=list)  # services whose first route is this provider
    unavailable: list[int] = field(default_factory=list)  # services left without a route that works
    routes_dropped: list[int] = field(default_factory=list)  # services that lost this provider as a route


_PERCENT = re.compile(r"[0-9]{1,4}(\.[0-9]{1,2})?")


def parse_markup_bp(text: str) -> int:
    """A markup percentage ("30", "12.5") as basis points; 0 to 1000 %, at most 2 decimals."""
    if not _PERCENT.fullmatch(text.strip()):  # Decimal alone would also read "٣٠" or "1e2"
        raise CatalogError(f"markup must be 0 to 1000 % with at most 2 decimals, not {text!r}")
    try:
        value = Decimal(text.strip()) * 100
    except InvalidOperation as exc:
        raise CatalogError(f"not a percentage: {text!r}") from exc
    if not value.is_finite() or value != value.to_integral_value() or not 0 <= value <= 100_000:
        raise CatalogError(f"markup must be 0 to 1000 % with at most 2 decimals, not {text!r}")
    return int(value)


def marked_up_micros(rate: Decimal, markup_bp: int) -> int:
    """Our price per 1000 units: the provider's rate plus the markup, rounded half up to a micro-unit."""
    micros = rate * 1_000_000 * (10_000 + markup_bp) / 10_000
    return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def import_services(
    session: AsyncSession,
    provider_name: str,
    offered: list[ProviderService],
    markup_bp: int,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Create or update services from what a provider offers, priced at its rate plus the markup.

    - A provider service that no route uses becomes a new service routed to it alone.
    - A service whose first route is the provider's service takes the new rate, bounds and capabilities
      (cancel, drip-feed) and becomes active again; its name, category and policy terms stay the panel's.
    - A provider service that disappeared upstream: a service with other routes loses this route (failover
      goes on through the rest); a service routed only there keeps the route but becomes inactive
      (unavailable for new orders), so it comes back by itself if the provider offers it again.
    - A new service keeps the provider's type; one of a type the back office does not know is skipped. A
      service routed to a provider service the provider now lists with another type refuses the whole
      import (CatalogError): its orders would reach the provider without the parameters that type needs.
    Orders already placed keep the routes frozen in their input.
    """
    provider = await session.scalar(select(Provider).where(Provider.name == provider_name))
    if provider is None:
        raise CatalogError(f"unknown provider {provider_name!r}")
    rows = await session.execute(
        select(Route, Service)
        .join(Service, Service.id == Route.service_id)
        .where(Route.provider_id == provider.id)
    )
    routed: dict[str, list[tuple[Route, Service]]] = {}
    for route, service in rows.tuples():
        routed.setdefault(route.provider_service_id, []).append((route, service))
    next_id = int(await session.scalar(select(func.coalesce(func.max(Service.id), 0))) or 0) + 1
    report = ImportReport()

    mismatched: list[str] = []
    for done, item in enumerate(offered, start=1):
        rate_micros = marked_up_micros(item.rate, markup_bp)
        low, high = max(item.min, 1), max(item.max, item.min, 1)
        kind = service_type(item.type)
        if progress is not None:
            progress(done, len(offered))
        if item.service in routed:
            for route, service in routed[item.service]:
                if service.type != kind:
                    mismatched.append(
                        _mismatch(service.id, service.type, provider.name, item.service, item.type)
                    )
                if route.position != 0:
                    continue
                service.rate_micros = rate_micros
                service.min_quantity, service.max_quantity = low, high
                service.cancel, service.dripfeed = item.cancel, item.dripfeed
                service.active = True
                report.updated.append(service.id)
        elif kind is None:
            report.skipped.append((item.service, item.type))
        else:
            session.add(
                Service(
                    id=next_id,
                    name=item.name[:200],
                    category=item.category[:100],
                    type=kind,
                    rate_micros=rate_micros,
                    min_quantity=low,
                    max_quantity=high,
                    dripfeed=item.dripfeed,
                    cancel=item.cancel,
                    refill_days=IMPORT_REFILL_DAYS if item.refill else 0,
                    refill_cooldown_hours=24,
                    refill_max=IMPORT_REFILL_MAX if item.refill else 0,
                    tolerance_bp=0,
                    pace_per_hour=high,
                    max_interruption_hours=24,
                    link_fault_refund="none",
                    link_pattern=IMPORT_LINK_PATTERN,
                    active=True,
                )
            )
            await session.flush()
            session.add(
                Route(
                    service_id=next_id, position=0, provider_id=provider.id, provider_service_id=item.service
                )
            )
            report.created.append(next_id)
            next_id += 1
    if mismatched:
        raise CatalogError("; ".join(mismatched))

    still_offered = {item.service for item in offered}
    for provider_service_id, uses in routed.items():
        if provider_service_id in still_offered:
            continue
        for route, service in uses:
            others = list(
                await session.scalars(
                    select(Route)
                    .where(Route.service_id == service.id, Route.position != route.position)
                    .order_by(Route.position)
                )
            )
            if not others:
                service.active = False
                report.unavailable.append(service.id)
                continue
            # Renumber the remaining routes from 0, keeping their order.
            kept = [(r.provider_id, r.provider_service_id) for r in others]
            await session.execute(delete(Route).where(Route.service_id == service.id))
            for position, (provider_id, kept_service_id) in enumerate(kept):
                session.add(
                    Route(
                        service_id=service.id,
                        position=position,
                        provider_id=provider_id,
                        provider_service_id=kept_service_id,
                    )
                )
            await session.flush()
            report.routes_dropped.append(service.id)
    await session.flush()
    return report


@dataclass(frozen=True)
class ProviderLink:
    """How the worker reaches a provider."""

    api_url: str
    api_key: str
    rate_limit_per_second: float | None
    accepts_idempotency_key: bool


_PROVIDER_LINK = text(
    "SELECT api_url, api_key, rate_limit_per_second, accepts_idempotency_key FROM providers WHERE id = :id"
)


async def provider_link(session: AsyncSession, provider_id: int) -> ProviderLink | None:
    """Read at every provider call (a changed setting applies at once), so one round trip, no transaction."""
    await autocommit(session)
    row = (await session.execute(_PROVIDER_LINK, {"id": provider_id})).first()
    return ProviderLink(*row) if row is not None else None
