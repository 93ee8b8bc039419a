"""ProviderActivities against the provider simulator in process (ASGI), on a real PostgreSQL database.

The activities are called through Temporal's ActivityEnvironment; a "retry" is simply calling the activity
again with the same input, as Temporal would after a failed or timed-out attempt. A recording transport sits
between the activities and the simulator, so the tests can tell exactly which `add` requests left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from simserver import serve
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.provider import ProviderActivities
from providers.client import ProviderAmbiguous, ProviderUnavailable
from providers.simulator import SimClock, create_simulator_app
from store.db import transaction
from store.models import Provider, ProviderRefill, ProviderSubmission
from support import LINK, open_shop, place
from workflows.errors import LINK_FAULT, NEEDS_RECONCILIATION, REJECTED
from workflows.models import (
    CancelAnswer,
    CancelRun,
    CheckRefill,
    CheckRun,
    OrderInput,
    RefillReport,
    SubmitRefill,
    SubmitRun,
)

SIM_SERVICE = "101"  # the simulator's "Instagram Followers": min 50, 1 s start delay, then 100 units/s


class FrozenClock(SimClock):
    """Simulated time that moves only when a test advances it, so delivery is deterministic."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 1_000.0

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._now += seconds


class RecordingTransport(httpx.AsyncBaseTransport):
    """The simulator over ASGI, plus a log of API v2 calls and a switch that refuses connections."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.refuse_connections = False
        self.calls: list[dict[str, str]] = []  # form fields of every API v2 call that reached the simulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse_connections:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/api/v2":
            body = await request.aread()
            self.calls.append(dict(parse_qsl(body.decode(), keep_blank_values=True)))
        return await self._inner.handle_async_request(request)

    def adds(self) -> list[dict[str, str]]:
        return [call for call in self.calls if call.get("action") == "add"]


@dataclass
class Harness:
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    transport: RecordingTransport
    clock: FrozenClock
    activities: ProviderActivities
    order: OrderInput
    env: ActivityEnvironment = field(default_factory=ActivityEnvironment)

    @property
    def provider_id(self) -> int:
        return self.order.routes[0].provider_id

    @property
    def client_key(self) -> str:
        return f"order-{self.order.order_id}-run-1-p{self.provider_id}"

    def run(self, run_no: int = 1) -> SubmitRun:
        """The run to the order's first route, whose slot the order holds (the claim is the slot tests')."""
        return SubmitRun(
            order_id=self.order.order_id,
            workflow_id=f"order-{self.order.order_id}",
            run_no=run_no,
            link=self.order.link,
            quantity=self.order.quantity,
            routes=[self.order.routes[0]],
            claim=False,
        )

    async def submit(self, run_no: int = 1) -> str:
        submitted = await self.env.run(self.activities.submit_run, self.run(run_no))
        return submitted.provider_order_id

    async def check(self, provider_order_id: str) -> Any:
        return await self.env.run(self.activities.check_run, CheckRun(self.provider_id, provider_order_id))

    async def accepts_idempotency_key(self, value: bool) -> None:
        async with transaction(self.sessions) as session:
            await session.execute(
                update(Provider).where(Provider.id == self.provider_id).values(accepts_idempotency_key=value)
            )

    async def rows(self) -> list[ProviderSubmission]:
        async with self.sessions() as session:
            found = await session.scalars(
                select(ProviderSubmission).where(ProviderSubmission.order_id == self.order.order_id)
            )
            return list(found)

    async def row(self) -> ProviderSubmission:
        rows = await self.rows()
        assert len(rows) == 1, rows
        return rows[0]

    async def scenario(self, scenario: str, link_contains: str | None = None) -> None:
        body = {"scenario": scenario, "link_contains": link_contains, "value": None}
        response = await self.http.post("/sim/scenario", json=body)
        assert response.status_code == 200, response.text

    async def set_scenario(self, **body: Any) -> None:
        response = await self.http.post("/sim/scenario", json=body)
        assert response.status_code == 200, response.text

    async def sim_requests(self, action: str) -> list[dict[str, Any]]:
        response = await self.http.get("/sim/requests", params={"action": action})
        assert response.status_code == 200, response.text
        requests: list[dict[str, Any]] = response.json()["requests"]
        return requests

    async def refill(self, refill_no: int, provider_order_id: str) -> str:
        submitted = await self.env.run(
            self.activities.submit_refill,
            SubmitRefill(self.order.order_id, refill_no, self.provider_id, provider_order_id),
        )
        return submitted.provider_refill_id

    async def check_refill(self, refill_id: str) -> RefillReport:
        return await self.env.run(self.activities.check_refill, CheckRefill(self.provider_id, refill_id))

    async def cancel(self, provider_order_id: str) -> CancelAnswer:
        cancel = CancelRun(self.order.order_id, self.provider_id, provider_order_id)
        return await self.env.run(self.activities.cancel_run, cancel)

    async def refill_rows(self) -> list[ProviderRefill]:
        async with self.sessions() as session:
            found = await session.scalars(
                select(ProviderRefill).where(ProviderRefill.order_id == self.order.order_id)
            )
            return list(found)

    async def sim_orders(self) -> list[dict[str, Any]]:
        response = await self.http.get("/sim/orders")
        assert response.status_code == 200, response.text
        orders: list[dict[str, Any]] = response.json()
        return orders

    async def advance(self, seconds: float) -> None:
        response = await self.http.post("/sim/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text


async def make_harness(
    sessions: async_sessionmaker[AsyncSession], quantity: int = 100
) -> AsyncIterator[Harness]:
    # Routes point at the simulator's service 101; min 1 lets an order below the simulator's min be placed.
    routes = [{"provider": "alpha", "service": SIM_SERVICE}, {"provider": "beta", "service": SIM_SERVICE}]
    shop = await open_shop(sessions, min=1, routes=routes)
    order = await place(sessions, shop, quantity)
    assert order.routes[0].provider_service_id == SIM_SERVICE
    clock = FrozenClock()
    transport = RecordingTransport(httpx.ASGITransport(app=create_simulator_app(api_key="k", clock=clock)))
    # The catalog's api_url is http://alpha/api/v2; ASGITransport ignores the host.
    async with httpx.AsyncClient(transport=transport, base_url="http://alpha") as http:
        yield Harness(sessions, http, transport, clock, ProviderActivities(sessions, http), order)


@pytest.fixture
async def h(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Harness]:
    async for harness in make_harness(sessions):
        yield harness


@pytest.fixture
async def h_small(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Harness]:
    async for harness in make_harness(sessions, quantity=5):
        yield harness


@contextlib.contextmanager
def raises_temporary(kind: str, provider_id: int) -> Iterator[None]:
    """A submission's temporary trouble: retried by Temporal, naming the provider where the slot is held."""
    with pytest.raises(ApplicationError) as caught:
        yield
    error = caught.value
    assert (error.type, error.non_retryable, tuple(error.details)) == (kind, False, (provider_id,))


