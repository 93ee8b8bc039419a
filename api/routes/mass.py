"""Mass orders: many orders in one request, each line placed by the single-order intake on its own.

Each line is its own write (store.orders.take_order: validated, then written and charged in one
statement that debits only a balance that covers it), so a refused line writes nothing and never stops
the others, and parallel mass orders can never overdraw a balance. Each line's idempotency key derives
from the batch's, so a retried batch replays the orders it already placed instead of placing them again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.actions import place_and_start
from api.auth import role
from api.deps import Session, Starts
from api.errors import ApiError
from api.mass_schemas import MassIdempotencyKey, MassLineOut, MassOrderCreate, MassOrderLine, MassOrderOut
from api.schemas import error_responses
from api.starts import WorkflowStarts
from store import orders as store_orders
from store.customers import CustomerNotFound, get_customer
from store.keys import Caller
from workflows import policy

router = APIRouter(prefix="/v1/orders", tags=["orders"])

LINE = TypeAdapter(MassOrderLine)


@router.post("/mass", response_model=MassOrderOut, responses=error_responses(401, 403, 422))
async def create_mass_order(
    body: MassOrderCreate,
    session: Session,
    starts: Starts,
    idempotency_key: Annotated[MassIdempotencyKey, Header(alias="Idempotency-Key")],
    caller: Annotated[Caller, Depends(role("storefront", "admin", "customer"))],
) -> MassOrderOut:
    """Place up to 100 orders at once, as a JSON list (`orders`) or in the panels' text form (`text`: one
    `service_id|link|quantity` per line). Each line is answered on its own: accepted with its order, or
    refused with the code and message POST /v1/orders would give it (`bad_line` for a text line that does
    not parse). Line n's idempotency key is `<Idempotency-Key>#n`: the same batch sent again places
    nothing twice (its lines answer `replayed`).
    """
    customer_id = await _customer(session, caller, body.customer_id)
    if (body.orders is None) == (body.text is None):
        raise ApiError(422, "invalid_request", "send the lines either as `orders` or as `text`")
    lines: list[policy.MassLine | policy.MassLineRefusal] = (
        policy.parse_mass_text(body.text)
        if body.text is not None
        else [policy.MassLine(n, item) for n, item in enumerate(body.orders or [], start=1)]
    )
    refusal = policy.mass_size_refusal(len(lines))
    if refusal is not None:
        raise ApiError(422, *refusal)
    outcomes = [
        await _place_line(session, starts, caller, customer_id, line, idempotency_key) for line in lines
    ]
    accepted = sum(1 for o in outcomes if o.outcome == "accepted")
    return MassOrderOut(accepted=accepted, refused=len(outcomes) - accepted, lines=outcomes)


async def _customer(session: AsyncSession, caller: Caller, customer_id: int | None) -> int:
    """Whose orders these are: a customer key's own customer, or the one the body names."""
    if caller.role == "customer":
        if customer_id is not None and customer_id != caller.customer_id:
            raise ApiError(403, "forbidden", "a customer key places orders only for its own customer")
        customer_id = caller.customer_id
    if customer_id is None:
        raise ApiError(422, "invalid_request", "customer_id is required")
    try:
        async with session.begin():  # refused once for the batch, not once per line
            await get_customer(session, customer_id)
    except CustomerNotFound as exc:
        raise ApiError(422, "customer_not_found", str(exc)) from exc
    return customer_id


async def _place_line(
    session: AsyncSession,
    starts: WorkflowStarts,
    caller: Caller,
    customer_id: int,
    line: policy.MassLine | policy.MassLineRefusal,
    batch_key: str,
) -> MassLineOut:
    if isinstance(line, policy.MassLineRefusal):
        return MassLineOut(line=line.line, outcome="refused", code=line.code, message=line.message)
    try:
        fields = LINE.validate_python(line.fields)
    except ValidationError as exc:
        return MassLineOut(line=line.line, outcome="refused", code="invalid_request", message=_problems(exc))
    request = store_orders.OrderRequest(
        customer_id=customer_id,
        service_id=fields.service_id,
        link=fields.link,
        quantity=fields.quantity,
        runs=fields.runs,
        interval=fields.interval,
    )
    key = policy.mass_line_key(batch_key, line.line)
    try:
        order, created = await place_and_start(session, starts, caller, request, key)
    except store_orders.OrderRejected as exc:  # nothing of it was written
        return MassLineOut(line=line.line, outcome="refused", code=exc.code, message=exc.message)
    return MassLineOut(
        line=line.line,
        outcome="accepted",
        order_id=order.id,
        charge=policy.format_money(order.charge_micros),
        replayed=not created,
    )


def _problems(exc: ValidationError) -> str:
    """The line's problems as the API words a body that does not fit (api/errors.py)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or 'line'}: {e.get('msg', '')}" for e in exc.errors()
    )
