"""The console's sign-in: a session cookie that holds only the key's id, signed by the API process, and
CSRF tokens tied to the session (or, on the sign-in form, to a cookie of its own)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response

SESSION_COOKIE = "console_session"
SIGN_IN_COOKIE = "console_sign_in"  # the sign-in form's CSRF nonce, before there is a session
FLASH_COOKIE = "console_flash"  # what the last action did, shown once on the page it redirects to
PATH = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    key_id: int
    expires: int  # unix seconds
    nonce: str  # per sign-in: the CSRF token is derived from it


class Signer:
    """Signs and checks the console's cookies and tokens with one secret (HMAC-SHA256)."""

    def __init__(self, secret: bytes, hours: float) -> None:
        self.secret, self.lifetime = secret, int(hours * 3600)

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: int) -> tuple[str, ConsoleSession]:
        session = ConsoleSession(key_id, int(time.time()) + self.lifetime, secrets.token_urlsafe(16))
        body = f"{session.key_id}.{session.expires}.{session.nonce}"
        return f"{body}.{self._mac('session', body)}", session

    def read(self, value: str | None) -> ConsoleSession | None:
        """The session the cookie stands for, or None when it is missing, forged or expired."""
        if not value or len(value) > 200:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        key_id, expires, nonce = body.split(".")
        if int(expires) < time.time():
            return None
        return ConsoleSession(int(key_id), int(expires), nonce)

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def csrf_ok(self, nonce: str, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token, self.csrf(nonce))

    def seal(self, text: str) -> str:
        """A short text signed, in cookie-safe characters."""
        encoded = base64.urlsafe_b64encode(text.encode()).decode()
        return f"{self._mac('flash', encoded)}.{encoded}"

    def unseal(self, value: str | None) -> str | None:
        mac, _, encoded = (value or "").partition(".")
        if not encoded or not hmac.compare_digest(mac, self._mac("flash", encoded)):
            return None
        return base64.urlsafe_b64decode(encoded).decode()


def signer(request: Request) -> Signer:
    value: Signer = request.app.state.console_signer
    return value


def set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None = None
) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's form sends it), only under /console;
    Secure when the console is served over HTTPS."""
    secure = request.url.scheme == "https"
    response.set_cookie(
        name, value, max_age=max_age, path=PATH, httponly=True, samesite="strict", secure=secure
    )


def drop_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path=PATH, httponly=True, samesite="strict")