def assert_final(exc: ApplicationError, type_: str) -> None:
    assert exc.type == type_
    assert exc.non_retryable is True


# ---------------------------------------------------------------------------------------------- 1. retry


@pytest.mark.parametrize("dedupes", [False, True])
async def test_retry_after_success_returns_the_same_order_without_sending(h: Harness, dedupes: bool) -> None:
    await h.accepts_idempotency_key(dedupes)

    first = await h.submit()
    second = await h.submit()

    assert first == second
    orders = await h.sim_orders()
    assert [str(o["order"]) for o in orders] == [first]
    assert orders[0]["quantity"] == 100
    assert orders[0]["service"] == SIM_SERVICE
    assert len(h.transport.adds()) == 1, "the retry must be answered from the submission row"
    add = h.transport.adds()[0]
    assert add.get("idempotency_key") == (h.client_key if dedupes else None)

    row = await h.row()
    assert (row.state, row.provider_order_id, row.error) == ("accepted", first, None)
    assert (row.run_no, row.provider_id, row.quantity) == (1, h.provider_id, 100)
    assert row.provider_service_id == SIM_SERVICE
    assert row.client_key == h.client_key


# ---------------------------------------------------------------------------------------------- 2. outage


async def test_unreachable_provider_leaves_no_row_and_the_retry_submits_once(h: Harness) -> None:
    """Connection refused: the request certainly did not arrive, so the attempt is forgotten."""
    await h.accepts_idempotency_key(False)
    h.transport.refuse_connections = True

    with raises_temporary("ProviderUnavailable", h.provider_id):
        await h.submit()
    assert await h.rows() == []

    h.transport.refuse_connections = False
    assert await h.sim_orders() == []
    provider_order_id = await h.submit()

    assert [str(o["order"]) for o in await h.sim_orders()] == [provider_order_id]
    assert len(h.transport.adds()) == 1
    row = await h.row()
    assert (row.state, row.provider_order_id) == ("accepted", provider_order_id)


