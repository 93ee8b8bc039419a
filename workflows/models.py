"""Workflow inputs, state and messages. Plain dataclasses: deterministic and serialisable by the SDK."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """An order's status as customers and API v2 clients see it, spelled as the protocol spells it."""

    PENDING = "Pending"
    IN_PROGRESS = "In progress"
    COMPLETED = "Completed"
    PARTIAL = "Partial"
    CANCELED = "Canceled"
    REFUNDED = "Refunded"


class Phase(StrEnum):
    """Where the order is in its lifecycle, shown to ops."""

    QUEUED = "queued"
    DELIVERING = "delivering"
    INTERRUPTED = "interrupted"
    PAUSED = "paused"
    SETTLING = "settling"
    REFILL_WINDOW = "refill_window"
    CLOSED = "closed"
    # A step failed in a way no retry can mend; the order waits for ops to fix the cause and send it on.
    NEEDS_ATTENTION = "needs_attention"


class StopKind(StrEnum):
    """Why delivery stopped before it ran its course."""

    CANCEL = "cancel"
    LINK_FAULT = "link_fault"
    REFUNDED = "refunded"


class RefillStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "In progress"
    COMPLETED = "Completed"
    REJECTED = "Rejected"
    ERROR = "Error"


@dataclass(frozen=True)
class RouteRef:
    provider_id: int
    provider_service_id: str
    poll_interval_seconds: int


@dataclass(frozen=True)
class OrderInput:
    """Everything the workflow needs, frozen at intake so catalog edits never change a running order."""

    order_id: int
    customer_id: int
    service_id: int
    link: str
    quantity: int
    charge_micros: int
    tolerance_bp: int
    pace_per_hour: int
    routes: list[RouteRef]
    runs: int | None = None
    interval_minutes: int | None = None
    # The order's whole state when it continues as new (its history had grown long); None at the start.
    state: OrderState | None = None
    # The service's policy as of intake.
    service_name: str = ""
    cancel_allowed: bool = False
    refill_days: int = 0
    refill_cooldown_hours: int = 24
    refill_max: int = 0  # 0: no limit
    max_interruption_hours: int = 24
    link_fault_refund: str = "none"  # or "remaining"


@dataclass
class ProviderOrder:
    """One order placed at a provider for a run. A run that failed over has one per route that took it.

    Followed until the provider reports it final, also once the order has given it up (`abandoned_at`):
    what it delivered late still counts as delivered, and what it cost is known.
    """

    run_no: int
    provider_id: int
    provider_order_id: str
    units: int  # what this provider order was asked to deliver
    poll_floor_seconds: int  # the provider's shortest polite interval between status reads
    delivered: int = 0  # as last reported, clamped to `units`
    cost_micros: int | None = None  # the provider's `charge` for it, when it reports one
    status: Status | None = None  # normalised; None until first read
    raw_status: str = ""
    final: bool = False
    abandoned_at: str | None = None  # ISO workflow time the order gave it up
    checks: int = 0  # status reads so far: the polling backs off with them


@dataclass
class RefundRecord:
    """A support refund by its idempotency key: what was asked (to tell a replay from a conflict) and,
    once paid, its receipt."""

    request: str
    receipt: RefundReceipt | None = None


