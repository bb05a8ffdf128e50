"""What the RSU's API and service take and give: a household's declaration with its members
by IDCS, and the views an RSU agent reads (household, versions, decisions with their
explanation, appeals, re-score jobs)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from biometrics.face import TEMPLATE_DIM
from central_api.enrolment.schemas import (
    IDCS_PATTERN,
    DecisionNotAuthentic,
    Envelope,
    TemplateValue,
    check_registry_signature,
)
from central_api.rsu import scoring
from central_api.rsu.scoring import (
    Area,
    Expenses,
    Good,
    HousingType,
    Language,
    Occupation,
    Programme,
    Region,
    Relation,
)

ADULT_AGE = 18
REFERENCE_PATTERN = r"^RSU-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$"
Idcs = Annotated[str, Field(pattern=IDCS_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class MemberIn(_Strict):
    """A member as declared: who (IDCS, already in the register), their age and their
    relation to the declarant."""

    idcs: Idcs
    age: int = Field(ge=0, le=scoring.MAX_AGE)
    relation: Relation


class HouseholdDeclaration(_Strict):
    """A household's declaration: the members (the declarant among them, an adult), the
    dwelling, the declarant's occupation, yearly expenses (MAD) and durable goods."""

    members: tuple[MemberIn, ...] = Field(min_length=1, max_length=scoring.MAX_MEMBERS)
    housing: HousingType
    rooms: int = Field(ge=1, le=scoring.MAX_ROOMS)
    area: Area
    region: Region
    occupation: Occupation
    expenses: Expenses = Expenses()
    goods: frozenset[Good] = frozenset()

    @model_validator(mode="after")
    def _members(self) -> HouseholdDeclaration:
        declarants = [m for m in self.members if m.relation is Relation.DECLARANT]
        if len(declarants) != 1:
            raise ValueError(f"exactly one member must be the declarant, not {len(declarants)}")
        if declarants[0].age < ADULT_AGE:
            raise ValueError(f"the declarant must be an adult ({ADULT_AGE} or older)")
        if len({m.idcs for m in self.members}) != len(self.members):
            raise ValueError("a member is listed twice")
        return self

    @property
    def declarant(self) -> MemberIn:
        """The declaring member."""
        return next(m for m in self.members if m.relation is Relation.DECLARANT)

    def to_scoring(self) -> scoring.Declaration:
        """The declaration as the scoring sees it (no identifiers)."""
        return scoring.Declaration(
            members=tuple(scoring.Member(age=m.age, relation=m.relation) for m in self.members),
            housing=self.housing,
            rooms=self.rooms,
            area=self.area,
            region=self.region,
            occupation=self.occupation,
            expenses=self.expenses,
            goods=self.goods,
        )


class MemberOut(BaseModel):
    """A membership of a household (open while ``until`` is None)."""

    idcs: str | None  # None: the person was removed from the register
    relation: Relation
    since: datetime
    until: datetime | None


class VersionOut(BaseModel):
    """A declaration version's facts (its content: :class:`VersionContent`)."""

    version: int
    declared_at: datetime
    declared_by: str


class VersionContent(VersionOut):
    """A declaration version with what was declared."""

    declaration: HouseholdDeclaration


class FactorOut(BaseModel):
    """A factor of the score against the area's reference household."""

    name: str
    label: str
    deviation: float


class ExplanationOut(BaseModel):
    """Why the score is what it is, in one language."""

    language: Language
    text: str
    sentences: list[str]
    top: list[FactorOut]
    distances: dict[str, float]


class EligibilityOut(BaseModel):
    """An eligibility decision with the versions it used."""

    id: int
    programme: Programme
    declaration_version: int
    model_version: str
    threshold_version: str
    on: date
    score: float
    threshold: float
    distance: float
    eligible: bool
    changed: bool
    reason: str
    computed_at: datetime


class HouseholdView(BaseModel):
    """A household as an RSU agent sees it: members now, the latest decision per programme
    and their explanation."""

    reference: str
    created_at: datetime
    current_version: int
    members: list[MemberOut]
    decisions: list[EligibilityOut]
    explanation: ExplanationOut | None


class DeclarationReceipt(BaseModel):
    """What a declaration gives back: the RSU reference, the version and the decisions."""

    reference: str
    version: int
    decisions: list[EligibilityOut]


class AppealState(StrEnum):
    """An appeal's states: ``submitted`` -> ``under_review`` -> ``upheld`` | ``corrected``."""

    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    UPHELD = "upheld"
    CORRECTED = "corrected"


class AppealIn(_Strict):
    """An appeal filed on a citizen's behalf against one rejection."""

    decision_id: int = Field(ge=1)
    grounds: str | None = Field(default=None, max_length=2000)


class AppealMove(_Strict):
    """Move an appeal to its next state (with the answer when it is decided)."""

    state: AppealState
    answer: str | None = Field(default=None, max_length=2000)


