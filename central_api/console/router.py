"""The operators' console: server-rendered pages under ``/console``.

Adjudicators work the case queue and look persons up with a reason; senior adjudicators are
the second eye; registrar administrators manage kiosks and operators; auditors read the audit
trail, the fraud flags and the reports. Every page needs a signed-in session (password + TOTP)
and the right role; every form carries the session's CSRF token; nothing is cacheable.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote_plus

import httpx
import segno
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from central_api.adjudication import service as adj
from central_api.audit.models import AuditEvent
from central_api.console import images
from central_api.console.security import (
    COOKIE,
    PRE_COOKIE,
    OperatorDep,
    allow,
    check_csrf,
    image_link,
    open_link,
    secure,
    set_cookie,
)
from central_api.db import transaction
from central_api.dependencies import Registry, RegistryDep
from central_api.enrolment import service as intake
from central_api.exceptions import InvalidRequest, NotFound
from central_api.operators import oidc
from central_api.operators import service as ops
from central_api.operators.exceptions import Forbidden, SignInFailed
from central_api.operators.service import ADJUDICATORS, RSU_ROLES, NewCredentials, Role, Signed
from central_api.rsu import service as rsu
from central_api.rsu.exceptions import RSURefusal
from central_api.rsu.schemas import REFERENCE_PATTERN, AppealIn, AppealMove, AppealState
from central_api.rsu.scoring import Language, Relation

router = APIRouter(prefix="/console", include_in_schema=False)
log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
CSRF = Annotated[str, Form()]


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["age"] = _age
    env.filters["when"] = lambda d: (
        "-" if d is None else d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    )
    return env


def _age(seconds: float | Any) -> str:
    s = seconds.total_seconds() if hasattr(seconds, "total_seconds") else float(seconds)
    if s < 3600:
        return f"{int(s // 60)} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def page(name: str, op: Signed | None, http_status: int = 200, **ctx: object) -> HTMLResponse:
    """A console page with the console's headers."""
    html = _env().get_template(name).render(op=op, Role=Role, **ctx)
    return secure(HTMLResponse(html, status_code=http_status))  # type: ignore[return-value]


def error_page(op: Signed | None, status: int, message: str) -> HTMLResponse:
    """The page a refused console request gets."""
    return page("error.html", op, http_status=status, message=message)


def _see(url: str) -> RedirectResponse:
    return secure(RedirectResponse(url, status_code=303))  # type: ignore[return-value]


def _mark(op: Signed) -> str:
    return f"{op.operator_id} {datetime.now(UTC):%Y-%m-%d %H:%M}Z RNP CONFIDENTIAL"


# ------------------------------------------------------------------------- sign-in
@router.get("/login", response_class=HTMLResponse)
def login_form(reg: RegistryDep, error: str | None = None) -> HTMLResponse:
    """The sign-in page (account, password, TOTP code)."""
    token = secrets.token_urlsafe(24)
    oidc_on = reg.settings.console_oidc_issuer is not None
    response = page("login.html", None, csrf=token, error=error, oidc=oidc_on)
    set_cookie(response, PRE_COOKIE, token, reg.settings.console_cookie_secure)
    return response


@router.post("/login")
def login(
    request: Request,
    reg: RegistryDep,
    operator: Annotated[str, Form(max_length=40)],
    password: Annotated[str, Form(max_length=200)],
    code: Annotated[str, Form(max_length=10)],
    csrf: CSRF,
) -> Response:
    """Check the three together; a session cookie on success."""
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not secrets.compare_digest(pre.encode(), csrf.encode()):
        return login_form(reg, error="The sign-in form expired: try again.")
    with transaction(reg.sessions) as s:
        op = ops.sign_in(s, reg.cipher, operator, password, code)
        token = None if op is None else ops.open_session(s, op.id)[0]
    if token is None:
        raise SignInFailed("wrong account, password or code")
    response = _see("/console/")
    set_cookie(response, COOKIE, token, reg.settings.console_cookie_secure)
    response.delete_cookie(PRE_COOKIE, path="/console")
    return response


OIDC_COOKIE = "rnp_console_oidc"


