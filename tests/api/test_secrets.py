"""Secrets stay secret: no full API key in the logs of a real `backoffice api` process (its access log
prints the query of `GET /api/v2?key=...`), customers see roles where staff see key ids, and guessing keys
is slowed down without locking out a valid key."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from ops_support import temporal_address, wait_for_order
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from backoffice.logs import redact_secrets
from backoffice.sockets import listen, port_of
from store import keys
from store.db import transaction
from support import Api, open_shop

ROOT = Path(__file__).resolve().parents[2]


def test_redaction_keeps_the_lookup_and_drops_the_secret() -> None:
    key = "bo_cus_0a1b2c3d4e5f.AbC-dEf_1234567890123456789012"
    assert redact_secrets(f"GET /api/v2?key={key}&action=balance") == (
        "GET /api/v2?key=bo_cus_0a1b2c3d4e5f.<redacted>&action=balance"
    )
    assert redact_secrets("GET /api/v2?action=status&key=hunter2&order=1") == (
        "GET /api/v2?action=status&key=<redacted>&order=1"
    )
    assert redact_secrets(f'{{"authorization": "Bearer {key}"}}') == (
        '{"authorization": "Bearer bo_cus_0a1b2c3d4e5f.<redacted>"}'
    )
    assert redact_secrets("idempotency_key=abc") == "idempotency_key=abc"  # not a key


async def test_the_api_process_never_logs_a_full_key(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    shop = await open_shop(sessions)
    async with transaction(sessions) as session:
        key = await keys.create_key(session, "customer", customer_id=shop.customer_id)
        support = await keys.create_key(session, "support")
    secret = key.split(".", 1)[1]
    wrong = f"{key.split('.')[0]}.{secrets.token_urlsafe(24)}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")} | {
        "DATABASE_URL": db_url,
        "TEMPORAL_ADDRESS": temporal_address(dev_server),
        "TEMPORAL_NAMESPACE": dev_server.client.namespace,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log, listen("127.0.0.1", 0) as sock:
        # As `backoffice dev` starts it (`python -m backoffice.cli api --fd N`, on a socket bound here):
        # uvicorn logs through the JSON log.
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "backoffice.cli", "api", "--fd", str(sock.fileno())],
            pass_fds=(sock.fileno(),),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port_of(sock)}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                await _until_up(http, proc, log_path)
                balance = await http.get(f"/api/v2?key={key}&action=balance")
                assert balance.json() == {"balance": "100.00", "currency": "USD"}
                assert (await http.get(f"/api/v2?key={wrong}&action=balance")).json() == {
                    "error": "Invalid API key"
                }
                assert (await http.post("/api/v2", data={"key": key, "action": "nope"})).status_code == 200
                refused = await http.get("/v1/orders", headers={"Authorization": f"Bearer {wrong}"})
                assert refused.status_code == 401
                ok = await http.get("/v1/orders", headers={"Authorization": f"Bearer {support}"})
                assert ok.status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 30)
    written = log_path.read_text()
    lines = [json.loads(line) for line in written.splitlines() if line.startswith("{")]
    access = [line["message"] for line in lines if line.get("logger") == "uvicorn.access"]
    lookup = key.split(".")[0]
    assert any(f"/api/v2?key={lookup}.<redacted>&action=balance" in m for m in access), access
    for leaked in (secret, wrong.split(".")[1], support.split(".")[1]):
        assert leaked not in written


async def _until_up(http: httpx.AsyncClient, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the API did not start:\n{log_path.read_text()[-3000:]}")
        await asyncio.sleep(0.2)


async def test_a_customer_reads_roles_in_its_statement_where_staff_read_key_ids(api: Api) -> None:
    order_id = (await api.order(key="statement")).json()["id"]
    await wait_for_order(api.sessions, order_id, phase="delivering")
    refunded = await api.http.post(
        f"/v1/orders/{order_id}/refunds",
        json={"amount": "0.01", "reason": "goodwill"},
        headers=api.as_("support") | {"Idempotency-Key": "goodwill-1"},
    )
    assert refunded.status_code == 201, refunded.text
    path = f"/v1/customers/{api.customer_id}/statement"
    own = (await api.http.get(path, headers=api.as_("customer"))).json()["entries"]
    staff = (await api.http.get(path, headers=api.as_("support"))).json()["entries"]
    assert [(e["kind"], e["actor"]) for e in own] == [("refund", "support"), ("charge", "storefront"),
                                                     ("deposit", "test")]  # fmt: skip
    assert [e["actor"].split(":")[0] for e in staff] == ["support", "storefront", "test"]
    assert staff[0]["actor"].startswith("support:key")
    assert staff[1]["actor"].startswith("storefront:key")


async def test_guessing_keys_is_throttled_and_a_valid_key_still_works(api: Api) -> None:
    def guess() -> str:
        return f"bo_cus_{secrets.token_hex(6)}.{secrets.token_urlsafe(24)}"

    rest = [await api.http.get("/v1/orders", headers={"X-Api-Key": guess()}) for _ in range(1000)]
    statuses = [r.status_code for r in rest]
    assert statuses[:20] == [401] * 20  # the burst: told plainly the key is wrong
    assert statuses.count(429) >= 970, {s: statuses.count(s) for s in set(statuses)}
    slowed = next(r for r in rest if r.status_code == 429)
    assert slowed.json()["code"] == "too_many_failures"
    assert int(slowed.headers["Retry-After"]) >= 1
    # The same client, with its valid key: let in at once.
    assert (await api.http.get("/v1/orders", headers=api.as_("customer"))).status_code == 200

    v2 = [await api.http.post("/api/v2", data={"key": guess(), "action": "balance"}) for _ in range(1000)]
    # Still slowed: a failure gets through now and then as the bucket refills (one every 2 s).
    assert sum(r.status_code == 429 for r in v2) >= 970
    assert v2[-1].json() == {"error": "Invalid API key"}
    assert int(v2[-1].headers["Retry-After"]) >= 1
    valid = await api.http.post("/api/v2", data={"key": api.keys["customer"], "action": "balance"})
    assert (valid.status_code, valid.json()) == (200, {"balance": "1.00", "currency": "USD"})