@dataclass
class OrderState:
    """The order's one state object: what the `state` query and every update answer, what the read model is
    projected from, and what continue-as-new hands whole to the next run.

    The first group is what the order shows; the rest is the workflow's working memory.
    """

    order_id: int
    status: Status
    phase: Phase
    quantity: int
    delivered: int = 0  # all provider orders together, capped at the quantity
    refunded_micros: int = 0
    refunded_units: int = 0  # units refunded as units (support by units, settlement shortfall)
    provider_id: int | None = None  # the provider of the run in flight (staff only)
    provider_status_raw: str | None = None  # that provider's own words (staff only)
    start_count: int | None = None
    runs_total: int = 1
    runs_done: int = 0
    version: int = 0
    note: str = ""  # what the order waits for or does next (no provider names: customers read it)
    queue_position: int | None = None  # while waiting for a provider slot
    refill_deadline: str | None = None  # ISO time the refill window ends
    refills_used: int = 0  # refills that count against `refill_max` (rejected ones do not)
    refills_asked: int = 0  # every refill asked for: numbers them
    paused_by: str | None = None
    interrupted_since: str | None = None  # ISO time the provider stopped answering
    link_fault: str | None = None
    attention: str | None = None  # why the order needs ops (phase needs_attention)
    next_action_at: str | None = None  # ISO time the order next means to act by itself

    # Working memory.
    working_phase: Phase = Phase.QUEUED  # the phase underneath a pause or a needs_attention hold
    started_at: str = ""  # ISO time run 1 was due; later runs keep their offsets from it
    next_run: int = 1
    routes: list[RouteRef] = field(default_factory=list)  # routes still willing to deliver, best first
    provider_orders: list[ProviderOrder] = field(default_factory=list)
    slot_provider_id: int | None = None
    awaiting_run: int | None = None  # the run ops must reconcile before delivery goes on
    stop: StopRequest | None = None
    interruption_attempt: int = 0
    refunds: dict[str, RefundRecord] = field(default_factory=dict)  # support refunds by idempotency key
    refill_queue: list[RefillTicket] = field(default_factory=list)
    refill_busy: bool = False
    refill_parts: list[RefillPart] = field(default_factory=list)  # the refill under way, per provider order
    refill_began: str | None = None
    service_failed: bool = False  # no route could deliver what was left
    settled_at: str | None = None  # when delivery's money was settled (the refill cooldown counts from it)
    last_refill_at: str | None = None
    event_seq: int = 0
    pending_events: list[OrderEvent] = field(default_factory=list)  # not yet in the read model
    pending_refills: list[RefillProgress] = field(default_factory=list)


@dataclass
class RefillPart:
    """One provider order a refill was forwarded to, followed to its end."""

    provider_id: int
    provider_order_id: str
    poll_floor_seconds: int
    provider_refill_id: str | None = None  # None: the provider refused it
    status: RefillStatus = RefillStatus.PENDING
    checks: int = 0


@dataclass(frozen=True)
class StopRequest:
    """Delivery must stop: a customer's cancel, a link fault (reported by the provider or support), or a
    refund in full."""

    kind: StopKind
    actor: str
    reason: str


# Activity inputs and outputs.


@dataclass(frozen=True)
class SubmitRun:
    """Send a run exactly once. With `claim`, first take a slot at the first of `routes` with room (the
    order then sends there) or keep its place in line; without, send to `routes[0]`, whose slot it holds.
    `record` is what the read model lacks, written first."""

    order_id: int
    workflow_id: str
    run_no: int
    link: str
    quantity: int
    routes: list[RouteRef]
    claim: bool
    record: Projection | None = None


@dataclass(frozen=True)
class SubmittedRun:
    """Where the run went, or its place in line when no route had room. A failure of the send names its
    provider in the error's details, so the order knows where it holds the slot."""

    provider_id: int | None
    provider_order_id: str | None
    queue_position: int | None = None
    # The status read right after the provider took the run (None when that read failed): a provider that
    # delivers at once is seen finished without waiting for the first poll.
    first_look: RunReport | None = None


@dataclass(frozen=True)
class CheckRun:
    provider_id: int
    provider_order_id: str


@dataclass(frozen=True)
class RunReport:
    status: Status | None  # normalised; None: the provider said something we do not recognise
    raw_status: str
    remains: int | None
    start_count: int | None
    # Set when the provider ended the run because of the link (private, deleted, renamed, invalid);
    # `remains` still tells what was delivered before.
    link_fault: str | None = None
    cost_micros: int | None = None  # the provider's `charge` for this order, when it says


@dataclass(frozen=True)
class CancelRun:
    """Ask the provider to cancel a run; the refund waits until its status confirms the cancel."""

    order_id: int
    provider_id: int
    provider_order_id: str


@dataclass(frozen=True)
class CancelAnswer:
    accepted: bool
    message: str  # the provider's error text when not accepted


@dataclass(frozen=True)
class SubmitRefill:
    """Forward a customer's refill to the provider that delivered the run. Sent at most once per refill_no."""

    order_id: int
    refill_no: int
    provider_id: int
    provider_order_id: str


@dataclass(frozen=True)
class SubmittedRefill:
    provider_refill_id: str


@dataclass(frozen=True)
class CheckRefill:
    provider_id: int
    provider_refill_id: str


