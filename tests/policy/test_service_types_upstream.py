"""Every service type end to end against the provider simulator over HTTP, with the real worker: the order is
taken and priced by its type, its parameters reach the provider unchanged under the protocol's names (the
simulator checks them as a provider does and shows what it got in `GET /sim/orders`), and the settlement
follows the type's rule when the provider delivers it all, or only half.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from ops_support import open_sim_shop
from simserver import serve
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from backoffice.telemetry import metered_http_client
from providers.simulator import create_simulator_app
from store.ledger import check_invariants
from support import balances, place, start_order
from worker import build_worker
from workflows.models import OrderParameters, ServiceType, Status
from workflows.text import parse_parameters

T = ServiceType
COMMENTS = "Love this!\r\nGreat shot\n\nSo good\n  Wow  \nAmazing\n"  # 5 lines: a blank one is no comment


def case(
    kind: ServiceType, sim: str, low: int, high: int, sent: int | None, counted: int, **texts: str
) -> Any:
    """(type, the simulator's service, our min and max, the texts sent, the quantity sent, and what the
    provider must receive: its quantity and the parameters as it records them, lists one line an item)."""
    upstream = {
        name: [line.strip() for line in re.split(r"\r?\n", text) if line.strip()]
        if name in ("comments", "usernames", "hashtags", "keywords")
        else text
        for name, text in texts.items()
    }
    return (kind, sim, low, high, texts, sent, counted, upstream)


CASES = [
    case(T.DEFAULT, "104", 100, 10_000, 400, 400),
    case(T.PACKAGE, "301", 1000, 1000, None, 1000),
    case(T.CUSTOM_COMMENTS, "302", 5, 1000, None, 5, comments=COMMENTS),
    case(T.CUSTOM_COMMENTS_PACKAGE, "303", 1, 10, None, 5, comments=COMMENTS),
    case(T.MENTIONS, "304", 100, 10_000, 400, 400, usernames="alice\r\nbob"),
    case(T.MENTIONS_WITH_HASHTAGS, "305", 100, 10_000, 400, 400, usernames="alice", hashtags="#sun\n#sea"),
    case(T.MENTIONS_CUSTOM_LIST, "306", 1, 5000, None, 6, usernames="ann\nben\ncid\ndan\neve\nfay"),
    case(T.MENTIONS_HASHTAG, "307", 100, 10_000, 400, 400, hashtag="#sunset"),
    case(T.MENTIONS_USER_FOLLOWERS, "308", 100, 10_000, 400, 400, username="natgeo"),
    case(T.MENTIONS_MEDIA_LIKERS, "309", 100, 10_000, 400, 400, media="https://instagram.com/p/Media12345"),
    case(T.COMMENT_LIKES, "310", 20, 20_000, 400, 400, username="alice"),
    case(T.COMMENT_REPLIES, "311", 1, 500, None, 2, username="bob", comments="thanks\nagreed"),
    case(T.POLL, "312", 50, 50_000, 400, 400, answer_number="2"),
    case(T.SEO, "313", 100, 100_000, 400, 400, keywords="smm panel\ncheap likes"),
]
RATE = "2.00"
RATE_MICROS = 2_000_000
FLAT = (T.PACKAGE, T.CUSTOM_COMMENTS_PACKAGE)
LINES = (T.CUSTOM_COMMENTS, T.CUSTOM_COMMENTS_PACKAGE, T.MENTIONS_CUSTOM_LIST, T.COMMENT_REPLIES)


def test_every_type_but_subscriptions_is_tried_upstream() -> None:
    assert {case[0] for case in CASES} == set(ServiceType) - {T.SUBSCRIPTIONS}


@pytest.mark.parametrize("delivered_share", [1.0, 0.5], ids=["all", "half"])
@pytest.mark.parametrize(
    ("kind", "sim_service", "low", "high", "texts", "sent", "upstream_quantity", "upstream"),
    CASES,
    ids=[case[0] for case in CASES],
)
async def test_each_type_is_forwarded_unchanged_and_settled_by_its_rule(
    temporal_env: WorkflowEnvironment,
    sessions: async_sessionmaker[AsyncSession],
    kind: ServiceType,
    sim_service: str,
    low: int,
    high: int,
    texts: dict[str, str],
    sent: int | None,
    upstream_quantity: int,
    upstream: dict[str, Any],
    delivered_share: float,
) -> None:
    parameters = parse_parameters(texts)
    assert isinstance(parameters, OrderParameters)
    async with (
        serve(create_simulator_app(api_key="sim-demo-key")) as sim_url,
        httpx.AsyncClient(base_url=sim_url) as control,
    ):
        # The provider delivers at once: all of it, or half and ends Partial.
        (await control.post("/sim/scenario", json={"scenario": "instant"})).raise_for_status()
        if delivered_share < 1:
            half = {"scenario": "partial", "value": delivered_share}
            (await control.post("/sim/scenario", json=half)).raise_for_status()
        shop = await open_sim_shop(
            sessions,
            api_url=f"{sim_url}/api/v2",
            routes=[{"provider": "alpha", "service": sim_service}],
            type=kind,
            rate=RATE,
            min=low,
            max=high,
            pace_per_hour=100_000,
            tolerance_pct="60",  # wide: a count short by half is within it, a missing line never is
            link_pattern=r"https://\S+",
        )
        order = await place(sessions, shop, sent, parameters=parameters)
        charge = RATE_MICROS if kind in FLAT else upstream_quantity * RATE_MICROS // 1000
        assert (order.quantity, order.charge_micros, order.service_type) == (upstream_quantity, charge, kind)
        queue = f"types-{uuid.uuid4().hex[:8]}"
        async with metered_http_client() as http, build_worker(temporal_env.client, queue, sessions, http):
            state = await (await start_order(temporal_env.client, queue, order)).result()
        [at_provider] = (await control.get("/sim/orders")).json()
        [add] = (await control.get("/sim/requests", params={"action": "add"})).json()["requests"]

    # What the provider received: the type's parameters under the protocol's names, nothing else.
    assert (at_provider["type"], at_provider["quantity"], at_provider["parameters"]) == (
        kind,
        upstream_quantity,
        upstream,
    )
    # As sent: lists one item a line, and no quantity where the type counts it itself.
    names = {"service", "link", *upstream, *(["quantity"] if sent is not None else [])}
    assert set(add["params"]) == names
    assert add["params"].get("quantity") == (str(sent) if sent is not None else None)
    for name, value in upstream.items():
        assert add["params"][name] == ("\n".join(value) if isinstance(value, list) else value)
    delivered = at_provider["delivered"]
    missing = upstream_quantity - delivered
    assert state.delivered == delivered
    # A missing line is refunded whatever the tolerance; a count, or a package's units, short by half is
    # within this service's 60 %.
    refund = missing * charge // upstream_quantity if kind in LINES else 0
    assert (state.status, state.refunded_micros) == (
        Status.PARTIAL if refund else Status.COMPLETED,
        refund,
    )
    assert await balances(sessions, order) == {
        "customer": 100_000_000 - charge + refund,
        "escrow": 0,
        "revenue": charge - refund,
    }
    async with sessions() as session:
        assert await check_invariants(session) == []
