"""Kiosks and enrolments (the durable intake queue is the enrolments table itself)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow
from central_api.enrolment.schemas import EnrolmentState


class Kiosk(Base):
    """A registered enrolment kiosk and the Ed25519 key it signs packets with."""

    __tablename__ = "kiosks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)


class KioskOperator(Base):
    """An agent or supervisor of the kiosks (``kiosks``: comma-separated kiosk ids, or ``*``
    for every kiosk), managed centrally: kiosks receive them in a signed list
    (``schemas.OperatorList``) and check PINs offline against ``pin_hash``. ``version``: the
    list version of the row's last change (a list's version is the highest of its rows')."""

    __tablename__ = "kiosk_operators"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    role: Mapped[str] = mapped_column(String(12))
    salt: Mapped[str] = mapped_column(String(32))
    pin_hash: Mapped[str] = mapped_column(String(128))
    kiosks: Mapped[str] = mapped_column(String(2000), default="*")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Enrolment(Base):
    """One received packet. Personal and biometric fields are AES-GCM encrypted.

    Packet ids are a kiosk's own namespace (unique per kiosk): a kiosk cannot learn whether
    another kiosk used a packet id, and a collision between kiosks harms nobody."""

    __tablename__ = "enrolments"
    __table_args__ = (UniqueConstraint("kiosk_id", "packet_id", name="uq_enrolments_kiosk_packet"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    packet_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    receipt_number: Mapped[str] = mapped_column(String(20), index=True)  # not unique: see schemas
    kiosk_id: Mapped[str] = mapped_column(String(64), ForeignKey("kiosks.id"))
    packet_sha256: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    status: Mapped[str] = mapped_column(String(16), index=True, default=EnrolmentState.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    demographics: Mapped[bytes] = mapped_column(LargeBinary)
    face_image: Mapped[bytes] = mapped_column(LargeBinary)
    face_templates: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprints: Mapped[bytes] = mapped_column(LargeBinary)
    person_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="SET NULL"), index=True
    )
    match_score: Mapped[float | None] = mapped_column(Float)  # the best fused LLR
    # what the dedup decided on (central_api.dedup.fusion): JSON of scores, thresholds and
    # algorithm versions, no biometric data
    evidence: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(200))
    capture: Mapped[bytes | None] = mapped_column(LargeBinary)  # CaptureInfo JSON, encrypted
    # the intake policy's reason codes when the evidence fell short and the policy is
    # "adjudicate": such an enrolment is never issued an IDCS without a person's decision
    policy_hold: Mapped[str | None] = mapped_column(String(200))


class PacketSend(Base):
    """Send ids of sealed envelopes seen recently: an envelope is accepted once only."""

    __tablename__ = "packet_sends"

    send_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(index=True)
