"""The odd answers real providers give, parsed by ApiV2Client (a canned HTTP transport; no network)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.batching import Coalescer
from providers.client import (
    ApiV2Client,
    Balance,
    CancelResult,
    ProviderAmbiguous,
    ProviderLinkFault,
    ProviderRefillStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.errors import LINK_FAULT, PERMANENT, TEMPORARY, classify_error


def client_answering(answer: Any, status_code: int = 200) -> ApiV2Client:
    def respond(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, str):
            return httpx.Response(status_code, text=answer)
        return httpx.Response(status_code, json=answer)

    return ApiV2Client("http://p/api/v2", "k", http=httpx.AsyncClient(transport=httpx.MockTransport(respond)))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Bad link", LINK_FAULT),
        ("Invalid link", LINK_FAULT),
        ("Link is private: the account was made private", LINK_FAULT),
        ("This account is Private", LINK_FAULT),
        ("Post was deleted", LINK_FAULT),
        ("Account not found", LINK_FAULT),
        ("User does not exist", LINK_FAULT),
        ("The username was changed", LINK_FAULT),
        ("Renamed account", LINK_FAULT),
        ("Incorrect service ID", PERMANENT),
        ("Service is disabled", PERMANENT),
        ("Invalid API key", PERMANENT),
        ("Incorrect order ID", PERMANENT),
        ("Quantity less than minimal 50", PERMANENT),
        ("Refill is disabled for this service", PERMANENT),
        ("Not enough funds on balance", TEMPORARY),
        ("You have active order with this link. Please wait until order being completed.", TEMPORARY),
        ("Too many requests, try again later", TEMPORARY),
        ("Server is under maintenance", TEMPORARY),
    ],
)
def test_error_texts_are_classified(text: str, kind: str) -> None:
    assert classify_error(text) == kind


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        ("Bad link", ProviderLinkFault),
        ("Incorrect service ID", ProviderRejected),
        ("Not enough funds on balance", ProviderUnavailable),
    ],
)
async def test_add_errors_in_http_200_bodies(error: str, raised: type[Exception]) -> None:
    with pytest.raises(raised) as caught:
        await client_answering({"error": error}).add(service="1", link="https://x/y", quantity=100)
    assert type(caught.value) is raised


async def test_add_takes_ids_in_any_spelling_and_an_order_beside_an_error_is_accepted() -> None:
    assert await client_answering({"order": "23501"}).add(service="1", link="l", quantity=1) == "23501"
    assert await client_answering({"order": 23501.0}).add(service="1", link="l", quantity=1) == "23501"
    accepted = {"order": 7, "error": "Order created, link check pending"}
    assert await client_answering(accepted).add(service="1", link="l", quantity=1) == "7"
    for odd in ({"order": ""}, {"order": None}, {"order": True}, [], "<html>Cloudflare 520</html>"):
        with pytest.raises(ProviderAmbiguous):
            await client_answering(odd).add(service="1", link="l", quantity=1)


async def test_status_tolerates_numbers_extra_fields_and_negative_remains() -> None:
    status = await client_answering(
        {
            "charge": 0.27819,
            "start_count": 3572,
            "status": "In Progress ",
            "remains": "-12",
            "currency": "USD",
            "extra": {"anything": 1},
        }
    ).status("1")
    assert (status.status, status.raw_status, status.remains, status.start_count, status.charge) == (
        "In progress",
        "In Progress",
        -12,
        3572,
        "0.27819",
    )
    assert status.link_fault is None

    bare = await client_answering({"status": "Completed"}).status("1")
    assert (bare.remains, bare.start_count, bare.charge, bare.currency) == (None, None, None, None)

    odd = await client_answering({"status": "COMPLETE", "remains": "12.5", "start_count": ""}).status("1")
    assert (odd.status, odd.remains, odd.start_count) == ("Completed", None, None)


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "Canceled", "remains": "900", "reason": "Account is private"},
        {"status": "Canceled", "remains": "900", "error": "Link is dead: post deleted"},
        {"status": "Cancelled (invalid link)", "remains": "900"},
        {"status": "Partial", "remains": "900", "comment": "Username changed by owner"},
    ],
)
async def test_status_reveals_link_faults_in_reasons_or_the_raw_status(answer: dict[str, str]) -> None:
    status = await client_answering(answer).status("1")
    assert status.link_fault is not None
    assert status.remains == 900


async def test_status_errors_and_garbage() -> None:
    with pytest.raises(ProviderRejected, match="Incorrect order ID"):
        await client_answering({"error": "Incorrect order ID"}).status("1")
    with pytest.raises(ProviderUnavailable):
        await client_answering({"charge": "1"}).status("1")
    with pytest.raises(ProviderUnavailable):
        await client_answering("<!DOCTYPE html><title>502 Bad Gateway</title>").status("1")
    with pytest.raises(ProviderUnavailable):
        await client_answering({"error": "Too many requests"}, status_code=200).status("1")


async def test_batch_status_keyed_by_strings_or_a_list_and_missing_ids() -> None:
    keyed = client_answering(
        {"1": {"status": "Completed", "remains": "0"}, "2": {"error": "Incorrect order ID"}}
    )
    found = await keyed.statuses(["1", "2", "3"])
    assert found["1"].status == "Completed"  # type: ignore[union-attr]
    assert isinstance(found["2"], ProviderRejected)
    assert isinstance(found["3"], ProviderUnavailable), "an id left out is asked again later"

    listed = client_answering([{"order": 1, "status": "Pending"}, {"order": "2", "status": "Partial"}])
    found = await listed.statuses(["1", "2"])
    assert [found["1"].status, found["2"].status] == ["Pending", "Partial"]  # type: ignore[union-attr]

    with pytest.raises(ProviderRejected, match="Invalid API key"):
        await client_answering({"error": "Invalid API key"}).statuses(["1", "2"])


async def test_cancel_answer_shapes() -> None:
    listed = client_answering(
        [{"order": 9, "cancel": {"error": "Incorrect order ID"}}, {"order": 2, "cancel": "1"}]
    )
    assert await listed.cancel(["9", "2"]) == {
        "9": CancelResult(False, "Incorrect order ID"),
        "2": CancelResult(True, ""),
    }
    assert await client_answering({"cancel": 1}).cancel(["5"]) == {"5": CancelResult(True, "")}
    refused = await client_answering({"error": "The order cannot be canceled"}).cancel(["5"])
    assert refused == {"5": CancelResult(False, "The order cannot be canceled")}
    with pytest.raises(ProviderUnavailable):
        await client_answering("<html>oops</html>").cancel(["5"])


async def test_refill_answer_shapes() -> None:
    assert await client_answering({"refill": "1"}).refill("5") == "1"
    assert await client_answering({"refill": 77}).refill("5") == "77"
    with pytest.raises(ProviderRejected, match="disabled"):
        await client_answering({"refill": {"error": "Refill is disabled for this service"}}).refill("5")
    with pytest.raises(ProviderAmbiguous):
        await client_answering({"ok": True}).refill("5")
    odd = await client_answering({"status": "In Queue"}).refill_status("1")
    assert odd == ProviderRefillStatus("Pending", "In Queue")
    assert (await client_answering({"status": "REJECTED"}).refill_status("1")).status == "Rejected"
    assert (await client_answering({"status": "error"}).refill_status("1")).status == "Error"
    many = await client_answering(
        [{"refill": 1, "status": "Completed"}, {"refill": 3, "status": {"error": "Refill not found"}}]
    ).refill_statuses(["1", "3"])
    assert many["1"] == ProviderRefillStatus("Completed", "Completed")
    assert isinstance(many["3"], ProviderRejected)


async def test_services_and_balance_are_typed_and_tolerant() -> None:
    services = await client_answering(
        [
            {
                "service": 1,
                "name": "F",
                "type": "Default",
                "category": "IG",
                "rate": "0.90",
                "min": "50",
                "max": "10000",
                "refill": True,
                "cancel": "1",
                "dripfeed": 0,
            },
            {"service": "2", "name": "V", "rate": 0.5, "min": 0, "max": "100"},
            {"service": 3, "name": "broken", "rate": "n/a", "min": "1", "max": "2"},
            "not a service",
        ]
    ).services()
    assert [s.service for s in services] == ["1", "2"]
    first, second = services
    assert (first.rate, first.min, first.max, first.refill, first.cancel, first.dripfeed) == (
        Decimal("0.90"),
        50,
        10000,
        True,
        True,
        False,
    )
    assert (second.rate, second.min, second.category, second.type) == (Decimal("0.5"), 1, "Other", "Default")

    assert await client_answering({"balance": "100.84292", "currency": "USD"}).balance() == Balance(
        "100.84292", "USD"
    )
    assert await client_answering({"balance": 5}).balance() == ("5", "")


async def test_coalescer_fans_out_results_and_errors() -> None:
    calls: list[list[str]] = []

    async def fetch(ids: Any) -> dict[str, Any]:
        calls.append(list(ids))
        return {i: (KeyError(i) if i == "bad" else i.upper()) for i in ids if i != "lost"}

    batcher: Coalescer[str] = Coalescer(fetch, window=0.05, max_batch=3)
    results = await asyncio.gather(
        *(batcher.get(i) for i in ["a", "b", "a", "bad", "c", "lost"]), return_exceptions=True
    )
    assert results[:3] == ["A", "B", "A"]
    assert isinstance(results[3], KeyError)
    assert results[4] == "C"
    assert isinstance(results[5], LookupError)
    assert calls == [["a", "b", "bad"], ["c", "lost"]]
