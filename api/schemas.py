"""Request and response shapes. Requests refuse unknown fields; every size is bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from store.ledger import StatementLine
from store.models import Customer, DripFeedRun, Order, OrderEvent, ProviderSubmission, Refill, Service
from workflows import policy
from workflows.models import OrderState, RefillStatus
from workflows.policy import format_money
from workflows.text import text_problem


def _one_line(value: str) -> str:
    if (problem := text_problem(value)) is not None:
        raise ValueError(f"text with {problem} is not accepted")
    return value


def _storable_moment(value: datetime) -> datetime:
    """A time PostgreSQL can hold once taken to UTC (no zone means UTC): 9999-12-31T23:59:59-23:59 is a
    valid ISO time but past year 9999 in UTC, which Python (and so the driver) cannot even represent."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is outside the years 1 to 9999 once taken to UTC") from exc


Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Moment = Annotated[datetime, AfterValidator(_storable_moment)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
# ASCII digits only: `\d` would also take Arabic-Indic or full-width digits (and Decimal reads them).
# At most 10 million a movement keeps every balance far inside a bigint of micro-units.
Money = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,7}(\.[0-9]{1,6})?$")]
SignedMoney = Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,7}(\.[0-9]{1,6})?$")]


# Text fields the store can keep (workflows/text.py's rule); lengths are checked first, so a huge string is
# refused before it is scanned.
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_one_line)]
OptionalText = Annotated[str, StringConstraints(max_length=500), AfterValidator(_one_line)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_one_line)]
Link = Annotated[str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_one_line)]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_one_line)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorDetail(BaseModel):
    field: str
    problem: str


class ErrorOut(BaseModel):
    """Every error: a stable machine-readable `code` and a human `message`."""

    code: str = Field(examples=["order_not_found"])
    message: str
    details: list[ErrorDetail] | None = Field(default=None, description="validation errors only")
    order_id: int | None = Field(default=None, description="workflow_unavailable only")


class OrderCreate(Strict):
    customer_id: Id | None = Field(default=None, description="required unless the caller is a customer key")
    service_id: Id
    link: Link
    quantity: Annotated[int, Field(ge=1, le=100_000_000, description="units; per run for a drip-feed")]
    runs: Annotated[int, Field(ge=2, le=1000)] | None = Field(default=None, description="drip-feed runs")
    interval: Annotated[int, Field(ge=1, le=10080)] | None = Field(
        default=None, description="drip-feed minutes between runs"
    )


class OrderOut(BaseModel):
    id: int
    customer_id: int
    service_id: int
    link: str
    status: str
    phase: str
    quantity: int
    delivered: int
    remains: int
    charge: str
    refunded: str
    refunded_units: int = Field(
        description="units refunded as such (support refunds by units, the settlement's shortfall)"
    )
    runs: int | None
    interval: int | None
    start_count: int | None
    provider_status: str | None = Field(
        description="the provider's own words; staff only (null for customers)"
    )
    cost: str | None = Field(
        default=None, description="what the providers charged for this order so far; staff only"
    )
    margin: str | None = Field(default=None, description="charge - refunded - cost; staff only")
    note: str = Field(description="what the order waits for or does next, in the panel's words")
    refill_deadline: datetime | None = Field(description="end of the refill window, once it is open")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, o: Order, *, for_customer: bool, cost_micros: int | None = None) -> OrderOut:
        """Customers never see upstream: no provider's words, no cost."""
        staff = not for_customer
        return cls(
            id=o.id,
            customer_id=o.customer_id,
            service_id=o.service_id,
            link=o.link,
            status=o.status,
            phase=o.phase,
            quantity=o.quantity,
            delivered=o.delivered,
            remains=policy.remains(o.quantity, o.delivered),
            charge=format_money(o.charge_micros),
            refunded=format_money(o.refunded_micros),
            refunded_units=o.refunded_units,
            runs=o.runs,
            interval=o.interval_minutes,
            start_count=o.start_count,
            provider_status=o.provider_status_raw if staff else None,
            cost=format_money(cost_micros) if staff and cost_micros is not None else None,
            margin=(
                format_money(o.charge_micros - o.refunded_micros - cost_micros)
                if staff and cost_micros is not None
                else None
            ),
            note=o.note,
            refill_deadline=o.refill_deadline,
            created_at=o.created_at,
            updated_at=o.updated_at,
            finished_at=o.finished_at,
        )


