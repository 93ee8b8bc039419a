"""What the Temporal Web UI shows of an order from its start: a one-line summary and fixed details (Temporal
markdown), set when the workflow is started. What changes as the order moves (status, phase, delivered,
refunded) is the workflow's current details (workflows/record.py: show_details).

Only what intake froze into the order's input: no customer name or e-mail (the Web UI is an ops tool and
its users may not all see personal data), money as decimal strings, never micro-units.
"""

from __future__ import annotations

from workflows import policy
from workflows.models import OrderInput


def _service(order: OrderInput) -> str:
    return order.service_name or f"service {order.service_id}"


def order_summary(order: OrderInput) -> str:
    """One line, e.g. `Order 42: 1000 units of Followers for customer 7, charged 4.500000`."""
    return (
        f"Order {order.order_id}: {order.quantity} units of {_service(order)} "
        f"for customer {order.customer_id}, charged {policy.format_money(order.charge_micros)}"
    )


def _plan(order: OrderInput) -> str:
    if order.runs:
        return f"drip-feed: {order.runs} runs, every {order.interval_minutes} minutes"
    if order.pace_per_hour:
        return f"gradual: at most {order.pace_per_hour} units an hour"
    return "one run"


def _refills(order: OrderInput) -> str:
    if not order.refill_days:
        return "no refills"
    most = f", at most {order.refill_max}" if order.refill_max else ""
    return (
        f"refills for {order.refill_days} days after completion, {order.refill_cooldown_hours} h apart{most}"
    )


def order_details(order: OrderInput) -> str:
    """Fixed details: what was ordered, for whom, at what price, where it will be delivered from."""
    routes = ", then ".join(
        f"provider {route.provider_id} (its service {route.provider_service_id})" for route in order.routes
    )
    lines = [
        f"**Order {order.order_id}** for customer {order.customer_id}",
        "",
        f"- **Service**: {_service(order)} (id {order.service_id})",
        f"- **Link**: {order.link}",
        f"- **Quantity**: {order.quantity} units ({_plan(order)})",
        f"- **Charged**: {policy.format_money(order.charge_micros)}",
        f"- **Accuracy tolerance**: {order.tolerance_bp / 100:.2f} % short still counts as Completed",
        f"- **Routes**: {routes or 'none'}",
        f"- **Cancel**: {'allowed' if order.cancel_allowed else 'not allowed'}; {_refills(order)}",
        f"- **Interruptions**: failover to the next route after {order.max_interruption_hours} h",
    ]
    return "\n".join(lines)
