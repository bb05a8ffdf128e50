"""Console sign-in through the ministry's identity provider (OpenID Connect, authorization
code flow with PKCE).

The provider proves who the person is (and that they passed its second factor: the ID
token's ``amr`` must name one); the registry decides what they may do: an account must exist
here with that provider subject (``Operator.oidc_subject``, set by ``central-api operator-link``)
and be active, and its role is the registry's, never a claim of the provider's.

- ``begin``: a random ``state``, ``nonce`` and PKCE verifier, kept in a short-lived cookie
  MAC'd with the console key, and the provider's authorization URL;
- ``finish``: the cookie's state must match, the code is exchanged at the token endpoint
  (client secret, PKCE verifier), the ID token is verified (signature against the provider's
  JWKS, RS256 or ES256 only; issuer, audience, expiry, nonce, a second factor in ``amr``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from central_api.operators.exceptions import SignInFailed

STATE_SECONDS = 600  # the provider's sign-in must come back within this
ALGORITHMS = ["RS256", "ES256"]  # asymmetric only: never "none", never HS256 with a public key
SECOND_FACTORS = {"mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "pin", "sc"}  # RFC 8176


@dataclass(frozen=True)
class Provider:
    """The identity provider as the registry is configured for it."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str  # this registry's /console/oidc/callback, as registered at the provider
    require_second_factor: bool = True
    timeout: float = 10.0

    def _get(self, url: str) -> dict[str, Any]:
        r = httpx.get(url, timeout=self.timeout)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def discovery(self) -> dict[str, Any]:
        """The provider's metadata (``/.well-known/openid-configuration``), checked to be its."""
        meta = self._get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if meta.get("issuer") != self.issuer:
            raise SignInFailed("the identity provider's metadata names another issuer")
        return meta


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(key: bytes, body: bytes) -> str:
    return _b64(hmac.new(key, b"oidc-state" + body, hashlib.sha256).digest())


def begin(provider: Provider, key: bytes) -> tuple[str, str]:
    """Start a sign-in: (the provider's authorization URL, the state cookie's value)."""
    meta = provider.discovery()
    state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    body = json.dumps([state, nonce, verifier, int(time.time()) + STATE_SECONDS]).encode()
    cookie = f"{_b64(body)}.{_mac(key, body)}"
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": provider.redirect_uri,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{meta['authorization_endpoint']}?{query}", cookie


def _state(key: bytes, cookie: str | None) -> tuple[str, str, str]:
    try:
        body_b64, mac = (cookie or "").split(".")
        body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
    except ValueError as exc:
        raise SignInFailed("the sign-in expired or was not started here: try again") from exc
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise SignInFailed("the sign-in expired or was not started here: try again")
    state, nonce, verifier, until = json.loads(body)
    if time.time() > until:
        raise SignInFailed("the sign-in expired: try again")
    return str(state), str(nonce), str(verifier)


def finish(provider: Provider, key: bytes, cookie: str | None, state: str, code: str) -> str:
    """Complete a sign-in: the provider subject (``sub``) whose ID token verified; else
    SignInFailed (the reason is for the log, the person sees one message)."""
    expected, nonce, verifier = _state(key, cookie)
    if not hmac.compare_digest(expected.encode(), state.encode()):
        raise SignInFailed("the sign-in does not match the one started here")
    meta = provider.discovery()
    try:
        r = httpx.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": provider.redirect_uri,
                "client_id": provider.client_id,
                "client_secret": provider.client_secret,
                "code_verifier": verifier,
            },
            timeout=provider.timeout,
        )
        r.raise_for_status()
        id_token = r.json()["id_token"]
        keys = jwt.PyJWKSet.from_dict(provider._get(meta["jwks_uri"]))
        kid = jwt.get_unverified_header(id_token).get("kid")
        jwk = next((k for k in keys.keys if kid is None or k.key_id == kid), None)
        if jwk is None:
            raise SignInFailed("the ID token's key is not the provider's")
        claims = jwt.decode(
            id_token,
            jwk.key,
            algorithms=ALGORITHMS,
            audience=provider.client_id,
            issuer=provider.issuer,
            leeway=60,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
        )
    except (httpx.HTTPError, KeyError, ValueError, jwt.PyJWTError) as exc:
        raise SignInFailed(f"the identity provider's answer is not valid: {exc}") from exc
    if not hmac.compare_digest(str(claims["nonce"]).encode(), nonce.encode()):
        raise SignInFailed("the ID token's nonce is not this sign-in's")
    if provider.require_second_factor and not SECOND_FACTORS & set(claims.get("amr") or []):
        raise SignInFailed("the identity provider did not check a second factor")
    return str(claims["sub"])
