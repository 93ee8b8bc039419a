"""An action the order does not answer in time gets 504 `action_pending` (API v2: a text that says to look
before sending it again), still takes effect, and every outcome of every action is exactly one audit line:
accepted, refused, timed out, failed, Temporal unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import httpx
import pytest
from ops_support import temporal_address, wait_for_order
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from backoffice import messaging
from support import Api

PENDING = "Request pending: it may still take effect, check the order status before sending it again"


def _slow(api: Api, provider_seconds: float, deadline: float) -> None:
    """The provider takes `provider_seconds` to answer a cancel; the API waits `deadline` for the order."""
    assert api.provider is not None
    api.provider.cancel_seconds = provider_seconds
    app = api.http._transport.app  # type: ignore[attr-defined]
    app.state.settings = app.state.settings.model_copy(update={"action_timeout_seconds": deadline})


async def _delivering(api: Api, key: str) -> int:
    order_id = int((await api.order(key=key)).json()["id"])
    await wait_for_order(api.sessions, order_id, phase="delivering")  # its run is at the provider
    return order_id


async def test_a_slow_answer_is_action_pending_audited_once_and_still_takes_effect(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    order_id = await _delivering(api, "slow-rest")
    _slow(api, provider_seconds=2.0, deadline=0.3)
    with caplog.at_level(logging.INFO, logger="backoffice.audit"):
        response = await api.http.post(
            f"/v1/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=api.as_("storefront")
        )
        assert response.status_code == 504, response.text
        assert response.json() == {
            "code": "action_pending",
            "message": f"order {order_id} did not answer within 0.3 s; the action may still take effect: "
            "read the order before sending it again",
        }
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "backoffice.audit"]
    assert [(a["action"], a["order_id"], a["outcome"], a["code"], a["via"]) for a in lines] == [
        ("cancel", order_id, "timeout", "action_pending", "rest")
    ]
    # The provider answers after all and the order cancels: the 504 told the truth.
    order = await wait_for_order(api.sessions, order_id, status="Canceled", phase="closed")
    assert order.refunded_micros == order.charge_micros


async def test_api_v2_says_pending_not_try_again(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    order_id = await _delivering(api, "slow-v2")
    _slow(api, provider_seconds=2.0, deadline=0.3)
    with caplog.at_level(logging.INFO, logger="backoffice.audit"):
        response = await api.http.post(
            "/api/v2", data={"key": api.keys["customer"], "action": "cancel", "orders": str(order_id)}
        )
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "backoffice.audit"]
    assert response.status_code == 200
    assert response.json() == [{"order": order_id, "cancel": {"error": PENDING}}]
    assert "try again" not in PENDING
    assert [(a["outcome"], a["code"], a["via"]) for a in lines] == [("timeout", "action_pending", "api_v2")]
    await wait_for_order(api.sessions, order_id, status="Canceled", phase="closed")


async def test_every_other_outcome_is_one_audit_line(
    api: Api,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
) -> None:
    order_id = await _delivering(api, "outcomes")
    ops = api.as_("ops")

    app = api.http._transport.app  # type: ignore[attr-defined]
    # As a real server would: an unhandled error is answered 500, not raised into the client.
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://api"
    )

    async def send(path: str) -> tuple[int, list[tuple[object, ...]]]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="backoffice.audit"):
            response = await http.post(f"/v1/orders/{order_id}/{path}", json={"reason": "r"}, headers=ops)
            lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "backoffice.audit"]
        return response.status_code, [(a["action"], a["outcome"], a.get("code")) for a in lines]

    assert await send("pause") == (200, [("pause", "accepted", None)])
    assert await send("pause") == (409, [("pause", "refused", "cannot_pause")])

    async def broken(*_: object, **__: object) -> None:  # a bug in our own code, after the order was found
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(messaging, "send_order_update", broken)
        assert await send("resume") == (500, [("resume", "failed", "internal_error")])

    # Temporal unreachable: an app whose client reaches the server through a link that is then cut.
    link = await _Link.to(temporal_address(dev_server))
    client = await Client.connect(f"127.0.0.1:{link.port}", namespace=dev_server.client.namespace)
    cut_off = create_app(app.state.settings, temporal=client)
    async with (
        cut_off.router.lifespan_context(cut_off),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=cut_off), base_url="http://api") as down,
    ):
        link.cut()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="backoffice.audit"):
            response = await down.post(f"/v1/orders/{order_id}/resume", json={"reason": "r"}, headers=ops)
            lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "backoffice.audit"]
    assert (response.status_code, response.json()["code"]) == (503, "workflow_unavailable")
    assert [(a["outcome"], a["code"]) for a in lines] == [("failed", "workflow_unavailable")]
    assert await send("resume") == (200, [("resume", "accepted", None)])
    await http.aclose()


class _Link:
    """A TCP link to a server that can be cut: the server seems to vanish from the network."""

    def __init__(self, server: asyncio.Server, target: tuple[str, int]) -> None:
        self.server, self.target = server, target
        self.port = server.sockets[0].getsockname()[1]
        self.open: set[asyncio.StreamWriter] = set()

    @classmethod
    async def to(cls, address: str) -> _Link:
        host, port = address.rsplit(":", 1)
        link: _Link | None = None

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert link is not None
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            link.open |= {writer, up_writer}

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(Exception):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        link = cls(server, (host, int(port)))
        return link

    def cut(self) -> None:
        self.server.close()
        for writer in self.open:
            writer.transport.abort()
