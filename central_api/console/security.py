"""The console's web security: the session cookie, CSRF tokens, response headers, and
short-lived image links bound to one session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from central_api.db import transaction
from central_api.dependencies import RegistryDep
from central_api.operators.exceptions import Forbidden
from central_api.operators.service import Role, Signed, current

COOKIE = "rnp_console"
PRE_COOKIE = "rnp_console_pre"  # the sign-in form's CSRF token, before there is a session
IMAGE_SECONDS = 600  # an image link works this long, in the session that got it

# Every console answer: never cached (personal data), never framed, only our own scripts
HEADERS = {
    "Cache-Control": "no-store, max-age=0",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def secure(response: Response) -> Response:
    """``response`` with the console's headers."""
    response.headers.update(HEADERS)
    return response


def set_cookie(response: Response, name: str, value: str, secure_flag: bool) -> None:
    """An HttpOnly, SameSite=Strict cookie for the console's paths."""
    response.set_cookie(
        name, value, httponly=True, secure=secure_flag, samesite="strict", path="/console"
    )


def signed_in(request: Request, reg: RegistryDep) -> Signed:
    """The operator of this request's session; NotSignedIn (the console answers with the
    sign-in page)."""
    st = reg.settings
    with transaction(reg.sessions) as s:
        return current(
            s,
            request.cookies.get(COOKIE),
            timedelta(minutes=st.console_idle_minutes),
            timedelta(hours=st.console_session_hours),
        )


OperatorDep = Annotated[Signed, Depends(signed_in)]


def check_csrf(op: Signed, token: str) -> None:
    """Forbidden unless ``token`` is this session's CSRF token (every form posts it)."""
    if not hmac.compare_digest(op.csrf.encode(), token.encode()):
        raise Forbidden("the form is stale or not this console's: reload the page")


def allow(op: Signed, *roles: Role) -> Signed:
    """``op`` if their role is one of ``roles`` (and their password is not a temporary one);
    Forbidden otherwise."""
    if op.must_change_password:
        raise Forbidden("change your temporary password first (Account)")
    if op.role not in roles:
        raise Forbidden("your role does not open this page")
    return op


def image_link(key: bytes, op: Signed, kind: str, *ids: int) -> str:
    """A link to an image that only this session can open, for ``IMAGE_SECONDS``."""
    body = json.dumps([kind, list(ids), int(time.time()) + IMAGE_SECONDS]).encode()
    mac = hmac.new(key, op.session_key.encode() + body, hashlib.sha256).digest()[:16]
    token = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return f"/console/img/{token}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}.png"


def open_link(key: bytes, op: Signed, token: str) -> tuple[str, list[int]]:
    """What an image link names; NotSignedIn-free Forbidden if it is not this session's,
    was altered or has expired."""
    try:
        body_b64, mac_b64 = token.split(".")
        body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
        mac = base64.urlsafe_b64decode(mac_b64 + "=" * (-len(mac_b64) % 4))
    except ValueError as exc:
        raise Forbidden("not an image link") from exc
    want = hmac.new(key, op.session_key.encode() + body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, want):
        raise Forbidden("this image link is not yours")
    kind, ids, until = json.loads(body)
    if time.time() > until:
        raise Forbidden("this image link has expired: reload the page")
    return str(kind), [int(i) for i in ids]
