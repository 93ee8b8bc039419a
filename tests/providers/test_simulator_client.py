"""ApiV2Client against the provider simulator, in process over ASGI: no network, database or Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from simserver import serve

from providers.client import (
    ApiV2Client,
    CancelResult,
    ProviderAmbiguous,
    ProviderLinkFault,
    ProviderOrderStatus,
    ProviderRefillStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.simulator import SimClock, create_simulator_app

API_URL = "http://sim/api/v2"
KEY = "test-key"
LINK = "https://instagram.com/some.user"


@dataclass
class Sim:
    app: FastAPI
    clock: SimClock
    http: httpx.AsyncClient
    client: ApiV2Client

    async def scenario(
        self, scenario: str, link_contains: str | None = None, value: float | None = None
    ) -> None:
        body = {"scenario": scenario, "link_contains": link_contains, "value": value}
        response = await self.http.post("/sim/scenario", json=body)
        assert response.status_code == 200, response.text

    async def scenario_body(self, **body: object) -> None:
        response = await self.http.post("/sim/scenario", json=body)
        assert response.status_code == 200, response.text

    async def raw(self, **params: str) -> httpx.Response:
        return await self.http.post("/api/v2", data={"key": KEY, **params})


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    clock = SimClock()
    app = create_simulator_app(api_key=KEY, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as http:
        client = ApiV2Client(API_URL, KEY, http=http)
        yield Sim(app, clock, http, client)
        await client.aclose()
        assert not http.is_closed, "a shared http client must not be closed by ApiV2Client"


async def test_order_goes_pending_in_progress_completed(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=300)
    assert order_id.isdigit()

    first = await sim.client.status(order_id)
    assert first.status == "Pending"
    assert first.raw_status == "Pending"
    assert first.remains == 300
    assert first.start_count is not None
    assert first.start_count > 0
    assert first.charge == "0.13500"

    sim.clock.advance(2.0)  # 1 s start delay, then 100 units/s
    middle = await sim.client.status(order_id)
    assert middle.status == "In progress"
    assert middle.remains is not None
    assert 0 < middle.remains < 300

    sim.clock.advance(10.0)
    done = await sim.client.status(order_id)
    assert done.status == "Completed"
    assert done.remains == 0
    assert done.start_count == first.start_count, "start_count is fixed per order"


async def test_partial_scenario_ends_short_with_remains(sim: Sim) -> None:
    await sim.scenario("partial", link_contains="short", value=0.4)
    order_id = await sim.client.add(service="101", link="https://instagram.com/short.one", quantity=500)
    other_id = await sim.client.add(service="101", link=LINK, quantity=500)
    sim.clock.advance(60.0)

    partial = await sim.client.status(order_id)
    assert partial.status == "Partial"
    assert partial.remains == 300
    assert (await sim.client.status(other_id)).status == "Completed"


async def test_partial_scenario_reaches_orders_under_way(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=1000)
    sim.clock.advance(3.0)  # about 200 delivered
    await sim.scenario("partial", value=0.1)  # below what is delivered: delivery stops where it is
    sim.clock.advance(60.0)

    status = await sim.client.status(order_id)
    assert status.status == "Partial"
    assert status.remains is not None
    assert 700 <= status.remains <= 850


async def test_link_fault_cancels_with_undelivered_remains(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=1000)
    sim.clock.advance(3.0)
    await sim.scenario("link_fault", link_contains="some.user")
    sim.clock.advance(60.0)

    status = await sim.client.status(order_id)
    assert status.status == "Canceled"
    assert status.raw_status == "Canceled"
    assert status.remains is not None
    assert 0 < status.remains < 1000

    views = (await sim.http.get("/sim/orders")).json()
    assert views[0]["scenario"] == "link_fault"
    assert views[0]["delivered"] == 1000 - status.remains


async def test_bad_key_is_rejected() -> None:
    app = create_simulator_app(api_key=KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as http:
        client = ApiV2Client(API_URL, "wrong-key", http=http)
        with pytest.raises(ProviderRejected) as caught:
            await client.balance()
        assert caught.value.message == "Invalid API key"
        with pytest.raises(ProviderRejected, match="Invalid API key"):
            await client.add(service="101", link=LINK, quantity=100)


async def test_unknown_service_is_rejected(sim: Sim) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await sim.client.add(service="999", link=LINK, quantity=100)
    assert caught.value.message == "Incorrect service ID"


async def test_quantity_bounds_use_the_standard_texts(sim: Sim) -> None:
    with pytest.raises(ProviderRejected) as low:
        await sim.client.add(service="101", link=LINK, quantity=10)
    assert low.value.message == "Quantity less than minimal 50"
    with pytest.raises(ProviderRejected) as high:
        await sim.client.add(service="101", link=LINK, quantity=10001)
    assert high.value.message == "Quantity more than maximum 10000"


async def test_bad_link_and_unknown_order(sim: Sim) -> None:
    with pytest.raises(ProviderRejected, match="Bad link"):
        await sim.client.add(service="101", link="not a link", quantity=100)
    with pytest.raises(ProviderRejected, match="Incorrect order ID"):
        await sim.client.status("424242")


async def test_idempotency_key_returns_the_same_order(sim: Sim) -> None:
    first = await sim.client.add(service="101", link=LINK, quantity=100, idempotency_key="order:7:run:1")
    again = await sim.client.add(service="101", link=LINK, quantity=100, idempotency_key="order:7:run:1")
    other = await sim.client.add(service="101", link=LINK, quantity=100, idempotency_key="order:7:run:2")
    assert first == again
    assert other != first
    assert len((await sim.http.get("/sim/orders")).json()) == 2


async def test_lost_answer_then_same_key_finds_the_accepted_order(sim: Sim) -> None:
    await sim.scenario("lost_answer", link_contains="some.user")
    with pytest.raises(ProviderAmbiguous):
        await sim.client.add(service="101", link=LINK, quantity=100, idempotency_key="k1")
    await sim.scenario("normal")
    order_id = await sim.client.add(service="101", link=LINK, quantity=100, idempotency_key="k1")
    orders = (await sim.http.get("/sim/orders")).json()
    assert [o["order"] for o in orders] == [int(order_id)]


async def test_get_query_json_body_and_header_key_are_accepted(sim: Sim) -> None:
    by_query = await sim.http.get("/api/v2", params={"key": KEY, "action": "balance"})
    assert by_query.status_code == 200
    assert by_query.json() == {"balance": "1000.00", "currency": "USD"}

    by_json = await sim.http.post(
        "/api/v2",
        json={"key": KEY, "action": "add", "service": 101, "link": LINK, "quantity": 100},
    )
    assert by_json.status_code == 200
    order = by_json.json()["order"]
    assert isinstance(order, int)

    by_header = await sim.http.post(
        "/api/v2", data={"action": "status", "order": str(order)}, headers={"X-Api-Key": KEY}
    )
    body = by_header.json()
    assert body["status"] == "Pending"
    assert body["remains"] == "100"
    assert body["currency"] == "USD"
    assert isinstance(body["start_count"], str)
    assert isinstance(body["charge"], str)


async def test_protocol_errors_are_http_200(sim: Sim) -> None:
    for response in (
        await sim.http.post("/api/v2", data={"key": "nope", "action": "balance"}),
        await sim.raw(action="no-such-action"),
        await sim.raw(action="status"),
        await sim.http.post("/api/v2", content=b"[1, 2]", headers={"content-type": "application/json"}),
    ):
        assert response.status_code == 200
        assert set(response.json()) == {"error"}


async def test_batch_status_and_services(sim: Sim) -> None:
    raw = (await sim.raw(action="services")).json()
    assert all(isinstance(s["rate"], str) and isinstance(s["min"], str) for s in raw)
    services = await sim.client.services()
    assert [s.service for s in services] == ["101", "102", "103", "104"]
    first = services[0]
    assert (first.rate, first.min, first.max, first.refill, first.cancel, first.dripfeed) == (
        Decimal("0.45"),
        50,
        10000,
        True,
        True,
        False,
    )

    order_id = await sim.client.add(service="104", link=LINK, quantity=1000)
    answer = (await sim.raw(action="status", orders=f"{order_id},999999")).json()
    assert answer[order_id]["status"] == "Pending"
    assert answer["999999"] == {"error": "Incorrect order ID"}

    assert await sim.client.balance() == ("1000.00", "USD")


async def test_dripfeed_delivers_run_by_run(sim: Sim) -> None:
    order_id = await sim.client.add(service="103", link=LINK, quantity=100, runs=3, interval=10)
    sim.clock.advance(60.0)
    after_first = await sim.client.status(order_id)
    assert after_first.status == "In progress"
    assert after_first.remains == 200
    sim.clock.advance(20 * 60.0)
    assert (await sim.client.status(order_id)).status == "Completed"

    with pytest.raises(ProviderRejected, match="Incorrect request"):
        await sim.client.add(service="101", link=LINK, quantity=100, runs=3, interval=10)


async def test_cancel_while_pending_or_in_progress_never_after_the_end(sim: Sim) -> None:
    pending = await sim.client.add(service="101", link=LINK, quantity=100)
    answer = (await sim.raw(action="cancel", orders=f"{pending},31337")).json()
    assert answer == [
        {"order": int(pending), "cancel": 1},
        {"order": 31337, "cancel": {"error": "Incorrect order ID"}},
    ]
    canceled = await sim.client.status(pending)
    assert (canceled.status, canceled.remains) == ("Canceled", 100)

    # In progress: delivery stops where it is and the order ends Partial with the undelivered remains.
    running = await sim.client.add(service="101", link=LINK, quantity=1000)
    sim.clock.advance(3.0)
    assert await sim.client.cancel([running]) == {running: CancelResult(True, "")}
    stopped = await sim.client.status(running)
    assert stopped.status == "Partial"
    assert stopped.remains is not None
    assert 0 < stopped.remains < 1000
    sim.clock.advance(60.0)
    assert (await sim.client.status(running)).remains == stopped.remains, "nothing delivered after a cancel"

    done = await sim.client.add(service="101", link=LINK, quantity=100)
    no_cancel = await sim.client.add(service="104", link=LINK, quantity=100)  # a service without cancel
    sim.clock.advance(60.0)
    fresh = await sim.client.add(service="104", link=LINK, quantity=100)
    refused = CancelResult(False, "The order cannot be canceled")
    assert await sim.client.cancel([done, no_cancel, fresh, running]) == {
        done: refused,
        no_cancel: refused,
        fresh: refused,
        running: refused,
    }
    # A single order is sent as both `order` and `orders`; a provider that reads `order` answers the same.
    single = (await sim.raw(action="cancel", order=done)).json()
    assert single == [{"order": int(done), "cancel": {"error": "The order cannot be canceled"}}]


async def test_refill_after_a_drop(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=200)
    not_done = (await sim.raw(action="refill", order=order_id)).json()
    assert not_done == {"error": "The order is not completed"}

    sim.clock.advance(30.0)
    await sim.scenario("drop", value=0.25)
    view = (await sim.http.get("/sim/orders")).json()[0]
    assert view["dropped"] == 50
    assert view["current_count"] == view["start_count"] + 150

    refill = (await sim.raw(action="refill", order=order_id)).json()
    assert set(refill) == {"refill"}
    assert isinstance(refill["refill"], str)
    assert (await sim.raw(action="refill_status", refill=refill["refill"])).json() == {"status": "Pending"}
    sim.clock.advance(30.0)
    assert (await sim.raw(action="refill_status", refill=refill["refill"])).json() == {"status": "Completed"}
    view = (await sim.http.get("/sim/orders")).json()[0]
    assert view["dropped"] == 0
    assert view["current_count"] == view["start_count"] + 200

    again = (await sim.raw(action="refill", order=order_id)).json()
    assert again == {"error": "The order was completed or refill was requested less than 24 hours ago"}
    no_refill = await sim.client.add(service="104", link=LINK, quantity=100)
    sim.clock.advance(30.0)
    assert (await sim.raw(action="refill", order=no_refill)).json() == {
        "error": "Refill is disabled for this service"
    }
    assert (await sim.raw(action="refill_status", refill="999")).json() == {"error": "Refill not found"}


async def test_outage_makes_reads_unavailable_and_add_ambiguous(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=100)
    await sim.scenario("outage")

    assert (await sim.raw(action="balance")).status_code == 503
    with pytest.raises(ProviderUnavailable):
        await sim.client.status(order_id)
    with pytest.raises(ProviderUnavailable):
        await sim.client.balance()
    with pytest.raises(ProviderAmbiguous):
        await sim.client.add(service="101", link=LINK, quantity=100)

    await sim.scenario("normal")
    assert (await sim.client.status(order_id)).status == "Pending"


async def test_outage_scoped_to_a_link(sim: Sim) -> None:
    down = await sim.client.add(service="101", link="https://instagram.com/down.user", quantity=100)
    up = await sim.client.add(service="101", link=LINK, quantity=100)
    await sim.scenario("outage", link_contains="down.user")
    with pytest.raises(ProviderUnavailable):
        await sim.client.status(down)
    assert (await sim.client.status(up)).status == "Pending"


async def test_garbled_status_is_unavailable(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=100)
    await sim.scenario("garbled")
    with pytest.raises(ProviderUnavailable):
        await sim.client.status(order_id)
    assert await sim.client.balance() == ("1000.00", "USD")


async def test_slow_scenario_delays_answers(sim: Sim) -> None:
    import time

    await sim.scenario("slow", value=0.2)
    started = time.monotonic()
    await sim.client.balance()
    assert time.monotonic() - started >= 0.2


async def test_clock_and_reset_control_endpoints(sim: Sim) -> None:
    await sim.client.add(service="101", link=LINK, quantity=100)
    before = sim.clock.now()
    advanced = (await sim.http.post("/sim/clock/advance", json={"seconds": 100})).json()
    assert advanced["now"] >= before + 100
    assert (await sim.http.post("/sim/clock/advance", json={"seconds": -1})).status_code == 422
    assert (await sim.http.post("/sim/scenario", json={"scenario": "explode"})).status_code == 422

    assert (await sim.http.get("/sim/orders")).json()[0]["status"] == "Completed"
    await sim.http.post("/sim/reset")
    assert (await sim.http.get("/sim/orders")).json() == []


# Transport failures the simulator cannot produce, through a mock transport.


def _client_with(handler: httpx.MockTransport) -> ApiV2Client:
    return ApiV2Client(API_URL, KEY, http=httpx.AsyncClient(transport=handler))


@pytest.mark.parametrize(
    ("error", "add_raises", "read_raises"),
    [
        (httpx.ConnectError("refused"), ProviderUnavailable, ProviderUnavailable),
        (httpx.ConnectTimeout("slow connect"), ProviderUnavailable, ProviderUnavailable),
        (httpx.ReadTimeout("no answer"), ProviderAmbiguous, ProviderUnavailable),
        (httpx.RemoteProtocolError("dropped"), ProviderAmbiguous, ProviderUnavailable),
        (httpx.WriteError("broken pipe"), ProviderAmbiguous, ProviderUnavailable),
    ],
)
async def test_transport_failures_are_classified(
    error: Exception, add_raises: type[Exception], read_raises: type[Exception]
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    client = _client_with(httpx.MockTransport(fail))
    with pytest.raises(add_raises):
        await client.add(service="101", link=LINK, quantity=100)
    with pytest.raises(read_raises):
        await client.status("1")


@pytest.mark.parametrize(
    ("response", "add_raises", "read_raises"),
    [
        (httpx.Response(500, text="oops"), ProviderAmbiguous, ProviderUnavailable),
        (httpx.Response(502, json={"error": "upstream"}), ProviderAmbiguous, ProviderUnavailable),
        (httpx.Response(429, json={"error": "Too many requests"}), ProviderUnavailable, ProviderUnavailable),
        (httpx.Response(404, text="not found"), ProviderUnavailable, ProviderUnavailable),
        (httpx.Response(403, json={"error": "Invalid API key"}), ProviderRejected, ProviderRejected),
        (httpx.Response(200, text="<html>maintenance</html>"), ProviderAmbiguous, ProviderUnavailable),
        (httpx.Response(200, json={"something": "else"}), ProviderAmbiguous, ProviderUnavailable),
    ],
)
async def test_odd_answers_are_classified(
    response: httpx.Response, add_raises: type[Exception], read_raises: type[Exception]
) -> None:
    client = _client_with(httpx.MockTransport(lambda request: response))
    with pytest.raises(add_raises):
        await client.add(service="101", link=LINK, quantity=100)
    with pytest.raises(read_raises):
        await client.status("1")


async def test_request_is_a_form_with_key_and_action_and_raw_status_is_kept() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if b"action=add" in request.content:
            return httpx.Response(200, json={"order": 23501})
        return httpx.Response(
            200, json={"charge": "0.27819", "start_count": "3572", "status": "COMPLETE", "remains": "-5"}
        )

    client = _client_with(httpx.MockTransport(answer))
    assert await client.add(service="7", link=LINK, quantity=100, runs=2, interval=30) == "23501"
    status = await client.status("23501")
    assert (status.status, status.raw_status, status.remains, status.start_count, status.charge) == (
        "Completed",
        "COMPLETE",
        -5,
        3572,
        "0.27819",
    )

    add, _ = seen
    assert add.method == "POST"
    assert add.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(add.content.decode()))
    assert form == {
        "key": KEY,
        "action": "add",
        "service": "7",
        "link": LINK,
        "quantity": "100",
        "runs": "2",
        "interval": "30",
    }
    assert "idempotency_key" not in form


async def test_scenarios_stack_and_normal_shields_a_link(sim: Sim) -> None:
    shielded = "https://instagram.com/vip.user"
    await sim.scenario("outage")
    await sim.scenario("normal", link_contains="vip")
    await sim.scenario("partial", link_contains="vip", value=0.5)
    order_id = await sim.client.add(service="101", link=shielded, quantity=100)
    with pytest.raises(ProviderAmbiguous):
        await sim.client.add(service="101", link=LINK, quantity=100)

    sim.clock.advance(60.0)
    status = await sim.client.status(order_id)
    assert (status.status, status.remains) == ("Partial", 50)

    await sim.scenario("normal")
    assert (await sim.client.balance()) == ("1000.00", "USD")


async def test_connection_refused_is_unavailable_even_for_add() -> None:
    import socket

    # Bound but never listening, and held for the whole test: connections are refused, and no other
    # program can start listening on the port meanwhile.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = ApiV2Client(f"http://127.0.0.1:{port}/api/v2", KEY, timeout=2.0)
        try:
            with pytest.raises(ProviderUnavailable):
                await client.add(service="101", link=LINK, quantity=100)
            with pytest.raises(ProviderUnavailable):
                await client.status("1")
        finally:
            await client.aclose()


async def test_the_simulator_keeps_its_orders_across_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sim.sqlite3"
    first = create_simulator_app(api_key="k", state_file=state_file)
    async with first.router.lifespan_context(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            order_id = await ApiV2Client("http://sim/api/v2", "k", http=http).add(
                service="101", link="https://instagram.com/keep", quantity=100
            )
    second = create_simulator_app(api_key="k", state_file=state_file)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            status = await ApiV2Client("http://sim/api/v2", "k", http=http).status(order_id)
    assert status.status in ("Pending", "In progress", "Completed")


# Scenarios added for the lifecycle: per service, timed, instant, link-fault kinds, and the request log.


async def test_request_log_counts_every_call(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=100)
    await sim.client.statuses([order_id, "5"])
    await sim.client.balance()
    log = (await sim.http.get("/sim/requests")).json()
    assert log["total"] == 3
    assert log["by_action"] == {"add": 1, "status": 1, "balance": 1}
    adds = (await sim.http.get("/sim/requests", params={"action": "add"})).json()["requests"]
    assert [a["params"] for a in adds] == [{"service": "101", "link": LINK, "quantity": "100"}]
    assert adds[0]["http_status"] == 200
    assert "key" not in adds[0]["params"]


async def test_instant_scenario_per_service(sim: Sim) -> None:
    await sim.scenario_body(scenario="instant", service="104")
    fast = await sim.client.add(service="104", link=LINK, quantity=1000)
    slow = await sim.client.add(service="101", link=LINK, quantity=1000)
    assert (await sim.client.status(fast)).status == "Completed"
    assert (await sim.client.status(slow)).status == "Pending"


async def test_outage_for_a_time_on_the_simulator_clock(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=100)
    await sim.scenario_body(scenario="outage", seconds=600)
    with pytest.raises(ProviderUnavailable):
        await sim.client.status(order_id)
    sim.clock.advance(599)
    with pytest.raises(ProviderUnavailable):
        await sim.client.balance()
    sim.clock.advance(2)
    assert (await sim.client.status(order_id)).status == "Completed"
    timed_delivery = await sim.http.post("/sim/scenario", json={"scenario": "partial", "seconds": 5})
    assert timed_delivery.status_code == 422


async def test_outage_scoped_to_a_service(sim: Sim) -> None:
    down = await sim.client.add(service="102", link=LINK, quantity=100)
    up = await sim.client.add(service="101", link=LINK, quantity=100)
    await sim.scenario_body(scenario="outage", service="102")
    with pytest.raises(ProviderUnavailable):
        await sim.client.status(down)
    with pytest.raises(ProviderAmbiguous):
        await sim.client.add(service="102", link=LINK, quantity=100)
    assert (await sim.client.status(up)).status == "Pending"


@pytest.mark.parametrize(
    ("fault", "words"), [("private", "private"), ("deleted", "deleted"), ("renamed", "username")]
)
async def test_link_fault_kinds_say_why_beside_canceled(sim: Sim, fault: str, words: str) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=1000)
    sim.clock.advance(2.0)  # 100 delivered
    await sim.scenario_body(scenario="link_fault", link_contains="some.user", fault=fault)
    raw = (await sim.raw(action="status", order=order_id)).json()
    assert raw["status"] == "Canceled"
    assert raw["remains"] == "900"
    assert words in raw["reason"]
    status = await sim.client.status(order_id)
    assert (status.status, status.remains, status.reason) == ("Canceled", 900, raw["reason"])
    assert status.link_fault == raw["reason"]
    # New orders to such a link are taken, then canceled at once with nothing delivered.
    later = await sim.client.add(service="101", link=LINK, quantity=100)
    assert (await sim.client.status(later)).remains == 100


async def test_invalid_link_fault_refuses_new_orders_with_bad_link(sim: Sim) -> None:
    await sim.scenario_body(scenario="link_fault", link_contains="some.user", fault="invalid")
    with pytest.raises(ProviderLinkFault, match="Bad link"):
        await sim.client.add(service="101", link=LINK, quantity=100)
    assert await sim.client.add(service="101", link="https://instagram.com/other", quantity=100)


async def test_slow_answer_after_accepting_times_out_the_client_over_http() -> None:
    """A real socket: the client gives up after its read timeout, but the provider has taken the order."""
    app = create_simulator_app(api_key=KEY)
    async with serve(app) as url, httpx.AsyncClient() as http:
        client = ApiV2Client(f"{url}/api/v2", KEY, http=http, timeout=0.3)
        await http.post(f"{url}/sim/scenario", json={"scenario": "slow", "value": 1.0})
        with pytest.raises(ProviderAmbiguous, match="ReadTimeout"):
            await client.add(service="101", link=LINK, quantity=100)
        with pytest.raises(ProviderUnavailable, match="ReadTimeout"):
            await client.balance()
        orders = (await http.get(f"{url}/sim/orders")).json()
        assert len(orders) == 1
        await http.post(f"{url}/sim/scenario", json={"scenario": "normal"})
        assert (await client.status(str(orders[0]["order"]))).status in ("Pending", "In progress")


async def test_batch_calls_through_the_client(sim: Sim) -> None:
    first = await sim.client.add(service="101", link=LINK, quantity=200)
    second = await sim.client.add(service="101", link=LINK, quantity=200)
    found = await sim.client.statuses([first, second, "999"])
    assert isinstance(found[first], ProviderOrderStatus)
    assert found[first].status == "Pending"
    assert isinstance(found["999"], ProviderRejected)
    assert found["999"].message == "Incorrect order ID"
    with pytest.raises(ValueError, match="non-empty ids per call"):
        await sim.client.statuses([str(n) for n in range(101)])

    sim.clock.advance(30)
    refills = await sim.client.refills([first, second, "999"])
    assert isinstance(refills[first], str)
    assert isinstance(refills[second], str)
    assert isinstance(refills["999"], ProviderRejected)
    statuses = await sim.client.refill_statuses([str(refills[first]), str(refills[second]), "7"])
    assert statuses[str(refills[first])] == ProviderRefillStatus("Pending", "Pending")
    assert isinstance(statuses["7"], ProviderRejected)
    assert statuses["7"].message == "Refill not found"
    sim.clock.advance(5)  # nothing had dropped: done after the start delay
    one = await sim.client.refill_status(str(refills[first]))
    assert one == ProviderRefillStatus("Completed", "Completed")


async def test_lost_refill_answer_is_ambiguous_and_a_key_finds_it_again(sim: Sim) -> None:
    order_id = await sim.client.add(service="101", link=LINK, quantity=100)
    sim.clock.advance(30)
    await sim.scenario("lost_answer")
    with pytest.raises(ProviderAmbiguous):
        await sim.client.refill(order_id, idempotency_key="r1")
    await sim.scenario("normal")
    again = await sim.client.refill(order_id, idempotency_key="r1")
    assert again == "501"
    with pytest.raises(ProviderRejected, match="less than 24 hours"):
        await sim.client.refill(order_id)


async def test_services_can_be_offered_and_withdrawn(sim: Sim) -> None:
    body = {"name": "TikTok Views", "category": "TikTok", "rate": "0.01", "min": 100, "max": 100000}
    assert (await sim.http.put("/sim/services/205", json=body)).status_code == 200
    assert (await sim.http.delete("/sim/services/102")).status_code == 200
    assert (await sim.http.delete("/sim/services/102")).status_code == 404
    services = {s.service: s for s in await sim.client.services()}
    assert sorted(services) == ["101", "103", "104", "205"]
    assert services["205"].rate == Decimal("0.01")
    assert services["205"].category == "TikTok"
    with pytest.raises(ProviderRejected, match="Incorrect service ID"):
        await sim.client.add(service="102", link=LINK, quantity=100)
    assert await sim.client.add(service="205", link=LINK, quantity=100)
