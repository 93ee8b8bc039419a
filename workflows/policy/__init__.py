"""The panel's refund and cancellation policy as pure rules: what an order may be, how it is delivered,
what it costs and refunds, which messages it takes, and how resellers see it.

No I/O and no clock: the workflow and the API both call these, and tests prove them directly. Callers use
`from workflows import policy` and `policy.<rule>`; each rule lives in the module of its part:

- `states`: statuses and phases as the rules group them;
- `intake`: what an order must be for its service;
- `delivery`: runs, what a provider's answer means, when to look again;
- `money`: charges, refunds, the settlement (integer micro-units);
- `messages`: when each message an order takes is refused;
- `reseller`: how API v2 reports an order.
"""

from __future__ import annotations

from workflows.policy.delivery import (
    clamp_remains,
    delivered_in_run,
    follow_deadline_hours,
    interruption_backoff_seconds,
    plan_runs,
    poll_interval_seconds,
    provider_gave_up,
    remains,
    run_link_fault,
    run_status,
)
from workflows.policy.intake import (
    MAX_ORDER_UNITS,
    ServiceTerms,
    dripfeed_units_per_hour,
    intake_refusal,
    link_is_valid,
)
from workflows.policy.messages import (
    CANNOT_CANCEL,
    MISSING_REASON,
    NOT_COMPLETED,
    REFILL_DISABLED,
    REFILL_IN_PROGRESS,
    REFILL_LIMIT,
    REFILL_WINDOW_CLOSED,
    cancel_refusal,
    ended_order_refusal,
    link_fault_refusal,
    pause_refusal,
    reconcile_refusal,
    refill_counts,
    refill_outcome,
    refill_poll_seconds,
    refill_refusal,
    refill_too_soon,
    refund_key_refusal,
    resume_refusal,
    retry_refusal,
    words_refusal,
)
from workflows.policy.money import (
    charge_for,
    final_settlement,
    final_status,
    format_money,
    parse_money,
    parse_percent_bp,
    price_of_units,
    refund_for_shortfall,
    refundable_units,
    support_refund,
    within_tolerance,
)
from workflows.policy.reseller import (
    drip_feed_view,
    reseller_view,
)
from workflows.policy.states import (
    DELIVERY_OVER,
    FINAL_STATUSES,
    HOLDABLE,
    IN_FLIGHT,
    MICROS,
    PHASES,
    REFILL_FINAL,
    STATUSES,
    Refusal,
)

__all__ = [
    "CANNOT_CANCEL",
    "DELIVERY_OVER",
    "FINAL_STATUSES",
    "HOLDABLE",
    "IN_FLIGHT",
    "MAX_ORDER_UNITS",
    "MICROS",
    "MISSING_REASON",
    "NOT_COMPLETED",
    "PHASES",
    "REFILL_DISABLED",
    "REFILL_FINAL",
    "REFILL_IN_PROGRESS",
    "REFILL_LIMIT",
    "REFILL_WINDOW_CLOSED",
    "STATUSES",
    "Refusal",
    "ServiceTerms",
    "cancel_refusal",
    "charge_for",
    "clamp_remains",
    "delivered_in_run",
    "drip_feed_view",
    "dripfeed_units_per_hour",
    "ended_order_refusal",
    "final_settlement",
    "final_status",
    "follow_deadline_hours",
    "format_money",
    "intake_refusal",
    "interruption_backoff_seconds",
    "link_fault_refusal",
    "link_is_valid",
    "parse_money",
    "parse_percent_bp",
    "pause_refusal",
    "plan_runs",
    "poll_interval_seconds",
    "price_of_units",
    "provider_gave_up",
    "reconcile_refusal",
    "refill_counts",
    "refill_outcome",
    "refill_poll_seconds",
    "refill_refusal",
    "refill_too_soon",
    "refund_for_shortfall",
    "refund_key_refusal",
    "refundable_units",
    "remains",
    "reseller_view",
    "resume_refusal",
    "retry_refusal",
    "run_link_fault",
    "run_status",
    "support_refund",
    "within_tolerance",
    "words_refusal",
]
