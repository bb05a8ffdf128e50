"""What the RSU's API and service take and give: a household's declaration with its members
by IDCS, and the views an RSU agent reads (household, versions, decisions with their
explanation, appeals, re-score jobs)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from central_api.enrolment.schemas import IDCS_PATTERN
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
