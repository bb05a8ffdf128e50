"""The RSU's API. For console operators (``/v1/rsu``): look a household up, its declaration
versions, its decisions with their explanation, its appeals; file an appeal on a citizen's
behalf and move it along; open to the ``rsu_agent`` role only, every view audited. For kiosks
(``/v1/kiosk/rsu``): a citizen verified 1:1 by their face sees or declares their household.

An operator proves their console session with its token, as ``Authorization: Bearer
<token>`` (a script, a kiosk-side agent tool) or the console's cookie; with the cookie,
a change must also carry the session's CSRF token in ``X-CSRF-Token``. A kiosk seals its
request as it seals a packet. The endpoints are plain functions (FastAPI runs them in its
thread pool, beside the event loop), or run their work in it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from central_api.console.security import COOKIE, allow, check_csrf
from central_api.db import transaction
from central_api.dependencies import RegistryDep
from central_api.enrolment import service as intake
from central_api.enrolment.gate import read_small_body
from central_api.enrolment.schemas import KIOSK_HEADER
from central_api.operators.exceptions import NotSignedIn
from central_api.operators.service import RSU_ROLES, Signed, current
from central_api.rsu import service
from central_api.rsu.exceptions import RSURefusal
from central_api.rsu.schemas import (
    REFERENCE_PATTERN,
    AppealIn,
    AppealMove,
    AppealOut,
    EligibilityOut,
    HouseholdView,
    RSUEnvelope,
    SignedRSUAnswer,
    VersionContent,
    VersionOut,
)
from central_api.rsu.scoring import Language
from central_api.rsu.service import Scorer

router = APIRouter(prefix="/v1/rsu", tags=["rsu"])
kiosk_router = APIRouter(prefix="/v1/kiosk", tags=["rsu"])
MAX_KIOSK_BYTES = 64 * 1024  # a sealed declaration with its face template is about 8 KB


def _token(request: Request) -> tuple[str | None, bool]:
    """The session token of the request, and whether it came as a bearer header."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), True
    return request.cookies.get(COOKIE), False


def rsu_agent(request: Request, reg: RegistryDep) -> Signed:
    """The signed-in operator of this request if their role opens the RSU; NotSignedIn (401)
    or Forbidden (403) otherwise."""
    token, bearer = _token(request)
    if not token:
        raise NotSignedIn("sign in to the console first")
    st = reg.settings
    with transaction(reg.sessions) as s:
        op = current(
            s,
            token,
            timedelta(minutes=st.console_idle_minutes),
            timedelta(hours=st.console_session_hours),
        )
    allow(op, *RSU_ROLES)
    if not bearer and request.method not in ("GET", "HEAD"):
        check_csrf(op, request.headers.get("x-csrf-token", ""))
    return op


AgentDep = Annotated[Signed, Depends(rsu_agent)]


def scorer(reg: RegistryDep) -> Scorer:
    """The model and thresholds in force, as the registry's settings name them."""
    return service.scorer_for(reg.settings.rsu_model, reg.settings.rsu_thresholds_file)


ScorerDep = Annotated[Scorer, Depends(scorer)]
Reference = Annotated[str, Path(pattern=REFERENCE_PATTERN)]


def _actor(op: Signed) -> str:
    return f"console:{op.operator_id}"


@router.get("/households/{reference}", response_model=HouseholdView)
def household(
    reference: Reference,
    reg: RegistryDep,
    op: AgentDep,
    scorer: ScorerDep,
    lang: Annotated[Language, Query()] = Language.FR,
) -> HouseholdView:
    """Members, latest decision per programme and the explanation in ``lang``."""
    with transaction(reg.sessions) as s:
        return service.view_household(s, reg.cipher, scorer, reference, _actor(op), lang)


@router.get("/households/{reference}/versions", response_model=list[VersionOut])
def versions(reference: Reference, reg: RegistryDep, op: AgentDep) -> list[VersionOut]:
    """The declaration versions, oldest first."""
    with transaction(reg.sessions) as s:
        return service.list_versions(s, reference, _actor(op))


