"""The household desk (``/household``): a registered citizen declares their household in the
social registry (RSU), updates it, or looks up its score and the programmes it qualifies for.

Between enrolments, in the citizen's language. Nothing about a household is shown before the
registry has checked the citizen 1:1: they type their IDCS, the kiosk takes a live face
(liveness checked, as at enrolment) and sends both sealed; the registry compares the face with
that person's references and only then answers (:mod:`central_api.rsu.router`). Stages:

    identify ─► status (their household: score, programmes, why) ─► form ─► review ─► done
             └► form (no household yet) ──────────────────────────┘

What the desk holds (the IDCS, the face template, the draft) lives in memory only, and is
wiped when the citizen leaves, when an enrolment starts and after the idle timeout. Each
request to the registry carries the live face again: the registry never trusts a kiosk's word
that someone was checked a minute ago.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from central_api.enrolment.schemas import idcs_well_formed
from central_api.rsu import scoring
from central_api.rsu.schemas import (
    ADULT_AGE,
    HouseholdDeclaration,
    KioskHousehold,
    KioskRSUAnswer,
    KioskRSURequest,
    MemberIn,
)
from kiosk.session import EnrolmentSession, Problem, Step, StepError, registry_errors

BLANK_ROWS = 2  # empty member rows the form offers beyond those filled
MONTHS = 12  # the form asks for monthly bills; the declaration holds yearly amounts

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")


class Stage(StrEnum):
    """Where the citizen is at the household desk."""

    IDENTIFY = "identify"
    STATUS = "status"
    FORM = "form"
    REVIEW = "review"
    DONE = "done"


@dataclass
class Row:
    """A member row of the form, as typed (kept after an error)."""

    idcs: str = ""
    age: str = ""
    relation: str = ""


@dataclass
class Draft:
    """The form as the citizen filled it in: every field as typed, so an error loses
    nothing; monthly amounts in MAD."""

    rows: list[Row] = field(default_factory=list)
    housing: str = ""
    rooms: str = ""
    area: str = ""
    region: str = ""
    occupation: str = ""
    expenses: dict[str, str] = field(default_factory=dict)
    goods: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, declaration: HouseholdDeclaration) -> Draft:
        """The form prefilled from a declaration (to update it)."""
        return cls(
            rows=[Row(m.idcs, str(m.age), m.relation.value) for m in declaration.members],
            housing=declaration.housing.value,
            rooms=str(declaration.rooms),
            area=declaration.area.value,
            region=str(declaration.region.value),
            occupation=declaration.occupation.value,
            expenses={
                k.value: _amount(getattr(declaration.expenses, k.value) / MONTHS)
                for k in scoring.ExpenseKind
            },
            goods={g.value for g in declaration.goods},
        )


def _amount(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def _number(value: str) -> str:
    """Digits as typed on any keyboard (Arabic-Indic too), spaces dropped."""
    return re.sub(r"\s", "", value.translate(_DIGITS))


class DraftError(StepError):
    """A field of the form is wrong: ``where`` names it (``member-2-age``, ``rooms``...)."""

    def __init__(self, code: Problem, where: str) -> None:
        super().__init__(code, where)
        self.where = where


def parse(draft: Draft, declarant: str) -> HouseholdDeclaration:
    """The declaration the form says, the declarant first (``declarant``: the verified
    citizen's IDCS); DraftError naming the first wrong field."""
    members: list[MemberIn] = []
    for i, row in enumerate(draft.rows):
        idcs, age = _number(row.idcs), _number(row.age)
        if i > 0 and not idcs and not age:
            continue  # an empty row
        if i > 0 and not idcs_well_formed(idcs):
            raise DraftError(Problem.HOUSEHOLD_BAD_MEMBER, f"member-{i}-idcs")
        if not age.isdigit() or int(age) > scoring.MAX_AGE:
            raise DraftError(Problem.HOUSEHOLD_BAD_AGE, f"member-{i}-age")
        if i == 0 and int(age) < ADULT_AGE:
            raise DraftError(Problem.HOUSEHOLD_DECLARANT_MINOR, "member-0-age")
        relation = "declarant" if i == 0 else row.relation
        if relation not in {r.value for r in scoring.Relation} or (
            i > 0 and relation == "declarant"
        ):
            raise DraftError(Problem.HOUSEHOLD_INCOMPLETE, f"member-{i}-relation")
        members.append(
            MemberIn(
                idcs=declarant if i == 0 else idcs,
                age=int(age),
                relation=scoring.Relation(relation),
            )
        )
    if len({m.idcs for m in members}) != len(members):
        raise DraftError(Problem.HOUSEHOLD_BAD_MEMBER, "members")
    if len(members) > scoring.MAX_MEMBERS:
        raise DraftError(Problem.HOUSEHOLD_TOO_MANY, "members")
    rooms = _number(draft.rooms)
    if not rooms.isdigit() or not 1 <= int(rooms) <= scoring.MAX_ROOMS:
        raise DraftError(Problem.HOUSEHOLD_BAD_ROOMS, "rooms")
    options = _options()
    for name, value in (
        ("housing", draft.housing),
        ("area", draft.area),
        ("region", draft.region),
        ("occupation", draft.occupation),
    ):
        if value not in options[name]:
            raise DraftError(Problem.HOUSEHOLD_INCOMPLETE, name)
    yearly: dict[str, float] = {}
    for kind in scoring.ExpenseKind:
        typed = _number(draft.expenses.get(kind.value, "")).replace(",", ".") or "0"
        try:
            monthly = float(typed)
        except ValueError:
            raise DraftError(Problem.HOUSEHOLD_BAD_AMOUNT, f"expense-{kind.value}") from None
        if not 0 <= monthly * MONTHS <= scoring.MAX_EXPENSE:
            raise DraftError(Problem.HOUSEHOLD_BAD_AMOUNT, f"expense-{kind.value}")
        yearly[kind.value] = round(monthly * MONTHS, 2)
    if not draft.goods <= set(options["goods"]):
        raise DraftError(Problem.HOUSEHOLD_INCOMPLETE, "goods")
    try:
        return HouseholdDeclaration(
            members=tuple(members),
            housing=scoring.HousingType(draft.housing),
            rooms=int(rooms),
            area=scoring.Area(draft.area),
            region=scoring.Region(int(draft.region)),
            occupation=scoring.Occupation(draft.occupation),
            expenses=scoring.Expenses(**yearly),
            goods=frozenset(scoring.Good(g) for g in draft.goods),
        )
    except ValidationError as exc:  # a rule the checks above do not cover
        raise DraftError(Problem.HOUSEHOLD_INVALID, "members") from exc


class HouseholdDesk:
    """One citizen's visit to the household desk (see the module's docstring)."""

    def __init__(
        self,
        session: EnrolmentSession,
        ask: Callable[[KioskRSURequest], KioskRSUAnswer] | None,
    ) -> None:
        self.session, self.ask = session, ask
        self._lock = threading.RLock()
        self.stage = Stage.IDENTIFY
        self.idcs = ""
        self.template: np.ndarray | None = None
        self.quality, self.liveness = 0, False
        self.household: KioskHousehold | None = None
        self.draft = Draft()
        self.declaration: HouseholdDeclaration | None = None
        self.problem: Problem | None = None
        self.where: str | None = None  # the wrong field, or the member at fault
        self.attempts_left: int | None = None
        self._touched = session.clock()

    # -------------------------------------------------------------------- housekeeping
    def wipe(self) -> None:
        """Forget everything about the visit (the template is zeroed first)."""
        with self._lock:
            if self.template is not None:
                self.template.fill(0)
            self.stage, self.idcs, self.template = Stage.IDENTIFY, "", None
            self.quality, self.liveness = 0, False
            self.household, self.draft, self.declaration = None, Draft(), None
            self.problem, self.where, self.attempts_left = None, None, None

    @property
    def active(self) -> bool:
        """True while the desk holds anything of a citizen."""
        return bool(self.idcs) or self.template is not None

    def touch(self) -> None:
        """The citizen did something."""
        self._touched = self.session.clock()

    def expire_if_idle(self) -> bool:
        """Wipe a visit left alone for the kiosk's idle timeout; True if it was."""
        with self._lock:
            idle = self.session.clock() - self._touched > self.session.settings.idle_timeout
            if idle and self.active:
                self.wipe()
                if self.session.step == Step.WELCOME:
                    self.session.cancel()  # neutral again (the open page goes back to it)
                return True
            return False

    def _fail(self, code: Problem, where: str | None = None) -> StepError:
        self.problem, self.where = code, where
        return StepError(code, where or "")

    def _request(self, kind: Literal["open", "declare"]) -> KioskRSUAnswer:
        if self.ask is None:
            raise self._fail(Problem.REGISTRY_UNAVAILABLE)
        assert self.template is not None
        request = KioskRSURequest(
            kind=kind,
            query_id=uuid.uuid4(),
            kiosk_id=self.session.settings.kiosk_id,
            idcs=self.idcs,
            face_template=[float(v) for v in self.template],
            face_liveness=self.liveness,
            face_quality=self.quality,
            language=scoring.Language(self.session.language),
            declaration=self.declaration if kind == "declare" else None,
        )
        try:
            with registry_errors():
                answer = self.ask(request)
        except StepError as exc:
            raise self._fail(exc.code) from exc
        self.attempts_left = answer.attempts_left
        if answer.outcome in ("not_verified", "refused"):
            self.template.fill(0)  # a face that did not match is not kept
            self.template = None
            self.stage = Stage.IDENTIFY
            raise self._fail(
                Problem.HOUSEHOLD_NOT_VERIFIED
                if answer.outcome == "not_verified"
                else Problem.HOUSEHOLD_REFUSED
            )
        return answer

    # -------------------------------------------------------------------- the visit
    def begin(self, idcs: str = "") -> None:
        """A citizen comes to the desk (``idcs``: prefilled, from an enrolment's receipt)."""
        with self._lock:
            self.wipe()
            self.idcs = _number(idcs) if idcs_well_formed(_number(idcs)) else ""
            self.touch()

    def identify(self, idcs: str) -> None:
        """The citizen's IDCS and a live face, checked 1:1 by the registry: then their
        household's status, or the form when they have none."""
        with self._lock:
            self.touch()
            self.problem = self.where = None
            number = _number(idcs)
            self.idcs = number
            if not idcs_well_formed(number):
                raise self._fail(Problem.HOUSEHOLD_BAD_IDCS, "idcs")
            try:
                shot = self.session.citizen_face()
            except StepError as exc:
                raise self._fail(exc.code) from exc
            self.template, self.quality = shot.template, shot.quality_score
            self.liveness = shot.liveness.passed
            answer = self._request("open")
            self.household = answer.household
            if answer.outcome == "found" and answer.household is not None:
                self.stage = Stage.STATUS
                return
            self.draft = Draft(rows=[Row(self.idcs, "", "declarant")])
            self.stage = Stage.FORM

    def edit(self) -> None:
        """From the status page, or back from the review: the form, as last filled."""
        with self._lock:
            self._expect(Stage.STATUS, Stage.REVIEW)
            if self.stage == Stage.STATUS:
                if self.household is not None and self.household.declaration is not None:
                    self.draft = Draft.of(self.household.declaration)
                else:
                    self.draft = Draft(rows=[Row(self.idcs, "", "declarant")])
            self.stage, self.problem, self.where = Stage.FORM, None, None
            self.touch()

    def check(self, draft: Draft, more_rows: bool = False) -> None:
        """The form sent: kept as typed; on to the review when it is a valid declaration
        (``more_rows``: the citizen asked for more member rows instead)."""
        with self._lock:
            self._expect(Stage.FORM)
            self.touch()
            draft.rows[0].idcs = self.idcs  # the declarant is the verified citizen
            self.draft, self.problem, self.where = draft, None, None
            if more_rows:
                self.draft.rows += [Row() for _ in range(BLANK_ROWS)]
                return
            try:
                self.declaration = parse(draft, self.idcs)
            except DraftError as exc:
                raise self._fail(exc.code, exc.where) from exc
            self.stage = Stage.REVIEW

    def submit(self) -> None:
        """Send the reviewed declaration (with the live face again); the receipt, or the
        form with the registry's reason."""
        with self._lock:
            self._expect(Stage.REVIEW)
            self.touch()
            answer = self._request("declare")
            if answer.outcome == "rejected":
                self.stage = Stage.FORM
                problem = {
                    "member_not_registered": Problem.HOUSEHOLD_MEMBER_NOT_REGISTERED,
                    "member_in_another_household": Problem.HOUSEHOLD_MEMBER_ELSEWHERE,
                }.get(answer.problem or "", Problem.HOUSEHOLD_INVALID)
                raise self._fail(problem, answer.field)
            self.household, self.stage = answer.household, Stage.DONE

    def _expect(self, *stages: Stage) -> None:
        if self.stage not in stages:
            raise StepError(Problem.WRONG_STEP, f"not possible at {self.stage}")

    def rows(self) -> Sequence[Row]:
        """The member rows the form shows: those filled, and blank ones to add members."""
        filled = [r for i, r in enumerate(self.draft.rows) if i == 0 or r.idcs or r.age]
        if not filled:
            filled = [Row(self.idcs, "", "declarant")]
        blanks = max(len(self.draft.rows) - len(filled), BLANK_ROWS)
        return filled + [Row() for _ in range(blanks)]


def _draft_from_form(form: dict[str, list[str]]) -> Draft:
    """The desk's draft from the posted form (each name with its values, in order)."""

    def one(name: str, limit: int) -> str:
        return (form.get(name) or [""])[0][:limit]

    idcs, ages, relations = (
        form.get(k, []) for k in ("member_idcs", "member_age", "member_relation")
    )
    n = min(max(len(idcs), len(ages), len(relations), 1), scoring.MAX_MEMBERS + BLANK_ROWS)
    idcs, ages, relations = ([*v, *[""] * n] for v in (idcs, ages, relations))
    return Draft(
        rows=[Row(idcs[i][:14], ages[i][:4], relations[i][:20]) for i in range(n)],
        housing=one("housing", 40),
        rooms=one("rooms", 4),
        area=one("area", 10),
        region=one("region", 3),
        occupation=one("occupation", 40),
        expenses={k.value: one(f"expense_{k.value}", 12) for k in scoring.ExpenseKind},
        goods=set(form.get("goods", [])),
    )


def add_routes(
    app: FastAPI,
    desk: HouseholdDesk,
    page: Callable[..., HTMLResponse],
    holder: Callable[..., str],
    posting: Any,
) -> None:
    """Add the household desk's routes to the kiosk UI application."""
    session = desk.session

    def again() -> RedirectResponse:
        return RedirectResponse("/household", status_code=303)

    def attempt(fn: Callable[..., None], *args: object) -> RedirectResponse:
        with suppress(StepError):  # the desk holds the problem; the page shows it
            fn(*args)
        return again()

    @app.get("/household", response_class=HTMLResponse)
    def household_page(sid: str = Depends(holder)) -> Response:
        """The desk's current stage."""
        if session.step not in (Step.WELCOME, Step.RECEIPT):
            return RedirectResponse("/", status_code=303)
        return page(
            "household.html",
            sid,
            desk=desk,
            stage=desk.stage.value,
            rows=desk.rows(),
            options=_options(),
            labels=scoring.LABELS,
            lang_enum=scoring.Language(session.language),
            then="/household",
            household_page=True,
            voice_key=f"step.household_{desk.stage.value}",
        )

    @app.post("/household/begin", dependencies=[posting])
    def household_begin(
        idcs: Annotated[str, Form(max_length=20)] = "",
        language: Annotated[str, Form(max_length=4)] = "",
    ) -> RedirectResponse:
        """Come to the desk from the welcome screen or an enrolment's receipt (its IDCS)."""
        keep = language or session.language
        if session.step == Step.RECEIPT:
            session.cancel()  # the enrolment is over: its data goes
        desk.begin(idcs)
        if keep:
            with suppress(StepError):
                session.set_language(keep)
        return again()

    @app.post("/household/identify", dependencies=[posting])
    def household_identify(idcs: Annotated[str, Form(max_length=20)]) -> RedirectResponse:
        """The citizen's IDCS and a live face: the registry checks them 1:1."""
        return attempt(desk.identify, idcs)

    @app.post("/household/edit", dependencies=[posting])
    def household_edit() -> RedirectResponse:
        return attempt(desk.edit)

    @app.post("/household/form", dependencies=[posting])
    async def household_form(request: Request) -> RedirectResponse:
        """The form sent (``action=more`` for more member rows instead)."""
        form = await request.form()
        fields: dict[str, list[str]] = {k: [str(v) for v in form.getlist(k)] for k in form}
        return attempt(desk.check, _draft_from_form(fields), fields.get("action") == ["more"])

    @app.post("/household/submit", dependencies=[posting])
    def household_submit() -> RedirectResponse:
        return attempt(desk.submit)

    @app.post("/household/leave", dependencies=[posting])
    def household_leave() -> RedirectResponse:
        """The citizen is done (or gives up): everything is forgotten, the kiosk is neutral
        again."""
        desk.wipe()
        if session.step in (Step.WELCOME, Step.RECEIPT):
            session.cancel()
        return RedirectResponse("/", status_code=303)


def _options() -> dict[str, list[str]]:
    """The values each choice offers, in the form's order."""
    return {
        "relation": [r.value for r in scoring.Relation if r is not scoring.Relation.DECLARANT],
        "housing": [h.value for h in scoring.HousingType],
        "area": [a.value for a in scoring.Area],
        "region": [str(r.value) for r in scoring.Region],
        "occupation": [o.value for o in scoring.Occupation],
        "expense": [e.value for e in scoring.ExpenseKind],
        "goods": [g.value for g in scoring.Good],
    }
