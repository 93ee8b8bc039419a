"""Service types at the doors: REST `POST /v1/orders` and API v2 `add` take each type's parameters by their
standard names, `services` names each service's type, and bad parameters are refused with a stable code
(REST) or the standard text (API v2) with nothing written and nothing charged. A third-party API v2 client
(babismm, unchanged) places typed orders over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import smm
from sqlalchemy import func, select
from test_v2 import v2

from store.catalog import load_catalog
from store.db import transaction
from store.models import Order
from support import LINK, Api
from workflows.models import ServiceType

T = ServiceType
# Our services of each type (rate 1.00 per 1000 units or lines; a package 0.05 flat), routed to alpha.
TYPED = {
    T.PACKAGE: (21, 1, 1),
    T.CUSTOM_COMMENTS: (22, 3, 1000),
    T.CUSTOM_COMMENTS_PACKAGE: (23, 1, 5),
    T.MENTIONS: (24, 10, 10_000),
    T.MENTIONS_WITH_HASHTAGS: (25, 10, 10_000),
    T.MENTIONS_CUSTOM_LIST: (26, 1, 1000),
    T.MENTIONS_HASHTAG: (27, 10, 10_000),
    T.MENTIONS_USER_FOLLOWERS: (28, 10, 10_000),
    T.MENTIONS_MEDIA_LIKERS: (29, 10, 10_000),
    T.COMMENT_LIKES: (30, 10, 10_000),
    T.COMMENT_REPLIES: (31, 1, 100),
    T.POLL: (32, 10, 10_000),
    T.SEO: (33, 10, 10_000),
    T.SUBSCRIPTIONS: (34, 10, 10_000),
}
SID = {kind: sid for kind, (sid, _, _) in TYPED.items()}
FLAT = (T.PACKAGE, T.CUSTOM_COMMENTS_PACKAGE)

# Each orderable type: the body's type fields, the quantity it sends, then what the order is (its quantity,
# charge and parameters as REST shows them).
ORDERS: list[tuple[ServiceType, dict[str, Any], int, str, dict[str, Any] | None]] = [
    (T.PACKAGE, {}, 1, "0.050000", None),
    (
        T.CUSTOM_COMMENTS,
        {"comments": "Nice!\r\nGreat\n\nWow"},
        3,
        "0.003000",
        {"comments": ["Nice!", "Great", "Wow"]},
    ),
    (T.CUSTOM_COMMENTS_PACKAGE, {"comments": ["one", "two"]}, 2, "0.050000", {"comments": ["one", "two"]}),
    (
        T.MENTIONS,
        {"quantity": 100, "usernames": "alice\nbob"},
        100,
        "0.100000",
        {"usernames": ["alice", "bob"]},
    ),
    (
        T.MENTIONS_WITH_HASHTAGS,
        {"quantity": 100, "usernames": "alice", "hashtags": "#a\n#b"},
        100,
        "0.100000",
        {"usernames": ["alice"], "hashtags": ["#a", "#b"]},
    ),
    (
        T.MENTIONS_CUSTOM_LIST,
        {"usernames": ["ann", "ben", "cid"]},
        3,
        "0.003000",
        {"usernames": ["ann", "ben", "cid"]},
    ),
    (T.MENTIONS_HASHTAG, {"quantity": 100, "hashtag": "#sunset"}, 100, "0.100000", {"hashtag": "#sunset"}),
    (
        T.MENTIONS_USER_FOLLOWERS,
        {"quantity": 100, "username": "natgeo"},
        100,
        "0.100000",
        {"username": "natgeo"},
    ),
    (
        T.MENTIONS_MEDIA_LIKERS,
        {"quantity": 100, "media": "https://instagram.com/p/Abc123"},
        100,
        "0.100000",
        {"media": "https://instagram.com/p/Abc123"},
    ),
    (T.COMMENT_LIKES, {"quantity": 100, "username": "alice"}, 100, "0.100000", {"username": "alice"}),
    (
        T.COMMENT_REPLIES,
        {"username": "bob", "comments": "thanks\nagreed"},
        2,
        "0.002000",
        {"username": "bob", "comments": ["thanks", "agreed"]},
    ),
    (T.POLL, {"quantity": 100, "answer_number": 2}, 100, "0.100000", {"answer_number": 2}),
    (
        T.SEO,
        {"quantity": 100, "keywords": "smm panel\ncheap likes"},
        100,
        "0.100000",
        {"keywords": ["smm panel", "cheap likes"]},
    ),
]


# The same charges as API v2 prints money (2 to 5 decimals).
V2_MONEY = {"0.050000": "0.05", "0.003000": "0.003", "0.002000": "0.002", "0.100000": "0.10"}


@pytest.fixture
async def typed(api: Api) -> Api:
    """The api fixture's shop with a service of every type, and 100.00 more for Alice."""
    services = [
        {
            "id": sid,
            "name": f"{kind} service",
            "category": "Instagram",
            "type": kind,
            "rate": "0.05" if kind in FLAT else "1.00",
            "min": low,
            "max": high,
            "pace_per_hour": 100_000,
            "link_pattern": r"https://\S+",
            "routes": [{"provider": "alpha", "service": f"a{sid}", "type": kind}],
        }
        for kind, (sid, low, high) in TYPED.items()
    ]
    async with transaction(api.sessions) as session:
        await load_catalog(session, {"services": services})
    funded = await api.http.post(
        f"/v1/customers/{api.customer_id}/deposits",
        json={"amount": "100"},
        headers=api.as_("storefront") | {"Idempotency-Key": "types-funds"},
    )
    assert funded.status_code == 201, funded.text
    return api


