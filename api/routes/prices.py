"""Per-customer prices (admin): a customer's own rate for a service, or a discount off the catalog's rate.
Intake charges by it from the next order on (the charge is frozen on each order); API v2 `services` and a
customer key's GET /v1/services show it."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.auth import role
from api.deps import Session
from api.errors import ApiError
from api.price_schemas import PriceList, PriceOut, PriceSet
from api.schemas import Id, error_responses
from store import prices
from store.keys import Caller
from workflows import policy

router = APIRouter(prefix="/v1/customers", tags=["customers"])

audit = logging.getLogger("backoffice.audit")

Admin = Annotated[Caller, Depends(role("admin"))]


@router.get("/{customer_id}/prices", response_model=PriceList, responses=error_responses(401, 403, 404, 422))
async def list_prices(customer_id: Id, session: Session, caller: Admin) -> PriceList:
    """The customer's own prices, by service; a service not listed is charged at the catalog's rate."""
    async with session.begin():
        rows = await prices.prices_of(session, customer_id)
    return PriceList(prices=[PriceOut.of(p, s) for p, s in rows])


@router.put(
    "/{customer_id}/prices/{service_id}",
    response_model=PriceOut,
    responses=error_responses(401, 403, 404, 422),
)
async def set_price(
    customer_id: Id, service_id: Id, body: PriceSet, session: Session, caller: Admin
) -> PriceOut:
    """Set the customer's price for a service: `rate` (per 1000 units) or `discount_pct`, replacing any
    price set before. Orders placed from now on are charged by it; orders placed before keep their charge.
    Setting the same price again changes nothing but `set_by` and `updated_at`."""
    try:
        rate = None if body.rate is None else policy.parse_money(body.rate)
        discount = None if body.discount_pct is None else policy.parse_percent_bp(body.discount_pct)
    except ValueError as exc:  # a percentage above 100
        raise ApiError(422, "invalid_request", str(exc)) from exc
    refusal = policy.price_refusal(rate_micros=rate, discount_bp=discount)
    if refusal is not None:
        raise ApiError(422, *refusal)
    try:
        async with session.begin():
            price, service = await prices.set_price(
                session, customer_id, service_id, rate_micros=rate, discount_bp=discount, actor=caller.actor
            )
    except prices.ServiceNotFound as exc:
        raise ApiError(404, exc.code, str(exc)) from exc
    shown = PriceOut.of(price, service)
    detail = {"rate": shown.rate, "own_rate": shown.own_rate, "discount_pct": shown.discount_pct}
    _audit("price_set", caller, customer_id, service_id, **detail)
    return shown


@router.delete(
    "/{customer_id}/prices/{service_id}", status_code=204, responses=error_responses(401, 403, 404, 422)
)
async def remove_price(customer_id: Id, service_id: Id, session: Session, caller: Admin) -> Response:
    """Back to the catalog's rate for the customer's next orders (`price_not_found` if none was set)."""
    async with session.begin():
        removed = await prices.remove_price(session, customer_id, service_id)
    if not removed:
        raise ApiError(
            404, "price_not_found", f"customer {customer_id} has no price of its own for {service_id}"
        )
    _audit("price_removed", caller, customer_id, service_id)
    return Response(status_code=204)


def _audit(action: str, caller: Caller, customer_id: int, service_id: int, **detail: str | None) -> None:
    """One line on the audit log per change of price, like every staff action."""
    line = {"action": action, "actor": caller.actor, "customer_id": customer_id, "service_id": service_id}
    audit.info("%s", json.dumps(line | detail, sort_keys=True))
