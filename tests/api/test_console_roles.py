"""The console without a browser: each action's roles are REST's, each action goes through REST's audited
path (`via: console`), and the sign-in refuses what it must."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from api.console.common import STAFF_ROLES
from api.console.forms import ACTIONS
from store import keys
from store.db import transaction
from support import Api

MISSING = 999_999_999  # no such order: allowed roles get 404 and nothing is sent


def browserless(api: Api) -> httpx.AsyncClient:
    """A client of its own (its own cookies) on the same app."""
    app = api.http._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


@asynccontextmanager
async def console_session(api: Api, role: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client signed in with the role's key, and its CSRF token."""
    async with browserless(api) as client:
        form = await client.get("/console/sign-in")
        [token] = re.findall(r'name="csrf" value="([^"]+)"', form.text)
        signed = await client.post("/console/sign-in", data={"key": api.keys[role], "csrf": token})
        assert (signed.status_code, signed.headers["location"]) == (303, "/console/orders"), signed.text
        page = await client.get("/console/orders")
        [csrf] = re.findall(r'name="csrf" value="([^"]+)"', page.text)
        yield client, csrf


@pytest.mark.parametrize("role", STAFF_ROLES)
async def test_the_console_lets_each_role_do_what_rest_lets_it(api: Api, role: str) -> None:
    async with console_session(api, role) as (client, csrf):
        for action in ACTIONS:
            console = await client.post(
                f"/console/orders/{MISSING}/actions/{action.name}", data={"csrf": csrf, "reason": "r"}
            )
            assert console.status_code == (404 if role in action.roles else 403), (action.name, role)
            if action.rest is None:
                continue
            rest = await api.http.post(
                f"/v1/orders/{MISSING}/{action.rest}",
                json={"reason": "r"} | ({"amount": "0.01"} if action.name == "refund" else {}),
                headers=api.as_(role) | {"Idempotency-Key": "k"},
            )
            assert rest.status_code == console.status_code, (action.name, role, rest.text)


@pytest.mark.parametrize(
    ("key", "status", "words"),
    [
        ("customer", 403, "A customer key cannot sign in"),
        ("storefront", 403, "A storefront key cannot sign in"),
        (None, 401, "That key is not valid."),
    ],
)
async def test_keys_that_may_not_sign_in(api: Api, key: str | None, status: int, words: str) -> None:
    async with browserless(api) as client:
        form = await client.get("/console/sign-in")
        [token] = re.findall(r'name="csrf" value="([^"]+)"', form.text)
        sent = api.keys[key] if key else "bo_sup_0123456789ab.not-the-secret"
        answer = await client.post("/console/sign-in", data={"key": sent, "csrf": token})
        assert (answer.status_code, words in answer.text) == (status, True)
        assert "console_session" not in answer.cookies
        # Without the sign-in form's own token, even a good key is refused.
        client.cookies.clear()
        forged = await client.post("/console/sign-in", data={"key": api.keys["support"], "csrf": token})
        assert forged.status_code == 403
        assert (await client.get("/console/orders")).status_code == 303


async def test_a_console_action_is_audited_as_rest_audits_it(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    order_id = (await api.order()).json()["id"]
    async with console_session(api, "ops") as (client, csrf):
        with caplog.at_level(logging.INFO, logger="backoffice.audit"):
            answer = await client.post(
                f"/console/orders/{order_id}/actions/resume", data={"csrf": csrf, "reason": "not paused"}
            )
    assert answer.status_code == 409
    [line] = [json.loads(r.getMessage()) for r in caplog.records]
    assert line["message"] in answer.text
    assert {k: line[k] for k in ("action", "order_id", "reason", "via", "outcome")} == {
        "action": "resume",
        "order_id": order_id,
        "reason": "not paused",
        "via": "console",
        "outcome": "refused",
    }
    assert line["actor"].startswith("ops:key")


async def test_a_revoked_key_is_signed_out_at_once(api: Api) -> None:
    async with console_session(api, "support") as (client, _):
        assert (await client.get("/console/orders")).status_code == 200
        async with transaction(api.sessions) as session:
            [info] = [k for k in await keys.list_keys(session) if k.role == "support"]
            assert await keys.revoke_key(session, info.id)
        after = await client.get("/console/orders")
        assert (after.status_code, after.headers["location"]) == (303, "/console/sign-in")