async def books(api: Api) -> tuple[int, str]:
    """(orders written, Alice's balance): what a refusal must leave as it was."""
    async with api.sessions() as session:
        count = int(await session.scalar(select(func.count()).select_from(Order)) or 0)
    balance = await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("support"))
    return count, balance.json()["balance"]


async def test_services_name_each_services_type(typed: Api) -> None:
    rest = await typed.http.get("/v1/services", headers=typed.as_("customer"))
    assert {s["id"]: s["type"] for s in rest.json()["services"]} == {10: "Default"} | {
        sid: str(kind) for kind, sid in SID.items()
    }
    listed = await v2(typed, action="services")
    assert {s["service"]: s["type"] for s in listed} == {10: "Default"} | {
        sid: str(k) for k, sid in SID.items()
    }


@pytest.mark.parametrize(
    ("kind", "fields", "quantity", "charge", "shown"), ORDERS, ids=[o[0] for o in ORDERS]
)
async def test_rest_takes_each_types_parameters(
    typed: Api,
    kind: ServiceType,
    fields: dict[str, Any],
    quantity: int,
    charge: str,
    shown: dict[str, Any] | None,
) -> None:
    body = {"service_id": SID[kind], "link": LINK} | fields
    response = await typed.http.post(
        "/v1/orders", json=body, headers=typed.as_("customer") | {"Idempotency-Key": f"t-{SID[kind]}"}
    )
    assert response.status_code == 201, response.text
    placed = response.json()
    assert (placed["type"], placed["quantity"], placed["charge"], placed["parameters"]) == (
        kind,
        quantity,
        charge,
        shown,
    )
    got = (await typed.http.get(f"/v1/orders/{placed['id']}", headers=typed.as_("customer"))).json()
    assert (got["type"], got["parameters"]) == (kind, shown)
    # The same body with the same key is the same order.
    again = await typed.http.post(
        "/v1/orders", json=body, headers=typed.as_("customer") | {"Idempotency-Key": f"t-{SID[kind]}"}
    )
    assert (again.status_code, again.json()["id"]) == (200, placed["id"])


