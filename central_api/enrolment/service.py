"""Intake of enrolment packets: authenticate, check idempotency, encrypt and store."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from central_api.audit.service import record
from central_api.crypto import FieldCipher
from central_api.enrolment.models import Enrolment, Kiosk, PacketSend, Status
from central_api.enrolment.schemas import (
    SIGNATURE_HEADER,
    EnrolmentPacket,
    EnrolmentStatus,
    SealError,
    SendEnvelope,
    open_sealed,
)
from central_api.identity.models import Person

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

MESSAGES = {
    Status.RECEIVED: "Received; the identity check has not started yet.",
    Status.PROCESSING: "The identity check is running.",
    Status.ISSUED: "Enrolment complete: the identifier (IDCS) has been issued.",
    Status.DUPLICATE: (
        "This person is already registered; no new identifier is issued. "
        "Please see an agent with this receipt."
    ),
    Status.ADJUDICATION: (
        "An officer must review this enrolment. Keep the receipt and check back later."
    ),
    Status.REJECTED: "The enrolment could not be processed. Please see an agent with this receipt.",
}


class IntakeError(Exception):
    """A packet the registry refuses; ``status_code`` is the HTTP status to answer with."""

    status_code = 400


class UnknownKiosk(IntakeError):
    """The kiosk is not registered or has been deactivated."""

    status_code = 403


class BadSignature(IntakeError):
    """The body is not signed by the kiosk's registered key."""

    status_code = 401


class PacketConflict(IntakeError):
    """A different packet was already received under the same packet id."""

    status_code = 409


def register_kiosk(session: Session, kiosk_id: str, public_key: bytes, actor: str) -> Kiosk:
    """Register (or re-key and re-activate) a kiosk with its raw 32-byte Ed25519 public key."""
    Ed25519PublicKey.from_public_bytes(public_key)  # raises ValueError if malformed
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None:
        kiosk = Kiosk(id=kiosk_id, public_key=public_key, active=True)
        session.add(kiosk)
    else:
        kiosk.public_key, kiosk.active = public_key, True
    record(session, actor, "kiosk.registered", "kiosk", kiosk_id)
    return kiosk


def authenticate(
    session: Session, kiosk_id: str, message: bytes, signature: str | bytes | None
) -> Kiosk:
    """The active kiosk whose registered key signed ``message`` (signature raw or base64);
    raises UnknownKiosk or BadSignature."""
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None or not kiosk.active:
        raise UnknownKiosk(f"kiosk {kiosk_id!r} is not registered or not active")
    if not signature:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    try:
        sig = (
            signature
            if isinstance(signature, bytes)
            else base64.b64decode(signature, validate=True)
        )
        Ed25519PublicKey.from_public_bytes(kiosk.public_key).verify(sig, message)
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise BadSignature("signature does not match the request and the kiosk's key") from exc
    return kiosk


class InvalidPacket(IntakeError):
    """The decrypted packet breaks the wire contract; ``errors`` name the fields."""

    status_code = 422

    def __init__(self, errors: list[dict[str, object]]) -> None:
        super().__init__("invalid packet")
        self.errors = errors


class UndecryptablePacket(IntakeError):
    """Not a sealed packet, or one this registry cannot open."""

    status_code = 400


class ReplayedPacket(IntakeError):
    """An envelope already seen, or one sent too long ago (or in the future)."""

    status_code = 409


def open_packet(
    session: Session,
    body: bytes,
    packet_key: X25519PrivateKey,
    replay_window: timedelta,
    now: datetime | None = None,
) -> tuple[Kiosk, EnrolmentPacket]:
    """Open a sealed envelope: decrypt, verify the kiosk's signature, validate the packet and
    accept its send id once. Raises an IntakeError subclass; records nothing on failure except
    the send id, which is added to the session (committed with the enrolment)."""
    try:
        opened = open_sealed(body, packet_key)
    except SealError as exc:
        raise UndecryptablePacket(str(exc)) from exc
    kiosk = authenticate(session, opened.kiosk_id, opened.message, opened.signature)
    try:
        send = SendEnvelope.model_validate_json(opened.message)
    except ValidationError as exc:
        raise InvalidPacket(
            [
                {
                    "loc": [str(x) for x in e.get("loc", ()) if x != "packet"],
                    "msg": e["msg"],
                    "type": e["type"],
                }
                for e in exc.errors()
            ]
        ) from exc
    if send.packet.kiosk_id != kiosk.id:
        raise UnknownKiosk(f"kiosk {kiosk.id!r} may only send its own packets")
    now = now or datetime.now(UTC)
    sent_at = datetime.fromtimestamp(send.sent_at, UTC)
    if abs(now - sent_at) > replay_window:
        raise ReplayedPacket(
            "the packet was sealed too long ago or in the future (replay, or the kiosk clock "
            "is wrong)"
        )
    if session.get(PacketSend, send.send_id) is not None:
        raise ReplayedPacket("this sealed packet was already received (replay)")
    session.query(PacketSend).filter(PacketSend.sent_at < now - 2 * replay_window).delete()
    session.add(PacketSend(send_id=send.send_id, kiosk_id=kiosk.id, sent_at=sent_at))
    return kiosk, send.packet


