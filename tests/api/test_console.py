"""The console in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium) against the API
served over TCP, on the real database and Temporal dev server with a worker running the real OrderWorkflow.
One screenshot per page lands in tests/artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from sqlalchemy import update

from store.catalog import load_catalog
from store.db import transaction
from store.models import Provider
from support import Api, catalog

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parents[1] / "artifacts" / "screenshots"
# Chromium as root, with no network beyond loopback: no sandbox, nothing fetched in the background.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = {"pace_per_hour": 3_600_000}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is needed: apt-get install -y chromium (.ci/run does it)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(15_000)
    yield made
    await made.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


async def sign_in(page: Page, url: str, key: str) -> None:
    await page.goto(f"{url}/console")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def open_order(page: Page, url: str, order_id: int) -> None:
    await page.goto(f"{url}/console/orders?order_id={order_id}")
    await expect(page.get_by_role("heading", name=f"Order #{order_id}")).to_be_visible()


async def fast_catalog(api: Api, *, capacity: int = 100) -> None:
    async with transaction(api.sessions) as session:
        await load_catalog(session, catalog(**FAST))
        await session.execute(update(Provider).values(poll_interval_seconds=1, capacity=capacity))


async def place(api: Api, key: str, **body: Any) -> int:
    response = await api.order(key=key, **body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def eventually(
    api: Api, order_id: int, ok: Callable[[dict[str, Any]], bool], seconds: float = 30
) -> dict[str, Any]:
    order: dict[str, Any] = {}
    for _ in range(int(seconds * 5)):
        order = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("admin"))).json()
        if ok(order):
            return order
        await asyncio.sleep(0.2)
    raise AssertionError(f"order never got there: {order}")


async def test_sign_in_search_an_order_and_its_customer(api: Api, served: str, page: Page) -> None:
    await fast_catalog(api)
    first = await place(api, "c1", link="https://instagram.com/first_shop")
    second = await place(api, "c2", link="https://instagram.com/Second_Shop")
    drip = await place(api, "c3", link="https://instagram.com/drip_shop", runs=2, interval=30)
    await eventually(api, first, lambda o: o["phase"] == "delivering")

    # A customer's key and a wrong key are refused, in words; the key is a password field.
    await sign_in(page, served, api.keys["customer"])
    await expect(page.get_by_role("alert")).to_have_text(
        "A customer key cannot sign in to the console: use a support, ops or admin key."
    )
    await expect(page.get_by_label("API key")).to_have_attribute("type", "password")
    await shot(page, "sign-in-refused")
    await sign_in(page, served, "bo_sup_000000000000.wrong")
    await expect(page.get_by_role("alert")).to_have_text("That key is not valid.")
    assert not [c for c in await page.context.cookies() if c["name"] == "console_session"]

    await sign_in(page, served, api.keys["support"])
    await expect(page.get_by_test_id("who")).to_contain_text("Signed in: support")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "console_session"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    assert api.keys["support"] not in cookie["value"]

    # By link (a part, any case) and customer, as REST filters; paging by REST's cursor.
    await page.get_by_label("Link contains").fill("second_shop")
    await page.get_by_label("Customer id").fill(str(api.customer_id))
    await page.get_by_role("button", name="Search").click()
    rows = page.get_by_test_id("orders").locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(f"#{second}")
    await page.goto(f"{served}/console/orders?customer_id={api.customer_id}&limit=1")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(f"#{first}")
    await page.get_by_role("link", name="Next page").click()
    await expect(rows.first).to_contain_text(f"#{second}")
    await page.goto(f"{served}/console/orders?phase=delivering&status=In+progress")
    await expect(page.get_by_role("link", name=f"#{first}", exact=True)).to_be_visible()
    await shot(page, "orders")
    await page.goto(f"{served}/console/orders?status=Sleeping")
    await expect(page.get_by_test_id("search-error")).to_contain_text("status")

    # The order's page: status, money, timeline, provider, the workflow in the Web UI.
    await page.goto(f"{served}/console/orders")
    await page.get_by_label("Order id").fill(str(first))
    await page.keyboard.press("Enter")  # keyboard-usable: the search form submits on Enter
    await expect(page.get_by_role("heading", name=f"Order #{first}")).to_be_visible()
    await expect(page.get_by_test_id("status")).to_have_text("In progress")
    await expect(page.get_by_test_id("charge")).to_have_text("0.100000")
    await expect(page.get_by_test_id("refundable")).to_have_text("0.100000")
    await expect(page.get_by_test_id("timeline").locator("tbody tr").first).not_to_contain_text("Nothing yet")
    await expect(page.get_by_test_id("provider-orders")).to_be_visible()  # the scripted provider: no rows
    link = page.get_by_test_id("workflow-link")
    await expect(link).to_have_attribute("href", re.compile(rf"/namespaces/default/workflows/order-{first}$"))
    await expect(page.get_by_role("heading", name="Refund")).to_be_visible()
    await expect(page.get_by_role("heading", name="Pause")).to_have_count(0)  # ops' action
    await shot(page, "order")
    # On a phone: nothing wider than the screen but the tables, which scroll in their own box.
    await page.set_viewport_size({"width": 390, "height": 844})
    wide = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 0
    await shot(page, "order-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})

    # A drip-feed order's page lists its runs, each with its own id.
    await open_order(page, served, drip)
    runs = page.get_by_test_id("runs").locator("tbody tr")
    await expect(runs).to_have_count(2)
    await expect(runs.first).to_contain_text("100")

    await page.get_by_role("link", name=f"customer {api.customer_id}").click()
    rest = await api.http.get(f"/v1/customers/{api.customer_id}", headers=api.as_("support"))
    await expect(page.get_by_test_id("balance")).to_have_text(rest.json()["balance"])
    statement = page.get_by_test_id("statement")
    await expect(statement.locator("tbody tr")).to_have_count(4)  # the deposit and three charges
    await expect(statement).to_contain_text(f"#{second}")
    await shot(page, "customer")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(f"{served}/console/orders/{first}")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_a_refund_once_per_form_and_its_refusal(api: Api, served: str, page: Page) -> None:
    await fast_catalog(api)
    order_id = await place(api, "r1")
    await eventually(api, order_id, lambda o: o["status"] == "In progress")
    await sign_in(page, served, api.keys["support"])
    await open_order(page, served, order_id)
    refund = page.get_by_test_id("action-refund")

    # Neither amount nor units: refused by REST's own validation, beside the form, the reason kept.
    await refund.get_by_label("Reason", exact=True).fill("ticket 4411")
    await refund.get_by_role("button", name="Refund").click()
    await expect(page.get_by_test_id("error-refund")).to_contain_text("send exactly one of amount or units")
    await expect(refund.get_by_label("Reason", exact=True)).to_have_value("ticket 4411")

    form = {
        "csrf": await refund.locator("input[name=csrf]").input_value(),
        "idempotency_key": await refund.locator("input[name=idempotency_key]").input_value(),
        "amount": "0.02",
        "reason": "ticket 4411",
    }
    await refund.get_by_label("Amount").fill("0.02")
    await refund.get_by_role("button", name="Refund").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Refunded 0.020000; 0.020000 refunded in all (In progress)."
    )
    await expect(page.get_by_test_id("refunded")).to_have_text("0.020000")
    # The same form sent again (a double click) moves nothing.
    again = await page.request.post(f"{served}/console/orders/{order_id}/actions/refund", form=form)
    assert again.ok
    await page.reload()
    await expect(page.get_by_test_id("refunded")).to_have_text("0.020000")
    rest = (await api.http.get(f"/v1/orders/{order_id}", headers=api.as_("admin"))).json()
    assert rest["refunded"] == "0.020000"
    assert len([e for e in rest["timeline"] if e["kind"] == "refund"]) == 1

    # Everything left by units, then one more: the order's own refusal, in its words.
    refund = page.get_by_test_id("action-refund")
    await refund.get_by_label("Units").fill("100")
    await refund.get_by_label("Reason", exact=True).fill("ticket 4412")
    await refund.get_by_role("button", name="Refund").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("0.100000 refunded in all")
    await expect(page.get_by_test_id("refundable")).to_have_text("0.000000")
    refund = page.get_by_test_id("action-refund")
    await refund.get_by_label("Amount").fill("0.01")
    await refund.get_by_label("Reason", exact=True).fill("ticket 4413")
    await refund.get_by_role("button", name="Refund").click()
    error = page.get_by_test_id("error-refund")
    await expect(error).to_be_visible()
    await shot(page, "refund-refused")
    direct = await api.http.post(
        f"/v1/orders/{order_id}/refunds",
        json={"amount": "0.01", "reason": "ticket 4413"},
        headers=api.as_("support") | {"Idempotency-Key": "rest-after"},
    )
    assert direct.status_code == 409
    assert await error.inner_text() == direct.json()["message"]


async def test_support_cancels_a_waiting_order(api: Api, served: str, page: Page) -> None:
    await fast_catalog(api, capacity=0)  # no provider has room: the order waits in line, cancellable
    order_id = await place(api, "w1")
    await eventually(api, order_id, lambda o: o["queue_position"] is not None)
    await sign_in(page, served, api.keys["support"])
    await open_order(page, served, order_id)
    cancel = page.get_by_test_id("action-cancel")
    await cancel.get_by_label("Reason (optional)").fill("customer asked, ticket 77")
    await cancel.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Cancel accepted")
    order = await eventually(api, order_id, lambda o: o["status"] == "Canceled")
    assert order["refunded"] == order["charge"]
    [event] = [e for e in order["timeline"] if e["kind"] == "cancel"]
    assert event["actor"].startswith("support:key")
    await page.reload()
    await expect(page.get_by_test_id("status")).to_have_text("Canceled")
    await shot(page, "order-canceled")
    await page.get_by_test_id("action-cancel").get_by_role("button", name="Cancel").click()
    await expect(page.get_by_test_id("error-cancel")).to_be_visible()


async def test_ops_pause_and_a_role_that_may_not(
    api: Api, served: str, page: Page, context: BrowserContext
) -> None:
    await fast_catalog(api)
    order_id = await place(api, "p1")
    await eventually(api, order_id, lambda o: o["phase"] == "delivering")

    # Support sees no pause, and a pause sent by hand with support's session is refused as REST refuses it.
    await sign_in(page, served, api.keys["support"])
    await open_order(page, served, order_id)
    await expect(page.get_by_test_id("action-pause")).to_have_count(0)
    csrf = await page.get_by_test_id("action-refund").locator("input[name=csrf]").input_value()
    forced = await page.request.post(
        f"{served}/console/orders/{order_id}/actions/pause", form={"csrf": csrf, "reason": "not mine"}
    )
    assert forced.status == 403
    assert "The support role cannot do this." in await forced.text()
    # Nor without the form's CSRF token, whoever signs in.
    forged = await page.request.post(
        f"{served}/console/orders/{order_id}/actions/cancel", form={"reason": "forged"}
    )
    assert forged.status == 403
    await context.clear_cookies()

    await sign_in(page, served, api.keys["ops"])
    await open_order(page, served, order_id)
    await expect(page.get_by_test_id("action-refund")).to_have_count(0)
    await expect(page.get_by_test_id("action-cancel")).to_have_count(0)
    pause = page.get_by_test_id("action-pause")
    await pause.get_by_label("Reason", exact=True).fill("provider incident 12")
    await pause.get_by_role("button", name="Pause").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Paused: the order is In progress, paused.")
    await shot(page, "order-ops")
    order = await eventually(api, order_id, lambda o: "paused" in {e["kind"] for e in o["timeline"]})
    assert order["phase"] == "paused"
    [event] = [e for e in order["timeline"] if e["kind"] == "paused"]
    assert event["actor"].startswith("ops:key")
