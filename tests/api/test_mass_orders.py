"""Mass orders over REST (POST /v1/orders/mass), on a real database and the Temporal dev server: each line
placed by the single-order intake on its own, refused alone, idempotent per line, and never overdrawing."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError

from store import ledger
from store.models import LedgerTransfer, Order
from support import LINK, SERVICE, Api
from workflows import policy


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Orders and charges written so far."""
    async with sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
        charges = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.kind == "charge")
        )
        return int(orders or 0), int(charges or 0)


async def _balance(api: Api) -> int:
    async with api.sessions() as session:
        return await ledger.balance(session, ledger.customer_account(api.customer_id))


async def _mass(api: Api, key: str, role: str = "storefront", **body: Any) -> httpx.Response:
    payload = {"customer_id": api.customer_id} | body
    return await api.http.post(
        "/v1/orders/mass", json=payload, headers={**api.as_(role), "Idempotency-Key": key}
    )


def _line(**fields: Any) -> dict[str, Any]:
    return {"service_id": SERVICE, "link": LINK, "quantity": 100} | fields


async def test_each_line_is_its_own_order_and_a_bad_line_refuses_only_itself(api: Api) -> None:
    lines = [
        _line(),
        _line(link="https://facebook.com/x"),
        _line(quantity=5),
        _line(service_id=999),
        "not an object",
        _line(customer_id=api.other_customer_id),  # a line names no customer: the batch does
        _line(quantity=200),
    ]
    response = await _mass(api, "mass-1", orders=lines)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (2, 5)
    outcomes = {o["line"]: o for o in body["lines"]}
    assert [outcomes[n]["code"] for n in range(1, 8)] == [
        None,
        "bad_link",
        "quantity_below_min",
        "unknown_service",
        "invalid_request",
        "invalid_request",
        None,
    ]
    assert (outcomes[1]["charge"], outcomes[7]["charge"]) == ("0.100000", "0.200000")
    # Only the accepted lines wrote anything: two orders, two charges, 0.30 off the balance.
    assert await _counts(api.sessions) == (2, 2)
    assert await _balance(api) == 700_000
    for n, quantity in ((1, 100), (7, 200)):
        order = await api.http.get(f"/v1/orders/{outcomes[n]['order_id']}", headers=api.as_("ops"))
        assert order.json()["quantity"] == quantity
    # And each accepted order is handed to its workflow, as a single order is.
    assert api.temporal is not None
    handle = api.temporal.get_workflow_handle(f"order-{outcomes[1]['order_id']}")
    for _ in range(100):
        with contextlib.suppress(RPCError):
            assert (await handle.describe()).workflow_type == "OrderWorkflow"
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the mass order's line never started its workflow")


async def test_the_text_form_takes_one_order_a_line(api: Api) -> None:
    text = f"{SERVICE}|{LINK}|100\n\n{SERVICE}|{LINK}\n{SERVICE}|https://facebook.com/x|100\n{SERVICE}|{LINK}|300\n"
    response = await _mass(api, "mass-text", text=text)
    assert response.status_code == 200, response.text
    got = [(o["line"], o["outcome"], o["code"]) for o in response.json()["lines"]]
    assert got == [
        (1, "accepted", None),
        (3, "refused", "bad_line"),
        (4, "refused", "bad_link"),
        (5, "accepted", None),
    ]
    assert await _counts(api.sessions) == (2, 2)
    assert await _balance(api) == 600_000


async def test_a_retried_batch_places_nothing_twice(api: Api) -> None:
    lines = [_line(), _line(quantity=5), _line(quantity=300)]
    first = (await _mass(api, "retry", orders=lines)).json()
    again = (await _mass(api, "retry", orders=lines)).json()
    ids = [o["order_id"] for o in first["lines"]]
    assert [o["order_id"] for o in again["lines"]] == ids
    assert [o["replayed"] for o in first["lines"]] == [False, False, False]
    assert [o["replayed"] for o in again["lines"]] == [True, False, True]
    assert await _counts(api.sessions) == (2, 2)
    assert await _balance(api) == 600_000
    # Another body under the same key: the changed line is refused, the others replay.
    changed = (await _mass(api, "retry", orders=[_line(), _line(quantity=5), _line(quantity=400)])).json()
    assert [o["code"] for o in changed["lines"]] == [None, "quantity_below_min", "idempotency_conflict"]
    assert await _counts(api.sessions) == (2, 2)
    # A line's key is the batch's with its number: the same order as a single placement under that key.
    single = await api.order(key=policy.mass_line_key("retry", 1))
    assert (single.status_code, single.json()["id"]) == (200, ids[0])


async def test_a_batch_over_the_limit_or_empty_or_ambiguous_is_refused_whole(api: Api) -> None:
    over = [_line() for _ in range(policy.MASS_ORDER_LIMIT + 1)]
    over_text = "\n".join(f"{SERVICE}|{LINK}|100" for _ in range(policy.MASS_ORDER_LIMIT + 1))
    cases = [
        ({"orders": over}, "too_many_lines"),
        ({"text": over_text}, "too_many_lines"),
        ({"orders": []}, "no_lines"),
        ({"text": "\n \n"}, "no_lines"),
        ({}, "invalid_request"),
        ({"orders": [_line()], "text": f"{SERVICE}|{LINK}|100"}, "invalid_request"),
        ({"customer_id": 999_999, "orders": [_line()]}, "customer_not_found"),
    ]
    for n, (body, code) in enumerate(cases):
        response = await _mass(api, f"whole-{n}", **body)
        assert (response.status_code, response.json()["code"]) == (422, code), body
    assert await _counts(api.sessions) == (0, 0)


async def test_a_customer_key_places_mass_orders_only_for_its_own_customer(api: Api) -> None:
    own = await api.http.post(
        "/v1/orders/mass",
        json={"orders": [_line()]},
        headers={**api.as_("customer"), "Idempotency-Key": "own"},
    )
    assert own.status_code == 200, own.text
    assert own.json()["accepted"] == 1
    other = await _mass(api, "other", role="customer", customer_id=api.other_customer_id, orders=[_line()])
    assert (other.status_code, other.json()["code"]) == (403, "forbidden")
    support = await _mass(api, "support", role="support", orders=[_line()])
    assert support.status_code == 403
    no_key = await api.http.post(
        "/v1/orders/mass", json={"orders": [_line()]}, headers={"Idempotency-Key": "x"}
    )
    assert no_key.status_code == 401


async def test_parallel_mass_orders_never_overdraw(api: Api) -> None:
    # Alice holds 1.00: funds for exactly 10 orders of 100 units at 1.00 per 1000.
    batches = 4
    responses = await asyncio.gather(
        *(_mass(api, f"parallel-{b}", orders=[_line() for _ in range(10)]) for b in range(batches))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    outcomes = [o for r in responses for o in r.json()["lines"]]
    accepted = [o for o in outcomes if o["outcome"] == "accepted"]
    refused = {o["code"] for o in outcomes if o["outcome"] == "refused"}
    assert (len(accepted), refused) == (10, {"insufficient_funds"})
    assert len({o["order_id"] for o in accepted}) == 10
    assert await _counts(api.sessions) == (10, 10)
    assert await _balance(api) == 0
    async with api.sessions() as session:
        assert await ledger.check_invariants(session) == []
