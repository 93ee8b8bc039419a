"""The SMM API v2 protocol (`api-v2.md`) as every side of the back office speaks it: the server at
`/api/v2`, the provider simulator, and the client to upstream providers.

What the protocol itself fixes lives here once: the standard error texts, how a call's parameters arrive
(GET query, POST form, multipart or JSON; the key also in `X-Api-Key` or as a Bearer token), how ids, id
lists and integers are read, how money is printed (numbers as strings, at most 5 decimals) and the shape of
each answer. What a side does with a call is its own business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:  # the client needs none of the server side; only the type is named here
    from starlette.requests import Request

MAX_BATCH = 100  # ids per `status`, `refill`, `refill_status` and `cancel` call
MAX_BODY = 64 * 1024
MAX_ID = 2**63 - 1
MICROS = 1_000_000  # money inside the back office is integer micro-units (design §6)
_INTEGER = re.compile(r"-?[0-9]{1,19}")  # ASCII digits: `\d` would take Arabic-Indic or full-width ones
_FIVE_DECIMALS = Decimal("0.00001")

# The standard error texts; clients compare them to the letter.
INCORRECT_REQUEST = "Incorrect request"
INVALID_KEY = "Invalid API key"
INCORRECT_SERVICE = "Incorrect service ID"
BAD_LINK = "Bad link"
NOT_ENOUGH_FUNDS = "Not enough funds on balance"
ACTIVE_ORDER = "You have active order with this link. Please wait until order being completed."
INCORRECT_ORDER = "Incorrect order ID"
REFILL_DISABLED = "Refill is disabled for this service"
NOT_COMPLETED = "The order is not completed"
REFILL_TOO_SOON = "The order was completed or refill was requested less than 24 hours ago"
REFILL_NOT_FOUND = "Refill not found"
CANNOT_CANCEL = "The order cannot be canceled"


def quantity_below(minimum: int) -> str:
    return f"Quantity less than minimal {minimum}"


def quantity_above(maximum: int) -> str:
    return f"Quantity more than maximum {maximum}"


class ProtocolError(Exception):
    """A refused call, answered as HTTP 200 `{"error": text}`: clients read the body, not the status."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def error(text: str) -> dict[str, str]:
    """One id's refusal inside a batch answer (and the whole answer of a refused call)."""
    return {"error": text}


def is_error(result: object) -> bool:
    return isinstance(result, dict) and set(result) == {"error"}


# ---------------------------------------------------------------------------------------------- requests


async def read_parameters(request: Request) -> dict[str, Any]:
    """Query parameters, overlaid by a POST body's, however the client sent it: urlencoded or multipart
    form, or JSON (by content type, or a body that looks like an object; its values keep their JSON type)."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method != "POST":
        return params
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ProtocolError(INCORRECT_REQUEST)
    if not body.strip():
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as exc:  # a malformed multipart body is the client's mistake, not ours
            raise ProtocolError(INCORRECT_REQUEST) from exc
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params
    text = body.decode("utf-8", errors="replace")
    if content_type == "application/json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        # A body nested thousands of levels deep exhausts the parser's recursion: a bad request too, never
        # "try again later".
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(INCORRECT_REQUEST) from exc
        if not isinstance(data, dict):
            raise ProtocolError(INCORRECT_REQUEST)
        params.update(data)
        return params
    params.update(dict(parse_qsl(text, keep_blank_values=True)))
    return params


def api_key(request: Request, params: dict[str, Any]) -> str | None:
    """The caller's key: the `key` parameter, else `X-Api-Key`, else a Bearer token."""
    key = scalar(params.get("key")) or request.headers.get("x-api-key")
    if not key:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = value.strip()
    return key or None