async def test_outage_scenario_is_ambiguous_for_add_and_never_resent_blindly(h: Harness) -> None:
    """The simulator's `outage` answers HTTP 503. The client treats any 5xx on `add` as possibly accepted
    (tests/providers pins this), so the activity does NOT see ProviderUnavailable: the row stays `sending`,
    and a provider without idempotency keys ends in reconciliation although nothing was ordered."""
    await h.accepts_idempotency_key(False)
    await h.scenario("outage")

    with raises_temporary("ProviderAmbiguous", h.provider_id):
        await h.submit()
    assert (await h.row()).state == "sending"

    await h.scenario("normal")
    with pytest.raises(ApplicationError) as caught:
        await h.submit()
    assert_final(caught.value, NEEDS_RECONCILIATION)
    assert (await h.row()).state == "needs_reconciliation"
    assert await h.sim_orders() == []
    assert len(h.transport.adds()) == 1


async def test_outage_scenario_with_idempotency_keys_resends_and_submits_once(h: Harness) -> None:
    await h.accepts_idempotency_key(True)
    await h.scenario("outage")

    with raises_temporary("ProviderAmbiguous", h.provider_id):
        await h.submit()
    assert (await h.row()).state == "sending"

    await h.scenario("normal")
    provider_order_id = await h.submit()

    assert [str(o["order"]) for o in await h.sim_orders()] == [provider_order_id]
    assert [add["idempotency_key"] for add in h.transport.adds()] == [h.client_key, h.client_key]
    row = await h.row()
    assert (row.state, row.provider_order_id) == ("accepted", provider_order_id)


# ------------------------------------------------------------------------------------------ 3./4. lost answer


async def test_lost_answer_with_idempotency_keys_resends_with_the_same_key(h: Harness) -> None:
    await h.accepts_idempotency_key(True)
    await h.scenario("lost_answer")

    with raises_temporary("ProviderAmbiguous", h.provider_id):
        await h.submit()
    row = await h.row()
    assert (row.state, row.provider_order_id) == ("sending", None)
    taken = await h.sim_orders()
    assert len(taken) == 1, "lost_answer takes the order and only loses the answer"

    # A retry while answers are still lost: the same key again, still one order, still `sending`.
    with raises_temporary("ProviderAmbiguous", h.provider_id):
        await h.submit()
    assert (await h.row()).state == "sending"
    assert len(await h.sim_orders()) == 1

    await h.scenario("normal")
    provider_order_id = await h.submit()

    assert provider_order_id == str(taken[0]["order"])
    assert [str(o["order"]) for o in await h.sim_orders()] == [provider_order_id]
    assert [add["idempotency_key"] for add in h.transport.adds()] == [h.client_key] * 3
    row = await h.row()
    assert (row.state, row.provider_order_id) == ("accepted", provider_order_id)

    # And once accepted, a further retry sends nothing.
    assert await h.submit() == provider_order_id
    assert len(h.transport.adds()) == 3


