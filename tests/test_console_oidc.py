"""Console sign-in through an OpenID Connect provider (``tests/idp.py``, a real HTTP provider
on 127.0.0.1): the authorization code flow with PKCE ends in a console session for the
account linked to the provider's subject; a forged, expired, mis-addressed, replayed or
single-factor ID token, an unknown subject or a disabled account do not."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import Registry
from idp import CLIENT_ID, CLIENT_SECRET, Provider, provider
from sqlalchemy import select

from central_api.audit.models import AuditEvent
from central_api.db import transaction
from central_api.operators import service as ops

BASE = "https://testserver"


@pytest.fixture
def oidc(registry_factory) -> Iterator[tuple[Registry, Provider]]:  # type: ignore[no-untyped-def]
    with provider() as idp:
        reg = registry_factory(
            console_oidc_issuer=idp.issuer,
            console_oidc_client_id=CLIENT_ID,
            console_oidc_client_secret=CLIENT_SECRET,
            console_oidc_redirect_uri=f"{BASE}/console/oidc/callback",
        )
        registry = reg.app.state.registry
        with transaction(registry.sessions) as s:
            ops.add_operator(s, registry.cipher, "adj.sso", "adjudicator", "test")
            ops.link_oidc(s, "adj.sso", idp.subject, "test")
        yield reg, idp


def sign_in(reg: Registry) -> tuple[TestClient, httpx.Response]:
    """Click "sign in with the ministry's account", let the provider answer, come back."""
    c = TestClient(reg.app, base_url=BASE, follow_redirects=False)
    assert "/console/oidc/login" in c.get("/console/login").text
    r = c.get("/console/oidc/login")
    assert r.status_code == 303
    at_provider = httpx.get(r.headers["location"], follow_redirects=False)
    assert at_provider.status_code in (302, 307), at_provider.text
    back = urlparse(at_provider.headers["location"])
    assert back.path == "/console/oidc/callback"
    return c, c.get(f"/console/oidc/callback?{back.query}")


def test_the_provider_signs_a_linked_operator_in(oidc) -> None:  # type: ignore[no-untyped-def]
    reg, _ = oidc
    c, r = sign_in(reg)
    assert r.status_code == 200 and 'http-equiv="refresh"' in r.text
    cookie = r.headers["set-cookie"].lower()
    assert "rnp_console=" in cookie and "samesite=strict" in cookie and "httponly" in cookie
    assert c.get("/console/cases").status_code == 200  # the role is the registry's
    assert c.get("/console/operators").status_code == 403
    with reg.app.state.registry.sessions() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "operator.signed_in")).one()
        assert event.actor == "adj.sso" and event.details["method"] == "oidc"


@pytest.mark.parametrize("tamper", ["nonce", "audience", "expired", "alg_hs256", "other_key"])
def test_a_bad_id_token_is_refused(oidc, tamper: str) -> None:  # type: ignore[no-untyped-def]
    reg, idp = oidc
    idp.tamper = tamper
    c, r = sign_in(reg)
    assert r.status_code == 401 and "Wrong account" in r.text
    assert c.get("/console/cases").status_code == 303  # not signed in


def test_no_second_factor_unknown_subject_or_disabled_account_is_refused(oidc) -> None:  # type: ignore[no-untyped-def]
    reg, idp = oidc
    idp.amr = ["pwd"]
    assert sign_in(reg)[1].status_code == 401
    idp.amr = ["pwd", "otp"]
    idp.subject = "someone-not-linked"
    assert sign_in(reg)[1].status_code == 401
    idp.subject = "ministry-user-1"
    registry = reg.app.state.registry
    with transaction(registry.sessions) as s:
        ops.disable_operator(s, "adj.sso", "test", "left")
    assert sign_in(reg)[1].status_code == 401


def test_the_state_must_be_this_browsers(oidc) -> None:  # type: ignore[no-untyped-def]
    """A callback with another browser's code and state (login CSRF) is refused."""
    reg, _ = oidc
    victim = TestClient(reg.app, base_url=BASE, follow_redirects=False)
    attacker = TestClient(reg.app, base_url=BASE, follow_redirects=False)
    r = attacker.get("/console/oidc/login")
    at_provider = httpx.get(r.headers["location"], follow_redirects=False)
    query = urlparse(at_provider.headers["location"]).query
    assert victim.get(f"/console/oidc/callback?{query}").status_code == 401
    # and a code is good once: replaying the attacker's own callback fails the second time
    assert attacker.get(f"/console/oidc/callback?{query}").status_code == 200
    assert attacker.get(f"/console/oidc/callback?{query}").status_code == 401
    assert parse_qs(query)["state"]
