"""Cases the automatic deduplication could not decide, the decisions of the adjudicators on
them (four eyes where the rules ask for two), and the fraud flags they raise."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow


class AdjudicationCase(Base):
    """A probe enrolment and the registered person it nearly matched.

    ``status``: ``open`` (waiting for a first decision), ``second_review`` (a first decision
    waits for a senior adjudicator's second eye), ``closed``. ``claimed_by`` /
    ``claim_until``: the one adjudicator who holds it now (a lease, as the dedup queue's).
    ``probe``: the registry's own templates of the probe (encrypted), kept to issue the IDCS
    if adjudicators find no one; ``outcome``: the decision that took effect."""

    __tablename__ = "adjudication_cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enrolment_id: Mapped[int] = mapped_column(BigId, ForeignKey("enrolments.id"), unique=True)
    candidate_person_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="SET NULL")
    )
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(String(200))  # near_match, or policy:<codes>
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    claim_until: Mapped[datetime | None]
    probe: Mapped[bytes | None] = mapped_column(LargeBinary)
    outcome: Mapped[str | None] = mapped_column(String(24))
    closed_at: Mapped[datetime | None]


class AdjudicationDecision(Base):
    """One adjudicator's decision on a case (``stage`` first), or a senior's second eye on a
    first decision (``stage`` second, ``agrees``). Never updated: the case's history."""

    __tablename__ = "adjudication_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("adjudication_cases.id"), index=True)
    operator_id: Mapped[str] = mapped_column(String(40), ForeignKey("operators.id"))
    stage: Mapped[str] = mapped_column(String(8))  # first | second
    decision: Mapped[str] = mapped_column(String(24))  # same_person | different_persons | ...
    candidate_person_id: Mapped[int | None] = mapped_column(BigId)
    reason_code: Mapped[str] = mapped_column(String(40))
    note: Mapped[bytes | None] = mapped_column(LargeBinary)  # free text: encrypted
    agrees: Mapped[bool | None] = mapped_column(Boolean)
    against_machine: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class FraudFlag(Base):
    """A person found enrolling under a second identity (an adjudicated ``same person`` whose
    claimed identity differs from the registered one), for investigators and auditors."""

    __tablename__ = "fraud_flags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("adjudication_cases.id"))
    enrolment_id: Mapped[int] = mapped_column(BigId, ForeignKey("enrolments.id"))
    person_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(32))  # two_identities
    differences: Mapped[str] = mapped_column(String(200))  # which fields differ (names only)
    flagged_by: Mapped[str] = mapped_column(String(40))
    flagged_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
