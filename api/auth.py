"""API key authentication: `Authorization: Bearer <key>` or `X-Api-Key: <key>`, each key with one role."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.throttle import FailedAuthentications
from store.db import autocommit
from store.keys import Caller, authenticate

# Declared as OpenAPI security schemes; either one authenticates (Bearer wins when both are sent).
bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <key>`")
api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="apiKey")


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Depends(api_key_header)],
) -> Caller:
    key = credentials.credentials.strip() if credentials and credentials.credentials.strip() else x_api_key
    if not key or len(key) > 300:
        raise refused(request, "an API key is required (Authorization: Bearer <key>)")
    async with request.app.state.sessions() as session:  # its own session: the handler's stays fresh
        await autocommit(session)  # one look-up: no transaction around it
        caller = await authenticate(session, key)
    if caller is None:
        raise refused(request, "invalid API key")
    return caller


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def throttled(request: Request) -> int | None:
    """Count a failed authentication from the request's client; seconds to wait when it failed too often."""
    failures: FailedAuthentications = request.app.state.failed_authentications
    return failures.failed(client_address(request))


def refused(request: Request, message: str) -> ApiError:
    """401, or 429 with Retry-After once the client has failed too often (only failures are counted)."""
    wait = throttled(request)
    if wait is None:
        return ApiError(401, "unauthorized", message)
    return ApiError(
        429,
        "too_many_failures",
        f"too many failed authentications from this address; try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


def role(*allowed: str) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency that lets only the given roles through."""

    async def check(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if caller.role not in allowed:
            raise ApiError(403, "forbidden", f"the {caller.role} role cannot do this")
        return caller

    return check


def own_customer(caller: Caller, customer_id: int) -> None:
    """A customer key sees only its own customer; other roles see everyone. Hidden, not forbidden."""
    if caller.role == "customer" and caller.customer_id != customer_id:
        raise ApiError(404, "customer_not_found", f"customer {customer_id} does not exist")