@router.get("/oidc/login")
def oidc_login(reg: RegistryDep) -> Response:
    """Sign in at the ministry's identity provider (OpenID Connect)."""
    provider = reg.settings.oidc_provider()
    if provider is None:
        raise NotFound("sign-in through an identity provider is not configured")
    try:
        url, state = oidc.begin(provider, reg.console_key)
    except httpx.HTTPError as exc:
        raise SignInFailed("the identity provider cannot be reached") from exc
    response = _see(url)
    # Lax, not Strict: the provider sends the browser back with a cross-site navigation
    response.set_cookie(
        OIDC_COOKIE,
        state,
        max_age=oidc.STATE_SECONDS,
        httponly=True,
        secure=reg.settings.console_cookie_secure,
        samesite="lax",
        path="/console/oidc",
    )
    return response


@router.get("/oidc/callback")
def oidc_callback(
    request: Request,
    reg: RegistryDep,
    state: Annotated[str, Query(max_length=200)] = "",
    code: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """The provider's answer: a verified ID token of a linked, active account opens a
    session; anything else is refused with the sign-in page."""
    provider = reg.settings.oidc_provider()
    if provider is None:
        raise NotFound("sign-in through an identity provider is not configured")
    try:
        subject = oidc.finish(
            provider, reg.console_key, request.cookies.get(OIDC_COOKIE), state, code
        )
    except SignInFailed as exc:
        log.warning("identity provider sign-in refused: %s", exc.detail)
        raise
    with transaction(reg.sessions) as s:
        op = ops.sign_in_oidc(s, subject)
        token = None if op is None else ops.open_session(s, op.id)[0]
    if token is None:
        raise SignInFailed("no active account is linked to this identity")
    # a page, not a redirect: the session cookie is SameSite=Strict, and a browser sends it
    # only on a navigation that starts here, not on one the provider's redirect started
    response = page("signed_in.html", None)
    set_cookie(response, COOKIE, token, reg.settings.console_cookie_secure)
    response.delete_cookie(OIDC_COOKIE, path="/console/oidc")
    return response


@router.post("/logout")
def logout(request: Request, reg: RegistryDep, op: OperatorDep, csrf: CSRF) -> Response:
    """End the session."""
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        ops.close_session(s, request.cookies.get(COOKIE))
    response = _see("/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/account", response_class=HTMLResponse)
def account(op: OperatorDep, done: bool = False) -> HTMLResponse:
    """Change one's password (required after a new account or a reset)."""
    return page("account.html", op, done=done, error=None)


@router.post("/account")
def change_password(
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    current: Annotated[str, Form(max_length=200)],
    new: Annotated[str, Form(max_length=200)],
    again: Annotated[str, Form(max_length=200)],
) -> Response:
    check_csrf(op, csrf)
    if new != again:
        return page(
            "account.html", op, http_status=422, done=False, error="The two new passwords differ."
        )
    try:
        with transaction(reg.sessions) as s:
            ops.change_password(s, op.operator_id, current, new)
    except InvalidRequest as exc:
        return page("account.html", op, http_status=422, done=False, error=str(exc.detail))
    return _see("/console/account?done=1")


# ------------------------------------------------------------------------- dashboard
@router.get("/", response_class=HTMLResponse)
def dashboard(reg: RegistryDep, op: OperatorDep) -> Response:
    """Queue depth and age, decisions, throughput, overturned leanings, error estimates,
    kiosks' last contact."""
    if op.must_change_password:
        return _see("/console/account")
    if op.role in RSU_ROLES:
        return _see("/console/rsu")
    with reg.sessions() as s:
        report = adj.report(s)
    return page("dashboard.html", op, r=report, sla_hours=adj.SLA_HOURS)


# ------------------------------------------------------------------------- the queue
@router.get("/cases", response_class=HTMLResponse)
def cases(
    reg: RegistryDep,
    op: OperatorDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    reason: Annotated[str | None, Query(max_length=20)] = None,
    message: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    """The work queue, oldest first."""
    allow(op, *ADJUDICATORS)
    with transaction(reg.sessions) as s:
        rows = adj.queue(s, op, status or None, reason or None)
    return page(
        "queue.html",
        op,
        rows=rows,
        status=status,
        reason=reason,
        message=message,
        sla=adj.SLA_HOURS,
    )


@router.post("/cases/next")
def next_case(reg: RegistryDep, op: OperatorDep, csrf: CSRF) -> Response:
    """Claim the oldest case one may take."""
    allow(op, *ADJUDICATORS)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        case_id = adj.claim_next(s, op)
    if case_id is None:
        return _see("/console/cases?message=No+case+is+waiting+for+you.")
    return _see(f"/console/cases/{case_id}")


@router.post("/cases/{case_id}/claim")
def claim(reg: RegistryDep, op: OperatorDep, case_id: int, csrf: CSRF) -> Response:
    """Take one case from the queue."""
    allow(op, *ADJUDICATORS)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        adj.claim(s, case_id, op)
    return _see(f"/console/cases/{case_id}")


@router.post("/cases/{case_id}/release")
def release(reg: RegistryDep, op: OperatorDep, case_id: int, csrf: CSRF) -> Response:
    """Give a case back to the queue."""
    allow(op, *ADJUDICATORS)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        adj.release(s, case_id, op)
    return _see("/console/cases")


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case(reg: RegistryDep, op: OperatorDep, case_id: int) -> HTMLResponse:
    """The case: probe and candidates side by side (only for the adjudicator holding it)."""
    allow(op, *ADJUDICATORS)
    with transaction(reg.sessions) as s:
        view = adj.view_case(s, reg.cipher, case_id, op)
    key = reg.console_key
    links: dict[str, str] = {}
    if view.probe.enrolment_id is not None:
        links["probe"] = image_link(key, op, "face", view.probe.enrolment_id)
    for c in view.candidates:
        if c.side.enrolment_id is not None:
            links[f"face-{c.person_id}"] = image_link(key, op, "face", c.side.enrolment_id)
        for p in range(1, 11):
            links[f"finger-{c.person_id}-{p}"] = image_link(
                key, op, "finger", case_id, c.person_id, p
            )
    return page(
        "case.html",
        op,
        v=view,
        links=links,
        reasons=adj.REASONS,
        review_reasons=adj.REVIEW_REASONS,
        Decision=adj.Decision,
    )


@router.post("/cases/{case_id}/decide")
def decide(
    reg: RegistryDep,
    op: OperatorDep,
    case_id: int,
    csrf: CSRF,
    decision: Annotated[str, Form(max_length=24)],
    reason_code: Annotated[str, Form(max_length=40)],
    note: Annotated[str, Form(max_length=2000)] = "",
    candidate: Annotated[int | None, Form()] = None,
) -> Response:
    """A first decision (it may wait for a second eye)."""
    allow(op, *ADJUDICATORS)
    check_csrf(op, csrf)
    try:
        chosen = adj.Decision(decision)
    except ValueError as exc:
        raise InvalidRequest("unknown decision") from exc
    done = adj.decide(
        reg.sessions,
        reg.cipher,
        reg.dedup.service,
        case_id,
        op,
        chosen,
        reason_code,
        note,
        candidate,
    )
    return _see(f"/console/cases?message={_DONE[done]}")


@router.post("/cases/{case_id}/review")
def review(
    reg: RegistryDep,
    op: OperatorDep,
    case_id: int,
    csrf: CSRF,
    verdict: Annotated[str, Form(max_length=10)],
    reason_code: Annotated[str, Form(max_length=40)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A senior's second eye: confirm the first decision or send the case back."""
    allow(op, Role.SENIOR_ADJUDICATOR)
    check_csrf(op, csrf)
    if verdict not in ("confirm", "return"):
        raise InvalidRequest("confirm or return")
    done = adj.review(
        reg.sessions,
        reg.cipher,
        reg.dedup.service,
        case_id,
        op,
        verdict == "confirm",
        reason_code,
        note,
    )
    return _see(f"/console/cases?message={_DONE[done]}")


_DONE = {
    adj.CaseStatus.SECOND_REVIEW: "Decision+recorded:+it+waits+for+a+second+adjudicator.",
    adj.CaseStatus.CLOSED: "Decision+recorded+and+in+effect.",
    adj.CaseStatus.OPEN: "The+case+went+back+to+the+queue.",
    "reopened": "Someone+enrolled+since+resembles+this+person:+the+case+is+back+in+the+queue.",
}


# ------------------------------------------------------------------------- images
@router.get("/img/{token}.png")
def image(reg: RegistryDep, op: OperatorDep, token: str) -> Response:
    """A face or finger image of a case or look-up, watermarked; never cached."""
    allow(op, *ADJUDICATORS)
    kind, ids = open_link(reg.console_key, op, token)

    def draw() -> bytes:
        with transaction(reg.sessions) as s:
            if kind == "face":
                return images.face_png(adj.face_image_of(s, reg.cipher, ids[0]), _mark(op))
            if kind == "finger":
                case_id, person_id, position = ids
                ev = adj.finger_evidence(s, reg.cipher, case_id, person_id, position, op)
                sc = ev.score
                title = (
                    f"{adj.finger_name(position)}: "
                    + (f"{sc['bits']:.1f} bits, LLR {sc['llr']:+.2f}" if sc else "not compared")
                    + f", {len(ev.pairs)} pairs"
                )
                return images.finger_png(ev, title, _mark(op))
        raise NotFound("no such image")

    return secure(Response(draw(), media_type="image/png"))


# ------------------------------------------------------------------------- look-ups
@router.get("/lookup", response_class=HTMLResponse)
def lookup_form(op: OperatorDep) -> HTMLResponse:
    """Find a person by IDCS, receipt or packet id, with a reason."""
    allow(op, *ADJUDICATORS)
    return page("lookup.html", op, kinds=adj.LOOKUP_KINDS, reasons=adj.LOOKUP_REASONS, found=None)


@router.post("/lookup", response_class=HTMLResponse)
def lookup(
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    kind: Annotated[str, Form(max_length=10)],
    value: Annotated[str, Form(max_length=64)],
    reason: Annotated[str, Form(max_length=40)] = "",
) -> HTMLResponse:
    allow(op, *ADJUDICATORS)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        found = adj.lookup(s, reg.cipher, op, kind, value, reason)
    links = {
        side.enrolment_id: image_link(reg.console_key, op, "face", side.enrolment_id)
        for person in found
        for side in person.enrolments
        if side.enrolment_id is not None
    }
    return page(
        "lookup.html",
        op,
        kinds=adj.LOOKUP_KINDS,
        reasons=adj.LOOKUP_REASONS,
        found=found,
        links=links,
        asked={"kind": kind, "value": value, "reason": reason},
    )


# ------------------------------------------------------------------------- the RSU
def _rsu_actor(op: Signed) -> str:
    return f"console:{op.operator_id}"


@router.get("/rsu", response_class=HTMLResponse)
def rsu_home(
    reg: RegistryDep, op: OperatorDep, reference: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    """RSU agents: open a household by its reference; the appeals whose answer is late."""
    allow(op, *RSU_ROLES)
    ref = reference.strip().upper()
    if ref:
        return _see(f"/console/rsu/households/{ref}")
    with transaction(reg.sessions) as s:
        late = rsu.overdue_appeals(s, reg.cipher, _rsu_actor(op))
    return page("rsu.html", op, household=None, late=late, pattern=REFERENCE_PATTERN)


@router.get("/rsu/households/{reference}", response_class=HTMLResponse)
def rsu_household(
    reference: str,
    reg: RegistryDep,
    op: OperatorDep,
    lang: Annotated[Language, Query()] = Language.FR,
    version: Annotated[int | None, Query(ge=1)] = None,
    message: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """A household: members over time, decisions with their versions and why (in ``lang``),
    declaration versions (one opened with ``version``), appeals and their clocks. Every
    view is audited."""
    allow(op, *RSU_ROLES)
    if not rsu.valid_reference(reference):
        raise NotFound("no household has this reference")
    actor = _rsu_actor(op)
    with transaction(reg.sessions) as s:
        scorer = rsu.scorer_for(reg.settings.rsu_model, reg.settings.rsu_thresholds_file)
        view = rsu.view_household(s, reg.cipher, scorer, reference, actor, lang)
        versions = rsu.list_versions(s, reference, actor)
        decisions = rsu.list_decisions(s, reg.cipher, reference, actor)
        appeals = rsu.list_appeals(s, reg.cipher, reference, actor)
        opened = rsu.view_version(s, reg.cipher, reference, version, actor) if version else None
    return page(
        "rsu.html",
        op,
        household=view,
        versions=versions,
        decisions=decisions,
        appeals=appeals,
        opened=opened,
        lang=lang,
        languages=list(Language),
        states=AppealState,
        relations=[r for r in Relation if r is not Relation.DECLARANT],
        message=message,
    )


@router.post("/rsu/households/{reference}/appeals", response_model=None)
def rsu_file_appeal(
    reference: str,
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    decision_id: Annotated[int, Form(ge=1)],
    grounds: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """File a citizen's appeal against a rejection (within 15 days of it)."""
    allow(op, *RSU_ROLES)
    check_csrf(op, csrf)
    body = AppealIn(decision_id=decision_id, grounds=grounds.strip() or None)

    def file(s: Session) -> str:
        return (
            f"appeal {rsu.submit_appeal(s, reg.cipher, reference, body, _rsu_actor(op)).id} filed"
        )

    return _rsu_change(reg, reference, file)


@router.post("/rsu/households/{reference}/transfer", response_model=None)
def rsu_transfer(
    reference: str,
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    idcs: Annotated[str, Form(pattern=r"^[0-9]{10}$")],
    relation: Annotated[Relation, Form()],
) -> Response:
    """Move a person into this household (their membership elsewhere is closed, the history
    stays); the declarant then declares the household again with them."""
    allow(op, *RSU_ROLES)
    check_csrf(op, csrf)

    def transfer(s: Session) -> str:
        rsu.transfer_member(s, idcs, reference, relation, _rsu_actor(op))
        return "member moved in"

    return _rsu_change(reg, reference, transfer)


@router.post("/rsu/appeals/{appeal_id}/state", response_model=None)
def rsu_move_appeal(
    appeal_id: int,
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    reference: Annotated[str, Form(pattern=REFERENCE_PATTERN)],
    state: Annotated[AppealState, Form()],
    answer: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Move an appeal along: under review, then upheld or corrected (with the answer)."""
    allow(op, *RSU_ROLES)
    check_csrf(op, csrf)
    move = AppealMove(state=state, answer=answer.strip() or None)

    def advance(s: Session) -> str:
        rsu.move_appeal(s, reg.cipher, appeal_id, move, _rsu_actor(op))
        return f"appeal {appeal_id} {state.value}"

    return _rsu_change(reg, reference, advance)


def _rsu_change(reg: Registry, reference: str, change: Callable[[Session], str]) -> Response:
    """Make ``change`` in one transaction, then back to the household's page with what it
    says was done, or with why the registry refused it (nothing changed then)."""
    try:
        with transaction(reg.sessions) as s:
            message = change(s)
    except RSURefusal as exc:
        message = str(exc)
    return _see(f"/console/rsu/households/{reference}?message={quote_plus(message[:200])}")


# ------------------------------------------------------------------------- auditors
@router.get("/fraud", response_class=HTMLResponse)
def fraud(reg: RegistryDep, op: OperatorDep) -> HTMLResponse:
    """One person, two identities: the flags adjudicators raised."""
    allow(op, Role.AUDITOR, Role.SENIOR_ADJUDICATOR)
    with reg.sessions() as s:
        flags = adj.fraud_flags(s)
    return page("fraud.html", op, flags=flags)


@router.get("/audit", response_class=HTMLResponse)
def audit(
    reg: RegistryDep,
    op: OperatorDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """The latest audit rows (identifiers and decisions only: no personal data)."""
    allow(op, Role.AUDITOR)
    q = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(300)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if action:
        q = q.where(AuditEvent.action == action)
    with reg.sessions() as s:
        rows = list(s.scalars(q))
    return page("audit.html", op, rows=rows, actor=actor, action=action)


# ------------------------------------------------------------------------- registrar admin
@router.get("/kiosks", response_class=HTMLResponse)
def kiosks(reg: RegistryDep, op: OperatorDep, message: str | None = None) -> HTMLResponse:
    """Registered kiosks: register, rotate a key, deactivate."""
    allow(op, Role.REGISTRAR_ADMIN)
    with reg.sessions() as s:
        rows = adj.kiosks_last_contact(s)
    return page("kiosks.html", op, kiosks=rows, message=message)


def _public_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("the public key is not base64") from exc
    if len(key) != 32:
        raise InvalidRequest("an Ed25519 public key is 32 bytes")
    return key


@router.post("/kiosks")
def kiosk_add(
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    kiosk_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9_.\-]{3,64}$")],
    public_key: Annotated[str, Form(max_length=100)],
) -> Response:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        intake.register_kiosk(s, kiosk_id, _public_key(public_key), actor=op.operator_id)
    return _see(f"/console/kiosks?message=Kiosk+{kiosk_id}+registered.")


@router.post("/kiosks/{kiosk_id}/rotate")
def kiosk_rotate(
    reg: RegistryDep,
    op: OperatorDep,
    kiosk_id: str,
    csrf: CSRF,
    public_key: Annotated[str, Form(max_length=100)],
) -> Response:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        intake.rotate_kiosk(s, kiosk_id, _public_key(public_key), actor=op.operator_id)
    return _see(f"/console/kiosks?message=Kiosk+{kiosk_id}:+key+rotated.")


@router.post("/kiosks/{kiosk_id}/deactivate")
def kiosk_deactivate(
    reg: RegistryDep,
    op: OperatorDep,
    kiosk_id: str,
    csrf: CSRF,
    reason: Annotated[str, Form(min_length=3, max_length=200)],
) -> Response:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        intake.deactivate_kiosk(s, kiosk_id, actor=op.operator_id, reason=reason)
    return _see(f"/console/kiosks?message=Kiosk+{kiosk_id}+deactivated.")


@router.get("/kiosk-operators", response_class=HTMLResponse)
def kiosk_operators(reg: RegistryDep, op: OperatorDep) -> HTMLResponse:
    """Agents and supervisors of the kiosks: synced to each kiosk in a signed list."""
    allow(op, Role.REGISTRAR_ADMIN)
    with reg.sessions() as s:
        rows = intake.list_kiosk_operators(s)
    return page("kiosk_operators.html", op, rows=rows, pin=None)


@router.post("/kiosk-operators", response_class=HTMLResponse)
def kiosk_operator_set(
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    operator_id: Annotated[str, Form(max_length=40)],
    role: Annotated[str, Form(max_length=12)],
    kiosks: Annotated[str, Form(max_length=2000)] = "*",
) -> HTMLResponse:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        _, pin = intake.set_kiosk_operator(s, operator_id, role, kiosks, op.operator_id)
    with reg.sessions() as s:
        rows = intake.list_kiosk_operators(s)
    return page("kiosk_operators.html", op, rows=rows, pin=(operator_id, pin))


@router.post("/kiosk-operators/{operator_id}/disable")
def kiosk_operator_disable(
    reg: RegistryDep,
    op: OperatorDep,
    operator_id: str,
    csrf: CSRF,
    reason: Annotated[str, Form(min_length=3, max_length=200)],
) -> Response:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        intake.disable_kiosk_operator(s, operator_id, op.operator_id, reason)
    return _see("/console/kiosk-operators")


@router.get("/operators", response_class=HTMLResponse)
def operators(reg: RegistryDep, op: OperatorDep) -> HTMLResponse:
    """Console accounts: add, disable, reset."""
    allow(op, Role.REGISTRAR_ADMIN)
    with reg.sessions() as s:
        rows = ops.list_operators(s)
    return page(
        "operators.html", op, rows=rows, roles=list(Role), creds=None, now=datetime.now(UTC)
    )


def _credentials_page(reg: RegistryDep, op: Signed, creds: NewCredentials) -> HTMLResponse:
    with reg.sessions() as s:
        rows = ops.list_operators(s)
    qr = segno.make(creds.uri, error="m").svg_data_uri(scale=4)
    return page(
        "operators.html", op, rows=rows, roles=list(Role), creds=creds, qr=qr, now=datetime.now(UTC)
    )


@router.post("/operators", response_class=HTMLResponse)
def operator_add(
    reg: RegistryDep,
    op: OperatorDep,
    csrf: CSRF,
    operator_id: Annotated[str, Form(max_length=40)],
    role: Annotated[str, Form(max_length=24)],
) -> HTMLResponse:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        creds = ops.add_operator(s, reg.cipher, operator_id, role, actor=op.operator_id)
    return _credentials_page(reg, op, creds)


@router.post("/operators/{operator_id}/reset", response_class=HTMLResponse)
def operator_reset(reg: RegistryDep, op: OperatorDep, operator_id: str, csrf: CSRF) -> HTMLResponse:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    with transaction(reg.sessions) as s:
        creds = ops.reset_operator(s, reg.cipher, operator_id, actor=op.operator_id)
    return _credentials_page(reg, op, creds)


@router.post("/operators/{operator_id}/disable")
def operator_disable(
    reg: RegistryDep,
    op: OperatorDep,
    operator_id: str,
    csrf: CSRF,
    reason: Annotated[str, Form(min_length=3, max_length=200)],
) -> Response:
    allow(op, Role.REGISTRAR_ADMIN)
    check_csrf(op, csrf)
    if operator_id == op.operator_id:
        raise Forbidden("you cannot disable your own account")
    with transaction(reg.sessions) as s:
        ops.disable_operator(s, operator_id, op.operator_id, reason)
    return _see("/console/operators")


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The console's stylesheet."""
    path = _HERE / "static" / name
    if name not in {"console.css"} or not path.is_file():
        raise NotFound("not found")
    return secure(FileResponse(path, media_type="text/css"))
