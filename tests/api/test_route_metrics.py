"""Per-route request counts and latencies on `/metrics`: labelled by route template, never by raw path."""

from __future__ import annotations

from ops_support import samples, value

from support import Api

ORDER_ROUTE = "/v1/orders/{order_id}"


async def test_requests_are_counted_and_timed_by_route_template(api: Api) -> None:
    before = samples((await api.http.get("/metrics")).text)
    placed = await api.order(key="route-metrics")
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    for _ in range(3):
        assert (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("support"))).status_code == 200
    assert (await api.http.get("/v1/orders/999999999999", headers=api.as_("support"))).status_code == 404
    assert (await api.http.get(f"/nowhere/{order_id}")).status_code == 404
    assert (await api.http.request("BREW", "/v1/orders")).status_code == 405
    after_text = (await api.http.get("/metrics")).text
    after = samples(after_text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("backoffice_api_requests_total", method="POST", route="/v1/orders", code="201") == 1
    assert grew("backoffice_api_requests_total", method="GET", route=ORDER_ROUTE, code="200") == 3
    # An unknown order is still the order route; a path no route knows is one label, whatever the path.
    assert grew("backoffice_api_requests_total", method="GET", route=ORDER_ROUTE, code="404") == 1
    assert grew("backoffice_api_requests_total", method="GET", route="unmatched", code="404") == 1
    assert grew("backoffice_api_requests_total", method="other", route="/v1/orders", code="405") == 1
    assert grew("backoffice_api_request_seconds_count", method="GET", route=ORDER_ROUTE) == 4
    assert grew("backoffice_api_request_seconds_sum", method="GET", route=ORDER_ROUTE) > 0
    every = value(after, "backoffice_api_request_seconds_bucket", method="GET", route=ORDER_ROUTE, le="+Inf")
    assert every >= 4
    assert str(order_id) not in "".join(
        line for line in after_text.splitlines() if line.startswith("backoffice_api_request")
    )
