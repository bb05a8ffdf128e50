"""Cases the automatic deduplication could not decide, queued for human adjudicators."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow


class AdjudicationCase(Base):
    """A probe enrolment and the registered person it nearly matched."""

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
