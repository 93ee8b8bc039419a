"""The order's page: what REST's GET /v1/orders/{id} answers staff (the same route function), the money
still refundable, the workflow in the Temporal Web UI, and the forms the signed-in role may send."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.console.common import Staff, render
from api.console.forms import ACTIONS
from api.errors import ApiError
from api.routes import orders as rest_orders
from backoffice.settings import Settings
from backoffice.temporal_client import workflow_id
from workflows.policy import format_money, parse_money


def workflow_url(settings: Settings, order_id: int) -> str | None:
    if not settings.temporal_ui_url:
        return None
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id(order_id)}"


async def order_page(
    request: Request,
    staff: Staff,
    order_id: int,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, dict[str, Any]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The page, with a refused form's message beside it and its fields as they were sent."""
    async with request.app.state.sessions() as session:
        try:
            detail = await rest_orders.get_order(order_id, session, staff.caller)
        except ApiError as exc:
            # A refusal that came before the order was looked up (no session's token, not this role's) wins.
            said = [*(errors or {}).values(), exc.message]
            return render(
                request, "missing.html", {"messages": said}, status=status if errors else 404, staff=staff
            )
    values = values or {}
    for action in ACTIONS:
        if action.keyed:  # a new key for each form shown; a refused one keeps its own (see actions.py)
            values.setdefault(action.name, {}).setdefault("idempotency_key", uuid.uuid4().hex)
    shown = [a for a in ACTIONS if staff.role in a.roles]
    errors = errors or {}
    # A refusal of an action this role has no form for (sent by hand) is shown above the page.
    elsewhere = [m for name, m in errors.items() if name not in {a.name for a in shown}]
    refundable = max(parse_money(detail.charge) - parse_money(detail.refunded), 0)
    return render(
        request,
        "order.html",
        {
            "order": detail,
            "refundable": format_money(refundable),
            "workflow_url": workflow_url(request.app.state.settings, order_id),
            "actions": shown,
            "errors": errors,
            "elsewhere": elsewhere,
            "values": values,
        },
        status=status,
        staff=staff,
    )
