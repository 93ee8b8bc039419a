"""docs/api.md's example per type: one API v2 `add` per type on the demo catalogue, with the `charge` that
`status` then shows (the table under "Service types")."""

from __future__ import annotations

from typing import Any

from test_v2 import v2

from store.catalog import DEMO_CATALOG, load_catalog, read_catalog
from store.db import transaction
from support import Api

P = "https://instagram.com/p/AbCdEf123"
FIVE = "one\ntwo\nthree\nfour\nfive"
EXAMPLES: list[tuple[int, dict[str, Any], str]] = [
    (1, {"link": "https://instagram.com/nasa", "quantity": 1000}, "0.90"),
    (5, {"link": "https://instagram.com/nasa"}, "5.00"),
    (6, {"link": P, "comments": FIVE}, "0.075"),
    (7, {"link": P, "comments": "Nice!\nGreat"}, "4.00"),
    (8, {"link": P, "quantity": 100, "usernames": "alice\nbob"}, "0.30"),
    (9, {"link": P, "quantity": 100, "usernames": "alice", "hashtags": "#a\n#b"}, "0.35"),
    (10, {"link": P, "usernames": FIVE}, "0.02"),
    (11, {"link": P, "quantity": 100, "hashtag": "#sunset"}, "0.30"),
    (12, {"link": P, "quantity": 100, "username": "natgeo"}, "0.30"),
    (13, {"link": P, "quantity": 100, "media": "https://instagram.com/p/Xyz789"}, "0.30"),
    (14, {"link": P, "quantity": 100, "username": "alice"}, "0.20"),
    (15, {"link": P, "username": "bob", "comments": "thanks\nagreed"}, "0.036"),
    (16, {"link": P, "quantity": 100, "answer_number": 2}, "0.15"),
    (17, {"link": "https://example.com/shop", "quantity": 100, "keywords": "smm panel\ncheap likes"}, "0.12"),
]


async def test_the_documented_add_of_each_type_is_charged_as_documented(api: Api) -> None:
    async with transaction(api.sessions) as session:
        await load_catalog(session, read_catalog(DEMO_CATALOG, simulator_url="http://127.0.0.1:9"))
    funded = await api.http.post(
        f"/v1/customers/{api.customer_id}/deposits",
        json={"amount": "100"},
        headers=api.as_("storefront") | {"Idempotency-Key": "demo-funds"},
    )
    assert funded.status_code == 201, funded.text
    services = {s["service"]: s["type"] for s in await v2(api, action="services")}
    charged = {}
    for service, params, _ in EXAMPLES:
        placed = await v2(api, action="add", service=service, **params)
        assert set(placed) == {"order"}, (service, placed)
        charged[services[service]] = (await v2(api, action="status", order=placed["order"]))["charge"]
    assert charged == {services[service]: charge for service, _, charge in EXAMPLES}
    assert len(charged) == 14  # every type but Subscriptions
