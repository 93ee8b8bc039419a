"""The catalogue and service types: a service keeps its type, a route must be a provider service of the
same type (`catalog load`, `catalog import` against the simulator over HTTP), and the demo catalogue sells
every orderable type through a simulator service of that type."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from simserver import serve
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_catalog_import import run_import, service

from providers.simulator import create_simulator_app
from providers.simulator.model import SERVICES
from providers.simulator.subscriptions import SUBSCRIPTION_SERVICES
from store.catalog import DEMO_CATALOG, CatalogError, load_catalog, read_catalog
from store.db import transaction
from store.models import Service
from workflows.models import ServiceType

PROVIDERS = [{"name": "sim", "api_url": "http://sim/api/v2", "api_key": "k"}]


def typed(id: int, kind: str, route_type: str | None) -> dict[str, Any]:
    route = {"provider": "sim", "service": "302"} | ({"type": route_type} if route_type else {})
    return service(id, []) | {"type": kind, "routes": [route]}


async def _types(sessions: async_sessionmaker[AsyncSession]) -> dict[int, str]:
    async with sessions() as session:
        return {s.id: s.type for s in await session.scalars(select(Service))}


async def test_load_keeps_the_type_and_refuses_a_route_of_another(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as session:
        await load_catalog(
            session, {"providers": PROVIDERS, "services": [typed(1, "custom  comments", None)]}
        )
    assert await _types(sessions) == {1: "Custom Comments"}  # spelled loosely, stored as API v2 names it
    for bad, words in (
        (typed(2, "Custom Comments", "Default"), "service 2 is Custom Comments, but sim lists"),
        (typed(3, "Comments please", None), "unknown type 'Comments please'"),
    ):
        with pytest.raises(CatalogError, match=words):
            async with transaction(sessions) as session:
                await load_catalog(session, {"providers": PROVIDERS, "services": [bad]})
    assert await _types(sessions) == {1: "Custom Comments"}  # nothing of a refused load was written


async def test_import_keeps_the_providers_type_and_refuses_a_changed_one(
    sessions: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    async with serve(create_simulator_app(api_key="sim-key")) as url:
        async with transaction(sessions) as session:
            provider = {"name": "sim", "api_url": f"{url}/api/v2", "api_key": "sim-key"}
            await load_catalog(session, {"providers": [provider], "services": []})
        code, out, err = await run_import(db_url, "sim")
        assert code == 0, out + err
        async with sessions() as session:
            imported = {s.name: s.type for s in await session.scalars(select(Service))}
        assert imported == {s.name: s.type for s in SERVICES.values()}
        assert set(imported.values()) == set(ServiceType) - {ServiceType.SUBSCRIPTIONS}

        # The provider now lists its custom comments service as a Default one: the import stops.
        async with httpx.AsyncClient(base_url=url) as http:
            body = {"name": "Comments?", "rate": "10.00", "min": 5, "max": 1000, "type": "Default"}
            assert (await http.put("/sim/services/302", json=body)).status_code == 200
        code, out, err = await run_import(db_url, "sim", "--markup", "50")
        assert code == 1, out + err
        assert "is Custom Comments, but sim lists its service 302 as Default" in err
        async with sessions() as session:
            rates = set(await session.scalars(select(Service.rate_micros)))
            count = await session.scalar(select(func.count()).select_from(Service))
        assert count == len(SERVICES)
        assert rates == {int(float(s.rate) * 1_000_000) for s in SERVICES.values()}  # no markup taken


def test_the_demo_catalogue_sells_every_type_through_a_simulator_service_of_that_type() -> None:
    catalog = read_catalog(DEMO_CATALOG, simulator_url="http://127.0.0.1:8100")
    kinds = set()
    for s in catalog["services"]:
        kind = s.get("type", "Default")
        kinds.add(kind)
        for route in s["routes"]:
            assert route["provider"] == "simulator"
            offered = SERVICES | SUBSCRIPTION_SERVICES  # the simulator process offers both
            assert offered[route["service"]].type == kind, (s["id"], route)
    assert kinds == set(ServiceType)
