"""The shared API v2 protocol module: what the server, the simulator and the client all rely on."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from providers import apiv2
from providers.apiv2 import ProtocolError
from workflows import policy


async def _echo(request: Request) -> JSONResponse:
    """What the module reads of a request: its parameters and key, or the refusal."""
    try:
        params = await apiv2.read_parameters(request)
    except ProtocolError as exc:
        return JSONResponse(apiv2.error(exc.text))
    return JSONResponse({"params": params, "key": apiv2.api_key(request, params)})


@pytest.fixture
async def http() -> Any:
    app = FastAPI()
    app.add_api_route("/api/v2", _echo, methods=["GET", "POST"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def test_every_transport_gives_the_same_parameters(http: httpx.AsyncClient) -> None:
    form = await http.post("/api/v2", data={"key": "k", "action": "status", "order": "5"})
    query = await http.get("/api/v2", params={"key": "k", "action": "status", "order": "5"})
    multipart = await http.post(
        "/api/v2", files={n: (None, v) for n, v in {"key": "k", "order": "5"}.items()}
    )
    assert form.json()["params"] == query.json()["params"] == {"key": "k", "action": "status", "order": "5"}
    assert multipart.json()["params"] == {"key": "k", "order": "5"}
    # JSON keeps its types (the readers turn them into text), also without a JSON content type.
    unlabelled = await http.post("/api/v2", content=b'{"order": 5, "orders": [1, 2], "x": true}')
    assert unlabelled.json()["params"] == {"order": 5, "orders": [1, 2], "x": True}
    # The body overlays the query.
    both = await http.post("/api/v2?order=1&key=q", data={"order": "2"})
    assert both.json()["params"] == {"order": "2", "key": "q"}


async def test_the_key_comes_from_the_parameters_a_header_or_a_bearer_token(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/v2", data={"key": " k1 "})).json()["key"] == "k1"
    assert (await http.post("/api/v2", data={"a": "1"}, headers={"X-Api-Key": "k2"})).json()["key"] == "k2"
    bearer = await http.post("/api/v2", data={"a": "1"}, headers={"Authorization": "Bearer k3"})
    assert bearer.json()["key"] == "k3"
    assert (await http.get("/api/v2", headers={"Authorization": "Basic k4"})).json()["key"] is None


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, "application/json"),  # too deep to parse
        (b"k=" + b"v" * apiv2.MAX_BODY, "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_or_oversized_bodies_are_an_incorrect_request(
    http: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await http.post("/api/v2", content=content, headers={"Content-Type": content_type})
    assert (response.status_code, response.json()) == (200, {"error": "Incorrect request"})


@pytest.mark.parametrize(
    ("value", "number"),
    [("42", 42), (42, 42), (" 42 ", 42), (True, 1), ("0", None), ("-3", None), ("4.0", None), (4.0, None)],
)
def test_ids_are_positive_whole_numbers(value: object, number: int | None) -> None:
    assert apiv2.integer(value) == number


@pytest.mark.parametrize(
    "text", ["\u0662\u0665", "\uff12\uff15", "2 5", "1e2", "9" * 20, "", None, [1], {"a": 1}]
)
def test_integers_are_ascii_digits_only(text: object) -> None:
    assert apiv2.integer(text, low=-apiv2.MAX_ID) is None


def test_integer_bounds() -> None:
    assert apiv2.integer("-5", low=-10, high=10) == -5
    assert apiv2.integer("11", low=-10, high=10) is None


def test_ids_single_batch_list_and_refusals() -> None:
    assert apiv2.ids({"order": " 7 "}, "status") == (["7"], False)
    assert apiv2.ids({"orders": "1, 2,,x", "order": "9"}, "cancel") == (["1", "2", "x"], True)
    assert apiv2.ids({"refills": [3, "4"]}, "refill_status") == (["3", "4"], True)
    assert apiv2.ids({"refill": "3"}, "refill") is None  # refill names orders, not refills
    assert apiv2.ids({}, "status") is None
    for refused in ({"orders": ""}, {"orders": ",".join(["1"] * (apiv2.MAX_BATCH + 1))}):
        with pytest.raises(ProtocolError, match="Incorrect request"):
            apiv2.ids(refused, "status")


@pytest.mark.parametrize(
    ("amount", "rounding", "places", "text"),
    [
        (Decimal("0.9"), None, 2, "0.90"),
        (Decimal("0.278194"), None, 2, "0.27819"),
        (Decimal("0.278195"), None, 2, "0.2782"),
        (Decimal("0.278199"), ROUND_DOWN, 2, "0.27819"),
        (Decimal("100"), None, 2, "100.00"),
        (Decimal("0.135"), None, 5, "0.13500"),
        (Decimal("1E+3"), None, 2, "1000.00"),
    ],
)
def test_money_has_at_most_five_decimals(
    amount: Decimal, rounding: str | None, places: int, text: str
) -> None:
    if rounding is None:
        assert apiv2.money(amount, places=places) == text
    else:
        assert apiv2.money(amount, rounding, places=places) == text


def test_micro_units_both_ways() -> None:
    assert apiv2.money_from_micros(100_842_920) == "100.84292"
    assert apiv2.money_from_micros(999_999, ROUND_DOWN) == "0.99999"
    assert apiv2.money_from_micros(999_999) == "1.00"
    assert apiv2.micros_from_money("0.27819") == 278_190
    assert apiv2.micros_from_money("0.0000005") == 1  # half up
    for odd in (None, "", "abc", "-1", "NaN", "Infinity"):
        assert apiv2.micros_from_money(odd) is None


def test_answers_to_one_id_and_to_many() -> None:
    found, missing = {"status": "Pending"}, apiv2.error(apiv2.INCORRECT_ORDER)
    assert apiv2.answer("status", [("1", found), ("x", missing)], batch=True) == {"1": found, "x": missing}
    assert apiv2.answer("status", [("1", found)], batch=False) == found
    with pytest.raises(ProtocolError, match="Incorrect order ID"):
        apiv2.answer("status", [("1", missing)], batch=False)
    assert apiv2.answer("refill", [("1", 501)], batch=False) == {"refill": "501"}
    assert apiv2.answer("refill", [("1", 501), ("x", missing)], batch=True) == [
        {"order": 1, "refill": 501},
        {"order": "x", "refill": missing},
    ]
    assert apiv2.answer("refill_status", [("7", "Completed")], batch=False) == {"status": "Completed"}
    # Cancel answers in the batch shape even for one order.
    assert apiv2.answer("cancel", [("2", 1)], batch=False) == [{"order": 2, "cancel": 1}]


def test_numbers_are_strings_in_answers() -> None:
    status = apiv2.status_answer(charge="0.1", start_count=3572, status="Partial", remains=-5, currency="USD")
    assert status == {
        "charge": "0.1",
        "start_count": "3572",
        "status": "Partial",
        "remains": "-5",
        "currency": "USD",
    }
    service = apiv2.service_answer(
        service=1,
        name="F",
        kind="Default",
        category="I",
        rate="0.90",
        minimum=50,
        maximum=10_000,
        refill=True,
        cancel=False,
        dripfeed=False,
    )
    assert (service["service"], service["type"], service["min"], service["max"]) == (
        1,
        "Default",
        "50",
        "10000",
    )


def test_the_workflows_refusals_use_the_standard_texts() -> None:
    """workflows/ may not import providers/, so the texts are written twice; here they must agree."""
    assert policy.REFILL_DISABLED[1] == apiv2.REFILL_DISABLED
    assert policy.NOT_COMPLETED[1] == apiv2.NOT_COMPLETED
    assert policy.refill_too_soon(24)[1] == apiv2.REFILL_TOO_SOON
    assert policy.CANNOT_CANCEL[1] == apiv2.CANNOT_CANCEL