async def test_lost_answer_without_idempotency_keys_needs_reconciliation(h: Harness) -> None:
    await h.accepts_idempotency_key(False)
    await h.scenario("lost_answer")

    with raises_temporary("ProviderAmbiguous", h.provider_id):
        await h.submit()
    assert (await h.row()).state == "sending"
    assert len(await h.sim_orders()) == 1
    assert "idempotency_key" not in h.transport.adds()[0]

    await h.scenario("normal")  # even with the provider answering again, nothing may be re-sent
    with pytest.raises(ApplicationError) as caught:
        await h.submit()
    assert_final(caught.value, NEEDS_RECONCILIATION)
    row = await h.row()
    assert (row.state, row.provider_order_id) == ("needs_reconciliation", None)
    assert row.error
    assert "cannot deduplicate" in row.error
    assert len(await h.sim_orders()) == 1
    assert len(h.transport.adds()) == 1

    with pytest.raises(ApplicationError) as again:
        await h.submit()
    assert_final(again.value, NEEDS_RECONCILIATION)
    assert again.value.message == caught.value.message
    assert (await h.row()).state == "needs_reconciliation"
    assert len(await h.sim_orders()) == 1
    assert len(h.transport.adds()) == 1


async def test_needs_reconciliation_sticks_even_if_the_provider_later_accepts_keys(h: Harness) -> None:
    """The first send carried no key, so a keyed re-send could not be deduplicated against it."""
    await h.accepts_idempotency_key(False)
    await h.scenario("lost_answer")
    with raises_temporary("ProviderAmbiguous", h.provider_id):
        await h.submit()
    await h.scenario("normal")
    with pytest.raises(ApplicationError):
        await h.submit()

    await h.accepts_idempotency_key(True)
    with pytest.raises(ApplicationError) as caught:
        await h.submit()
    assert_final(caught.value, NEEDS_RECONCILIATION)
    assert len(h.transport.adds()) == 1
    assert len(await h.sim_orders()) == 1


# ---------------------------------------------------------------------------------------------- 5. rejected


@pytest.mark.parametrize("dedupes", [False, True])
async def test_rejected_submission_is_final_and_never_resent(h_small: Harness, dedupes: bool) -> None:
    h = h_small
    await h.accepts_idempotency_key(dedupes)

    with pytest.raises(ApplicationError) as caught:
        await h.submit()
    assert_final(caught.value, REJECTED)
    assert caught.value.message == "Quantity less than minimal 50"
    row = await h.row()
    assert (row.state, row.provider_order_id) == ("rejected", None)
    assert row.error == "Quantity less than minimal 50"
    assert row.quantity == 5
    assert await h.sim_orders() == []

    with pytest.raises(ApplicationError) as again:
        await h.submit()
    assert_final(again.value, REJECTED)
    assert again.value.message == "Quantity less than minimal 50"
    assert len(h.transport.adds()) == 1, "a rejected run is answered from its row"
    assert (await h.row()).state == "rejected"


# ---------------------------------------------------------------------------------------------- 6. check_run


async def test_check_run_normalises_status_and_remains(h: Harness) -> None:
    provider_order_id = await h.submit()
    start_count = (await h.sim_orders())[0]["start_count"]

    pending = await h.check(provider_order_id)
    assert (pending.status, pending.raw_status, pending.remains) == ("Pending", "Pending", 100)
    assert pending.start_count == start_count

    await h.advance(1.5)  # 1 s start delay, then 100 units/s: 50 delivered
    running = await h.check(provider_order_id)
    assert (running.status, running.raw_status, running.remains) == ("In progress", "In progress", 50)

    await h.advance(10)
    done = await h.check(provider_order_id)
    assert (done.status, done.raw_status, done.remains, done.start_count) == (
        "Completed",
        "Completed",
        0,
        start_count,
    )


