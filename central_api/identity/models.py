"""Persons of the register, their IDCS and their biometric references (the gallery)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow


class Person(Base):
    """A unique person, created only when deduplication found no one like them."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idcs: Mapped[str] = mapped_column(String(10), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IssuedIdentifier(Base):
    """Every IDCS ever issued. Rows are never deleted, so a number is never reused."""

    __tablename__ = "issued_identifiers"

    idcs: Mapped[str] = mapped_column(String(10), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)


class FaceReference(Base):
    """One face template of a person (AES-GCM encrypted), searched by the 1:N dedup.
    ``algorithm``: what made it (``biometrics.face.ALGORITHM``); only references of the
    current algorithm are searched."""

    __tablename__ = "face_references"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="CASCADE"), index=True
    )
    enrolment_id: Mapped[int] = mapped_column(BigId, ForeignKey("enrolments.id"))
    template: Mapped[bytes] = mapped_column(LargeBinary)
    algorithm: Mapped[str] = mapped_column(String(40), default="dlib-resnet-v1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FingerReference(Base):
    """One finger template of a person (its ISO/IEC 19794-2 record, AES-GCM encrypted) at
    its ISO finger position, searched by the 1:N dedup. ``algorithm``: what made it
    (``biometrics.fingerprint.ALGORITHM``)."""

    __tablename__ = "finger_references"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="CASCADE"), index=True
    )
    enrolment_id: Mapped[int] = mapped_column(BigId, ForeignKey("enrolments.id"))
    position: Mapped[int] = mapped_column(SmallInteger)
    template: Mapped[bytes] = mapped_column(LargeBinary)
    algorithm: Mapped[str] = mapped_column(String(40))
    # the gallery's index code of the template (``fingerprint.index_code``), encrypted; None
    # for references made before migration 0006 (computed when loaded)
    index_code: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
