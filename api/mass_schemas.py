"""Shapes of mass orders (POST /v1/orders/mass): the request, each line as single intake takes it, and
each line's outcome."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas import Id, Link, Strict
from workflows import policy

# A line's key is the batch's key and `#<line>` (policy.mass_line_key): room for it in the 200 characters
# the orders' idempotency key keeps.
MassIdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=190, pattern=r"^[\x21-\x7e]+$")
]


class MassOrderLine(Strict):
    """One line of a mass order: the body of POST /v1/orders without `customer_id`."""

    service_id: Id
    link: Link
    quantity: Annotated[int, Field(ge=1, le=100_000_000, description="units; per run for a drip-feed")]
    runs: Annotated[int, Field(ge=2, le=1000)] | None = Field(default=None, description="drip-feed runs")
    interval: Annotated[int, Field(ge=1, le=10080)] | None = Field(
        default=None, description="drip-feed minutes between runs"
    )


class MassOrderCreate(Strict):
    customer_id: Id | None = Field(default=None, description="required unless the caller is a customer key")
    orders: list[Any] | None = Field(
        default=None,
        description="the lines as JSON, each the body of POST /v1/orders without `customer_id`; "
        "a line that does not fit is refused alone (`invalid_request`)",
    )
    text: Annotated[str, StringConstraints(max_length=policy.MASS_TEXT_LIMIT)] | None = Field(
        default=None,
        description="the panels' text form: one `service_id|link|quantity` per line (blank lines skipped)",
    )


class MassLineOut(BaseModel):
    line: int = Field(description="the line's number: its place in `orders`, or its line in `text` (from 1)")
    outcome: Literal["accepted", "refused"]
    order_id: int | None = Field(default=None, description="the order, when accepted")
    charge: str | None = Field(default=None, description="what the order was charged, when accepted")
    replayed: bool = Field(default=False, description="placed by an earlier try of this batch")
    code: str | None = Field(default=None, description="why it was refused (the codes of POST /v1/orders)")
    message: str | None = None


class MassOrderOut(BaseModel):
    accepted: int
    refused: int
    lines: list[MassLineOut]