async def test_check_run_partial_keeps_the_undelivered_remains(h: Harness) -> None:
    await h.scenario("partial")  # delivery stops at half
    provider_order_id = await h.submit()
    await h.advance(60)
    status = await h.check(provider_order_id)
    assert (status.status, status.remains) == ("Partial", 50)


async def test_check_run_unknown_order_is_rejected_and_outage_is_retryable(h: Harness) -> None:
    with pytest.raises(ApplicationError) as caught:
        await h.check("999999")
    assert_final(caught.value, REJECTED)
    assert caught.value.message == "Incorrect order ID"

    provider_order_id = await h.submit()
    await h.scenario("outage")
    with pytest.raises(ProviderUnavailable):  # a plain exception: Temporal retries it
        await h.check(provider_order_id)
    await h.scenario("normal")
    assert (await h.check(provider_order_id)).status == "Pending"


async def test_unknown_provider_is_rejected(h: Harness) -> None:
    run = h.run()
    bogus = dataclasses.replace(run, routes=[dataclasses.replace(run.routes[0], provider_id=999_999)])
    with pytest.raises(ApplicationError) as caught:
        await h.env.run(h.activities.submit_run, bogus)
    assert_final(caught.value, REJECTED)
    assert h.transport.adds() == []


# ------------------------------------------------------------------------------------------ 7. link faults


async def test_bad_link_is_a_link_fault_final_and_never_resent(h: Harness) -> None:
    await h.set_scenario(scenario="link_fault", link_contains="some.account", fault="invalid")

    with pytest.raises(ApplicationError) as caught:
        await h.submit()
    assert_final(caught.value, LINK_FAULT)
    assert caught.value.message == "Bad link"
    row = await h.row()
    assert (row.state, row.error, row.provider_order_id) == ("link_fault", "Bad link", None)

    with pytest.raises(ApplicationError) as again:
        await h.submit()
    assert_final(again.value, LINK_FAULT)
    assert len(h.transport.adds()) == 1
    assert await h.sim_orders() == []


async def test_check_run_reports_a_link_fault_with_what_was_delivered(h: Harness) -> None:
    provider_order_id = await h.submit()
    await h.advance(1.5)  # 50 delivered
    await h.set_scenario(scenario="link_fault", link_contains="some.account", fault="private")

    status = await h.check(provider_order_id)
    assert (status.status, status.raw_status, status.remains) == ("Canceled", "Canceled", 50)
    assert status.link_fault is not None
    assert "private" in status.link_fault


async def test_a_plain_cancel_is_no_link_fault(h: Harness) -> None:
    provider_order_id = await h.submit()
    assert await h.cancel(provider_order_id) == CancelAnswer(True, "")
    status = await h.check(provider_order_id)
    assert (status.status, status.remains, status.link_fault) == ("Canceled", 100, None)


# ---------------------------------------------------------------------------------------------- 8. cancel


async def test_cancel_run_in_progress_ends_partial_and_after_the_end_is_refused(h: Harness) -> None:
    provider_order_id = await h.submit()
    await h.advance(1.5)  # 50 delivered
    assert await h.cancel(provider_order_id) == CancelAnswer(True, "")
    await h.advance(60)
    status = await h.check(provider_order_id)
    assert (status.status, status.remains) == ("Partial", 50)

    assert await h.cancel(provider_order_id) == CancelAnswer(False, "The order cannot be canceled")
    assert await h.cancel("999999") == CancelAnswer(False, "Incorrect order ID")

    await h.scenario("outage")
    with pytest.raises(ProviderUnavailable):  # retried by Temporal: canceling twice is harmless
        await h.cancel(provider_order_id)


# ---------------------------------------------------------------------------------------------- 9. refills