def scalar(value: Any) -> str | None:
    """One parameter value as text; JSON numbers and booleans are taken as their text, lists and objects
    are not one value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return str(value).strip()
    return None


def integer(value: Any, *, low: int = 1, high: int = MAX_ID) -> int | None:
    """A whole number in [low, high] (by default an id), or None."""
    text = scalar(value)
    if text is None or not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if low <= number <= high else None


# The parameters that name a call's ids: one id, or up to MAX_BATCH of them comma-separated (or a JSON list).
ID_PARAMETERS = {
    "status": ("order", "orders"),
    "refill": ("order", "orders"),
    "refill_status": ("refill", "refills"),
    "cancel": ("order", "orders"),
}


def ids(params: dict[str, Any], action: str) -> tuple[list[str], bool] | None:
    """The ids a call names, as raw texts, and whether it was a batch; None when it names none."""
    one, many = ID_PARAMETERS[action]
    raw = params.get(many)
    if raw is not None:
        items = raw if isinstance(raw, list) else str(raw).split(",")
        texts = [t for t in (scalar(i) for i in items) if t]
        if not texts or len(texts) > MAX_BATCH:
            raise ProtocolError(INCORRECT_REQUEST)
        return texts, True
    single = scalar(params.get(one))
    if single:
        return [single], False
    return None


def id_out(text: str) -> int | str:
    """An id echoed in a batch answer: a number as an int, anything else as it was sent."""
    number = integer(text)
    return number if number is not None else text


# ---------------------------------------------------------------------------------------------- money


def money(amount: Decimal, rounding: str = ROUND_HALF_UP, *, places: int = 2) -> str:
    """An amount as API v2 prints money: rounded to 5 decimals, trailing zeros dropped down to `places`
    ("0.90", "0.27819"; `places=5` keeps them all, "0.13500", as many providers print)."""
    whole, _, frac = f"{amount.quantize(_FIVE_DECIMALS, rounding=rounding):f}".partition(".")
    return f"{whole}.{frac.rstrip('0'):0<{places}}"


def money_from_micros(micros: int, rounding: str = ROUND_HALF_UP) -> str:
    return money(Decimal(micros) / MICROS, rounding)


def micros_from_money(text: str | None) -> int | None:
    """A money text a provider printed ("0.27819") in micro-units, rounded half up; None when there is none
    or it is not a non-negative amount."""
    if not text:
        return None
    try:
        value = Decimal(text) * MICROS
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


# ---------------------------------------------------------------------------------------------- answers


def service_answer(
    *,
    service: int,
    name: str,
    kind: str,
    category: str,
    rate: str,
    minimum: int,
    maximum: int,
    refill: bool,
    cancel: bool,
    dripfeed: bool,
) -> dict[str, Any]:
    """One entry of `services`: the id a number, the bounds as strings."""
    return {
        "service": service,
        "name": name,
        "type": kind,
        "category": category,
        "rate": rate,
        "min": str(minimum),
        "max": str(maximum),
        "refill": refill,
        "cancel": cancel,
        "dripfeed": dripfeed,
    }


def status_answer(
    *, charge: str, start_count: int, status: str, remains: int, currency: str
) -> dict[str, Any]:
    """One order's `status`, every number as a string."""
    return {
        "charge": charge,
        "start_count": str(start_count),
        "status": status,
        "remains": str(remains),
        "currency": currency,
    }


def balance_answer(balance: str, currency: str) -> dict[str, str]:
    return {"balance": balance, "currency": currency}


# Batch answers are lists with each id echoed beside its result, except `status`, an object keyed by the ids
# as sent.
_LISTED = {
    "refill": ("order", "refill"),
    "refill_status": ("refill", "status"),
    "cancel": ("order", "cancel"),
}


def answer(action: str, results: Sequence[tuple[str, Any]], *, batch: bool) -> Any:
    """The answer to a call about one id or many, from (id as sent, its result or `error(...)`) pairs.

    A single call answers its result alone, or its error as the whole answer; `cancel` always answers in the
    batch shape, which clients that send `order` read too.
    """
    if batch or action == "cancel":
        if action == "status":
            return dict(results)
        echo, field = _LISTED[action]
        return [{echo: id_out(text), field: result} for text, result in results]
    [(_, result)] = results
    if is_error(result):
        raise ProtocolError(result["error"])
    if action == "status":
        return result
    return {"refill": str(result)} if action == "refill" else {"status": result}
