"""Workflow inputs, state and messages. Plain dataclasses: deterministic and serialisable by the SDK."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    progress: Progress | None = None  # set only when the order continues as new
    # The service's policy as of intake.
    service_name: str = ""
    cancel_allowed: bool = False
    refill_days: int = 0
    refill_cooldown_hours: int = 24
    refill_max: int = 0  # 0: no limit
    max_interruption_hours: int = 24
    link_fault_refund: str = "none"  # or "remaining"


@dataclass
class OrderState:
    """What the `state` query answers and what the read model is projected from."""

    order_id: int
    status: str
    phase: str
    quantity: int
    delivered: int = 0
    refunded_micros: int = 0
    provider_id: int | None = None
    provider_status_raw: str | None = None
    start_count: int | None = None
    runs_total: int = 1
    runs_done: int = 0
    version: int = 0
    note: str = ""  # what the order waits for or does next
    queue_position: int | None = None  # while waiting for a provider slot
    refill_deadline: str | None = None  # ISO time the refill window ends
    refills_used: int = 0
    paused_by: str | None = None
    interrupted_since: str | None = None  # ISO time the provider stopped answering
    link_fault: str | None = None


@dataclass(frozen=True)
class RunInFlight:
    """A run submitted to a route and still being followed there."""

    run_no: int
    provider_id: int
    units: int  # what this route was asked to deliver for the run
    provider_order_id: str


@dataclass(frozen=True)
class Progress:
    """Where an order left off when it continued as new (its history had grown long)."""

    state: OrderState
    started_at: str  # ISO time the order's first run was due; later runs keep their offsets from it
    next_run: int
    delivered: int  # units of finished runs, and of finished parts of the run in flight
    routes: list[RouteRef]
    in_flight: RunInFlight | None
    slot_provider_id: int | None = None
    delivered_runs: list[DeliveredRun] = field(default_factory=list)
    refunds: dict[str, RefundReceipt] = field(default_factory=dict)
    stop: StopRequest | None = None
    event_seq: int = 0


@dataclass(frozen=True)
class DeliveredRun:
    """A provider order that delivered units: where a refill goes."""

    provider_id: int
    provider_order_id: str


@dataclass(frozen=True)
class StopRequest:
    """Delivery must stop: a customer's cancel, or a link fault (reported by the provider or support)."""

    kind: str  # "cancel" | "link_fault" | "refunded"
    actor: str
    reason: str


# Activity inputs and outputs.


@dataclass(frozen=True)
class SubmitRun:
    order_id: int
    run_no: int
    link: str
    quantity: int
    provider_id: int
    provider_service_id: str


@dataclass(frozen=True)
class SubmittedRun:
    provider_order_id: str


@dataclass(frozen=True)
class CheckRun:
    provider_id: int
    provider_order_id: str


@dataclass(frozen=True)
class RunStatus:
    status: str  # normalised
    raw_status: str
    remains: int | None
    start_count: int | None
    # Set when the provider ended the run because of the link (private, deleted, renamed, invalid);
    # `remains` still tells what was delivered before.
    link_fault: str | None = None


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
class RefillStatus:
    status: str  # normalised: Pending, In progress, Completed, Rejected, Error
    raw_status: str


@dataclass(frozen=True)
class Projection:
    order_id: int
    version: int
    status: str
    phase: str
    delivered: int
    refunded_micros: int
    provider_id: int | None
    provider_status_raw: str | None
    start_count: int | None
    finished: bool = False
    note: str = ""
    refill_deadline: str | None = None
    events: list[OrderEvent] = field(default_factory=list)
    refills: list[RefillProgress] = field(default_factory=list)


@dataclass(frozen=True)
class OrderEvent:
    """One line of the order's timeline; `seq` numbers them within the order."""

    seq: int
    at: str  # ISO workflow time
    kind: str
    actor: str
    message: str


@dataclass(frozen=True)
class RefillProgress:
    refill_no: int
    status: str
    finished: bool


@dataclass(frozen=True)
class OpenRefill:
    order_id: int
    refill_no: int
    actor: str


@dataclass(frozen=True)
class ClaimSlot:
    """Ask for a slot at the first of `provider_ids` with room, or a FIFO place in their queues."""

    order_id: int
    workflow_id: str
    provider_ids: list[int]


@dataclass(frozen=True)
class SlotAnswer:
    provider_id: int | None  # granted here; None: still waiting
    position: int  # 1 = next in line (0 when granted)


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
    refund_no: int
    revenue_micros: int
    reason: str
    actor: str = "workflow"


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


@dataclass(frozen=True)
class RefundReceipt:
    refunded_micros: int  # what this refund moved (0 when the key was already used: a replay)
    total_refunded_micros: int
    status: str


@dataclass(frozen=True)
class ProviderUpdate:
    """A provider that pushes tells an order's run changed; the order reads the run's status at once."""

    provider_order_id: str
    status: str = ""