async def test_refill_is_sent_once_and_followed_to_its_end(h: Harness) -> None:
    provider_order_id = await h.submit()
    await h.advance(10)
    await h.set_scenario(scenario="drop", value=0.2)

    refill_id = await h.refill(1, provider_order_id)
    assert await h.refill(1, provider_order_id) == refill_id, "a retry is answered from the refill row"
    assert len(await h.sim_requests("refill")) == 1
    [row] = await h.refill_rows()
    assert (row.state, row.provider_refill_id) == ("accepted", refill_id)
    assert row.provider_order_id == provider_order_id

    assert await h.check_refill(refill_id) == RefillReport("Pending", "Pending")
    await h.advance(30)
    assert await h.check_refill(refill_id) == RefillReport("Completed", "Completed")
    assert (await h.sim_orders())[0]["dropped"] == 0

    # The provider's cooldown refuses a second refill: final, and never sent again.
    cooldown = "The order was completed or refill was requested less than 24 hours ago"
    for _ in range(2):
        with pytest.raises(ApplicationError) as caught:
            await h.refill(2, provider_order_id)
        assert_final(caught.value, REJECTED)
        assert caught.value.message == cooldown
    assert len(await h.sim_requests("refill")) == 2

    with pytest.raises(ApplicationError) as unknown:
        await h.check_refill("999999")
    assert_final(unknown.value, REJECTED)


async def test_refill_of_a_faulted_link_is_rejected_by_the_provider(h: Harness) -> None:
    provider_order_id = await h.submit()
    await h.advance(10)
    await h.set_scenario(scenario="link_fault", link_contains="some.account", fault="deleted")
    refill_id = await h.refill(1, provider_order_id)
    assert await h.check_refill(refill_id) == RefillReport("Rejected", "Rejected")


@pytest.mark.parametrize("dedupes", [False, True])
async def test_lost_refill_answer_is_resent_only_with_a_key(h: Harness, dedupes: bool) -> None:
    await h.accepts_idempotency_key(dedupes)
    provider_order_id = await h.submit()
    await h.advance(10)
    await h.scenario("lost_answer")

    with pytest.raises(ProviderAmbiguous):
        await h.refill(1, provider_order_id)
    [row] = await h.refill_rows()
    assert row.state == "sending"

    await h.scenario("normal")
    if dedupes:
        refill_id = await h.refill(1, provider_order_id)
        assert refill_id == "501", "the provider's first refill, found again by its key"
        keys = [r["params"]["idempotency_key"] for r in await h.sim_requests("refill")]
        assert keys == [f"order-{h.order.order_id}-refill-1-p{h.provider_id}-{provider_order_id}"] * 2
        assert (await h.refill_rows())[0].state == "accepted"
    else:
        with pytest.raises(ApplicationError) as caught:
            await h.refill(1, provider_order_id)
        assert_final(caught.value, NEEDS_RECONCILIATION)
        assert len(await h.sim_requests("refill")) == 1
        assert (await h.refill_rows())[0].state == "needs_reconciliation"


# ---------------------------------------------------------------------------------------------- 10. batching


async def test_concurrent_checks_share_one_status_call_per_hundred_orders(h: Harness) -> None:
    ids = []
    for n in range(150):
        answer = await h.http.post(
            "/api/v2",
            data={"key": "k", "action": "add", "service": SIM_SERVICE, "link": f"{LINK}{n}", "quantity": 100},
        )
        ids.append(str(answer.json()["order"]))
    await h.advance(1.5)  # 50 of 100 delivered each

    # A window of a second, so that a busy test machine cannot spread the checks over several windows.
    activities = ProviderActivities(h.sessions, h.http, batch_window=1.0)
    checks = [activities.check_run(CheckRun(h.provider_id, order_id)) for order_id in [*ids, "999999"]]
    results = await asyncio.gather(*checks, return_exceptions=True)

    statuses = await h.sim_requests("status")
    assert len(statuses) == 2, "151 checks cost two batch calls (100 + 51 ids), not 151"
    assert sorted(len(r["params"]["orders"].split(",")) for r in statuses) == [51, 100]
    assert all((r.status, r.remains) == ("In progress", 50) for r in results[:150])  # type: ignore[union-attr]
    unknown = results[150]
    assert isinstance(unknown, ApplicationError)
    assert unknown.type == REJECTED
    assert unknown.message == "Incorrect order ID"

    # An outage fails every caller of the batch with a retryable error.
    await h.scenario("outage")
    failed = await asyncio.gather(
        *(activities.check_run(CheckRun(h.provider_id, i)) for i in ids[:5]), return_exceptions=True
    )
    assert all(isinstance(f, ProviderUnavailable) for f in failed)
    assert len(await h.sim_requests("status")) == 3

    # Without company, each check is its own call (asked with `order=`).
    await h.scenario("normal")
    for order_id in ids[:3]:
        await h.check(order_id)
    assert [r["params"].get("order") for r in (await h.sim_requests("status"))[3:]] == ids[:3]