@router.get("/households/{reference}/versions/{version}", response_model=VersionContent)
def version(
    reference: Reference,
    version: Annotated[int, Path(ge=1)],
    reg: RegistryDep,
    op: AgentDep,
) -> VersionContent:
    """One declaration version with what was declared."""
    with transaction(reg.sessions) as s:
        return service.view_version(s, reg.cipher, reference, version, _actor(op))


@router.get("/households/{reference}/decisions", response_model=list[EligibilityOut])
def decisions(reference: Reference, reg: RegistryDep, op: AgentDep) -> list[EligibilityOut]:
    """Every decision, newest first, with the versions it used."""
    with transaction(reg.sessions) as s:
        return service.list_decisions(s, reg.cipher, reference, _actor(op))


@router.get("/households/{reference}/appeals", response_model=list[AppealOut])
def appeals(reference: Reference, reg: RegistryDep, op: AgentDep) -> list[AppealOut]:
    """The household's appeals, newest first."""
    with transaction(reg.sessions) as s:
        return service.list_appeals(s, reg.cipher, reference, _actor(op))


@router.post("/households/{reference}/appeals", response_model=AppealOut, status_code=201)
def file_appeal(reference: Reference, body: AppealIn, reg: RegistryDep, op: AgentDep) -> AppealOut:
    """File an appeal on a citizen's behalf against a rejection (within 15 days of it)."""
    with transaction(reg.sessions) as s:
        return service.submit_appeal(s, reg.cipher, reference, body, _actor(op))


@router.post("/appeals/{appeal_id}/state", response_model=AppealOut)
def move(
    appeal_id: Annotated[int, Path(ge=1)], body: AppealMove, reg: RegistryDep, op: AgentDep
) -> AppealOut:
    """Move an appeal: submitted -> under_review -> upheld | corrected."""
    with transaction(reg.sessions) as s:
        return service.move_appeal(s, reg.cipher, appeal_id, body, _actor(op))


@router.get("/appeals/overdue", response_model=list[AppealOut])
def overdue(reg: RegistryDep, op: AgentDep) -> list[AppealOut]:
    """Open appeals whose 30-day answer is overdue."""
    with transaction(reg.sessions) as s:
        return service.overdue_appeals(s, reg.cipher, _actor(op))


@kiosk_router.post("/rsu", response_model=SignedRSUAnswer)
async def kiosk_rsu(
    request: Request,
    reg: RegistryDep,
    scorer: ScorerDep,
    kiosk_id: Annotated[str, Header(alias=KIOSK_HEADER)],
) -> SignedRSUAnswer:
    """A sealed :class:`~central_api.rsu.schemas.KioskRSURequest` from a kiosk: a citizen's
    IDCS and live face, to see (``open``) or declare (``declare``) their household. Nothing
    is shown or changed unless the face matches the person 1:1; the answer is signed
    (:class:`~central_api.rsu.schemas.SignedRSUAnswer`). A declaration the register refuses
    changes nothing and is answered ``rejected`` with the rule it broke."""
    body = await read_small_body(request, MAX_KIOSK_BYTES)
    window = timedelta(seconds=reg.settings.replay_window_seconds)

    def work() -> SignedRSUAnswer:
        kiosk, envelope, sent_at = intake.open_envelope(
            body, reg.packet_key, reg.kiosks, window, RSUEnvelope, kiosk_id
        )
        ask = envelope.packet
        try:
            with transaction(reg.sessions) as s:
                intake.still_active(s, kiosk)
                intake.accept_send(s, kiosk.id, envelope.send_id, sent_at, window)
                return service.kiosk_request(
                    s,
                    reg.cipher,
                    scorer,
                    kiosk.id,
                    ask,
                    reg.signing_key.sign,
                    reg.settings.rsu_failures_per_hour,
                )
        except RSURefusal as refusal:  # rolled back: the declaration changed nothing
            with transaction(reg.sessions) as s:
                intake.accept_send(s, kiosk.id, envelope.send_id, sent_at, window)
                return service.kiosk_rejected(s, kiosk.id, ask, refusal, reg.signing_key.sign)

    return await run_in_threadpool(work)
