"""An async client for upstream providers speaking API v2 (`api-v2.md`).

The one hard rule here is the classification of failures, because the workflow's exactly-once submission
depends on it: a failed `add` is either certainly not accepted (safe to retry: ProviderRejected,
ProviderUnavailable) or possibly accepted (ProviderAmbiguous: never blindly re-sent). Read-only calls are
always safe to retry, so their transport failures are all ProviderUnavailable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from providers.status import normalise_order_status, parse_int


class ProviderRejected(Exception):
    """The provider answered `{"error": ...}`: the request was understood and definitely not accepted."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderUnavailable(Exception):
    """No usable answer, and retrying is safe: the request never reached the provider or changes nothing."""


class ProviderAmbiguous(Exception):
    """An `add` may have reached the provider but no usable answer came back; re-sending could order twice."""


@dataclass(frozen=True)
class ProviderOrderStatus:
    """One order's status at the provider; `status` is canonical, `raw_status` is what the provider said."""

    status: str
    raw_status: str
    remains: int | None
    start_count: int | None
    charge: str | None


# Failures that happen before a single byte of the request can have been processed by the provider.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class ApiV2Client:
    """One provider's API v2 endpoint. Pass `http` to share a client (it is then not closed here)."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._api_url = api_url
        self._api_key = api_key
        # Connecting is quick or never; a short connect timeout keeps "certainly not sent" failures fast.
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=self._timeout)

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def add(
        self,
        *,
        service: str,
        link: str,
        quantity: int,
        runs: int | None = None,
        interval: int | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Place an order, return the provider's order id; ProviderAmbiguous when the outcome is unknown."""
        params: dict[str, str] = {"service": str(service), "link": link, "quantity": str(quantity)}
        if runs is not None:
            params["runs"] = str(runs)
        if interval is not None:
            params["interval"] = str(interval)
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        answer = await self._call("add", params, mutating=True)
        order = answer.get("order") if isinstance(answer, dict) else None
        if order is None or isinstance(order, bool) or str(order).strip() == "":
            raise ProviderAmbiguous(f"add answered without an order id: {_excerpt(answer)}")
        return str(order).strip()

    async def status(self, order_id: str) -> ProviderOrderStatus:
        """One order's status; `remains` and `start_count` as ints, None when the provider omits them."""
        answer = await self._call("status", {"order": str(order_id)})
        if not isinstance(answer, dict) or "status" not in answer:
            raise ProviderUnavailable(f"status answered without a status: {_excerpt(answer)}")
        raw = "" if answer["status"] is None else str(answer["status"])
        charge = answer.get("charge")
        return ProviderOrderStatus(
            status=normalise_order_status(raw),
            raw_status=raw,
            remains=parse_int(answer.get("remains")),
            start_count=parse_int(answer.get("start_count")),
            charge=None if charge is None else str(charge),
        )

    async def services(self) -> list[dict[str, Any]]:
        """The provider's service list as it answered it."""
        answer = await self._call("services", {})
        if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
            raise ProviderUnavailable(f"services answered something else than a list: {_excerpt(answer)}")
        return answer

    async def balance(self) -> tuple[str, str]:
        """Our balance at the provider as (amount, currency), both as the provider printed them."""
        answer = await self._call("balance", {})
        if not isinstance(answer, dict) or answer.get("balance") is None:
            raise ProviderUnavailable(f"balance answered without a balance: {_excerpt(answer)}")
        return str(answer["balance"]), str(answer.get("currency") or "")

    async def _call(self, action: str, params: dict[str, str], *, mutating: bool = False) -> Any:
        """POST one action and return the decoded JSON; every failure becomes one of the three exceptions."""
        uncertain = ProviderAmbiguous if mutating else ProviderUnavailable
        form = {"key": self._api_key, "action": action, **params}
        try:
            response = await self._http.post(self._api_url, data=form, timeout=self._timeout)
        except _NOT_SENT as exc:
            raise ProviderUnavailable(f"{action}: could not connect: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            # Read/write timeouts, dropped connections, protocol errors: the request may have been processed.
            raise uncertain(f"{action}: no answer: {type(exc).__name__} {exc}".rstrip()) from exc

        code = response.status_code
        try:
            answer = json.loads(response.content)
        except ValueError:
            answer = None
        if code == 429:
            raise ProviderUnavailable(f"{action}: HTTP 429 rate limited")
        if code < 500 and isinstance(answer, dict) and answer.get("error") not in (None, ""):
            raise ProviderRejected(str(answer["error"]))
        if code >= 500:
            raise uncertain(f"{action}: HTTP {code}")
        if not 200 <= code < 300:
            # Redirected or refused at the HTTP layer (wrong URL, firewall): not processed as an action.
            raise ProviderUnavailable(f"{action}: HTTP {code}")
        if answer is None:
            raise uncertain(f"{action}: answer is not JSON: {_excerpt(response.text)}")
        return answer


def _excerpt(value: object, limit: int = 200) -> str:
    """A bounded piece of an odd answer for the error message, so logs stay readable."""
    text = value if isinstance(value, str) else repr(value)
    return text[:limit]