class OrderList(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class TimelineEvent(BaseModel):
    seq: int
    at: datetime
    kind: str
    actor: str = Field(description="who: `workflow`, `<role>:key<id>`; a customer key sees only the role")
    message: str
    detail: str | None = Field(
        default=None, description="the provider, its order id and its own words; staff only"
    )

    @classmethod
    def of(cls, e: OrderEvent, *, for_customer: bool) -> TimelineEvent:
        actor = e.actor.split(":", 1)[0] if for_customer else e.actor
        detail = None if for_customer else e.detail
        return cls(seq=e.seq, at=e.at, kind=e.kind, actor=actor, message=e.message, detail=detail)


class ProviderOrderOut(BaseModel):
    """One order placed at a provider for a run (staff only): what it delivered and cost."""

    run_no: int
    provider_id: int
    provider_order_id: str | None
    quantity: int
    state: str = Field(
        description="the submission: sending, accepted, rejected, link_fault, needs_reconciliation"
    )
    delivered: int | None
    cost: str | None
    provider_status: str | None
    given_up_at: datetime | None = Field(description="when the order gave it up (still followed to its end)")
    finished_at: datetime | None

    @classmethod
    def of(cls, s: ProviderSubmission) -> ProviderOrderOut:
        return cls(
            run_no=s.run_no,
            provider_id=s.provider_id,
            provider_order_id=s.provider_order_id,
            quantity=s.quantity,
            state=s.state,
            delivered=s.delivered,
            cost=format_money(s.cost_micros) if s.cost_micros is not None else None,
            provider_status=s.provider_status_raw,
            given_up_at=s.abandoned_at,
            finished_at=s.finished_at,
        )


class RefillOut(BaseModel):
    id: int = Field(description="the refill id (API v2 `refill`), unique across orders")
    order_id: int
    refill_no: int
    status: RefillStatus
    requested_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, r: Refill, *, for_customer: bool) -> RefillOut:
        return cls(
            id=r.id,
            order_id=r.order_id,
            refill_no=r.refill_no,
            status=r.status,  # type: ignore[arg-type]  # the table's check constraint holds it to these
            requested_by=r.requested_by.split(":", 1)[0] if for_customer else r.requested_by,
            created_at=r.created_at,
            finished_at=r.finished_at,
        )


class RefillList(BaseModel):
    refills: list[RefillOut]


class DripFeedRunOut(BaseModel):
    """One run of a drip-feed order, with the id API v2 lists in the order's `orders` and answers `status`
    for."""

    id: int
    run: int
    quantity: int
    delivered: int
    status: str = Field(
        description="Pending until it is sent, In progress, then Completed, Partial or Canceled (delivered "
        "nothing)"
    )

    @classmethod
    def of(cls, r: DripFeedRun) -> DripFeedRunOut:
        return cls(id=r.id, run=r.run_no, quantity=r.quantity, delivered=r.delivered, status=r.status)


class OrderDetail(OrderOut):
    """The order with its timeline and refills, as support reviews it."""

    timeline: list[TimelineEvent]
    timeline_truncated: bool = Field(description="true when only the first events are shown")
    queue_position: int | None = Field(
        description="while the order waits for a provider slot, its place in line (1 = next); else null"
    )
    refills: list[RefillOut]
    provider_orders: list[ProviderOrderOut] | None = Field(
        default=None, description="the orders placed at providers, one per run and route; staff only"
    )
    drip_feed: list[DripFeedRunOut] = Field(
        default_factory=list, description="a drip-feed order's runs, each with its own id; empty otherwise"
    )


class ServiceOut(BaseModel):
    """A catalog service as customers see it: its terms, never its providers."""

    id: int
    name: str
    category: str
    type: str
    rate: str = Field(description="price per 1000 units")
    min: int
    max: int
    dripfeed: bool
    cancel: bool
    refill: bool
    refill_days: int
    refill_cooldown_hours: int
    refill_max: int
    tolerance_pct: str
    pace_per_hour: int
    link_fault_refund: Literal["none", "remaining"]
    link_pattern: str
    available: bool = Field(description="false while no provider can deliver it (orders are refused)")

    @classmethod
    def of(cls, s: Service, available: bool) -> ServiceOut:
        return cls(
            id=s.id,
            name=s.name,
            category=s.category,
            type=s.type,
            rate=format_money(s.rate_micros),
            min=s.min_quantity,
            max=s.max_quantity,
            dripfeed=s.dripfeed,
            cancel=s.cancel,
            refill=s.refill_days > 0,
            refill_days=s.refill_days,
            refill_cooldown_hours=s.refill_cooldown_hours,
            refill_max=s.refill_max,
            tolerance_pct=str((Decimal(s.tolerance_bp) / 100).normalize()),
            pace_per_hour=s.pace_per_hour,
            link_fault_refund=s.link_fault_refund,  # type: ignore[arg-type]  # check constraint
            link_pattern=s.link_pattern,
            available=available,
        )


class ServiceList(BaseModel):
    services: list[ServiceOut]


class OptionalReason(Strict):
    reason: OptionalText = ""


class RequiredReason(Strict):
    reason: Reason


