"""Shapes of per-customer prices (/v1/customers/{id}/prices): what an admin sets and what is listed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas import Money, Strict
from store.models import CustomerPrice, Service
from store.prices import rate_of
from workflows import policy

Percent = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,2})?$")]


class PriceSet(Strict):
    """Exactly one of the two."""

    rate: Money | None = Field(default=None, description="the customer's own price per 1000 units")
    discount_pct: Percent | None = Field(
        default=None, description="percent off the catalog's rate (more than 0, at most 100, 2 decimals)"
    )


class PriceOut(BaseModel):
    customer_id: int
    service_id: int
    service_name: str
    catalog_rate: str = Field(description="the catalog's price per 1000 units")
    rate: str = Field(description="what this customer pays per 1000 units (what intake charges by)")
    own_rate: str | None = Field(description="the rate set for this customer, if set as a rate")
    discount_pct: str | None = Field(description="the discount set for this customer, if set as one")
    set_by: str
    updated_at: datetime

    @classmethod
    def of(cls, price: CustomerPrice, service: Service) -> PriceOut:
        return cls(
            customer_id=price.customer_id,
            service_id=service.id,
            service_name=service.name,
            catalog_rate=policy.format_money(service.rate_micros),
            rate=policy.format_money(rate_of(service, price)),
            own_rate=None if price.rate_micros is None else policy.format_money(price.rate_micros),
            discount_pct=None
            if price.discount_bp is None
            else str((Decimal(price.discount_bp) / 100).normalize()),
            set_by=price.set_by,
            updated_at=price.updated_at,
        )


class PriceList(BaseModel):
    prices: list[PriceOut]