class AppealOut(BaseModel):
    """An appeal and its clocks."""

    id: int
    reference: str
    decision_id: int
    state: AppealState
    submitted_by: str
    submitted_at: datetime
    answer_due: datetime
    overdue: bool
    reviewed_by: str | None
    answered_at: datetime | None
    grounds: str | None = None
    answer: str | None = None


class RescoreSummary(BaseModel):
    """A re-score job's progress (counts only: no personal data)."""

    id: int
    state: str
    model_version: str
    threshold_versions: list[str]
    batches: int
    processed: int
    changed: int
    became_eligible: int
    lost_eligibility: int


# --- the kiosk's door to the RSU ---------------------------------------------------------------
#
# A citizen at a kiosk gives their IDCS and a live face; the kiosk sends both, sealed like a
# packet (a face template is biometric data), as a KioskRSURequest: ``open`` to see their
# household (its members, last declaration, decisions and the explanation), ``declare`` to
# declare it or a new version of it. The registry compares the face 1:1 with the person's
# references before it shows or changes anything, and answers a KioskRSUAnswer, signed.

KIOSK_RSU_ATTEMPTS = 3  # failed face checks for one person in a day before the kiosk is refused
KIOSK_RSU_FMR = 1e-3  # the 1:1 threshold, as the kiosk's face-to-chip check


class KioskRSURequest(_Strict):
    """A verified citizen's request from a kiosk: see (``open``) or declare (``declare``)
    their household. The declarant of a declaration is the verified person."""

    kind: Literal["open", "declare"]
    query_id: uuid.UUID
    kiosk_id: str = Field(min_length=1, max_length=64)
    idcs: Idcs
    face_template: list[TemplateValue] = Field(min_length=TEMPLATE_DIM, max_length=TEMPLATE_DIM)
    face_liveness: bool
    face_quality: int = Field(ge=0, le=100)
    language: Language = Language.FR
    declaration: HouseholdDeclaration | None = None

    @model_validator(mode="after")
    def _declaration(self) -> KioskRSURequest:
        if self.kind == "declare" and self.declaration is None:
            raise ValueError("a declaration is needed to declare")
        if self.kind == "open" and self.declaration is not None:
            raise ValueError("opening a household takes no declaration")
        if self.declaration is not None and self.declaration.declarant.idcs != self.idcs:
            raise ValueError("the declarant must be the person whose face was checked")
        return self


class RSUEnvelope(Envelope):
    """The signed message inside a sealed kiosk RSU request."""

    packet: KioskRSURequest


class KioskHousehold(BaseModel):
    """What the verified declarant sees of their household: its reference, the declaration in
    force (to start an update from), the latest decision per programme, the explanation and
    the notices not delivered before."""

    reference: str
    version: int
    declaration: HouseholdDeclaration | None
    decisions: list[EligibilityOut]
    explanation: ExplanationOut | None
    notices: list[str] = []  # what changed since the last visit, in the citizen's language


KioskOutcome = Literal["found", "none", "declared", "not_verified", "refused", "rejected"]


class KioskRSUAnswer(BaseModel):
    """The registry's answer to a kiosk RSU request.

    ``found``: the person's household (``household``); ``none``: they are in no household yet;
    ``declared``: the declaration was kept (``household`` as it now is); ``not_verified``: the
    face does not match the IDCS's person (or no such person; the answer does not say which);
    ``refused``: too many failed checks for this person today; ``rejected``: the declaration
    breaks a rule (``problem``: the error code, ``detail``: which rule, ``field``: the member's
    IDCS when one is at fault)."""

    query_id: uuid.UUID
    kiosk_id: str
    kind: Literal["open", "declare"]
    outcome: KioskOutcome
    attempts_left: int = Field(ge=0)
    household: KioskHousehold | None = None
    problem: str | None = None
    detail: str | None = None
    field: str | None = None
    signed_at: int


class SignedRSUAnswer(BaseModel):
    """A :class:`KioskRSUAnswer` as sent: its JSON text and the registry's signature of it (the
    text is signed as it is, so nothing depends on how JSON is written again)."""

    body: str
    signature: str

    @staticmethod
    def _message(body: str) -> bytes:
        return b"RNP-RSU-v1\n" + body.encode()

    @classmethod
    def make(cls, answer: KioskRSUAnswer, sign: Callable[[bytes], bytes]) -> SignedRSUAnswer:
        """Sign ``answer`` with the registry's decision key."""
        body = answer.model_dump_json()
        return cls(body=body, signature=base64.b64encode(sign(cls._message(body))).decode())

    def open(self, registry_public: bytes, kiosk_id: str, query_id: uuid.UUID) -> KioskRSUAnswer:
        """The answer, if the registry (raw Ed25519 public key) signed it for this kiosk's
        request ``query_id``; DecisionNotAuthentic otherwise."""
        check_registry_signature(registry_public, self.signature, self._message(self.body))
        answer = KioskRSUAnswer.model_validate_json(self.body)
        if answer.kiosk_id != kiosk_id or answer.query_id != query_id:
            raise DecisionNotAuthentic("the answer is about another request")
        return answer
