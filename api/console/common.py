"""What every console page shares: who is signed in, the templates, and the answers' headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api.console.session import FLASH_COOKIE, SESSION_COOKIE, ConsoleSession, Signer, drop_cookie, signer
from store.keys import Caller, active_caller

HERE = Path(__file__).parent
# The roles that work in the console; storefront and customer keys are machines' and customers' keys.
STAFF_ROLES = ("support", "ops", "admin")
# Every asset comes from the back office itself: the machine may be offline.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = _when


class SignInRequired(Exception):
    """No valid session: the handler sends the browser to the sign-in page."""


@dataclass(frozen=True)
class Staff:
    caller: Caller
    session: ConsoleSession
    csrf: str

    @property
    def role(self) -> str:
        return self.caller.role


async def signed_in(request: Request) -> Staff:
    """The staff member whose session cookie this is, while the key stays active and of a staff role."""
    sign: Signer = signer(request)
    session = sign.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired
    async with request.app.state.sessions() as db:
        caller = await active_caller(db, session.key_id)
    if caller is None or caller.role not in STAFF_ROLES:
        raise SignInRequired
    return Staff(caller, session, sign.csrf(session.nonce))


SignedIn = Annotated[Staff, Depends(signed_in)]


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200, staff: Staff | None = None
) -> HTMLResponse:
    """A page, with the flash left by the last action (shown once) and the console's headers."""
    flash = signer(request).unseal(request.cookies.get(FLASH_COOKIE))
    response = templates.TemplateResponse(
        request, template, {"staff": staff, "flash": flash, **context}, status_code=status, headers=HEADERS
    )
    if flash is not None:
        drop_cookie(response, FLASH_COOKIE)
    return response


def problems(exc: ValidationError) -> str:
    """A form's validation errors in the words REST answers them with (api/errors.py)."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{field}: {error.get('msg', '')}" if field else str(error.get("msg", "")))
    return "; ".join(parts) or "invalid form"


def blank_to_none(form: dict[str, Any]) -> dict[str, Any]:
    """An empty field is a field not given, as an absent query parameter or JSON member is in REST."""
    return {k: v.strip() if isinstance(v, str) else v for k, v in form.items() if v not in ("", None)}