@pytest.mark.parametrize(
    ("kind", "fields", "code"),
    [
        (T.CUSTOM_COMMENTS, {}, "missing_parameter"),
        (T.CUSTOM_COMMENTS, {"comments": "\n \n"}, "missing_parameter"),  # blank lines are no comments
        (T.MENTIONS, {"quantity": 100}, "missing_parameter"),
        (T.MENTIONS_WITH_HASHTAGS, {"quantity": 100, "usernames": "alice"}, "missing_parameter"),
        (T.MENTIONS, {"usernames": "alice"}, "missing_parameter"),  # and its quantity
        (T.POLL, {"quantity": 100, "answer_number": 0}, "invalid_request"),
        (T.MENTIONS_HASHTAG, {"quantity": 100, "hashtag": "two words"}, "bad_parameter"),
        (T.COMMENT_REPLIES, {"username": "bob", "comments": "fine\nnot\x00fine"}, "invalid_request"),
        (T.MENTIONS, {"quantity": 100, "usernames": "alice", "comments": "hi"}, "unexpected_parameter"),
        (T.CUSTOM_COMMENTS, {"quantity": 5, "comments": "a\nb\nc"}, "quantity_mismatch"),
        (T.CUSTOM_COMMENTS, {"comments": "a\nb"}, "quantity_below_min"),
        (T.CUSTOM_COMMENTS_PACKAGE, {"comments": "1\n2\n3\n4\n5\n6"}, "quantity_above_max"),
        (T.PACKAGE, {"quantity": 3}, "quantity_mismatch"),
        (T.MENTIONS, {"quantity": 100, "usernames": "a", "runs": 2, "interval": 60}, "dripfeed_not_allowed"),
        (T.SUBSCRIPTIONS, {"quantity": 100, "username": "natgeo"}, "type_not_orderable"),
        (None, {"comments": "a default order takes none"}, "unexpected_parameter"),
    ],
)
async def test_rest_refuses_bad_type_parameters_and_writes_nothing(
    typed: Api, kind: ServiceType | None, fields: dict[str, Any], code: str
) -> None:
    before = await books(typed)
    body = {"service_id": SID[kind] if kind else 10, "link": LINK} | (
        {"quantity": 100} if kind is None else {}
    )
    response = await typed.http.post(
        "/v1/orders", json=body | fields, headers=typed.as_("customer") | {"Idempotency-Key": "bad"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert await books(typed) == before


@pytest.mark.parametrize("how", ["form", "json", "query"])
async def test_api_v2_add_takes_each_types_parameters(typed: Api, how: str) -> None:
    for kind, fields, quantity, charge, shown in ORDERS:
        params = {
            k: ("\r\n".join(v) if isinstance(v, list) and how != "json" else v) for k, v in fields.items()
        }
        placed = await v2(typed, how, action="add", service=SID[kind], link=LINK, **params)
        assert set(placed) == {"order"}, (kind, placed)
        status = await v2(typed, how, action="status", order=placed["order"])
        assert status["charge"] == V2_MONEY[charge]
        rest = (await typed.http.get(f"/v1/orders/{placed['order']}", headers=typed.as_("customer"))).json()
        assert (rest["type"], rest["quantity"], rest["charge"], rest["parameters"]) == (
            kind,
            quantity,
            charge,
            shown,
        )


async def test_api_v2_ignores_what_a_type_does_not_take(typed: Api) -> None:
    """Panels send every field; a quantity where the lines count, or comments on a mentions order, are
    ignored and never forwarded."""
    comments = await v2(
        typed,
        action="add",
        service=SID[T.CUSTOM_COMMENTS],
        link=LINK,
        quantity=50,
        comments="a\nb\nc",
        usernames="",
    )
    mentions = await v2(
        typed,
        action="add",
        service=SID[T.MENTIONS],
        link=LINK,
        quantity=100,
        usernames="alice",
        comments="hi",
    )
    orders = {}
    for placed in (comments, mentions):
        rest = await typed.http.get(f"/v1/orders/{placed['order']}", headers=typed.as_("customer"))
        orders[placed["order"]] = (rest.json()["quantity"], rest.json()["parameters"])
    assert orders == {
        comments["order"]: (3, {"comments": ["a", "b", "c"]}),
        mentions["order"]: (100, {"usernames": ["alice"]}),
    }


@pytest.mark.parametrize(
    ("kind", "params", "error"),
    [
        (T.CUSTOM_COMMENTS, {}, "Incorrect request"),
        (T.CUSTOM_COMMENTS, {"comments": "a\nb"}, "Quantity less than minimal 3"),
        (T.CUSTOM_COMMENTS_PACKAGE, {"comments": "1\n2\n3\n4\n5\n6"}, "Quantity more than maximum 5"),
        (T.MENTIONS_CUSTOM_LIST, {"usernames": "\r\n"}, "Incorrect request"),
        (T.MENTIONS, {"quantity": 100}, "Incorrect request"),
        (T.MENTIONS, {"usernames": "alice"}, "Incorrect request"),
        (T.MENTIONS_HASHTAG, {"quantity": 100, "hashtag": "two words"}, "Incorrect request"),
        (T.POLL, {"quantity": 100, "answer_number": "first"}, "Incorrect request"),
        (T.COMMENT_REPLIES, {"comments": "hi"}, "Incorrect request"),
        (
            T.MENTIONS,
            {"quantity": 100, "usernames": "a", "runs": 2, "interval": 60},
            "Service 24 does not allow drip-feed",
        ),
    ],
)
async def test_api_v2_refuses_bad_type_parameters_with_the_standard_text_and_writes_nothing(
    typed: Api, kind: ServiceType, params: dict[str, Any], error: str
) -> None:
    before = await books(typed)
    assert await v2(typed, action="add", service=SID[kind], link=LINK, **params) == {"error": error}
    assert await books(typed) == before


async def test_a_third_party_client_places_typed_orders_unchanged(typed: Api, served: str) -> None:
    client = smm.SMM(f"{served}/api/v2", typed.keys["customer"], timeout=30)

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(client, method), *args, **kwargs)

    try:
        services = {s["service"]: s["type"] for s in await call("get_services")}
        assert services[SID[T.CUSTOM_COMMENTS]] == "Custom Comments"
        comments = await call("add_order", SID[T.CUSTOM_COMMENTS], LINK, comments="Nice\nGreat\nWow")
        package = await call("add_order", SID[T.PACKAGE], LINK)
        poll = await call("add_order", SID[T.POLL], LINK, 100, answer_number=2)
        assert (await call("get_status", package["order"]))["charge"] == "0.05"
        with pytest.raises(smm.SMMAPIError, match="Incorrect request"):
            await call("add_order", SID[T.CUSTOM_COMMENTS], LINK, 10)  # no comments
    finally:
        client.close()
    shown = {}
    for placed in (comments, package, poll):
        rest = await typed.http.get(f"/v1/orders/{placed['order']}", headers=typed.as_("customer"))
        shown[rest.json()["type"]] = (rest.json()["quantity"], rest.json()["parameters"])
    assert shown == {
        "Custom Comments": (3, {"comments": ["Nice", "Great", "Wow"]}),
        "Package": (1, None),
        "Poll": (100, {"answer_number": 2}),
    }
