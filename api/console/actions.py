"""POST /console/orders/{id}/actions/{name}: a form becomes the message REST sends (api/console/forms.py);
accepted, the browser goes back to the order with what happened; refused, the page comes back with the
order's own words beside the form, which keeps what was typed."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.actions import HttpMessages
from api.console.common import SignedIn, blank_to_none, problems
from api.console.forms import BY_NAME
from api.console.order_view import order_page
from api.console.session import FLASH_COOKIE, set_cookie, signer
from api.errors import ApiError
from api.schemas import Id
from store import orders as store_orders

router = APIRouter(prefix="/console", include_in_schema=False)


@router.post("/orders/{order_id}/actions/{name}", response_model=None)
async def act(request: Request, order_id: Id, name: str, staff: SignedIn) -> Response:
    action = BY_NAME.get(name)
    if action is None:
        return await order_page(request, staff, order_id, status=404)
    form = await request.form()
    fields = {i.name for i in action.inputs} | ({"idempotency_key"} if action.keyed else set())
    sent: dict[str, Any] = {k: v for k, v in form.items() if k in fields and isinstance(v, str)}

    def refused(message: str, status: int) -> Awaitable[HTMLResponse]:
        # The fields come back as sent, the idempotency key too: after a refusal or an unanswered try, the
        # same form sent again still moves money at most once.
        return order_page(
            request, staff, order_id, errors={name: message}, values={name: sent}, status=status
        )

    if not signer(request).csrf_ok(staff.session.nonce, form.get("csrf")):
        return await refused("The form had expired: reload the page and send it again.", 403)
    if staff.role not in action.roles:  # what REST answers 403 `forbidden`
        return await refused(f"The {staff.role} role cannot do this.", 403)
    state = request.app.state
    messages = HttpMessages(state.temporal, state.settings, state.sessions)
    async with request.app.state.sessions() as session:
        order = await store_orders.get_order(session, order_id)
    if order is None:
        return await order_page(request, staff, order_id, status=404)
    try:
        done = await action.send(messages, order, staff.caller, blank_to_none(sent))
    except ValidationError as exc:
        return await refused(problems(exc), 422)
    except ApiError as exc:
        return await refused(exc.message, exc.status)
    response = RedirectResponse(f"/console/orders/{order_id}", status_code=303)
    set_cookie(request, response, FLASH_COOKIE, signer(request).seal(done), max_age=60)
    return response
