"""The console's pages: sign-in and sign-out, the order search, an order, a customer."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.console.common import STAFF_ROLES, SignedIn, blank_to_none, problems, render
from api.console.order_view import order_page
from api.console.session import SESSION_COOKIE, SIGN_IN_COOKIE, drop_cookie, set_cookie, signer
from api.errors import ApiError
from api.routes import customers as rest_customers
from api.routes import orders as rest_orders
from api.schemas import Cursor, Id, Link, Moment
from api.throttle import FailedAuthentications
from store.customers import CustomerNotFound
from store.keys import authenticate
from workflows.models import Phase, Status

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/console/orders", status_code=303)


def _sign_in_page(request: Request, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    response = render(
        request, "sign_in.html", {"csrf": signer(request).csrf(nonce), "error": error}, status=status
    )
    set_cookie(request, response, SIGN_IN_COOKIE, nonce, max_age=3600)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> HTMLResponse:
    return _sign_in_page(request)


@router.post("/sign-in", response_model=None)
async def sign_in(
    request: Request,
    key: Annotated[str, Form(max_length=300)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A staff key opens a session; the key itself is never kept in the browser, only its id, signed."""
    sign = signer(request)
    if not sign.csrf_ok(request.cookies.get(SIGN_IN_COOKIE, ""), csrf):
        return _sign_in_page(request, error="The form had expired: sign in again.", status=403)
    failures: FailedAuthentications = request.app.state.failed_authentications
    address = request.client.host if request.client else "unknown"
    async with request.app.state.sessions() as session:
        caller = await authenticate(session, key.strip()) if key.strip() else None
    if caller is None:
        wait = failures.failed(address)  # counted as REST counts a bad key
        if wait is not None:
            message = f"Too many failed sign-ins: try again in {wait} s."
            return _sign_in_page(request, error=message, status=429)
        return _sign_in_page(request, error="That key is not valid.", status=401)
    if caller.role not in STAFF_ROLES:
        return _sign_in_page(
            request,
            error=f"A {caller.role} key cannot sign in to the console: use a support, ops or admin key.",
            status=403,
        )
    value, _ = sign.issue(caller.key_id)
    response = RedirectResponse("/console/orders", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, value, max_age=sign.lifetime)
    drop_cookie(response, SIGN_IN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, staff: SignedIn, csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    if not signer(request).csrf_ok(staff.session.nonce, csrf):
        return RedirectResponse("/console/orders", status_code=303)
    response = RedirectResponse("/console/sign-in", status_code=303)
    drop_cookie(response, SESSION_COOKIE)
    return response


class OrderSearch(BaseModel):
    """REST's GET /v1/orders filters and paging, plus an order id to go straight to."""

    model_config = ConfigDict(extra="ignore")

    order_id: Id | None = None
    customer_id: Id | None = None
    link: Link | None = None
    status: Status | None = None
    phase: Phase | None = None
    service_id: Id | None = None
    created_from: Moment | None = None
    created_to: Moment | None = None
    cursor: Cursor | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


@router.get("/orders", response_model=None)
async def orders(request: Request, staff: SignedIn) -> Response:
    given = dict(request.query_params)
    context = {"query": given, "statuses": list(Status), "phases": list(Phase), "orders": None}
    try:
        search = OrderSearch.model_validate(blank_to_none(given))
    except ValidationError as exc:
        return render(request, "orders.html", context | {"error": problems(exc)}, status=422, staff=staff)
    if search.order_id is not None:
        return RedirectResponse(f"/console/orders/{search.order_id}", status_code=303)
    async with request.app.state.sessions() as session:
        try:
            page = await rest_orders.list_orders(
                session, staff.caller, **search.model_dump(exclude={"order_id"})
            )
        except ApiError as exc:
            return render(request, "orders.html", context | {"error": exc.message}, status=422, staff=staff)
    following = None
    if page.next_cursor:
        following = {k: v for k, v in given.items() if v and k != "cursor"} | {"cursor": page.next_cursor}
    return render(request, "orders.html", context | {"orders": page.orders, "next": following}, staff=staff)


@router.get("/orders/{order_id}")
async def order(request: Request, order_id: Id, staff: SignedIn) -> HTMLResponse:
    return await order_page(request, staff, order_id)


@router.get("/customers/{customer_id}")
async def customer(
    request: Request,
    customer_id: Id,
    staff: SignedIn,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> HTMLResponse:
    async with request.app.state.sessions() as session:
        try:
            # The statement first: it opens its own transaction (balance and page from one snapshot).
            statement = await rest_customers.statement(customer_id, session, staff.caller, before=before)
            shown = await rest_customers.get_customer(customer_id, session, staff.caller)
        except CustomerNotFound as exc:
            return render(request, "missing.html", {"messages": [str(exc)]}, status=404, staff=staff)
    return render(request, "customer.html", {"customer": shown, "statement": statement}, staff=staff)
