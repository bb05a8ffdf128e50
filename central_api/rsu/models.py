"""Tables of the social registry (RSU): households, their members over time, declaration
versions, partner administrations' records, eligibility decisions, appeals, notices and bulk
re-score jobs.

What a citizen declared (members' ages, housing, occupation, expenses, goods), partner
amounts and scores are AES-GCM encrypted (:class:`~central_api.crypto.FieldCipher`), each
bound to its row by a context (:mod:`central_api.rsu.service` names them). In clear: the
identifiers, dates, states, versions and the eligibility booleans that re-scoring must query.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow


class Household(Base):
    """A household of the RSU. ``reference``: ``RSU-XXXXX-XXXXX`` (Crockford base 32, the
    last character a Luhn mod 32 check); ``current_version``: its latest declaration version
    (0 before the first)."""

    __tablename__ = "rsu_households"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(15), unique=True)
    current_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    language: Mapped[str] = mapped_column(String(3), default="fr")  # of its notices


class HouseholdMember(Base):
    """A person's membership of a household, from ``since`` until ``until`` (open: None).
    A person has at most one open membership (the partial unique index, on SQLite and
    PostgreSQL alike); a transfer closes one and opens another, so the history stays.
    ``person_id`` becomes None if the person is removed from the register."""

    __tablename__ = "rsu_members"
    __table_args__ = (
        Index(
            "ux_rsu_members_open_person",
            "person_id",
            unique=True,
            sqlite_where=text("until IS NULL"),
            postgresql_where=text("until IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    household_id: Mapped[int] = mapped_column(BigId, ForeignKey("rsu_households.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="SET NULL")
    )
    relation: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(default=utcnow)
    until: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(16))  # transfer | declaration


class DeclarationVersion(Base):
    """One version of a household's declaration, never overwritten. ``content``: the
    declaration's JSON, encrypted under ``rsu_declaration:<reference>:<version>``."""

    __tablename__ = "rsu_declarations"
    __table_args__ = (UniqueConstraint("household_id", "version", name="uq_rsu_declaration"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    household_id: Mapped[int] = mapped_column(BigId, ForeignKey("rsu_households.id"))
    version: Mapped[int] = mapped_column(Integer)
    declarant_person_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="SET NULL")
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    declared_by: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime] = mapped_column(default=utcnow)


class PartnerEntry(Base):
    """A yearly amount sent by a partner administration's feed (a utility, a telecom
    operator), keyed by a household's RSU reference or a member's IDCS (``key_kind``),
    resolved to the household on receipt. ``amount``: encrypted under
    ``rsu_partner:<feed>:<external_id>``. ``(feed, external_id)`` is unique: a record sent
    twice is taken once."""

    __tablename__ = "rsu_partner_records"
    __table_args__ = (UniqueConstraint("feed", "external_id", name="uq_rsu_partner_record"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    feed: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))  # the administration, e.g. "ONEE"
    kind: Mapped[str] = mapped_column(String(16))  # electricity | water | telecom
    key_kind: Mapped[str] = mapped_column(String(12))  # household | member
    key: Mapped[str] = mapped_column(String(15))
    household_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("rsu_households.id"), index=True
    )
    amount: Mapped[bytes] = mapped_column(LargeBinary)
    as_of: Mapped[date]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class EligibilityDecision(Base):
    """A programme's eligibility decision for one declaration version, with the model and
    threshold versions used and the partner records taken (``inputs``), so it recomputes to
    the same score. ``score``: the score and the distance to the threshold, encrypted under
    ``rsu_decision:<id>:<household id>:<programme>``. ``changed``: the
    eligibility differs from the household's previous decision for the programme."""

    __tablename__ = "rsu_decisions"
    __table_args__ = (Index("ix_rsu_decisions_household_programme", "household_id", "programme"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    household_id: Mapped[int] = mapped_column(BigId, ForeignKey("rsu_households.id"))
    declaration_version: Mapped[int] = mapped_column(Integer)
    programme: Mapped[str] = mapped_column(String(24))
    model_version: Mapped[str] = mapped_column(String(64))
    threshold_version: Mapped[str] = mapped_column(String(64))
    decided_on: Mapped[date]  # the date whose thresholds applied
    score: Mapped[bytes] = mapped_column(LargeBinary)
    eligible: Mapped[bool] = mapped_column(Boolean)
    changed: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(16))  # declaration | partner_data | rescore
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # partner record ids
    job_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("rsu_rescore_jobs.id"), index=True)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appeal(Base):
    """A citizen's appeal against a rejection: ``submitted`` -> ``under_review`` ->
    ``upheld`` (the rejection stands) | ``corrected``. Filed within 15 days of the decision;
    answered by ``answer_due`` (30 days after filing). ``grounds`` / ``answer``: free text,
    encrypted under ``rsu_appeal:<id>:grounds`` / ``...:answer``."""

    __tablename__ = "rsu_appeals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    household_id: Mapped[int] = mapped_column(BigId, ForeignKey("rsu_households.id"), index=True)
    decision_id: Mapped[int] = mapped_column(BigId, ForeignKey("rsu_decisions.id"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    submitted_by: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime]
    answer_due: Mapped[datetime]
    grounds: Mapped[bytes | None] = mapped_column(LargeBinary)
    answer: Mapped[bytes | None] = mapped_column(LargeBinary)
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime | None]


class Notice(Base):
    """Something the registry must tell a household: an eligibility that changed without the
    citizen at a kiosk (``decision_id``), an appeal answered (``appeal_id``). It holds no
    words (they are written at delivery, in the household's language) and is delivered once
    (``delivered_at``, over ``channel``: kiosk, file, sms...)."""

    __tablename__ = "rsu_notices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    household_id: Mapped[int] = mapped_column(BigId, ForeignKey("rsu_households.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # eligibility_changed | appeal_answered
    decision_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("rsu_decisions.id"))
    appeal_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("rsu_appeals.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(index=True)
    channel: Mapped[str | None] = mapped_column(String(16))


class RescoreJob(Base):
    """A bulk re-score of every declared household under one model and threshold set,
    batch by batch. ``cursor``: the last household id whose batch was committed, with the
    counts, in the same transaction: a job stopped anywhere resumes after its last committed
    batch and counts nothing twice. ``thresholds``: the threshold file's content, so a resumed
    job uses the very same versions. ``state``: running | done."""

    __tablename__ = "rsu_rescore_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(String(200))
    model_source: Mapped[str] = mapped_column(String(300))  # a version, or a .json path
    model_version: Mapped[str] = mapped_column(String(64))
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    threshold_versions: Mapped[list[str]] = mapped_column(JSON)
    thresholds_on: Mapped[date]  # the date whose thresholds apply
    batch_size: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    became_eligible: Mapped[int] = mapped_column(Integer, default=0)
    lost_eligibility: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(12), default="running")
    created_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
