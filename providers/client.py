"""An async client for upstream providers speaking API v2 (`api-v2.md`).

The one hard rule here is the classification of failures, because exactly-once submission depends on it:
a failed `add` (or `refill`) is either certainly not accepted (safe to retry: ProviderUnavailable; or final:
ProviderRejected, ProviderLinkFault) or possibly accepted (ProviderAmbiguous: never blindly re-sent).
Read-only calls and `cancel` are safe to repeat, so their transport failures are all ProviderUnavailable.

Answers are parsed tolerantly into typed results by `providers.answers` (HTML error pages and errors in HTTP
200 bodies are handled here); error texts are classified by `providers.errors`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import httpx

from providers.answers import (
    Balance,
    CancelResult,
    ProviderOrderStatus,
    ProviderRefillStatus,
    ProviderService,
    error_text,
    excerpt,
    id_text,
    keyed,
    parse_order_status,
    parse_refill_status,
    parse_service,
    truthy,
)
from providers.apiv2 import MAX_BATCH
from providers.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderLinkFault,
    ProviderRejected,
    ProviderUnavailable,
    error_for,
)

# The client's whole vocabulary, wherever it is defined: callers import it from here.
__all__ = [
    "ApiV2Client",
    "Balance",
    "CancelResult",
    "Limiter",
    "ProviderAmbiguous",
    "ProviderError",
    "ProviderLinkFault",
    "ProviderOrderStatus",
    "ProviderRefillStatus",
    "ProviderRejected",
    "ProviderService",
    "ProviderUnavailable",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Limiter(Protocol):
    """Something that paces requests (a token bucket shared by every call to one provider)."""

    async def acquire(self) -> None: ...


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
        connect_timeout: float = 5.0,
        limiter: Limiter | None = None,
    ) -> None:
        self._api_url = api_url
        self._api_key = api_key
        # Connecting is quick or never; a short connect timeout keeps "certainly not sent" failures fast.
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, connect_timeout))
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=self._timeout)
        self._limiter = limiter

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------------------------------ orders

    async def add(
        self,
        *,
        service: str,
        link: str,
        quantity: int | None,
        runs: int | None = None,
        interval: int | None = None,
        idempotency_key: str | None = None,
        comments: Sequence[str] = (),
        usernames: Sequence[str] = (),
        hashtags: Sequence[str] = (),
        keywords: Sequence[str] = (),
        hashtag: str | None = None,
        username: str | None = None,
        media: str | None = None,
        answer_number: int | None = None,
    ) -> str:
        """Place an order, return the provider's order id; ProviderAmbiguous when the outcome is unknown.

        Other service types' parameters go under the protocol's names, lists one item a line; `quantity` is
        None for the types that have none (a package; comments and custom lists count their lines).
        """
        params: dict[str, str] = {"service": str(service), "link": link}
        numbers = {"quantity": quantity, "runs": runs, "interval": interval, "answer_number": answer_number}
        params |= {name: str(value) for name, value in numbers.items() if value is not None}
        lists = {"comments": comments, "usernames": usernames, "hashtags": hashtags, "keywords": keywords}
        params |= {name: "\n".join(items) for name, items in lists.items() if items}
        words = {"hashtag": hashtag, "username": username, "media": media}
        params |= {name: value for name, value in words.items() if value is not None}
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        answer = await self._call("add", params, mutating=True)
        order = id_text(answer.get("order") if isinstance(answer, dict) else None)
        if order is None:
            raise ProviderAmbiguous(f"add answered without an order id: {excerpt(answer)}")
        return order

    async def status(self, order_id: str) -> ProviderOrderStatus:
        """One order's status (`order=`); a provider error raises the exception its text stands for."""
        answer = await self._call("status", {"order": str(order_id)})
        return parse_order_status(answer)

    async def statuses(self, order_ids: Sequence[str]) -> dict[str, ProviderOrderStatus | ProviderError]:
        """Many orders' statuses in one call (`orders=`, up to 100); a single id is asked with `order=`."""
        return await self._read_many(
            "status", order_ids, self.status, many="orders", field="order", parse=parse_order_status
        )

    async def cancel(self, order_ids: Sequence[str]) -> dict[str, CancelResult]:
        """Ask to cancel orders; each id maps to whether the provider took the request.

        Canceling twice is harmless, so transport failures are ProviderUnavailable (retry). A single id is
        sent as both `orders` and `order`, because providers read one or the other. A refusal of the whole
        call (`{"error": ...}`) is the answer for every id.
        """
        ids = _batch(order_ids)
        params = {"orders": ",".join(ids)}
        if len(ids) == 1:
            params["order"] = ids[0]
        try:
            answer = await self._call("cancel", params)
        except ProviderRejected as exc:
            return {order_id: CancelResult(False, exc.message) for order_id in ids}
        by_id = keyed(answer, "order")
        if by_id is None and isinstance(answer, dict) and len(ids) == 1:
            by_id = {ids[0]: answer}  # `{"cancel": 1}` for the single order asked about
        if by_id is None:
            raise ProviderUnavailable(f"cancel answered something else: {excerpt(answer)}")
        results: dict[str, CancelResult] = {}
        for order_id in ids:
            item = by_id.get(order_id)
            value = item.get("cancel", item.get("status")) if isinstance(item, dict) else None
            if isinstance(value, dict) and value.get("error"):
                results[order_id] = CancelResult(False, str(value["error"]))
            elif isinstance(item, dict) and item.get("error") and value is None:
                results[order_id] = CancelResult(False, str(item["error"]))
            elif truthy(value):
                results[order_id] = CancelResult(True, "")
            else:
                results[order_id] = CancelResult(False, f"no answer for this order: {excerpt(item)}")
        return results

    # ------------------------------------------------------------------------------------------ refills

    async def refill(self, order_id: str, *, idempotency_key: str | None = None) -> str:
        """Request a refill of a completed order, return the provider's refill id.

        Like `add` it changes something at the provider: an answer lost on the way is ProviderAmbiguous.
        """
        params = {"order": str(order_id)}
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        answer = await self._call("refill", params, mutating=True)
        refill = answer.get("refill") if isinstance(answer, dict) else None
        if isinstance(refill, dict) and refill.get("error"):
            raise error_for(str(refill["error"]))
        refill_id = id_text(refill)
        if refill_id is None:
            raise ProviderAmbiguous(f"refill answered without a refill id: {excerpt(answer)}")
        return refill_id

    async def refills(self, order_ids: Sequence[str]) -> dict[str, str | ProviderError]:
        """Refill many orders in one call (`orders=`): each id maps to a refill id or the provider's error."""
        ids = _batch(order_ids)
        answer = await self._call("refill", {"orders": ",".join(ids)}, mutating=True)
        by_id = keyed(answer, "order")
        if by_id is None:
            raise ProviderAmbiguous(f"refill answered no list of orders: {excerpt(answer)}")
        results: dict[str, str | ProviderError] = {}
        for order_id in ids:
            item = by_id.get(order_id)
            value = item.get("refill") if isinstance(item, dict) else None
            if isinstance(value, dict) and value.get("error"):
                results[order_id] = error_for(str(value["error"]))
            elif (refill_id := id_text(value)) is not None:
                results[order_id] = refill_id
            else:
                results[order_id] = ProviderAmbiguous(f"refill answered nothing for order {order_id}")
        return results

    async def refill_status(self, refill_id: str) -> ProviderRefillStatus:
        """One refill's status (`refill=`)."""
        answer = await self._call("refill_status", {"refill": str(refill_id)})
        return parse_refill_status(answer)

    async def refill_statuses(
        self, refill_ids: Sequence[str]
    ) -> dict[str, ProviderRefillStatus | ProviderError]:
        """Many refills' statuses (`refills=`, up to 100); a single id is asked with `refill=`."""
        return await self._read_many(
            "refill_status",
            refill_ids,
            self.refill_status,
            many="refills",
            field="refill",
            parse=parse_refill_status,
        )

    # ------------------------------------------------------------------------------------------ account

    async def services(self) -> list[ProviderService]:
        """The provider's service list; entries without a usable id, rate or bounds are skipped (logged)."""
        answer = await self._call("services", {})
        if isinstance(answer, dict) and isinstance(answer.get("services"), list):
            answer = answer["services"]
        if not isinstance(answer, list):
            raise ProviderUnavailable(f"services answered something else than a list: {excerpt(answer)}")
        found: list[ProviderService] = []
        for item in answer:
            service = parse_service(item)
            if service is None:
                log.warning("provider service skipped, unreadable: %s", excerpt(item))
            else:
                found.append(service)
        return found

    async def balance(self) -> Balance:
        """Our balance at the provider as (amount, currency), both as the provider printed them."""
        answer = await self._call("balance", {})
        if not isinstance(answer, dict) or answer.get("balance") is None:
            raise ProviderUnavailable(f"balance answered without a balance: {excerpt(answer)}")
        return Balance(str(answer["balance"]).strip(), str(answer.get("currency") or "").strip())

    # ------------------------------------------------------------------------------------------ transport

    async def _read_many(
        self,
        action: str,
        wanted: Sequence[str],
        read_one: Callable[[str], Awaitable[T]],
        *,
        many: str,
        field: str,
        parse: Callable[[Any], T],
    ) -> dict[str, T | ProviderError]:
        """A batch read (`status`, `refill_status`): each id maps to its parsed item or its own error.

        A single id is asked with `read_one`, which every provider understands. An id the answer leaves out
        maps to ProviderUnavailable (ask again); errors about the whole call raise.
        """
        ids = _batch(wanted)
        if len(ids) == 1:
            try:
                return {ids[0]: await read_one(ids[0])}
            except (ProviderRejected, ProviderAmbiguous) as exc:
                return {ids[0]: exc}
        answer = await self._call(action, {many: ",".join(ids)})
        by_id = keyed(answer, field)
        if by_id is None:
            raise ProviderUnavailable(f"{action} answered no map of {many}: {excerpt(answer)}")
        found: dict[str, T | ProviderError] = {}
        for item_id in ids:
            item = by_id.get(item_id)
            if item is None:
                found[item_id] = ProviderUnavailable(f"{action} answered nothing for {field} {item_id}")
                continue
            try:
                found[item_id] = parse(item)
            except ProviderError as exc:
                found[item_id] = exc
        return found

    async def _call(self, action: str, params: dict[str, str], *, mutating: bool = False) -> Any:
        """POST one action and return the decoded JSON; every failure becomes a ProviderError."""
        uncertain = ProviderAmbiguous if mutating else ProviderUnavailable
        form = {"key": self._api_key, "action": action, **params}
        if self._limiter is not None:
            await self._limiter.acquire()
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
        error = answer.get("error") if isinstance(answer, dict) else None
        # An error beside an order id (add) or a status is a note about it, not a refusal of the call.
        noted = isinstance(answer, dict) and (id_text(answer.get("order")) or answer.get("status"))
        if code < 500 and error not in (None, "") and not (noted and 200 <= code < 300):
            raise error_for(error_text(error))
        if code >= 500:
            raise uncertain(f"{action}: HTTP {code}")
        if not 200 <= code < 300:
            # Redirected or refused at the HTTP layer (wrong URL, firewall): not processed as an action.
            raise ProviderUnavailable(f"{action}: HTTP {code}")
        if answer is None:
            raise uncertain(f"{action}: answer is not JSON: {excerpt(response.text)}")
        return answer


# ---------------------------------------------------------------------------------------------- requests


def _batch(ids: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(str(i).strip() for i in ids))
    if not unique or len(unique) > MAX_BATCH or "" in unique:
        raise ValueError(f"between 1 and {MAX_BATCH} non-empty ids per call")
    return unique
