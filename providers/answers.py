"""Provider answers read tolerantly into typed results: numbers as strings or ints, ids as `23501`,
`"23501"` or `23501.0`, extra or missing fields, batch answers as lists or as objects keyed by id, errors
beside or instead of the result. What cannot be read raises the ProviderError it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from providers.apiv2 import micros_from_money
from providers.errors import ProviderUnavailable, error_for, link_fault_text
from providers.status import normalise_order_status, normalise_refill_status, parse_int
from workflows.models import RefillStatus, Status


@dataclass(frozen=True)
class ProviderOrderStatus:
    """One order's status at the provider; `status` is canonical, `raw_status` is what the provider said.

    `remains` keeps its sign (negative: over-delivery). `reason` is a provider's explanation beside the
    status (`reason`, `error`, `comment`, ...); `link_fault` is set when the reason or the raw status says the
    link was the problem (private, deleted, renamed, invalid).
    """

    status: Status | None  # None: a status we do not recognise (the raw text is kept)
    raw_status: str
    remains: int | None
    start_count: int | None
    charge: str | None
    currency: str | None = None
    reason: str | None = None
    link_fault: str | None = None

    def charge_micros(self) -> int | None:
        """The provider's `charge` (what this order costs the panel) in micro-units; None when it sends
        none or something that is not a non-negative amount."""
        return micros_from_money(self.charge)


@dataclass(frozen=True)
class ProviderRefillStatus:
    status: RefillStatus | None  # None: unrecognised
    raw_status: str


@dataclass(frozen=True)
class CancelResult:
    accepted: bool
    message: str  # the provider's error text when refused


@dataclass(frozen=True)
class ProviderService:
    """One entry of the provider's `services` list; `rate` per 1000 units in the provider's currency."""

    service: str
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool


class Balance(NamedTuple):
    amount: str
    currency: str


# Fields in which providers explain a status (a cancel because of the link, mostly).
_REASON_FIELDS = ("reason", "error", "cancel_reason", "comment", "message", "note", "description")


def error_text(error: object) -> str:
    if isinstance(error, dict):  # {"error": {"message": "..."}}
        return str(error.get("message") or error.get("text") or error)
    return str(error).strip()


def id_text(value: object) -> str | None:
    """An id as providers print it (`23501`, `"23501"`, `23501.0`), as text; None when absent or odd."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and value > 0 else None
    text = str(value).strip()
    return text or None


def truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "ok", "yes", "success", "canceled", "cancelled"}
    return False


def keyed(answer: Any, id_field: str) -> dict[str, Any] | None:
    """A batch answer as id -> item: `{"1": {...}}` or `[{"order": 1, ...}]`; None when it is neither."""
    if isinstance(answer, list):
        keyed: dict[str, Any] = {}
        for item in answer:
            if isinstance(item, dict) and (key := id_text(item.get(id_field, item.get("id")))) is not None:
                keyed[key] = item
        return keyed
    if isinstance(answer, dict) and answer and all(isinstance(v, dict) for v in answer.values()):
        return {str(key).strip(): value for key, value in answer.items()}
    return None


def _reason(answer: dict[str, Any]) -> str | None:
    for name in _REASON_FIELDS:
        value = answer.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse_order_status(answer: Any) -> ProviderOrderStatus:
    if not isinstance(answer, dict):
        raise ProviderUnavailable(f"status answered something else: {excerpt(answer)}")
    if answer.get("status") in (None, ""):
        if answer.get("error"):
            raise error_for(error_text(answer["error"]))
        raise ProviderUnavailable(f"status answered without a status: {excerpt(answer)}")
    raw = str(answer["status"]).strip()
    charge, currency = answer.get("charge"), answer.get("currency")
    reason = _reason(answer)
    return ProviderOrderStatus(
        status=normalise_order_status(raw),
        raw_status=raw,
        remains=parse_int(answer.get("remains")),
        start_count=parse_int(answer.get("start_count")),
        charge=None if charge is None else str(charge).strip(),
        currency=None if currency is None else str(currency).strip(),
        reason=reason,
        link_fault=link_fault_text(reason, raw),
    )


def parse_refill_status(answer: Any) -> ProviderRefillStatus:
    status = answer.get("status") if isinstance(answer, dict) else None
    if isinstance(status, dict) and status.get("error"):
        raise error_for(error_text(status["error"]))
    if status in (None, "") or isinstance(status, dict | list):
        raise ProviderUnavailable(f"refill_status answered without a status: {excerpt(answer)}")
    raw = str(status).strip()
    return ProviderRefillStatus(normalise_refill_status(raw), raw)


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def parse_service(item: object) -> ProviderService | None:
    if not isinstance(item, dict):
        return None
    service_id = id_text(item.get("service", item.get("id")))
    low, high = parse_int(item.get("min")), parse_int(item.get("max"))
    try:
        rate = Decimal(str(item.get("rate")).strip())
    except InvalidOperation:
        return None
    if service_id is None or low is None or high is None or not rate.is_finite() or rate < 0:
        return None
    return ProviderService(
        service=service_id,
        name=str(item.get("name") or f"Service {service_id}").strip(),
        type=str(item.get("type") or "Default").strip(),
        category=str(item.get("category") or "Other").strip(),
        rate=rate,
        min=max(low, 1),
        max=max(high, max(low, 1)),
        refill=_flag(item.get("refill")),
        cancel=_flag(item.get("cancel")),
        dripfeed=_flag(item.get("dripfeed")),
    )


def excerpt(value: object, limit: int = 200) -> str:
    """A bounded piece of an odd answer for the error message, so logs stay readable."""
    text = value if isinstance(value, str) else repr(value)
    return text[:limit]