def packet_digest(packet: EnrolmentPacket) -> str:
    """SHA-256 of the packet's canonical JSON: equal digests mean the same packet content."""
    return hashlib.sha256(packet.model_dump_json().encode()).hexdigest()


def _receipt_number() -> str:
    chars = "".join(secrets.choice(_CROCKFORD) for _ in range(10))
    return f"RNP-{chars[:5]}-{chars[5:]}"


def ctx(packet_id: uuid.UUID, field: str) -> str:
    """Encryption context binding a stored value to its enrolment and column."""
    return f"enrolment:{packet_id}:{field}"


def receive(
    session: Session,
    cipher: FieldCipher,
    packet_key: X25519PrivateKey,
    body: bytes,
    replay_window: timedelta,
) -> tuple[Enrolment, bool]:
    """Store a sealed packet (or find it again). Returns the enrolment and whether it is new.

    Raises an IntakeError (see :func:`open_packet`; PacketConflict; InvalidPacket for an unknown
    witness); nothing is stored in those cases.
    """
    kiosk, packet = open_packet(session, body, packet_key, replay_window)
    digest = packet_digest(packet)
    existing = session.scalar(select(Enrolment).where(Enrolment.packet_id == packet.packet_id))
    if existing is not None:
        if existing.packet_sha256 != digest:
            raise PacketConflict(
                f"packet {packet.packet_id} was already received with different content"
            )
        return existing, False
    if packet.capture is not None:
        for idcs in packet.capture.witnesses:
            if session.scalar(select(Person.id).where(Person.idcs == idcs)) is None:
                raise InvalidPacket(
                    [
                        {
                            "loc": ["capture", "witnesses"],
                            "msg": "witness is not a registered person (unknown IDCS)",
                            "type": "unknown_witness",
                        }
                    ]
                )
    pid = packet.packet_id
    templates = np.asarray(packet.face_templates, dtype="<f4")
    fingers = [f.model_dump(mode="json") for f in packet.fingerprints]
    enrolment = Enrolment(
        packet_id=pid,
        receipt_number=_receipt_number(),
        kiosk_id=kiosk.id,
        packet_sha256=digest,
        captured_at=packet.captured_at,
        status=Status.RECEIVED,
        demographics=cipher.encrypt(
            packet.demographics.model_dump_json().encode(), ctx(pid, "demographics")
        ),
        face_image=cipher.encrypt(packet.face_image, ctx(pid, "face_image")),
        face_templates=cipher.encrypt(templates.tobytes(), ctx(pid, "face_templates")),
        fingerprints=cipher.encrypt(json.dumps(fingers).encode(), ctx(pid, "fingerprints")),
        capture=None
        if packet.capture is None
        else cipher.encrypt(packet.capture.model_dump_json().encode(), ctx(pid, "capture")),
    )
    session.add(enrolment)
    session.flush()
    record(session, f"kiosk:{kiosk.id}", "enrolment.received", "enrolment", pid)
    return enrolment, True


def face_templates(cipher: FieldCipher, enrolment: Enrolment) -> np.ndarray:
    """Decrypt an enrolment's face templates as an (n, 128) float32 array."""
    raw = cipher.decrypt(enrolment.face_templates, ctx(enrolment.packet_id, "face_templates"))
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 128).astype(np.float32)


def find(session: Session, packet_id: uuid.UUID) -> Enrolment | None:
    """The enrolment received under ``packet_id``, if any."""
    return session.scalar(select(Enrolment).where(Enrolment.packet_id == packet_id))


def status_of(session: Session, enrolment: Enrolment) -> EnrolmentStatus:
    """The public status of an enrolment (the IDCS only once issued)."""
    idcs = None
    if enrolment.status == Status.ISSUED and enrolment.person_id is not None:
        idcs = session.scalar(select(Person.idcs).where(Person.id == enrolment.person_id))
    status = Status(enrolment.status)
    return EnrolmentStatus(
        packet_id=enrolment.packet_id,
        receipt_number=enrolment.receipt_number,
        status=status,
        idcs=idcs,
        message=MESSAGES[status],
        received_at=enrolment.received_at,
        updated_at=enrolment.updated_at,
    )
