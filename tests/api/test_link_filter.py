"""GET /v1/orders?link=: a part of the order's link, in any case; `%` and `_` are plain characters."""

from __future__ import annotations

from support import Api


async def test_orders_are_found_by_a_part_of_their_link(api: Api) -> None:
    links = [
        "https://instagram.com/Blue_Shop",
        "https://instagram.com/blueshop",
        "https://instagram.com/red.shop",
    ]
    answers = [(await api.order(key=f"l{n}", link=link)).json() for n, link in enumerate(links)]
    ids = [a["id"] for a in answers]

    async def found(part: str) -> list[int]:
        response = await api.http.get("/v1/orders", params={"link": part}, headers=api.as_("support"))
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()["orders"]]

    assert await found("BLUE") == ids[:2]
    assert await found("blue_shop") == ids[:1]  # `_` is no wildcard
    assert await found("SHOP") == ids
    assert await found("%") == []  # nor `%`
    assert await found("nothing-like-it") == []
    mine = await api.http.get("/v1/orders", params={"link": "blue"}, headers=api.as_("other_customer"))
    assert mine.json()["orders"] == []  # a customer key still sees only its own
    bad = await api.http.get("/v1/orders", params={"link": "a\x00b"}, headers=api.as_("support"))
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
