"""The service catalog as customers see it: terms and prices, never the providers behind them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth import current_caller
from api.deps import Session
from api.schemas import ServiceList, ServiceOut, error_responses
from store import prices
from store.catalog import public_services
from store.keys import Caller
from workflows.policy import format_money

router = APIRouter(prefix="/v1/services", tags=["catalog"])


@router.get("", response_model=ServiceList, responses=error_responses(401))
async def list_services(session: Session, caller: Annotated[Caller, Depends(current_caller)]) -> ServiceList:
    """Every active service with its price and policy terms; `available` is false while no provider can
    deliver it (an order would be refused with `service_unavailable`). A customer key sees its own `rate`
    where an admin set one (what its orders are charged by)."""
    listed = await public_services(session)
    shown = [ServiceOut.of(s, ok) for s, ok in listed]
    if caller.customer_id is not None:
        rates = await prices.rates_for(session, caller.customer_id, [s for s, _ in listed])
        for out in shown:
            out.rate = format_money(rates[out.id])
    return ServiceList(services=shown)
