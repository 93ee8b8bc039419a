"""Per-customer prices: an admin's rate or discount for one customer and one service, and the rate intake
and the catalog's readers use for that customer (workflows/policy/prices.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.customers import get_customer
from store.models import CustomerPrice, Service
from workflows import policy


class ServiceNotFound(LookupError):
    code = "service_not_found"


def rate_of(service: Service, price: CustomerPrice | None) -> int:
    """What the customer pays per 1000 units of the service."""
    if price is None:
        return service.rate_micros
    return policy.customer_rate(
        service.rate_micros, rate_micros=price.rate_micros, discount_bp=price.discount_bp
    )


async def rates_for(session: AsyncSession, customer_id: int, services: Sequence[Service]) -> dict[int, int]:
    """The customer's rate for each of the services, by service id."""
    own = await session.scalars(
        select(CustomerPrice).where(
            CustomerPrice.customer_id == customer_id,
            CustomerPrice.service_id.in_([s.id for s in services]),
        )
    )
    prices = {p.service_id: p for p in own}
    return {s.id: rate_of(s, prices.get(s.id)) for s in services}


async def prices_of(session: AsyncSession, customer_id: int) -> list[tuple[CustomerPrice, Service]]:
    """The customer's own prices, by service id; CustomerNotFound for an unknown customer."""
    await get_customer(session, customer_id)
    rows = await session.execute(
        select(CustomerPrice, Service)
        .join(Service, Service.id == CustomerPrice.service_id)
        .where(CustomerPrice.customer_id == customer_id)
        .order_by(CustomerPrice.service_id)
    )
    return [(row[0], row[1]) for row in rows]


async def set_price(
    session: AsyncSession,
    customer_id: int,
    service_id: int,
    *,
    rate_micros: int | None,
    discount_bp: int | None,
    actor: str,
) -> tuple[CustomerPrice, Service]:
    """Set (or replace) the customer's price for the service; setting the same price again is harmless."""
    await get_customer(session, customer_id)
    service = await session.get(Service, service_id)
    if service is None:
        raise ServiceNotFound(f"service {service_id} does not exist")
    values = {"rate_micros": rate_micros, "discount_bp": discount_bp, "set_by": actor}
    await session.execute(
        insert(CustomerPrice)
        .values(customer_id=customer_id, service_id=service_id, **values)
        .on_conflict_do_update(
            index_elements=["customer_id", "service_id"], set_={**values, "updated_at": func.now()}
        )
    )
    price = await session.get(CustomerPrice, (customer_id, service_id), populate_existing=True)
    assert price is not None
    return price, service


async def remove_price(session: AsyncSession, customer_id: int, service_id: int) -> bool:
    """Back to the catalog's rate; False when the customer had no price of their own for it."""
    await get_customer(session, customer_id)
    result = await session.execute(
        delete(CustomerPrice).where(
            CustomerPrice.customer_id == customer_id, CustomerPrice.service_id == service_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