async def test_requests_to_a_provider_are_rate_limited(h: Harness) -> None:
    async with transaction(h.sessions) as session:
        await session.execute(
            update(Provider).where(Provider.id == h.provider_id).values(rate_limit_per_second=10)
        )
    started = time.monotonic()
    answers = await asyncio.gather(*(h.cancel(str(n)) for n in range(25)))
    elapsed = time.monotonic() - started
    assert all(a == CancelAnswer(False, "Incorrect order ID") for a in answers)
    assert len(await h.sim_requests("cancel")) == 25
    assert 1.4 <= elapsed < 10, "a burst of 10, then 10 per second: 15 more need 1.5 s"


# --------------------------------------------------------------------- 11. timeout after accepting, over HTTP


@pytest.mark.parametrize("dedupes", [False, True])
async def test_provider_timing_out_after_accepting_delivers_once_or_needs_reconciliation(
    h: Harness, dedupes: bool
) -> None:
    """The simulator takes the order, then answers later than the client waits (a real read timeout over
    a real socket). Retried as Temporal would, the run is delivered exactly once or waits for ops; never
    twice."""
    await h.accepts_idempotency_key(dedupes)
    clock = FrozenClock()
    async with serve(create_simulator_app(api_key="k", clock=clock)) as url, httpx.AsyncClient() as http:
        async with transaction(h.sessions) as session:
            await session.execute(
                update(Provider).where(Provider.id == h.provider_id).values(api_url=f"{url}/api/v2")
            )
        activities = ProviderActivities(h.sessions, http, request_timeout=0.5)
        control = f"{url}/sim/scenario"
        assert (await http.post(control, json={"scenario": "slow", "value": 2.0})).status_code == 200

        outcome: str | None = None
        for attempt in range(10):
            if attempt == 3:  # the provider recovers
                assert (await http.post(control, json={"scenario": "normal"})).status_code == 200
            try:
                outcome = (await h.env.run(activities.submit_run, h.run())).provider_order_id
                break
            except ApplicationError as exc:
                if exc.type == "ProviderAmbiguous" and not exc.non_retryable:
                    continue  # Temporal retries
                assert_final(exc, NEEDS_RECONCILIATION)
                outcome = "needs_reconciliation"
                break

        sim_orders = (await http.get(f"{url}/sim/orders")).json()
        adds = (await http.get(f"{url}/sim/requests", params={"action": "add"})).json()["requests"]
        assert len(sim_orders) == 1, "the first request was taken, and nothing was taken twice"
        row = await h.row()
        if dedupes:
            assert outcome == str(sim_orders[0]["order"])
            assert (row.state, row.provider_order_id) == ("accepted", outcome)
            assert {a["params"]["idempotency_key"] for a in adds} == {h.client_key}
            assert len(adds) >= 4, "three timed out, then the same key found the order"
            clock.advance(10)
            done = await h.env.run(activities.check_run, CheckRun(h.provider_id, outcome))
            assert (done.status, done.remains) == ("Completed", 0)
        else:
            assert outcome == "needs_reconciliation"
            assert row.state == "needs_reconciliation"
            assert len(adds) == 1, "an ambiguous submission is never re-sent without a key"
