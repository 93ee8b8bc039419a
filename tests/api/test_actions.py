"""Order actions over REST: what is refused before the order is asked, the provider-wide pause, the audit
log, and API keys revoked at once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import Api

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("pause", {}, {}),  # a reason is required
        ("pause", {"reason": ""}, {}),
        ("pause", {"reason": "x" * 501}, {}),
        ("pause", {"reason": "r", "surprise": 1}, {}),
        ("link-fault", {"reason": "   "}, {}),
        ("refunds", {"reason": "r"}, {"Idempotency-Key": "k"}),  # neither amount nor units
        ("refunds", {"reason": "r", "amount": "1", "units": 1}, {"Idempotency-Key": "k"}),
        ("refunds", {"reason": "r", "amount": "0"}, {"Idempotency-Key": "k"}),
        ("refunds", {"reason": "r", "amount": "1.0000001"}, {"Idempotency-Key": "k"}),
        ("refunds", {"reason": "r", "units": 0}, {"Idempotency-Key": "k"}),
        ("refunds", {"reason": "r", "units": 1}, {}),  # no Idempotency-Key
        ("cancel", {"reason": "x" * 501}, {}),
        ("cancel", {"why": "r"}, {}),
    ],
)
async def test_bad_action_requests_are_refused_before_the_order_is_asked(
    api: Api, path: str, body: dict[str, object], headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    order_id = (await api.order()).json()["id"]
    with caplog.at_level(logging.INFO, logger="backoffice.audit"):
        response = await api.http.post(
            f"/v1/orders/{order_id}/{path}", json=body, headers=api.as_("admin") | headers
        )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), response.text
    assert not caplog.records  # the order was never asked


async def test_a_refused_action_is_answered_409_and_audited(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    order_id = (await api.order()).json()["id"]
    with caplog.at_level(logging.INFO, logger="backoffice.audit"):
        response = await api.http.post(
            f"/v1/orders/{order_id}/resume", json={"reason": "not paused at all"}, headers=api.as_("ops")
        )
    assert response.status_code == 409, response.text
    code = response.json()["code"]
    [line] = [json.loads(r.getMessage()) for r in caplog.records]
    assert line == {
        "event": "order_action",
        "action": "resume",
        "order_id": order_id,
        "actor": line["actor"],
        "reason": "not paused at all",
        "via": "rest",
        "outcome": "refused",
        "code": code,
        "message": response.json()["message"],
    }
    assert line["actor"].startswith("ops:key")


async def test_a_provider_pause_reaches_its_orders_and_counts_the_answers(api: Api) -> None:
    ids = [(await api.order(key=f"p{n}")).json()["id"] for n in range(3)]
    alpha = api.providers["alpha"]
    response = await api.http.post(
        f"/v1/providers/{alpha}/pause", json={"reason": "provider outage"}, headers=api.as_("ops")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # Which orders the read model already shows at alpha depends on how far their workflows got; every one
    # of them was asked, and each answer is counted.
    assert body["provider_id"] == alpha
    assert body["action"] == "pause"
    assert body["accepted"] + body["refused"] == body["orders"] <= len(ids)
    assert {r["order_id"] for r in body["refusals"]} <= set(ids)
    missing = await api.http.post("/v1/providers/999999/pause", json={"reason": "r"}, headers=api.as_("ops"))
    assert (missing.status_code, missing.json()["code"]) == (404, "provider_not_found")


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "DATA_DIR": "/nonexistent"}
    return subprocess.run([str(BIN / "backoffice"), "keys", *args], env=env, capture_output=True, text=True)


async def test_keys_are_created_listed_and_revoked_at_once(api: Api, db_url: str) -> None:
    made = _cli(
        db_url, "create", "--role", "customer", "--customer", str(api.customer_id), "--name", "reseller"
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("bo_cus_")
    assert (await api.http.get("/v1/orders", headers={"X-Api-Key": key})).status_code == 200

    listed = _cli(db_url, "list")
    [row] = [line for line in listed.stdout.splitlines() if "reseller" in line]
    key_id = row.split()[0]
    assert key.split(".")[0] in row
    assert key.split(".")[1] not in row

    assert _cli(db_url, "revoke", key_id).returncode == 0
    refused = await api.http.get("/v1/orders", headers={"X-Api-Key": key})
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    v2 = await api.http.post("/api/v2", data={"key": key, "action": "balance"})
    assert v2.json() == {"error": "Invalid API key"}
    assert _cli(db_url, "revoke", key_id).returncode == 1  # already revoked
    assert "reseller" not in _cli(db_url, "list").stdout
    assert "reseller" in _cli(db_url, "list", "--all").stdout
    bad = _cli(db_url, "create", "--role", "customer", "--name", "no customer")
    assert bad.returncode == 2
    assert "customer id" in bad.stderr
