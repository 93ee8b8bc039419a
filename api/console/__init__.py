"""The console for support and ops at /console: server-rendered pages (Jinja2, plain forms), every asset
served from here, signed in with a staff key; reads and actions go through the code REST uses."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.console import actions, pages
from api.console.common import HERE, SignInRequired
from api.console.session import Signer
from backoffice.settings import Settings


def install_console(app: FastAPI, settings: Settings) -> None:
    secret = settings.console_secret.encode() if settings.console_secret else secrets.token_bytes(32)
    app.state.console_signer = Signer(secret, settings.console_session_hours)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console_static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(_: Request, __: SignInRequired) -> RedirectResponse:
        return RedirectResponse("/console/sign-in", status_code=303)