class RefundCreate(Strict):
    """Exactly one of `amount` or `units`; the order caps it at what is still refundable."""

    amount: Money | None = Field(default=None, description='decimal string, e.g. "0.50"')
    units: Annotated[int, Field(ge=1, le=100_000_000)] | None = Field(
        default=None, description="refund these undelivered units at the order's price per unit"
    )
    reason: Reason

    @model_validator(mode="after")
    def _one_measure(self) -> Self:
        if (self.amount is None) == (self.units is None):
            raise ValueError("send exactly one of amount or units")
        if self.amount is not None and Decimal(self.amount) <= 0:
            raise ValueError("amount must be positive")
        return self


class OrderStateOut(BaseModel):
    """The order's state as its workflow answered the action (the read model follows a moment later)."""

    order_id: int
    status: str
    phase: str
    quantity: int
    delivered: int
    remains: int
    refunded: str
    note: str

    @classmethod
    def of(cls, s: OrderState) -> OrderStateOut:
        return cls(
            order_id=s.order_id,
            status=s.status,
            phase=s.phase,
            quantity=s.quantity,
            delivered=s.delivered,
            remains=policy.remains(s.quantity, s.delivered),
            refunded=format_money(s.refunded_micros),
            note=s.note,
        )


class RefundOut(BaseModel):
    order_id: int
    refunded: str = Field(description="what this refund moved; 0 on a replay of the same Idempotency-Key")
    total_refunded: str
    status: str
    replayed: bool


class ActionRefusal(BaseModel):
    order_id: int
    code: str
    message: str


class ProviderActionOut(BaseModel):
    """A pause or resume sent to every order a provider holds (as the read model saw them)."""

    provider_id: int
    action: Literal["pause", "resume"]
    orders: int
    accepted: int
    refused: int
    refusals: list[ActionRefusal]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all with the error shape."""
    text = {
        401: "no key, or an unknown or revoked key (`unauthorized`)",
        402: "the balance does not cover it (`insufficient_funds`)",
        403: "the role may not do this (`forbidden`)",
        404: "no such object, or not the customer key's own",
        409: "the order refused the action (its validator's code; an ended order by the same rules)",
        422: "the request does not fit the schema (`invalid_request`) or the rules",
        503: "Temporal is unavailable (`workflow_unavailable`)",
        429: "too many failed authentications from this address (`too_many_failures`); see Retry-After",
        504: "the order did not answer in time (`action_pending`): the action may still take effect; "
        "read the order before sending it again",
    }
    if 401 in statuses:  # a key that fails too often is slowed down
        statuses = (*statuses, 429)
    return {status: {"model": ErrorOut, "description": text.get(status, "error")} for status in statuses}


def replayable_responses(
    model: type[BaseModel], *statuses: int, description: str = "a replay of the same Idempotency-Key"
) -> dict[int | str, dict[str, Any]]:
    """error_responses for a route that answers 200 with `model` when a request repeats."""
    return {200: {"model": model, "description": description}, **error_responses(*statuses)}


class CustomerCreate(Strict):
    name: Name
    external_ref: Name | None = None


class CustomerOut(BaseModel):
    id: int
    name: str
    external_ref: str | None
    balance: str
    created_at: datetime

    @classmethod
    def of(cls, c: Customer, balance_micros: int) -> CustomerOut:
        return cls(
            id=c.id,
            name=c.name,
            external_ref=c.external_ref,
            balance=format_money(balance_micros),
            created_at=c.created_at,
        )


class DepositCreate(Strict):
    amount: Money = Field(description='decimal string, up to 6 decimals, e.g. "25.00"')
    reason: OptionalText = ""


class DepositOut(BaseModel):
    customer_id: int
    amount: str
    balance: str
    replayed: bool


class AdjustmentCreate(Strict):
    amount: SignedMoney = Field(description='decimal string, negative to debit the customer, e.g. "-2.50"')
    reason: Reason


class AdjustmentOut(BaseModel):
    customer_id: int
    transfer_id: int
    amount: str
    reason: str
    balance: str
    replayed: bool


class StatementEntry(BaseModel):
    transfer_id: int
    created_at: datetime
    kind: str = Field(description="deposit, charge, refund or adjustment (as seen from the customer)")
    amount: str = Field(description="signed: positive credits the balance, negative debits it")
    balance_after: str
    order_id: int | None
    actor: str = Field(description="who: `<role>:key<id>`, `workflow`; a customer key sees only the role")
    reason: str

    @classmethod
    def of(cls, line: StatementLine, *, for_customer: bool) -> StatementEntry:
        return cls(
            transfer_id=line.transfer_id,
            created_at=line.created_at,
            kind=line.kind,
            amount=format_money(line.amount_micros),
            balance_after=format_money(line.balance_after_micros),
            order_id=line.order_id,
            actor=line.actor.split(":", 1)[0] if for_customer else line.actor,  # staff keys stay staff's
            reason=line.reason,
        )


class Statement(BaseModel):
    customer_id: int
    balance: str
    entries: list[StatementEntry] = Field(description="newest first")
    next_before: int | None = Field(
        description="pass as `before` for the next (older) page; null on the last page"
    )
