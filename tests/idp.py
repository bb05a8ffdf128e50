"""A small OpenID Connect provider for the console's sign-in tests: discovery, JWKS, an
authorization endpoint that signs in whoever the test says (no login page), and a token
endpoint that checks the client secret, the redirect URI and the PKCE verifier, then issues an
RS256 ID token. ``tamper`` makes it misbehave the ways a hostile or broken provider could."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import JSONResponse, RedirectResponse
from helpers import free_port

CLIENT_ID, CLIENT_SECRET = "rnp-console", "client-secret-for-tests"


class Provider:
    """The provider's state: its key, the next person to sign in, issued codes."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        self.subject = "ministry-user-1"
        self.amr: list[str] = ["pwd", "otp"]
        self.tamper: str | None = None  # nonce | audience | expired | alg_hs256 | other_key
        self.codes: dict[str, dict[str, Any]] = {}

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": "someone-else" if self.tamper == "audience" else CLIENT_ID,
            "iat": now - (7200 if self.tamper == "expired" else 0),
            "exp": now + (-3600 if self.tamper == "expired" else 300),
            "nonce": "not-the-nonce" if self.tamper == "nonce" else nonce,
            "amr": self.amr,
        }
        if self.tamper == "alg_hs256":  # a token MAC'd with the public key as the secret
            return jwt.encode(claims, "public-key-as-secret-0123456789abcdef", algorithm="HS256")
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if self.tamper == "other_key"
            else self.key
        )
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})


def _app(p: Provider) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, str]:
        return {
            "issuer": p.issuer,
            "authorization_endpoint": f"{p.issuer}/authorize",
            "token_endpoint": f"{p.issuer}/token",
            "jwks_uri": f"{p.issuer}/jwks",
        }

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return p.jwks()

    @app.get("/authorize")
    def authorize(
        client_id: str,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
        code_challenge_method: str,
        response_type: str,
        scope: str,
    ) -> RedirectResponse:
        if client_id != CLIENT_ID or code_challenge_method != "S256" or "openid" not in scope:
            raise HTTPException(400, "bad request")
        code = secrets.token_urlsafe(16)
        p.codes[code] = {"nonce": nonce, "challenge": code_challenge, "redirect": redirect_uri}
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    @app.post("/token")
    def token(
        grant_type: str = Form(),
        code: str = Form(),
        redirect_uri: str = Form(),
        client_id: str = Form(),
        client_secret: str = Form(),
        code_verifier: str = Form(),
    ) -> JSONResponse:
        issued = p.codes.pop(code, None)  # a code works once
        digest = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest())
        if (
            issued is None
            or grant_type != "authorization_code"
            or client_id != CLIENT_ID
            or client_secret != CLIENT_SECRET
            or redirect_uri != issued["redirect"]
            or digest.decode().rstrip("=") != issued["challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse({"id_token": p.id_token(issued["nonce"]), "token_type": "Bearer"})

    return app


@contextmanager
def provider() -> Iterator[Provider]:
    """A provider served on 127.0.0.1 until the block ends."""
    port = free_port()
    p = Provider(f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(_app(p), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield p
    finally:
        server.should_exit = True
        thread.join(10)
