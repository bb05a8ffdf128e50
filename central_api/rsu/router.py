"""The RSU's API for console operators (``/v1/rsu``): look a household up, its declaration
versions, its decisions with their explanation, its appeals; file an appeal on a citizen's
behalf and move it along. Open to the ``rsu_agent`` role only; every view is audited.

An operator proves their console session with its token, as ``Authorization: Bearer
<token>`` (a script, a kiosk-side agent tool) or the console's cookie; with the cookie,
a change must also carry the session's CSRF token in ``X-CSRF-Token``. The endpoints are plain
functions: FastAPI runs them in its thread pool, beside the event loop.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from central_api.console.security import COOKIE, allow, check_csrf
from central_api.db import transaction
from central_api.dependencies import RegistryDep
from central_api.operators.exceptions import NotSignedIn
from central_api.operators.service import RSU_ROLES, Signed, current
from central_api.rsu import service
from central_api.rsu.schemas import (
    REFERENCE_PATTERN,
    AppealIn,
    AppealMove,
    AppealOut,
    EligibilityOut,
    HouseholdView,
    VersionContent,
    VersionOut,
)
from central_api.rsu.scoring import Language
from central_api.rsu.service import Scorer, default_scorer

router = APIRouter(prefix="/v1/rsu", tags=["rsu"])


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
ScorerDep = Annotated[Scorer, Depends(default_scorer)]
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
