"""Object-level authorisation: every route that takes an id, for every role.

A role the route is not for gets 403 `forbidden`; a `customer` key asking about another customer's order,
refills or balance gets 404 (hidden, not forbidden); no key gets 401. Allowed callers get past
authorisation (the answer is then the route's own: 200, 201, or the order's 409 refusal), never a 5xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from support import Api

ALL = ("storefront", "support", "ops", "admin", "customer")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {order}, {customer}, {provider} filled in per test
    allowed: tuple[str, ...]
    body: dict[str, Any] | None = None
    idempotent: bool = False  # needs an Idempotency-Key

    @property
    def other_customer(self) -> int:
        """What another customer's key gets: hidden (404) where customers may call, else forbidden."""
        return 404 if "customer" in self.allowed else 403


ROUTES = [
    Route("GET", "/v1/orders/{order}", ALL),
    Route(
        "POST", "/v1/orders/{order}/cancel", ("storefront", "support", "admin", "customer"), {"reason": "r"}
    ),
    Route("POST", "/v1/orders/{order}/refills", ("storefront", "support", "admin", "customer"), {}),
    Route("GET", "/v1/orders/{order}/refills", ALL),
    Route(
        "POST",
        "/v1/orders/{order}/refunds",
        ("support", "admin"),
        {"units": 1, "reason": "r"},
        idempotent=True,
    ),
    Route("POST", "/v1/orders/{order}/link-fault", ("support", "admin"), {"reason": "r"}),
    Route("POST", "/v1/orders/{order}/pause", ("ops", "admin"), {"reason": "r"}),
    Route("POST", "/v1/orders/{order}/resume", ("ops", "admin"), {"reason": "r"}),
    Route("POST", "/v1/orders/{order}/retry", ("ops", "admin"), {"reason": "r"}),
    Route("GET", "/v1/customers/{customer}", ALL),
    Route("GET", "/v1/customers/{customer}/statement", ALL),
    Route(
        "POST",
        "/v1/customers/{customer}/adjustments",
        ("admin",),
        {"amount": "1", "reason": "r"},
        idempotent=True,
    ),
    Route(
        "POST", "/v1/customers/{customer}/deposits", ("storefront", "admin"), {"amount": "1"}, idempotent=True
    ),
    Route("GET", "/v1/customers/{customer}/prices", ("admin",)),
    Route("PUT", "/v1/customers/{customer}/prices/10", ("admin",), {"rate": "0.9"}),
    Route("POST", "/v1/providers/{provider}/pause", ("ops", "admin"), {"reason": "r"}),
    Route("POST", "/v1/providers/{provider}/resume", ("ops", "admin"), {"reason": "r"}),
    Route("GET", "/v1/webhooks/{webhook}", ("storefront", "admin")),
    Route("POST", "/v1/webhooks/{webhook}/disable", ("storefront", "admin"), {"reason": "r"}),
    Route("POST", "/v1/webhooks/{webhook}/rotate-secret", ("storefront", "admin")),
    Route("GET", "/v1/webhooks/{webhook}/deliveries", ("storefront", "admin")),
]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_every_role_on_every_route_with_an_id(api: Api, route: Route) -> None:
    placed = await api.order(key="authz")
    assert placed.status_code == 201, placed.text
    hook = {"url": "http://127.0.0.1:9/hook", "event_types": ["order.refunded"]}
    webhook = (await api.http.post("/v1/webhooks", json=hook, headers=api.as_("admin"))).json()["id"]
    path = route.path.format(
        order=placed.json()["id"], customer=api.customer_id, provider=api.providers["alpha"], webhook=webhook
    )
    wrong: list[str] = []
    for n, who in enumerate([*ALL, "other_customer", None]):
        headers = api.as_(who) if who else {}
        if route.idempotent:
            headers["Idempotency-Key"] = f"authz-{n}"
        response = await api.http.request(route.method, path, json=route.body, headers=headers)
        status = response.status_code
        if who is None:
            expected: set[int] | None = {401}
        elif who == "other_customer":
            expected = {route.other_customer}
        elif who in route.allowed:
            expected = None  # past authorisation: anything but 401/403/404 and never a 5xx
        else:
            expected = {403}
        ok = status < 500 and (status in expected if expected else status not in (401, 403, 404))
        if not ok or ("code" not in response.json() and status >= 400):
            wrong.append(f"{who}: {status} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


async def test_unknown_ids_are_not_found_for_every_allowed_role(api: Api) -> None:
    for route in ROUTES:
        path = route.path.format(
            order=999_999_999_999_9, customer=999_999_999, provider=999_999, webhook=999_999_999
        )
        for who in route.allowed:
            headers = api.as_(who) | ({"Idempotency-Key": "x"} if route.idempotent else {})
            response = await api.http.request(route.method, path, json=route.body, headers=headers)
            # Unknown to every role; to a customer key also another customer's record: hidden either way.
            assert response.status_code == 404, (route.path, who, response.text)
            assert response.json()["code"].endswith("not_found")
