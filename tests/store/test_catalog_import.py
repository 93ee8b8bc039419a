"""`backoffice catalog import`: the real command, against the simulator over HTTP, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from simserver import serve
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.simulator import create_simulator_app
from providers.simulator.model import TYPED
from store.catalog import load_catalog, marked_up_micros, parse_markup_bp
from store.db import transaction
from store.models import Route, Service

BACKOFFICE = Path(sys.executable).parent / "backoffice"


def service(id: int, routes: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": id,
        "name": f"Our service {id}",
        "category": "Ours",
        "rate": "9.99",
        "min": 1,
        "max": 5,
        "pace_per_hour": 1000,
        "refill_days": 7,
        "link_pattern": r"https://.+",
        "routes": [{"provider": p, "service": s} for p, s in routes],
    }


async def run_import(db_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(BACKOFFICE),
        "catalog",
        "import",
        *args,
        env={**os.environ, "DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def catalog_state(sessions: async_sessionmaker[AsyncSession]) -> dict[int, dict[str, Any]]:
    async with sessions() as session:
        services = {s.id: s for s in await session.scalars(select(Service))}
        routes = list(await session.scalars(select(Route).order_by(Route.service_id, Route.position)))
    return {
        sid: {
            "rate": s.rate_micros,
            "min": s.min_quantity,
            "max": s.max_quantity,
            "active": s.active,
            "name": s.name,
            "refill_days": s.refill_days,
            "cancel": s.cancel,
            "routes": [(r.provider_id, r.provider_service_id) for r in routes if r.service_id == sid],
        }
        for sid, s in services.items()
    }


def test_markup_and_rounding() -> None:
    assert parse_markup_bp("30") == 3000
    assert parse_markup_bp("12.5") == 1250
    assert marked_up_micros(Decimal("0.005"), 3333) == 6667  # 6666.5 rounds half up


async def test_import_creates_updates_and_marks_withdrawn_services(
    sessions: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    async with serve(create_simulator_app(api_key="sim-key")) as url:
        async with transaction(sessions) as session:
            providers = [
                {"name": "sim", "api_url": f"{url}/api/v2", "api_key": "sim-key"},
                {"name": "other", "api_url": "http://other/api/v2", "api_key": "k"},
            ]
            services = [
                service(1, [("sim", "101")]),
                service(2, [("sim", "102"), ("other", "x")]),
                service(3, [("sim", "103")]),
            ]
            await load_catalog(session, {"providers": providers, "services": services})
            sim_id = 1
        body = {"name": "TikTok Views", "category": "TikTok", "rate": "0.01", "min": 100, "max": 100000}
        async with httpx.AsyncClient(base_url=url) as http:
            for typed in TYPED:  # the services of other types have a test of their own
                assert (await http.delete(f"/sim/services/{typed[0]}")).status_code == 200
            assert (await http.put("/sim/services/205", json=body)).status_code == 200
            assert (await http.delete("/sim/services/102")).status_code == 200
            assert (await http.delete("/sim/services/103")).status_code == 200

            code, out, err = await run_import(db_url, "sim", "--markup", "30")
            assert code == 0, out + err
            assert "3/3 services" in err
            assert "created 2, updated 1, route dropped from 1, unavailable 1" in out

            state = await catalog_state(sessions)
            other_id = state[2]["routes"][-1][0]
            assert state[1] | {"routes": None} == {
                "rate": 585_000,  # 0.45 + 30 %
                "min": 50,
                "max": 10_000,
                "active": True,
                "name": "Our service 1",  # the panel's own name and terms stay
                "refill_days": 7,
                "cancel": True,
                "routes": None,
            }
            assert state[2]["routes"] == [(other_id, "x")]
            assert state[2]["active"]
            assert state[3]["active"] is False
            assert state[3]["routes"] == [(sim_id, "103")]
            assert state[4]["name"] == "Instagram Reel Views"
            assert state[4]["rate"] == 6_500
            assert state[4]["routes"] == [(sim_id, "104")]
            assert state[4]["refill_days"] == 0
            assert state[5]["name"] == "TikTok Views"
            assert state[5]["rate"] == 13_000
            assert (state[5]["min"], state[5]["max"]) == (100, 100_000)

            # 103 comes back: its service is available again; nothing is created twice.
            again = {"name": "Likes", "rate": "0.05", "min": 10, "max": 100000, "cancel": True}
            assert (await http.put("/sim/services/103", json=again)).status_code == 200
            code, out, err = await run_import(db_url, "sim")
            assert code == 0, out + err
            assert "created 0, updated 4, route dropped from 0, unavailable 0" in out
            state = await catalog_state(sessions)
            assert sorted(state) == [1, 2, 3, 4, 5]
            assert state[3]["active"] is True
            assert state[3]["rate"] == 50_000

    code, _, err = await run_import(db_url, "nobody")
    assert code == 1
    assert "unknown provider" in err
    code, _, err = await run_import(db_url, "sim", "--markup", "-5")
    assert code == 2
    assert "markup" in err
    code, _, err = await run_import(db_url, "sim")  # the simulator is gone: the command says so
    assert code == 1
    assert "could not connect" in err