@dataclass(frozen=True)
class RefillReport:
    status: RefillStatus | None  # normalised; None: unrecognised
    raw_status: str


@dataclass(frozen=True)
class Projection:
    """The read model's row for the order, its new timeline events, refill progress and provider orders;
    built from the order's state in one place (workflows/record.py)."""

    order_id: int
    version: int
    status: Status
    phase: Phase
    delivered: int
    refunded_micros: int
    refunded_units: int
    provider_id: int | None
    provider_status_raw: str | None
    start_count: int | None
    note: str
    refill_deadline: str | None
    next_action_at: str | None
    finished: bool = False
    events: list[OrderEvent] = field(default_factory=list)
    refills: list[RefillProgress] = field(default_factory=list)
    provider_orders: list[ProviderOrder] = field(default_factory=list)  # those changed since the last one
    runs: list[RunProgress] = field(default_factory=list)  # drip-feed runs changed since the last one


@dataclass(frozen=True)
class OrderEvent:
    """One line of the order's timeline; `seq` numbers them within the order."""

    seq: int
    at: str  # ISO workflow time
    kind: str
    actor: str
    message: str  # for anyone, customers included: never names a provider
    detail: str | None = None  # for staff: the provider, its order id, its own words


@dataclass(frozen=True)
class RunProgress:
    """A drip-feed run as resellers see it: what it delivered and its status (policy.run_status)."""

    run_no: int
    delivered: int
    status: Status


@dataclass(frozen=True)
class RefillProgress:
    refill_no: int
    status: RefillStatus
    finished: bool


@dataclass(frozen=True)
class OpenRefill:
    order_id: int
    refill_no: int
    actor: str


@dataclass(frozen=True)
class ReleaseSlot:
    order_id: int
    provider_id: int | None  # None: leave every queue and slot of the order


@dataclass(frozen=True)
class RefundMoney:
    """A refund of an order's money to its customer, by key; taken back from revenue if already recognised."""

    order_id: int
    customer_id: int
    amount_micros: int
    key: str
    actor: str
    reason: str


@dataclass(frozen=True)
class Settlement:
    """Money at the end of delivery: refund the shortfall to the customer, recognise the rest as revenue."""

    order_id: int
    customer_id: int
    refund_micros: int
    revenue_micros: int
    reason: str
    actor: str = "workflow"
    # The order as it is once settled (the refill window open, or the order closed), written in the same
    # transaction as the money: the read model never shows money and status apart.
    record: Projection | None = None


@dataclass(frozen=True)
class RunReconciliation:
    """Ops' answer for a run whose submission fate was unknown: what they found at the provider."""

    run_no: int
    provider_order_id: str | None  # the provider's order for this run; None: the provider never took it
    actor: str
    reason: str


# Messages to a running order (workflow updates). Each carries who sent it and why; the validators refuse
# with ApplicationError(type=<stable code>, message=<the standard text where API v2 has one>).


@dataclass(frozen=True)
class OrderAction:
    """cancel, pause, resume, report_link_fault. `actor` is e.g. "customer:12", "support:key:5"."""

    actor: str
    reason: str = ""


@dataclass(frozen=True)
class RefillRequest:
    actor: str
    reason: str = ""


@dataclass(frozen=True)
class RefillTicket:
    refill_id: int  # the panel's refill id (API v2 `refill`), unique across orders
    refill_no: int  # 1, 2, ... within the order


@dataclass(frozen=True)
class SupportRefund:
    """A refund support sends: exactly one of amount_micros or units; capped at what is refundable."""

    actor: str
    reason: str
    idempotency_key: str
    amount_micros: int | None = None
    units: int | None = None

    def fingerprint(self) -> str:
        """What the refund asks for: the same key with another measure is a conflict, not a replay."""
        return f"amount:{self.amount_micros}" if self.amount_micros is not None else f"units:{self.units}"


@dataclass(frozen=True)
class RefundReceipt:
    refunded_micros: int  # what this refund moved (0 when the key was already used: a replay)
    total_refunded_micros: int
    status: Status
    refunded_units: int = 0  # units this refund paid for (0 for an amount)


@dataclass(frozen=True)
class ProviderUpdate:
    """A provider that pushes tells an order's run changed; the order reads the run's status at once."""

    provider_order_id: str
    status: str = ""
